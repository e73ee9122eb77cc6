//! Delete, undelete and purge: `POST /api/v2/delete`, `POST /api/v2/undelete`,
//! `POST /api/v2/admin/purge` (and the core [`submit_delete`] the `/api/1.0.0` adapter's
//! `DELETE files/` calls too).
//!
//! A delete is a transaction: the catalogue soft-deletes what the request selects in one database
//! transaction (RPC `catalog.del`, deciding from the caller's role who may delete what) and, by
//! messages staged in its outbox in that database transaction, records the transaction with the
//! monitor and ends it with the
//! files deleted and those refused or not found (so a delete is never done without being on
//! record, even if this process dies); the API then records it too, synchronously, so `stat`
//! shows it as soon as the answer (202) is sent. The files are gone from list, find and get from
//! then on. Their copies are purged after the retention period, or when an operator purges: the
//! catalogue stages the removals of what a purge forgot in its outbox with the purge (see
//! `nlds_core::workflow` and docs/PROTOCOL.md "Outbox"), so the API never sends them itself.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use nlds_core::api::{
    Accepted, ApiAction, DeletePlan, DeleteRequest, PurgeRequest, PurgeResponse, UndeleteRequest,
};
use nlds_core::message::{HoldingFilter, RpcReply};
use nlds_core::versions::VersionSelect;
use nlds_core::{AccessRole, Action, Envelope, ErrorCode, Payload, RoutingKey, Worker};
use uuid::Uuid;

use crate::error::{Result, ServerError};
use crate::extract::{ApiJson, Caller};
use crate::routes::{rpc_env_as, validate_paths};
use crate::state::AppState;

fn unexpected(what: &str) -> ServerError {
    ServerError::new(ErrorCode::Internal, format!("unexpected reply to {what}"))
}

fn selector(
    paths: &[String],
    regex: bool,
    holding_id: Option<i64>,
    label: &Option<String>,
    tags: &nlds_core::api::Tags,
    max: usize,
    what: &str,
) -> Result<()> {
    let named = holding_id.is_some() || label.is_some() || !tags.is_empty();
    if paths.is_empty() {
        if !named {
            return Err(ServerError::bad_request(format!(
                "nothing to {what}: give the holding (holding_id, label or tags), or paths"
            )));
        }
        return Ok(());
    }
    validate_paths(paths, max, regex)?;
    if regex {
        if !named {
            return Err(ServerError::bad_request(
                "a regular expression can only search named holdings: give a holding id, label or tags",
            ));
        }
        nlds_core::pattern::check(paths, "path")?;
    }
    Ok(())
}

/// The versions a delete of paths removes: the newest of each path (the one before becomes the
/// newest), or every version (docs/DELETE.md).
fn versions_of(all_versions: bool) -> VersionSelect {
    if all_versions {
        VersionSelect::All
    } else {
        VersionSelect::Newest
    }
}

fn filter(
    groupall: bool,
    label: Option<String>,
    holding_id: Option<i64>,
    tags: nlds_core::api::Tags,
) -> HoldingFilter {
    HoldingFilter {
        groupall,
        label: label.filter(|l| !l.is_empty()),
        holding_id,
        tags,
        descending: true,
        ..Default::default()
    }
}

/// `POST /api/v2/delete`: delete files, or whole holdings (202 with the transaction), or with
/// `dry_run` say what would be deleted (200).
#[utoipa::path(post, path = "/api/v2/delete", request_body = DeleteRequest,
    responses((status = 202, body = Accepted, description = "accepted: the transaction to follow"), (status = 200, body = DeletePlan, description = "dry run: what would be deleted"),
        (status = 403, body = nlds_core::error::ErrorBody, description = "the caller may not delete these"), (status = 404, body = nlds_core::error::ErrorBody, description = "nothing to delete is visible to the caller")),
    security(("bearer" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<DeleteRequest>,
) -> Result<axum::response::Response> {
    let group = caller.group(req.group.as_deref())?;
    let role = caller.0.role_in(&group);
    if req.dry_run {
        if req.parts > 0 {
            return Err(ServerError::bad_request(
                "a dry run is not sent in chunks: ask the dry run of each chunk of paths on its \
                 own (docs/PROTOCOL.md, \"Chunked requests\")",
            ));
        }
        let plan = plan_delete(&s, &caller.0.user, &group, role, req).await?;
        return Ok((StatusCode::OK, Json(plan)).into_response());
    }
    let (accepted, _) = submit_delete(&s, &caller.0.user, &group, role, req).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

async fn delete_rpc(s: &AppState, env: Envelope, action: Action, what: &str) -> Result<DeletePlan> {
    match s.rpc(RoutingKey::new(Worker::Catalog, action), env).await? {
        RpcReply::Deleted(plan) => Ok(plan),
        _ => Err(unexpected(what)),
    }
}

/// What a delete would do, changing nothing.
pub async fn plan_delete(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    req: DeleteRequest,
) -> Result<DeletePlan> {
    selector(
        &req.paths,
        req.regex,
        req.holding_id,
        &req.label,
        &req.tags,
        s.cfg.max_paths,
        "delete",
    )?;
    let env = rpc_env_as(
        user,
        group,
        Payload::Delete {
            filter: HoldingFilter {
                versions: versions_of(req.all_versions),
                ..filter(req.groupall, req.label, req.holding_id, req.tags)
            },
            paths: req.paths,
            regex: req.regex,
            dry_run: true,
        },
    )
    .with_role(role);
    delete_rpc(s, env, Action::Del, "catalog.del").await
}

/// Checks a delete whose paths were sent in chunks (`parts` of them before it): it names its
/// transaction id, and takes paths, not regular expressions; its own paths (the last chunk, may
/// be empty) are checked as a chunk's are.
fn check_chunked(req: &DeleteRequest, max: usize) -> Result<()> {
    if req.transaction_id.is_none() {
        return Err(ServerError::bad_request(
            "a delete whose paths were sent in chunks (parts) must name their transaction_id",
        ));
    }
    if req.regex {
        return Err(ServerError::bad_request(
            "a delete in chunks takes paths, not regular expressions",
        ));
    }
    if !req.paths.is_empty() {
        validate_paths(&req.paths, max, false)?;
    }
    Ok(())
}

/// How long the catalogue may take over a delete of `chunks` chunks besides its own paths: the
/// RPC timeout for each, as each is at most one request's paths.
fn delete_timeout(rpc_timeout_secs: u64, chunks: u32) -> std::time::Duration {
    std::time::Duration::from_secs(
        rpc_timeout_secs
            .max(1)
            .saturating_mul(u64::from(chunks) + 1),
    )
}

/// The API action of a delete of `paths` (none: whole holdings).
pub(crate) fn delete_action(paths: &[String], regex: bool) -> ApiAction {
    if paths.len() > 1 || regex {
        ApiAction::Dellist
    } else {
        ApiAction::Del
    }
}

/// Deletes for `user` in `group` acting with `role` (shared by both APIs): the catalogue
/// soft-deletes, then the transaction is recorded and ended with what was deleted and refused.
pub async fn submit_delete(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    req: DeleteRequest,
) -> Result<(Accepted, DeletePlan)> {
    if req.parts > 0 {
        check_chunked(&req, s.cfg.max_paths)?;
    } else {
        selector(
            &req.paths,
            req.regex,
            req.holding_id,
            &req.label,
            &req.tags,
            s.cfg.max_paths,
            "delete",
        )?;
    }
    let tid = req.transaction_id.unwrap_or_else(Uuid::new_v4);
    let job_label = match req.job_label.as_deref().map(str::trim) {
        Some(l) if !l.is_empty() => {
            if l.len() > 256 || l.chars().any(char::is_control) {
                return Err(ServerError::bad_request(
                    "job label must be at most 256 characters without control characters",
                ));
            }
            l.to_owned()
        }
        _ => tid.to_string()[..8].to_owned(),
    };
    let action = if req.parts > 0 {
        ApiAction::Dellist
    } else {
        delete_action(&req.paths, req.regex)
    };
    if req.transaction_id.is_some() {
        crate::routes::check_transaction_id(s, user, group, action, tid).await?;
    }
    let env = Envelope::new(
        tid,
        user,
        group,
        action,
        &job_label,
        Payload::Delete {
            filter: HoldingFilter {
                versions: versions_of(req.all_versions),
                ..filter(req.groupall, req.label.clone(), req.holding_id, req.tags)
            },
            paths: req.paths,
            regex: req.regex,
            dry_run: false,
        },
    )
    .with_role(role)
    .with_notify(req.notify)
    // A delete in chunks: the catalogue reads the caller's chunks 0..parts of the transaction,
    // then the request's own paths (docs/PROTOCOL.md, "Chunked requests").
    .with_chunks(req.parts);
    let plan = if req.parts > 0 {
        let timeout = delete_timeout(s.cfg.rpc_timeout_secs, req.parts);
        match s
            .rpc_within(
                RoutingKey::new(Worker::Catalog, Action::Del),
                env.clone(),
                timeout,
            )
            .await?
        {
            RpcReply::Deleted(plan) => plan,
            _ => return Err(unexpected("catalog.del")),
        }
    } else {
        delete_rpc(s, env.clone(), Action::Del, "catalog.del").await?
    };
    // The holding a one-holding delete acted on names the transaction.
    let (holding_id, label) = plan.transaction_holding(req.holding_id, req.label);
    let init = env.reply(Payload::MonitorInit {
        label: label.clone(),
        holding_id,
    });
    match s
        .rpc(RoutingKey::new(Worker::Monitor, Action::Init), init)
        .await?
    {
        RpcReply::Recorded => {}
        _ => return Err(unexpected("monitor.init")),
    }
    tracing::info!(transaction_id = %tid, user = %user, %role, files = plan.files_total,
        holdings = plan.holdings.len(), failed = plan.failed.len(), "delete done");
    Ok((
        Accepted {
            transaction_id: tid,
            api_action: action,
            status_url: format!("{}/api/v2/transactions/{tid}", s.cfg.base_url()),
            job_label,
            holding_id,
            label,
        },
        plan,
    ))
}

/// `POST /api/v2/undelete`: bring back deleted files or holdings within the retention period
/// (200 with what was undeleted, and what could not be and why).
#[utoipa::path(post, path = "/api/v2/undelete", request_body = UndeleteRequest,
    responses((status = 200, body = DeletePlan, description = "what was undeleted, and what could not be and why"), (status = 404, body = nlds_core::error::ErrorBody, description = "nothing to undelete is visible to the caller")),
    security(("bearer" = [])))]
pub async fn undelete(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<UndeleteRequest>,
) -> Result<Json<DeletePlan>> {
    let group = caller.group(req.group.as_deref())?;
    selector(
        &req.paths,
        req.regex,
        req.holding_id,
        &req.label,
        &req.tags,
        s.cfg.max_paths,
        "undelete",
    )?;
    let env = rpc_env_as(
        &caller.0.user,
        &group,
        Payload::Undelete {
            filter: filter(req.groupall, req.label, req.holding_id, req.tags),
            paths: req.paths,
            regex: req.regex,
            dry_run: req.dry_run,
        },
    )
    .with_role(caller.0.role_in(&group));
    Ok(Json(
        delete_rpc(&s, env, Action::Undelete, "catalog.undelete").await?,
    ))
}

/// `POST /api/v2/admin/purge`: purge soft-deleted files now, of one holding or all, whatever
/// their retention (service operators only). The last-copy guard still applies.
#[utoipa::path(post, path = "/api/v2/admin/purge", request_body = PurgeRequest,
    responses((status = 200, body = PurgeResponse, description = "what was purged"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")),
    security(("bearer" = [])))]
pub async fn admin_purge(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PurgeRequest>,
) -> Result<Json<PurgeResponse>> {
    if !caller.0.admin {
        return Err(ServerError::new(
            ErrorCode::Forbidden,
            format!("{} is not a service operator (admin)", caller.0.user),
        ));
    }
    let group = caller.group(None)?;
    let env = rpc_env_as(
        &caller.0.user,
        &group,
        Payload::Purge {
            holding_id: req.holding_id,
        },
    )
    .with_role(AccessRole::Admin);
    let RpcReply::Purged { summary, .. } = s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Purge), env)
        .await?
    else {
        return Err(unexpected("catalog.purge"));
    };
    // The catalogue staged the removals of the copies it forgot with the purge (its outbox).
    tracing::info!(user = %caller.0.user, holding_id = ?req.holding_id, files = summary.files,
        objects = summary.objects, aggregates = summary.aggregates.len(),
        deferred = summary.deferred, refused = summary.refused.len(), "purged");
    Ok(Json(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(paths: &[&str]) -> DeleteRequest {
        DeleteRequest {
            transaction_id: Some(Uuid::new_v4()),
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            parts: 2,
            ..Default::default()
        }
    }

    #[test]
    fn a_delete_in_chunks_names_its_transaction_and_takes_plain_paths() {
        assert!(check_chunked(&chunked(&["/a", "/b"]), 10).is_ok());
        // The last chunk may be empty: every path came in the chunks.
        assert!(check_chunked(&chunked(&[]), 10).is_ok());
        let no_id = DeleteRequest {
            transaction_id: None,
            ..chunked(&["/a"])
        };
        assert!(
            check_chunked(&no_id, 10)
                .unwrap_err()
                .0
                .message
                .contains("must name their transaction_id")
        );
        let regex = DeleteRequest {
            regex: true,
            ..chunked(&["/a.*"])
        };
        assert!(
            check_chunked(&regex, 10)
                .unwrap_err()
                .0
                .message
                .contains("not regular expressions")
        );
        // Its own paths are checked as one request's: absolute, at most max_paths.
        assert!(check_chunked(&chunked(&["relative"]), 10).is_err());
        assert!(check_chunked(&chunked(&["/a", "/b", "/c"]), 2).is_err());
    }

    #[test]
    fn a_delete_in_chunks_may_take_the_rpc_timeout_per_chunk() {
        assert_eq!(delete_timeout(30, 1).as_secs(), 60);
        assert_eq!(delete_timeout(30, 99).as_secs(), 3000);
        assert_eq!(delete_timeout(0, 0).as_secs(), 1);
        assert_eq!(delete_timeout(u64::MAX, 3).as_secs(), u64::MAX);
    }
}
