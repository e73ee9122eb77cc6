//! OAuth2 login with any standard provider, through the `oauth2` crate.
//!
//! * [`AuthSettings`]: the `[auth]` section of the config file (issuer, client id, scopes,
//!   audience, token file, client secret for service accounts), with `NLDS_AUTH_*` environment
//!   overrides. The provider's endpoints come from OIDC discovery of the issuer.
//! * [`ProviderHttp`]: `oauth2`'s [`AsyncHttpClient`] over the reqwest 0.13 client the rest of the
//!   crate uses (`oauth2` itself would bring reqwest 0.12), with redirects off.
//! * [`TokenStore`]: the token file (access and refresh token, expiry, issuer, client id), written
//!   with mode 0600 by renaming a fresh private file over it; never printed.
//! * [`device_login`] (RFC 8628) and [`client_credentials_login`] obtain tokens; [`revoke`]
//!   (RFC 7009) ends a login.
//! * [`OAuthSession`] is the [`TokenSource`] of a [`crate::Client`]: before every request it
//!   refreshes the access token when it expires within the refresh margin (default 60 s). When
//!   the provider refuses the refresh (revoked or expired refresh token) the stale token file is
//!   removed and the error says to run `nlds login` again.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nlds_core::ErrorCode;
use oauth2::basic::{BasicClient, BasicErrorResponse, BasicRevocationErrorResponse};
use oauth2::url;
use oauth2::{
    AsyncHttpClient, ClientId, ClientSecret, DeviceAuthorizationUrl, ErrorResponse, HttpRequest,
    HttpResponse, RefreshToken, RequestTokenError, RevocationUrl, Scope,
    StandardDeviceAuthorizationResponse, StandardRevocableToken, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use crate::client::{ClientOptions, TokenSource};
use crate::config::{self, Secret};
use crate::error::{Error, Result};

/// Refresh an access token that expires within this long, before using it.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The token file's name, next to the config file, unless `[auth] token_file` says otherwise.
pub const DEFAULT_TOKEN_FILE: &str = "oauth-token.json";

/// Scopes asked for by the device grant when none are configured: an identity (`openid`) and a
/// refresh token (`offline_access`).
pub const DEFAULT_DEVICE_SCOPES: [&str; 2] = ["openid", "offline_access"];

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

fn check_url(what: &str, url: &str) -> Result<()> {
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

// ----- HTTP -----

/// The error of [`ProviderHttp`].
#[derive(Debug, thiserror::Error)]
pub enum ProviderHttpError {
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("cannot build the answer: {0}")]
    Answer(#[from] http::Error),
}

/// `oauth2`'s HTTP client trait over our reqwest client. Redirects are not followed (a token
/// endpoint that redirects would otherwise receive the request, secrets included, elsewhere).
#[derive(Debug, Clone)]
pub struct ProviderHttp {
    client: reqwest::Client,
}

impl ProviderHttp {
    pub fn new(options: &ClientOptions) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .danger_accept_invalid_certs(options.insecure)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nlds-rs-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot set up HTTP: {e}")))?;
        Ok(Self { client })
    }

    /// The underlying reqwest client (discovery uses it directly).
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = ProviderHttpError;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let resp = self.client.execute(request).await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?.to_vec();
            let mut out = http::Response::builder().status(status).body(body)?;
            *out.headers_mut() = headers;
            Ok(out)
        })
    }
}

// ----- discovery -----

/// The provider's endpoints (OIDC discovery, or RFC 8414 metadata).
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
}

/// Fetches `{issuer}/.well-known/openid-configuration` (else the RFC 8414
/// `/.well-known/oauth-authorization-server`) and checks that it names the same issuer.
pub async fn discover(http: &ProviderHttp, issuer: &str) -> Result<ProviderMetadata> {
    let issuer = issuer.trim_end_matches('/');
    let mut last = String::new();
    for doc in ["openid-configuration", "oauth-authorization-server"] {
        let url = format!("{issuer}/.well-known/{doc}");
        let resp = http
            .reqwest()
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| provider_unreachable(issuer, &e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            last = format!("{url} answered 404");
            continue;
        }
        if !status.is_success() {
            return Err(Error::Config(format!(
                "the OAuth2 provider {issuer} answered HTTP {} to {url}",
                status.as_u16()
            )));
        }
        let meta: ProviderMetadata = resp.json().await.map_err(|e| {
            Error::Config(format!(
                "the OAuth2 provider's metadata at {url} cannot be read: {e}"
            ))
        })?;
        if meta.issuer.trim_end_matches('/') != issuer {
            return Err(Error::Config(format!(
                "the OAuth2 provider at {url} says its issuer is {:?}, not {issuer:?}: check the issuer setting",
                meta.issuer
            )));
        }
        return Ok(meta);
    }
    Err(Error::Config(format!(
        "{issuer} does not look like an OAuth2 provider ({last}): check the issuer setting"
    )))
}

/// The provider cannot be reached: exit code 6, like an unreachable server.
fn provider_unreachable(issuer: &str, e: &dyn std::error::Error) -> Error {
    let mut msg = format!("cannot reach the OAuth2 provider {issuer}: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    Error::Provider {
        code: ErrorCode::Unavailable,
        message: msg,
    }
}

// ----- the token file -----

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

/// What the token file holds. `Debug` never shows the tokens.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredLogin {
    pub issuer: String,
    pub client_id: String,
    pub grant: Grant,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default = "bearer")]
    pub token_type: String,
    /// When the access token expires (from `expires_in`), if the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    pub obtained_at: DateTime<Utc>,
}

fn bearer() -> String {
    "Bearer".into()
}

impl std::fmt::Debug for StoredLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredLogin")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("grant", &self.grant)
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

impl StoredLogin {
    /// Whether the access token must be renewed before use: it expires within `margin` of `now`.
    /// An unknown expiry never forces a refresh (a server refusal does, see [`OAuthSession`]).
    pub fn needs_refresh(&self, now: DateTime<Utc>, margin: Duration) -> bool {
        needs_refresh(self.expires_at, now, margin)
    }

    /// Whether it can be renewed without a person: a refresh token, or client credentials.
    pub fn renewable(&self) -> bool {
        self.refresh_token.is_some() || self.grant == Grant::ClientCredentials
    }

    /// Whether this login belongs to these settings (same issuer and client).
    pub fn matches(&self, s: &AuthSettings) -> bool {
        self.issuer.trim_end_matches('/') == s.issuer.trim_end_matches('/')
            && self.client_id == s.client_id
    }

    fn from_response<TR: TokenResponse>(
        s: &AuthSettings,
        grant: Grant,
        resp: &TR,
        previous_refresh: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        StoredLogin {
            issuer: s.issuer.clone(),
            client_id: s.client_id.clone(),
            grant,
            access_token: resp.access_token().secret().clone(),
            refresh_token: resp
                .refresh_token()
                .map(|r| r.secret().clone())
                .or(previous_refresh),
            token_type: "Bearer".into(),
            expires_at: resp
                .expires_in()
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| now + d),
            scope: resp.scopes().map(|v| {
                v.iter()
                    .map(|s| s.as_str().to_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            audience: s.audience.clone(),
            obtained_at: now,
        }
    }
}

/// The refresh rule: an access token that expires at `expires_at` must be renewed at `now` when
/// less than `margin` is left.
pub fn needs_refresh(
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    margin: Duration,
) -> bool {
    let Some(at) = expires_at else { return false };
    let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::MAX);
    match now.checked_add_signed(margin) {
        Some(limit) => at <= limit,
        None => true,
    }
}

/// The token file.
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored login, `None` when there is no token file.
    pub fn load(&self) -> Result<Option<StoredLogin>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Config(format!(
                    "cannot read the token file {}: {e}",
                    self.path.display()
                )));
            }
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::Config(format!(
                "the token file {} is damaged ({e}): run `nlds login` again",
                self.path.display()
            ))
        })
    }

    /// Writes the login with mode 0600: a fresh private file renamed over the old one.
    pub fn save(&self, login: &StoredLogin) -> Result<()> {
        let text = serde_json::to_string_pretty(login)
            .map_err(|e| Error::Decode(format!("cannot encode the token file: {e}")))?;
        config::write_private(&self.path, &format!("{text}\n"))
    }

    /// Removes the token file; `Ok(false)` when there was none.
    pub fn remove(&self) -> Result<bool> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Config(format!(
                "cannot remove the token file {}: {e}",
                self.path.display()
            ))),
        }
    }

    /// Takes the refresh lock (a sibling `.lock` file), so that two `nlds` processes never
    /// renew at once: with rotating refresh tokens the slower one would present a spent refresh
    /// token, and providers then revoke the whole login.
    async fn lock(&self) -> Result<std::fs::File> {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".lock");
        let lock_path = self.path.with_file_name(name);
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&lock_path).map_err(|e| {
            Error::Config(format!(
                "cannot open the lock file {}: {e}",
                lock_path.display()
            ))
        })?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Config(format!(
                        "another nlds process has held {} for a minute: is one stuck?",
                        lock_path.display()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::Config(format!(
                        "cannot lock {}: {e}",
                        lock_path.display()
                    )));
                }
            }
        }
    }
}

// ----- the grants -----

/// What to tell the person who must approve a device login.
#[derive(Debug, Clone, Serialize)]
pub struct DevicePrompt {
    pub verification_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_uri_complete: Option<String>,
    pub user_code: String,
    /// Seconds until the code expires.
    pub expires_in: u64,
}

fn oauth_client(s: &AuthSettings) -> BasicClient {
    BasicClient::new(ClientId::new(s.client_id.clone()))
}

fn url_of<T>(
    what: &str,
    u: &str,
    make: impl FnOnce(String) -> std::result::Result<T, oauth2::url::ParseError>,
) -> Result<T> {
    make(u.to_owned()).map_err(|e| {
        Error::Config(format!(
            "the OAuth2 provider's {what} {u:?} is not a URL: {e}"
        ))
    })
}

/// The error of a token request, in words that say what to do.
fn token_error<RE, TE>(s: &AuthSettings, what: &str, e: RequestTokenError<RE, TE>) -> Error
where
    RE: std::error::Error + 'static,
    TE: ErrorResponse + 'static,
{
    match e {
        RequestTokenError::ServerResponse(r) => Error::Provider {
            code: ErrorCode::Unauthorized,
            message: format!(
                "the OAuth2 provider {} refused {what}: {}",
                s.issuer,
                provider_said(&r)
            ),
        },
        RequestTokenError::Request(r) => provider_unreachable(&s.issuer, &r),
        RequestTokenError::Parse(e, _body) => Error::Decode(format!(
            "the OAuth2 provider {} answered {what} with something unexpected: {e}",
            s.issuer
        )),
        RequestTokenError::Other(m) => Error::Decode(format!(
            "{what} at the OAuth2 provider {} failed: {m}",
            s.issuer
        )),
    }
}

/// `invalid_grant: refresh token is expired` from an error response (no secrets in there).
fn provider_said<T: ErrorResponse>(r: &T) -> String {
    // The standard error responses serialise as {"error", "error_description", "error_uri"}.
    let v = serde_json::to_value(r).unwrap_or_default();
    let code = v.get("error").and_then(|c| c.as_str()).unwrap_or("error");
    match v.get("error_description").and_then(|d| d.as_str()) {
        Some(d) if !d.is_empty() => format!("{code}: {d}"),
        _ => code.to_owned(),
    }
}

/// The `error` code of a standard error response (`invalid_grant`, `access_denied`, ...).
fn error_code<T: ErrorResponse>(r: &T) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.get("error").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// RFC 8628: asks for a device code, calls `prompt` with what the person must do, then polls the
/// token endpoint (at the provider's `interval`, slower after `slow_down`) until they approve,
/// refuse, or the code expires.
pub async fn device_login(
    s: &AuthSettings,
    prompt: impl FnOnce(&DevicePrompt),
) -> Result<StoredLogin> {
    let http = ProviderHttp::new(&s.http)?;
    let meta = discover(&http, &s.issuer).await?;
    let Some(device_url) = meta.device_authorization_endpoint.as_deref() else {
        return Err(Error::Config(format!(
            "the OAuth2 provider {} does not offer the device authorization grant; a service \
             account can use `nlds login --client-credentials`",
            s.issuer
        )));
    };
    let client = oauth_client(s)
        .set_token_uri(url_of(
            "token endpoint",
            &meta.token_endpoint,
            TokenUrl::new,
        )?)
        .set_device_authorization_url(url_of(
            "device authorization endpoint",
            device_url,
            DeviceAuthorizationUrl::new,
        )?);
    let mut req = client
        .exchange_device_code()
        .add_scopes(s.scopes_for(Grant::DeviceCode).into_iter().map(Scope::new));
    if let Some(aud) = &s.audience {
        req = req.add_extra_param("resource", aud.clone());
    }
    let details: StandardDeviceAuthorizationResponse = req
        .request_async(&http)
        .await
        .map_err(|e| token_error(s, "the device authorization request", e))?;
    prompt(&DevicePrompt {
        verification_uri: details.verification_uri().to_string(),
        verification_uri_complete: details
            .verification_uri_complete()
            .map(|u| u.secret().clone()),
        user_code: details.user_code().secret().clone(),
        expires_in: details.expires_in().as_secs(),
    });
    let mut poll = client.exchange_device_access_token(&details);
    if let Some(aud) = &s.audience {
        poll = poll.add_extra_param("resource", aud.clone());
    }
    let resp = poll
        .set_max_backoff_interval(Duration::from_secs(30))
        .request_async(&http, tokio::time::sleep, None)
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => {
                let message = match error_code(&r).as_str() {
                    "access_denied" => {
                        format!("the login was refused at the OAuth2 provider {}", s.issuer)
                    }
                    "expired_token" => {
                        "the code expired before it was approved: run `nlds login` again".to_owned()
                    }
                    _ => format!(
                        "the OAuth2 provider {} refused the login: {}",
                        s.issuer,
                        provider_said(&r)
                    ),
                };
                Error::Provider {
                    code: ErrorCode::Unauthorized,
                    message,
                }
            }
            other => token_error(s, "the device login", other),
        })?;
    Ok(StoredLogin::from_response(
        s,
        Grant::DeviceCode,
        &resp,
        None,
        Utc::now(),
    ))
}

/// The client credentials grant (service accounts and scripts): the configured client id and
/// secret buy an access token.
pub async fn client_credentials_login(s: &AuthSettings) -> Result<StoredLogin> {
    let secret = s.secret()?.clone();
    let http = ProviderHttp::new(&s.http)?;
    let meta = discover(&http, &s.issuer).await?;
    client_credentials(s, &http, &meta, &secret).await
}

async fn client_credentials(
    s: &AuthSettings,
    http: &ProviderHttp,
    meta: &ProviderMetadata,
    secret: &Secret,
) -> Result<StoredLogin> {
    let client = oauth_client(s)
        .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
        .set_token_uri(url_of(
            "token endpoint",
            &meta.token_endpoint,
            TokenUrl::new,
        )?);
    let mut req = client.exchange_client_credentials().add_scopes(
        s.scopes_for(Grant::ClientCredentials)
            .into_iter()
            .map(Scope::new),
    );
    if let Some(aud) = &s.audience {
        req = req.add_extra_param("resource", aud.clone());
    }
    let resp = req
        .request_async(http)
        .await
        .map_err(|e| token_error(s, "the client credentials", e))?;
    Ok(StoredLogin::from_response(
        s,
        Grant::ClientCredentials,
        &resp,
        None,
        Utc::now(),
    ))
}

/// Renews `login`: the refresh grant, or client credentials again. `Err(Renewal::Refused)`
/// means the provider will not renew it (a new login is needed).
async fn renew(s: &AuthSettings, login: &StoredLogin) -> std::result::Result<StoredLogin, Renewal> {
    let http = ProviderHttp::new(&s.http).map_err(Renewal::Failed)?;
    let meta = discover(&http, &s.issuer).await.map_err(Renewal::Failed)?;
    match (&login.refresh_token, login.grant) {
        (Some(rt), _) => {
            let mut client = oauth_client(s).set_token_uri(
                url_of("token endpoint", &meta.token_endpoint, TokenUrl::new)
                    .map_err(Renewal::Failed)?,
            );
            if login.grant == Grant::ClientCredentials
                && let Ok(secret) = s.secret()
            {
                client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
            }
            let rt = RefreshToken::new(rt.clone());
            let mut req = client.exchange_refresh_token(&rt);
            if let Some(aud) = &login.audience {
                req = req.add_extra_param("resource", aud.clone());
            }
            match req.request_async(&http).await {
                Ok(resp) => Ok(StoredLogin::from_response(
                    s,
                    login.grant,
                    &resp,
                    login.refresh_token.clone(),
                    Utc::now(),
                )),
                Err(RequestTokenError::ServerResponse(r)) => {
                    Err(Renewal::Refused(provider_said::<BasicErrorResponse>(&r)))
                }
                Err(e) => Err(Renewal::Failed(token_error(s, "the token refresh", e))),
            }
        }
        (None, Grant::ClientCredentials) => {
            let secret = s.secret().map_err(|e| {
                Renewal::Refused(format!(
                    "the access token expired and no client secret is configured to renew it ({e})"
                ))
            })?;
            match client_credentials(s, &http, &meta, secret).await {
                Ok(l) => Ok(l),
                Err(Error::Provider {
                    code: ErrorCode::Unauthorized,
                    message,
                }) => Err(Renewal::Refused(message)),
                Err(e) => Err(Renewal::Failed(e)),
            }
        }
        (None, Grant::DeviceCode) => Err(Renewal::Refused(
            "the access token expired and the provider gave no refresh token".into(),
        )),
    }
}

enum Renewal {
    /// The provider refused (revoked or expired refresh token, client no longer allowed).
    Refused(String),
    /// It could not be asked (network, discovery): the login may still be good.
    Failed(Error),
}

/// The error that sends the user back to `nlds login` (exit code 3).
pub fn login_again(s: &AuthSettings, why: &str, removed: bool) -> Error {
    let removed = if removed {
        format!(
            " (the stale token file {} was removed)",
            s.token_file.display()
        )
    } else {
        String::new()
    };
    Error::Provider {
        code: ErrorCode::Unauthorized,
        message: format!(
            "your login at {} can no longer be renewed: {why}{removed}; run `nlds login{}` again",
            s.issuer,
            if why.contains("client secret") || why.contains("client credentials") {
                " --client-credentials"
            } else {
                ""
            }
        ),
    }
}

/// What [`revoke`] did with each token.
#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    /// `refresh_token` or `access_token`.
    pub token: &'static str,
    /// `revoked`, `failed: ...`, or `not offered by the provider`.
    pub outcome: String,
    pub ok: bool,
}

/// RFC 7009: revokes the refresh token and then the access token, when the provider has a
/// revocation endpoint. Never fails as a whole: each token's outcome is reported.
pub async fn revoke(s: &AuthSettings, login: &StoredLogin) -> Vec<Revocation> {
    let mut out = Vec::new();
    let all = |outcome: String, ok: bool| {
        let mut v = Vec::new();
        if login.refresh_token.is_some() {
            v.push(Revocation {
                token: "refresh_token",
                outcome: outcome.clone(),
                ok,
            });
        }
        v.push(Revocation {
            token: "access_token",
            outcome,
            ok,
        });
        v
    };
    let http = match ProviderHttp::new(&s.http) {
        Ok(h) => h,
        Err(e) => return all(format!("failed: {e}"), false),
    };
    let meta = match discover(&http, &login.issuer).await {
        Ok(m) => m,
        Err(e) => return all(format!("failed: {e}"), false),
    };
    let Some(rev) = meta.revocation_endpoint.as_deref() else {
        return all(
            "not offered by the provider (the tokens stay valid until they expire)".into(),
            false,
        );
    };
    let url = match url_of("revocation endpoint", rev, RevocationUrl::new) {
        Ok(u) => u,
        Err(e) => return all(format!("failed: {e}"), false),
    };
    let secret = if login.grant == Grant::ClientCredentials {
        match s.secret() {
            Ok(secret) => Some(secret.clone()),
            Err(e) => return all(format!("failed: {e}"), false),
        }
    } else {
        None
    };
    let mut client = oauth_client(s).set_revocation_url(url);
    if let Some(secret) = &secret {
        client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
    }
    // The oauth2 crate sends tokens to an https:// revocation endpoint only (RFC 7009 asks for
    // TLS). A provider on this machine (http://127.0.0.1, http://localhost) gets the same
    // request from us: nothing leaves the host.
    let loopback_http = loopback_http(rev);
    let mut tokens: Vec<(&'static str, &str)> = Vec::new();
    if let Some(rt) = &login.refresh_token {
        tokens.push(("refresh_token", rt));
    }
    tokens.push(("access_token", &login.access_token));
    for (name, value) in tokens {
        if loopback_http {
            out.push(
                match revoke_plain(&http, rev, s, secret.as_ref(), value, name).await {
                    Ok(()) => Revocation {
                        token: name,
                        outcome: "revoked".into(),
                        ok: true,
                    },
                    Err(why) => Revocation {
                        token: name,
                        outcome: format!("failed: {why}"),
                        ok: false,
                    },
                },
            );
            continue;
        }
        let token = if name == "refresh_token" {
            StandardRevocableToken::RefreshToken(RefreshToken::new(value.to_owned()))
        } else {
            StandardRevocableToken::AccessToken(oauth2::AccessToken::new(value.to_owned()))
        };
        let result = match client.revoke_token(token) {
            Ok(req) => req.request_async(&http).await,
            Err(e) => {
                out.push(Revocation {
                    token: name,
                    outcome: format!("failed: {e} (the revocation endpoint is {rev})"),
                    ok: false,
                });
                continue;
            }
        };
        out.push(match result {
            Ok(()) => Revocation {
                token: name,
                outcome: "revoked".into(),
                ok: true,
            },
            Err(RequestTokenError::ServerResponse(r)) => Revocation {
                token: name,
                outcome: format!(
                    "failed: the provider said {}",
                    provider_said::<BasicRevocationErrorResponse>(&r)
                ),
                ok: false,
            },
            Err(e) => Revocation {
                token: name,
                outcome: format!("failed: {}", token_error(s, "the revocation", e)),
                ok: false,
            },
        });
    }
    out
}

/// `http://` to this very machine (127.0.0.0/8, ::1, localhost).
fn loopback_http(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    u.scheme() == "http"
        && match u.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

/// An RFC 7009 revocation request like the oauth2 crate's, for a loopback provider: the token
/// and its type hint in the body, the client authenticated with HTTP Basic (a confidential
/// client) or named by `client_id` (a public one).
async fn revoke_plain(
    http: &ProviderHttp,
    url: &str,
    s: &AuthSettings,
    secret: Option<&Secret>,
    token: &str,
    hint: &str,
) -> std::result::Result<(), String> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", token)
        .append_pair("token_type_hint", hint);
    let mut req = http
        .reqwest()
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    match secret {
        Some(secret) => {
            let enc =
                |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            req = req.basic_auth(enc(&s.client_id), Some(enc(secret.expose())));
        }
        None => {
            form.append_pair("client_id", &s.client_id);
        }
    }
    let resp = req
        .body(form.finish())
        .send()
        .await
        .map_err(|e| provider_unreachable(&s.issuer, &e).to_string())?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let code = body
        .get("error")
        .and_then(|c| c.as_str())
        .unwrap_or("error");
    Err(
        match body.get("error_description").and_then(|d| d.as_str()) {
            Some(d) => format!("the provider said {code}: {d} (HTTP {})", status.as_u16()),
            None => format!("the provider said {code} (HTTP {})", status.as_u16()),
        },
    )
}

// ----- the session -----

/// A logged-in OAuth2 session: the bearer token of every request, renewed proactively.
pub struct OAuthSession {
    settings: AuthSettings,
    store: TokenStore,
    current: tokio::sync::Mutex<StoredLogin>,
    expires_at: std::sync::Mutex<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for OAuthSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthSession")
            .field("issuer", &self.settings.issuer)
            .field("token_file", &self.store.path)
            .finish()
    }
}

impl OAuthSession {
    /// Opens the stored login; [`Error::NotConfigured`] (run `nlds login`) when there is none
    /// or it belongs to another issuer or client.
    pub fn open(settings: AuthSettings) -> Result<Self> {
        let store = TokenStore::new(&settings.token_file);
        let login = match store.load()? {
            Some(l) if l.matches(&settings) => l,
            Some(l) => {
                return Err(Error::NotConfigured(format!(
                    "the stored login ({}) is for client {:?} at {}, but client {:?} at {} is \
                     configured: run `nlds login`",
                    store.path.display(),
                    l.client_id,
                    l.issuer,
                    settings.client_id,
                    settings.issuer
                )));
            }
            None => {
                return Err(Error::NotConfigured(format!(
                    "nlds is not logged in at {}: run `nlds login` (or `nlds login \
                     --client-credentials` for a service account); token file would be at {}",
                    settings.issuer,
                    store.path.display()
                )));
            }
        };
        Ok(Self {
            expires_at: std::sync::Mutex::new(login.expires_at),
            settings,
            store,
            current: tokio::sync::Mutex::new(login),
        })
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// The current access token, renewed first when it expires within the refresh margin (or
    /// when `force`: the server just refused it).
    pub async fn access_token(&self, force: bool) -> Result<String> {
        let mut cur = self.current.lock().await;
        if !force && !cur.needs_refresh(Utc::now(), self.settings.refresh_margin) {
            return Ok(cur.access_token.clone());
        }
        let _lock = self.store.lock().await?;
        // Another nlds process may have renewed it (our refresh token is then spent: rotating
        // refresh tokens are good for one use) or logged out meanwhile: the file decides.
        match self.store.load()?.filter(|l| l.matches(&self.settings)) {
            None => {
                return Err(Error::NotConfigured(format!(
                    "nlds was logged out of {} meanwhile: run `nlds login`",
                    self.settings.issuer
                )));
            }
            Some(on_disk) if on_disk.access_token != cur.access_token => {
                let usable =
                    force || !on_disk.needs_refresh(Utc::now(), self.settings.refresh_margin);
                *cur = on_disk;
                if usable {
                    return Ok(self.adopted(&cur));
                }
            }
            Some(_) => {}
        }
        if !cur.renewable() {
            if force || cur.expires_at.is_none_or(|at| at > Utc::now()) {
                // Nothing to renew it with, but it has not expired (or the server refused it
                // for its own reasons): use it, and let the server's answer stand.
                return Ok(cur.access_token.clone());
            }
            let removed = self.store.remove().unwrap_or(false);
            return Err(login_again(
                &self.settings,
                "the access token expired and there is no refresh token",
                removed,
            ));
        }
        match renew(&self.settings, &cur).await {
            Ok(new) => {
                self.store.save(&new)?;
                *cur = new;
            }
            Err(Renewal::Refused(why)) => {
                let removed = self.store.remove().unwrap_or(false);
                return Err(login_again(&self.settings, &why, removed));
            }
            Err(Renewal::Failed(e)) => return Err(e),
        }
        Ok(self.adopted(&cur))
    }

    /// Records `login`'s expiry (for whoami) and returns its access token.
    fn adopted(&self, login: &StoredLogin) -> String {
        if let Ok(mut e) = self.expires_at.lock() {
            *e = login.expires_at;
        }
        login.access_token.clone()
    }

    /// The login as it is now (for `whoami` and `logout`).
    pub async fn login(&self) -> StoredLogin {
        self.current.lock().await.clone()
    }
}

impl TokenSource for OAuthSession {
    fn bearer(&self, rejected: bool) -> Pin<Box<dyn Future<Output = Result<String>> + Send + '_>> {
        Box::pin(self.access_token(rejected))
    }

    fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at.lock().ok().and_then(|e| *e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_revocation_only_on_this_machine() {
        assert!(loopback_http("http://127.0.0.1:9400/token/revocation"));
        assert!(loopback_http("http://localhost/revoke"));
        assert!(loopback_http("http://[::1]:8080/revoke"));
        assert!(!loopback_http("http://idp.example.org/revoke"));
        assert!(!loopback_http("http://10.0.0.1/revoke"));
        assert!(
            !loopback_http("https://127.0.0.1/revoke"),
            "https goes through oauth2"
        );
        assert!(!loopback_http("not a url"));
    }

    #[test]
    fn refresh_margin_rule() {
        let now: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
        let m = Duration::from_secs(60);
        let at = |s: i64| Some(now + chrono::Duration::seconds(s));
        assert!(!needs_refresh(at(61), now, m), "61 s left: still good");
        assert!(needs_refresh(at(60), now, m), "exactly the margin: renew");
        assert!(needs_refresh(at(10), now, m));
        assert!(needs_refresh(at(-5), now, m), "already expired");
        assert!(!needs_refresh(None, now, m), "unknown expiry: no refresh");
        assert!(
            needs_refresh(at(3600), now, Duration::from_secs(7200)),
            "a big margin renews early"
        );
        assert!(
            needs_refresh(at(3600), now, Duration::MAX),
            "an absurd margin does not overflow"
        );
        assert!(!needs_refresh(at(1), now, Duration::ZERO));
    }

    fn login(expires_in: i64, refresh: bool, grant: Grant) -> StoredLogin {
        let now = Utc::now();
        StoredLogin {
            issuer: "https://idp.example".into(),
            client_id: "nlds-cli".into(),
            grant,
            access_token: "access-SECRET-1".into(),
            refresh_token: refresh.then(|| "refresh-SECRET-2".into()),
            token_type: "Bearer".into(),
            expires_at: Some(now + chrono::Duration::seconds(expires_in)),
            scope: Some("openid offline_access".into()),
            audience: None,
            obtained_at: now,
        }
    }

    #[cfg(unix)]
    #[test]
    fn token_file_is_private_atomic_and_never_debug_printed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/oauth-token.json");
        let store = TokenStore::new(&path);
        assert!(store.load().unwrap().is_none());
        let l = login(300, true, Grant::DeviceCode);
        store.save(&l).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A file made readable by someone is replaced by a private one on the next save.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        store.save(&l).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let back = store.load().unwrap().unwrap();
        assert_eq!(back.access_token, "access-SECRET-1");
        assert_eq!(back.refresh_token.as_deref(), Some("refresh-SECRET-2"));
        assert_eq!(back.expires_at, l.expires_at);
        let dbg = format!("{back:?}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
        assert!(store.remove().unwrap());
        assert!(!store.remove().unwrap());

        std::fs::write(&path, "{not json").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("is damaged") && e.contains("nlds login"), "{e}");
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn settings_from_file_env_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(
            &cfg,
            "url = \"https://nlds.example\"\n[auth]\nissuer = \"https://idp.example/\"\nclient_id = \"nlds-cli\"\nscopes = \"openid nlds\"\nrefresh_margin = \"5m\"\nclient_secret_file = \"secret\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("secret"), "s3cr3t\n").unwrap();
        let c = cfg.to_str().unwrap();
        let s = settings(
            &AuthFlags::default(),
            &env_of(&[("NLDS_CONFIG", c)]),
            ClientOptions::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.issuer, "https://idp.example");
        assert_eq!(s.client_id, "nlds-cli");
        assert_eq!(s.scopes, vec!["openid", "nlds"]);
        assert_eq!(s.refresh_margin, Duration::from_secs(300));
        assert_eq!(s.token_file, dir.path().join(DEFAULT_TOKEN_FILE));
        assert_eq!(s.secret().unwrap().expose(), "s3cr3t");
        assert_eq!(
            s.client_secret.as_ref().unwrap().1,
            SecretFrom::File(dir.path().join("secret"))
        );
        assert!(!format!("{s:?}").contains("s3cr3t"));
        assert!(configured(&env_of(&[("NLDS_CONFIG", c)])).unwrap());

        let env = env_of(&[
            ("NLDS_CONFIG", c),
            ("NLDS_AUTH_CLIENT_ID", "env-client"),
            ("NLDS_AUTH_SCOPES", "a,b"),
            ("NLDS_AUTH_CLIENT_SECRET", "from-env"),
            ("NLDS_AUTH_TOKEN_FILE", "/tmp/x.json"),
        ]);
        let s = settings(&AuthFlags::default(), &env, ClientOptions::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.client_id.as_str(), s.scopes.clone()),
            ("env-client", vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(s.secret().unwrap().expose(), "from-env");
        assert_eq!(s.token_file, PathBuf::from("/tmp/x.json"));
        let flags = AuthFlags {
            client_id: Some("flag-client".into()),
            scopes: vec!["x".into()],
            ..AuthFlags::default()
        };
        let s = settings(&flags, &env, ClientOptions::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.client_id.as_str(), s.scopes.clone()),
            ("flag-client", vec!["x".to_string()])
        );

        // Nothing configured: not OAuth.
        let empty = tempfile::tempdir().unwrap();
        let env = env_of(&[("HOME", empty.path().to_str().unwrap())]);
        assert!(
            settings(&AuthFlags::default(), &env, ClientOptions::default())
                .unwrap()
                .is_none()
        );
        assert!(!configured(&env).unwrap());
    }

    #[test]
    fn settings_errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        let c = cfg.to_str().unwrap().to_owned();
        let err = |text: &str, extra: &[(&str, &str)]| {
            std::fs::write(&cfg, text).unwrap();
            let mut pairs = vec![("NLDS_CONFIG", c.as_str())];
            pairs.extend_from_slice(extra);
            settings(
                &AuthFlags::default(),
                &env_of(&pairs),
                ClientOptions::default(),
            )
            .and_then(|s| s.unwrap().secret().map(|_| ()))
            .unwrap_err()
            .to_string()
        };
        let e = err("[auth]\nissuer = \"https://idp\"\n", &[]);
        assert!(
            e.contains("no client id") && e.contains("NLDS_AUTH_CLIENT_ID"),
            "{e}"
        );
        let e = err("[auth]\nissuer = \"idp.example\"\nclient_id = \"c\"\n", &[]);
        assert!(e.contains("the issuer \"idp.example\" is not a URL"), "{e}");
        let e = err(
            "[auth]\nissuer = \"https://idp\"\nclient_id = \"c\"\ncolour = 1\n",
            &[],
        );
        assert!(e.contains("[auth]") && e.contains("colour"), "{e}");
        let e = err(
            "[auth]\nissuer = \"https://idp\"\nclient_id = \"c\"\nrefresh_margin = \"soon\"\n",
            &[],
        );
        assert!(e.contains("refresh_margin"), "{e}");
        let e = err(
            "[auth]\nissuer = \"https://idp\"\nclient_id = \"svc\"\n",
            &[],
        );
        assert!(
            e.contains("client credentials need the secret of client \"svc\""),
            "{e}"
        );
        let e = err(
            "[auth]\nissuer = \"https://idp\"\nclient_id = \"svc\"\n",
            &[("NLDS_AUTH_CLIENT_SECRET_FILE", "/nonexistent/s")],
        );
        assert!(
            e.contains(
                "cannot read the client secret file /nonexistent/s ($NLDS_AUTH_CLIENT_SECRET_FILE)"
            ),
            "{e}"
        );
    }

    #[test]
    fn login_again_message_and_renewability() {
        let s = AuthSettings {
            issuer: "https://idp.example".into(),
            client_id: "nlds-cli".into(),
            scopes: vec![],
            audience: None,
            token_file: PathBuf::from("/home/a/.config/nlds/oauth-token.json"),
            client_secret: None,
            client_secret_problem: None,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            http: ClientOptions::default(),
            config_file: None,
        };
        let e = login_again(&s, "invalid_grant: grant request is invalid", true);
        // `nlds` exits with its code for a failed login (AUTH): nlds-cli's exit tests check that.
        assert!(matches!(
            e,
            Error::Provider {
                code: ErrorCode::Unauthorized,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "your login at https://idp.example can no longer be renewed: invalid_grant: grant \
             request is invalid (the stale token file /home/a/.config/nlds/oauth-token.json was \
             removed); run `nlds login` again"
        );
        assert_eq!(
            s.scopes_for(Grant::DeviceCode),
            vec!["openid", "offline_access"]
        );
        assert!(s.scopes_for(Grant::ClientCredentials).is_empty());
        assert!(login(10, true, Grant::DeviceCode).renewable());
        assert!(!login(10, false, Grant::DeviceCode).renewable());
        assert!(login(10, false, Grant::ClientCredentials).renewable());
        let l = login(10, true, Grant::DeviceCode);
        assert!(l.matches(&s));
        assert!(l.needs_refresh(Utc::now(), DEFAULT_REFRESH_MARGIN));
        assert!(
            !login(600, true, Grant::DeviceCode).needs_refresh(Utc::now(), DEFAULT_REFRESH_MARGIN)
        );
    }
}
