//! `/api/v2/put`: copying files into the store, and its dry run.

use std::path::Path;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use nlds_core::api::{Accepted, ApiAction, PutPlan, PutRequest};
use nlds_core::message::{HoldingFilter, RpcReply};
use nlds_core::versions::{EntryVerdict, SyncLevel, Verdict};
use nlds_core::{AccessRole, Action, Envelope, ErrorCode, Payload, RoutingKey, Worker};
use nlds_hooks::points;
use uuid::Uuid;

use super::paths::{check_total, last_chunk};
use super::{
    accepted, check_transaction_id, job_label, put_action, rpc_env_role, unexpected, validate_paths,
};
use crate::error::{Result, ServerError};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

/// `POST /api/v2/put`: copy files into the store (202), or with `dry_run` say where they would
/// go (200).
#[utoipa::path(post, path = "/api/v2/put", request_body = PutRequest,
    responses((status = 202, body = Accepted, description = "accepted: the transaction to follow"), (status = 200, body = PutPlan, description = "dry run: what would be put"), (status = 400, body = nlds_core::error::ErrorBody, description = "invalid request")), security(("bearer" = [])))]
pub async fn put(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PutRequest>,
) -> Result<axum::response::Response> {
    let group = caller.group(req.group.as_deref())?;
    if req.dry_run {
        let role = caller.0.role_in(&group);
        let plan = plan_put(&s, &caller.0.user, &group, role, req).await?;
        return Ok((StatusCode::OK, Json(plan)).into_response());
    }
    let role = caller.0.role_in(&group);
    let sync = Some(req.sync.unwrap_or_default());
    let accepted = submit_put(&s, &caller.0.user, &group, role, req, sync).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Starts a put for `user` (whose role in `group` is `role`) in `group` (shared by both APIs),
/// comparing paths the holding already has at `sync` (`None`: they are conflicts, as on 1.0.x).
pub async fn submit_put(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    req: PutRequest,
    sync: Option<SyncLevel>,
) -> Result<Accepted> {
    check_put_paths(s, &req)?;
    let tenancy = tenancy_name(req.tenancy.as_deref())?;
    let tid = req.transaction_id.unwrap_or_else(Uuid::new_v4);
    let job_label = job_label(req.job_label.as_deref(), tid)?;
    let action = if req.parts > 0 {
        ApiAction::Putlist
    } else {
        put_action(&req.paths)
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
    let paths = if chunks > 0 {
        Vec::new()
    } else {
        req.paths.clone()
    };
    // The catalogue sets up the holding and accepts the put in one database transaction: its
    // record and submission are staged there, so from here on it runs to completion whatever
    // happens to this process.
    let setup = Envelope::new(
        tid,
        user,
        group,
        action,
        &job_label,
        Payload::SetupHolding {
            label: req.label.clone(),
            holding_id: req.holding_id,
            tags: req.tags.clone(),
            paths,
            size_hint: req.size_hint,
        },
    )
    .with_role(role)
    .with_tenancy(tenancy)
    .with_chunks(chunks)
    .with_sync(sync)
    .with_notify(req.notify);
    crate::notes::note_paths(&req.paths);
    nlds_hooks::pause_async(points::API_BEFORE_ACCEPT, Path::new(&tid.to_string())).await;
    let (holding_id, label) = match s
        .rpc(
            RoutingKey::new(Worker::Catalog, Action::Setup),
            setup.clone(),
        )
        .await?
    {
        RpcReply::Holding { id, label } => (id, label),
        _ => return Err(unexpected("catalog.setup")),
    };
    tracing::info!(transaction_id = %tid, user = %user, holding_id, "put accepted");
    accepted(s, &setup, Some(holding_id), Some(label)).await
}

/// Checks the paths of a put: its own (at most `max_paths` in one body; none is fine after
/// chunks), and the cap on one request.
fn check_put_paths(s: &AppState, req: &PutRequest) -> Result<()> {
    if req.parts == 0 || !req.paths.is_empty() {
        validate_paths(&req.paths, s.cfg.max_paths, false)?;
    }
    if req.parts == 0 {
        check_total(s, req.paths.len())?;
    } else if req.transaction_id.is_none() {
        return Err(ServerError::bad_request(
            "a put whose paths were sent in chunks (parts) must name their transaction_id",
        ));
    }
    Ok(())
}

/// The object-store tenancy a put names: `None` (the default) when absent or blank; else a
/// name the workers resolve (only the name travels, never a credential).
fn tenancy_name(t: Option<&str>) -> Result<Option<String>> {
    let Some(t) = t.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if t.len() > 255 || t.chars().any(char::is_control) {
        return Err(ServerError::new(
            ErrorCode::BadRequest,
            "tenancy must be a name of at most 255 characters without control characters",
        ));
    }
    Ok(Some(t.to_owned()))
}

/// What a put would do: the holding it would add to (or the label of the one it would create).
pub async fn plan_put(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    req: PutRequest,
) -> Result<PutPlan> {
    check_put_paths(s, &req)?;
    let tid = req.transaction_id.unwrap_or_else(Uuid::new_v4);
    let label = req.label.clone().filter(|l| !l.trim().is_empty());
    let mut holding = None;
    if req.holding_id.is_some() || label.is_some() || !req.tags.is_empty() {
        let filter = HoldingFilter {
            label: label.clone(),
            holding_id: req.holding_id,
            tags: req.tags.clone(),
            limit: 2,
            descending: true,
            ..Default::default()
        };
        let env = rpc_env_role(user, group, role, Payload::ListHoldings { filter });
        match s
            .rpc(RoutingKey::new(Worker::Catalog, Action::List), env)
            .await?
        {
            RpcReply::Holdings(page) => holding = page.holdings.into_iter().next(),
            _ => return Err(unexpected("catalog.list")),
        }
        if holding.is_none()
            && let Some(id) = req.holding_id
        {
            return Err(ServerError::new(
                ErrorCode::NotFound,
                format!("holding {id} not found among your holdings"),
            ));
        }
    }
    let new_label = holding
        .is_none()
        .then(|| label.unwrap_or_else(|| tid.to_string()[..8].to_owned()));
    // What the put would do with each entry the client found: the catalogue decides, as its
    // check would (a new holding has none of them).
    let verdicts = match &holding {
        Some(h) if !req.entries.is_empty() => {
            if req.entries.len() > s.cfg.max_paths {
                return Err(ServerError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "a dry run can classify at most {} entries; {} were sent",
                        s.cfg.max_paths,
                        req.entries.len()
                    ),
                ));
            }
            let ask = Payload::ClassifyPut {
                holding_id: h.id,
                entries: req.entries.clone(),
            };
            let env =
                rpc_env_role(user, group, role, ask).with_sync(Some(req.sync.unwrap_or_default()));
            match s
                .rpc(RoutingKey::new(Worker::Catalog, Action::Plan), env)
                .await?
            {
                RpcReply::Classified(v) => v,
                _ => return Err(unexpected("catalog.plan")),
            }
        }
        _ => req
            .entries
            .iter()
            .map(|e| EntryVerdict {
                path: e.path.clone(),
                verdict: Verdict::New,
                stored_version: None,
            })
            .collect(),
    };
    Ok(PutPlan {
        holding,
        new_label,
        group: group.to_owned(),
        paths: req.paths,
        verdicts,
    })
}

/// Checks that a named holding exists and is visible, so a get naming a wrong one fails at once.
pub(super) async fn check_holding(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    filter: &HoldingFilter,
) -> Result<()> {
    if filter.holding_id.is_none() && filter.label.is_none() {
        return Ok(());
    }
    let probe = HoldingFilter {
        limit: 1,
        offset: 0,
        ..filter.clone()
    };
    let env = rpc_env_role(user, group, role, Payload::ListHoldings { filter: probe });
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::List), env)
        .await?
    {
        RpcReply::Holdings(page) if page.total > 0 => Ok(()),
        RpcReply::Holdings(_) => Err(not_visible(filter)),
        _ => Err(unexpected("catalog.list")),
    }
}

/// The 404 for a named holding (id or label) the caller cannot see
/// ([`HoldingFilter::not_visible`]).
pub(super) fn not_visible(filter: &HoldingFilter) -> ServerError {
    filter.not_visible().into()
}
