//! The shapes of the legacy API's answers.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use nlds_core::ErrorCode;
use nlds_core::api::Tags;
use serde_json::{Value, json};

use crate::error::ServerError;

use super::error::LegacyError;

/// 202 with the body as a JSON string holding JSON, as the upstream routers answer.
pub(super) fn accepted(v: Value) -> Response {
    let body = serde_json::to_string(&v.to_string()).unwrap_or_else(|_| "\"{}\"".into());
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A time as upstream writes it: ISO 8601 in UTC without an offset (the Python client compares
/// it with naive datetimes, so an offset would crash it).
pub(super) fn iso(t: DateTime<Utc>) -> String {
    t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

pub(super) fn tags_value(t: &Tags) -> Value {
    json!(t)
}

/// The body of the list/find/meta/stat answers: the message upstream's catalogue sends back.
pub(super) fn rpc_message(details: Value, data: Value, meta: Value) -> Value {
    json!({"details": details, "data": data, "meta": meta, "type": "standard"})
}

pub(super) fn with_failure(mut details: Value, failure: impl Into<String>) -> Value {
    details["failure"] = Value::String(failure.into());
    details
}

/// Failures of an RPC endpoint are answered 202 with `details.failure`; faults of the service
/// (timeouts, a broken bus) keep their HTTP status.
pub(super) fn rpc_failure(e: ServerError, details: Value, data: Value, meta: Value) -> Response {
    match e.0.code {
        ErrorCode::Timeout | ErrorCode::Unavailable | ErrorCode::Internal => {
            LegacyError::from(e).into_response()
        }
        _ => accepted(rpc_message(with_failure(details, e.0.message), data, meta)),
    }
}
