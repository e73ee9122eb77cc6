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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use nlds_core::AccessRole;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Authenticator, Checked, Identity};

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

// ------------------------------------------------------------------------------ claim mapping

/// A claim by name, else by dotted path into nested objects.
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// User and group names end up in paths, messages and POSIX lookups: keep them plain.
fn plain_name(kind: &str, claim_name: &str, s: &str) -> Result<String, AuthError> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.len() <= 256
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(AuthError::Claims(format!(
            "{kind} name {s:?} in claim {claim_name} is empty or has characters other than letters, digits, '.', '_', '-' and '@'"
        )))
    }
}

/// Strings from an array, or from one space-separated string.
fn strings(v: &Value, claim_name: &str) -> Result<Vec<String>, AuthError> {
    match v {
        Value::String(s) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_owned).ok_or_else(|| {
                    AuthError::Claims(format!("claim {claim_name} holds a non-string entry"))
                })
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(AuthError::Claims(format!(
            "claim {claim_name} is neither a list of strings nor a string"
        ))),
    }
}

/// A role in one group from the roles claim. `admin` there is MANAGER of that group (with a
/// warning, once per claim and group): operators come only from `admin_groups` and `admin_roles`.
fn parse_role(claim_name: &str, group: &str, role: &str) -> Result<AccessRole, AuthError> {
    let parsed = AccessRole::parse(role).ok_or_else(|| {
        AuthError::Claims(format!(
            "claim {claim_name}: unknown role {role:?} for group {group} (expected user, deputy, manager or admin)"
        ))
    })?;
    if parsed.is_admin() {
        static WARNED: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
        let first = WARNED
            .lock()
            .map(|mut w| w.len() < 1000 && w.insert(format!("{claim_name}\0{group}")))
            .unwrap_or(false);
        if first {
            tracing::warn!(
                claim = claim_name,
                %group,
                "claim {claim_name} gives role \"admin\" in group {group}; a per-group role never \
                 makes a service operator, so it is read as \"manager\" of {group}. Operators are \
                 the members of [auth.oidc.claims] admin_groups or holders of admin_roles"
            );
        }
    }
    Ok(parsed.in_group())
}

/// What the server does with a [`ClaimMapping`] (defined in `nlds-settings`).
pub trait ClaimMappingExt {
    /// Checks the mapping itself (at startup).
    fn validate(&self) -> anyhow::Result<()>;
    /// The identity the claims describe.
    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError>;
}

impl ClaimMappingExt for ClaimMapping {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.user.trim().is_empty(),
            "[auth.oidc.claims] user must name the claim that holds the user name"
        );
        anyhow::ensure!(
            self.roles_format != RolesFormat::List || !self.roles_separator.is_empty(),
            "[auth.oidc.claims] roles_separator must not be empty for roles_format = \"list\""
        );
        Ok(())
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError> {
        let user = match claim(claims, &self.user) {
            Some(Value::String(s)) => plain_name("user", &self.user, s)?,
            Some(_) => {
                return Err(AuthError::Claims(format!(
                    "claim {} (the user name) is not a string",
                    self.user
                )));
            }
            None => return Err(AuthError::MissingClaim(self.user.clone())),
        };
        let mut groups: Vec<String> = Vec::new();
        if !self.groups.is_empty()
            && let Some(v) = claim(claims, &self.groups)
        {
            for g in strings(v, &self.groups)? {
                let g = plain_name("group", &self.groups, &g)?;
                if !groups.contains(&g) {
                    groups.push(g);
                }
            }
        }
        let mut admin = groups.iter().any(|g| self.admin_groups.contains(g));
        let mut roles: BTreeMap<String, AccessRole> = BTreeMap::new();
        let mut add = |group: &str, role: AccessRole| {
            let e = roles.entry(group.to_owned()).or_default();
            *e = (*e).max(role);
        };
        let roles_value = if self.roles.is_empty() {
            None
        } else {
            claim(claims, &self.roles)
        };
        match (roles_value, self.roles_format) {
            (None | Some(Value::Null), _) => {}
            (Some(Value::Object(m)), RolesFormat::Map) => {
                for (group, v) in m {
                    for role in strings(v, &self.roles)? {
                        add(group, parse_role(&self.roles, group, &role)?);
                    }
                }
            }
            (Some(v @ (Value::Array(_) | Value::String(_))), RolesFormat::List) => {
                for entry in strings(v, &self.roles)? {
                    match entry.split_once(self.roles_separator.as_str()) {
                        Some((group, role)) => add(group, parse_role(&self.roles, group, role)?),
                        None if self.admin_roles.contains(&entry) => admin = true,
                        // Roles of other applications share such claims: not ours.
                        None => {}
                    }
                }
            }
            (Some(_), RolesFormat::Map) => {
                return Err(AuthError::Claims(format!(
                    "claim {} is not an object of group -> role (roles_format = \"map\")",
                    self.roles
                )));
            }
            (Some(_), RolesFormat::List) => {
                return Err(AuthError::Claims(format!(
                    "claim {} is not a list of \"group{}role\" strings (roles_format = \"list\")",
                    self.roles, self.roles_separator
                )));
            }
        }
        // A role only counts in a group the caller belongs to; USER is the default anyway.
        roles.retain(|g, r| *r > AccessRole::User && groups.contains(g));
        Ok(Identity {
            user,
            groups,
            admin,
            roles,
        })
    }
}

// ------------------------------------------------------------------------------ authenticator

#[derive(Clone)]
struct Endpoints {
    jwks_uri: Option<String>,
    introspection: Option<String>,
}

#[derive(Default)]
struct EndpointState {
    found: Option<Endpoints>,
    last_attempt: Option<Instant>,
}

struct JwkKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct Jwks {
    keys: Vec<JwkKey>,
    /// Last successful fetch.
    fetched: Option<Instant>,
    /// Last attempt, successful or not (the rate limit).
    attempted: Option<Instant>,
}

impl Jwks {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let fits = |k: &&JwkKey| k.key.family() == alg.family() && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(fits)
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| k.key.clone()),
            None => {
                let mut candidates = self.keys.iter().filter(fits);
                match (candidates.next(), candidates.next()) {
                    (Some(k), None) => Some(k.key.clone()),
                    _ => None,
                }
            }
        }
    }
}

struct Cached {
    until: Instant,
    result: Result<Identity, AuthError>,
    /// Insertion order (eviction of the oldest).
    seq: u64,
}

/// Introspection answers under a hash of the token: bounded, and when full the expired answers
/// go, then the oldest ones (never the whole cache at once).
#[derive(Default)]
struct IntrospectionCache {
    map: HashMap<[u8; 32], Cached>,
    /// Keys in insertion order, with the `seq` they were inserted with (stale pairs are skipped).
    order: std::collections::VecDeque<([u8; 32], u64)>,
    seq: u64,
}

impl IntrospectionCache {
    fn get(&self, key: &[u8; 32]) -> Option<Result<Identity, AuthError>> {
        self.map
            .get(key)
            .filter(|c| c.until > Instant::now())
            .map(|c| c.result.clone())
    }

    fn insert(
        &mut self,
        key: [u8; 32],
        until: Instant,
        result: Result<Identity, AuthError>,
        max: usize,
    ) {
        let max = max.max(1);
        if !self.map.contains_key(&key) && self.map.len() >= max {
            let now = Instant::now();
            self.map.retain(|_, c| c.until > now);
            while self.map.len() >= max {
                let Some((k, seq)) = self.order.pop_front() else {
                    break;
                };
                if self.map.get(&k).is_some_and(|c| c.seq == seq) {
                    self.map.remove(&k);
                }
            }
        }
        self.seq += 1;
        self.map.insert(
            key,
            Cached {
                until,
                result,
                seq: self.seq,
            },
        );
        self.order.push_back((key, self.seq));
        if self.order.len() > 2 * max + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, seq)| map.get(k).is_some_and(|c| c.seq == *seq));
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, rate: f64, burst: f64) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
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

/// The header of a JWT, if `token` looks like one (three parts, a JSON header naming `alg`).
fn jwt_header(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (h, _, _, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next());
    if rest.is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(h).ok()?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    header.contains_key("alg").then_some(header)
}

/// Does the `aud` value (a string or a list) name one of `accepted`?
fn audience_matches(aud: &Value, accepted: &[String]) -> bool {
    match aud {
        Value::String(s) => accepted.contains(s),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .any(|s| accepted.iter().any(|x| x == s)),
        _ => false,
    }
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

    async fn endpoints(&self) -> Result<Endpoints, AuthError> {
        let need_discovery = self.cfg.jwks_uri.is_none()
            || (self.client.is_some() && self.cfg.introspection_endpoint.is_none());
        if !need_discovery {
            return Ok(Endpoints {
                jwks_uri: self.cfg.jwks_uri.clone(),
                introspection: self.cfg.introspection_endpoint.clone(),
            });
        }
        let mut st = self.endpoints.lock().await;
        if let Some(e) = &st.found {
            return Ok(e.clone());
        }
        if let Some(t) = st.last_attempt
            && t.elapsed() < DISCOVERY_RETRY
        {
            return Err(AuthError::Unavailable(
                "the last discovery attempt failed; retrying shortly".into(),
            ));
        }
        st.last_attempt = Some(Instant::now());
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: Option<String>,
            introspection_endpoint: Option<String>,
        }
        let doc: Discovery = self.get_json(&url, "discovery").await?;
        if doc.issuer != self.cfg.issuer {
            tracing::error!(expected = %self.cfg.issuer, found = %doc.issuer, "OIDC discovery document names another issuer");
            return Err(AuthError::Unavailable(format!(
                "the discovery document at {url} names issuer {:?}, not {:?}",
                doc.issuer, self.cfg.issuer
            )));
        }
        let e = Endpoints {
            jwks_uri: self.cfg.jwks_uri.clone().or(doc.jwks_uri),
            introspection: self
                .cfg
                .introspection_endpoint
                .clone()
                .or(doc.introspection_endpoint),
        };
        tracing::info!(issuer = %self.cfg.issuer, jwks_uri = ?e.jwks_uri, introspection = ?e.introspection, "OIDC provider discovered");
        st.found = Some(e.clone());
        Ok(e)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<T, AuthError> {
        let fail = |e: String| {
            tracing::warn!(%url, error = %e, "{what} request to the identity provider failed");
            AuthError::Unavailable(format!("{what} at {url}: {e}"))
        };
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !r.status().is_success() {
            return Err(fail(format!("HTTP {}", r.status())));
        }
        r.json::<T>().await.map_err(|e| fail(e.to_string()))
    }

    async fn fetch_jwks(&self) -> Result<Vec<JwkKey>, AuthError> {
        let uri =
            self.endpoints().await?.jwks_uri.ok_or_else(|| {
                AuthError::Unavailable("the provider publishes no jwks_uri".into())
            })?;
        self.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<Value>,
        }
        let set: Set = self.get_json(&uri, "JWKS").await?;
        let mut keys = Vec::new();
        for raw in set.keys {
            let kid = raw.get("kid").and_then(Value::as_str).map(str::to_owned);
            // Encryption keys and shared secrets have no place among signing keys.
            if raw.get("use").and_then(Value::as_str) == Some("enc")
                || raw.get("kty").and_then(Value::as_str) == Some("oct")
            {
                continue;
            }
            let alg = match raw.get("alg").and_then(Value::as_str) {
                Some(a) => match Algorithm::from_str(a) {
                    Ok(a) => Some(a),
                    Err(_) => continue,
                },
                None => None,
            };
            let key = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(raw)
                .ok()
                .and_then(|jwk| DecodingKey::from_jwk(&jwk).ok());
            match key {
                Some(key) => keys.push(JwkKey { kid, alg, key }),
                None => tracing::debug!(?kid, "skipping a JWKS key of an unsupported type"),
            }
        }
        tracing::info!(keys = keys.len(), "JWKS fetched");
        Ok(keys)
    }

    /// The key for a token's `kid` and `alg`: from the cache, else after (at most) one
    /// rate-limited refetch.
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        let ttl = Duration::from_secs(self.cfg.jwks_cache_secs.max(1));
        let min_refetch = Duration::from_secs(self.cfg.jwks_min_refetch_secs);
        {
            let j = self.jwks.read().await;
            if j.fetched.is_some_and(|t| t.elapsed() < ttl)
                && let Some(k) = j.find(kid, alg)
            {
                return Ok(k);
            }
        }
        let _one_fetch_at_a_time = self.jwks_fetch.lock().await;
        {
            let j = self.jwks.read().await;
            let fresh = j.fetched.is_some_and(|t| t.elapsed() < ttl);
            let found = j.find(kid, alg);
            if fresh && let Some(k) = found {
                return Ok(k);
            }
            if j.attempted.is_some_and(|t| t.elapsed() < min_refetch) {
                return match (found, j.fetched) {
                    (Some(k), _) => Ok(k),
                    (None, Some(_)) => Err(AuthError::UnknownKey(kid.unwrap_or("").to_owned())),
                    (None, None) => Err(AuthError::Unavailable(
                        "the JWKS could not be fetched; retrying shortly".into(),
                    )),
                };
            }
        }
        let fetched = self.fetch_jwks().await;
        let mut j = self.jwks.write().await;
        j.attempted = Some(Instant::now());
        match fetched {
            Ok(keys) => {
                j.keys = keys;
                j.fetched = Some(Instant::now());
            }
            Err(e) if j.fetched.is_none() => return Err(e),
            // Keep using the keys we have while the provider is unreachable.
            Err(_) => {}
        }
        j.find(kid, alg)
            .ok_or_else(|| AuthError::UnknownKey(kid.unwrap_or("").to_owned()))
    }

    async fn verify_jwt(
        &self,
        token: &str,
        header: &Map<String, Value>,
    ) -> Result<Identity, AuthError> {
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg = Algorithm::from_str(alg_name)
            .ok()
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| AuthError::Algorithm(alg_name.chars().take(20).collect()))?;
        // The kid is the caller's text: it ends up in logs, so keep it short.
        let kid: Option<String> = header
            .get("kid")
            .and_then(Value::as_str)
            .map(|k| k.chars().take(64).collect());
        let kid = kid.as_deref();
        let key = if alg.family() == AlgorithmFamily::Hmac {
            self.hmac
                .clone()
                .ok_or_else(|| AuthError::Algorithm(alg_name.to_owned()))?
        } else {
            self.key_for(kid, alg).await?
        };
        let mut v = Validation::new(alg);
        v.leeway = self.cfg.leeway_secs;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.set_audience(&self.cfg.audience);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        use jsonwebtoken::errors::ErrorKind as K;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v).map_err(|e| {
                match e.kind() {
                    K::InvalidSignature => AuthError::Signature,
                    K::ExpiredSignature => AuthError::Expired,
                    K::ImmatureSignature => AuthError::NotYetValid,
                    K::InvalidIssuer => AuthError::Issuer,
                    K::InvalidAudience => AuthError::Audience,
                    K::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
                    K::InvalidAlgorithm => AuthError::Algorithm(alg_name.to_owned()),
                    other => AuthError::Malformed(format!("{other:?}").chars().take(120).collect()),
                }
            })?;
        self.cfg.claims.identity(&data.claims)
    }

    async fn introspect(&self, token: &str) -> Result<Identity, AuthError> {
        let Some((client_id, secret)) = &self.client else {
            return Err(AuthError::NoIntrospection);
        };
        let key: [u8; 32] = *blake3::hash(token.as_bytes()).as_bytes();
        if let Some(r) = self.cache.lock().expect("cache lock").get(&key) {
            return r;
        }
        // A token not in the cache costs the provider a request: their rate is limited, and so
        // is how many are in flight, so a flood of made-up tokens cannot hammer the provider.
        let allowed = self.bucket.lock().expect("bucket lock").take(
            f64::from(self.cfg.introspection_rate_per_sec.max(1)),
            f64::from(self.cfg.introspection_burst.max(1)),
        );
        if !allowed {
            return Err(AuthError::Busy);
        }
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| AuthError::Busy)?;
        // Another request may have asked about the same token while this one waited.
        if let Some(r) = self.cache.lock().expect("cache lock").get(&key) {
            return r;
        }
        let url = self.endpoints().await?.introspection.ok_or_else(|| {
            AuthError::Unavailable("the provider publishes no introspection_endpoint".into())
        })?;
        self.introspections.fetch_add(1, Ordering::Relaxed);
        let body =
            serde_urlencoded::to_string([("token", token), ("token_type_hint", "access_token")])
                .map_err(|_| AuthError::Malformed("cannot encode the token".into()))?;
        let fail = |e: String| {
            tracing::warn!(%url, error = %e, "introspection request to the identity provider failed");
            AuthError::Unavailable(format!("introspection at {url}: {e}"))
        };
        let r = self
            .http
            .post(&url)
            .basic_auth(form_encode(client_id), Some(form_encode(secret)))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !r.status().is_success() {
            return Err(fail(format!("HTTP {}", r.status())));
        }
        let answer: Map<String, Value> = r.json().await.map_err(|e| fail(e.to_string()))?;
        let result = self.judge_introspection(&answer);
        let mut ttl = Duration::from_secs(self.cfg.introspection_cache_secs);
        if result.is_ok() {
            if let Some(exp) = answer.get("exp").and_then(Value::as_u64) {
                ttl = ttl.min(Duration::from_secs(exp.saturating_sub(now_secs())));
            }
        } else {
            // A refusal is reused briefly, so the same bad token does not ask again and again.
            ttl = ttl.min(NEGATIVE_CACHE);
        }
        if !ttl.is_zero() {
            self.cache.lock().expect("cache lock").insert(
                key,
                Instant::now() + ttl,
                result.clone(),
                self.cfg.introspection_cache_entries,
            );
        }
        result
    }

    fn judge_introspection(&self, a: &Map<String, Value>) -> Result<Identity, AuthError> {
        if a.get("active") != Some(&Value::Bool(true)) {
            return Err(AuthError::Inactive);
        }
        let now = now_secs();
        if let Some(exp) = a.get("exp").and_then(Value::as_u64)
            && exp + self.cfg.leeway_secs < now
        {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = a.get("nbf").and_then(Value::as_u64)
            && nbf > now + self.cfg.leeway_secs
        {
            return Err(AuthError::NotYetValid);
        }
        if let Some(iss) = a.get("iss")
            && iss.as_str() != Some(self.cfg.issuer.as_str())
        {
            return Err(AuthError::Issuer);
        }
        match a.get("aud") {
            Some(aud) if !audience_matches(aud, &self.cfg.audience) => {
                return Err(AuthError::Audience);
            }
            None if self.cfg.introspection_require_audience => {
                return Err(AuthError::Audience);
            }
            _ => {}
        }
        if let Some(t) = a.get("token_type").and_then(Value::as_str)
            && !t.eq_ignore_ascii_case("bearer")
            && !t.eq_ignore_ascii_case("access_token")
        {
            return Err(AuthError::Malformed(format!(
                "introspection says the token is a {t:?}, not an access token"
            )));
        }
        self.cfg.claims.identity(a)
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
