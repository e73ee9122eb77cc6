//! Operator alerts: checked now and then by the delivery task, sent once per episode to the
//! operators' channels (`[notify] operator_emails`, `operator_webhook`).
//!
//! An episode opens when its condition is first seen (a row in `notify_alert`, inserted with the
//! notifications in one database transaction) and closes when a check no longer sees it (the
//! row is deleted), so a condition that lasts is reported once, and one that comes back is
//! reported again. Conditions checked:
//! * `stalled_transaction`: a transaction with a sub-record not in a final state, not updated
//!   for `[notify] stalled_after_secs`;
//! * `policy_breaker`: the policy's circuit breaker is open (`policy_lease`);
//! * `dead_letters`: a role's dead-letter queue is not empty (RabbitMQ: `nlds.<role>.dead`,
//!   asked of the bus; the in-process bus: its dead rows in `bus_message`);
//! * `backend_unreachable`: a backend probe fails (the object store's `HeadBucket`; the cold
//!   store's `stat` of a name that is never written, where this process runs an archive role).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use nlds_bus::Bus;
use nlds_core::notify::OperatorAlert;
use nlds_core::{Role, State};
use nlds_settings::NotifyConfig;
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect,
    Set, TransactionTrait,
};

use super::decide;
use crate::db::{notify_alert, policy_lease, sub_record, transaction_record};

/// A cheap probe of a backend: `Err` says why it cannot be reached.
pub type Probe =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Most stalled transactions named per check (each its own alert).
const STALLED_LIMIT: u64 = 100;

/// One condition seen now: its episode key and what to tell.
struct Seen {
    kind: &'static str,
    subject: String,
    message: String,
}

/// Checks every condition and opens and closes episodes.
pub async fn check(
    db: &DatabaseConnection,
    bus: Option<&Arc<dyn Bus>>,
    probes: &[(String, Probe)],
    cfg: &NotifyConfig,
) -> Result<(), DbErr> {
    let mut seen = stalled(db, cfg).await?;
    seen.extend(breaker(db).await?);
    seen.extend(dead_letters(db, bus).await?);
    for (name, probe) in probes {
        if let Err(why) = probe().await {
            seen.push(Seen {
                kind: "backend_unreachable",
                subject: name.clone(),
                message: format!("the {name} cannot be reached: {why}"),
            });
        }
    }
    let now = Utc::now();
    let current: BTreeMap<String, Seen> = seen
        .into_iter()
        .map(|s| (format!("{}:{}", s.kind, s.subject), s))
        .collect();
    let open: Vec<String> = notify_alert::Entity::find()
        .select_only()
        .column(notify_alert::Column::Key)
        .into_tuple()
        .all(db)
        .await?;
    let closed: Vec<&String> = open.iter().filter(|k| !current.contains_key(*k)).collect();
    if !closed.is_empty() {
        notify_alert::Entity::delete_many()
            .filter(notify_alert::Column::Key.is_in(closed.iter().map(|k| k.as_str())))
            .exec(db)
            .await?;
    }
    for (key, s) in current {
        if open.contains(&key) {
            continue;
        }
        let txn = db.begin().await?;
        notify_alert::Entity::insert(notify_alert::ActiveModel {
            key: Set(key.clone()),
            opened: Set(now),
        })
        .on_conflict_do_nothing_on([notify_alert::Column::Key])
        .exec_without_returning(&txn)
        .await?;
        send(&txn, cfg, &key, &s, now).await?;
        txn.commit().await?;
        tracing::warn!(alert = %key, "{}", s.message);
    }
    Ok(())
}

/// Inserts the alert's notifications on every operator channel.
async fn send(
    c: &impl ConnectionTrait,
    cfg: &NotifyConfig,
    key: &str,
    s: &Seen,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let body = OperatorAlert {
        event: "alert.opened".into(),
        kind: s.kind.into(),
        subject: s.subject.clone(),
        message: s.message.clone(),
        opened: now,
    };
    let payload = serde_json::to_string(&body)
        .map_err(|e| DbErr::Custom(format!("cannot encode an alert: {e}")))?;
    // One subject per episode (the time it opened), so a later episode is sent again.
    let subject = format!("alert:{key}:{}", now.timestamp_millis());
    decide::Operators::of(cfg)
        .notify(c, &subject, &payload, now)
        .await
}

/// Transactions with unfinished sub-records not updated for `stalled_after_secs`.
async fn stalled(db: &DatabaseConnection, cfg: &NotifyConfig) -> Result<Vec<Seen>, DbErr> {
    if cfg.stalled_after_secs == 0 {
        return Ok(Vec::new());
    }
    let cutoff = Utc::now()
        - chrono::Duration::seconds(i64::try_from(cfg.stalled_after_secs).unwrap_or(i64::MAX / 2));
    let finals: Vec<State> = State::ALL
        .iter()
        .copied()
        .filter(|s| s.is_final())
        .collect();
    let unfinished = Query::select()
        .column(sub_record::Column::TransactionRecordId)
        .from(sub_record::Entity)
        .and_where(sub_record::Column::State.is_not_in(finals))
        .to_owned();
    let rows: Vec<(String, DateTime<Utc>)> = transaction_record::Entity::find()
        .select_only()
        .column(transaction_record::Column::TransactionId)
        .column(transaction_record::Column::Updated)
        .filter(transaction_record::Column::Updated.lt(cutoff))
        .filter(transaction_record::Column::Id.in_subquery(unfinished))
        .limit(STALLED_LIMIT)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(tid, updated)| Seen {
            kind: "stalled_transaction",
            message: format!(
                "transaction {tid} has not changed since {} (longer than {} s)",
                updated.to_rfc3339(),
                cfg.stalled_after_secs
            ),
            subject: tid,
        })
        .collect())
}

/// The policy's circuit breaker, if it is open.
async fn breaker(db: &DatabaseConnection) -> Result<Vec<Seen>, DbErr> {
    let leases = policy_lease::Entity::find().all(db).await?;
    Ok(leases
        .into_iter()
        .filter_map(|l| {
            let (reason, since) = (l.breaker_reason?, l.breaker_since?);
            Some(Seen {
                kind: "policy_breaker",
                subject: format!("{}@{}", l.name, since.timestamp()),
                message: format!(
                    "the policy's circuit breaker opened at {}: {reason}; `nlds admin policy \
                     reset` closes it",
                    since.to_rfc3339()
                ),
            })
        })
        .collect())
}

/// Dead-letter queues that are not empty.
async fn dead_letters(
    db: &DatabaseConnection,
    bus: Option<&Arc<dyn Bus>>,
) -> Result<Vec<Seen>, DbErr> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(bus) = bus {
        for role in Role::ALL.iter().copied() {
            match bus.dead_letters(role).await {
                Ok(Some(n)) if n > 0 => {
                    counts.insert(format!("{}.dead", role.queue()), n);
                }
                Ok(_) => {}
                // The broker down is seen by /readyz and every role: not this check's alert.
                Err(e) => tracing::debug!(%role, error = %e, "cannot count dead letters"),
            }
        }
    }
    // The in-process bus keeps its dead letters in its table (empty in the distributed mode).
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT queue, COUNT(*) AS n FROM bus_message WHERE dead_reason IS NOT NULL \
             GROUP BY queue",
        ))
        .await?;
    for r in rows {
        let queue: String = r.try_get("", "queue")?;
        let n: i64 = r.try_get("", "n")?;
        *counts.entry(format!("{queue}.dead")).or_default() += u64::try_from(n).unwrap_or(0);
    }
    Ok(counts
        .into_iter()
        .map(|(queue, n)| Seen {
            kind: "dead_letters",
            message: format!(
                "{n} message(s) wait in the dead-letter queue {queue}: see the logs for why, \
                 and requeue or drop them"
            ),
            subject: queue,
        })
        .collect())
}
