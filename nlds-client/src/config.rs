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
//! Empty values count as unset. [`effective`] says where each setting came from (`nlds config
//! show`); [`resolve`] gives the [`Settings`] a command needs. The token is never printed: [`Secret`]
//! hides it from `Debug`. [`write()`] updates the config file (mode 0600) keeping everything it is
//! not asked to change, comments included.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::client::ClientOptions;
use crate::error::Error;

/// A token, hidden from `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The token itself, to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// What is shown instead of the token: `<hidden, 24 characters>`.
    pub fn masked(&self) -> String {
        format!("<hidden, {} characters>", self.0.chars().count())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
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

/// The config file's contents.
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    group: Option<String>,
    user: Option<String>,
    insecure: Option<bool>,
    connect_timeout: Option<DurationValue>,
    request_timeout: Option<DurationValue>,
}

/// `10` (seconds) or `"10s"`, `"500ms"`, `"2m"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(f64),
    Text(String),
}

impl DurationValue {
    fn to_duration(&self) -> Result<Duration, String> {
        match self {
            DurationValue::Seconds(s) => parse_duration(&s.to_string()),
            DurationValue::Text(t) => parse_duration(t),
        }
    }
}

/// `5` or `5s` (seconds, fractions allowed), `250ms`, `10m`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30, 30s, 500ms, 5m, 2h)"))?;
    if !v.is_finite() || v < 0.0 || v * mult > 1e9 {
        return Err(format!("{s:?} is not a sensible duration"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

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

/// Every setting and where it came from: the config file, the environment (read through `env`)
/// and the command-line `flags`. Fails only on a config file that cannot be read or parsed, or
/// a value that makes no sense; a missing URL or token is left for [`Effective::settings`].
pub fn effective(
    flags: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Effective, Error> {
    let explicit = non_empty(env("NLDS_CONFIG")).is_some();
    let sourced_path = config_path_sourced(env);
    let config_file_source = sourced_path
        .as_ref()
        .map(|s| s.source.clone())
        .unwrap_or(Source::Default);
    let path = sourced_path.map(|s| s.value);
    let home = non_empty(env("HOME")).map(PathBuf::from);
    let mut warnings = Vec::new();
    let mut found = false;
    let mut file = FileConfig::default();
    if let Some(path) = &path {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bad =
                    |msg: String| Error::Config(format!("config file {}: {msg}", path.display()));
                let table: toml::Table =
                    toml::from_str(&text).map_err(|e| bad(e.message().to_owned()))?;
                for key in table.keys() {
                    if !KEYS.contains(&key.as_str()) {
                        warnings.push(format!(
                            "config file {}: unknown key {key:?} is ignored (known keys: {})",
                            path.display(),
                            KEYS.join(", ")
                        ));
                    }
                }
                file = table
                    .try_into()
                    .map_err(|e: toml::de::Error| bad(e.message().to_owned()))?;
                found = true;
                if file.token.is_some() && file.token_file.is_some() {
                    return Err(bad("set either token or token_file, not both".into()));
                }
                if file.token.is_some()
                    && let Some(w) = readable_by_others(path)
                {
                    warnings.push(w);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {}
            Err(e) => {
                return Err(Error::Config(format!(
                    "cannot read the config file {} (from $NLDS_CONFIG): {e}",
                    path.display()
                )));
            }
        }
    }
    let file_src = || Source::File(path.clone().unwrap_or_default());

    let pick = |flag: Option<String>,
                flag_name: &'static str,
                var: Option<&'static str>,
                from_file: Option<String>|
     -> Option<Sourced<String>> {
        if let Some(v) = non_empty(flag) {
            return Some(Sourced {
                value: v,
                source: Source::Flag(flag_name),
            });
        }
        if let Some(var) = var
            && let Some(v) = non_empty(env(var))
        {
            return Some(Sourced {
                value: v,
                source: Source::Env(var),
            });
        }
        non_empty(from_file).map(|v| Sourced {
            value: v,
            source: file_src(),
        })
    };

    let url = pick(
        flags.url.clone(),
        "--url",
        Some("NLDS_URL"),
        file.url.clone(),
    );
    let group = pick(
        flags.group.clone(),
        "--group",
        Some("NLDS_GROUP"),
        file.group.clone(),
    );
    let user = pick(flags.user.clone(), "--user", None, file.user.clone());
    let mut token = pick(
        flags.token.as_ref().map(|t| t.expose().to_owned()),
        "--token",
        Some("NLDS_TOKEN"),
        file.token.clone(),
    )
    .map(|s| Sourced {
        value: Secret(s.value),
        source: s.source,
    });
    let mut token_problem = None;
    if token.is_none()
        && let (Some(tf), Some(cf)) = (&file.token_file, &path)
        && found
    {
        let full = token_file_path(tf, cf, home.as_deref());
        match read_token_file(&full, cf) {
            Ok(t) => {
                token = Some(Sourced {
                    value: Secret(t),
                    source: Source::TokenFile(full),
                })
            }
            Err(e) => token_problem = Some(e.to_string()),
        }
    }

    let insecure = if flags.insecure {
        Sourced {
            value: true,
            source: Source::Flag("--insecure"),
        }
    } else if let Some(v) = non_empty(env("NLDS_INSECURE")) {
        Sourced {
            value: parse_bool(&v).ok_or_else(|| {
                Error::Config(format!(
                    "NLDS_INSECURE={v:?} is not a boolean (use 1/true/yes or 0/false/no)"
                ))
            })?,
            source: Source::Env("NLDS_INSECURE"),
        }
    } else if let Some(v) = file.insecure {
        Sourced {
            value: v,
            source: file_src(),
        }
    } else {
        Sourced {
            value: false,
            source: Source::Default,
        }
    };

    let defaults = ClientOptions::default();
    let duration = |flag: Option<Duration>,
                    flag_name: &'static str,
                    var: &'static str,
                    from_file: &Option<DurationValue>,
                    key: &str,
                    default: Duration|
     -> Result<Sourced<Duration>, Error> {
        if let Some(d) = flag {
            return Ok(Sourced {
                value: d,
                source: Source::Flag(flag_name),
            });
        }
        if let Some(v) = non_empty(env(var)) {
            let d = parse_duration(&v).map_err(|e| Error::Config(format!("{var}: {e}")))?;
            return Ok(Sourced {
                value: d,
                source: Source::Env(var),
            });
        }
        if let Some(v) = from_file {
            let d = v.to_duration().map_err(|e| {
                Error::Config(format!(
                    "config file {}: {key}: {e}",
                    path.as_deref().unwrap_or(Path::new("")).display()
                ))
            })?;
            return Ok(Sourced {
                value: d,
                source: file_src(),
            });
        }
        Ok(Sourced {
            value: default,
            source: Source::Default,
        })
    };
    let connect_timeout = duration(
        flags.connect_timeout,
        "--connect-timeout",
        "NLDS_CONNECT_TIMEOUT",
        &file.connect_timeout,
        "connect_timeout",
        defaults.connect_timeout,
    )?;
    let request_timeout = duration(
        flags.request_timeout,
        "--request-timeout",
        "NLDS_REQUEST_TIMEOUT",
        &file.request_timeout,
        "request_timeout",
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
        file_has_url: non_empty(file.url.clone()).is_some(),
        file_has_token: non_empty(file.token.clone()).is_some() || file.token_file.is_some(),
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
                token: Secret(token.value.0.trim().to_owned()),
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

fn token_file_path(tf: &Path, config_file: &Path, home: Option<&Path>) -> PathBuf {
    let expanded = match (tf.to_str(), home) {
        (Some(s), Some(h)) if s.starts_with("~/") => h.join(&s[2..]),
        _ => tf.to_path_buf(),
    };
    if expanded.is_absolute() {
        expanded
    } else {
        config_file
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(expanded)
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

/// `1/true/yes/on` or `0/false/no/off`, in any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
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

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

// ----- writing -----

/// What `nlds init` or `nlds renew` changes; `None` leaves a key as it is.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub url: Option<String>,
    pub token: Option<Secret>,
    pub group: Option<String>,
    pub user: Option<String>,
    pub insecure: Option<bool>,
}

/// What [`write()`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The config file.
    pub path: PathBuf,
    /// It did not exist before.
    pub created: bool,
    /// The token went to this `token_file` (named in the config file) rather than into it.
    pub token_file: Option<PathBuf>,
    /// The keys that were set, in the order of [`KEYS`].
    pub keys: Vec<&'static str>,
}

/// Updates the config file at `path` with `update`, keeping every other key and comment. The
/// file (and a `token_file` it names, which receives the token) is written with mode 0600 by
/// renaming a fresh file over it; missing directories are created (mode 0700).
pub fn write(path: &Path, update: &Update, home: Option<&Path>) -> Result<Written, Error> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read the config file {}: {e}",
                path.display()
            )));
        }
    };
    let created = existing.is_none();
    let mut doc: toml_edit::DocumentMut =
        existing
            .as_deref()
            .unwrap_or("")
            .parse()
            .map_err(|e: toml_edit::TomlError| {
                Error::Config(format!("config file {}: {}", path.display(), e.message()))
            })?;
    let mut keys = Vec::new();
    let mut token_file = None;
    if let Some(url) = &update.url {
        doc["url"] = toml_edit::value(url.as_str());
        keys.push("url");
    }
    if let Some(token) = &update.token {
        match doc.get("token_file").and_then(|v| v.as_str()) {
            Some(tf) => {
                let full = token_file_path(Path::new(tf), path, home);
                write_private(&full, &format!("{}\n", token.expose()))?;
                token_file = Some(full);
                keys.push("token_file");
            }
            None => {
                doc["token"] = toml_edit::value(token.expose());
                keys.push("token");
            }
        }
    }
    if let Some(group) = &update.group {
        doc["group"] = toml_edit::value(group.as_str());
        keys.push("group");
    }
    if let Some(user) = &update.user {
        doc["user"] = toml_edit::value(user.as_str());
        keys.push("user");
    }
    if let Some(insecure) = update.insecure {
        doc["insecure"] = toml_edit::value(insecure);
        keys.push("insecure");
    }
    let mut text = doc.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    write_private(path, &text)?;
    Ok(Written {
        path: path.to_owned(),
        created,
        token_file,
        keys,
    })
}

/// Writes `text` to `path` with mode 0600, atomically (a fresh file renamed over it). A symlink
/// at `path` is followed, so the file it points to is replaced and the link kept.
pub fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    let fail = |what: &str, p: &Path, e: std::io::Error| {
        Error::Config(format!("cannot {what} {}: {e}", p.display()))
    };
    let real = match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_symlink() => {
            std::fs::canonicalize(path).map_err(|e| fail("follow the link", path, e))?
        }
        _ => path.to_owned(),
    };
    let dir = real
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| fail("create the directory", dir, e))?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &real)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", &real, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write_file(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    #[test]
    fn file_then_env_then_flags() {
        let home = tempfile::tempdir().unwrap();
        let cfg = home.path().join(".config/nlds/config.toml");
        write_file(
            &cfg,
            "url = \"https://file.example\"\ntoken = \"file-token\"\ngroup = \"fgroup\"\n",
        );
        let h = home.path().to_str().unwrap();

        let s = resolve(&Overrides::default(), &env_of(&[("HOME", h)])).unwrap();
        assert_eq!(s.url, "https://file.example");
        assert_eq!(s.token.expose(), "file-token");
        assert_eq!(s.group.as_deref(), Some("fgroup"));
        assert_eq!(s.config_file.as_deref(), Some(cfg.as_path()));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert!(!s.insecure);
        assert_eq!(s.connect_timeout, ClientOptions::default().connect_timeout);

        let env = env_of(&[
            ("HOME", h),
            ("NLDS_URL", "https://env.example"),
            ("NLDS_TOKEN", "env-token"),
            ("NLDS_GROUP", ""),
        ]);
        let s = resolve(&Overrides::default(), &env).unwrap();
        assert_eq!(s.url, "https://env.example");
        assert_eq!(s.token.expose(), "env-token");
        assert_eq!(
            s.group.as_deref(),
            Some("fgroup"),
            "empty env values are unset"
        );

        let flags = Overrides {
            url: Some("https://flag.example".into()),
            token: Some(Secret::new("flag-token")),
            group: Some("flaggroup".into()),
            ..Overrides::default()
        };
        let s = resolve(&flags, &env).unwrap();
        assert_eq!(
            (s.url.as_str(), s.token.expose(), s.group.as_deref()),
            ("https://flag.example", "flag-token", Some("flaggroup"))
        );
        assert!(!format!("{s:?}").contains("flag-token"));
    }

    #[test]
    fn sources_are_reported() {
        let home = tempfile::tempdir().unwrap();
        let cfg = home.path().join("xdg/nlds/config.toml");
        write_file(
            &cfg,
            "url = \"https://file.example\"\ntoken = \"t\"\ninsecure = true\nconnect_timeout = 3\nrequest_timeout = \"1m\"\ncolour = \"red\"\n",
        );
        let xdg = home.path().join("xdg");
        let env = env_of(&[
            ("HOME", "/nowhere"),
            ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
            ("NLDS_GROUP", "envgroup"),
            ("NLDS_REQUEST_TIMEOUT", "90s"),
        ]);
        let flags = Overrides {
            user: Some("bob".into()),
            connect_timeout: Some(Duration::from_secs(1)),
            ..Overrides::default()
        };
        let e = effective(&flags, &env).unwrap();
        assert_eq!(e.config_file.as_deref(), Some(cfg.as_path()));
        assert!(e.config_file_found && e.file_has_url && e.file_has_token);
        let file = Source::File(cfg.clone());
        assert_eq!(e.url.as_ref().unwrap().source, file);
        assert_eq!(e.token.as_ref().unwrap().source, file);
        assert_eq!(e.group.as_ref().unwrap().source, Source::Env("NLDS_GROUP"));
        assert_eq!(e.user.as_ref().unwrap().source, Source::Flag("--user"));
        assert_eq!(
            e.insecure,
            Sourced {
                value: true,
                source: file.clone()
            }
        );
        assert_eq!(
            e.connect_timeout,
            Sourced {
                value: Duration::from_secs(1),
                source: Source::Flag("--connect-timeout")
            }
        );
        assert_eq!(
            e.request_timeout,
            Sourced {
                value: Duration::from_secs(90),
                source: Source::Env("NLDS_REQUEST_TIMEOUT")
            }
        );
        assert_eq!(e.warnings.len(), 1, "{:?}", e.warnings);
        assert!(e.warnings[0].contains("unknown key \"colour\""));
        let s = e.settings().unwrap();
        assert!(s.insecure);
        let o = s.client_options();
        assert!(o.insecure);
        assert_eq!(o.request_timeout, Duration::from_secs(90));

        let e = effective(
            &Overrides::default(),
            &env_of(&[("NLDS_INSECURE", "maybe"), ("HOME", "/nowhere")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("NLDS_INSECURE"), "{e}");
        let e = effective(
            &Overrides::default(),
            &env_of(&[("NLDS_CONNECT_TIMEOUT", "0"), ("HOME", "/nowhere")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("must be more than 0"), "{e}");
    }

    #[test]
    fn token_file_and_nlds_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("elsewhere.toml");
        write_file(&cfg, "url = \"https://x\"\ntoken_file = \"tok\"\n");
        write_file(&dir.path().join("tok"), "  secret-from-file\n");
        let env = env_of(&[("NLDS_CONFIG", cfg.to_str().unwrap())]);
        let e = effective(&Overrides::default(), &env).unwrap();
        assert_eq!(
            e.token.as_ref().unwrap().source,
            Source::TokenFile(dir.path().join("tok"))
        );
        let s = e.settings().unwrap();
        assert_eq!(s.token.expose(), "secret-from-file");
        assert_eq!(s.group, None);

        write_file(&cfg, "url = \"https://x\"\ntoken_file = \"missing\"\n");
        let e = resolve(&Overrides::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the token_file"), "{e}");

        write_file(
            &cfg,
            "url = \"https://x\"\ntoken = \"a\"\ntoken_file = \"tok\"\n",
        );
        let e = resolve(&Overrides::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");

        write_file(&cfg, "url = [\n");
        let e = resolve(&Overrides::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("elsewhere.toml"), "{e}");

        write_file(&cfg, "url = \"https://x\"\ninsecure = \"yes\"\n");
        let e = resolve(&Overrides::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("elsewhere.toml"), "{e}");

        let gone = dir.path().join("gone.toml");
        let env = env_of(&[("NLDS_CONFIG", gone.to_str().unwrap())]);
        let e = resolve(&Overrides::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the config file"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn warns_about_a_readable_token() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        write_file(&cfg, "url = \"https://x\"\ntoken = \"t\"\n");
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
        let env = env_of(&[("NLDS_CONFIG", cfg.to_str().unwrap())]);
        let s = resolve(&Overrides::default(), &env).unwrap();
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("chmod 600"));
    }

    #[test]
    fn nothing_configured_says_how() {
        let home = tempfile::tempdir().unwrap();
        let env = env_of(&[("HOME", home.path().to_str().unwrap())]);
        let e = resolve(&Overrides::default(), &env).unwrap_err();
        assert!(matches!(e, Error::NotConfigured(_)));
        let msg = e.to_string();
        let path = home.path().join(".config/nlds/config.toml");
        assert_eq!(
            msg,
            format!(
                "nlds is not configured yet: run `nlds init --url URL` or set NLDS_URL and NLDS_TOKEN; config file would be at {}",
                path.display()
            )
        );
        let env = env_of(&[("NLDS_URL", "https://x")]);
        let msg = resolve(&Overrides::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("nlds has no token: run `nlds renew`"),
            "{msg}"
        );
        let env = env_of(&[("NLDS_TOKEN", "t")]);
        let msg = resolve(&Overrides::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("nlds init --url URL"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn writing_keeps_what_is_not_given_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("a/b/config.toml");
        let w = write(
            &cfg,
            &Update {
                url: Some("https://one".into()),
                token: Some(Secret::new("tok-1")),
                group: Some("g1".into()),
                ..Update::default()
            },
            None,
        )
        .unwrap();
        assert!(w.created);
        assert_eq!(w.keys, vec!["url", "token", "group"]);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cfg), 0o600);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);

        // A comment and an unknown key survive; only the group changes.
        let text = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(&cfg, format!("# mine\n{text}extra = 1\n")).unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = write(
            &cfg,
            &Update {
                group: Some("g2".into()),
                insecure: Some(true),
                ..Update::default()
            },
            None,
        )
        .unwrap();
        assert!(!w.created);
        assert_eq!(w.keys, vec!["group", "insecure"]);
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert_eq!(
            text,
            "# mine\nurl = \"https://one\"\ntoken = \"tok-1\"\ngroup = \"g2\"\nextra = 1\ninsecure = true\n"
        );
        assert_eq!(mode(&cfg), 0o600, "an existing file is made private");

        // With a token_file, the token goes there.
        std::fs::write(&cfg, "url = \"https://one\"\ntoken_file = \"tok\"\n").unwrap();
        let w = write(
            &cfg,
            &Update {
                token: Some(Secret::new("tok-2")),
                ..Update::default()
            },
            None,
        )
        .unwrap();
        let tf = dir.path().join("a/b/tok");
        assert_eq!(w.token_file.as_deref(), Some(tf.as_path()));
        assert_eq!(std::fs::read_to_string(&tf).unwrap(), "tok-2\n");
        assert_eq!(mode(&tf), 0o600);
        assert!(!std::fs::read_to_string(&cfg).unwrap().contains("tok-2"));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // A symlinked config file stays a symlink.
        let real = dir.path().join("dotfiles/nlds.toml");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, "url = \"https://old\"\n").unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write(
            &link,
            &Update {
                url: Some("https://new".into()),
                ..Update::default()
            },
            None,
        )
        .unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read_to_string(&real).unwrap(),
            "url = \"https://new\"\n"
        );
    }
}
