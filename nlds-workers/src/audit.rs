//! The audit log and the collected log records: storing rows of `audit_record` and `log_record`
//! (entities in [`crate::db`], migration `m20261125_000005_audit`) and the admin queries over them.
//! Shared by the logger role (stores what it collects) and the monitor role (stores the refusals it
//! records, answers the admin queries).
//!
//! Audit events come from the API server (published on `log.audit`, stored by the logger role)
//! and from the monitor (files a transfer was refused, stored in the same database transaction as
//! the update that records them). Each event has a unique id, so a redelivered one is stored once.

use chrono::{DateTime, Utc};
use nlds_core::admin::{
    AUDIT_DETAIL_MAX, AuditEvent, AuditFilter, AuditPage, LogEntry, LogFilter, LogLevel, LogPage,
    clip,
};
use nlds_core::api::{DEFAULT_LIMIT, MAX_LIMIT};
use sea_orm::sea_query::Order;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::db::{audit_record, log_record, stored_uuid, stored_uuid_opt};

/// Stores an audit event (once: a second event with the same id is ignored).
pub async fn store_audit(c: &impl ConnectionTrait, ev: &AuditEvent) -> Result<(), DbErr> {
    let row = audit_record::ActiveModel {
        event_id: Set(ev.id.to_string()),
        time: Set(ev.time),
        user: Set(ev.user.clone()),
        group: Set(ev.group.clone()),
        role: Set(ev.role),
        action: Set(ev.action),
        outcome: Set(ev.outcome),
        endpoint: Set(clip(&ev.endpoint, 200)),
        holding_id: Set(ev.holding_id),
        label: Set(ev.label.as_deref().map(|l| clip(l, 256))),
        transaction_id: Set(ev.transaction_id.map(|t| t.to_string())),
        target_user: Set(ev.target_user.clone()),
        code: Set(ev.code),
        detail: Set(clip(&ev.detail, AUDIT_DETAIL_MAX)),
        ..Default::default()
    };
    audit_record::Entity::insert(row)
        .on_conflict_do_nothing_on([audit_record::Column::EventId])
        .exec_without_returning(c)
        .await?;
    Ok(())
}

/// One log record to store.
#[derive(Debug, Clone)]
pub struct LogLine<'a> {
    pub time: DateTime<Utc>,
    pub level: LogLevel,
    pub service: &'a str,
    pub transaction_id: Option<Uuid>,
    pub sub_id: Option<Uuid>,
    pub user: Option<&'a str>,
    pub message: &'a str,
}

/// Longest message a log record keeps.
pub const LOG_MESSAGE_MAX: usize = 8000;

pub async fn store_log(c: &impl ConnectionTrait, l: &LogLine<'_>) -> Result<(), DbErr> {
    log_record::Entity::insert(log_record::ActiveModel {
        time: Set(l.time),
        level: Set(l.level),
        service: Set(clip(l.service, 100)),
        transaction_id: Set(l.transaction_id.map(|t| t.to_string())),
        sub_id: Set(l.sub_id.map(|t| t.to_string())),
        user: Set(l.user.map(str::to_owned)),
        message: Set(clip(l.message, LOG_MESSAGE_MAX)),
        ..Default::default()
    })
    .exec_without_returning(c)
    .await?;
    Ok(())
}

fn page_of(limit: u64) -> u64 {
    match limit {
        0 => DEFAULT_LIMIT,
        l => l.min(MAX_LIMIT),
    }
}

fn order(descending: bool) -> Order {
    if descending { Order::Desc } else { Order::Asc }
}

/// A page of the audit records `f` selects, newest first unless asked otherwise.
pub async fn query_audit(c: &impl ConnectionTrait, f: &AuditFilter) -> Result<AuditPage, DbErr> {
    use audit_record::Column as C;
    let mut cond = Condition::all();
    if let Some(u) = &f.user {
        cond = cond.add(C::User.eq(u.as_str()));
    }
    if !f.actions.is_empty() {
        cond = cond.add(C::Action.is_in(f.actions.iter().map(|a| a.as_str())));
    }
    if let Some(o) = f.outcome {
        cond = cond.add(C::Outcome.eq(o.as_str()));
    }
    if let Some(h) = f.holding_id {
        cond = cond.add(C::HoldingId.eq(h));
    }
    if let Some(t) = f.transaction_id {
        cond = cond.add(C::TransactionId.eq(t.to_string()));
    }
    if let Some(t) = f.since {
        cond = cond.add(C::Time.gte(t));
    }
    if let Some(t) = f.until {
        cond = cond.add(C::Time.lt(t));
    }
    let limit = page_of(f.limit);
    let query = audit_record::Entity::find()
        .filter(cond)
        .order_by(C::Time, order(f.descending))
        .order_by(C::Id, order(f.descending));
    let total = query.clone().count(c).await?;
    let rows = query.limit(limit).offset(f.offset).all(c).await?;
    Ok(AuditPage {
        records: rows
            .into_iter()
            .map(audit_event)
            .collect::<Result<_, _>>()?,
        total,
        limit,
        offset: f.offset,
    })
}

fn audit_event(r: audit_record::Model) -> Result<AuditEvent, DbErr> {
    const TABLE: &str = "audit_record";
    Ok(AuditEvent {
        id: stored_uuid(TABLE, "event_id", &r.event_id)?,
        time: r.time,
        user: r.user,
        group: r.group,
        role: r.role,
        action: r.action,
        outcome: r.outcome,
        endpoint: r.endpoint,
        holding_id: r.holding_id,
        label: r.label,
        transaction_id: stored_uuid_opt(TABLE, "transaction_id", r.transaction_id.as_deref())?,
        target_user: r.target_user,
        code: r.code,
        detail: r.detail,
    })
}

/// A page of the log records `f` selects, newest first unless asked otherwise.
pub async fn query_logs(c: &impl ConnectionTrait, f: &LogFilter) -> Result<LogPage, DbErr> {
    use log_record::Column as C;
    let mut cond = Condition::all();
    if !f.services.is_empty() {
        cond = cond.add(C::Service.is_in(f.services.iter().map(String::as_str)));
    }
    if !f.levels.is_empty() {
        cond = cond.add(C::Level.is_in(f.levels.iter().map(|l| l.as_str())));
    }
    if let Some(t) = f.transaction_id {
        cond = cond.add(C::TransactionId.eq(t.to_string()));
    }
    if let Some(t) = f.since {
        cond = cond.add(C::Time.gte(t));
    }
    if let Some(t) = f.until {
        cond = cond.add(C::Time.lt(t));
    }
    let limit = page_of(f.limit);
    let query = log_record::Entity::find()
        .filter(cond)
        .order_by(C::Time, order(f.descending))
        .order_by(C::Id, order(f.descending));
    let total = query.clone().count(c).await?;
    let rows = query.limit(limit).offset(f.offset).all(c).await?;
    Ok(LogPage {
        entries: rows
            .into_iter()
            .map(|r| {
                Ok(LogEntry {
                    id: r.id,
                    time: r.time,
                    level: r.level,
                    service: r.service,
                    transaction_id: stored_uuid_opt(
                        "log_record",
                        "transaction_id",
                        r.transaction_id.as_deref(),
                    )?,
                    sub_id: stored_uuid_opt("log_record", "sub_id", r.sub_id.as_deref())?,
                    user: r.user,
                    message: r.message,
                })
            })
            .collect::<Result<_, DbErr>>()?,
        total,
        limit,
        offset: f.offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing;
    use nlds_core::admin::{AuditAction, AuditOutcome};
    use nlds_core::{AccessRole, ErrorCode};

    fn event(n: u128, user: &str, action: AuditAction, outcome: AuditOutcome) -> AuditEvent {
        AuditEvent {
            id: Uuid::from_u128(n),
            time: Utc::now() + chrono::Duration::milliseconds(n as i64),
            user: user.into(),
            group: "climate".into(),
            role: AccessRole::User,
            action,
            outcome,
            endpoint: "POST /api/v2/meta".into(),
            holding_id: Some(n as i64),
            label: Some("run".into()),
            transaction_id: None,
            target_user: None,
            code: (outcome == AuditOutcome::Refused).then_some(ErrorCode::Forbidden),
            detail: "x".repeat(3000),
        }
    }

    async fn audit_and_logs(db: sea_orm::DatabaseConnection) {
        let a = event(1, "alice", AuditAction::Put, AuditOutcome::Allowed);
        let b = event(2, "bob", AuditAction::Meta, AuditOutcome::Refused);
        let c = event(3, "bob", AuditAction::Find, AuditOutcome::Refused);
        for e in [&a, &b, &c, &b] {
            store_audit(&db, e).await.unwrap();
        }
        let newest_first = AuditFilter {
            descending: true,
            ..Default::default()
        };
        let all = query_audit(&db, &newest_first).await.unwrap();
        assert_eq!(all.total, 3, "a redelivered event is stored once");
        assert_eq!(all.records[0].id, c.id, "newest first");
        assert_eq!(all.records[2].user, "alice");
        assert_eq!(all.records[1].code, Some(ErrorCode::Forbidden));
        assert_eq!(all.records[1].detail.chars().count(), AUDIT_DETAIL_MAX);
        let f = AuditFilter {
            user: Some("bob".into()),
            actions: vec![AuditAction::Meta, AuditAction::Put],
            ..Default::default()
        };
        let page = query_audit(&db, &f).await.unwrap();
        assert_eq!(page.total, 1);
        assert_eq!(page.records[0].id, b.id);
        let f = AuditFilter {
            outcome: Some(AuditOutcome::Refused),
            limit: 1,
            offset: 1,
            descending: false,
            ..Default::default()
        };
        let page = query_audit(&db, &f).await.unwrap();
        assert_eq!((page.total, page.records[0].id), (2, c.id));
        let f = AuditFilter {
            holding_id: Some(1),
            until: Some(b.time),
            ..Default::default()
        };
        assert_eq!(query_audit(&db, &f).await.unwrap().total, 1);

        let tid = Uuid::from_u128(77);
        let t0 = Utc::now();
        for (i, (svc, lvl, t)) in [
            ("transfer-put", LogLevel::Error, Some(tid)),
            ("transfer-put", LogLevel::Warning, None),
            ("catalog", LogLevel::Error, Some(tid)),
        ]
        .into_iter()
        .enumerate()
        {
            let line = LogLine {
                time: t0 + chrono::Duration::seconds(i as i64),
                level: lvl,
                service: svc,
                transaction_id: t,
                sub_id: None,
                user: Some("alice"),
                message: "boom",
            };
            store_log(&db, &line).await.unwrap();
        }
        let f = LogFilter {
            services: vec!["transfer-put".into()],
            ..Default::default()
        };
        assert_eq!(query_logs(&db, &f).await.unwrap().total, 2);
        let f = LogFilter {
            levels: vec![LogLevel::Error],
            transaction_id: Some(tid),
            descending: true,
            ..Default::default()
        };
        let p = query_logs(&db, &f).await.unwrap();
        assert_eq!(p.total, 2);
        assert_eq!(p.entries[0].service, "catalog");
        assert_eq!(p.entries[0].transaction_id, Some(tid));
        let f = LogFilter {
            since: Some(t0 + chrono::Duration::seconds(1)),
            until: Some(t0 + chrono::Duration::seconds(2)),
            ..Default::default()
        };
        let p = query_logs(&db, &f).await.unwrap();
        assert_eq!(p.total, 1);
        assert_eq!(p.entries[0].level, LogLevel::Warning);
    }

    #[tokio::test]
    async fn audit_and_logs_sqlite() {
        audit_and_logs(testing::memory().await).await;
    }

    #[tokio::test]
    async fn audit_and_logs_postgres() {
        let Some(pg) = testing::postgres("audit").await else {
            return;
        };
        audit_and_logs(pg.db.clone()).await;
        pg.drop_now().await;
    }
}
