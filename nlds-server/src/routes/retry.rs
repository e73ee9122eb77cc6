//! `/api/v2/transactions/{transaction_id}/retry`: a put's failed files, put again.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use nlds_core::api::{Accepted, ApiAction, PutRequest};
use nlds_core::message::RpcReply;
use nlds_core::{Action, Envelope, ErrorCode, Payload, RoutingKey, Worker};

use super::{parse_tid, submit_put, unexpected};
use crate::error::{Result, ServerError};
use crate::extract::Caller;
use crate::live::{self, Reader};
use crate::state::AppState;

/// `POST /api/v2/transactions/{transaction_id}/retry`: puts the files a finished put of the
/// caller failed again, into the same holding, as a new transaction (202, like a put) linked to
/// the first: stat shows `retry_of` on the new one and `retried_by` on the first. Files the put
/// skipped as unchanged are no failures and are not retried. 404 for a transaction that is not
/// the caller's (or does not exist); 409 for one that has not ended or has no failed files; 400
/// for one that is not a put.
#[utoipa::path(post, path = "/api/v2/transactions/{transaction_id}/retry",
    params(("transaction_id" = String, Path, description = "UUID of the put to retry")),
    responses((status = 202, body = Accepted, description = "the retry: a new put of the failed files"),
        (status = 400, body = nlds_core::error::ErrorBody, description = "not a put"),
        (status = 404, body = nlds_core::error::ErrorBody, description = "no such transaction of the caller"),
        (status = 409, body = nlds_core::error::ErrorBody, description = "not ended yet, or nothing failed")),
    security(("bearer" = [])))]
pub async fn retry(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Accepted>)> {
    let tid = parse_tid(&id)?;
    let who = Reader::of(&caller, &caller.group(None)?);
    // Without `groupall`: only the caller's own transactions.
    let original = live::fetch(&s, &who, tid).await?.ok_or_else(|| {
        ServerError::new(ErrorCode::NotFound, format!("transaction {tid} not found"))
    })?;
    if !matches!(original.api_action, ApiAction::Put | ApiAction::Putlist) {
        return Err(ServerError::bad_request(format!(
            "transaction {tid} is a {}: only the failed files of a put can be retried; run the {} again",
            original.api_action, original.api_action
        )));
    }
    if !live::settled(&original) {
        return Err(ServerError::new(
            ErrorCode::Conflict,
            format!(
                "transaction {tid} is still {}: retry it once it has ended (`nlds wait {tid}`)",
                original.state
            ),
        ));
    }
    let mut paths: Vec<String> = original
        .failed_files()
        .filter(|f| f.code != ErrorCode::Unchanged)
        .map(|f| f.path.clone())
        .collect();
    paths.sort();
    paths.dedup();
    let (Some(holding_id), false) = (original.holding_id, paths.is_empty()) else {
        return Err(ServerError::new(
            ErrorCode::Conflict,
            format!(
                "transaction {tid} ended {} with no failed files to retry",
                original.state
            ),
        ));
    };
    let req = PutRequest {
        paths,
        holding_id: Some(holding_id),
        group: Some(original.group.clone()),
        job_label: Some(format!("retry of {}", &tid.to_string()[..8])),
        ..Default::default()
    };
    let accepted = submit_put(
        &s,
        &caller.0.user,
        &original.group,
        caller.0.role_in(&original.group),
        req,
        Some(Default::default()),
    )
    .await?;
    let link = Envelope::new(
        accepted.transaction_id,
        &caller.0.user,
        &original.group,
        accepted.api_action,
        "rpc",
        Payload::RetryOf { retry_of: tid },
    )
    .with_role(who.role);
    match s
        .rpc(RoutingKey::new(Worker::Monitor, Action::Init), link)
        .await?
    {
        RpcReply::Recorded => Ok((StatusCode::ACCEPTED, Json(accepted))),
        _ => Err(unexpected("monitor.init")),
    }
}
