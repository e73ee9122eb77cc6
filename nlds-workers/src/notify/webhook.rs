//! Webhook delivery: `POST` of the JSON body, signed with HMAC-SHA256 under the receiver's
//! secret over `<timestamp>.<body>` (docs/NOTIFY.md, "Verifying a webhook").

use std::time::Duration;

use hmac::{Hmac, Mac};
use nlds_core::notify::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use sha2::Sha256;

/// `sha256=<hex>` of `<timestamp>.<body>` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The HTTP client of the delivery task: a whole delivery is bounded by `timeout`; redirects
/// are not followed (a redirect could send the signed body elsewhere).
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("nlds-notify/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Posts `body` to `url`, signed with `secret` (unsigned without one). A 2xx answer is a
/// delivery; anything else is the error to record (never the secret or the body).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    body: &str,
) -> Result<(), String> {
    let timestamp = chrono::Utc::now().timestamp();
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string());
    if let Some(secret) = secret {
        req = req.header(
            SIGNATURE_HEADER,
            signature(secret.as_bytes(), timestamp, body.as_bytes()),
        );
    }
    match req.body(body.to_owned()).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("the receiver answered {}", r.status())),
        Err(e) if e.is_timeout() => Err("the receiver did not answer in time".into()),
        Err(e) if e.is_connect() => Err("cannot connect to the receiver".into()),
        Err(e) => Err(format!("delivery failed: {}", without_url(&e))),
    }
}

/// A reqwest error's text without the URL it names (the URL is the target, recorded apart).
fn without_url(e: &reqwest::Error) -> String {
    let text = e.to_string();
    match e.url() {
        Some(u) => text.replace(u.as_str(), "<url>"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Python: hmac.new(b"key", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"key", 1_700_000_000, br#"{"a":1}"#),
            "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
        assert_ne!(
            signature(b"key", 1_700_000_001, br#"{"a":1}"#),
            signature(b"key", 1_700_000_000, br#"{"a":1}"#)
        );
    }
}
