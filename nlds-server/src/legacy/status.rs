//! `status/`: transaction states.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use nlds_core::State as TxState;
use nlds_core::api::{ApiAction, TransactionStatus};
use nlds_core::message::StatusFilter;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::ServerError;
use crate::routes;
use crate::state::AppState;

use super::catalog::whose;
use super::error::{LResult, LegacyError};
use super::params::Acting;
use super::reply::{accepted, iso, rpc_failure, rpc_message, with_failure};
use super::{ActingAs, Answers};

/// `StatBody`, the JSON body `GET status/` carries.
#[derive(Debug, Default, Deserialize)]
struct StatBody {
    #[serde(default)]
    api_action: Option<Vec<String>>,
    #[serde(default)]
    exclude_api_action: Option<Vec<String>>,
    #[serde(default)]
    state: Option<Vec<String>>,
}

fn api_actions(list: Option<Vec<String>>) -> LResult<Vec<ApiAction>> {
    list.unwrap_or_default()
        .iter()
        .map(|a| {
            ApiAction::parse(a.trim()).ok_or_else(|| {
                LegacyError::bad_request(
                    format!("Given api_action: {a} is not valid."),
                    "Bad api action.",
                )
            })
        })
        .collect()
}

/// A state filter: an exact state name (as upstream), or its number.
pub(super) fn state_of(s: &str) -> LResult<TxState> {
    let t = s.trim();
    let by_name = TxState::ALL.iter().copied().find(|st| st.name() == t);
    let by_number = t
        .parse::<i32>()
        .ok()
        .and_then(|n| TxState::ALL.iter().copied().find(|st| st.value() == n));
    by_name.or(by_number).ok_or_else(|| {
        LegacyError::bad_request(format!("Given State: {s} is not valid."), "Bad state.")
    })
}

/// A sub-record's state as NLDS 1.0.x clients know states: they have no CANCELLED (an unknown
/// state name crashes the published client), so a cancelled transaction shows every sub-record
/// FAILED (the client derives FAILED; its cancelled files say "cancelled" in their reasons).
fn legacy_state(transaction: TxState, sub: TxState) -> TxState {
    if transaction == TxState::Cancelled || sub == TxState::Cancelled {
        TxState::Failed
    } else {
        sub
    }
}

/// A transaction as a `records[]` element. A batch that finished with some files failed is shown
/// as two sub-records, one COMPLETE and one FAILED holding the failed files, so the client's own
/// state derivation gives COMPLETE_WITH_ERRORS as ours does.
fn record_value(t: &TransactionStatus) -> Value {
    let mut subs = Vec::new();
    for sr in &t.sub_records {
        let failed: Vec<Value> = sr
            .failed_files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                json!({
                    "id": i + 1,
                    "filepath": f.path,
                    "reason": f.reason,
                    "sub_record_id": sr.id,
                })
            })
            .collect();
        let sub = |state: TxState, failed_files: Vec<Value>| {
            json!({
                "id": sr.id,
                "sub_id": sr.sub_id.to_string(),
                "state": state.name(),
                "last_updated": iso(sr.last_updated),
                "retry_count": 0,
                "failed_files": failed_files,
            })
        };
        let state = legacy_state(t.state, sr.state);
        if !failed.is_empty() && !state.is_failed() {
            subs.push(sub(state, Vec::new()));
            let mut twin = sub(TxState::Failed, failed);
            twin["sub_id"] = json!(Uuid::new_v5(&sr.sub_id, b"failed-files").to_string());
            subs.push(twin);
        } else {
            subs.push(sub(state, failed));
        }
    }
    json!({
        "id": t.id,
        "transaction_id": t.transaction_id.to_string(),
        "user": t.user,
        "group": t.group,
        "job_label": t.job_label,
        "api_action": t.api_action.as_str(),
        "creation_time": iso(t.created),
        "warnings": t.warnings,
        "label": t.label.clone().unwrap_or_default(),
        "sub_records": subs,
    })
}

/// `GET status/`: transaction states, filtered by the query and by the JSON body.
#[utoipa::path(
    get, path = "/api/1.0.0/status/", tag = "legacy", operation_id = "legacy_status",
    params(ActingAs),
    request_body(content = serde_json::Value, description = "the legacy client's JSON body"),
    responses(Answers),
    security(("bearer" = []))
)]
pub(super) async fn status(State(s): State<AppState>, a: Acting, body: Bytes) -> LResult<Response> {
    let p = &a.params;
    let body: StatBody = if body.iter().all(u8::is_ascii_whitespace) {
        StatBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            LegacyError::bad_request(
                format!("the request body is not a valid status filter ({{\"api_action\", \"exclude_api_action\", \"state\"}}): {e}"),
                "Bad request.",
            )
        })?
    };
    let uuid_param = |name: &str| -> LResult<Option<Uuid>> {
        p.str(name)
            .map(|t| {
                Uuid::parse_str(t.trim()).map_err(|_| {
                    LegacyError::bad_request(
                        format!("Given {name}: {t} is not a valid uuid-4."),
                        "Bad transaction id.",
                    )
                })
            })
            .transpose()
    };
    let transaction_id = uuid_param("transaction_id")?;
    let sub_id = uuid_param("sub_id")?;
    let states = body
        .state
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|st| state_of(st))
        .collect::<LResult<Vec<_>>>()?;
    // FAILED, as these clients see it, includes the cancelled (see `legacy_state`).
    let mut selected = states.clone();
    if selected.contains(&TxState::Failed) && !selected.contains(&TxState::Cancelled) {
        selected.push(TxState::Cancelled);
    }
    let api = api_actions(body.api_action.clone())?;
    let mut exclude = api_actions(body.exclude_api_action.clone())?;
    if !a.caller.admin && !api.contains(&ApiAction::ArchivePut) {
        exclude.push(ApiAction::ArchivePut);
    }
    let filter = StatusFilter {
        groupall: p.bool("groupall")?,
        id: p
            .int("id")?
            .map(|id| nlds_core::number::db_id("id", id).map_err(ServerError::from))
            .transpose()?,
        transaction_id,
        job_label: p.str("job_label").map(str::to_owned),
        job_label_regex: p.bool("regex")?,
        api_actions: api,
        exclude_api_actions: exclude,
        states: selected,
        limit: p.limit()?,
        offset: 0,
        descending: p.bool("descending")?,
    };
    if filter.job_label_regex
        && let Some(j) = &filter.job_label
        && let Err(e) = nlds_core::pattern::check(&[j], "job label")
    {
        return Err(LegacyError::bad_request(e.message, "Bad regex."));
    }
    let details = json!({
        "user": a.user,
        "group": a.group,
        "groupall": filter.groupall,
        "id": filter.id,
        "api_action": "stat",
        "transaction_id": transaction_id.map(|t| t.to_string()),
        "job_label": filter.job_label,
        "sub_id": sub_id.map(|t| t.to_string()),
    });
    let meta = json!({
        "regex": filter.job_label_regex,
        "api_action": body.api_action,
        "exclude_api_action": body.exclude_api_action,
        "state": states.iter().map(|s| s.value()).collect::<Vec<_>>(),
        "limit": p.int("limit")?,
        "descending": filter.descending,
    });
    let groupall = filter.groupall;
    match routes::stat_rpc(&s, &a.user, &a.group, a.role(), filter).await {
        Ok(page) => {
            let txs: Vec<&TransactionStatus> = page
                .transactions
                .iter()
                .filter(|t| sub_id.is_none_or(|sid| t.sub_records.iter().any(|r| r.sub_id == sid)))
                .collect();
            if txs.is_empty() {
                return Ok(accepted(rpc_message(
                    with_failure(
                        details,
                        format!("no transaction records found for {}", whose(&a, groupall)),
                    ),
                    json!({"records": []}),
                    meta,
                )));
            }
            let labels: serde_json::Map<String, Value> = txs
                .iter()
                .map(|t| {
                    (
                        t.transaction_id.to_string(),
                        Value::String(t.label.clone().unwrap_or_default()),
                    )
                })
                .collect();
            Ok(accepted(rpc_message(
                details,
                json!({
                    "records": txs.iter().map(|t| record_value(t)).collect::<Vec<_>>(),
                    "transactions": labels,
                }),
                meta,
            )))
        }

        Err(e) => Ok(rpc_failure(e, details, json!({"records": []}), meta)),
    }
}
