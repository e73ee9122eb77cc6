//! `/api/v2/admin/*`: operations for service operators (archive round, eviction).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nlds_core::api::{ArchiveRequested, EvictRequest, Evicted};
use nlds_core::message::RpcReply;
use nlds_core::{Action, ErrorCode, Payload, RoutingKey, Worker};

use super::{rpc_env, unexpected};
use crate::error::{Result, ServerError};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

/// `POST /api/v2/admin/archive`: start an archive round now (service operators only).
#[utoipa::path(post, path = "/api/v2/admin/archive", responses((status = 202, body = ArchiveRequested, description = "round requested"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn admin_archive(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<ArchiveRequested>)> {
    if !caller.0.admin {
        return Err(ServerError::new(
            ErrorCode::Forbidden,
            format!("{} is not a service operator (admin)", caller.0.user),
        ));
    }
    // The archive workflow's first message; the catalogue plans the round.
    let (key, env) = nlds_core::workflow::archive_round();
    s.bus.publish(key, &env).await?;
    let round = env.transaction_id;
    tracing::info!(user = %caller.0.user, %round, "archive round requested");
    Ok((StatusCode::ACCEPTED, Json(ArchiveRequested { round })))
}

/// `POST /api/v2/admin/evict`: drop the warm copies of a holding's files that have a verified
/// cold copy (service operators only; eviction policies use the same path).
#[utoipa::path(post, path = "/api/v2/admin/evict", request_body = EvictRequest, responses((status = 200, body = Evicted, description = "warm copies dropped"), (status = 400, body = nlds_core::error::ErrorBody, description = "no holding_id"), (status = 404, body = nlds_core::error::ErrorBody, description = "no such holding"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn admin_evict(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(EvictRequest { holding_id }): ApiJson<EvictRequest>,
) -> Result<Json<Evicted>> {
    if !caller.0.admin {
        return Err(ServerError::new(
            ErrorCode::Forbidden,
            format!("{} is not a service operator (admin)", caller.0.user),
        ));
    }
    let group = caller.group(None)?;
    let env = rpc_env(&caller, &group, Payload::Evict { holding_id });
    let RpcReply::Evicted { files } = s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Evict), env)
        .await?
    else {
        return Err(unexpected("catalog.evict"));
    };
    // The catalogue staged the removal of these warm copies' objects with the eviction.
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    let n = files.len() as u64;
    tracing::info!(user = %caller.0.user, holding_id, files = n, bytes, "warm copies evicted");
    Ok(Json(Evicted {
        holding_id,
        files: n,
        bytes,
    }))
}
