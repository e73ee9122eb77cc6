//! `/api/v2/admin/policy/*` (service operators: dry run, run, status, reload, reset) and
//! `/api/v2/explain` (users): thin RPCs to the policy role (`policy.<action>`).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nlds_core::message::{HoldingFilter, RpcReply};
use nlds_core::number::db_id;
use nlds_core::policy::{
    ExplainQuery, Explanation, PassReport, PassStarted, PolicyStatus, PolicyStatusQuery,
    ReloadReport,
};
use nlds_core::{Action, ErrorCode, Payload, RoutingKey, Worker};

use super::{rpc_env, rpc_env_as, unexpected};
use crate::error::{Result, ServerError};
use crate::extract::{ApiQuery, Caller};
use crate::state::AppState;

/// Past passes `GET /api/v2/admin/policy` shows by default, and at most.
const DEFAULT_PASSES: u32 = 10;
const MAX_PASSES: u32 = 1000;

/// The envelope of an operator's policy RPC; anyone else is refused (403).
fn operator(caller: &Caller, payload: Payload) -> Result<nlds_core::Envelope> {
    if !caller.0.admin {
        return Err(ServerError::new(
            ErrorCode::Forbidden,
            format!(
                "{} is not a service operator (admin): the policy's admin routes are for operators",
                caller.0.user
            ),
        ));
    }
    let group = caller.0.groups.first().cloned().unwrap_or_default();
    Ok(rpc_env_as(&caller.0.user, &group, payload).with_role(caller.0.role_in(&group)))
}

fn key(action: Action) -> RoutingKey {
    RoutingKey::new(Worker::Policy, action)
}

/// `POST /api/v2/admin/policy/dry-run`: what a pass would do now, per rule and per group
/// (files, bytes, examples); changes nothing.
#[utoipa::path(post, path = "/api/v2/admin/policy/dry-run", responses((status = 200, body = PassReport, description = "what a pass would do"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator"), (status = 504, body = nlds_core::error::ErrorBody, description = "no answer within [server] policy_rpc_timeout_secs")), security(("bearer" = [])))]
pub async fn policy_dry_run(State(s): State<AppState>, caller: Caller) -> Result<Json<PassReport>> {
    let env = operator(&caller, Payload::Policy)?;
    // It evaluates the whole catalogue: longer than a query.
    let timeout = Duration::from_secs(s.cfg.policy_rpc_timeout_secs.max(1));
    match s.rpc_within(key(Action::DryRun), env, timeout).await? {
        RpcReply::Pass(report) => Ok(Json(report)),
        _ => Err(unexpected("policy.dry-run")),
    }
}

/// `POST /api/v2/admin/policy/run`: start a pass now, in the background (409 when another pass
/// runs or another runner holds the lease).
#[utoipa::path(post, path = "/api/v2/admin/policy/run", responses((status = 202, body = PassStarted, description = "the pass started"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator"), (status = 409, body = nlds_core::error::ErrorBody, description = "a pass is running, or another runner holds the lease")), security(("bearer" = [])))]
pub async fn policy_run(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<PassStarted>)> {
    let env = operator(&caller, Payload::Policy)?;
    match s.rpc(key(Action::Run), env).await? {
        RpcReply::PassStarted { id } => {
            tracing::info!(user = %caller.0.user, pass_id = id, "policy pass started");
            Ok((StatusCode::ACCEPTED, Json(PassStarted { pass_id: id })))
        }
        _ => Err(unexpected("policy.run")),
    }
}

/// `GET /api/v2/admin/policy`: the runner's state (rules, lease, breaker) and its last passes.
#[utoipa::path(get, path = "/api/v2/admin/policy", params(PolicyStatusQuery), responses((status = 200, body = PolicyStatus, description = "the policy runner's state"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn policy_status(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PolicyStatusQuery>,
) -> Result<Json<PolicyStatus>> {
    let passes = match q.passes {
        None => DEFAULT_PASSES,
        Some(n) if n > MAX_PASSES => {
            return Err(ServerError::bad_request(format!(
                "passes={n} is above the maximum of {MAX_PASSES}"
            )));
        }
        Some(n) => n,
    };
    let env = operator(&caller, Payload::PolicyStatus { passes })?;
    match s.rpc(key(Action::Status), env).await? {
        RpcReply::PolicyStatus(st) => Ok(Json(st)),
        _ => Err(unexpected("policy.status")),
    }
}

/// `POST /api/v2/admin/policy/reload`: read the settings file's `[policy]` again. Invalid rules
/// are refused whole (`loaded: false`, `errors` naming rule, key and problem) and the rules in
/// use stay.
#[utoipa::path(post, path = "/api/v2/admin/policy/reload", responses((status = 200, body = ReloadReport, description = "the rules now in use, or why the new ones were refused"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn policy_reload(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<ReloadReport>> {
    let env = operator(&caller, Payload::Policy)?;
    match s.rpc(key(Action::Reload), env).await? {
        RpcReply::Reloaded(r) => {
            tracing::info!(user = %caller.0.user, loaded = r.loaded, errors = r.errors.len(), "policy reload");
            Ok(Json(r))
        }
        _ => Err(unexpected("policy.reload")),
    }
}

/// `POST /api/v2/admin/policy/reset`: close the circuit breaker; answers the runner's state.
#[utoipa::path(post, path = "/api/v2/admin/policy/reset", responses((status = 200, body = PolicyStatus, description = "the breaker is closed"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn policy_reset(State(s): State<AppState>, caller: Caller) -> Result<Json<PolicyStatus>> {
    let env = operator(&caller, Payload::Policy)?;
    match s.rpc(key(Action::Reset), env).await? {
        RpcReply::PolicyStatus(st) => {
            tracing::info!(user = %caller.0.user, "policy circuit breaker reset");
            Ok(Json(st))
        }
        _ => Err(unexpected("policy.reset")),
    }
}

/// `GET /api/v2/explain`: where one of the caller's files is (tiers), which policy rule applies
/// to it and when it will move. A file outside the caller's scope is not found, like one that
/// does not exist.
#[utoipa::path(get, path = "/api/v2/explain", params(ExplainQuery), responses((status = 200, body = Explanation, description = "the file's tiers, rule and next move"), (status = 400, body = nlds_core::error::ErrorBody, description = "the path is in several holdings: name one"), (status = 404, body = nlds_core::error::ErrorBody, description = "no such file visible to the caller")), security(("bearer" = [])))]
pub async fn explain(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ExplainQuery>,
) -> Result<Json<Explanation>> {
    let group = caller.group(q.group.as_deref())?;
    let path = q.path.trim();
    if path.is_empty() || path.contains('\0') {
        return Err(ServerError::bad_request(
            "give the file to explain: ?path=/the/path/as/stored",
        ));
    }
    let filter = HoldingFilter {
        label: q.label.clone().filter(|l| !l.is_empty()),
        holding_id: q.holding_id.map(|id| db_id("holding_id", id)).transpose()?,
        limit: 2,
        ..HoldingFilter::default()
    };
    let env = rpc_env(
        &caller,
        &group,
        Payload::Explain {
            filter,
            path: path.to_owned(),
        },
    );
    match s.rpc(key(Action::Explain), env).await? {
        RpcReply::Explained(e) => Ok(Json(e)),
        _ => Err(unexpected("policy.explain")),
    }
}
