//! The catalogue's side of recalls (cold → warm) and of evicting warm copies.
//!
//! A get of files whose only copy is cold registers, per aggregation, a `recall_request` (the get
//! batch's envelope and file ids) under the aggregation's single `recall` row. Only the request
//! that creates the recall sends `archive-get.start`: concurrent gets of members of one aggregate
//! share one stage. When archive-get reports the members restored, the catalogue records their
//! warm copies and resumes every waiting batch as a `catalog-get.complete` (the normal get
//! continues with transfer-get); when it reports a failure, every waiting batch fails with the
//! reason.
//!
//! Evicting (`catalog.evict`) drops a holding's warm copies, but only of files whose cold copy is
//! in a stored (written and verified) aggregation: the last verified copy is never dropped (the
//! last-copy guard, `catalogue::guard::guard_removals`, decides).

use nlds_core::api::Tier;
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::Utc;
use nlds_bus::Outcome;
use nlds_core::message::{AggregateSums, ObjectRef, RecallMember, RestoredFile};
use nlds_core::workflow::recall::{self as phases, RecallPhase};
use nlds_core::workflow::{Step, Workflow};
use nlds_core::{
    Action, Envelope, ErrorCode, FailedFile, FileRecord, Payload, RoutingKey, State, Worker,
};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::access::stage_waiter;
use super::context::RestoreDirs;
use super::guard::{Removal, guard_removals};
use super::{BLAKE3, CHUNK, Catalogue, Result, load_copies, parse_uuid, record, to_u32, to_u64};
use crate::db::{
    aggregation, aggregation_member, checksum, file, location, pin, recall, recall_request,
    stage_file, transaction,
};

/// The sub id of a get batch waiting for an aggregation: `parent` is the get's sub-record (its
/// transaction id, or one part of a get whose paths came in chunks).
pub fn recall_sub(parent: Uuid, aggregation_id: i64) -> Uuid {
    Uuid::new_v5(&parent, format!("recall/{aggregation_id}").as_bytes())
}

/// Adds a waiter to the aggregation's recall, creating the recall if none is running: `waiter`
/// names it (a get batch's sub id, or a stage's requester, see [`super::access::stage_requester`]),
/// `waiting` is the envelope it resumes with and `ids` the files it waits for. Returns whether
/// the recall was created (its `archive-get.start` is then to be sent). Idempotent.
pub(super) async fn join_recall(
    txn: &DatabaseTransaction,
    agg: &aggregation::Model,
    waiter: &str,
    waiting: &Envelope,
    ids: &[i64],
) -> Result<bool> {
    let created = recall::Entity::insert(recall::ActiveModel {
        aggregation_id: Set(agg.id),
        created: Set(Utc::now()),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(recall::Column::AggregationId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?
        > 0;
    let r = recall::Entity::find()
        .filter(recall::Column::AggregationId.eq(agg.id))
        .one(txn)
        .await?
        .ok_or_else(|| super::internal(format!("recall of {} vanished", agg.name)))?;
    recall_request::Entity::insert(recall_request::ActiveModel {
        recall_id: Set(r.id),
        sub_id: Set(waiter.to_owned()),
        envelope: Set(String::from_utf8_lossy(&waiting.to_json()).into_owned()),
        file_ids: Set(serde_json::to_string(ids).unwrap_or_default()),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([
            recall_request::Column::RecallId,
            recall_request::Column::SubId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(created)
}

impl Catalogue {
    /// Registers the get's files that only have cold copies (grouped by aggregation name) and
    /// starts the recalls that are not running yet. Returns what to publish, and the files that
    /// cannot be recalled.
    pub(super) async fn register_recalls(
        &self,
        env: &Envelope,
        by_aggregate: BTreeMap<String, Vec<file::Model>>,
        target: &Option<String>,
        overwrite: bool,
        dirs: &RestoreDirs,
    ) -> Result<(Outcome, Vec<FailedFile>)> {
        let mut out = Outcome::none();
        let mut failed = Vec::new();
        for (name, files) in by_aggregate {
            let Some(agg) = aggregation::Entity::find()
                .filter(aggregation::Column::Name.eq(&name))
                .filter(aggregation::Column::State.eq(aggregation::State::Stored))
                .one(&self.db)
                .await?
            else {
                failed.extend(files.iter().map(|m| {
                    FailedFile::new(
                        &m.path,
                        ErrorCode::StorageError,
                        format!("{}: its cold copy (aggregate {name}) is not stored", m.path),
                    )
                }));
                continue;
            };
            let sub = recall_sub(env.sub_id, agg.id);
            let waiting = env.with_sub(
                sub,
                Payload::Files {
                    holding_id: None,
                    files: Vec::new(),
                    target: target.clone(),
                    overwrite,
                    failed: Vec::new(),
                    // What the recalled files' batch will need (see `resume`).
                    context: dirs.context(files.iter().map(|m| m.path.as_str())),
                },
            );
            let ids: Vec<i64> = files.iter().map(|m| m.id).collect();
            let txn = self.db.begin().await?;
            // No batch starts waiting after a cancel ended the waiting ones.
            if super::cancel::is_cancelled(&txn, env, true).await? {
                txn.rollback().await?;
                let names = files.iter().map(|m| m.path.as_str());
                let (k, e) = super::cancel::cancelled_update(
                    &waiting,
                    super::cancel::cancelled_files(names, "recalled from tape"),
                );
                out = out.and(k, e);
                continue;
            }
            let created = join_recall(&txn, &agg, &sub.to_string(), &waiting, &ids).await?;
            txn.commit().await?;
            let bytes: u64 = files.iter().map(|m| to_u64(m.size)).sum();
            out = out.and(
                RoutingKey::new(Worker::MonitorPut, Action::Start),
                env.with_sub(
                    sub,
                    Payload::MonitorUpdate {
                        state: phases::registered(),
                        files: files.len() as u64,
                        bytes,
                        failed: Vec::new(),
                        warnings: Vec::new(),
                        versions: 0,
                    },
                ),
            );
            if created {
                tracing::info!(aggregation = %name, "recall started");
                let job = self.recall_job(&agg, &env.user, &env.group).await?;
                out = out.and(RoutingKey::new(Worker::ArchiveGet, Action::Start), job);
            }
        }
        Ok((out, failed))
    }

    /// The `archive-get.start` of an aggregation's recall.
    pub(super) async fn recall_job(
        &self,
        agg: &aggregation::Model,
        user: &str,
        group: &str,
    ) -> Result<Envelope> {
        let members = self.recall_members(agg.id).await?;
        Ok(nlds_core::Envelope::new(
            parse_uuid("aggregation", "transaction_id", &agg.transaction_id)?,
            user,
            group,
            nlds_core::api::ApiAction::ArchiveGet,
            "recall",
            Payload::ArchiveRecall {
                aggregation_id: agg.id,
                name: agg.name.clone(),
                members,
                sums: AggregateSums {
                    size: to_u64(agg.size),
                    adler32: agg.adler32.unwrap_or_default() as u32,
                    crc32c: agg.crc32c.unwrap_or_default() as u32,
                    blake3: agg.blake3.clone().unwrap_or_default(),
                },
                checks: 0,
                // Fresh for each recall job: its restored copies get keys of their own.
                restore_tag: Some(Uuid::new_v4().simple().to_string()[..12].to_owned()),
            },
        ))
    }

    /// Recalls nobody took up within `stale` (the catalogue stopped between recording one and
    /// sending its `archive-get.start`, or the message was lost): sent again. Run by each archive
    /// round.
    pub(super) async fn resend_stale_recalls(&self, stale: chrono::Duration) -> Result<Outcome> {
        let now = Utc::now();
        let mut out = Outcome::none();
        for r in recall::Entity::find()
            .filter(recall::Column::Started.eq(false))
            .filter(recall::Column::Created.lt(now - stale))
            .all(&self.db)
            .await?
        {
            let Some(agg) = aggregation::Entity::find_by_id(r.aggregation_id)
                .one(&self.db)
                .await?
            else {
                continue;
            };
            let Some(req) = recall_request::Entity::find()
                .filter(recall_request::Column::RecallId.eq(r.id))
                .one(&self.db)
                .await?
            else {
                continue;
            };
            let Ok(waiting) = serde_json::from_str::<Envelope>(&req.envelope) else {
                continue;
            };
            recall::Entity::update(recall::ActiveModel {
                id: Set(r.id),
                created: Set(now),
                ..Default::default()
            })
            .exec(&self.db)
            .await?;
            tracing::warn!(aggregation = %agg.name, "a recall was not taken up; sending it again");
            let job = self.recall_job(&agg, &waiting.user, &waiting.group).await?;
            out = out.and(RoutingKey::new(Worker::ArchiveGet, Action::Start), job);
        }
        Ok(out)
    }

    /// Every member of an aggregation in tar order; those without a warm copy are to be restored.
    async fn recall_members(&self, aggregation_id: i64) -> Result<Vec<RecallMember>> {
        let rows = aggregation_member::Entity::find()
            .filter(aggregation_member::Column::AggregationId.eq(aggregation_id))
            .order_by_asc(aggregation_member::Column::Position)
            .all(&self.db)
            .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.file_id).collect();
        let mut files: HashMap<i64, file::Model> = HashMap::new();
        let mut warm: HashMap<i64, bool> = HashMap::new();
        let mut sums: HashMap<i64, String> = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            for f in file::Entity::find()
                .filter(file::Column::Id.is_in(chunk.iter().copied()))
                .all(&self.db)
                .await?
            {
                files.insert(f.id, f);
            }
            for l in location::Entity::find()
                .filter(location::Column::FileId.is_in(chunk.iter().copied()))
                .filter(location::Column::Tier.eq(Tier::Warm))
                .all(&self.db)
                .await?
            {
                warm.insert(l.file_id, true);
            }
            for c in checksum::Entity::find()
                .filter(checksum::Column::FileId.is_in(chunk.iter().copied()))
                .filter(checksum::Column::Algorithm.eq(BLAKE3))
                .all(&self.db)
                .await?
            {
                sums.insert(c.file_id, c.value);
            }
        }
        let tx_ids: Vec<i64> = files.values().map(|f| f.transaction_id).collect();
        let txs: HashMap<i64, String> = transaction::Entity::find()
            .filter(transaction::Column::Id.is_in(tx_ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|t| (t.id, t.transaction_id))
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let f = files
                .get(&r.file_id)
                .ok_or_else(|| super::internal(format!("member file {} vanished", r.file_id)))?;
            let transaction = txs.get(&f.transaction_id).ok_or_else(|| {
                super::internal(format!(
                    "transaction {} of member file {} vanished",
                    f.transaction_id, f.id
                ))
            })?;
            out.push(RecallMember {
                file_id: f.id,
                path: f.path.clone(),
                size: to_u64(f.size),
                mode: to_u32(f.mode),
                mtime_ns: f.mtime_ns,
                uid: to_u32(f.uid),
                gid: to_u32(f.gid),
                transaction_id: parse_uuid("transaction", "transaction_id", transaction)?,
                blake3: sums.get(&f.id).cloned(),
                restore: !warm.contains_key(&f.id),
            });
        }
        Ok(out)
    }

    /// Files a get is waiting to recall now (shown as recalling by find and list).
    pub(super) async fn recalling_files(&self) -> Result<std::collections::HashSet<i64>> {
        let mut out = std::collections::HashSet::new();
        let lists: Vec<String> = recall_request::Entity::find()
            .select_only()
            .column(recall_request::Column::FileIds)
            .into_tuple()
            .all(&self.db)
            .await?;
        for ids in lists {
            out.extend(serde_json::from_str::<Vec<i64>>(&ids).unwrap_or_default());
        }
        Ok(out)
    }

    /// The waiting requests of an aggregation's recall, removed with it, and when the recall
    /// was (last) sent to archive-get.
    async fn take_requests(
        &self,
        aggregation_id: i64,
    ) -> Result<(Vec<recall_request::Model>, Option<chrono::DateTime<Utc>>)> {
        let txn = self.db.begin().await?;
        let Some(r) = recall::Entity::find()
            .filter(recall::Column::AggregationId.eq(aggregation_id))
            .one(&txn)
            .await?
        else {
            return Ok((Vec::new(), None));
        };
        let requests = recall_request::Entity::find()
            .filter(recall_request::Column::RecallId.eq(r.id))
            .all(&txn)
            .await?;
        // The delete is the claim: two reports of the same recall handled at once (a worker
        // killed mid-recall, its job and its delayed check both taken up by the next one) both
        // read the requests, but only the one whose delete removed the row answers them; on
        // PostgreSQL the other's delete waits for the first to commit and removes nothing.
        // Without it both answered, and every file of the recall was restored twice (the
        // second time failing as "exists and differs").
        let claimed = recall::Entity::delete_by_id(r.id).exec(&txn).await?;
        if claimed.rows_affected == 0 {
            txn.rollback().await?;
            return Ok((Vec::new(), None));
        }
        txn.commit().await?;
        Ok((requests, Some(r.created)))
    }

    /// `RecallProgress`: archive-get has taken the recall up; every waiting batch moves to the
    /// state of the phase it reports, if it does not show it already ([`RecallPhase`]).
    pub(super) async fn recall_progress(
        &self,
        aggregation_id: i64,
        state: State,
    ) -> Result<Outcome> {
        let Some(r) = recall::Entity::find()
            .filter(recall::Column::AggregationId.eq(aggregation_id))
            .one(&self.db)
            .await?
        else {
            return Ok(Outcome::none());
        };
        if !r.started {
            recall::Entity::update(recall::ActiveModel {
                id: Set(r.id),
                started: Set(true),
                ..Default::default()
            })
            .exec(&self.db)
            .await?;
        }
        let (stages, gets): (Vec<_>, Vec<_>) = recall_request::Entity::find()
            .filter(recall_request::Column::RecallId.eq(r.id))
            .all(&self.db)
            .await?
            .into_iter()
            .partition(|req| stage_waiter(&req.sub_id).is_some());
        // Stages waiting for it: their files are STARTED.
        self.stage_progress(&stages).await?;
        let Some(state) = RecallPhase::reported(state).and_then(RecallPhase::batch_update) else {
            // The waiting batches show it since they were registered (or it is no recall's).
            return Ok(Outcome::none());
        };
        let mut out = Outcome::none();
        for req in gets {
            let Ok(env) = serde_json::from_str::<Envelope>(&req.envelope) else {
                continue;
            };
            let n = serde_json::from_str::<Vec<i64>>(&req.file_ids).map_or(0, |v| v.len());
            out = out.and(
                RoutingKey::new(Worker::MonitorPut, Action::Start),
                env.reply(Payload::MonitorUpdate {
                    state,
                    files: n as u64,
                    bytes: 0,
                    failed: Vec::new(),
                    warnings: Vec::new(),
                    versions: 0,
                }),
            );
        }
        Ok(out)
    }

    /// `ArchiveRestored`: record the warm copies, then resume every waiting get batch.
    pub(super) async fn recall_restored(
        &self,
        aggregation_id: i64,
        restored: &[RestoredFile],
    ) -> Result<Outcome> {
        let rows = restored
            .iter()
            .map(|r| {
                let mut row =
                    super::location_row(r.file_id, Tier::Warm, &r.object.bucket, &r.object.key);
                row.tenancy = Set(r.object.tenancy.clone());
                row
            })
            .collect();
        // The warm copies and the usage they add, in one database transaction.
        let ids: Vec<i64> = restored.iter().map(|r| r.file_id).collect();
        let txn = self.db.begin().await?;
        let before = super::usage::counted(&txn, &ids).await?;
        super::add_locations(&txn, rows).await?;
        super::usage::settle(&txn, &ids, &before).await?;
        txn.commit().await?;
        // Warm again: not the least recently accessed (the get that asked for them counted).
        super::access::touch(&self.db, &ids, Utc::now()).await?;
        let mut out = Outcome::none();
        let (requests, sent) = self.take_requests(aggregation_id).await?;
        if let Some(sent) = sent {
            // nlds_recall_wait_seconds: from the recall's (last) start to its files being warm.
            let waited = (Utc::now() - sent).to_std().unwrap_or_default();
            nlds_metrics::record::recall_waited(waited);
        }
        for req in requests {
            if stage_waiter(&req.sub_id).is_some() {
                self.stage_restored(&req).await?;
                continue;
            }
            let Ok(env) = serde_json::from_str::<Envelope>(&req.envelope) else {
                continue;
            };
            let ids: Vec<i64> = serde_json::from_str(&req.file_ids).unwrap_or_default();
            let models = file::Entity::find()
                .filter(file::Column::Id.is_in(ids.iter().copied()))
                .order_by_asc(file::Column::Path)
                .all(&self.db)
                .await?;
            let (locations, checksums) = load_copies(&self.db, &ids).await?;
            let mut files = Vec::new();
            let mut failed = Vec::new();
            for m in &models {
                match locations
                    .get(&m.id)
                    .and_then(|ls| ls.iter().find(|l| l.tier == Tier::Warm))
                {
                    Some(w) => {
                        let mut r: FileRecord = record(m);
                        r.blake3 = checksums.get(&m.id).cloned();
                        r.object = Some(ObjectRef {
                            bucket: w.bucket.clone(),
                            key: w.key.clone(),
                            tenancy: w.tenancy.clone(),
                        });
                        files.push(r);
                    }
                    None => failed.push(FailedFile::new(
                        &m.path,
                        ErrorCode::StorageError,
                        format!("{}: the recall did not restore it", m.path),
                    )),
                }
            }
            let (target, overwrite, context) = match &env.payload {
                Payload::Files {
                    target,
                    overwrite,
                    context,
                    ..
                } => (target.clone(), *overwrite, context.clone()),
                _ => (None, false, Vec::new()),
            };
            out = out.and(
                RoutingKey::new(Worker::CatalogGet, Action::Complete),
                env.reply(Payload::Files {
                    holding_id: None,
                    files,
                    target,
                    overwrite,
                    failed,
                    context,
                }),
            );
        }
        Ok(out)
    }

    /// archive-get failed: every waiting batch fails with the reason.
    pub(super) async fn recall_failed(
        &self,
        env: &Envelope,
        reasons: &[FailedFile],
    ) -> Result<Outcome> {
        let Some(agg) = aggregation::Entity::find()
            .filter(aggregation::Column::TransactionId.eq(env.transaction_id.to_string()))
            .one(&self.db)
            .await?
        else {
            return Ok(Outcome::none());
        };
        let reason = reasons
            .first()
            .map(|f| f.reason.clone())
            .unwrap_or_else(|| format!("the recall of aggregate {} failed", agg.name));
        let code = reasons.first().map_or(ErrorCode::StorageError, |f| f.code);
        tracing::warn!(aggregation = %agg.name, %reason, "recall failed");
        let mut out = Outcome::none();
        for req in self.take_requests(agg.id).await?.0 {
            if stage_waiter(&req.sub_id).is_some() {
                self.stage_failed(&req, &reason).await?;
                continue;
            }
            let Ok(waiting) = serde_json::from_str::<Envelope>(&req.envelope) else {
                continue;
            };
            let ids: Vec<i64> = serde_json::from_str(&req.file_ids).unwrap_or_default();
            let files = file::Entity::find()
                .filter(file::Column::Id.is_in(ids))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|m| FailedFile::new(&m.path, code, format!("{}: {reason}", m.path)))
                .collect();
            out = out.and(
                RoutingKey::new(Worker::CatalogGet, Action::Failed),
                waiting.reply(Payload::Failed { files }),
            );
        }
        Ok(out)
    }

    /// `catalog.evict`: drops the warm copies of the holding's files whose cold copy is in a
    /// stored aggregation and that no live pin keeps warm; answers the dropped copies. The deletion of their objects is staged in
    /// the outbox in the same database transaction (as from `env`).
    pub(super) async fn evict(&self, env: &Envelope, holding_id: i64) -> Result<Vec<FileRecord>> {
        if crate::db::holding::Entity::find_by_id(holding_id)
            .one(&self.db)
            .await?
            .is_none()
        {
            return Err(nlds_core::error::ApiError::not_found(format!(
                "holding {holding_id} does not exist"
            ))
            .into());
        }
        let txn = self.db.begin().await?;
        let files = file::Entity::find()
            .filter(file::Column::HoldingId.eq(holding_id))
            .all(&txn)
            .await?;
        self.evict_these(env, txn, files, Some(holding_id)).await
    }

    /// `catalog.evict` with [`Payload::EvictFiles`] (the policy): drops the warm copies of those
    /// of `file_ids` that may go now: live, with a cold copy in a stored aggregation (the
    /// last-copy guard), no live pin (`pin.until` after now: a get or stage keeps it warm), no
    /// stage request waiting for it and no recall of its aggregate under way. The rest are
    /// left alone (not an error: the next pass looks again).
    ///
    /// [`Payload::EvictFiles`]: nlds_core::Payload::EvictFiles
    pub(super) async fn evict_files(
        &self,
        env: &Envelope,
        file_ids: &[i64],
    ) -> Result<Vec<FileRecord>> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let mut files = Vec::new();
        let mut kept: HashSet<i64> = HashSet::new();
        for chunk in file_ids.chunks(CHUNK) {
            let ids = || chunk.iter().copied();
            files.extend(
                file::Entity::find()
                    .filter(file::Column::Id.is_in(ids()))
                    .filter(file::Column::DeletedAt.is_null())
                    .all(&txn)
                    .await?,
            );
            kept.extend(
                pin::Entity::find()
                    .select_only()
                    .column(pin::Column::FileId)
                    .filter(pin::Column::FileId.is_in(ids()))
                    .filter(pin::Column::Until.gt(now))
                    .into_tuple::<i64>()
                    .all(&txn)
                    .await?,
            );
            kept.extend(
                stage_file::Entity::find()
                    .select_only()
                    .column(stage_file::Column::FileId)
                    .filter(stage_file::Column::FileId.is_in(ids()))
                    .filter(stage_file::Column::State.is_in(stage_file::WAITING))
                    .into_tuple::<Option<i64>>()
                    .all(&txn)
                    .await?
                    .into_iter()
                    .flatten(),
            );
            let recalling = Query::select()
                .column(recall::Column::AggregationId)
                .from(recall::Entity)
                .to_owned();
            kept.extend(
                aggregation_member::Entity::find()
                    .select_only()
                    .column(aggregation_member::Column::FileId)
                    .filter(aggregation_member::Column::FileId.is_in(ids()))
                    .filter(aggregation_member::Column::AggregationId.in_subquery(recalling))
                    .into_tuple::<i64>()
                    .all(&txn)
                    .await?,
            );
        }
        if !kept.is_empty() {
            tracing::info!(
                kept = kept.len(),
                "files pinned or awaited are not evicted (a get, stage or recall wants them)"
            );
        }
        files.retain(|f| !kept.contains(&f.id));
        self.evict_these(env, txn, files, None).await
    }

    /// Drops the warm copies of those of `files` the last-copy guard lets go, and stages the
    /// deletion of their objects, in `txn`.
    async fn evict_these(
        &self,
        env: &Envelope,
        txn: sea_orm::DatabaseTransaction,
        files: Vec<file::Model>,
        holding_id: Option<i64>,
    ) -> Result<Vec<FileRecord>> {
        let ids: Vec<i64> = files.iter().map(|f| f.id).collect();
        let (locations, _) = load_copies(&txn, &ids).await?;
        // A file pinned warm (for a get or a stage, until its lifetime ends) keeps its copy.
        let pinned = super::access::pinned(&txn, &ids, Utc::now()).await?;
        let files: Vec<file::Model> = files
            .into_iter()
            .filter(|f| !pinned.contains(&f.id))
            .collect();
        // Warm copies of files that have a cold one; the last-copy guard decides which may go
        // (only those whose cold copy is in a stored, verified aggregation).
        let proposals: Vec<Removal> = files
            .iter()
            .filter_map(|f| {
                let ls = locations.get(&f.id).map(Vec::as_slice).unwrap_or_default();
                let warm = ls.iter().find(|l| l.tier == Tier::Warm)?;
                ls.iter()
                    .any(|l| l.tier == Tier::Cold)
                    .then(|| Removal::Warm {
                        bucket: warm.bucket.clone(),
                        key: warm.key.clone(),
                    })
            })
            .collect();
        let verdict = guard_removals(&txn, proposals).await?;
        let allowed: std::collections::HashSet<(String, String)> = verdict
            .allowed
            .into_iter()
            .filter_map(|r| match r {
                Removal::Warm { bucket, key } => Some((bucket, key)),
                Removal::Aggregate { .. } => None,
            })
            .collect();
        let mut out = Vec::new();
        let mut drop = Vec::new();
        for f in &files {
            let ls = locations.get(&f.id).map(Vec::as_slice).unwrap_or_default();
            let warm = ls.iter().find(|l| l.tier == Tier::Warm);
            let may_go = warm.is_some_and(|w| allowed.contains(&(w.bucket.clone(), w.key.clone())));
            if let (Some(w), true) = (warm, may_go) {
                let mut r = record(f);
                r.object = Some(ObjectRef {
                    bucket: w.bucket.clone(),
                    key: w.key.clone(),
                    tenancy: w.tenancy.clone(),
                });
                drop.push(w.id);
                out.push(r);
            }
        }
        // The evicted files' warm usage goes with their copies.
        let gone: std::collections::HashSet<i64> = drop.iter().copied().collect();
        let evicted: Vec<i64> = files
            .iter()
            .filter(|f| {
                locations
                    .get(&f.id)
                    .is_some_and(|ls| ls.iter().any(|l| gone.contains(&l.id)))
            })
            .map(|f| f.id)
            .collect();
        let before = super::usage::counted(&txn, &evicted).await?;
        for chunk in drop.chunks(CHUNK) {
            location::Entity::delete_many()
                .filter(location::Column::Id.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
        }
        super::usage::settle(&txn, &evicted, &before).await?;
        let removals = super::delete::removal_messages(
            Workflow::Evict,
            Step::CatalogEvict,
            |p| env.reply(p),
            holding_id,
            out.clone(),
            Vec::new(),
        );
        self.commit_with(txn, removals).await?;
        Ok(out)
    }
}
