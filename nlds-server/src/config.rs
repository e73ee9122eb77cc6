//! Server settings: `[server]`, `[auth]`, plus the shared `[bus]` and `[workers]` sections, all
//! defined in `nlds-settings` (the one owner of the settings; the API does not reach into the
//! workers for them) and re-exported here under their established names.

pub use nlds_settings::{AuthConfig, AuthKind, ServerConfig};

/// The whole settings file as the server reads it: the one settings type.
pub type ServerSettings = nlds_settings::Settings;
