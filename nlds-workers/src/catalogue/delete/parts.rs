//! A delete whose paths came in chunks (`catalog.del` with [`Envelope::chunks`], docs/PROTOCOL.md
//! "Chunked requests"): the caller's chunks `0..chunks` of the transaction, then the request's
//! own paths as the last part, deleted part by part in **one database transaction**.
//!
//! Why one database transaction: a delete is then applied whole or not at all, whatever happens
//! between parts (a crash, a bad path in a later part, a lost connection roll everything back,
//! chunks included, and nothing of it is on record: its monitor messages are staged in the same
//! database transaction). The memory stays bounded all the same: one chunk's paths and files are
//! held at a time, and what is kept across parts is counts, the first file of each holding (what
//! the transaction is recorded under) and the first [`SHOWN`] failures of the answer. The price is
//! the database's: the write lock (SQLite) or the marked rows' locks (PostgreSQL) are held until
//! the last part is done, for at most `[server] max_request_paths` paths.
//!
//! Each part has a sub-record of its own ([`workflow::part_sub`]) with its counts and failed
//! paths, reported [`workflow::part_deleting`] as the part is deleted; once every part is done
//! every sub-record is given the delete's one end state, [`workflow::next`] on the outcome of the
//! whole delete, so the transaction ends as the same delete in one body would.
//!
//! A path listed in two parts is deleted once: a later part counts as live what an earlier part
//! of the same transaction deleted (so the newest version is still the one deleted, never the one
//! before it), and does not count it again.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use nlds_core::api::{DeletePlan, DeletedFile};
use nlds_core::message::HoldingFilter;
use nlds_core::versions::VersionSelect;
use nlds_core::workflow::{self, Effect, Step, Workflow};
use nlds_core::{Action, Envelope, ErrorCode, FailedFile, Payload, RoutingKey, Worker};
use sea_orm::sea_query::{Expr, ExprTrait, SimpleExpr};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::{
    Retention, deleted_file, forbidden, in_path_order, mark_files, may_delete, select_by_path,
};
use crate::catalogue::chunks::{delete_chunks, own_chunks, read_chunk};
use crate::catalogue::{Catalogue, Result, bad_request, holding_file_in, to_u64};
use crate::db::{file, holding};
use crate::outbox;

/// How many failures the answer of a delete in chunks lists (all of them are recorded with the
/// monitor, each with its part).
pub(crate) const SHOWN: usize = 100;

/// SQL: no version of the same path in the same holding newer than this `file` row is live, or
/// was deleted by the delete `tid` (the transaction being applied); as the highest such version
/// against this row's, for the reason `versions::NO_NEWER` gives. `tid` is written into the
/// statement: it is a UUID as `Uuid` displays it (hex digits and dashes only), never user text.
fn no_newer_before(tid: uuid::Uuid) -> SimpleExpr {
    Expr::cust(format!(
        r#"COALESCE((SELECT MAX("newer"."version") FROM "file" AS "newer" WHERE "newer"."holding_id" = "file"."holding_id" AND "newer"."path" = "file"."path" AND ("newer"."deleted_at" IS NULL OR "newer"."delete_transaction" = '{tid}')), 0) <= "file"."version""#
    ))
}

/// What the parts deleted so far add up to.
#[derive(Debug, Default)]
struct Totals {
    files: u64,
    bytes: u64,
    failed: u64,
    /// The first file deleted in each holding (what the transaction is recorded under).
    first: BTreeMap<i64, DeletedFile>,
    /// The first [`SHOWN`] failures (the answer lists no more; the monitor records them all).
    shown: Vec<FailedFile>,
}

impl Totals {
    /// The answer: the counts of every part, one file per holding, the first failures.
    fn plan(self, undelete_until: chrono::DateTime<Utc>) -> DeletePlan {
        DeletePlan {
            holdings: Vec::new(),
            files: self.first.into_values().collect(),
            files_total: self.files,
            bytes_total: self.bytes,
            failed: self.shown,
            undelete_until: Some(undelete_until),
            dry_run: false,
        }
    }
}

impl Catalogue {
    /// `catalog.del` of a delete whose paths came in `env.chunks` chunks, `last` being its own
    /// (the last part). See the module's documentation.
    pub(super) async fn delete_in_parts(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        last: &[String],
        regex: bool,
        dry_run: bool,
    ) -> Result<DeletePlan> {
        if regex || dry_run {
            return Err(bad_request(
                "a delete in chunks takes paths, and is no dry run: ask the dry run of each \
                 chunk on its own",
            ));
        }
        let now = Utc::now();
        let tid = env.transaction_id.to_string();
        let txn = self.db.begin().await?;
        // A retried delete (same transaction) answers with what it deleted the first time.
        if let Some(plan) = self.replay_parts(&txn, &tid, &env.user, now).await? {
            txn.rollback().await?;
            return Ok(plan);
        }
        own_chunks(&txn, env).await?;
        let holdings = self.candidates(&txn, env, filter, false).await?;
        let mut allowed: HashMap<i64, holding::Model> = HashMap::new();
        let mut refused: HashMap<i64, (holding::Model, String)> = HashMap::new();
        for h in holdings {
            match may_delete(env, &h) {
                Ok(()) => {
                    allowed.insert(h.id, h);
                }
                Err(why) => {
                    refused.insert(h.id, (h, why));
                }
            }
        }
        let named = filter.holding_id.is_some() || filter.label.is_some();
        if allowed.is_empty() && !refused.is_empty() && named {
            let why: Vec<&str> = refused.values().map(|(_, r)| r.as_str()).collect();
            return Err(forbidden(format!(
                "{} may not delete this: {}",
                env.user,
                why.join("; ")
            )));
        }
        let mut ids: Vec<i64> = allowed.keys().chain(refused.keys()).copied().collect();
        ids.sort_unstable();
        // The monitor messages of the parts carry no chunk count.
        let mut record = env.clone();
        record.chunks = 0;
        let parts = env.chunks + u32::from(!last.is_empty());
        let mut totals = Totals::default();
        for part in 0..parts {
            let paths = if part < env.chunks {
                read_chunk(&txn, &tid, part).await?
            } else {
                last.to_vec()
            };
            let (matched, unmatched) =
                select_part(&txn, &ids, &paths, &filter.versions, env.transaction_id).await?;
            drop(paths);
            let mut failed = Vec::new();
            let mut marked = Vec::new();
            let mut bytes = 0;
            for m in matched {
                if m.delete_transaction.as_deref() == Some(tid.as_str()) {
                    // Deleted by an earlier part, and counted there.
                    continue;
                }
                if let Some(h) = allowed.get(&m.holding_id) {
                    bytes += to_u64(m.size);
                    totals
                        .first
                        .entry(h.id)
                        .or_insert_with(|| deleted_file(&m, h));
                    marked.push(m.id);
                } else if let Some((_, why)) = refused.get(&m.holding_id) {
                    failed.push(FailedFile::new(
                        &m.path,
                        ErrorCode::Forbidden,
                        format!("{}: {why}", m.path),
                    ));
                }
            }
            for p in unmatched {
                failed.push(FailedFile::new(
                    &p,
                    ErrorCode::NotFound,
                    format!("{p} is in none of the holdings you can delete from"),
                ));
            }
            mark_files(&txn, &marked, Some((now, &env.user, &tid))).await?;
            totals.files += marked.len() as u64;
            totals.bytes += bytes;
            totals.failed += failed.len() as u64;
            let room = SHOWN.saturating_sub(totals.shown.len());
            totals.shown.extend(failed.iter().take(room).cloned());
            outbox::stage(
                &txn,
                RoutingKey::new(Worker::MonitorPut, Action::Start),
                &record.with_sub(
                    workflow::part_sub(env.transaction_id, part),
                    Payload::MonitorUpdate {
                        state: workflow::part_deleting(),
                        files: marked.len() as u64 + failed.len() as u64,
                        bytes,
                        failed,
                        warnings: Vec::new(),
                        versions: 0,
                    },
                ),
            )
            .await?;
        }
        let plan = totals.plan(now + self.delete.retention());
        delete_chunks(&txn, &tid).await?;
        let messages = ended(&record, filter, &plan, parts);
        self.commit_with(txn, messages).await?;
        tracing::info!(transaction_id = %env.transaction_id, user = %env.user,
            role = %env.role, parts, files = plan.files_total, "deleted (soft) in parts");
        Ok(plan)
    }

    /// The answer of a delete in parts that already ran, if it did, from counts (never a list
    /// of every file): only the caller's own deletions count, as in `replay`.
    async fn replay_parts(
        &self,
        c: &DatabaseTransaction,
        tid: &str,
        user: &str,
        now: chrono::DateTime<Utc>,
    ) -> Result<Option<DeletePlan>> {
        let per_holding: Vec<(i64, i64, i64)> = file::Entity::find()
            .select_only()
            .column(file::Column::HoldingId)
            .column_as(Expr::cust(r#"COUNT(*)"#), "n")
            .column_as(
                Expr::cust(r#"CAST(COALESCE(SUM("size"), 0) AS BIGINT)"#),
                "b",
            )
            .filter(file::Column::DeleteTransaction.eq(tid))
            .filter(file::Column::DeletedBy.eq(user))
            .group_by(file::Column::HoldingId)
            .order_by(file::Column::HoldingId, sea_orm::Order::Asc)
            .into_tuple()
            .all(c)
            .await?;
        if per_holding.is_empty() {
            return Ok(None);
        }
        let mut totals = Totals::default();
        let mut when = now;
        for (holding_id, n, b) in per_holding {
            totals.files += to_u64(n);
            totals.bytes += to_u64(b);
            let first = file::Entity::find()
                .filter(file::Column::HoldingId.eq(holding_id))
                .filter(file::Column::DeleteTransaction.eq(tid))
                .order_by(file::Column::Path, sea_orm::Order::Asc)
                .one(c)
                .await?;
            let h = holding::Entity::find_by_id(holding_id).one(c).await?;
            if let (Some(f), Some(h)) = (first, h) {
                when = std::cmp::min(when, f.deleted_at.unwrap_or(now));
                totals.first.insert(holding_id, deleted_file(&f, &h));
            }
        }
        Ok(Some(totals.plan(when + self.delete.retention())))
    }
}

/// The messages that end a delete in `parts` parts, staged when the last part is done: its
/// record with the monitor (under the holding it acted on), then the one end state of the whole
/// delete ([`workflow::next`] after [`Step::CatalogDelete`]) for every part, counts and failures
/// having gone with each part's own update.
fn ended(
    env: &Envelope,
    filter: &HoldingFilter,
    plan: &DeletePlan,
    parts: u32,
) -> Vec<(RoutingKey, Envelope)> {
    let (holding_id, label) = plan.transaction_holding(filter.holding_id, filter.label.clone());
    let mut out = vec![(
        RoutingKey::new(Worker::MonitorPut, Action::Init),
        env.reply(Payload::MonitorInit { label, holding_id }),
    )];
    let effects = workflow::next(
        Workflow::Delete,
        Step::CatalogDelete,
        workflow::delete_outcome(plan),
    )
    .unwrap_or_default();
    for effect in effects {
        if let Effect::Report(state) = effect {
            for part in 0..parts {
                out.push((
                    RoutingKey::new(Worker::MonitorPut, Action::Start),
                    env.with_sub(
                        workflow::part_sub(env.transaction_id, part),
                        Payload::MonitorUpdate {
                            state,
                            files: 0,
                            bytes: 0,
                            failed: Vec::new(),
                            warnings: Vec::new(),
                            versions: 0,
                        },
                    ),
                ));
            }
        }
    }
    out
}

/// The live files of holdings `ids` that one part's `paths` select, as `select_files` does for
/// a delete in one body ([`select_by_path`]), counting as live the files the delete `tid` itself
/// deleted in an earlier part; and the paths that select nothing.
async fn select_part(
    c: &DatabaseTransaction,
    ids: &[i64],
    paths: &[String],
    versions: &VersionSelect,
    env_tid: uuid::Uuid,
) -> Result<(Vec<file::Model>, Vec<String>)> {
    let tid = env_tid.to_string();
    if paths.iter().any(|p| p.trim().is_empty()) {
        return Err(bad_request("a path must not be empty"));
    }
    if ids.is_empty() {
        return Ok((Vec::new(), paths.to_vec()));
    }
    let live = file::Column::DeletedAt
        .is_null()
        .or(file::Column::DeleteTransaction.eq(tid.as_str()));
    let version: SimpleExpr = match versions {
        VersionSelect::Newest => no_newer_before(env_tid),
        other => crate::catalogue::versions::selected(other),
    };
    let base = || {
        file::Entity::find()
            .filter(holding_file_in(ids))
            .filter(live.clone())
            .filter(version.clone())
    };
    let mut matched = BTreeMap::new();
    let unmatched = select_by_path(c, base, paths, &mut matched).await?;
    Ok((in_path_order(matched), unmatched))
}

#[cfg(test)]
#[path = "parts_tests.rs"]
mod tests;
