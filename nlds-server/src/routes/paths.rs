//! `/api/v2/paths`: one chunk of the paths of a put, get or delete too long for one request. The API
//! only checks the chunk and forwards it to the catalogue (`catalog.append`), which stores it
//! until the request that names it starts (see docs/PROTOCOL.md, "Chunked requests").

use axum::Json;
use axum::extract::State;
use nlds_core::api::{ApiAction, ChunkStored, PathChunk};
use nlds_core::message::RpcReply;
use nlds_core::{AccessRole, Action, Envelope, Payload, RoutingKey, Worker};

use super::{unexpected, validate_paths};
use crate::error::{Result, ServerError};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

/// `POST /api/v2/paths`: stores one chunk of a putlist, getlist or dellist (sending a chunk
/// again replaces it); the put, get or delete itself follows with `parts` and its
/// `transaction_id`.
#[utoipa::path(post, path = "/api/v2/paths", request_body = PathChunk,
    responses((status = 200, body = ChunkStored, description = "the chunk is stored"), (status = 400, body = nlds_core::error::ErrorBody, description = "invalid chunk"), (status = 409, body = nlds_core::error::ErrorBody, description = "the transaction id is in use or has started"), (status = 413, body = nlds_core::error::ErrorBody, description = "the chunk or the request lists too many paths")), security(("bearer" = [])))]
pub async fn append_paths(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PathChunk>,
) -> Result<Json<ChunkStored>> {
    let group = caller.group(req.group.as_deref())?;
    let role = caller.0.role_in(&group);
    let relative = match req.api_action {
        ApiAction::Putlist => false,
        // A get's paths may be regular expressions; the request says so when it starts.
        ApiAction::Getlist => true,
        // A delete in chunks takes paths only (docs/PROTOCOL.md, "Chunked requests").
        ApiAction::Dellist => false,
        other => {
            return Err(ServerError::bad_request(format!(
                "api_action must be putlist, getlist or dellist for a chunk of paths, not {}",
                other.as_str()
            )));
        }
    };
    validate_paths(&req.paths, s.cfg.max_paths, relative)?;
    crate::notes::note_paths(&req.paths);
    let stored = append(
        &s,
        &caller.0.user,
        &group,
        role,
        (req.api_action, req.transaction_id),
        req.part,
        req.paths,
    )
    .await?;
    Ok(Json(stored))
}

/// Stores `paths` as chunk `part` of the request `(action, tid)` of `user` in `group`.
pub(crate) async fn append(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    (action, tid): (ApiAction, uuid::Uuid),
    part: u32,
    paths: Vec<String>,
) -> Result<ChunkStored> {
    let env = Envelope::new(
        tid,
        user,
        group,
        action,
        "chunk",
        Payload::AppendPaths {
            part,
            paths,
            max_total: s.cfg.max_request_paths,
        },
    )
    .with_role(role);
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Append), env)
        .await?
    {
        RpcReply::Appended { parts, paths } => Ok(ChunkStored {
            transaction_id: tid,
            parts,
            paths,
        }),
        _ => Err(unexpected("catalog.append")),
    }
}

/// Refuses a request of `n` paths past the server's cap on one put or get.
pub(crate) fn check_total(s: &AppState, n: usize) -> Result<()> {
    let max = s.cfg.max_request_paths;
    if n as u64 > max {
        return Err(nlds_core::api::too_many_paths(n as u64, max).into());
    }
    Ok(())
}

/// The paths of a request that names `parts` earlier chunks: its own (the last chunk) are stored
/// as chunk `parts` when there are any. Returns how many chunks the request has in all.
pub(crate) async fn last_chunk(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    (action, tid): (ApiAction, uuid::Uuid),
    parts: u32,
    paths: &[String],
) -> Result<u32> {
    if paths.is_empty() {
        return Ok(parts);
    }
    append(s, user, group, role, (action, tid), parts, paths.to_vec()).await?;
    Ok(parts + 1)
}
