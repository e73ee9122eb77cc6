//! The OAuth2 settings, layered like the rest of the client's settings (`crate::config::layers`,
//! figment providers lowest to highest): the config file's `[auth]` section, the `NLDS_AUTH_*`
//! environment, the flags of `nlds login`. Empty values count as unset; a path from the config
//! file is relative to its directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::value::{Dict, Value};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{DEFAULT_DEVICE_SCOPES, DEFAULT_REFRESH_MARGIN, DEFAULT_TOKEN_FILE};
use crate::client::ClientOptions;
use crate::config::layers::{self, Origin};
use crate::config::{self, Secret, non_empty};
use crate::error::{Error, Result};

// ----- settings -----

/// Each key of `[auth]` and its environment variable.
const ENV_VARS: [(&str, &str); 8] = [
    ("issuer", "NLDS_AUTH_ISSUER"),
    ("client_id", "NLDS_AUTH_CLIENT_ID"),
    ("scopes", "NLDS_AUTH_SCOPES"),
    ("audience", "NLDS_AUTH_AUDIENCE"),
    ("token_file", "NLDS_AUTH_TOKEN_FILE"),
    ("client_secret", "NLDS_AUTH_CLIENT_SECRET"),
    ("client_secret_file", "NLDS_AUTH_CLIENT_SECRET_FILE"),
    ("refresh_margin", "NLDS_AUTH_REFRESH_MARGIN"),
];

/// The `[auth]` settings of one layer (the config file's, checked as written), or of all of them
/// merged.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthValues {
    issuer: Option<String>,
    client_id: Option<String>,
    scopes: Option<ScopesValue>,
    audience: Option<String>,
    token_file: Option<PathBuf>,
    client_secret_file: Option<PathBuf>,
    client_secret: Option<SecretString>,
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

/// The layers of the `[auth]` settings merged, and the config file's path. A layer holds at most
/// one of `client_secret` and `client_secret_file`: in the config file the file wins, elsewhere
/// the secret itself (standard input, `$NLDS_AUTH_CLIENT_SECRET`).
fn layered(
    flags: &AuthFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Figment, Option<PathBuf>)> {
    let (path, file) = config::read_config(env, &mut Vec::new())?;
    let path = path.map(|p| p.value);
    let file = match (file.and_then(|f| f.auth), &path) {
        (Some(auth), Some(path)) => Some(file_layer(auth, path)?),
        _ => None,
    };
    let mut env_dict = layers::env_strings(ENV_VARS, env);
    if env_dict.contains_key("client_secret") {
        env_dict.remove("client_secret_file");
    }
    Ok((layers::stack(file, env_dict, flags_layer(flags)), path))
}

/// The `[auth]` section of the config file at `path`, checked as written, as a layer.
fn file_layer(auth: toml::Value, path: &Path) -> Result<Dict> {
    let bad = |msg: String| Error::Config(format!("config file {}: [auth]: {msg}", path.display()));
    auth.clone()
        .try_into::<AuthValues>()
        .map_err(|e| bad(e.message().to_owned()))?;
    let toml::Value::Table(mut table) = auth else {
        return Ok(Dict::new());
    };
    layers::tidy(&mut table);
    if table.contains_key("client_secret_file") {
        table.remove("client_secret");
    }
    Ok(layers::dict_of(&table))
}

/// The command-line layer.
fn flags_layer(flags: &AuthFlags) -> Dict {
    let mut dict = Dict::new();
    let strings = [
        ("issuer", &flags.issuer),
        ("client_id", &flags.client_id),
        ("audience", &flags.audience),
    ];
    for (key, v) in strings {
        if let Some(v) = non_empty(v.clone()) {
            dict.insert(key.to_owned(), Value::from(v));
        }
    }
    let scopes: Vec<String> = flags.scopes.iter().flat_map(|s| split_scopes(s)).collect();
    if !scopes.is_empty() {
        dict.insert("scopes".to_owned(), Value::from(scopes));
    }
    if let Some(s) = &flags.client_secret {
        dict.insert(
            "client_secret".to_owned(),
            Value::from(s.expose().to_owned()),
        );
    } else if let Some(p) = flags
        .client_secret_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        dict.insert(
            "client_secret_file".to_owned(),
            Value::from(p.to_string_lossy().into_owned()),
        );
    }
    dict
}

/// Whether OAuth2 is configured: an issuer in `[auth]` or `$NLDS_AUTH_ISSUER`.
pub fn configured(env: &dyn Fn(&str) -> Option<String>) -> Result<bool> {
    let (fig, _) = layered(&AuthFlags::default(), env)?;
    Ok(fig.contains("issuer"))
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
    let (fig, config_file) = layered(flags, env)?;
    let v: AuthValues = fig
        .extract()
        .map_err(|e| Error::Config(format!("[auth] settings: {e}")))?;
    let origin = |key: &str| Origin::of(&fig, key);
    let file_name = || {
        config_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let Some(issuer) = v.issuer else {
        return Ok(None);
    };
    let issuer = issuer.trim_end_matches('/').to_owned();
    check_url("the issuer", &issuer)?;
    let client_id = v.client_id.ok_or_else(|| {
        Error::Config(format!(
            "OAuth2 is configured (issuer {issuer}) but no client id is: set client_id in the \
             [auth] section of {}, $NLDS_AUTH_CLIENT_ID or give --client-id",
            file_name()
        ))
    })?;
    let scopes = v.scopes.map(ScopesValue::into_vec).unwrap_or_default();
    // A path from the config file is relative to its directory, as the main settings' token_file.
    let home = non_empty(env("HOME")).map(PathBuf::from);
    let placed = |key: &str, p: PathBuf| match (origin(key), &config_file) {
        (Some(Origin::File), Some(cf)) => layers::file_relative(&p, cf, home.as_deref()),
        _ => p,
    };
    let token_file = match v.token_file {
        Some(t) => placed("token_file", t),
        None => config_file
            .as_deref()
            .and_then(Path::parent)
            .ok_or_else(|| {
                Error::Config(
                    "cannot tell where the token file goes: set $NLDS_CONFIG, $HOME or \
                     $NLDS_AUTH_TOKEN_FILE"
                        .into(),
                )
            })?
            .join(DEFAULT_TOKEN_FILE),
    };

    // The client secret: from the highest layer that gives it (never a plain command-line value).
    let mut client_secret = None;
    let mut client_secret_problem = None;
    let (mut secret, mut secret_file_path) = (v.client_secret, v.client_secret_file);
    if secret.is_some() && secret_file_path.is_some() {
        // From two layers (a layer holds at most one): the higher wins.
        if origin("client_secret") > origin("client_secret_file") {
            secret_file_path = None;
        } else {
            secret = None;
        }
    }
    if let Some(s) = secret {
        let from = match origin("client_secret") {
            Some(Origin::Flags) => SecretFrom::Stdin,
            Some(Origin::Env) => SecretFrom::Env,
            _ => SecretFrom::ConfigFile,
        };
        client_secret = Some((Secret::from(s), from));
    } else if let Some(p) = secret_file_path {
        let named = match origin("client_secret_file") {
            Some(Origin::Flags) => "--client-secret-file",
            Some(Origin::Env) => "$NLDS_AUTH_CLIENT_SECRET_FILE",
            _ => "client_secret_file in [auth]",
        };
        let p = placed("client_secret_file", p);
        match secret_file(&p, named) {
            Ok(s) => client_secret = Some((s, SecretFrom::File(p))),
            Err(e) => client_secret_problem = Some(e),
        }
    }

    let refresh_margin = match &v.refresh_margin {
        Some(m) => {
            let text = match m {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => other.to_string(),
            };
            config::parse_duration(&text).map_err(|e| match origin("refresh_margin") {
                Some(Origin::File) => Error::Config(format!(
                    "config file {}: [auth] refresh_margin: {e}",
                    file_name()
                )),
                _ => Error::Config(format!("NLDS_AUTH_REFRESH_MARGIN: {e}")),
            })?
        }
        None => DEFAULT_REFRESH_MARGIN,
    };

    Ok(Some(AuthSettings {
        issuer,
        client_id,
        scopes,
        audience: v.audience,
        token_file,
        client_secret,
        client_secret_problem,
        refresh_margin,
        http,
        config_file,
    }))
}

/// The client secret in the file at `p` (`named` by what); its surrounding blanks dropped.
fn secret_file(p: &Path, named: &str) -> std::result::Result<Secret, String> {
    let text = std::fs::read_to_string(p).map_err(|e| {
        format!(
            "cannot read the client secret file {} ({named}): {e}",
            p.display()
        )
    })?;
    let s = text.trim();
    if s.is_empty() {
        return Err(format!(
            "the client secret file {} ({named}) is empty",
            p.display()
        ));
    }
    Ok(Secret::new(s))
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
