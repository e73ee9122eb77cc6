//! The sysadmin's view (`/api/v2/admin/...`, service operators only): transactions of every
//! user, the failed files of any transaction, the records the logger collected, and the audit
//! log. Each is one `monitor.admin` RPC; every answer is a page with its total.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Duration, Utc};
use nlds_core::admin::{
    AdminAnswer, AdminQuery, AdminTransactionFilter, AdminTransactionQuery, AuditAction,
    AuditFilter, AuditOutcome, AuditPage, AuditQuery, FailedFilePage, LogFilter, LogLevel, LogPage,
    LogQuery, PageQuery,
};
use nlds_core::api::{ApiAction, DEFAULT_LIMIT, MAX_LIMIT, TransactionPage};
use nlds_core::message::RpcReply;
use nlds_core::number::db_count;
use nlds_core::waiting::WaitingReason;
use nlds_core::{Action, ErrorCode, Payload, RoutingKey, State as TxState, Worker};
use uuid::Uuid;

use crate::error::{Result, ServerError};
use crate::extract::{ApiQuery, Caller};
use crate::state::AppState;

/// Refuses callers who are not service operators, naming them.
pub fn require_admin(caller: &Caller) -> Result<()> {
    if caller.0.admin {
        Ok(())
    } else {
        Err(ServerError::new(
            ErrorCode::Forbidden,
            format!(
                "{} is not a service operator (admin): the admin endpoints are for operators only",
                caller.0.user
            ),
        ))
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

fn tid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s.trim()).map_err(|_| {
        ServerError::bad_request(format!("{s:?} is not a valid transaction id (a UUID)"))
    })
}

/// Comma-separated values, each parsed by `parse` or refused naming the value and what is allowed.
fn list<T>(
    text: Option<&str>,
    what: &str,
    allowed: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>> {
    text.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|v| {
            parse(v)
                .ok_or_else(|| ServerError::bad_request(format!("{v:?} is not {what} ({allowed})")))
        })
        .collect()
}

fn minutes_ago(name: &str, m: Option<u64>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    match m {
        None => Ok(None),
        Some(m) if m > 10 * 365 * 24 * 60 => Err(ServerError::bad_request(format!(
            "{name} {m} is more than ten years of minutes"
        ))),
        Some(m) => Ok(Some(now - Duration::minutes(m as i64))),
    }
}

fn time_range(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Result<()> {
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(ServerError::bad_request(format!(
            "since ({s}) must be before until ({u})"
        )));
    }
    Ok(())
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The filter of `GET /api/v2/admin/transactions`.
pub fn transaction_filter(
    q: &AdminTransactionQuery,
    now: DateTime<Utc>,
) -> Result<AdminTransactionFilter> {
    let states = list(
        q.state.as_deref(),
        "a state",
        "a name like COMPLETE or FAILED, or its number",
        |s| s.parse::<TxState>().ok(),
    )?;
    let api_actions = list(
        q.api_action.as_deref(),
        "an api action",
        "put, putlist, get, getlist, archive-put, archive-get",
        ApiAction::parse,
    )?;
    let waiting = list(
        q.waiting.as_deref(),
        "a waiting reason",
        "queued, retrying, tape, cancelled",
        |s| s.parse::<WaitingReason>().ok(),
    )?;
    let created_before = minutes_ago("older_than_minutes", q.older_than_minutes, now)?;
    let created_after = minutes_ago("newer_than_minutes", q.newer_than_minutes, now)?;
    if let (Some(b), Some(a)) = (created_before, created_after)
        && a >= b
    {
        return Err(ServerError::bad_request(
            "older_than_minutes must be less than newer_than_minutes: no transaction is both",
        ));
    }
    if q.stalled_minutes == Some(0) {
        return Err(ServerError::bad_request(
            "stalled_minutes must be at least 1",
        ));
    }
    Ok(AdminTransactionFilter {
        user: nonempty(&q.user),
        group: nonempty(&q.group),
        states,
        api_actions,
        created_before,
        created_after,
        stalled_since: minutes_ago("stalled_minutes", q.stalled_minutes, now)?,
        waiting,
        transaction_id: None,
        limit: limit(q.limit)?,
        offset: db_count("offset", q.offset.unwrap_or(0))?,
        descending: q.descending.unwrap_or(true),
    })
}

/// The filter of `GET /api/v2/admin/logs`.
pub fn log_filter(q: &LogQuery) -> Result<LogFilter> {
    time_range(q.since, q.until)?;
    Ok(LogFilter {
        services: list(q.service.as_deref(), "a service", "a name", |s| {
            Some(s.to_owned())
        })?,
        levels: list(
            q.level.as_deref(),
            "a log level",
            "debug, info, warning, error, critical",
            LogLevel::parse,
        )?,
        since: q.since,
        until: q.until,
        transaction_id: q.transaction_id.as_deref().map(tid).transpose()?,
        limit: limit(q.limit)?,
        offset: db_count("offset", q.offset.unwrap_or(0))?,
        descending: q.descending.unwrap_or(true),
    })
}

/// The filter of `GET /api/v2/admin/audit`.
pub fn audit_filter(q: &AuditQuery) -> Result<AuditFilter> {
    time_range(q.since, q.until)?;
    let outcome = match nonempty(&q.outcome) {
        None => None,
        Some(o) => Some(AuditOutcome::parse(&o).ok_or_else(|| {
            ServerError::bad_request(format!("{o:?} is not an outcome (allowed or refused)"))
        })?),
    };
    Ok(AuditFilter {
        user: nonempty(&q.user),
        actions: list(
            q.action.as_deref(),
            "an audited action",
            "put, get, meta, delete, undelete, purge, list, find, stat, admin",
            AuditAction::parse,
        )?,
        outcome,
        holding_id: q.holding_id,
        transaction_id: q.transaction_id.as_deref().map(tid).transpose()?,
        since: q.since,
        until: q.until,
        limit: limit(q.limit)?,
        offset: db_count("offset", q.offset.unwrap_or(0))?,
        descending: q.descending.unwrap_or(true),
    })
}

pub(crate) async fn ask(s: &AppState, caller: &Caller, q: AdminQuery) -> Result<AdminAnswer> {
    let group = caller.0.groups.first().cloned().unwrap_or_default();
    let env = crate::routes::rpc_env_as(&caller.0.user, &group, Payload::Admin(q))
        .with_role(caller.0.role_in(&group));
    match s
        .rpc(RoutingKey::new(Worker::Monitor, Action::Admin), env)
        .await?
    {
        RpcReply::Admin(a) => Ok(a),
        _ => Err(ServerError::new(
            ErrorCode::Internal,
            "unexpected reply to monitor.admin",
        )),
    }
}

/// One transaction of any user, for an operator (`caller` is one: checked by the caller).
pub(crate) async fn any_transaction(
    s: &AppState,
    caller: &Caller,
    tid: Uuid,
) -> Result<Option<nlds_core::api::TransactionStatus>> {
    let filter = AdminTransactionFilter {
        transaction_id: Some(tid),
        limit: 1,
        descending: true,
        ..Default::default()
    };
    match ask(s, caller, AdminQuery::Transactions(filter)).await? {
        AdminAnswer::Transactions(p) => Ok(p.transactions.into_iter().next()),
        _ => Err(mismatch()),
    }
}

pub(crate) fn mismatch() -> ServerError {
    ServerError::new(ErrorCode::Internal, "monitor.admin answered another query")
}

/// `GET /api/v2/admin/transactions`: transactions of every user.
#[utoipa::path(get, path = "/api/v2/admin/transactions", params(AdminTransactionQuery),
    responses((status = 200, body = TransactionPage, description = "the transactions found"), (status = 400, body = nlds_core::error::ErrorBody, description = "invalid query"),
        (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn transactions(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AdminTransactionQuery>,
) -> Result<Json<TransactionPage>> {
    require_admin(&caller)?;
    let filter = transaction_filter(&q, Utc::now())?;
    match ask(&s, &caller, AdminQuery::Transactions(filter)).await? {
        AdminAnswer::Transactions(p) => Ok(Json(p)),
        _ => Err(mismatch()),
    }
}

/// `GET /api/v2/admin/transactions/{transaction_id}/failed`: a transaction's failed files.
#[utoipa::path(get, path = "/api/v2/admin/transactions/{transaction_id}/failed",
    params(("transaction_id" = String, Path, description = "UUID"), PageQuery),
    responses((status = 200, body = FailedFilePage, description = "the failed files of the transaction"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator"),
        (status = 404, body = nlds_core::error::ErrorBody, description = "no such transaction")), security(("bearer" = [])))]
pub async fn failed_files(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<FailedFilePage>> {
    require_admin(&caller)?;
    let query = AdminQuery::FailedFiles {
        transaction_id: tid(&id)?,
        limit: limit(q.limit)?,
        offset: db_count("offset", q.offset.unwrap_or(0))?,
    };
    match ask(&s, &caller, query).await? {
        AdminAnswer::FailedFiles(p) => Ok(Json(p)),
        _ => Err(mismatch()),
    }
}

/// `GET /api/v2/admin/logs`: the records the logger collected.
#[utoipa::path(get, path = "/api/v2/admin/logs", params(LogQuery),
    responses((status = 200, body = LogPage, description = "the log records found"), (status = 400, body = nlds_core::error::ErrorBody, description = "invalid query"),
        (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn logs(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Json<LogPage>> {
    require_admin(&caller)?;
    let filter = log_filter(&q)?;
    match ask(&s, &caller, AdminQuery::Logs(filter)).await? {
        AdminAnswer::Logs(p) => Ok(Json(p)),
        _ => Err(mismatch()),
    }
}

/// `GET /api/v2/admin/audit`: the audit log.
#[utoipa::path(get, path = "/api/v2/admin/audit", params(AuditQuery),
    responses((status = 200, body = AuditPage, description = "the audit records found"), (status = 400, body = nlds_core::error::ErrorBody, description = "invalid query"),
        (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn audit(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>> {
    require_admin(&caller)?;
    let filter = audit_filter(&q)?;
    match ask(&s, &caller, AdminQuery::Audit(filter)).await? {
        AdminAnswer::Audit(p) => Ok(Json(p)),
        _ => Err(mismatch()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(e: ServerError) -> String {
        format!("{} {}", e.0.code, e.0.message)
    }

    #[test]
    fn transaction_filters_are_resolved_and_checked() {
        let now = Utc::now();
        let q = AdminTransactionQuery {
            user: Some(" ".into()),
            group: Some("climate".into()),
            state: Some("COMPLETE, 101".into()),
            api_action: Some("put".into()),
            older_than_minutes: Some(60),
            stalled_minutes: Some(30),
            ..Default::default()
        };
        let f = transaction_filter(&q, now).unwrap();
        assert_eq!(f.user, None);
        assert_eq!(f.group.as_deref(), Some("climate"));
        assert_eq!(f.states, [TxState::Complete, TxState::Failed]);
        assert_eq!(f.api_actions, [ApiAction::Put]);
        assert_eq!(f.created_before, Some(now - Duration::minutes(60)));
        assert_eq!(f.stalled_since, Some(now - Duration::minutes(30)));
        assert!(f.descending && f.limit == DEFAULT_LIMIT);
        let bad = |q: AdminTransactionQuery| msg(transaction_filter(&q, now).unwrap_err());
        assert!(
            bad(AdminTransactionQuery {
                state: Some("DONE".into()),
                ..Default::default()
            })
            .contains("\"DONE\" is not a state")
        );
        assert!(
            bad(AdminTransactionQuery {
                older_than_minutes: Some(10),
                newer_than_minutes: Some(5),
                ..Default::default()
            })
            .contains("no transaction is both")
        );
        assert!(
            bad(AdminTransactionQuery {
                limit: Some(0),
                ..Default::default()
            })
            .starts_with("bad_request")
        );
        // An offset the database cannot hold is refused here (found by the API fuzzer: it
        // reached the monitor's query and failed there with a 503).
        let e = bad(AdminTransactionQuery {
            offset: Some(u64::MAX),
            ..Default::default()
        });
        assert!(e.contains("offset"), "{e}");
    }

    /// `?waiting=bogus` is a 400 that names every reason accepted, and every reason is accepted.
    #[test]
    fn an_unknown_waiting_reason_is_refused_naming_the_accepted_ones() {
        let now = Utc::now();
        let e = transaction_filter(
            &AdminTransactionQuery {
                waiting: Some("tape,bogus".into()),
                ..Default::default()
            },
            now,
        )
        .unwrap_err();
        assert_eq!(e.0.code.http_status(), 400);
        assert!(
            e.0.message.contains("\"bogus\" is not a waiting reason"),
            "{}",
            e.0.message
        );
        for r in WaitingReason::ALL {
            assert!(e.0.message.contains(&r.to_string()), "{r}: {}", e.0.message);
        }
        let all = WaitingReason::ALL.map(|r| r.to_string()).join(",");
        let f = transaction_filter(
            &AdminTransactionQuery {
                waiting: Some(all),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(f.waiting, WaitingReason::ALL);
    }

    #[test]
    fn log_and_audit_filters_are_checked() {
        let f = log_filter(&LogQuery {
            service: Some("transfer-put,catalog".into()),
            level: Some("WARN,error".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.services, ["transfer-put", "catalog"]);
        assert_eq!(f.levels, [LogLevel::Warning, LogLevel::Error]);
        let e = log_filter(&LogQuery {
            level: Some("loud".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(msg(e).contains("\"loud\" is not a log level"));
        let now = Utc::now();
        let e = log_filter(&LogQuery {
            since: Some(now),
            until: Some(now),
            ..Default::default()
        })
        .unwrap_err();
        assert!(msg(e).contains("must be before until"));
        let f = audit_filter(&AuditQuery {
            action: Some("meta,delete".into()),
            outcome: Some("refused".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.actions, [AuditAction::Meta, AuditAction::Delete]);
        assert_eq!(f.outcome, Some(AuditOutcome::Refused));
        assert!(
            msg(audit_filter(&AuditQuery {
                transaction_id: Some("x".into()),
                ..Default::default()
            })
            .unwrap_err())
            .contains("not a valid transaction id")
        );
    }
}
