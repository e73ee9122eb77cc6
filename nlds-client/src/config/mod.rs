//! Where the client finds its settings, and how `nlds init` and `nlds renew` write them.
//!
//! Lowest to highest precedence:
//!
//! 1. built-in defaults;
//! 2. the config file, `$NLDS_CONFIG`, else `$XDG_CONFIG_HOME/nlds/config.toml`, else
//!    `~/.config/nlds/config.toml`:
//!    ```toml
//!    url = "https://nlds.example.org"
//!    token_file = "~/.config/nlds/token"   # or: token = "..."
//!    group = "my-gws"                      # optional default group
//!    user = "alice"                        # optional, informational: the token says who you are
//!    insecure = false                      # true: do not verify TLS certificates (test servers)
//!    connect_timeout = "10s"               # time to open a connection (a number is seconds)
//!    request_timeout = "2m"                # time for a whole request, answer included
//!    ```
//!    A relative `token_file` is relative to the config file's directory;
//! 3. the environment variables `NLDS_URL`, `NLDS_TOKEN`, `NLDS_GROUP`, `NLDS_INSECURE`,
//!    `NLDS_CONNECT_TIMEOUT` and `NLDS_REQUEST_TIMEOUT`;
//! 4. the flags `--url`, `--token`, `-g/--group`, `-u/--user`, `-k/--insecure`,
//!    `--connect-timeout` and `--request-timeout`.
//!
//! Empty values count as unset. The layers are figment providers merged in that order
//! (`layers`); figment records which layer gave each key, so [`effective`] says where each
//! setting came from (`nlds config show`); [`resolve`] gives the [`Settings`] a command needs.
//! The OAuth2 `[auth]` section is layered the same way, from the same pieces, by
//! `crate::oauth`.
//! The token is a [`Secret`] (a `secrecy::SecretString`): never printed, `Debug` redacts it.
//! [`write()`] updates the config file (mode 0600) keeping everything it is not asked to change,
//! comments included.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::client::ClientOptions;
use crate::error::Error;

pub(crate) mod layers;
#[cfg(test)]
mod tests;
mod values;
mod write;

pub use values::{parse_bool, parse_duration};
pub use write::{Update, Written, write, write_private};

/// A token: a [`SecretString`], so `Debug` prints it redacted and it is zeroed when dropped.
/// A type of its own for what it adds: [`Secret::masked`] (what `nlds config show` prints),
/// `FromStr` (clap parses `--token` into it) and the plain [`Secret::expose`] its callers use.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(SecretString::from(s.into()))
    }
    /// The token itself, to send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    /// What is shown instead of the token: `<hidden, 24 characters>`.
    pub fn masked(&self) -> String {
        format!("<hidden, {} characters>", self.expose().chars().count())
    }
}

impl ExposeSecret<str> for Secret {
    fn expose_secret(&self) -> &str {
        self.expose()
    }
}

impl From<SecretString> for Secret {
    fn from(s: SecretString) -> Self {
        Self(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line option, e.g. `--url`.
    Flag(&'static str),
    /// An environment variable, e.g. `NLDS_URL`.
    Env(&'static str),
    /// The config file.
    File(PathBuf),
    /// The `token_file` named in the config file.
    TokenFile(PathBuf),
    /// Nothing set it.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(name) => write!(f, "option {name}"),
            Source::Env(name) => write!(f, "environment variable {name}"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::TokenFile(p) => write!(f, "token file {}", p.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A setting's value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

/// The settings given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub url: Option<String>,
    pub token: Option<Secret>,
    pub group: Option<String>,
    pub user: Option<String>,
    /// `-k/--insecure` was given.
    pub insecure: bool,
    pub connect_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
}

/// Every setting, with where it came from; the URL and the token may be missing.
#[derive(Debug, Clone)]
pub struct Effective {
    /// The config file that is read (or would be, if it existed).
    pub config_file: Option<PathBuf>,
    /// What chose that file: `NLDS_CONFIG`, `XDG_CONFIG_HOME` or the default (`$HOME`).
    pub config_file_source: Source,
    /// Whether that file exists (and was read).
    pub config_file_found: bool,
    pub url: Option<Sourced<String>>,
    pub token: Option<Sourced<Secret>>,
    pub group: Option<Sourced<String>>,
    pub user: Option<Sourced<String>>,
    pub insecure: Sourced<bool>,
    pub connect_timeout: Sourced<Duration>,
    pub request_timeout: Sourced<Duration>,
    /// The config file sets `url`.
    pub file_has_url: bool,
    /// The config file sets `token` or `token_file`.
    pub file_has_token: bool,
    /// Why the `token_file` named in the config file could not be read (then `token` is unset).
    pub token_problem: Option<String>,
    /// Things to tell the user (e.g. a config file holding a token is readable by others).
    pub warnings: Vec<String>,
}

/// The resolved settings of a command that talks to the server.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub token: Secret,
    pub group: Option<String>,
    pub user: Option<String>,
    pub insecure: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Things to tell the user (e.g. a config file holding a token is readable by others).
    pub warnings: Vec<String>,
}

impl Settings {
    /// The HTTP client options these settings ask for.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            insecure: self.insecure,
            ..ClientOptions::default()
        }
    }
}

/// The keys the config file may hold.
pub const KEYS: [&str; 9] = [
    "url",
    "token",
    "token_file",
    "group",
    "user",
    "insecure",
    "connect_timeout",
    "request_timeout",
    // The OAuth2 login's section (crate::oauth reads it).
    "auth",
];

/// `$NLDS_CONFIG`, else `$XDG_CONFIG_HOME/nlds/config.toml`, else `$HOME/.config/nlds/config.toml`.
pub fn config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    config_path_sourced(env).map(|s| s.value)
}

/// [`config_path`], and what chose it.
pub fn config_path_sourced(env: &dyn Fn(&str) -> Option<String>) -> Option<Sourced<PathBuf>> {
    if let Some(p) = non_empty(env("NLDS_CONFIG")) {
        return Some(Sourced {
            value: PathBuf::from(p),
            source: Source::Env("NLDS_CONFIG"),
        });
    }
    if let Some(x) = non_empty(env("XDG_CONFIG_HOME")).filter(|x| Path::new(x).is_absolute()) {
        return Some(Sourced {
            value: Path::new(&x).join("nlds/config.toml"),
            source: Source::Env("XDG_CONFIG_HOME"),
        });
    }
    non_empty(env("HOME")).map(|h| Sourced {
        value: Path::new(&h).join(".config/nlds/config.toml"),
        source: Source::Default,
    })
}

/// The config file ([`config_path_sourced`]) and, when it exists, its layer; `warnings` as
/// [`layers::read_file`] gives them.
pub(crate) fn read_config(
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(Option<Sourced<PathBuf>>, Option<layers::FileLayer>), Error> {
    let explicit = non_empty(env("NLDS_CONFIG")).is_some();
    let path = config_path_sourced(env);
    let file = match &path {
        Some(p) => layers::read_file(&p.value, explicit, warnings)?,
        None => None,
    };
    Ok((path, file))
}

/// Every setting and where it came from: the config file, the environment (read through `env`)
/// and the command-line `flags`. Fails only on a config file that cannot be read or parsed, or
/// a value that makes no sense; a missing URL or token is left for [`Effective::settings`].
pub fn effective(
    flags: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Effective, Error> {
    let mut warnings = Vec::new();
    let (sourced_path, file) = read_config(env, &mut warnings)?;
    let config_file_source = sourced_path
        .as_ref()
        .map(|s| s.source.clone())
        .unwrap_or(Source::Default);
    let path = sourced_path.map(|s| s.value);
    let home = non_empty(env("HOME")).map(PathBuf::from);
    let found = file.is_some();
    let fig = layers::figment(file.as_ref(), flags, env)?;
    let values = layers::Values::of(&fig)?;
    let source_of = |key: &str| layers::source_of(&fig, key, path.as_deref());
    let sourced = |key: &str, v: Option<String>| {
        v.map(|value| Sourced {
            value,
            source: source_of(key),
        })
    };

    let url = sourced("url", values.url);
    let group = sourced("group", values.group);
    let user = sourced("user", values.user);
    let mut token = values.token.map(|t| Sourced {
        value: Secret::from(t),
        source: source_of("token"),
    });
    let file_values = file.as_ref().map(|f| &f.values);
    let token_file = file_values.and_then(|f| f.token_file.as_ref());
    let mut token_problem = None;
    if token.is_none()
        && let (Some(tf), Some(cf)) = (token_file, &path)
    {
        let full = layers::file_relative(tf, cf, home.as_deref());
        match read_token_file(&full, cf) {
            Ok(t) => {
                token = Some(Sourced {
                    value: Secret::new(t),
                    source: Source::TokenFile(full),
                })
            }
            Err(e) => token_problem = Some(e.to_string()),
        }
    }

    let insecure = match values.insecure {
        Some(value) => Sourced {
            value,
            source: source_of("insecure"),
        },
        None => Sourced {
            value: false,
            source: Source::Default,
        },
    };

    let defaults = ClientOptions::default();
    let duration = |key: &str, v: Option<values::DurationValue>, default: Duration| {
        let Some(v) = v else {
            return Ok(Sourced {
                value: default,
                source: Source::Default,
            });
        };
        let source = source_of(key);
        let value = v.to_duration().map_err(|e| match &source {
            Source::Env(var) => Error::Config(format!("{var}: {e}")),
            _ => Error::Config(format!(
                "config file {}: {key}: {e}",
                path.as_deref().unwrap_or(Path::new("")).display()
            )),
        })?;
        Ok::<_, Error>(Sourced { value, source })
    };
    let connect_timeout = duration(
        "connect_timeout",
        values.connect_timeout,
        defaults.connect_timeout,
    )?;
    let request_timeout = duration(
        "request_timeout",
        values.request_timeout,
        defaults.request_timeout,
    )?;
    for (name, d) in [
        ("connect timeout", &connect_timeout),
        ("request timeout", &request_timeout),
    ] {
        if d.value.is_zero() {
            return Err(Error::Config(format!(
                "the {name} ({}) must be more than 0",
                d.source
            )));
        }
    }

    Ok(Effective {
        file_has_url: file_values.is_some_and(|f| f.url.is_some()),
        file_has_token: file_values.is_some_and(|f| f.token.is_some() || f.token_file.is_some()),
        token_problem,
        config_file: path,
        config_file_source,
        config_file_found: found,
        url,
        token,
        group,
        user,
        insecure,
        connect_timeout,
        request_timeout,
        warnings,
    })
}

impl Effective {
    /// The settings of a command that talks to the server; [`Error::NotConfigured`] without a
    /// URL or a token.
    pub fn settings(self) -> Result<Settings, Error> {
        if let (None, Some(problem)) = (&self.token, &self.token_problem) {
            return Err(Error::Config(problem.clone()));
        }
        match (self.url, self.token) {
            (Some(url), Some(token)) => Ok(Settings {
                url: url.value,
                token: Secret::new(token.value.expose().trim()),
                group: self.group.map(|g| g.value),
                user: self.user.map(|u| u.value),
                insecure: self.insecure.value,
                connect_timeout: self.connect_timeout.value,
                request_timeout: self.request_timeout.value,
                config_file: self.config_file_found.then_some(self.config_file).flatten(),
                warnings: self.warnings,
            }),
            (url, token) => Err(Error::NotConfigured(not_configured_message(
                url.is_none(),
                token.is_none(),
                self.config_file.as_deref(),
                self.config_file_found,
            ))),
        }
    }
}

/// Resolves the settings of a command that talks to the server.
pub fn resolve(flags: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Error> {
    effective(flags, env)?.settings()
}

/// The short first-run text: what is missing and the one command that fixes it.
pub fn not_configured_message(
    url_missing: bool,
    token_missing: bool,
    path: Option<&Path>,
    found: bool,
) -> String {
    let shown = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.config/nlds/config.toml".into());
    let file = if found {
        format!("config file: {shown}")
    } else {
        format!("config file would be at {shown}")
    };
    match (url_missing, token_missing) {
        (true, true) => format!(
            "nlds is not configured yet: run `nlds init --url URL` or set NLDS_URL and NLDS_TOKEN; {file}"
        ),
        (true, false) => format!(
            "nlds does not know the server's URL: run `nlds init --url URL` or set NLDS_URL; {file}"
        ),
        _ => format!(
            "nlds has no token: run `nlds renew` (it reads the token from standard input) or set NLDS_TOKEN; {file}"
        ),
    }
}

fn read_token_file(full: &Path, config_file: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(full).map_err(|e| {
        Error::Config(format!(
            "cannot read the token_file {} named in {}: {e}",
            full.display(),
            config_file.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::Config(format!(
            "the token_file {} is empty",
            full.display()
        )));
    }
    Ok(token.to_owned())
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "the config file {} holds a token and can be read by others; run: chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> Option<String> {
    None
}

pub(crate) fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}
