//! `/api/v2/admin/audit/storage` and `/api/v2/admin/audit/quarantine/purge` (service operators):
//! thin RPCs to the storage-audit role (`storage-audit.<action>`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nlds_core::message::RpcReply;
use nlds_core::storage_audit::{
    AuditRequest, AuditRuns, AuditRunsQuery, AuditStarted, PurgeQuarantineRequest, QuarantinePurged,
};
use nlds_core::{Action, ErrorCode, Payload, RoutingKey, Worker};

use super::{rpc_env_as, unexpected};
use crate::error::{Result, ServerError};
use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::state::AppState;

/// Runs `GET /api/v2/admin/audit/storage` shows by default, and at most.
const DEFAULT_RUNS: u32 = 10;
const MAX_RUNS: u32 = 100;

/// The envelope of an operator's storage-audit RPC; anyone else is refused (403).
fn operator(caller: &Caller, payload: Payload) -> Result<nlds_core::Envelope> {
    if !caller.0.admin {
        return Err(ServerError::new(
            ErrorCode::Forbidden,
            format!(
                "{} is not a service operator (admin): the storage audit is for operators",
                caller.0.user
            ),
        ));
    }
    let group = caller.0.groups.first().cloned().unwrap_or_default();
    Ok(rpc_env_as(&caller.0.user, &group, payload).with_role(caller.0.role_in(&group)))
}

fn key(action: Action) -> RoutingKey {
    RoutingKey::new(Worker::StorageAudit, action)
}

/// `POST /api/v2/admin/audit/storage`: start a storage audit (the catalogue against the warm
/// buckets and the cold store; optionally a scrub and a repair) in the background.
#[utoipa::path(post, path = "/api/v2/admin/audit/storage", request_body = AuditRequest, responses((status = 202, body = AuditStarted, description = "the audit started"), (status = 400, body = nlds_core::error::ErrorBody, description = "no tier, or a sample of 0"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator"), (status = 409, body = nlds_core::error::ErrorBody, description = "an audit is running")), security(("bearer" = [])))]
pub async fn storage_audit_run(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<AuditRequest>,
) -> Result<(StatusCode, Json<AuditStarted>)> {
    let env = operator(&caller, Payload::StorageAudit(req))?;
    match s.rpc(key(Action::Run), env).await? {
        RpcReply::AuditStarted { id } => {
            tracing::info!(user = %caller.0.user, run = id, "storage audit started");
            Ok((StatusCode::ACCEPTED, Json(AuditStarted { run_id: id })))
        }
        _ => Err(unexpected("storage-audit.run")),
    }
}

/// `GET /api/v2/admin/audit/storage`: the latest storage audits (operators' and scheduled
/// scrubs'), newest first, with their counts and findings.
#[utoipa::path(get, path = "/api/v2/admin/audit/storage", params(AuditRunsQuery), responses((status = 200, body = AuditRuns, description = "the latest runs"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn storage_audit_runs(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditRunsQuery>,
) -> Result<Json<AuditRuns>> {
    let runs = match q.runs {
        None => DEFAULT_RUNS,
        Some(n) if n == 0 || n > MAX_RUNS => {
            return Err(ServerError::bad_request(format!(
                "runs={n}: give 1 to {MAX_RUNS}"
            )));
        }
        Some(n) => n,
    };
    let env = operator(&caller, Payload::StorageAuditRuns { runs })?;
    match s.rpc(key(Action::Status), env).await? {
        RpcReply::AuditRuns(r) => Ok(Json(r)),
        _ => Err(unexpected("storage-audit.status")),
    }
}

/// `POST /api/v2/admin/audit/quarantine/purge`: delete what storage audits quarantined (dark
/// objects and aggregates), all of it or what was quarantined before a day.
#[utoipa::path(post, path = "/api/v2/admin/audit/quarantine/purge", request_body = PurgeQuarantineRequest, responses((status = 200, body = QuarantinePurged, description = "what was deleted"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn storage_audit_purge(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PurgeQuarantineRequest>,
) -> Result<Json<QuarantinePurged>> {
    let env = operator(&caller, Payload::PurgeQuarantine { before: req.before })?;
    match s.rpc(key(Action::Purge), env).await? {
        RpcReply::QuarantinePurged(p) => {
            tracing::info!(user = %caller.0.user, objects = p.objects, bytes = p.bytes, "quarantine purged");
            Ok(Json(p))
        }
        _ => Err(unexpected("storage-audit.purge")),
    }
}
