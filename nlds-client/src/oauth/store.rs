//! The token file: what a login holds and where it is kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use oauth2::TokenResponse;
use serde::{Deserialize, Serialize};

use super::settings::{AuthSettings, Grant};
use crate::config;
use crate::error::{Error, Result};

// ----- the token file -----

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

pub(super) fn bearer() -> String {
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

    pub(super) fn from_response<TR: TokenResponse>(
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
    pub(super) async fn lock(&self) -> Result<std::fs::File> {
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
