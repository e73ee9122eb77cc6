//! Puts, gets and deletes whose paths come in chunks: `catalog.append` stores each chunk durably
//! (table `request_paths`, one row per chunk); the request itself (`catalog.setup`,
//! `catalog.get`, `catalog.del`) names how many chunks it has ([`Envelope::chunks`]). When a put
//! or get is accepted the catalogue stages one submission per chunk in its outbox and deletes the
//! chunks, in the acceptance's database transaction; a delete reads them one at a time as it
//! deletes ([`own_chunks`], [`read_chunk`]; `delete/parts.rs`). No message, and no process, ever holds the whole list: each chunk is
//! read, staged and dropped in turn.
//!
//! Each chunk is a part of the transaction with a sub-record of its own
//! ([`workflow::part_sub`]); the later parts are registered with the monitor
//! ([`workflow::part_queued`]) before any part is submitted, so the transaction cannot look
//! finished while a part is still on its way to being split into batches.
//!
//! Chunks of a request that never starts are deleted once the newest of them is older than
//! `[workers.index] unfinished_request_secs` (at every append and every archive round).

use chrono::{Duration, Utc};
use nlds_core::api::{ApiAction, too_many_paths};
use nlds_core::message::RpcReply;
use nlds_core::workflow::{self, submission_key};
use nlds_core::{Action, Envelope, Payload, RoutingKey, Worker};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QuerySelect, TransactionTrait,
};

use super::{Catalogue, Result};
use crate::db::{bad_request, conflict, internal, request_paths, submission};
use crate::outbox;

/// The request a chunk may belong to.
fn chunked_action(action: ApiAction) -> Result<()> {
    match action {
        ApiAction::Putlist | ApiAction::Getlist | ApiAction::Dellist => Ok(()),
        other => Err(bad_request(format!(
            "paths come in chunks only for putlist, getlist and dellist, not {}",
            other.as_str()
        ))),
    }
}

impl Catalogue {
    /// How long the chunks of a request that has not started are kept.
    pub fn with_unfinished_request_secs(mut self, secs: u64) -> Self {
        self.unfinished_request_secs = secs;
        self
    }

    /// `catalog.append`: stores (or replaces) chunk `part` of `env`'s request.
    pub(super) async fn append(
        &self,
        env: &Envelope,
        part: u32,
        paths: &[String],
        max_total: u64,
    ) -> Result<RpcReply> {
        chunked_action(env.action)?;
        self.expire_chunks().await?;
        let tid = env.transaction_id.to_string();
        let now = Utc::now();
        let txn = self.db.begin().await?;
        // Written first: the request is as fresh as its newest chunk (none of it expires before
        // the rest), and on SQLite the transaction takes the write lock before it reads, so it
        // waits for another writer instead of failing to upgrade a read.
        request_paths::Entity::update_many()
            .col_expr(
                request_paths::Column::Created,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(request_paths::Column::TransactionId.eq(&tid))
            .exec(&txn)
            .await?;
        if submission::Entity::find_by_id(tid.clone())
            .one(&txn)
            .await?
            .is_some()
        {
            return Err(conflict(format!(
                "transaction {tid} has already started: its paths cannot change (send the \
                 chunks of a new request under a new transaction id)"
            )));
        }
        let others: Vec<(i64, String, String, String, i64)> = request_paths::Entity::find()
            .select_only()
            .column(request_paths::Column::Part)
            .column(request_paths::Column::User)
            .column(request_paths::Column::Group)
            .column(request_paths::Column::ApiAction)
            .column(request_paths::Column::Count)
            .filter(request_paths::Column::TransactionId.eq(&tid))
            .into_tuple()
            .all(&txn)
            .await?;
        if others
            .iter()
            .any(|(_, u, g, a, _)| *u != env.user || *g != env.group || a != env.action.as_str())
        {
            return Err(conflict(format!(
                "transaction id {tid} is already in use: choose another transaction id"
            )));
        }
        let part = i64::from(part);
        let before: i64 = others
            .iter()
            .filter(|(p, ..)| *p != part)
            .map(|(.., n)| *n)
            .sum();
        let total = super::to_u64(before) + paths.len() as u64;
        if total > max_total {
            return Err(too_many_paths(total, max_total).into());
        }
        let encoded = serde_json::to_string(paths)
            .map_err(|e| internal(format!("cannot encode the chunk: {e}")))?;
        request_paths::Entity::insert(request_paths::ActiveModel {
            transaction_id: Set(tid.clone()),
            part: Set(part),
            user: Set(env.user.clone()),
            group: Set(env.group.clone()),
            api_action: Set(env.action.as_str().to_owned()),
            paths: Set(encoded),
            count: Set(paths.len() as i64),
            created: Set(now),
        })
        .on_conflict(
            OnConflict::columns([
                request_paths::Column::TransactionId,
                request_paths::Column::Part,
            ])
            .update_columns([
                request_paths::Column::Paths,
                request_paths::Column::Count,
                request_paths::Column::Created,
            ])
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        let parts = others.iter().filter(|(p, ..)| *p != part).count() as u32 + 1;
        Ok(RpcReply::Appended {
            parts,
            paths: total,
        })
    }

    /// Deletes the chunks of requests that did not start within `unfinished_request_secs` of
    /// their newest chunk; returns how many chunks went.
    pub(crate) async fn expire_chunks(&self) -> Result<u64> {
        let secs = i64::try_from(self.unfinished_request_secs).unwrap_or(i64::MAX);
        let cutoff = Utc::now() - Duration::try_seconds(secs).unwrap_or(Duration::MAX);
        let gone = request_paths::Entity::delete_many()
            .filter(request_paths::Column::Created.lt(cutoff))
            .exec(&self.db)
            .await?
            .rows_affected;
        if gone > 0 {
            tracing::info!(
                chunks = gone,
                "deleted the chunks of requests that never started"
            );
        }
        Ok(gone)
    }
}

/// Stages, in `txn`, the first messages of the accepted request `env` whose paths came in
/// `env.chunks` chunks: its record with the monitor, the registration of every later part, then
/// one submission per part carrying `payload(paths of the part)`; the chunks are deleted. Every
/// chunk must be there (the caller's, for this action); else nothing is staged.
pub(super) async fn stage_chunked(
    txn: &DatabaseTransaction,
    env: &Envelope,
    payload: impl Fn(Vec<String>) -> Payload,
    label: Option<String>,
    holding_id: Option<i64>,
) -> Result<()> {
    chunked_action(env.action)?;
    let key = submission_key(env.action).ok_or_else(|| {
        bad_request(format!(
            "a {} transaction is not submitted to the router",
            env.action.as_str()
        ))
    })?;
    let tid = env.transaction_id.to_string();
    let stored: Vec<(i64, String, String, String)> = request_paths::Entity::find()
        .select_only()
        .column(request_paths::Column::Part)
        .column(request_paths::Column::User)
        .column(request_paths::Column::Group)
        .column(request_paths::Column::ApiAction)
        .filter(request_paths::Column::TransactionId.eq(&tid))
        .into_tuple()
        .all(txn)
        .await?;
    if stored
        .iter()
        .any(|(_, u, g, a)| *u != env.user || *g != env.group || a != env.action.as_str())
    {
        return Err(conflict(format!(
            "transaction id {tid} is already in use: choose another transaction id"
        )));
    }
    let chunks = i64::from(env.chunks);
    let complete = stored.len() as i64 == chunks && stored.iter().all(|(p, ..)| *p < chunks);
    if !complete {
        return Err(bad_request(format!(
            "transaction {tid} names {chunks} chunks of paths but {} of them are stored: send \
             every chunk (POST /api/v2/paths, parts 0 to {}) before the request; chunks of a \
             request that does not start are deleted after a while",
            stored.len(),
            chunks - 1
        )));
    }
    let mut submit = env.clone();
    submit.chunks = 0;
    outbox::stage(
        txn,
        RoutingKey::new(Worker::MonitorPut, Action::Init),
        &submit.reply(Payload::MonitorInit { label, holding_id }),
    )
    .await?;
    for part in 1..env.chunks {
        outbox::stage(
            txn,
            RoutingKey::new(Worker::MonitorPut, Action::Start),
            &submit.with_sub(
                workflow::part_sub(env.transaction_id, part),
                Payload::MonitorUpdate {
                    state: workflow::part_queued(),
                    files: 0,
                    bytes: 0,
                    failed: Vec::new(),
                    warnings: Vec::new(),
                    versions: 0,
                },
            ),
        )
        .await?;
    }
    for part in 0..env.chunks {
        let row = request_paths::Entity::find_by_id((tid.clone(), i64::from(part)))
            .one(txn)
            .await?
            .ok_or_else(|| internal(format!("chunk {part} of {tid} vanished")))?;
        let paths: Vec<String> = serde_json::from_str(&row.paths).map_err(|e| {
            internal(format!(
                "chunk {part} of transaction {tid} is not a list of paths: {e}"
            ))
        })?;
        drop(row);
        outbox::stage(
            txn,
            key,
            &submit.with_sub(workflow::part_sub(env.transaction_id, part), payload(paths)),
        )
        .await?;
    }
    delete_chunks(txn, &tid).await
}

/// Checks that chunks `0..env.chunks` of `env`'s transaction are all stored, each of them
/// `env.user`'s in `env.group` for `env.action`. Anything else (a chunk missing, or chunks of
/// another user, group or action under that id) is the same not found, naming nothing but the
/// transaction id the caller gave, so a caller learns nothing of anyone else's chunks.
pub(super) async fn own_chunks(txn: &DatabaseTransaction, env: &Envelope) -> Result<()> {
    chunked_action(env.action)?;
    let tid = env.transaction_id.to_string();
    let chunks = i64::from(env.chunks);
    let own: Vec<i64> = request_paths::Entity::find()
        .select_only()
        .column(request_paths::Column::Part)
        .filter(request_paths::Column::TransactionId.eq(&tid))
        .filter(request_paths::Column::User.eq(&env.user))
        .filter(request_paths::Column::Group.eq(&env.group))
        .filter(request_paths::Column::ApiAction.eq(env.action.as_str()))
        .filter(request_paths::Column::Part.lt(chunks))
        .into_tuple()
        .all(txn)
        .await?;
    if own.len() as i64 != chunks {
        return Err(nlds_core::error::ApiError::not_found(format!(
            "transaction {tid} names {chunks} chunks of paths, of which {} of yours are stored: \
             send every chunk (POST /api/v2/paths, api_action {}, parts 0 to {}) before the \
             request; chunks of a request that does not start are deleted after a while",
            own.len(),
            env.action.as_str(),
            chunks - 1
        ))
        .into());
    }
    Ok(())
}

/// The paths of chunk `part` of transaction `tid` (checked by [`own_chunks`] first).
pub(super) async fn read_chunk(
    txn: &DatabaseTransaction,
    tid: &str,
    part: u32,
) -> Result<Vec<String>> {
    let row = request_paths::Entity::find_by_id((tid.to_owned(), i64::from(part)))
        .one(txn)
        .await?
        .ok_or_else(|| internal(format!("chunk {part} of {tid} vanished")))?;
    serde_json::from_str(&row.paths).map_err(|e| {
        internal(format!(
            "chunk {part} of transaction {tid} is not a list of paths: {e}"
        ))
    })
}

pub(super) async fn delete_chunks(c: &impl ConnectionTrait, tid: &str) -> Result<()> {
    request_paths::Entity::delete_many()
        .filter(request_paths::Column::TransactionId.eq(tid))
        .exec(c)
        .await?;
    Ok(())
}
