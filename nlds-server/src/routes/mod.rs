//! Handlers of the native API (`/api/v2`).

mod admin_ops;
mod cancel;
mod events;
mod get;
mod health;
mod notify;
mod paths;
mod policy;
mod put;
mod quota;
mod read;
mod retry;
mod stage;
mod status;
mod storage_audit;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;

use axum::Json;
use nlds_core::api::{
    Accepted, ApiAction, DEFAULT_LIMIT, HoldingQuery, MAX_LIMIT, WhoAmI, parse_tags,
};
use nlds_core::message::{HoldingFilter, RpcReply};
use nlds_core::number::{db_count, db_id};
use nlds_core::{AccessRole, Action, Envelope, ErrorCode, Payload, RoutingKey, Worker};
use nlds_hooks::points;
use uuid::Uuid;

use crate::error::{Result, ServerError};
use crate::extract::Caller;
use crate::state::AppState;

pub use admin_ops::{__path_admin_archive, __path_admin_evict, admin_archive, admin_evict};
pub use cancel::{__path_cancel, cancel};
pub use events::{__path_events, events};
pub use get::{__path_get, get, plan_get, submit_get};
pub use health::{__path_healthz, __path_readyz, default_readiness, healthz, readyz};
pub use notify::{
    __path_admin_notifications, __path_notify_clear, __path_notify_set, __path_notify_show,
    admin_notifications, notify_clear, notify_set, notify_show,
};
pub use paths::{__path_append_paths, append_paths};
pub use policy::{
    __path_explain, __path_policy_dry_run, __path_policy_reload, __path_policy_reset,
    __path_policy_run, __path_policy_status, explain, policy_dry_run, policy_reload, policy_reset,
    policy_run, policy_status,
};
pub use put::{__path_put, plan_put, put, submit_put};
pub use quota::{
    __path_admin_quota, __path_admin_set_quota, __path_quota, admin_quota, admin_set_quota, quota,
};
pub use read::{__path_find, __path_list, __path_meta, find, list, meta};
pub use retry::{__path_retry, retry};
pub use stage::{
    __path_archiveinfo, __path_release, __path_stage, __path_stage_cancel, __path_stage_delete,
    __path_stage_status, archiveinfo, release, stage, stage_cancel, stage_delete, stage_status,
};
pub(crate) use status::stat_rpc;
pub use status::{__path_stat, __path_transaction, stat, transaction};
pub use storage_audit::{
    __path_storage_audit_purge, __path_storage_audit_run, __path_storage_audit_runs,
    storage_audit_purge, storage_audit_run, storage_audit_runs,
};

const MAX_PATH_LEN: usize = 4096;

/// Checks the paths of a put or get; names every problem (up to five) by entry number.
pub fn validate_paths(paths: &[String], max: usize, allow_relative: bool) -> Result<()> {
    if paths.is_empty() {
        return Err(ServerError::bad_request(
            "no paths given: the request must list at least one path",
        ));
    }
    if paths.len() > max {
        return Err(ServerError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the request lists {} paths; at most {max} are accepted in one request body \
                 ([server] max_paths): split the list, or send it in chunks (POST \
                 /api/v2/paths, as the nlds client does by itself)",
                paths.len()
            ),
        ));
    }
    let mut problems = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(paths.len());
    for (i, p) in paths.iter().enumerate() {
        let n = i + 1;
        if p.trim().is_empty() {
            problems.push(format!("entry {n} is blank"));
        } else if p.contains('\0') {
            problems.push(format!("entry {n} contains a NUL character"));
        } else if p.len() > MAX_PATH_LEN {
            problems.push(format!("entry {n} is longer than {MAX_PATH_LEN} bytes"));
        } else if !allow_relative && !p.starts_with('/') {
            problems.push(format!("entry {n} ({p:?}) is not an absolute path"));
        } else if let Some(first) = seen.insert(p.as_str(), n) {
            problems.push(format!("entry {n} repeats entry {first} ({p:?})"));
        }
        if problems.len() >= 5 {
            break;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ServerError::bad_request(format!(
            "invalid paths: {}",
            problems.join("; ")
        )))
    }
}

fn job_label(given: Option<&str>, tid: Uuid) -> Result<String> {
    match given.map(str::trim).filter(|s| !s.is_empty()) {
        Some(l) if l.len() > 256 || l.chars().any(char::is_control) => {
            Err(ServerError::bad_request(
                "job label must be at most 256 characters without control characters",
            ))
        }
        Some(l) => Ok(l.to_owned()),
        None => Ok(tid.to_string()[..8].to_owned()),
    }
}

fn limit(l: Option<u64>) -> Result<u64> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ServerError::bad_request("limit must be at least 1")),
        Some(n) if n > MAX_LIMIT => Err(ServerError::bad_request(format!(
            "limit {n} is above the maximum of {MAX_LIMIT}; page with offset instead"
        ))),
        Some(n) => Ok(n),
    }
}

fn parse_tid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s.trim()).map_err(|_| {
        ServerError::bad_request(format!("{s:?} is not a valid transaction id (a UUID)"))
    })
}

fn filter_from(q: &HoldingQuery) -> Result<HoldingFilter> {
    if q.regex
        && let Some(l) = &q.label
    {
        nlds_core::pattern::check(&[l], "label")?;
    }
    Ok(HoldingFilter {
        groupall: q.groupall,
        label: q.label.clone().filter(|l| !l.is_empty()),
        label_regex: q.regex,
        holding_id: q.holding_id.map(|id| db_id("holding_id", id)).transpose()?,
        holding_ids: Vec::new(),
        transaction_id: q.transaction_id.as_deref().map(parse_tid).transpose()?,
        tags: q
            .tag
            .as_deref()
            .map(parse_tags)
            .transpose()?
            .unwrap_or_default(),
        limit: limit(q.limit)?,
        offset: db_count("offset", q.offset.unwrap_or(0))?,
        descending: q.descending.unwrap_or(true),
        versions: version_select(q.version, q.at.as_deref(), q.versions)?,
    })
}

/// The version selection of a request's `version`, `at` and `versions` (docs/VERSIONS.md).
fn version_select(
    version: Option<u32>,
    at: Option<&str>,
    all: bool,
) -> Result<nlds_core::versions::VersionSelect> {
    let at = at
        .filter(|a| !a.trim().is_empty())
        .map(nlds_core::versions::parse_at)
        .transpose()
        .map_err(ServerError::bad_request)?;
    nlds_core::versions::VersionSelect::from_request(version, at, all)
        .map_err(ServerError::bad_request)
}

fn rpc_env(caller: &Caller, group: &str, payload: Payload) -> Envelope {
    rpc_env_as(&caller.0.user, group, payload).with_role(caller.0.role_in(group))
}

/// The envelope of a query RPC made on behalf of `user` (as a plain user: see
/// [`rpc_env_role`]).
pub fn rpc_env_as(user: &str, group: &str, payload: Payload) -> Envelope {
    Envelope::new(Uuid::new_v4(), user, group, ApiAction::Get, "rpc", payload)
}

/// The envelope of a query RPC made on behalf of `user`, whose role in `group` is `role`.
pub fn rpc_env_role(user: &str, group: &str, role: AccessRole, payload: Payload) -> Envelope {
    rpc_env_as(user, group, payload).with_role(role)
}

/// Answers an accepted put or get (`env` is the request the catalogue accepted): records the
/// transaction with the monitor first, so a client polling its id right after the 202 never gets
/// "not found" (the catalogue staged the same record with the submission: whichever arrives
/// first creates it).
pub(crate) async fn accepted(
    s: &AppState,
    env: &Envelope,
    holding_id: Option<i64>,
    label: Option<String>,
) -> Result<Accepted> {
    let tid = env.transaction_id;
    nlds_hooks::pause_async(points::API_BEFORE_RECORD, Path::new(&tid.to_string())).await;
    record(s, env, label.clone(), holding_id).await?;
    nlds_hooks::pause_async(points::API_BEFORE_ANSWER, Path::new(&tid.to_string())).await;
    Ok(Accepted {
        transaction_id: tid,
        api_action: env.action,
        status_url: format!("{}/api/v2/transactions/{tid}", s.cfg.base_url()),
        job_label: env.job_label.clone(),
        holding_id,
        label,
    })
}

/// The API action of a put of `paths`.
pub(crate) fn put_action(paths: &[String]) -> ApiAction {
    if paths.len() == 1 {
        ApiAction::Put
    } else {
        ApiAction::Putlist
    }
}

/// The API action of a get of `paths`.
pub(crate) fn get_action(paths: &[String], regex: bool) -> ApiAction {
    if paths.len() == 1 && !regex {
        ApiAction::Get
    } else {
        ApiAction::Getlist
    }
}

/// A client-chosen transaction id (`transaction_id` of a put, get or delete, on both APIs) must
/// be unknown, or already `user`'s in `group` for the same `action` (a retry, which then finds the
/// existing transaction): else 409 `conflict`, naming the id only (never whose it is). Asked of
/// the monitor before anything starts; the monitor's `init` refuses such an id again,
/// atomically. A server-made id needs no check.
pub(crate) async fn check_transaction_id(
    s: &AppState,
    user: &str,
    group: &str,
    action: ApiAction,
    tid: Uuid,
) -> Result<()> {
    let env = Envelope::new(
        tid,
        user,
        group,
        action,
        "check",
        Payload::CheckTransactionId,
    );
    match s
        .rpc(RoutingKey::new(Worker::Monitor, Action::Init), env)
        .await?
    {
        RpcReply::Available => Ok(()),
        _ => Err(unexpected("monitor.init")),
    }
}

/// Records the transaction with the monitor before it is accepted, so a client polling its id
/// never gets "not found", even if the process stops before the workflow starts.
async fn record(
    s: &AppState,
    env: &Envelope,
    label: Option<String>,
    holding_id: Option<i64>,
) -> Result<()> {
    let init = env.reply(Payload::MonitorInit { label, holding_id });
    match s
        .rpc(RoutingKey::new(Worker::Monitor, Action::Init), init)
        .await?
    {
        RpcReply::Recorded => Ok(()),
        _ => Err(unexpected("monitor.init")),
    }
}

fn unexpected(what: &str) -> ServerError {
    ServerError::new(ErrorCode::Internal, format!("unexpected reply to {what}"))
}

/// `GET /api/v2/whoami`
#[utoipa::path(get, path = "/api/v2/whoami", responses((status = 200, body = WhoAmI, description = "the caller: user, groups, admin and role in each group")), security(("bearer" = [])))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    let roles = caller
        .0
        .groups
        .iter()
        .map(|g| (g.clone(), caller.0.role_in(g)))
        .collect();
    Json(WhoAmI {
        user: caller.0.user,
        groups: caller.0.groups,
        admin: caller.0.admin,
        roles,
    })
}
