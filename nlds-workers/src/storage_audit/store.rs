//! The runs as stored (`storage_audit`): recorded when a run starts, completed when it ends.

use chrono::{DateTime, Utc};
use nlds_core::storage_audit::{AuditReport, AuditRequest};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::db::storage_audit;

/// Records the start of a run; its id.
pub async fn started(
    db: &impl ConnectionTrait,
    trigger: &str,
    req: &AuditRequest,
) -> Result<i64, DbErr> {
    let request = serde_json::to_string(req).map_err(|e| DbErr::Custom(e.to_string()))?;
    Ok(storage_audit::Entity::insert(storage_audit::ActiveModel {
        trigger: Set(trigger.into()),
        started: Set(Utc::now()),
        request: Set(request),
        ..Default::default()
    })
    .exec(db)
    .await?
    .last_insert_id)
}

/// Completes run `id` with its report, or with why it stopped.
pub async fn finished(
    db: &impl ConnectionTrait,
    id: i64,
    outcome: Result<&AuditReport, &str>,
) -> Result<(), DbErr> {
    let (report, error) = match outcome {
        Ok(r) => (
            Some(serde_json::to_string(r).map_err(|e| DbErr::Custom(e.to_string()))?),
            None,
        ),
        Err(e) => (None, Some(e.to_owned())),
    };
    storage_audit::Entity::update(storage_audit::ActiveModel {
        id: Set(id),
        finished: Set(Some(Utc::now())),
        report: Set(report),
        error: Set(error),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(())
}

/// When the latest run of `trigger` started.
pub async fn last_started(
    db: &impl ConnectionTrait,
    trigger: &str,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    Ok(storage_audit::Entity::find()
        .filter(storage_audit::Column::Trigger.eq(trigger))
        .order_by_desc(storage_audit::Column::Started)
        .one(db)
        .await?
        .map(|r| r.started))
}

/// Why a run has no outcome when its process died before it ended.
pub const ABANDONED: &str =
    "its storage-audit process stopped before the run ended (nothing renewed the run's lease)";

/// Completes the runs that have no outcome if no process holds the audit's lease (`lease`, see
/// [`super::runner::LEASE`]): the process that ran them stopped (a live run renews the lease
/// every 30 s), so they will never end on their own. Returns how many.
pub async fn close_abandoned(db: &impl ConnectionTrait, lease: &str) -> Result<u64, DbErr> {
    let now = Utc::now();
    let held = crate::db::policy_lease::Entity::find_by_id(lease.to_owned())
        .one(db)
        .await?
        .is_some_and(|l| l.until > now);
    if held {
        return Ok(0);
    }
    let r = storage_audit::Entity::update_many()
        .col_expr(
            storage_audit::Column::Finished,
            sea_orm::sea_query::Expr::value(now),
        )
        .col_expr(
            storage_audit::Column::Error,
            sea_orm::sea_query::Expr::value(ABANDONED),
        )
        .filter(storage_audit::Column::Finished.is_null())
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// The latest `limit` runs, newest first, as reports (a run still going, or one that stopped,
/// shows its request, its start and, in `notes`, why it has no counts). Runs whose process died
/// are completed first ([`close_abandoned`]).
pub async fn recent(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<AuditReport>, DbErr> {
    let closed = close_abandoned(db, super::runner::LEASE).await?;
    if closed > 0 {
        tracing::warn!(
            runs = closed,
            "storage audit runs whose process stopped are closed"
        );
    }
    let rows = storage_audit::Entity::find()
        .order_by_desc(storage_audit::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    rows.into_iter().map(report_of).collect()
}

fn report_of(row: storage_audit::Model) -> Result<AuditReport, DbErr> {
    let bad = |what: &str, e: serde_json::Error| {
        DbErr::Custom(format!(
            "storage_audit row {}: malformed {what}: {e}",
            row.id
        ))
    };
    if let Some(text) = &row.report {
        let mut r: AuditReport = serde_json::from_str(text).map_err(|e| bad("report", e))?;
        r.id = Some(row.id);
        return Ok(r);
    }
    let request: AuditRequest =
        serde_json::from_str(&row.request).map_err(|e| bad("request", e))?;
    Ok(AuditReport {
        id: Some(row.id),
        trigger: row.trigger,
        started: row.started,
        finished: row.finished.unwrap_or(row.started),
        request,
        counts: Default::default(),
        findings: Vec::new(),
        truncated: false,
        notes: vec![match row.error {
            Some(e) => format!("stopped: {e}"),
            None => "running".to_owned(),
        }],
    })
}
