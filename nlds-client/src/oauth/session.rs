//! The logged-in session that renews its access token before each request.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};

use super::grants::{Renewal, login_again, renew};
use super::settings::AuthSettings;
use super::store::{StoredLogin, TokenStore};
use crate::client::TokenSource;
use crate::error::{Error, Result};

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
            .field("token_file", &self.store.path())
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
                    store.path().display(),
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
                    store.path().display()
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
