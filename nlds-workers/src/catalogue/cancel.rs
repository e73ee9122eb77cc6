//! Cancelling a transaction (`catalog.cancel`, docs/CANCEL.md) and the check every step of the
//! catalogue makes before it works for a transaction.
//!
//! The catalogue accepted every put and get (its `submission` row), and every batch of one
//! passes through it before anything is stored or restored (catalog-check, catalog-put,
//! catalog-get, a recall's waiting list). So the cancel is recorded there, on the submission, and
//! each of those steps ends a cancelled transaction's batch instead of doing it:
//! * catalog-check: the batch goes no further (nothing uploaded);
//! * catalog-put: nothing is catalogued and the batch's uploaded objects are removed
//!   (`transfer-del.start`, through the last-copy guard);
//! * catalog-get: nothing is resolved (nothing restored);
//! * a batch waiting for a recall is ended by the cancel itself, in its database transaction.
//!
//! Each such batch ends CANCELLED ([`nlds_core::workflow::cancelled`]) with its files reported
//! as failed with code `cancelled`; the transaction is CANCELLED once none runs any more. What a
//! step did before the cancel stays done. The cancel and the checks of catalog-put and of a get
//! joining a recall take the submission row's lock (PostgreSQL; SQLite has one writer), so a
//! batch is either catalogued before the cancel or not at all, and no batch starts waiting for a
//! recall after the cancel ended the waiting ones.

use std::collections::HashMap;

use chrono::Utc;
use nlds_bus::Outcome;
use nlds_core::message::RpcReply;
use nlds_core::workflow;
use nlds_core::{Action, Envelope, ErrorCode, FailedFile, FileRecord, Payload, RoutingKey, Worker};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};

use super::access::stage_waiter;
use super::{Catalogue, Result, guard};
use crate::db::{conflict, file, recall_request, submission};

/// Whether `env`'s transaction was cancelled. With `lock`, the submission row stays locked
/// (shared) until `c`'s database transaction ends, so a cancel waits for it.
pub(super) async fn is_cancelled(
    c: &impl ConnectionTrait,
    env: &Envelope,
    lock: bool,
) -> Result<bool> {
    let mut q = submission::Entity::find_by_id(env.transaction_id.to_string());
    if lock {
        q = q.lock_shared();
    }
    Ok(q.one(c).await?.is_some_and(|s| s.cancelled_at.is_some()))
}

/// The files of a batch a cancel stopped, as failed with code `cancelled`.
pub(super) fn cancelled_files<'a>(
    paths: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> Vec<FailedFile> {
    paths
        .into_iter()
        .map(|p| {
            FailedFile::new(
                p,
                ErrorCode::Cancelled,
                format!("cancelled: {p} was not {what} (its transaction was cancelled)"),
            )
        })
        .collect()
}

/// The monitor update that ends `env`'s batch as cancelled, with `failed` its files.
pub(super) fn cancelled_update(env: &Envelope, failed: Vec<FailedFile>) -> (RoutingKey, Envelope) {
    (
        RoutingKey::new(Worker::MonitorPut, Action::Start),
        env.reply(Payload::MonitorUpdate {
            state: workflow::cancelled(),
            files: 0,
            bytes: 0,
            failed,
            warnings: Vec::new(),
            versions: 0,
        }),
    )
}

impl Catalogue {
    /// `catalog.cancel`: records that the envelope's transaction is cancelled (once: a second
    /// cancel changes nothing) and ends, in the same database transaction, the batches of it
    /// that wait for a recall. The caller's right to cancel it was checked by the API.
    pub(super) async fn cancel(&self, env: &Envelope) -> Result<RpcReply> {
        let tid = env.transaction_id;
        let txn = self.db.begin().await?;
        let Some(sub) = submission::Entity::find_by_id(tid.to_string())
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
            return Err(conflict(format!(
                "transaction {tid} is not a put or get the catalogue runs: nothing to cancel"
            )));
        };
        let first = sub.cancelled_at.is_none();
        if first {
            submission::Entity::update(submission::ActiveModel {
                transaction_id: Set(sub.transaction_id.clone()),
                cancelled_at: Set(Some(Utc::now())),
                cancelled_by: Set(Some(env.user.clone())),
                ..Default::default()
            })
            .exec(&txn)
            .await?;
        }
        // The get batches of this transaction waiting for a recall (stages wait too, under a
        // requester of their own: not this transaction's). The table holds only what waits now.
        let mut waiting = Vec::new();
        for req in recall_request::Entity::find().all(&txn).await? {
            if stage_waiter(&req.sub_id).is_some() {
                continue;
            }
            let Ok(batch) = serde_json::from_str::<Envelope>(&req.envelope) else {
                continue;
            };
            if batch.transaction_id == tid {
                let ids: Vec<i64> = serde_json::from_str(&req.file_ids).unwrap_or_default();
                waiting.push((req.id, batch, ids));
            }
        }
        let ids: Vec<i64> = waiting.iter().flat_map(|w| w.2.iter().copied()).collect();
        let paths: HashMap<i64, String> = if ids.is_empty() {
            HashMap::new()
        } else {
            file::Entity::find()
                .select_only()
                .column(file::Column::Id)
                .column(file::Column::Path)
                .filter(file::Column::Id.is_in(ids))
                .into_tuple::<(i64, String)>()
                .all(&txn)
                .await?
                .into_iter()
                .collect()
        };
        let mut messages = Vec::with_capacity(waiting.len());
        for (id, batch, ids) in &waiting {
            recall_request::Entity::delete_by_id(*id).exec(&txn).await?;
            let names = ids.iter().filter_map(|i| paths.get(i)).map(String::as_str);
            messages.push(cancelled_update(
                batch,
                cancelled_files(names, "recalled from tape"),
            ));
        }
        let n = messages.len() as u64;
        self.commit_with(txn, messages).await?;
        if first {
            tracing::info!(transaction_id = %tid, user = %env.user, waiting = n, "transaction cancelled");
        }
        Ok(RpcReply::Cancelled { first, waiting: n })
    }

    /// Ends a put batch whose transaction was cancelled after its objects were uploaded: nothing
    /// catalogued, the objects removed (those no live file counts on: the last-copy guard).
    pub(super) async fn cancelled_put(
        &self,
        env: &Envelope,
        holding_id: i64,
        files: &[FileRecord],
    ) -> Result<Outcome> {
        let failed = cancelled_files(files.iter().map(|f| f.path.as_str()), "catalogued");
        let (k, e) = cancelled_update(env, failed);
        let mut out = Outcome::publish(k, e);
        let to_delete = guard::removable_uploads(&self.db, files.to_vec()).await?;
        if !to_delete.is_empty() {
            out = out.and(
                RoutingKey::new(Worker::TransferDel, Action::Start),
                env.reply(Payload::Files {
                    context: Vec::new(),
                    failed: Vec::new(),
                    holding_id: Some(holding_id),
                    files: to_delete,
                    target: None,
                    overwrite: false,
                }),
            );
        }
        Ok(out)
    }
}
