//! The transactional outbox: how a worker that commits a change publishes the messages the change
//! implies without a crash window between the two.
//!
//! A handler [`stage`]s each message in the same database transaction as the change (e.g. the
//! catalogue forgetting evicted copies stages the `transfer-del.start` that deletes their
//! objects). After the commit it calls [`Outbox::wake`]; the [`Relay`] of its process publishes
//! the staged rows in order, each confirmed by the bus, and deletes a row only once its message
//! is confirmed. A crash at any point leaves either no change and no message (rolled back) or the
//! change and its rows, which the relay publishes when the role runs again (it also polls every
//! [`POLL`]). A crash between a confirm and the row's delete publishes that message again: every
//! consumer of a staged message is idempotent (at-least-once delivery, as everywhere on the bus).
//!
//! Several processes may relay the same database: on PostgreSQL a relay locks the rows it takes
//! (`FOR UPDATE SKIP LOCKED`), so two relays never publish the same row at once. SQLite (the
//! embedded mode) has one process and one relay.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use nlds_bus::Bus;
use nlds_core::{Envelope, RoutingKey};
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::outbox;
use nlds_hooks::points;

/// How often a relay looks for rows nobody woke it for (left by a crash, or by another process).
pub const POLL: Duration = Duration::from_secs(5);
/// Rows published per database transaction, at most.
const BATCH: u64 = 100;
/// Bytes of staged messages a relay loads at once, at most (but always one row): a chunked
/// request stages a submission of 10,000 paths per part, about 0.7 MB each, and a hundred of
/// them held at once (with their decoded copies) were tens of MiB of the embedded process's peak.
const BATCH_BYTES: i64 = 2 << 20;

/// Writes `env` for `key` to the outbox, inside the caller's database transaction `c`.
pub async fn stage(c: &impl ConnectionTrait, key: RoutingKey, env: &Envelope) -> Result<(), DbErr> {
    let envelope = serde_json::to_string(env)
        .map_err(|e| DbErr::Custom(format!("cannot encode the message for {key}: {e}")))?;
    outbox::ActiveModel {
        routing_key: Set(key.to_string()),
        envelope: Set(envelope),
        created: Set(Utc::now()),
        ..Default::default()
    }
    .insert(c)
    .await?;
    Ok(())
}

/// The handle a handler uses to wake its process's relay after a commit that staged messages.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the relay to publish what was just committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A relay of this outbox over `db`, publishing on `bus`.
    pub fn relay(&self, db: DatabaseConnection, bus: Arc<dyn Bus>) -> Relay {
        Relay {
            db,
            bus,
            wake: self.wake.clone(),
        }
    }
}

/// Publishes staged messages, in the order they were staged.
pub struct Relay {
    db: DatabaseConnection,
    bus: Arc<dyn Bus>,
    wake: Arc<Notify>,
}

impl Relay {
    /// Relays until `shutdown`: at start (rows a crash left), whenever woken, and every [`POLL`].
    /// A failed publish leaves its rows for the next attempt.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.drain().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(published = n, "outbox relayed"),
                Err(e) => tracing::warn!(error = %e, "outbox relay failed; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Publishes every staged row; returns how many were published.
    pub async fn drain(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let (n, more) = self.drain_batch().await?;
            total += n;
            if !more || n == 0 {
                return Ok(total);
            }
        }
    }

    /// Publishes the next rows, in order, up to [`BATCH`] rows and [`BATCH_BYTES`] bytes: how
    /// many were published, and whether more may be staged after them.
    async fn drain_batch(&self) -> anyhow::Result<(usize, bool)> {
        if self.db.get_database_backend() != DatabaseBackend::Postgres {
            // SQLite: one process, one relay. Each row is forgotten as soon as its message is
            // confirmed, outside any long transaction (a read transaction held across the
            // publishes could not be turned into the write that forgets them).
            let (ids, more) = next_ids(&self.db, false).await?;
            let rows = load(&self.db, ids).await?;
            let (done, failed) = self.publish(&rows).await;
            self.forget(&self.db, &done).await?;
            return failed.map_or(Ok((done.len(), more)), Err);
        }
        // PostgreSQL: the rows taken stay locked until forgotten, so another process's relay
        // skips them rather than publishing them too (the rows looked at but not taken are
        // released at the commit).
        let txn = self.db.begin().await?;
        let (ids, more) = next_ids(&txn, true).await?;
        let rows = load(&txn, ids).await?;
        let (done, failed) = self.publish(&rows).await;
        self.forget(&txn, &done).await?;
        txn.commit().await?;
        failed.map_or(Ok((done.len(), more)), Err)
    }

    /// Publishes `rows` in order until one fails: the ids of those confirmed, and the failure.
    async fn publish(&self, rows: &[outbox::Model]) -> (Vec<i64>, Option<anyhow::Error>) {
        let mut done = Vec::with_capacity(rows.len());
        for row in rows {
            let (key, env) = match decode(row) {
                Ok(m) => m,
                Err(e) => {
                    // Never published, never deleted: an operator can see (and fix) it.
                    tracing::error!(row = row.id, error = %e, "outbox row cannot be decoded");
                    continue;
                }
            };
            let context = key.to_string();
            nlds_hooks::pause_async(points::OUTBOX_BEFORE_PUBLISH, Path::new(&context)).await;
            // An in-process bus holds its queues in memory: wait while they are full (the rows
            // wait durably here instead).
            nlds_bus::wait_for_room(self.bus.as_ref(), None).await;
            if let Err(e) = self.bus.publish(key, &env).await {
                // What was confirmed so far is forgotten; the rest waits for the next attempt.
                return (done, Some(anyhow::anyhow!("cannot publish {key}: {e}")));
            }
            done.push(row.id);
        }
        (done, None)
    }

    async fn forget(&self, c: &impl ConnectionTrait, ids: &[i64]) -> Result<(), DbErr> {
        if ids.is_empty() {
            return Ok(());
        }
        outbox::Entity::delete_many()
            .filter(sea_orm::ColumnTrait::is_in(
                &outbox::Column::Id,
                ids.iter().copied(),
            ))
            .exec(c)
            .await?;
        Ok(())
    }
}

/// The ids of the next staged rows, in order: at most [`BATCH`] of them and, after the first,
/// only while their messages add up to at most [`BATCH_BYTES`]; and whether rows are left after
/// them. Only the ids and sizes are read here.
/// With `lock` (PostgreSQL), the rows looked at are locked, and rows another relay holds are
/// skipped.
async fn next_ids(c: &impl ConnectionTrait, lock: bool) -> Result<(Vec<i64>, bool), DbErr> {
    let mut q = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::Id)
        .column_as(
            sea_orm::sea_query::Expr::cust("CAST(length(envelope) AS BIGINT)"),
            "size",
        )
        .order_by_asc(outbox::Column::Id)
        .limit(BATCH);
    if lock {
        q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let sizes: Vec<(i64, i64)> = q.into_tuple().all(c).await?;
    let full = sizes.len() as u64 == BATCH;
    let mut ids = Vec::with_capacity(sizes.len());
    let mut bytes = 0i64;
    for (id, size) in &sizes {
        bytes = bytes.saturating_add(*size);
        if !ids.is_empty() && bytes > BATCH_BYTES {
            break;
        }
        ids.push(*id);
    }
    let more = full || ids.len() < sizes.len();
    Ok((ids, more))
}

/// The rows `ids`, in order.
async fn load(c: &impl ConnectionTrait, ids: Vec<i64>) -> Result<Vec<outbox::Model>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    outbox::Entity::find()
        .filter(sea_orm::ColumnTrait::is_in(&outbox::Column::Id, ids))
        .order_by_asc(outbox::Column::Id)
        .all(c)
        .await
}

/// The message a row holds.
fn decode(row: &outbox::Model) -> anyhow::Result<(RoutingKey, Envelope)> {
    let key: RoutingKey = row
        .routing_key
        .parse()
        .map_err(|e| anyhow::anyhow!("bad routing key {:?}: {e:?}", row.routing_key))?;
    let env: Envelope =
        serde_json::from_str(&row.envelope).map_err(|e| anyhow::anyhow!("bad envelope: {e}"))?;
    Ok((key, env))
}

/// Takes every staged message out of the outbox, in order (tests of the roles that stage).
#[cfg(test)]
pub(crate) async fn take(db: &DatabaseConnection) -> Vec<(RoutingKey, Envelope)> {
    let rows = outbox::Entity::find()
        .order_by_asc(outbox::Column::Id)
        .all(db)
        .await
        .expect("outbox rows");
    outbox::Entity::delete_many()
        .exec(db)
        .await
        .expect("outbox emptied");
    rows.iter()
        .map(|r| decode(r).expect("a staged message"))
        .collect()
}

#[cfg(test)]
mod tests;
