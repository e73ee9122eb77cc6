//! Server settings: `[server]`, `[auth]`, plus the shared `[bus]` and `[workers]` sections.

use std::net::SocketAddr;
use std::path::PathBuf;

use nlds_workers::WorkerConfig;
use nlds_workers::run::BusConfig;
use serde::{Deserialize, Serialize};

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
    /// Most paths accepted in one put or get request.
    pub max_paths: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// The public client settings `/api/1.0.0/init/` serves to `nlds init` of the Python client.
    pub legacy_init: crate::legacy::LegacyInit,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7070".parse().expect("valid address"),
            public_url: None,
            tokens_file: PathBuf::from("tokens.toml"),
            rpc_timeout_secs: 30,
            max_paths: 50_000,
            max_body_bytes: 64 << 20,
            legacy_init: Default::default(),
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
    pub oidc: crate::auth::oidc::OidcConfig,
}

/// The whole settings file as the server reads it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub bus: BusConfig,
    pub workers: WorkerConfig,
}
