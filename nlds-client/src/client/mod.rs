//! The HTTP client of the native API (`/api/v2`): [`Client`], its options, the request plumbing.

mod account;
mod admin;
mod holdings;
mod notify;
mod stage;
mod transactions;
mod transfer;
mod wait;

#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nlds_core::api::API_PREFIX;
use nlds_core::error::ErrorBody;
use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{Error, Result, code_for_status};

pub use account::Identity;
pub use wait::{MAX_POLL, WaitProgress};

/// How often and how patiently a request is retried after a connection error or a 502/503/504.
/// A 4xx (or any other answer) is never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first included (1 = no retries).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub base_delay: Duration,
    /// Upper bound of a delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (1-based): "equal jitter", i.e. half of the capped
    /// exponential back-off plus a random part of the other half.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(random_fraction())
    }
}

/// A number in `[0, 1)` from the OS randomness behind uuid v4 (no extra dependency needed).
fn random_fraction() -> f64 {
    let bits = (Uuid::new_v4().as_u128() & 0xffff_ffff) as u32;
    f64::from(bits) / (f64::from(u32::MAX) + 1.0)
}

/// Tunables of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, answer included.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// How long [`Client::wait`] takes a 404 for "not recorded yet" (QUEUED) rather than an error:
    /// the monitor records a transaction shortly after the put or get was accepted.
    pub not_found_grace: Duration,
    /// Consecutive transient failures (the server or its broker away) [`Client::wait`] rides
    /// out before giving up. By default there is no limit: a wait lasts through an outage until
    /// its own timeout.
    pub wait_transient_failures: u32,
    /// Do not verify the server's TLS certificate (test servers with self-signed certificates).
    pub insecure: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            not_found_grace: Duration::from_secs(30),
            wait_transient_failures: u32::MAX,
            insecure: false,
        }
    }
}

/// Where the bearer token comes from when it can change while the client runs: an OAuth2 login
/// ([`crate::oauth::OAuthSession`]) renews its access token before it expires.
pub trait TokenSource: Send + Sync {
    /// The token to send now. `rejected`: the server has just refused the last one (401), so get
    /// a new one if that is possible.
    fn bearer(&self, rejected: bool) -> Pin<Box<dyn Future<Output = Result<String>> + Send + '_>>;
    /// When the current token expires, if known.
    fn expires_at(&self) -> Option<DateTime<Utc>>;
}

/// A client of one NLDS server, acting with one bearer token. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    /// The server URL without a trailing slash, e.g. `https://nlds.example.org`.
    base: String,
    token: String,
    http: reqwest::Client,
    options: ClientOptions,
    /// Asked for the token before every request, when set ([`Client::with_token_source`]).
    source: Option<Arc<dyn TokenSource>>,
    /// Most paths sent in one request: longer lists go in chunks ([`Client::with_chunk_paths`]).
    chunk_paths: usize,
}

/// Most paths a put or get sends in one request by default; a longer list is sent in chunks of
/// this many (well below the server's default `[server] max_paths` of 50,000, and about 1 MB of
/// JSON for paths of 100 bytes).
pub const CHUNK_PATHS: usize = 10_000;

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .field("options", &self.options)
            .field("token_source", &self.source.is_some())
            .finish()
    }
}

impl Client {
    /// A client with the default [`ClientOptions`].
    pub fn new(base_url: &str, token: impl Into<String>) -> Result<Self> {
        Self::with_options(base_url, token, ClientOptions::default())
    }

    /// `base_url` is the server's root (`https://host` or `https://host/prefix`); the API lives
    /// under `/api/v2` below it.
    pub fn with_options(
        base_url: &str,
        token: impl Into<String>,
        options: ClientOptions,
    ) -> Result<Self> {
        let url = Url::parse(base_url.trim())
            .map_err(|e| Error::Config(format!("server URL {base_url:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::Config(format!(
                "server URL {base_url:?} must be an http:// or https:// URL"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Config(format!(
                "server URL {base_url:?} must not have a query or fragment"
            )));
        }
        let token = token.into();
        if token.trim().is_empty() {
            return Err(Error::Config("the token is empty".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .danger_accept_invalid_certs(options.insecure)
            .user_agent(concat!("nlds-rs-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot set up HTTP: {e}")))?;
        Ok(Self {
            base: url.as_str().trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            http,
            options,
            source: None,
            chunk_paths: CHUNK_PATHS,
        })
    }

    /// The same client, taking its bearer token from `source` before every request (the token
    /// given to [`Client::with_options`] is then only a fallback for `whoami`'s expiry). A 401
    /// answer asks the source for a new token once and repeats the request.
    pub fn with_token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// The server URL this client talks to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Sends at most `n` paths in one request (at least 1): a put or get of more sends them in
    /// chunks first.
    pub fn with_chunk_paths(mut self, n: usize) -> Self {
        self.chunk_paths = n.max(1);
        self
    }

    /// Most paths sent in one request ([`Client::with_chunk_paths`]).
    pub fn chunk_paths(&self) -> usize {
        self.chunk_paths
    }

    /// Opens a long-lived `GET` of `path` (a server-sent event stream), bounded by `longest`
    /// instead of the request timeout.
    pub(crate) async fn open_stream(
        &self,
        path: &str,
        longest: Duration,
    ) -> Result<reqwest::Response> {
        let token = match &self.source {
            Some(source) => source.bearer(false).await?,
            None => self.token.clone(),
        };
        self.http
            .get(self.url(path))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .timeout(longest.max(Duration::from_secs(1)))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(Error::Transport)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}{}", self.base, API_PREFIX, path)
    }

    /// Sends one request, retrying as the [`RetryPolicy`] says, and decodes the answer.
    async fn send<T, Q, B>(
        &self,
        method: Method,
        path: &str,
        query: Option<&Q>,
        body: Option<&B>,
    ) -> Result<T>
    where
        T: DeserializeOwned,
        Q: Serialize + ?Sized,
        B: Serialize + ?Sized,
    {
        let resp = self.send_response(method, path, query, body).await?;
        decode(resp).await
    }

    /// Sends one request, retrying as the [`RetryPolicy`] says; the answer is not decoded.
    async fn send_response<Q, B>(
        &self,
        method: Method,
        path: &str,
        query: Option<&Q>,
        body: Option<&B>,
    ) -> Result<reqwest::Response>
    where
        Q: Serialize + ?Sized,
        B: Serialize + ?Sized,
    {
        let mut token = match &self.source {
            Some(source) => source.bearer(false).await?,
            None => self.token.clone(),
        };
        let mut template = self
            .http
            .request(method, self.url(path))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(q) = query {
            template = template.query(q);
        }
        if let Some(b) = body {
            template = template.json(b);
        }
        let attempts = self.options.retry.attempts.max(1);
        let mut attempt = 1;
        let mut renewed = false;
        loop {
            let request = clone_request(&template)?.bearer_auth(&token);
            let retry_allowed = attempt < attempts;
            match request.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // An OAuth2 token the server refuses (revoked, say): renew it once and repeat.
                    if status == 401
                        && !renewed
                        && let Some(source) = &self.source
                    {
                        renewed = true;
                        let fresh = source.bearer(true).await?;
                        if fresh != token {
                            token = fresh;
                            continue;
                        }
                    }
                    if matches!(status, 502..=504) && retry_allowed {
                        tokio::time::sleep(self.options.retry.delay(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
                Err(e) if retry_allowed && is_connection_error(&e) => {
                    tokio::time::sleep(self.options.retry.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(Error::Transport(e)),
            }
        }
    }
}

fn clone_request(template: &RequestBuilder) -> Result<RequestBuilder> {
    // Bodies are always in-memory JSON here, so the clone cannot fail; stay total anyway.
    template
        .try_clone()
        .ok_or_else(|| Error::Config("the request body cannot be replayed".into()))
}

/// A connection could not be opened (refused, reset, or not within the connect timeout), or broke
/// before an answer came. A request timeout is not retried: the request may still be running on
/// the server, and the total wait would multiply.
fn is_connection_error(e: &reqwest::Error) -> bool {
    e.is_connect() || (e.is_request() && !e.is_timeout())
}

pub(crate) async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
    let status = resp.status();
    let url_path = resp.url().path().to_owned();
    let bytes = resp.bytes().await.map_err(Error::Transport)?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| Error::Decode(format!("{url_path}: {e}")));
    }
    let status = status.as_u16();
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(&bytes) {
        return Err(Error::Api {
            status,
            code: body.error.code,
            message: body.error.message,
        });
    }
    // Not our envelope (a proxy's error page, say): keep a short, single-line excerpt.
    let text: String = String::from_utf8_lossy(&bytes)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error");
    let message = if text.is_empty() {
        format!("HTTP {status} {reason} from {url_path}")
    } else {
        format!("HTTP {status} {reason} from {url_path}: {text}")
    };
    Err(Error::Api {
        status,
        code: code_for_status(status),
        message,
    })
}
