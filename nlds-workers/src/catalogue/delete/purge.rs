//! Purging: forgetting deleted files after their retention (or when an operator asks), and the
//! messages that remove their warm objects and cold aggregates.

use nlds_core::api::Tier;
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use nlds_bus::Outcome;
use nlds_core::api::{ApiAction, PurgeResponse};
use nlds_core::message::{ObjectRef, RemovedAggregate, RpcReply};
use nlds_core::workflow::{Effect, Step, StepOutcome, Workflow};
use nlds_core::{AccessRole, Envelope, FileRecord, Payload, RoutingKey};
use sea_orm::{
    ColumnTrait, Condition, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, TransactionTrait,
};
use uuid::Uuid;

use super::{CHUNK, Catalogue, Result, Retention, dedup, forbidden, record, to_u64};
use crate::catalogue::guard::{Removal, guard_removals};
use crate::db::{
    aggregation, aggregation_member, file, holding, location, recall, tag, transaction,
};

/// The operator of a background action (who the envelopes of a sweep are from).
const SYSTEM: &str = "nlds";

impl Catalogue {
    /// `catalog.purge` (operators): purges deleted files now, whatever their retention; the
    /// answer and the removals of what it forgot are one outcome.
    pub(in crate::catalogue) async fn purge_now(
        &self,
        env: &Envelope,
        holding_id: Option<i64>,
    ) -> Result<Outcome> {
        if env.role != AccessRole::Admin {
            return Err(forbidden(format!(
                "{} is not a service operator (admin): only operators purge",
                env.user
            )));
        }
        let p = self.purge(holding_id, None).await?;
        let reply = RpcReply::Purged {
            summary: p.summary.clone(),
            objects: p.objects.clone(),
            aggregates: p.aggregates.clone(),
        };
        // The removals were staged in the outbox with the purge itself.
        Ok(Outcome::reply(env.reply(Payload::Reply(reply))))
    }

    /// The purge sweep (run with every archive round): purges what has outlived the retention
    /// period (its removals staged in the outbox with it).
    pub(in crate::catalogue) async fn purge_expired(&self) -> Result<Outcome> {
        let cutoff = Utc::now() - self.delete.retention();
        let p = self.purge(None, Some(cutoff)).await?;
        if p.summary.files > 0 || p.summary.holdings > 0 {
            tracing::info!(
                files = p.summary.files,
                objects = p.summary.objects,
                aggregates = p.aggregates.len(),
                holdings = p.summary.holdings,
                deferred = p.summary.deferred,
                "purged deleted files past their retention"
            );
        }
        Ok(Outcome::none())
    }

    /// Purges deleted files (those deleted before `cutoff`, or all), of one holding or all:
    /// removes their copies as far as [`guard_removals`] allows, then their rows, and deleted
    /// holdings left empty. The removals of the warm objects and aggregates are staged in the
    /// outbox in the same database transaction; returns what was removed.
    pub(super) async fn purge(
        &self,
        holding_id: Option<i64>,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<Purge> {
        let txn = self.db.begin().await?;
        let mut q = file::Entity::find().filter(file::Column::DeletedAt.is_not_null());
        if let Some(t) = cutoff {
            q = q.filter(file::Column::DeletedAt.lt(t));
        }
        if let Some(h) = holding_id {
            q = q.filter(file::Column::HoldingId.eq(h));
        }
        let files = q
            .order_by(file::Column::Id, sea_orm::Order::Asc)
            .limit(self.delete.purge_batch.max(1))
            .all(&txn)
            .await?;
        let ids: Vec<i64> = files.iter().map(|f| f.id).collect();
        // Whatever these files still count goes with them (deleted files count nothing, and an
        // aggregate is removed only when none of its members is live).
        let before = super::super::usage::counted(&txn, &ids).await?;
        // Aggregations of these files.
        let mut member_of: HashMap<i64, i64> = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let rows: Vec<(i64, i64)> = aggregation_member::Entity::find()
                .select_only()
                .column(aggregation_member::Column::FileId)
                .column(aggregation_member::Column::AggregationId)
                .filter(aggregation_member::Column::FileId.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(&txn)
                .await?;
            member_of.extend(rows);
        }
        let agg_ids = dedup(&member_of.values().copied().collect::<Vec<_>>());
        let mut aggs: HashMap<i64, aggregation::Model> = HashMap::new();
        for chunk in agg_ids.chunks(CHUNK) {
            for a in aggregation::Entity::find()
                .filter(aggregation::Column::Id.is_in(chunk.iter().copied()))
                .all(&txn)
                .await?
            {
                aggs.insert(a.id, a);
            }
        }
        // An aggregate goes when none of its members is live (or deleted too recently), none
        // is being recalled, and it is not being written.
        let mut removable: BTreeMap<i64, String> = BTreeMap::new();
        for a in aggs.values() {
            if a.state != aggregation::State::Stored {
                continue;
            }
            let mut keep = Condition::any().add(file::Column::DeletedAt.is_null());
            if let Some(t) = cutoff {
                keep = keep.add(file::Column::DeletedAt.gte(t));
            }
            let members = aggregation_member::Entity::find()
                .select_only()
                .column(aggregation_member::Column::FileId)
                .filter(aggregation_member::Column::AggregationId.eq(a.id))
                .into_query();
            let keeping = file::Entity::find()
                .filter(file::Column::Id.in_subquery(members))
                .filter(keep)
                .count(&txn)
                .await?;
            let recalling = recall::Entity::find()
                .filter(recall::Column::AggregationId.eq(a.id))
                .one(&txn)
                .await?
                .is_some();
            if keeping == 0 && !recalling {
                removable.insert(a.id, a.name.clone());
            }
        }
        let (locations, _) = super::super::load_copies(&txn, &ids).await?;
        let mut proposals = Vec::new();
        let mut deferred_files: HashSet<i64> = HashSet::new();
        for f in &files {
            if let Some(a) = member_of.get(&f.id).and_then(|a| aggs.get(a))
                && a.state != aggregation::State::Stored
            {
                // Being written from its warm copy now: next time.
                deferred_files.insert(f.id);
                continue;
            }
            for l in locations.get(&f.id).map(Vec::as_slice).unwrap_or_default() {
                if l.tier == Tier::Warm {
                    proposals.push(Removal::Warm {
                        bucket: l.bucket.clone(),
                        key: l.key.clone(),
                    });
                }
            }
        }
        for (id, name) in &removable {
            proposals.push(Removal::Aggregate {
                aggregation_id: *id,
                name: name.clone(),
            });
        }
        let verdict = guard_removals(&txn, proposals).await?;
        let mut objects = Vec::new();
        let mut aggregates = Vec::new();
        let allowed_warm: HashSet<(String, String)> = verdict
            .allowed
            .iter()
            .filter_map(|r| match r {
                Removal::Warm { bucket, key } => Some((bucket.clone(), key.clone())),
                Removal::Aggregate { .. } => None,
            })
            .collect();
        let mut gone_locations = Vec::new();
        for r in &verdict.allowed {
            if let Removal::Aggregate {
                aggregation_id,
                name,
            } = r
            {
                location::Entity::delete_many()
                    .filter(location::Column::Tier.eq(Tier::Cold))
                    .filter(location::Column::Key.eq(name.as_str()))
                    .exec(&txn)
                    .await?;
                aggregation::Entity::delete_by_id(*aggregation_id)
                    .exec(&txn)
                    .await?;
                aggregates.push(RemovedAggregate {
                    aggregation_id: *aggregation_id,
                    name: name.clone(),
                });
            }
        }
        let mut summary = PurgeResponse {
            aggregates: aggregates.iter().map(|a| a.name.clone()).collect(),
            refused: verdict
                .refused
                .iter()
                .map(|(r, f)| format!("{r}: the last verified copy of {f}"))
                .collect(),
            ..Default::default()
        };
        let mut emitted: HashSet<(String, String)> = HashSet::new();
        for f in &files {
            if deferred_files.contains(&f.id) {
                continue;
            }
            for l in locations.get(&f.id).map(Vec::as_slice).unwrap_or_default() {
                let k = (l.bucket.clone(), l.key.clone());
                if l.tier == Tier::Warm && allowed_warm.contains(&k) {
                    gone_locations.push(l.id);
                    if emitted.insert(k) {
                        let mut r = record(f);
                        r.object = Some(ObjectRef {
                            bucket: l.bucket.clone(),
                            key: l.key.clone(),
                            tenancy: l.tenancy.clone(),
                        });
                        objects.push(r);
                    }
                }
            }
        }
        for chunk in gone_locations.chunks(CHUNK) {
            location::Entity::delete_many()
                .filter(location::Column::Id.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
        }
        // Rows of files with no copy and no aggregate left go; the others wait.
        let mut with_copies: HashSet<i64> = HashSet::new();
        let mut in_aggregate: HashSet<i64> = HashSet::new();
        for chunk in ids.chunks(CHUNK) {
            let rows: Vec<i64> = location::Entity::find()
                .select_only()
                .column(location::Column::FileId)
                .filter(location::Column::FileId.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(&txn)
                .await?;
            with_copies.extend(rows);
            let rows: Vec<i64> = aggregation_member::Entity::find()
                .select_only()
                .column(aggregation_member::Column::FileId)
                .filter(aggregation_member::Column::FileId.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(&txn)
                .await?;
            in_aggregate.extend(rows);
        }
        let mut gone = Vec::new();
        for f in &files {
            if with_copies.contains(&f.id) || in_aggregate.contains(&f.id) {
                summary.deferred += 1;
            } else {
                gone.push(f.id);
                summary.bytes += to_u64(f.size);
            }
        }
        for chunk in gone.chunks(CHUNK) {
            file::Entity::delete_many()
                .filter(file::Column::Id.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
        }
        super::super::usage::settle(&txn, &ids, &before).await?;
        summary.files = gone.len() as u64;
        summary.objects = objects.len() as u64;
        summary.holdings = purge_holdings(&txn, holding_id, cutoff).await?;
        let removals = removal_messages(
            Workflow::Purge,
            Step::CatalogPurge,
            purge_origin,
            None,
            objects.clone(),
            aggregates.clone(),
        );
        self.commit_with(txn, removals).await?;
        Ok(Purge {
            summary,
            objects,
            aggregates,
        })
    }
}

/// What a purge took out of the catalogue.
pub(super) struct Purge {
    summary: PurgeResponse,
    objects: Vec<FileRecord>,
    aggregates: Vec<RemovedAggregate>,
}

/// The messages that carry out the removals a committed change implies (the one function that
/// builds them: eviction, purge and the purge sweep of an archive round): `transfer-del.start` for
/// the warm objects, in chunks, and `archive-put.del` for each aggregate, as
/// [`nlds_core::workflow::next`] sends them after `step` of `workflow`. The catalogue stages them
/// in the outbox in the database transaction that forgets the copies ([`Catalogue::commit_with`]).
/// `origin` makes each message's envelope.
pub(crate) fn removal_messages(
    workflow: Workflow,
    step: Step,
    origin: impl Fn(Payload) -> Envelope,
    holding_id: Option<i64>,
    objects: Vec<FileRecord>,
    aggregates: Vec<RemovedAggregate>,
) -> Vec<(RoutingKey, Envelope)> {
    let mut out = Vec::new();
    let effects = match nlds_core::workflow::next(workflow, step, StepOutcome::Done) {
        Ok(effects) => effects,
        Err(e) => {
            tracing::error!(error = %e, "no removals follow this step");
            return out;
        }
    };
    let mut aggregates = Some(aggregates);
    for effect in effects {
        match effect {
            Effect::Send(to @ Step::TransferDel) => {
                for chunk in objects.chunks(CHUNK) {
                    out.push((
                        to.key(),
                        origin(Payload::Files {
                            context: Vec::new(),
                            holding_id,
                            files: chunk.to_vec(),
                            target: None,
                            overwrite: false,
                            failed: Vec::new(),
                        }),
                    ));
                }
            }
            Effect::Send(to @ Step::ArchiveRemove) => {
                for a in aggregates.take().unwrap_or_default() {
                    out.push((
                        to.key(),
                        origin(Payload::ArchiveRemove {
                            aggregation_id: a.aggregation_id,
                            name: a.name,
                        }),
                    ));
                }
            }
            other => tracing::error!(?other, ?workflow, "not a removal"),
        }
    }
    out
}

/// The envelope of a purge's removals: the service's own.
pub(crate) fn purge_origin(payload: Payload) -> Envelope {
    Envelope::new(
        Uuid::new_v4(),
        SYSTEM,
        SYSTEM,
        ApiAction::Del,
        "purge",
        payload,
    )
}

/// Removes deleted holdings (deleted before `cutoff`, or all) that have no file rows left, with
/// their tags, transactions and aggregations. Returns how many.
pub(super) async fn purge_holdings(
    c: &DatabaseTransaction,
    holding_id: Option<i64>,
    cutoff: Option<DateTime<Utc>>,
) -> Result<u64> {
    let mut q = holding::Entity::find().filter(holding::Column::DeletedAt.is_not_null());
    if let Some(t) = cutoff {
        q = q.filter(holding::Column::DeletedAt.lt(t));
    }
    if let Some(h) = holding_id {
        q = q.filter(holding::Column::Id.eq(h));
    }
    let with_files = sea_orm::sea_query::Query::select()
        .column((file::Entity, file::Column::HoldingId))
        .from(file::Entity)
        .to_owned();
    let empty: Vec<i64> = q
        .filter(holding::Column::Id.not_in_subquery(with_files))
        .select_only()
        .column(holding::Column::Id)
        .into_tuple()
        .all(c)
        .await?;
    for chunk in empty.chunks(CHUNK) {
        let ids = || chunk.iter().copied();
        tag::Entity::delete_many()
            .filter(tag::Column::HoldingId.is_in(ids()))
            .exec(c)
            .await?;
        transaction::Entity::delete_many()
            .filter(transaction::Column::HoldingId.is_in(ids()))
            .exec(c)
            .await?;
        aggregation::Entity::delete_many()
            .filter(aggregation::Column::HoldingId.is_in(ids()))
            .exec(c)
            .await?;
        holding::Entity::delete_many()
            .filter(holding::Column::Id.is_in(ids()))
            .exec(c)
            .await?;
    }
    Ok(empty.len() as u64)
}
