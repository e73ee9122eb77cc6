//! `/api/v2/quota` (users: their groups) and `/api/v2/admin/quota` (operators: every group, and
//! setting limits). The catalogue keeps quotas and usage (`catalog.quota`, `catalog.quota-set`).

use axum::Json;
use axum::extract::{Path, State};
use nlds_core::message::RpcReply;
use nlds_core::quota::{QuotaReport, SetQuota};
use nlds_core::{Action, ErrorCode, Payload, RoutingKey, Worker};
use serde::Deserialize;

use super::{rpc_env, unexpected};
use crate::error::{Result, ServerError};
use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::state::AppState;

/// `?group=G`: one group instead of all.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuotaQuery {
    /// Only this group.
    #[serde(default)]
    pub group: Option<String>,
}

async fn report(
    s: &AppState,
    caller: &Caller,
    group: &str,
    payload: Payload,
) -> Result<QuotaReport> {
    let key = match payload {
        Payload::QuotaSet { .. } => RoutingKey::new(Worker::Catalog, Action::QuotaSet),
        _ => RoutingKey::new(Worker::Catalog, Action::Quota),
    };
    match s.rpc(key, rpc_env(caller, group, payload)).await? {
        RpcReply::Quota(r) => Ok(r),
        _ => Err(unexpected("catalog.quota")),
    }
}

fn operators_only(caller: &Caller) -> Result<()> {
    if caller.0.admin {
        Ok(())
    } else {
        Err(ServerError::new(
            ErrorCode::Forbidden,
            format!("{} is not a service operator (admin)", caller.0.user),
        ))
    }
}

/// `GET /api/v2/quota`: the caller's groups (or one of them): limits, usage and what running
/// puts reserved.
#[utoipa::path(get, path = "/api/v2/quota", params(QuotaQuery),
    responses((status = 200, body = QuotaReport, description = "the caller's groups' quotas"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a member of the group")), security(("bearer" = [])))]
pub async fn quota(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<QuotaQuery>,
) -> Result<Json<QuotaReport>> {
    let groups = match q.group.as_deref() {
        Some(g) => vec![caller.group(Some(g))?],
        None => caller.0.groups.clone(),
    };
    let group = caller.group(None).unwrap_or_default();
    let r = report(
        &s,
        &caller,
        &group,
        Payload::QuotaShow {
            groups: Some(groups),
        },
    )
    .await?;
    Ok(Json(r))
}

/// `GET /api/v2/admin/quota`: every group with a limit or usage (or one), for operators.
#[utoipa::path(get, path = "/api/v2/admin/quota", params(QuotaQuery),
    responses((status = 200, body = QuotaReport, description = "every group's quota"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn admin_quota(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<QuotaQuery>,
) -> Result<Json<QuotaReport>> {
    operators_only(&caller)?;
    let groups = q
        .group
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty())
        .map(|g| vec![g]);
    let group = caller.group(None).unwrap_or_default();
    Ok(Json(
        report(&s, &caller, &group, Payload::QuotaShow { groups }).await?,
    ))
}

/// `PUT /api/v2/admin/quota/{group}`: change a group's limits (absent: unchanged, `null`:
/// unlimited); answers the group's quota after the change.
#[utoipa::path(put, path = "/api/v2/admin/quota/{group}", request_body = SetQuota,
    params(("group" = String, Path, description = "the group")),
    responses((status = 200, body = QuotaReport, description = "the group's quota after the change"), (status = 400, body = nlds_core::error::ErrorBody, description = "no limit given"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn admin_set_quota(
    State(s): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    ApiJson(change): ApiJson<SetQuota>,
) -> Result<Json<QuotaReport>> {
    operators_only(&caller)?;
    let own = caller.group(None).unwrap_or_default();
    let r = report(&s, &caller, &own, Payload::QuotaSet { group, change }).await?;
    Ok(Json(r))
}
