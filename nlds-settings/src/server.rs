//! `[server]` and `[auth]`: what the API server reads.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The URL clients reach the server at (used in status URLs).
    pub public_url: Option<String>,
    /// Static bearer tokens: `[[token]] token = "..." user = "..." groups = [...]`.
    pub tokens_file: PathBuf,
    /// How long list, find, meta and stat wait for the catalogue or monitor.
    pub rpc_timeout_secs: u64,
    /// How long a policy dry run (`POST /api/v2/admin/policy/dry-run`) waits for the policy role:
    /// it evaluates the whole catalogue (about a minute for ten million files).
    pub policy_rpc_timeout_secs: u64,
    /// Live status (`GET /api/v2/transactions/{id}/events`): a comment line is sent this often
    /// while nothing changes, so proxies and clients see the stream is alive.
    pub events_keepalive_secs: u64,
    /// Live status: how often a followed transaction is read again even when no change was
    /// announced (changes announced while the broker was away are missed).
    pub events_refresh_secs: u64,
    /// Most paths in one request body: a put or get of `/api/1.0.0` or `/api/v2`, or one chunk
    /// of a put or get sent in chunks (`POST /api/v2/paths`).
    pub max_paths: usize,
    /// Most paths one put or get may list in all, over its chunks: a safety cap, not a design
    /// limit (the paths are never held together in one message or process).
    pub max_request_paths: u64,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// The public client settings `/api/1.0.0/init/` serves to `nlds init` of the Python client.
    pub legacy_init: LegacyInit,
    /// A put on `/api/1.0.0` of a path the holding already has stores a new version when it
    /// changed (size or mtime) and skips it when not, as `/api/v2` puts do. Off (the default):
    /// such a path fails as a conflict, as on NLDS 1.0.x (docs/LEGACY_API.md).
    pub legacy_put_updates: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7070".parse().expect("valid address"),
            public_url: None,
            tokens_file: PathBuf::from("tokens.toml"),
            rpc_timeout_secs: 30,
            policy_rpc_timeout_secs: 600,
            events_keepalive_secs: 15,
            events_refresh_secs: 10,
            max_paths: 50_000,
            max_request_paths: 10_000_000,
            max_body_bytes: 64 << 20,
            legacy_init: Default::default(),
            legacy_put_updates: false,
        }
    }
}

impl ServerConfig {
    pub fn base_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

/// `[server.legacy_init]`: the public client settings `init/` serves. Upstream serves the OAuth
/// client *secret* here behind an encryption whose key the neighbouring unauthenticated endpoint
/// hands out; we serve only what is public, so publishing the key gives nothing away.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LegacyInit {
    /// OAuth2 client id of the public (secret-less) client users log in with.
    pub oauth_client_id: String,
    /// The provider's token endpoint.
    pub oauth_token_url: String,
    /// Scopes the client asks for.
    pub oauth_scopes: String,
    /// The object-store "tenancy" name old clients keep in their config (informational: the
    /// server holds the object-store credentials).
    pub tenancy: String,
    /// Let the `tenancy` parameter of a legacy put select the workers' object-store tenancy of
    /// that name (`[workers.object_store.tenancies.<name>]`). Off by default: published clients
    /// send the tenancy from their config on every request (upstream's object-store host), which
    /// would otherwise fail every put of a client configured before the migration.
    #[serde(skip_serializing)]
    pub select_tenancy: bool,
}

/// Which authenticator checks bearer tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// Tokens listed in `[server] tokens_file` (the embedded default).
    #[default]
    Static,
    /// An OAuth2 resource server for an OpenID Connect provider: `[auth.oidc]`.
    Oidc,
}

/// `[auth]`: how bearer tokens become identities (docs/AUTH.md). Without this section the
/// static tokens file is used, as before.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub kind: AuthKind,
    /// Used when `kind = "oidc"`.
    pub oidc: OidcConfig,
}

/// The asymmetric algorithms accepted unless configured otherwise.
pub const DEFAULT_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// `[auth.oidc]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer identifier; discovery at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// Accepted `aud` values (a string or a list): a token must name one of them.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// Accepted JWS algorithms. `none` is refused; `HS*` need `hmac_secret(_file)`.
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Refetch the JWKS at least this often.
    pub jwks_cache_secs: u64,
    /// At most one JWKS fetch per this many seconds (an unknown `kid` asks for one).
    pub jwks_min_refetch_secs: u64,
    /// Overrides the discovery document's `jwks_uri`.
    pub jwks_uri: Option<String>,
    /// Overrides the discovery document's `introspection_endpoint`.
    pub introspection_endpoint: Option<String>,
    /// Our client at the provider, for introspection. Without it opaque tokens are refused.
    pub client_id: Option<String>,
    /// Never printed (`Debug` redacts it) and never written back out.
    #[serde(skip_serializing)]
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<PathBuf>,
    /// How long an introspection answer is reused, in seconds (a negative one at most 10 s).
    pub introspection_cache_secs: u64,
    /// Most cached introspection answers; when full, expired answers and then the oldest go.
    pub introspection_cache_entries: usize,
    /// Introspections of tokens not in the cache: at most this many per second on average ...
    pub introspection_rate_per_sec: u32,
    /// ... with bursts of up to this many. Beyond that an unknown token gets a 503 (try again),
    /// so a flood of made-up tokens cannot hammer the provider.
    pub introspection_burst: u32,
    /// Refuse an active introspection answer that names no audience (a refresh token, or a
    /// token for nobody in particular).
    pub introspection_require_audience: bool,
    /// The shared secret for `HS256/384/512` tokens (only if those are in `algorithms`).
    #[serde(skip_serializing)]
    pub hmac_secret: Option<SecretString>,
    pub hmac_secret_file: Option<PathBuf>,
    /// Timeout of each request to the provider, in seconds.
    pub http_timeout_secs: u64,
    /// `[auth.oidc.claims]`
    pub claims: ClaimMapping,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: vec!["nlds".into()],
            algorithms: DEFAULT_ALGORITHMS.iter().map(|s| s.to_string()).collect(),
            leeway_secs: 30,
            jwks_cache_secs: 3600,
            jwks_min_refetch_secs: 30,
            jwks_uri: None,
            introspection_endpoint: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            introspection_cache_secs: 30,
            introspection_cache_entries: 10_000,
            introspection_rate_per_sec: 20,
            introspection_burst: 50,
            introspection_require_audience: true,
            hmac_secret: None,
            hmac_secret_file: None,
            http_timeout_secs: 10,
            claims: ClaimMapping::default(),
        }
    }
}

/// How the roles claim is shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolesFormat {
    /// `{"climate": "manager"}` (a value may also be a list of roles: the highest counts).
    #[default]
    Map,
    /// `["climate:manager", "ocean:deputy"]` (or one space-separated string).
    List,
}

/// `[auth.oidc.claims]`: which claims hold the user, groups and roles. A name is a claim name, or
/// a dotted path into nested objects (`resource_access.nlds.roles`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimMapping {
    pub user: String,
    pub groups: String,
    /// The per-group roles claim; empty: no roles from tokens (everyone is USER).
    pub roles: String,
    pub roles_format: RolesFormat,
    /// Between group and role in the `list` format.
    pub roles_separator: String,
    /// Members of any of these groups are ADMIN everywhere.
    pub admin_groups: Vec<String>,
    /// `list` format: entries without a separator that make the caller ADMIN everywhere.
    pub admin_roles: Vec<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            user: "preferred_username".into(),
            groups: "groups".into(),
            roles: "nlds_roles".into(),
            roles_format: RolesFormat::Map,
            roles_separator: ":".into(),
            admin_groups: Vec::new(),
            admin_roles: Vec::new(),
        }
    }
}
