//! `/api/v2/holdings`, `/api/v2/files` and `/api/v2/meta`: catalogue queries and label/tag changes.

use axum::Json;
use axum::extract::State;
use nlds_core::api::{FilePage, HoldingPage, HoldingQuery, MAX_LIMIT, MetaRequest, MetaResponse};
use nlds_core::message::{HoldingFilter, RpcReply};
use nlds_core::raw_page::PageKind;
use nlds_core::{Action, Payload, RoutingKey, Worker};

use super::put::not_visible;
use super::{filter_from, rpc_env, unexpected};
use crate::error::{Result, ServerError};
use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::state::{AppState, Page};

/// `GET /api/v2/holdings`: list holdings.
#[utoipa::path(get, path = "/api/v2/holdings", params(HoldingQuery), responses((status = 200, body = HoldingPage, description = "the holdings visible to the caller")), security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HoldingQuery>,
) -> Result<Page> {
    let group = caller.group(q.group.as_deref())?;
    let filter = filter_from(&q)?;
    let named = filter.names_holding();
    let env = rpc_env(
        &caller,
        &group,
        Payload::ListHoldings {
            filter: filter.clone(),
        },
    );
    let key = RoutingKey::new(Worker::Catalog, Action::List);
    let page = s.rpc_page(key, env, PageKind::Holdings).await?;
    if named && page.total == 0 {
        return Err(not_visible(&filter));
    }
    Ok(page)
}

/// `GET /api/v2/files`: find files.
#[utoipa::path(get, path = "/api/v2/files", params(HoldingQuery), responses((status = 200, body = FilePage, description = "the files found"), (status = 404, body = nlds_core::error::ErrorBody, description = "the named holding is not visible to the caller")), security(("bearer" = [])))]
pub async fn find(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HoldingQuery>,
) -> Result<Page> {
    let group = caller.group(q.group.as_deref())?;
    let filter = filter_from(&q)?;
    if q.regex
        && let Some(p) = &q.path
    {
        nlds_core::pattern::check(&[p], "path")?;
    }
    // A named holding the caller cannot see is not found (as on `GET /api/v2/holdings`), the
    // same whether it is another group's or does not exist: the catalogue answers so.
    let env = rpc_env(
        &caller,
        &group,
        Payload::FindFiles {
            filter,
            path: q.path.clone().filter(|p| !p.is_empty()),
            path_regex: q.regex,
            files_only: false,
            named_must_exist: true,
        },
    );
    let key = RoutingKey::new(Worker::Catalog, Action::Find);
    s.rpc_page(key, env, PageKind::Files).await
}

/// `POST /api/v2/meta`: change a holding's label or tags.
#[utoipa::path(post, path = "/api/v2/meta", request_body = MetaRequest, responses((status = 200, body = MetaResponse, description = "the holdings changed (or, on a dry run, that would be)")), security(("bearer" = [])))]
pub async fn meta(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<MetaRequest>,
) -> Result<Json<MetaResponse>> {
    let group = caller.group(req.group.as_deref())?;
    if req.holding_id.is_none() && req.label.is_none() && req.tags.is_empty() {
        return Err(ServerError::bad_request(
            "give a holding id, label or tags to select the holding to change",
        ));
    }
    if req.new_label.is_none() && req.new_tags.is_empty() && req.del_tags.is_empty() {
        return Err(ServerError::bad_request(
            "nothing to change: give a new label, new tags or tags to delete",
        ));
    }
    let filter = HoldingFilter {
        label: req.label.clone(),
        holding_id: req.holding_id,
        tags: req.tags.clone(),
        limit: MAX_LIMIT,
        descending: true,
        ..Default::default()
    };
    let env = rpc_env(
        &caller,
        &group,
        Payload::ChangeMeta {
            filter,
            new_label: req.new_label,
            new_tags: req.new_tags,
            del_tags: req.del_tags,
            dry_run: req.dry_run,
        },
    );
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Meta), env)
        .await?
    {
        RpcReply::Meta(m) => Ok(Json(m)),
        _ => Err(unexpected("catalog.meta")),
    }
}
