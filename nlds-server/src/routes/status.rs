//! `/api/v2/transactions`: transaction states.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use nlds_core::api::{ApiAction, StatQuery, TransactionPage, TransactionStatus};
use nlds_core::message::{HoldingFilter, RpcReply, StatusFilter};
use nlds_core::number::{db_count, db_id};
use nlds_core::{AccessRole, Action, ErrorCode, Payload, RoutingKey, State as TxState, Worker};

use super::{limit, parse_tid, rpc_env_role, unexpected};
use crate::error::{Result, ServerError};
use crate::extract::{ApiQuery, Caller};
use crate::state::AppState;

fn actions(list: Option<&str>) -> Result<Vec<ApiAction>> {
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|a| {
            ApiAction::parse(a).ok_or_else(|| {
                ServerError::bad_request(format!(
                    "{a:?} is not an api action (put, putlist, get, getlist, archive-put, archive-get)"
                ))
            })
        })
        .collect()
}

pub(super) fn status_filter(q: &StatQuery) -> Result<StatusFilter> {
    let states = q
        .state
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|st| {
            st.parse::<TxState>()
                .map_err(|e| ServerError::bad_request(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    if q.regex
        && let Some(j) = &q.job_label
    {
        nlds_core::pattern::check(&[j], "job label")?;
    }
    Ok(StatusFilter {
        groupall: q.groupall,
        id: q.id.map(|id| db_id("id", id)).transpose()?,
        transaction_id: q.transaction_id.as_deref().map(parse_tid).transpose()?,
        job_label: q.job_label.clone().filter(|s| !s.is_empty()),
        job_label_regex: q.regex,
        api_actions: actions(q.api_action.as_deref())?,
        exclude_api_actions: actions(q.exclude_api_action.as_deref())?,
        states,
        limit: limit(q.limit)?,
        offset: db_count("offset", q.offset.unwrap_or(0))?,
        descending: q.descending.unwrap_or(true),
    })
}

pub(crate) async fn stat_rpc(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    filter: StatusFilter,
) -> Result<TransactionPage> {
    let groupall = filter.groupall;
    let env = rpc_env_role(user, group, role, Payload::Stat { filter });
    let mut page = match s
        .rpc(RoutingKey::new(Worker::Monitor, Action::Stat), env)
        .await?
    {
        RpcReply::Transactions(page) => page,
        _ => return Err(unexpected("monitor.stat")),
    };
    current_labels(s, user, group, role, groupall, &mut page.transactions).await?;
    Ok(page)
}

/// The monitor records a transaction's holding label when it starts; a holding relabelled since
/// shows its current label (the catalogue owns labels).
async fn current_labels(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    groupall: bool,
    txs: &mut [TransactionStatus],
) -> Result<()> {
    let mut ids: Vec<i64> = txs.iter().filter_map(|t| t.holding_id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    let filter = HoldingFilter {
        groupall,
        holding_ids: ids.clone(),
        limit: ids.len() as u64,
        descending: true,
        ..Default::default()
    };
    let env = rpc_env_role(user, group, role, Payload::ListHoldings { filter });
    let RpcReply::Holdings(page) = s
        .rpc(RoutingKey::new(Worker::Catalog, Action::List), env)
        .await?
    else {
        return Err(unexpected("catalog.list"));
    };
    let labels: HashMap<i64, String> = page.holdings.into_iter().map(|h| (h.id, h.label)).collect();
    for t in txs {
        if let Some(l) = t.holding_id.and_then(|id| labels.get(&id)) {
            t.label = Some(l.clone());
        }
    }
    Ok(())
}

/// `GET /api/v2/transactions`: transaction states.
#[utoipa::path(get, path = "/api/v2/transactions", params(StatQuery), responses((status = 200, body = TransactionPage, description = "the transactions found")), security(("bearer" = [])))]
pub async fn stat(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<StatQuery>,
) -> Result<Json<TransactionPage>> {
    let group = caller.group(q.group.as_deref())?;
    let filter = status_filter(&q)?;
    let role = caller.0.role_in(&group);
    Ok(Json(
        stat_rpc(&s, &caller.0.user, &group, role, filter).await?,
    ))
}

/// `GET /api/v2/transactions/{transaction_id}`: one transaction.
#[utoipa::path(get, path = "/api/v2/transactions/{transaction_id}", params(("transaction_id" = String, Path, description = "UUID")),
    responses((status = 200, body = TransactionStatus, description = "the transaction"), (status = 404, body = nlds_core::error::ErrorBody, description = "no such transaction visible to the caller")), security(("bearer" = [])))]
pub async fn transaction(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TransactionStatus>> {
    let tid = parse_tid(&id)?;
    let who = crate::live::Reader::of(&caller, &caller.group(None)?);
    crate::live::fetch(&s, &who, tid)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ServerError::new(ErrorCode::NotFound, format!("transaction {tid} not found"))
        })
}
