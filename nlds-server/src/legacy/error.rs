//! Errors of the legacy API, in upstream's shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nlds_core::ErrorCode;
use serde_json::{Value, json};

use crate::error::ServerError;

/// An error in the legacy shape: `{"detail": "<json of {loc, msg, type}>"}`, or FastAPI's
/// validation shape for 422.
#[derive(Debug)]
pub struct LegacyError {
    status: StatusCode,
    pub(super) body: Value,
}

impl LegacyError {
    pub(super) fn new(
        status: StatusCode,
        loc: &[&str],
        msg: impl Into<String>,
        kind: &str,
    ) -> Self {
        let detail = json!({"loc": loc, "msg": msg.into(), "type": kind}).to_string();
        Self {
            status,
            body: json!({ "detail": detail }),
        }
    }

    pub(super) fn bad_request(msg: impl Into<String>, kind: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, &["None"], msg, kind)
    }

    /// FastAPI's answer to a missing or malformed query parameter.
    pub(super) fn unprocessable(name: &str, msg: &str, kind: &str) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"detail": [{"loc": ["query", name], "msg": msg, "type": kind}]}),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for LegacyError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// Errors of the shared core, in the legacy shape. The Python client prints `msg` only for 400,
/// so every "your request cannot be done" error is a 400 with its reason; authentication keeps
/// 401/403 (they drive the client's token refresh) and server-side faults keep their status.
impl From<ServerError> for LegacyError {
    fn from(e: ServerError) -> Self {
        let e = e.0;
        crate::notes::observe_error(&e);
        let (status, kind) = match e.code {
            ErrorCode::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized."),
            ErrorCode::Forbidden => (StatusCode::FORBIDDEN, "Forbidden."),
            ErrorCode::Timeout => (StatusCode::GATEWAY_TIMEOUT, "Request timed out."),
            ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Service unavailable."),
            ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error."),
            ErrorCode::NotFound => (StatusCode::BAD_REQUEST, "Resources not found."),
            _ => (StatusCode::BAD_REQUEST, "Request could not be processed."),
        };
        Self::new(status, &["None"], e.message, kind)
    }
}

pub(super) type LResult<T> = Result<T, LegacyError>;
