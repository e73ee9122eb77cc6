//! The OAuth2 resource server: bearer tokens issued by an OpenID Connect provider, configured by
//! its issuer (docs/AUTH.md).
//!
//! - JWT access tokens are verified with the provider's JWKS (found through discovery): the
//!   algorithm must be on an allow-list (`none` never, HMAC only with a configured shared
//!   secret), the key is looked up by `kid` (an unknown `kid` triggers one rate-limited JWKS
//!   refetch, which is how key rotation is picked up), then `iss`, `aud`, `exp` and `nbf` are
//!   checked with a small leeway.
//! - Any other token is introspected (RFC 7662) with the server's own client credentials; the
//!   answer is cached for a short time under a hash of the token.
//! - The claims become an [`Identity`] through [`ClaimMapping`], which is configuration.
//!
//! Tokens and the client secret are never logged; refusals are logged with a stable reason code.

mod claims;
mod introspection;
mod jwks;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::{Authenticator, Checked, Identity};
use claims::ClaimMappingExt;
use introspection::{Bucket, IntrospectionCache};
use jwks::{EndpointState, Jwks, jwt_header};

/// After a failed discovery, wait this long before asking again.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);
/// Negative introspection answers (and refusals of active answers) are reused at most this long.
const NEGATIVE_CACHE: Duration = Duration::from_secs(10);
/// At most this many introspection requests in flight at once.
const MAX_INTROSPECTIONS_IN_FLIGHT: usize = 8;

pub use nlds_settings::{ClaimMapping, ExposeSecret, OidcConfig, RolesFormat, SecretString};

/// Why a token was refused. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("signing algorithm {0:?} is not allowed")]
    Algorithm(String),
    #[error("no key {0:?} in the provider's JWKS")]
    UnknownKey(String),
    #[error("bad signature")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token is meant for another audience")]
    Audience,
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    #[error("the provider says the token is not active")]
    Inactive,
    #[error("opaque tokens are not accepted: no introspection client is configured")]
    NoIntrospection,
    #[error("claims: {0}")]
    Claims(String),
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    #[error("too many unknown tokens to introspect right now")]
    Busy,
}

impl AuthError {
    /// A stable code for logs and tests.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "malformed",
            AuthError::Algorithm(_) => "algorithm_not_allowed",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::Signature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Issuer => "wrong_issuer",
            AuthError::Audience => "wrong_audience",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::Inactive => "inactive",
            AuthError::NoIntrospection => "no_introspection",
            AuthError::Claims(_) => "bad_claims",
            AuthError::Unavailable(_) => "provider_unavailable",
            AuthError::Busy => "introspection_rate_limited",
        }
    }
}

/// Validates tokens of one OpenID Connect provider.
pub struct OidcAuthenticator {
    cfg: OidcConfig,
    algorithms: Vec<Algorithm>,
    hmac: Option<DecodingKey>,
    client: Option<(String, String)>,
    http: reqwest::Client,
    endpoints: tokio::sync::Mutex<EndpointState>,
    jwks: tokio::sync::RwLock<Jwks>,
    jwks_fetch: tokio::sync::Mutex<()>,
    jwks_fetches: AtomicU64,
    introspections: AtomicU64,
    cache: Mutex<IntrospectionCache>,
    bucket: Mutex<Bucket>,
    in_flight: tokio::sync::Semaphore,
}

fn read_secret(
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    match (inline, file) {
        (Some(_), Some(_)) => anyhow::bail!("[auth.oidc] set {what} or {what}_file, not both"),
        (Some(s), None) => Ok(Some(s.expose_secret().trim().to_owned())),
        (None, Some(path)) => {
            let s = std::fs::read_to_string(path).with_context(|| {
                format!("[auth.oidc] cannot read {what}_file {}", path.display())
            })?;
            let s = s.trim().to_owned();
            anyhow::ensure!(
                !s.is_empty(),
                "[auth.oidc] {what}_file {} is empty",
                path.display()
            );
            Ok(Some(s))
        }
        (None, None) => Ok(None),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 §2.3.1 wants the client
/// id and secret encoded so before HTTP Basic).
fn form_encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .to_owned()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl OidcAuthenticator {
    /// Checks the configuration and reads the secrets; the provider is contacted on first use.
    pub fn new(cfg: OidcConfig) -> anyhow::Result<Self> {
        let issuer = cfg.issuer.trim().to_owned();
        anyhow::ensure!(
            !issuer.is_empty(),
            "[auth] kind = \"oidc\" needs [auth.oidc] issuer (the provider's issuer URL)"
        );
        anyhow::ensure!(
            issuer.starts_with("https://") || issuer.starts_with("http://"),
            "[auth.oidc] issuer {issuer:?} is not an http(s) URL"
        );
        anyhow::ensure!(
            cfg.audience.iter().any(|a| !a.trim().is_empty()),
            "[auth.oidc] audience must name the audience our tokens carry (e.g. \"nlds\")"
        );
        let hmac_secret = read_secret(&cfg.hmac_secret, &cfg.hmac_secret_file, "hmac_secret")?;
        let mut algorithms = Vec::new();
        for a in &cfg.algorithms {
            anyhow::ensure!(
                !a.eq_ignore_ascii_case("none"),
                "[auth.oidc] algorithms: \"none\" (unsigned tokens) can never be allowed"
            );
            let alg = Algorithm::from_str(a).map_err(|_| {
                anyhow::anyhow!("[auth.oidc] algorithms: unknown JWS algorithm {a:?}")
            })?;
            anyhow::ensure!(
                alg.family() != AlgorithmFamily::Hmac || hmac_secret.is_some(),
                "[auth.oidc] algorithms: {a} needs hmac_secret or hmac_secret_file (a shared secret)"
            );
            algorithms.push(alg);
        }
        anyhow::ensure!(
            !algorithms.is_empty(),
            "[auth.oidc] algorithms must allow at least one algorithm"
        );
        let secret = read_secret(&cfg.client_secret, &cfg.client_secret_file, "client_secret")?;
        let client = match (&cfg.client_id, secret) {
            (Some(id), Some(secret)) => Some((id.clone(), secret)),
            (Some(id), None) => anyhow::bail!(
                "[auth.oidc] client_id {id:?} needs client_secret or client_secret_file"
            ),
            (None, Some(_)) => {
                anyhow::bail!("[auth.oidc] client_secret is set but client_id is not")
            }
            (None, None) => None,
        };
        cfg.claims.validate()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.http_timeout_secs.max(1)))
            .build()
            .context("cannot build the HTTP client for the identity provider")?;
        let mut cfg = cfg;
        cfg.issuer = issuer;
        Ok(Self {
            hmac: hmac_secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            algorithms,
            client,
            http,
            endpoints: Default::default(),
            jwks: Default::default(),
            jwks_fetch: Default::default(),
            jwks_fetches: AtomicU64::new(0),
            introspections: AtomicU64::new(0),
            cache: Mutex::new(IntrospectionCache::default()),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(cfg.introspection_burst.max(1)),
                at: Instant::now(),
            }),
            in_flight: tokio::sync::Semaphore::new(MAX_INTROSPECTIONS_IN_FLIGHT),
            cfg,
        })
    }

    /// How many times the JWKS was fetched (for tests and metrics).
    pub fn jwks_fetches(&self) -> u64 {
        self.jwks_fetches.load(Ordering::Relaxed)
    }

    /// How many introspection requests were sent (for tests and metrics).
    pub fn introspections(&self) -> u64 {
        self.introspections.load(Ordering::Relaxed)
    }

    /// The identity behind `token`, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        match jwt_header(token) {
            Some(header) => self.verify_jwt(token, &header).await,
            None => self.introspect(token).await,
        }
    }
}

#[async_trait]
impl Authenticator for OidcAuthenticator {
    async fn authenticate(&self, token: &str) -> Option<Identity> {
        match self.check(token).await {
            Checked::Valid(id) => Some(id),
            Checked::Refused | Checked::Unavailable(_) => None,
        }
    }

    async fn check(&self, token: &str) -> Checked {
        match self.verify(token).await {
            Ok(id) => Checked::Valid(id),
            Err(e @ (AuthError::Unavailable(_) | AuthError::Busy)) => {
                tracing::warn!(reason = e.code(), error = %e, "bearer token not checked");
                Checked::Unavailable(e.to_string())
            }
            Err(e) => {
                tracing::info!(reason = e.code(), error = %e, "bearer token refused");
                Checked::Refused
            }
        }
    }
}

#[cfg(test)]
mod tests;
