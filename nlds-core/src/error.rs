//! The closed set of error codes. Stable on the wire (snake_case), in the database and in CLI exit
//! codes; the only place that decides an HTTP status.

use serde::{Deserialize, Serialize};

/// Why something failed, as a stable machine-readable code.
#[cfg_attr(
    feature = "db",
    derive(sea_orm::DeriveValueType),
    sea_orm(value_type = "String", from_str = "crate::db::parse")
)]
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum ErrorCode {
    /// The request is malformed or names something invalid.
    BadRequest,
    /// No credentials, or credentials we do not accept.
    Unauthorized,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// The holding, transaction or file does not exist (for this user).
    NotFound,
    /// The request conflicts with what is stored (e.g. a path already in the holding).
    Conflict,
    /// The request is too large (too many paths, too big a body).
    PayloadTooLarge,
    /// A file or directory named in a request does not exist.
    PathMissing,
    /// A file or directory cannot be read or written with the user's permissions.
    PermissionDenied,
    /// Data read back does not match its recorded checksum.
    ChecksumMismatch,
    /// A storage backend (object store, tape) failed.
    StorageError,
    /// A backend service did not answer in time.
    Timeout,
    /// A backend service is not reachable now.
    Unavailable,
    /// A bug or an unexpected fault on our side.
    Internal,
    /// The request would take its group over a quota (warm bytes or file count).
    QuotaExceeded,
    /// Not a failure: a put skipped the path because the holding has it unchanged at the put's
    /// sync level (see docs/VERSIONS.md). Travels with a batch's failed files and is counted as
    /// skipped, never as failed.
    Unchanged,
    /// The transaction was cancelled before this file was done (`nlds cancel`): nothing of it
    /// was stored or restored by this transaction.
    Cancelled,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::PathMissing => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::PermissionDenied | ErrorCode::QuotaExceeded => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::Unchanged | ErrorCode::Cancelled => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::ChecksumMismatch | ErrorCode::StorageError => 502,
            ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
            ErrorCode::Internal => 500,
        }
    }

    /// Every code, in declaration order.
    pub const ALL: &'static [ErrorCode] = <ErrorCode as strum::VariantArray>::VARIANTS;

    /// The snake_case wire spelling.
    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }
}

/// A failure with its code and a message for people.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema,
)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

/// The one error envelope of the native API: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_on_the_wire_and_map_to_statuses() {
        let all = [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::PayloadTooLarge,
            ErrorCode::PathMissing,
            ErrorCode::PermissionDenied,
            ErrorCode::ChecksumMismatch,
            ErrorCode::StorageError,
            ErrorCode::Timeout,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
            ErrorCode::QuotaExceeded,
            ErrorCode::Unchanged,
            ErrorCode::Cancelled,
        ];
        for c in all {
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
            assert!((400..600).contains(&c.http_status()));
        }
        let body = ErrorBody {
            error: ApiError::not_found("holding 7 not found"),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"not_found","message":"holding 7 not found"}}"#
        );
    }
}
