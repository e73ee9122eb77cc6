//! The server's error type: one envelope, `{"error": {"code", "message"}}`, whose status comes from
//! the error code alone.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nlds_bus::BusError;
use nlds_core::ErrorCode;
use nlds_core::error::{ApiError, ErrorBody};

/// An error answered to an API caller.
#[derive(Debug)]
pub struct ServerError(pub ApiError);

pub type Result<T> = std::result::Result<T, ServerError>;

impl ServerError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ApiError::new(code, message))
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl From<ApiError> for ServerError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<BusError> for ServerError {
    fn from(e: BusError) -> Self {
        let message = match &e {
            BusError::Timeout(_, t) => format!(
                "the catalogue or monitor did not answer within {}s; try again, or narrow the request (holding id, label, limit)",
                t.as_secs()
            ),
            other => other.to_string(),
        };
        tracing::error!(error = %e, "bus error");
        Self::new(e.code(), message)
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody { error: self.0 })).into_response()
    }
}
