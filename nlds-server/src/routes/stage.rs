//! `/api/v2/stage`, `/api/v2/release` and `/api/v2/archiveinfo`: the WLCG Tape REST API's
//! operations on the native API. Thin: each checks its request and sends it to the catalogue
//! (RPC `catalog.stage`), which owns stage requests and pins.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use nlds_core::message::{HoldingFilter, RpcReply};
use nlds_core::number::db_id;
use nlds_core::stage::{
    ArchiveInfoRequest, CancelRequest, FileLocality, ReleaseRequest, Selection, StageAnswer,
    StageChange, StageCreated, StageQuery, StageRequest, StageStatus,
};
use nlds_core::{Action, Payload, RoutingKey, Worker};
use uuid::Uuid;

use super::put::check_holding;
use super::{rpc_env, unexpected, validate_paths};
use crate::error::{Result, ServerError};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

/// Sends `q` to the catalogue for the caller in `group`.
async fn ask(s: &AppState, caller: &Caller, group: &str, q: StageQuery) -> Result<StageAnswer> {
    let env = rpc_env(caller, group, Payload::Stage(q));
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Stage), env)
        .await?
    {
        RpcReply::Stage(a) => Ok(a),
        _ => Err(unexpected("catalog.stage")),
    }
}

/// Checks the holding a stage or archiveinfo names (404 when the caller cannot see it).
async fn selection(
    s: &AppState,
    caller: &Caller,
    group: &str,
    label: Option<String>,
    holding_id: Option<i64>,
    groupall: bool,
) -> Result<Selection> {
    if let Some(id) = holding_id {
        db_id("holding_id", id)?;
    }
    let sel = Selection {
        label: label.filter(|l| !l.is_empty()),
        holding_id,
        groupall,
    };
    let filter = HoldingFilter {
        groupall,
        label: sel.label.clone(),
        holding_id,
        ..Default::default()
    };
    check_holding(s, &caller.0.user, group, caller.0.role_in(group), &filter).await?;
    Ok(sel)
}

fn parse_request_id(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s.trim()).map_err(|_| {
        ServerError::bad_request(format!("{s:?} is not a valid stage request id (a UUID)"))
    })
}

fn check_subset(paths: &Option<Vec<String>>, max: usize) -> Result<()> {
    match paths {
        Some(p) => validate_paths(p, max, false),
        None => Ok(()),
    }
}

/// `POST /api/v2/stage`: make files warm (recalling those only on tape) and keep them so for
/// the request's lifetime.
#[utoipa::path(post, path = "/api/v2/stage", request_body = StageRequest,
    responses((status = 201, body = StageCreated, description = "the request, to poll at its Location"),
        (status = 404, body = nlds_core::error::ErrorBody, description = "the named holding is not visible to the caller")),
    security(("bearer" = [])))]
pub async fn stage(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<StageRequest>,
) -> Result<axum::response::Response> {
    let group = caller.group(req.group.as_deref())?;
    if req.files.is_empty() && req.label.is_none() && req.holding_id.is_none() {
        return Err(ServerError::bad_request(
            "nothing to stage: give files, or a holding (label or holding_id) to stage whole",
        ));
    }
    if !req.files.is_empty() {
        validate_paths(&req.files, s.cfg.max_paths, false)?;
    }
    let sel = selection(&s, &caller, &group, req.label, req.holding_id, req.groupall).await?;
    let q = StageQuery::Create {
        selection: sel,
        paths: req.files,
        lifetime_secs: req.lifetime_secs,
    };
    match ask(&s, &caller, &group, q).await? {
        StageAnswer::Created(c) => {
            let location = format!("{}/api/v2/stage/{}", s.cfg.base_url(), c.request_id);
            Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(c)).into_response())
        }
        _ => Err(unexpected("catalog.stage")),
    }
}

/// `GET /api/v2/stage/{id}`: the request's progress, per file.
#[utoipa::path(get, path = "/api/v2/stage/{id}", params(("id" = String, Path, description = "the stage request id (UUID)")),
    responses((status = 200, body = StageStatus, description = "the request and each of its files"),
        (status = 404, body = nlds_core::error::ErrorBody, description = "no such request of the caller's")),
    security(("bearer" = [])))]
pub async fn stage_status(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<StageStatus>> {
    let request_id = parse_request_id(&id)?;
    let group = caller.group(None)?;
    match ask(&s, &caller, &group, StageQuery::Status { request_id }).await? {
        StageAnswer::Status(st) => Ok(Json(st)),
        _ => Err(unexpected("catalog.stage")),
    }
}

/// `POST /api/v2/stage/{id}/cancel`: cancel the request's files not yet staged (all, or the
/// paths given: each must be one of the request's, else nothing changes).
#[utoipa::path(post, path = "/api/v2/stage/{id}/cancel", params(("id" = String, Path, description = "the stage request id (UUID)")),
    request_body = CancelRequest,
    responses((status = 200, body = StageChange, description = "files cancelled and pins dropped"),
        (status = 400, body = nlds_core::error::ErrorBody, description = "a path is not in the request"),
        (status = 404, body = nlds_core::error::ErrorBody, description = "no such request of the caller's")),
    security(("bearer" = [])))]
pub async fn stage_cancel(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CancelRequest>,
) -> Result<Json<StageChange>> {
    let request_id = parse_request_id(&id)?;
    check_subset(&req.paths, s.cfg.max_paths)?;
    let group = caller.group(None)?;
    let q = StageQuery::Cancel {
        request_id,
        paths: req.paths,
    };
    match ask(&s, &caller, &group, q).await? {
        StageAnswer::Changed(c) => Ok(Json(c)),
        _ => Err(unexpected("catalog.stage")),
    }
}

/// `DELETE /api/v2/stage/{id}`: cancel every file of the request and forget it.
#[utoipa::path(delete, path = "/api/v2/stage/{id}", params(("id" = String, Path, description = "the stage request id (UUID)")),
    responses((status = 200, body = StageChange, description = "the request is gone"),
        (status = 404, body = nlds_core::error::ErrorBody, description = "no such request of the caller's")),
    security(("bearer" = [])))]
pub async fn stage_delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<StageChange>> {
    let request_id = parse_request_id(&id)?;
    let group = caller.group(None)?;
    match ask(&s, &caller, &group, StageQuery::Delete { request_id }).await? {
        StageAnswer::Changed(c) => Ok(Json(c)),
        _ => Err(unexpected("catalog.stage")),
    }
}

/// `POST /api/v2/release`: the request's files may leave the warm tier (its pins are dropped;
/// another requester's pins of the same files stay).
#[utoipa::path(post, path = "/api/v2/release", request_body = ReleaseRequest,
    responses((status = 200, body = StageChange, description = "pins dropped"),
        (status = 400, body = nlds_core::error::ErrorBody, description = "a path is not in the request"),
        (status = 404, body = nlds_core::error::ErrorBody, description = "no such request of the caller's")),
    security(("bearer" = [])))]
pub async fn release(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ReleaseRequest>,
) -> Result<Json<StageChange>> {
    check_subset(&req.paths, s.cfg.max_paths)?;
    let group = caller.group(None)?;
    let q = StageQuery::Release {
        request_id: req.request_id,
        paths: req.paths,
    };
    match ask(&s, &caller, &group, q).await? {
        StageAnswer::Changed(c) => Ok(Json(c)),
        _ => Err(unexpected("catalog.stage")),
    }
}

/// `POST /api/v2/archiveinfo`: where copies of files are (DISK, TAPE, DISK_AND_TAPE, NONE,
/// LOST), or per file "no such file".
#[utoipa::path(post, path = "/api/v2/archiveinfo", request_body = ArchiveInfoRequest,
    responses((status = 200, body = Vec<FileLocality>, description = "per path: its locality or an error"),
        (status = 404, body = nlds_core::error::ErrorBody, description = "the named holding is not visible to the caller")),
    security(("bearer" = [])))]
pub async fn archiveinfo(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ArchiveInfoRequest>,
) -> Result<Json<Vec<FileLocality>>> {
    let group = caller.group(req.group.as_deref())?;
    validate_paths(&req.paths, s.cfg.max_paths, false)?;
    let sel = selection(&s, &caller, &group, req.label, req.holding_id, req.groupall).await?;
    let q = StageQuery::Locality {
        selection: sel,
        paths: req.paths,
    };
    match ask(&s, &caller, &group, q).await? {
        StageAnswer::Localities(l) => Ok(Json(l)),
        _ => Err(unexpected("catalog.stage")),
    }
}
