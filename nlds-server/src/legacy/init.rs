//! `init/`: the public client settings, Fernet-encrypted as upstream serves them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::state::AppState;

use super::error::{LResult, LegacyError};
use super::reply::accepted;

pub use nlds_settings::LegacyInit;

/// What `init/` derives from [`LegacyInit`] (defined in `nlds-settings`).
pub(super) trait LegacyInitExt {
    fn key(&self) -> String;
    fn missing(&self) -> Vec<&'static str>;
}

impl LegacyInitExt for LegacyInit {
    /// The Fernet key: derived from the public settings, so every replica serves the same one
    /// without sharing a secret (it protects nothing secret).
    fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"nlds-rs legacy init key v1\0");
        h.update(self.oauth_client_id.as_bytes());
        h.update(b"\0");
        h.update(self.oauth_token_url.as_bytes());
        h.update(b"\0");
        h.update(self.oauth_scopes.as_bytes());
        h.update(b"\0");
        h.update(self.tenancy.as_bytes());
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE.encode(h.finalize().as_bytes())
    }

    fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.oauth_client_id.is_empty() {
            m.push("oauth_client_id");
        }
        if self.oauth_token_url.is_empty() {
            m.push("oauth_token_url");
        }
        m
    }
}

fn init_unconfigured(cfg: &LegacyInit) -> LegacyError {
    LegacyError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        &["None"],
        format!(
            "Unable to get api keys. The operator has not configured [server.legacy_init] {}.",
            cfg.missing().join(" and ")
        ),
        "Internal error.",
    )
}

/// `GET init/`: `{"encrypted_keys": Fernet(json)}` of the public client settings.
#[utoipa::path(
    get, path = "/api/1.0.0/init/", tag = "legacy", operation_id = "legacy_init",
    responses((status = 202,
            description = "`{\"encrypted_keys\": ...}`: the public client settings, Fernet-encrypted"),
        (status = 500, description = "`[server.legacy_init]` is not configured"))
)]
pub(super) async fn init(State(s): State<AppState>) -> LResult<Response> {
    let cfg = &s.cfg.legacy_init;
    if !cfg.missing().is_empty() {
        return Err(init_unconfigured(cfg));
    }
    let plain = json!({
        "authentication": {
            "oauth_client_id": cfg.oauth_client_id,
            "oauth_client_secret": "",
            "oauth_token_url": cfg.oauth_token_url,
            "oauth_scopes": cfg.oauth_scopes,
        },
        "object_storage": {"tenancy": cfg.tenancy},
    });
    let fernet = fernet::Fernet::new(&cfg.key()).ok_or_else(|| {
        LegacyError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            &["None"],
            "Unable to get api keys.",
            "Internal error.",
        )
    })?;
    let token = fernet.encrypt(plain.to_string().as_bytes());
    Ok(accepted(json!({ "encrypted_keys": token })))
}

/// `GET init/token`: the Fernet key, base64-encoded once more as upstream does.
#[utoipa::path(
    get, path = "/api/1.0.0/init/token/", tag = "legacy", operation_id = "legacy_init_token",
    responses((status = 202, description = "`{\"token\": ...}`: the Fernet key"),
        (status = 500, description = "`[server.legacy_init]` is not configured"))
)]
pub(super) async fn init_token(State(s): State<AppState>) -> LResult<Response> {
    let cfg = &s.cfg.legacy_init;
    if !cfg.missing().is_empty() {
        return Err(init_unconfigured(cfg));
    }
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(cfg.key());
    Ok(accepted(json!({ "token": token })))
}
