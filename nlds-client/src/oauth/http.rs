//! The provider's HTTP: `oauth2`'s client trait over reqwest, and OIDC discovery.

use std::future::Future;
use std::pin::Pin;

use nlds_core::ErrorCode;
use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::client::ClientOptions;
use crate::error::{Error, Result};

// ----- HTTP -----

/// The error of [`ProviderHttp`].
#[derive(Debug, thiserror::Error)]
pub enum ProviderHttpError {
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("cannot build the answer: {0}")]
    Answer(#[from] http::Error),
}

/// `oauth2`'s HTTP client trait over our reqwest client. Redirects are not followed (a token
/// endpoint that redirects would otherwise receive the request, secrets included, elsewhere).
#[derive(Debug, Clone)]
pub struct ProviderHttp {
    client: reqwest::Client,
}

impl ProviderHttp {
    pub fn new(options: &ClientOptions) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .danger_accept_invalid_certs(options.insecure)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nlds-rs-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot set up HTTP: {e}")))?;
        Ok(Self { client })
    }

    /// The underlying reqwest client (discovery uses it directly).
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = ProviderHttpError;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let resp = self.client.execute(request).await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?.to_vec();
            let mut out = http::Response::builder().status(status).body(body)?;
            *out.headers_mut() = headers;
            Ok(out)
        })
    }
}

// ----- discovery -----

/// The provider's endpoints (OIDC discovery, or RFC 8414 metadata).
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
}

/// Fetches `{issuer}/.well-known/openid-configuration` (else the RFC 8414
/// `/.well-known/oauth-authorization-server`) and checks that it names the same issuer.
pub async fn discover(http: &ProviderHttp, issuer: &str) -> Result<ProviderMetadata> {
    let issuer = issuer.trim_end_matches('/');
    let mut last = String::new();
    for doc in ["openid-configuration", "oauth-authorization-server"] {
        let url = format!("{issuer}/.well-known/{doc}");
        let resp = http
            .reqwest()
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| provider_unreachable(issuer, &e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            last = format!("{url} answered 404");
            continue;
        }
        if !status.is_success() {
            return Err(Error::Config(format!(
                "the OAuth2 provider {issuer} answered HTTP {} to {url}",
                status.as_u16()
            )));
        }
        let meta: ProviderMetadata = resp.json().await.map_err(|e| {
            Error::Config(format!(
                "the OAuth2 provider's metadata at {url} cannot be read: {e}"
            ))
        })?;
        if meta.issuer.trim_end_matches('/') != issuer {
            return Err(Error::Config(format!(
                "the OAuth2 provider at {url} says its issuer is {:?}, not {issuer:?}: check the issuer setting",
                meta.issuer
            )));
        }
        return Ok(meta);
    }
    Err(Error::Config(format!(
        "{issuer} does not look like an OAuth2 provider ({last}): check the issuer setting"
    )))
}

/// The provider cannot be reached: exit code 6, like an unreachable server.
pub(super) fn provider_unreachable(issuer: &str, e: &dyn std::error::Error) -> Error {
    let mut msg = format!("cannot reach the OAuth2 provider {issuer}: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    Error::Provider {
        code: ErrorCode::Unavailable,
        message: msg,
    }
}
