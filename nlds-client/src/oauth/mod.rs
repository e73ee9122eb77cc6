//! OAuth2 login with any standard provider, through the `oauth2` crate.
//!
//! * [`AuthSettings`]: the `[auth]` section of the config file (issuer, client id, scopes,
//!   audience, token file, client secret for service accounts) < the `NLDS_AUTH_*` environment <
//!   the options of `nlds login`, layered with the same figment providers as the rest of the
//!   client's settings (`crate::config::layers`). The provider's endpoints come from OIDC
//!   discovery of the issuer.
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

mod grants;
mod http;
mod session;
mod settings;
mod store;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use grants::{
    DevicePrompt, Revocation, client_credentials_login, device_login, login_again, revoke,
};
pub use http::{ProviderHttp, ProviderHttpError, ProviderMetadata, discover};
pub use session::OAuthSession;
pub use settings::{AuthFlags, AuthSettings, Grant, SecretFrom, configured, settings};
pub use store::{StoredLogin, TokenStore, needs_refresh};

/// Refresh an access token that expires within this long, before using it.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The token file's name, next to the config file, unless `[auth] token_file` says otherwise.
pub const DEFAULT_TOKEN_FILE: &str = "oauth-token.json";

/// Scopes asked for by the device grant when none are configured: an identity (`openid`) and a
/// refresh token (`offline_access`).
pub const DEFAULT_DEVICE_SCOPES: [&str; 2] = ["openid", "offline_access"];
