//! Why the policy runner could not do what it was asked.

use chrono::{DateTime, Utc};
use nlds_core::ErrorCode;
use nlds_core::error::ApiError;
use sea_orm::DbErr;

/// A pass or status query that could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// Another runner is active (distributed mode runs exactly one at a time).
    #[error(
        "another policy runner holds the lease ({holder}, until {until}); \
         passes run there, or here once that lease expires"
    )]
    LeaseHeld {
        holder: String,
        until: DateTime<Utc>,
    },
    /// The circuit breaker is open and this kind of pass waits for it to close.
    #[error(
        "the policy's circuit breaker is open since {since}: {reason}; an operator closes it \
         with `nlds admin policy reset` (or the next scheduled or manual pass does)"
    )]
    BreakerOpen {
        reason: String,
        since: DateTime<Utc>,
    },
    #[error("policy runner: database error: {0}")]
    Db(#[from] DbErr),
}

impl RunnerError {
    /// The code an API answer carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            RunnerError::LeaseHeld { .. } | RunnerError::BreakerOpen { .. } => ErrorCode::Conflict,
            RunnerError::Db(e) if crate::db::is_transient(e) => ErrorCode::Unavailable,
            RunnerError::Db(_) => ErrorCode::Internal,
        }
    }

    /// The error as an API answer.
    pub fn to_api(&self) -> ApiError {
        ApiError::new(self.code(), self.to_string())
    }
}
