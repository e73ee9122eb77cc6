//! `/api/v2/transactions/{transaction_id}/cancel`: stop a put or get (docs/CANCEL.md).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use nlds_core::api::{CancelAccepted, TransactionStatus};
use nlds_core::message::{RpcReply, StatusFilter};
use nlds_core::{AccessRole, Action, Envelope, ErrorCode, Payload, RoutingKey, Worker};
use uuid::Uuid;

use super::{parse_tid, stat_rpc, unexpected};
use crate::error::{Result, ServerError};
use crate::extract::Caller;
use crate::live;
use crate::state::AppState;

/// `POST /api/v2/transactions/{transaction_id}/cancel`: cancels a put or get that has not ended
/// (202): every role drops the work it has not done for it; files already stored stay stored
/// (and are reported), objects uploaded but not catalogued are removed, batches waiting for a
/// recall end at once. It ends CANCELLED (FAILED with the reason "cancelled" on `/api/1.0.0`).
/// The owner, a deputy or manager of its group, or an operator may cancel it; to anyone else it
/// is a 404 like an unknown one. 409 for a transaction that has ended, naming its state.
#[utoipa::path(post, path = "/api/v2/transactions/{transaction_id}/cancel",
    params(("transaction_id" = String, Path, description = "UUID of the put or get to cancel")),
    responses((status = 202, body = CancelAccepted, description = "the cancel is recorded; the transaction ends CANCELLED"),
        (status = 400, body = nlds_core::error::ErrorBody, description = "a malformed transaction id"),
        (status = 404, body = nlds_core::error::ErrorBody, description = "no such transaction the caller may cancel"),
        (status = 409, body = nlds_core::error::ErrorBody, description = "it has ended, or is not a put or get")),
    security(("bearer" = [])))]
pub async fn cancel(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CancelAccepted>)> {
    let tid = parse_tid(&id)?;
    let t = cancellable(&s, &caller, tid).await?.ok_or_else(|| {
        ServerError::new(ErrorCode::NotFound, format!("transaction {tid} not found"))
    })?;
    if live::settled(&t) {
        return Err(ServerError::new(
            ErrorCode::Conflict,
            format!(
                "transaction {tid} has already ended {}: there is nothing left to cancel",
                t.state
            ),
        ));
    }
    let env = Envelope::new(
        tid,
        &caller.0.user,
        &t.group,
        t.api_action,
        "rpc",
        Payload::Cancel,
    )
    .with_role(caller.0.role_in(&t.group));
    let RpcReply::Cancelled { first, waiting } = s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Cancel), env)
        .await?
    else {
        return Err(unexpected("catalog.cancel"));
    };
    // Transfers moving its files now stop (best effort: the catalogue stops the rest).
    let announced = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        s.bus.announce(nlds_core::Change::cancelled(tid)),
    )
    .await;
    if !matches!(announced, Ok(Ok(()))) {
        tracing::debug!(%tid, ?announced, "could not announce the cancel");
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(CancelAccepted {
            transaction_id: tid,
            api_action: t.api_action,
            state: t.state,
            first,
            waiting_ended: waiting,
            status_url: format!("{}/api/v2/transactions/{tid}", s.cfg.base_url()),
        }),
    ))
}

/// The transaction `tid` if `caller` may cancel it: their own, one of a group they are a deputy
/// or manager of, or (operators) anyone's.
async fn cancellable(
    s: &AppState,
    caller: &Caller,
    tid: Uuid,
) -> Result<Option<TransactionStatus>> {
    let me = live::Reader::of(caller, &caller.group(None)?);
    if let Some(t) = live::fetch(s, &me, tid).await? {
        return Ok(Some(t));
    }
    if caller.0.admin {
        return crate::admin::any_transaction(s, caller, tid).await;
    }
    for group in &caller.0.groups {
        let role = caller.0.role_in(group);
        if !matches!(role, AccessRole::Deputy | AccessRole::Manager) {
            continue;
        }
        let filter = StatusFilter {
            transaction_id: Some(tid),
            groupall: true,
            limit: 1,
            descending: true,
            ..Default::default()
        };
        let page = stat_rpc(s, &caller.0.user, group, role, filter).await?;
        if let Some(t) = page.transactions.into_iter().find(|t| &t.group == group) {
            return Ok(Some(t));
        }
    }
    Ok(None)
}
