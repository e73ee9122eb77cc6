//! The caller's account: who the token's bearer is (and when the token expires), and its quota.

use chrono::{DateTime, Utc};
use nlds_core::api::WhoAmI;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::Client;
use crate::error::Result;

/// [`Client::whoami_full`]: who the server takes the token's bearer to be, and when the token
/// expires if the server (or the token itself) says.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    #[serde(flatten)]
    pub who: WhoAmI,
    /// When the token stops being accepted, if known.
    pub token_expires: Option<DateTime<Utc>>,
}

/// `/whoami` as sent by servers that also say when the token expires.
#[derive(Deserialize)]
struct WhoAmIWire {
    #[serde(flatten)]
    who: WhoAmI,
    #[serde(default, alias = "expires_at", alias = "token_expires_at")]
    token_expires: Option<DateTime<Utc>>,
}

impl Client {
    /// The quotas of the caller's groups (or of `group`): limits, usage, reserved.
    pub async fn quota(&self, group: Option<&str>) -> Result<nlds_core::quota::QuotaReport> {
        let query = group.map(|g| [("group", g)]);
        self.send(Method::GET, "/quota", query.as_ref(), None::<&()>)
            .await
    }

    /// Who the server takes the token's bearer to be.
    pub async fn whoami(&self) -> Result<WhoAmI> {
        self.send(Method::GET, "/whoami", None::<&()>, None::<&()>)
            .await
    }

    /// Like [`Client::whoami`], with the token's expiry when the server (or a JWT token's `exp`
    /// claim) tells it.
    pub async fn whoami_full(&self) -> Result<Identity> {
        let wire: WhoAmIWire = self
            .send(Method::GET, "/whoami", None::<&()>, None::<&()>)
            .await?;
        let token_expires = wire
            .token_expires
            .or_else(|| self.source.as_ref().and_then(|s| s.expires_at()))
            .or_else(|| jwt_expiry(&self.token));
        Ok(Identity {
            who: wire.who,
            token_expires,
        })
    }
}

/// The `exp` claim of a JWT bearer token, if the token is one.
pub(super) fn jwt_expiry(token: &str) -> Option<DateTime<Utc>> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let bytes = base64url_decode(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    DateTime::from_timestamp(claims.get("exp")?.as_i64()?, 0)
}

/// Decodes unpadded (or padded) base64url.
pub(super) fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
