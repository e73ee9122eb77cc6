//! `/api/v2/get`: copying files back to disk, and its dry run.

use std::path::Path;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use nlds_core::api::{Accepted, ApiAction, GetPlan, GetRequest};
use nlds_core::message::{HoldingFilter, RpcReply};
use nlds_core::number::db_id;
use nlds_core::{AccessRole, Action, Envelope, ErrorCode, Payload, RoutingKey, Worker};
use nlds_hooks::points;
use uuid::Uuid;

use super::paths::{check_total, last_chunk};
use super::put::check_holding;
use super::{
    accepted, check_transaction_id, get_action, job_label, rpc_env_role, unexpected, validate_paths,
};
use crate::error::{Result, ServerError};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

/// `POST /api/v2/get`: copy files back to disk (202), or with `dry_run` list what would be
/// restored (200).
#[utoipa::path(post, path = "/api/v2/get", request_body = GetRequest,
    responses((status = 202, body = Accepted, description = "accepted: the transaction to follow"), (status = 200, body = GetPlan, description = "dry run: what would be restored"), (status = 404, body = nlds_core::error::ErrorBody, description = "no such holding or file visible to the caller")), security(("bearer" = [])))]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<GetRequest>,
) -> Result<axum::response::Response> {
    let group = caller.group(req.group.as_deref())?;
    if req.dry_run {
        let role = caller.0.role_in(&group);
        let plan = plan_get(&s, &caller.0.user, &group, role, req).await?;
        return Ok((StatusCode::OK, Json(plan)).into_response());
    }
    let role = caller.0.role_in(&group);
    let accepted = submit_get(&s, &caller.0.user, &group, role, req).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Checks a get and turns it into the holding filter it names.
async fn check_get(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    req: &GetRequest,
) -> Result<HoldingFilter> {
    if req.parts == 0 || !req.paths.is_empty() {
        validate_paths(&req.paths, s.cfg.max_paths, req.regex)?;
    }
    if req.parts == 0 {
        check_total(s, req.paths.len())?;
    } else if req.transaction_id.is_none() {
        return Err(ServerError::bad_request(
            "a get whose paths were sent in chunks (parts) must name their transaction_id",
        ));
    }
    if req.keep_owner && !role.is_admin() {
        return Err(ServerError::new(
            ErrorCode::Forbidden,
            format!(
                "keep_owner (restore files with their recorded owner) is for service operators \
                 (admin); {user} is {role} in group {group}"
            ),
        ));
    }
    if req.regex {
        if req.holding_id.is_none() && req.label.is_none() && req.tags.is_empty() {
            return Err(ServerError::bad_request(
                "a regular expression can only search named holdings: give a holding id, label or tags",
            ));
        }
        nlds_core::pattern::check(&req.paths, "path")?;
    }
    if let Some(id) = req.holding_id {
        db_id("holding_id", id)?;
    }
    if let Some(t) = &req.target
        && !t.starts_with('/')
    {
        return Err(ServerError::bad_request(format!(
            "target {t:?} is not an absolute path"
        )));
    }
    let filter = HoldingFilter {
        groupall: req.groupall,
        label: req.label.clone().filter(|l| !l.is_empty()),
        label_regex: false,
        holding_id: req.holding_id,
        holding_ids: Vec::new(),
        transaction_id: None,
        tags: req.tags.clone(),
        limit: 0,
        offset: 0,
        descending: true,
        versions: super::version_select(req.version, req.at.as_deref(), false)?,
    };
    check_holding(s, user, group, role, &filter).await?;
    Ok(filter)
}

/// Starts a get for `user` (whose role in `group` is `role`) in `group` (shared by both APIs).
pub async fn submit_get(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    req: GetRequest,
) -> Result<Accepted> {
    let filter = check_get(s, user, group, role, &req).await?;
    let tid = req.transaction_id.unwrap_or_else(Uuid::new_v4);
    let job_label = job_label(req.job_label.as_deref().or(req.label.as_deref()), tid)?;
    let action = if req.parts > 0 {
        ApiAction::Getlist
    } else {
        get_action(&req.paths, req.regex)
    };
    if req.transaction_id.is_some() {
        check_transaction_id(s, user, group, action, tid).await?;
    }
    // A request whose paths came in chunks: its own paths are its last chunk, and the
    // catalogue takes them all from the chunks.
    let chunks = if req.parts > 0 {
        last_chunk(s, user, group, role, (action, tid), req.parts, &req.paths).await?
    } else {
        0
    };
    let paths = if chunks > 0 { Vec::new() } else { req.paths };
    let env = Envelope::new(
        tid,
        user,
        group,
        action,
        &job_label,
        Payload::GetRequest {
            filter,
            paths,
            regex: req.regex,
            target: req.target,
            overwrite: req.overwrite,
        },
    )
    .with_role(role)
    .with_chunks(chunks)
    .with_notify(req.notify);
    let env = Envelope {
        keep_owner: req.keep_owner,
        ..env
    };
    if let Payload::GetRequest { paths, .. } = &env.payload {
        crate::notes::note_paths(paths);
    }
    // The catalogue accepts the get: its record and submission are staged in one database
    // transaction, so from here on it runs to completion whatever happens to this process.
    nlds_hooks::pause_async(points::API_BEFORE_ACCEPT, Path::new(&tid.to_string())).await;
    let key = RoutingKey::new(Worker::Catalog, submit_action(action));
    match s.rpc(key, env.clone()).await? {
        RpcReply::Submitted => {}
        _ => return Err(unexpected("catalog.get")),
    }
    accepted(s, &env, req.holding_id, req.label).await
}

/// The catalogue's key for accepting a get of `action` (`catalog.get`, `catalog.getlist`).
fn submit_action(action: ApiAction) -> Action {
    if action == ApiAction::Getlist {
        Action::Getlist
    } else {
        Action::Get
    }
}

/// What a get would restore, without starting it.
pub async fn plan_get(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    req: GetRequest,
) -> Result<GetPlan> {
    let filter = check_get(s, user, group, role, &req).await?;
    let env = rpc_env_role(
        user,
        group,
        role,
        Payload::PlanGet {
            filter,
            paths: req.paths,
            regex: req.regex,
        },
    );
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Plan), env)
        .await?
    {
        RpcReply::Plan { files, missing } => Ok(GetPlan {
            files_total: files.len() as u64,
            bytes_total: files.iter().map(|f| f.size).sum(),
            files,
            missing,
            target: req.target,
        }),
        _ => Err(unexpected("catalog.plan")),
    }
}
