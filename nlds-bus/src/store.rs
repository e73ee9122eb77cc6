//! The durable store of the in-process bus: its queues as rows of `bus_message` (migration
//! 000013) in the embedded process's SQLite database, written on that process's one connection
//! (a second connection to the file would contend for SQLite's write lock; see ARCHITECTURE.md,
//! "Where state lives").
//!
//! A row is one message for one queue: stored before `publish` returns, deleted by the
//! acknowledgement of its delivery in the same database transaction that stores what its handler
//! published, marked dead (`dead_reason`) with the failure report that goes with it, or given a
//! later `not_before` and a higher attempt when it is retried.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait, Value,
};
use uuid::Uuid;

use crate::memory::DeadLetter;

/// A message to store for one queue.
pub(crate) struct NewRow<'a> {
    pub queue: String,
    pub key: &'a str,
    pub body: &'a [u8],
    pub not_before: i64,
    pub transaction: Option<Uuid>,
}

/// A stored message that was not acknowledged.
pub(crate) struct Pending {
    pub id: i64,
    pub queue: String,
    pub key: String,
    pub body: Vec<u8>,
    pub attempt: u32,
    /// Unix milliseconds.
    pub not_before: i64,
}

/// What becomes of the delivery being settled, in the database transaction that stores the
/// messages its handler published.
#[derive(Debug)]
pub(crate) enum Settle {
    /// Nothing (a publish, or an RPC request, which is never stored).
    Nothing,
    /// Acknowledged: the row goes.
    Ack(i64),
    /// Dead-lettered with this reason: the row stays, marked.
    Dead(i64, String),
}

#[derive(Clone)]
pub(crate) struct Store {
    db: DatabaseConnection,
}

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

const INSERT: &str = "INSERT INTO bus_message \
    (queue, routing_key, body, attempt, not_before, transaction_id, dead_reason) \
    VALUES (?, ?, ?, 1, ?, ?, NULL)";

impl Store {
    /// The store on `db`, which must be SQLite with the migrations applied.
    pub fn new(db: DatabaseConnection) -> Result<Self, String> {
        if db.get_database_backend() != DbBackend::Sqlite {
            return Err("the durable in-process bus keeps its queues in SQLite only".into());
        }
        Ok(Self { db })
    }

    /// Stores `rows` and settles the delivery, in one database transaction; returns the rows'
    /// ids in order.
    pub async fn write(&self, rows: &[NewRow<'_>], settle: &Settle) -> Result<Vec<i64>, DbErr> {
        let statements = rows.len() + usize::from(!matches!(settle, Settle::Nothing));
        if statements <= 1 {
            return write_on(&self.db, rows, settle).await;
        }
        let txn = self.db.begin().await?;
        let ids = write_on(&txn, rows, settle).await?;
        txn.commit().await?;
        Ok(ids)
    }

    /// Records that delivery `id` failed and is tried again (attempt `attempt`) at `not_before`.
    pub async fn retry(&self, id: i64, attempt: u32, not_before: i64) -> Result<(), DbErr> {
        self.db
            .execute_raw(stmt(
                "UPDATE bus_message SET attempt = ?, not_before = ? WHERE id = ?",
                vec![attempt.into(), not_before.into(), id.into()],
            ))
            .await?;
        Ok(())
    }

    /// Every message not acknowledged and not dead, in publishing order.
    pub async fn pending(&self) -> Result<Vec<Pending>, DbErr> {
        let rows = self
            .db
            .query_all_raw(stmt(
                "SELECT id, queue, routing_key, body, attempt, not_before FROM bus_message \
                 WHERE dead_reason IS NULL ORDER BY id",
                vec![],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Pending {
                    id: r.try_get("", "id")?,
                    queue: r.try_get("", "queue")?,
                    key: r.try_get("", "routing_key")?,
                    body: r.try_get("", "body")?,
                    attempt: r.try_get::<i64>("", "attempt")?.clamp(1, u32::MAX.into()) as u32,
                    not_before: r.try_get("", "not_before")?,
                })
            })
            .collect()
    }

    /// The dead letters kept, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, DbErr> {
        let rows = self
            .db
            .query_all_raw(stmt(
                "SELECT queue, routing_key, body, dead_reason FROM bus_message \
                 WHERE dead_reason IS NOT NULL ORDER BY id",
                vec![],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    queue: r.try_get("", "queue")?,
                    key: r.try_get("", "routing_key")?,
                    reason: r.try_get("", "dead_reason")?,
                    data: r.try_get("", "body")?,
                })
            })
            .collect()
    }
}

async fn write_on(
    c: &impl ConnectionTrait,
    rows: &[NewRow<'_>],
    settle: &Settle,
) -> Result<Vec<i64>, DbErr> {
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        let r = c
            .execute_raw(stmt(
                INSERT,
                vec![
                    row.queue.clone().into(),
                    row.key.into(),
                    row.body.to_vec().into(),
                    row.not_before.into(),
                    row.transaction.map(|t| t.to_string()).into(),
                ],
            ))
            .await?;
        ids.push(r.last_insert_id() as i64);
    }
    match settle {
        Settle::Nothing => {}
        Settle::Ack(id) => {
            c.execute_raw(stmt(
                "DELETE FROM bus_message WHERE id = ?",
                vec![(*id).into()],
            ))
            .await?;
        }
        Settle::Dead(id, reason) => {
            c.execute_raw(stmt(
                "UPDATE bus_message SET dead_reason = ? WHERE id = ?",
                vec![reason.clone().into(), (*id).into()],
            ))
            .await?;
        }
    }
    Ok(ids)
}

/// The transactions that still have a message waiting in the in-process bus's store (not dead):
/// the embedded process resumes them at start (start-up recovery asks).
pub async fn transactions_in_flight(c: &impl ConnectionTrait) -> Result<Vec<Uuid>, DbErr> {
    let rows = c
        .query_all_raw(Statement::from_string(
            c.get_database_backend(),
            "SELECT DISTINCT transaction_id FROM bus_message \
             WHERE dead_reason IS NULL AND transaction_id IS NOT NULL",
        ))
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<String>("", "transaction_id").ok())
        .filter_map(|t| Uuid::parse_str(&t).ok())
        .collect())
}
