//! The OAuth2 settings: the config file's `[auth]` section, the `NLDS_AUTH_*` environment and
//! the flags of `nlds login`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DEFAULT_DEVICE_SCOPES, DEFAULT_REFRESH_MARGIN, DEFAULT_TOKEN_FILE};
use crate::client::ClientOptions;
use crate::config::{self, Secret};
use crate::error::{Error, Result};

// ----- settings -----

/// The `[auth]` section as written in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    issuer: Option<String>,
    client_id: Option<String>,
    scopes: Option<ScopesValue>,
    audience: Option<String>,
    token_file: Option<PathBuf>,
    client_secret_file: Option<PathBuf>,
    client_secret: Option<String>,
    refresh_margin: Option<toml::Value>,
}

/// `scopes = ["openid", "nlds"]` or `scopes = "openid nlds"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ScopesValue {
    List(Vec<String>),
    Text(String),
}

impl ScopesValue {
    fn into_vec(self) -> Vec<String> {
        match self {
            ScopesValue::List(v) => v
                .into_iter()
                .flat_map(|s| split_scopes(&s))
                .collect::<Vec<_>>(),
            ScopesValue::Text(t) => split_scopes(&t),
        }
    }
}

fn split_scopes(s: &str) -> Vec<String> {
    s.split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Settings given on the command line of `nlds login` (they win over the environment and the
/// config file).
#[derive(Debug, Clone, Default)]
pub struct AuthFlags {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    /// `-` reads the secret from standard input (the caller does that and passes `client_secret`).
    pub client_secret_file: Option<PathBuf>,
    /// A secret read by the caller (from standard input).
    pub client_secret: Option<Secret>,
}

/// Where the client secret of a service account comes from (never a plain command-line value,
/// which other users could see in `ps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    /// `NLDS_AUTH_CLIENT_SECRET`.
    Env,
    /// A file: `--client-secret-file`, `NLDS_AUTH_CLIENT_SECRET_FILE` or `client_secret_file`.
    File(PathBuf),
    /// `client_secret` in the config file.
    ConfigFile,
    /// Standard input (`--client-secret-file -`).
    Stdin,
}

/// The OAuth2 settings of this client: who the provider is and how we log in.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The issuer URL; its `/.well-known/openid-configuration` names the endpoints.
    pub issuer: String,
    pub client_id: String,
    /// Scopes asked for; empty: [`DEFAULT_DEVICE_SCOPES`] for the device grant, none for client
    /// credentials.
    pub scopes: Vec<String>,
    /// The API the tokens are for, sent as the RFC 8707 `resource` parameter.
    pub audience: Option<String>,
    /// Where the tokens are kept.
    pub token_file: PathBuf,
    /// The client secret (client credentials), if one is configured, and where it came from.
    pub client_secret: Option<(Secret, SecretFrom)>,
    /// Why the configured client secret could not be read (reported when it is needed).
    pub client_secret_problem: Option<String>,
    pub refresh_margin: Duration,
    /// HTTP settings (timeouts, TLS verification) shared with the NLDS client.
    pub http: ClientOptions,
    /// The config file, if there is one (where `nlds login` saves `[auth]`).
    pub config_file: Option<PathBuf>,
}

impl AuthSettings {
    /// The scopes to ask for with `grant`.
    pub fn scopes_for(&self, grant: Grant) -> Vec<String> {
        if !self.scopes.is_empty() {
            return self.scopes.clone();
        }
        match grant {
            Grant::DeviceCode => DEFAULT_DEVICE_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Grant::ClientCredentials => Vec::new(),
        }
    }

    /// The client secret, or an error that says how to give one.
    pub fn secret(&self) -> Result<&Secret> {
        if let Some((s, _)) = &self.client_secret {
            return Ok(s);
        }
        if let Some(p) = &self.client_secret_problem {
            return Err(Error::Config(p.clone()));
        }
        Err(Error::Config(format!(
            "client credentials need the secret of client {:?}: put it in a file named by \
             --client-secret-file, $NLDS_AUTH_CLIENT_SECRET_FILE or client_secret_file in [auth], \
             or set $NLDS_AUTH_CLIENT_SECRET",
            self.client_id
        )))
    }
}

/// Reads the `[auth]` section of `config_file` (if any): `Ok(None)` when the file does not exist
/// or has no `[auth]`.
fn read_file_auth(config_file: Option<&Path>) -> Result<Option<FileAuth>> {
    let Some(path) = config_file else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read the config file {}: {e}",
                path.display()
            )));
        }
    };
    let bad = |msg: String| Error::Config(format!("config file {}: [auth]: {msg}", path.display()));
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| Error::Config(format!("config file {}: {}", path.display(), e.message())))?;
    let Some(auth) = table.get("auth") else {
        return Ok(None);
    };
    let auth = auth
        .clone()
        .try_into::<FileAuth>()
        .map_err(|e| bad(e.message().to_owned()))?;
    Ok(Some(auth))
}

/// Whether OAuth2 is configured: an issuer in `[auth]` or `$NLDS_AUTH_ISSUER`.
pub fn configured(env: &dyn Fn(&str) -> Option<String>) -> Result<bool> {
    if non_empty(env("NLDS_AUTH_ISSUER")).is_some() {
        return Ok(true);
    }
    let path = config::config_path(env);
    Ok(read_file_auth(path.as_deref())?
        .and_then(|a| non_empty(a.issuer))
        .is_some())
}

/// The OAuth2 settings, lowest to highest precedence: the config file's `[auth]`, the
/// environment (`NLDS_AUTH_ISSUER`, `NLDS_AUTH_CLIENT_ID`, `NLDS_AUTH_SCOPES`,
/// `NLDS_AUTH_AUDIENCE`, `NLDS_AUTH_TOKEN_FILE`, `NLDS_AUTH_CLIENT_SECRET(_FILE)`,
/// `NLDS_AUTH_REFRESH_MARGIN`), the `flags`. `Ok(None)` when no issuer is set anywhere.
pub fn settings(
    flags: &AuthFlags,
    env: &dyn Fn(&str) -> Option<String>,
    http: ClientOptions,
) -> Result<Option<AuthSettings>> {
    let config_file = config::config_path(env);
    let file = read_file_auth(config_file.as_deref())?.unwrap_or_default();
    let file_name = || {
        config_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let pick = |flag: Option<String>, var: &str, from_file: Option<String>| {
        non_empty(flag)
            .or_else(|| non_empty(env(var)))
            .or_else(|| non_empty(from_file))
    };
    let Some(issuer) = pick(
        flags.issuer.clone(),
        "NLDS_AUTH_ISSUER",
        file.issuer.clone(),
    ) else {
        return Ok(None);
    };
    let issuer = issuer.trim_end_matches('/').to_owned();
    check_url("the issuer", &issuer)?;
    let client_id = pick(
        flags.client_id.clone(),
        "NLDS_AUTH_CLIENT_ID",
        file.client_id.clone(),
    )
    .ok_or_else(|| {
        Error::Config(format!(
            "OAuth2 is configured (issuer {issuer}) but no client id is: set client_id in the \
             [auth] section of {}, $NLDS_AUTH_CLIENT_ID or give --client-id",
            file_name()
        ))
    })?;
    let scopes = if !flags.scopes.is_empty() {
        flags.scopes.iter().flat_map(|s| split_scopes(s)).collect()
    } else if let Some(s) = non_empty(env("NLDS_AUTH_SCOPES")) {
        split_scopes(&s)
    } else {
        file.scopes
            .clone()
            .map(ScopesValue::into_vec)
            .unwrap_or_default()
    };
    let audience = pick(
        flags.audience.clone(),
        "NLDS_AUTH_AUDIENCE",
        file.audience.clone(),
    );
    let home = non_empty(env("HOME")).map(PathBuf::from);
    let relative_to_config = |p: &Path| -> PathBuf {
        let expanded = match (p.to_str(), &home) {
            (Some(s), Some(h)) if s.starts_with("~/") => h.join(&s[2..]),
            _ => p.to_path_buf(),
        };
        if expanded.is_absolute() {
            expanded
        } else {
            config_file
                .as_deref()
                .and_then(Path::parent)
                .unwrap_or_else(|| Path::new("."))
                .join(expanded)
        }
    };
    let token_file = if let Some(t) = non_empty(env("NLDS_AUTH_TOKEN_FILE")) {
        PathBuf::from(t)
    } else if let Some(t) = &file.token_file {
        relative_to_config(t)
    } else {
        let dir = config_file
            .as_deref()
            .and_then(Path::parent)
            .ok_or_else(|| {
                Error::Config(
                    "cannot tell where the token file goes: set $NLDS_CONFIG, $HOME or \
                 $NLDS_AUTH_TOKEN_FILE"
                        .into(),
                )
            })?;
        dir.join(DEFAULT_TOKEN_FILE)
    };

    // The client secret: a file or the environment, never a plain command-line value.
    let mut client_secret = None;
    let mut client_secret_problem = None;
    let secret_file = |p: &Path, origin: &str| -> std::result::Result<Secret, String> {
        let text = std::fs::read_to_string(p).map_err(|e| {
            format!(
                "cannot read the client secret file {} ({origin}): {e}",
                p.display()
            )
        })?;
        let s = text.trim();
        if s.is_empty() {
            return Err(format!(
                "the client secret file {} ({origin}) is empty",
                p.display()
            ));
        }
        Ok(Secret::new(s))
    };
    let mut take = |r: std::result::Result<Secret, String>, from: SecretFrom| match r {
        Ok(s) => client_secret = Some((s, from)),
        Err(e) => client_secret_problem = Some(e),
    };
    if let Some(s) = &flags.client_secret {
        take(Ok(s.clone()), SecretFrom::Stdin);
    } else if let Some(p) = &flags.client_secret_file {
        take(
            secret_file(p, "--client-secret-file"),
            SecretFrom::File(p.clone()),
        );
    } else if let Some(s) = non_empty(env("NLDS_AUTH_CLIENT_SECRET")) {
        take(Ok(Secret::new(s)), SecretFrom::Env);
    } else if let Some(p) = non_empty(env("NLDS_AUTH_CLIENT_SECRET_FILE")) {
        let p = PathBuf::from(p);
        take(
            secret_file(&p, "$NLDS_AUTH_CLIENT_SECRET_FILE"),
            SecretFrom::File(p.clone()),
        );
    } else if let Some(p) = &file.client_secret_file {
        let p = relative_to_config(p);
        take(
            secret_file(&p, "client_secret_file in [auth]"),
            SecretFrom::File(p.clone()),
        );
    } else if let Some(s) = non_empty(file.client_secret.clone()) {
        take(Ok(Secret::new(s)), SecretFrom::ConfigFile);
    }

    let refresh_margin = if let Some(v) = non_empty(env("NLDS_AUTH_REFRESH_MARGIN")) {
        config::parse_duration(&v)
            .map_err(|e| Error::Config(format!("NLDS_AUTH_REFRESH_MARGIN: {e}")))?
    } else if let Some(v) = &file.refresh_margin {
        let text = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => other.to_string(),
        };
        config::parse_duration(&text).map_err(|e| {
            Error::Config(format!(
                "config file {}: [auth] refresh_margin: {e}",
                file_name()
            ))
        })?
    } else {
        DEFAULT_REFRESH_MARGIN
    };

    Ok(Some(AuthSettings {
        issuer,
        client_id,
        scopes,
        audience,
        token_file,
        client_secret,
        client_secret_problem,
        refresh_margin,
        http,
        config_file,
    }))
}

pub(super) fn check_url(what: &str, url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::Config(format!("{what} {url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::Config(format!(
            "{what} {url:?} must be an http:// or https:// URL"
        )));
    }
    Ok(())
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// How a login was obtained (and so how it is renewed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// RFC 8628, a person approved it in a browser; renewed with the refresh token.
    DeviceCode,
    /// A service account; renewed by asking again with the client secret.
    ClientCredentials,
}

impl Grant {
    pub fn describe(self) -> &'static str {
        match self {
            Grant::DeviceCode => "device authorization",
            Grant::ClientCredentials => "client credentials",
        }
    }
}
