//! The one owner of nlds-rs settings.
//!
//! Every section of the settings file is defined here, for the API server (`[server]`,
//! `[auth]`), both sides of the bus (`[bus]`) and the workers (`[workers]` and its tables), and
//! loaded one way, layered lowest to highest:
//!
//! 1. the TOML file (`--config` / `NLDS_SETTINGS`; without one, every key has its default);
//! 2. the environment: the established variables ([`ENV_ALIASES`]), then `NLDS__SECTION__KEY`
//!    for any key at all (`__` separates the levels: `NLDS__WORKERS__OBJECT_STORE__BUCKET`);
//! 3. flags, given by the program as a figment provider ([`Settings::load_with`]); [`SetFlag`] is
//!    the generic one, `--set SECTION.KEY=VALUE` for any key.
//!
//! Invalid settings fail at start with an error that names the key, where its value came from,
//! and what is wrong. Secrets are [`SecretString`]s: `Debug` prints them redacted and they are
//! never serialized back out.
//!
//! Sections later issues add (`policy`, `quota`, `notify`, ...) become fields of
//! [`Settings`] with `#[serde(default)]`, a table in `nlds.example.toml`, and nothing else: the
//! environment and flags layers cover them without further code. Unknown top-level sections are
//! ignored, so one file can carry sections other programs read.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

pub mod audit;
pub mod bus;
pub mod cold;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod object_store;
pub mod policy;
pub mod server;
pub mod workers;

pub use audit::AuditConfig;
pub use bus::{BusConfig, BusKind};
pub use cold::{ColdConfig, DirConfig, GlacierConfig, XrootdConfig};
pub use figment;
pub use memory::MemoryConfig;
pub use metrics::MetricsConfig;
pub use notify::{NotifyConfig, SmtpTls};
pub use object_store::{ObjectStoreConfig, REDACTED, TenancyConfig};
pub use policy::{PolicyConfig, Watermark};
pub use secrecy::{self, ExposeSecret, SecretString};
pub use server::{
    AuthConfig, AuthKind, ClaimMapping, LegacyInit, OidcConfig, RolesFormat, ServerConfig,
};
pub use workers::{
    ArchiveConfig, DeleteConfig, IndexConfig, PosixChecks, PosixPolicy, TransferConfig,
    VersionsConfig, WorkerConfig,
};

/// The settings file, as every program reads it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `[server]`: the API server.
    pub server: ServerConfig,
    /// `[auth]`: how the API server checks bearer tokens.
    pub auth: AuthConfig,
    /// `[bus]`: the message bus.
    pub bus: BusConfig,
    /// `[workers]`: the worker roles (object store, cold tier, archive, delete, ...).
    pub workers: WorkerConfig,
    /// `[policy]`: the tiering policy and how the policy role runs it.
    pub policy: PolicyConfig,
    /// `[memory]`: how a process keeps its resident memory bounded.
    pub memory: MemoryConfig,
    /// `[notify]`: e-mail and webhook notifications, operator alerts.
    pub notify: NotifyConfig,
    /// `[metrics]`: each process's Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Where these settings were read from, so that a process can read them again (`nlds admin
    /// policy reload`, SIGHUP: see [`Settings::reread`]). Not a settings key.
    #[serde(skip)]
    pub origin: Origin,
}

/// The layers a [`Settings`] was read from: the file, and the `--set` flags over the
/// environment. Default: built in code (nothing to read again).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Read by [`Settings::load_cli`] (else built in code).
    pub read: bool,
    pub path: Option<PathBuf>,
    pub set: Vec<SetFlag>,
}

/// The variable that names the settings file (read by the programs' `--config` flags).
pub const SETTINGS_ENV: &str = "NLDS_SETTINGS";

/// The prefix of `NLDS__SECTION__KEY` variables; `__` also separates nested keys.
pub const ENV_PREFIX: &str = "NLDS__";

/// The established environment variables and the keys they set (an empty value is ignored).
/// `NLDS_AMQP_URL` also selects the RabbitMQ bus.
pub const ENV_ALIASES: [(&str, &str); 7] = [
    ("NLDS_AMQP_URL", "bus.amqp_url"),
    ("NLDS_DATABASE_URL", "workers.database_url"),
    ("NLDS_S3_ENDPOINT", "workers.object_store.endpoint"),
    ("NLDS_S3_ACCESS_KEY", "workers.object_store.access_key"),
    (
        "NLDS_S3_ACCESS_KEY_FILE",
        "workers.object_store.access_key_file",
    ),
    (
        "NLDS_S3_SECRET_KEY_FILE",
        "workers.object_store.secret_key_file",
    ),
    ("NLDS_S3_BUCKET", "workers.object_store.bucket"),
];

/// Why the settings cannot be used: names the key and the problem.
#[derive(Debug)]
pub struct Error(Box<figment::Error>);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.0;
        write!(f, "invalid settings")?;
        if !e.path.is_empty() {
            write!(f, ": key {}", e.path.join("."))?;
        }
        if let Some(md) = &e.metadata {
            match &md.source {
                Some(src) => write!(f, " (from {src})")?,
                None => write!(f, " (from {})", md.name)?,
            }
        }
        write!(f, ": {}", e.kind)?;
        for more in e.clone().into_iter().skip(1) {
            write!(f, "; {more}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<figment::Error> for Error {
    fn from(e: figment::Error) -> Self {
        Self(Box::new(e))
    }
}

impl Settings {
    /// The file and environment layers, for a caller that adds its own (flags) on top.
    pub fn figment(path: Option<&Path>) -> Figment {
        let mut fig = Figment::new();
        if let Some(p) = path {
            // `file_exact`: a named file that is missing is an error, not an empty layer.
            fig = fig.merge(Toml::file_exact(p));
        }
        for (var, key) in ENV_ALIASES {
            if let Some(v) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
                fig = fig.merge(OneKey::env(var, key, &v));
                if var == "NLDS_AMQP_URL" {
                    fig = fig.merge(OneKey::env(var, "bus.kind", "rabbitmq"));
                }
            }
        }
        // `NLDS__A__B` sets `a.b`: figment's `Env` finds and names the keys, one layer per
        // variable so that an error names the variable.
        let mut vars: Vec<_> = Env::prefixed(ENV_PREFIX).split("__").iter().collect();
        vars.sort();
        for (key, value) in vars {
            let var = format!(
                "{ENV_PREFIX}{}",
                key.as_str().replace('.', "__").to_uppercase()
            );
            fig = fig.merge(OneKey::env(&var, key.as_str(), &value));
        }
        fig
    }

    /// Reads the settings: `path` (if any) < environment.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        Self::from_figment(&Self::figment(path))
    }

    /// Reads the settings: `path` (if any) < environment < `flags`.
    pub fn load_with(path: Option<&Path>, flags: impl figment::Provider) -> Result<Self, Error> {
        Self::from_figment(&Self::figment(path).merge(flags))
    }

    /// The settings a binary was started with: the file `path` (if any) < the environment < its
    /// `--set` flags. The error says what is wrong, and in which file.
    pub fn load_cli(path: Option<&Path>, set: Vec<SetFlag>) -> Result<Self, String> {
        let flags = set
            .iter()
            .cloned()
            .fold(Figment::new(), |fig, flag| fig.merge(flag));
        let mut settings = Self::load_with(path, flags).map_err(|e| match path {
            Some(p) => format!("{e} (settings file {})", p.display()),
            None => e.to_string(),
        })?;
        settings.origin = Origin {
            read: true,
            path: path.map(Path::to_path_buf),
            set,
        };
        Ok(settings)
    }

    /// The settings read again from the same file, environment and flags (what a reload sees);
    /// settings built in code are answered as they are.
    pub fn reread(&self) -> Result<Self, String> {
        if self.origin.read {
            Self::load_cli(self.origin.path.as_deref(), self.origin.set.clone())
        } else {
            Ok(self.clone())
        }
    }

    /// Extracts and checks the settings of a figment.
    pub fn from_figment(fig: &Figment) -> Result<Self, Error> {
        // Lossy: a string from the environment is read as the number or boolean a key wants.
        Ok(fig.extract_lossy()?)
    }
}

/// One `--set SECTION.KEY=VALUE` flag: a figment layer that sets one key (`__`-free, dotted:
/// `workers.object_store.bucket`). The value is read as an environment variable's is: arrays and
/// tables are parsed (`[2000, 10000]`), anything else is a string the key's type is read from.
/// Merge the flags, in order, over [`Settings::figment`] (or pass them to [`Settings::load_with`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SetFlag(OneKey);

impl std::str::FromStr for SetFlag {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not SECTION.KEY=VALUE"))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(|part| part.trim().is_empty()) {
            return Err(format!(
                "{key:?} is not a dotted settings key like workers.log_dir"
            ));
        }
        Ok(Self(OneKey::new(format!("flag --set {key}"), key, value)))
    }
}

impl Provider for SetFlag {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.0.data()
    }
}

/// One environment variable or flag, as a figment layer that sets one key.
#[derive(Debug, Clone, PartialEq)]
struct OneKey {
    /// Where the value came from, as an error names it.
    origin: String,
    key: String,
    value: Value,
}

impl OneKey {
    fn env(var: &str, key: &str, raw: &str) -> Self {
        Self::new(format!("environment variable {var}"), key, raw)
    }

    fn new(origin: String, key: &str, raw: &str) -> Self {
        // Arrays and tables are parsed (`[2000, 10000]`); anything else stays the string it is,
        // so that `12345` is a valid secret key and `007` a valid bucket: the lossy extraction
        // reads numbers and booleans from strings where a key wants them.
        let value = match raw.parse::<Value>() {
            Ok(v @ (Value::Array(..) | Value::Dict(..))) => v,
            _ => Value::from(raw.to_owned()),
        };
        Self {
            origin,
            key: key.to_owned(),
            value,
        }
    }
}

impl Provider for OneKey {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict = figment::util::nest(&self.key, self.value.clone())
            .into_dict()
            .unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
mod tests;
