//! The catalogue's side of archiving (`catalog-archive-next.start`, `catalog-archive-update.start`).
//!
//! `archive_next` picks what to archive: every file with a warm copy, no cold copy and no place
//! in an aggregation, holding by holding, fairly (the holdings archived least recently first, a
//! bounded number of aggregates each per round). It reads each holding's eligible files a page at
//! a time and packs them as they come ([`aggregate::Packer`]), so a round holds a page and the
//! aggregate being filled, never a whole holding's files. It records
//! each aggregation as `writing` with a lease and its members with their offsets, and sends one
//! `archive-put.start` per aggregation. A file is in at most one aggregation (a unique index), so
//! two rounds running at once never archive a file twice.
//!
//! Only when an archive-put worker reports the aggregation written and verified
//! (`archive_stored`) does the catalogue give its members cold locations. A failed write
//! (`archive_failed`) deletes the aggregation, and so does an expired lease at the next round
//! (a worker that died mid-write): the files are eligible again and nothing is marked archived.

use nlds_core::api::Tier;
use std::collections::HashMap;

use chrono::Utc;
use nlds_bus::Outcome;
use nlds_core::api::ApiAction;
use nlds_core::message::{AggregateSums, ArchiveMember, LeasedAggregate, ObjectRef};
use nlds_core::{Action, Envelope, FailedFile, Payload, RoutingKey, Worker};
use nlds_storage::cold::aggregate::{self, member_of};
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::{BLAKE3, Catalogue, Result, to_i64, to_u32, to_u64};
use crate::db::{self, aggregation, aggregation_member, checksum, file, holding, location};

pub use nlds_settings::ArchiveConfig;

/// A recall not taken up by archive-get within this long is sent again by the next round.
fn stale_recall() -> chrono::Duration {
    chrono::Duration::minutes(5)
}

/// Files a round reads at once from one holding.
const PAGE: u64 = 1_000;

/// What a round needs of an eligible file to pack it and name it in its aggregate.
#[derive(Debug)]
struct Candidate {
    id: i64,
    path: String,
    size: i64,
    mode: i64,
    mtime_ns: i64,
    uid: i64,
    gid: i64,
}

/// A holding's eligible files in id order, a page at a time: all of them, or only those of a
/// selection.
struct Pages {
    holding_id: i64,
    /// The last id read (all of them).
    after: i64,
    /// The selection, sorted, and how much of it was read.
    selection: Option<(Vec<i64>, usize)>,
    done: bool,
}

impl Pages {
    fn new(holding_id: i64, selection: Option<&[i64]>) -> Self {
        let selection = selection.map(|ids| {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            (ids, 0)
        });
        let done = selection.as_ref().is_some_and(|(ids, _)| ids.is_empty());
        Self {
            holding_id,
            after: 0,
            selection,
            done,
        }
    }

    /// The next page (never empty), or `None` once every file was read.
    async fn next(&mut self, c: &impl ConnectionTrait) -> Result<Option<Vec<Candidate>>> {
        while !self.done {
            let mut q = file::Entity::find()
                .select_only()
                .columns([
                    file::Column::Id,
                    file::Column::Path,
                    file::Column::Size,
                    file::Column::Mode,
                    file::Column::MtimeNs,
                    file::Column::Uid,
                    file::Column::Gid,
                ])
                .filter(eligible())
                .filter(file::Column::HoldingId.eq(self.holding_id))
                .order_by_asc(file::Column::Id);
            match &mut self.selection {
                None => q = q.filter(file::Column::Id.gt(self.after)).limit(PAGE),
                Some((ids, at)) => {
                    let end = (*at + super::CHUNK).min(ids.len());
                    q = q.filter(file::Column::Id.is_in(ids[*at..end].iter().copied()));
                    *at = end;
                    self.done = end == ids.len();
                }
            }
            let rows: Vec<(i64, String, i64, i64, i64, i64, i64)> = q.into_tuple().all(c).await?;
            if self.selection.is_none() && (rows.len() as u64) < PAGE {
                self.done = true;
            }
            if let Some(last) = rows.last() {
                self.after = last.0;
                let page = rows
                    .into_iter()
                    .map(|(id, path, size, mode, mtime_ns, uid, gid)| Candidate {
                        id,
                        path,
                        size,
                        mode,
                        mtime_ns,
                        uid,
                        gid,
                    })
                    .collect();
                return Ok(Some(page));
            }
        }
        Ok(None)
    }
}

/// `a`'s messages, then `b`'s.
fn then(mut a: Outcome, b: Outcome) -> Outcome {
    a.publish.extend(b.publish);
    a
}

/// The condition "this file may be archived now".
fn eligible() -> Condition {
    let warm = Query::select()
        .column((location::Entity, location::Column::FileId))
        .from(location::Entity)
        .and_where(location::Column::Tier.eq(Tier::Warm))
        .to_owned();
    let cold = Query::select()
        .column((location::Entity, location::Column::FileId))
        .from(location::Entity)
        .and_where(location::Column::Tier.eq(Tier::Cold))
        .to_owned();
    let taken = Query::select()
        .column((
            aggregation_member::Entity,
            aggregation_member::Column::FileId,
        ))
        .from(aggregation_member::Entity)
        .to_owned();
    Condition::all()
        .add(file::Column::Kind.eq("file"))
        .add(file::Column::DeletedAt.is_null())
        .add(file::Column::Id.in_subquery(warm))
        .add(file::Column::Id.not_in_subquery(cold))
        .add(file::Column::Id.not_in_subquery(taken))
}

impl Catalogue {
    /// `catalog-archive-next.start`: one archive round.
    pub(super) async fn archive_next(&self) -> Result<Outcome> {
        Ok(self.archive_round(None).await?.0)
    }

    /// `catalog-archive-next.start` with [`Payload::ArchiveSelect`] (the policy): a round
    /// restricted to `file_ids` (those still eligible; none: the round's upkeep only), every
    /// selected file packed whatever the per-round limits. Answers the aggregations it leased.
    ///
    /// [`Payload::ArchiveSelect`]: nlds_core::Payload::ArchiveSelect
    pub(super) async fn archive_select(
        &self,
        file_ids: &[i64],
    ) -> Result<(Outcome, Vec<LeasedAggregate>)> {
        self.archive_round(Some(file_ids)).await
    }

    /// One round over every eligible file, or only over `selection`: the outcome (the purge's
    /// removals, stale recalls, one `archive-put.start` per aggregate) and the aggregations.
    async fn archive_round(
        &self,
        selection: Option<&[i64]>,
    ) -> Result<(Outcome, Vec<LeasedAggregate>)> {
        let cfg = &self.archive;
        let now = Utc::now();
        // Upkeep: the chunks of requests that never started go.
        self.expire_chunks().await?;
        // Writes that outlived their lease are given up: their files become eligible again.
        let expired = aggregation::Entity::delete_many()
            .filter(aggregation::Column::State.eq(aggregation::State::Writing))
            .filter(aggregation::Column::LeaseUntil.lt(now))
            .exec(&self.db)
            .await?;
        if expired.rows_affected > 0 {
            tracing::warn!(
                count = expired.rows_affected,
                "archive writes outlived their lease; their files are eligible again"
            );
        }

        // Holdings with something to archive, the least recently archived first.
        let candidates: Vec<i64> = match selection {
            None => {
                file::Entity::find()
                    .select_only()
                    .column(file::Column::HoldingId)
                    .distinct()
                    .filter(eligible())
                    .into_tuple()
                    .all(&self.db)
                    .await?
            }
            Some(ids) => {
                let mut holdings = Vec::new();
                for chunk in ids.chunks(super::CHUNK) {
                    holdings.extend(
                        file::Entity::find()
                            .select_only()
                            .column(file::Column::HoldingId)
                            .distinct()
                            .filter(eligible())
                            .filter(file::Column::Id.is_in(chunk.iter().copied()))
                            .into_tuple::<i64>()
                            .all(&self.db)
                            .await?,
                    );
                }
                holdings.sort_unstable();
                holdings.dedup();
                holdings
            }
        };
        // Deleted files past their retention are purged with every round.
        let purged = self.purge_expired().await?;
        if candidates.is_empty() {
            return Ok((
                then(purged, self.resend_stale_recalls(stale_recall()).await?),
                Vec::new(),
            ));
        }
        let last: HashMap<i64, chrono::DateTime<Utc>> = aggregation::Entity::find()
            .select_only()
            .column(aggregation::Column::HoldingId)
            .column_as(aggregation::Column::Created.max(), "last")
            .filter(aggregation::Column::HoldingId.is_in(candidates.iter().copied()))
            .group_by(aggregation::Column::HoldingId)
            .into_tuple::<(i64, chrono::DateTime<Utc>)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let mut order = candidates;
        order.sort_by_key(|h| (last.get(h).copied(), *h));
        if selection.is_none() {
            order.truncate(usize::try_from(cfg.holdings_per_round.max(1)).unwrap_or(usize::MAX));
        }

        let mut out = then(purged, self.resend_stale_recalls(stale_recall()).await?);
        let mut leased = Vec::new();
        for holding_id in order {
            let Some(h) = holding::Entity::find_by_id(holding_id)
                .one(&self.db)
                .await?
            else {
                continue;
            };
            let per_holding = match selection {
                None => cfg.aggregates_per_holding.max(1),
                Some(_) => usize::MAX,
            };
            let mut packer =
                aggregate::Packer::new(cfg.aggregate_bytes.max(1), cfg.aggregate_members);
            let mut made = 0usize;
            let mut pages = Pages::new(holding_id, selection);
            // The holding's eligible files a page at a time, packed as they come: a round holds
            // one page and the aggregate being filled, not every file it may archive (a holding
            // of 40,000 files was 40,000 catalogue rows held at once).
            'holding: loop {
                let page = pages.next(&self.db).await?;
                let last = page.is_none();
                let closed: Vec<Vec<Candidate>> = match page {
                    Some(page) => page
                        .into_iter()
                        .filter_map(|f| {
                            let size = to_u64(f.size);
                            packer.push(f, size)
                        })
                        .collect(),
                    None => packer.finish().into_iter().collect(),
                };
                for group in closed {
                    if made >= per_holding {
                        break 'holding;
                    }
                    made += 1;
                    if let Some((key, job)) = self.lease(&h, &group).await? {
                        if let Payload::ArchiveAggregate {
                            aggregation_id,
                            name,
                            members,
                            ..
                        } = &job.payload
                        {
                            leased.push(LeasedAggregate {
                                aggregation_id: *aggregation_id,
                                name: name.clone(),
                                file_ids: members.iter().map(|m| m.file_id).collect(),
                            });
                        }
                        out = out.and(key, job);
                    }
                }
                if last || made >= per_holding {
                    break;
                }
            }
        }
        Ok((out, leased))
    }

    /// Records one aggregation as `writing` with its members, and builds its `archive-put.start`.
    /// `None` when another round took some of the files first.
    async fn lease(
        &self,
        h: &holding::Model,
        files: &[Candidate],
    ) -> Result<Option<(RoutingKey, Envelope)>> {
        let ids: Vec<i64> = files.iter().map(|f| f.id).collect();
        let mut warm: HashMap<i64, location::Model> = HashMap::with_capacity(ids.len());
        let mut sums: HashMap<i64, String> = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(super::CHUNK) {
            warm.extend(
                location::Entity::find()
                    .filter(location::Column::FileId.is_in(chunk.iter().copied()))
                    .filter(location::Column::Tier.eq(Tier::Warm))
                    .all(&self.db)
                    .await?
                    .into_iter()
                    .map(|l| (l.file_id, l)),
            );
            sums.extend(
                checksum::Entity::find()
                    .filter(checksum::Column::FileId.is_in(chunk.iter().copied()))
                    .filter(checksum::Column::Algorithm.eq(BLAKE3))
                    .all(&self.db)
                    .await?
                    .into_iter()
                    .map(|c| (c.file_id, c.value)),
            );
        }
        let mut members = Vec::with_capacity(files.len());
        let mut tar = Vec::with_capacity(files.len());
        for f in files {
            let Some(w) = warm.get(&f.id) else { continue };
            let m = ArchiveMember {
                file_id: f.id,
                path: f.path.clone(),
                size: to_u64(f.size),
                mode: to_u32(f.mode),
                mtime_ns: f.mtime_ns,
                uid: to_u32(f.uid),
                gid: to_u32(f.gid),
                object: ObjectRef {
                    bucket: w.bucket.clone(),
                    key: w.key.clone(),
                    tenancy: w.tenancy.clone(),
                },
                blake3: sums.get(&f.id).cloned(),
            };
            tar.push(member_of(&m));
            members.push(m);
        }
        if members.is_empty() {
            return Ok(None);
        }
        let layout = aggregate::layout(&tar).map_err(|e| super::internal(e.to_string()))?;
        let tid = Uuid::new_v4();
        let name = format!("h{:06}/{}.tar", h.id, tid.simple());
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let agg = aggregation::Entity::insert(aggregation::ActiveModel {
            name: Set(name.clone()),
            transaction_id: Set(tid.to_string()),
            holding_id: Set(h.id),
            backend: Set(self.cold_backend.clone()),
            state: Set(aggregation::State::Writing),
            size: Set(to_i64(layout.size)),
            members: Set(members.len() as i64),
            created: Set(now),
            lease_until: Set(Some(
                now + chrono::Duration::seconds(
                    i64::try_from(self.archive.lease_secs).unwrap_or(i64::MAX / 2),
                ),
            )),
            ..Default::default()
        })
        .exec(&txn)
        .await?;
        let rows: Vec<aggregation_member::ActiveModel> = members
            .iter()
            .zip(&layout.placed)
            .enumerate()
            .map(|(i, (m, p))| aggregation_member::ActiveModel {
                aggregation_id: Set(agg.last_insert_id),
                file_id: Set(m.file_id),
                position: Set(i as i64),
                data_offset: Set(to_i64(p.data_offset)),
                ..Default::default()
            })
            .collect();
        for chunk in rows.chunks(super::CHUNK) {
            if let Err(e) = aggregation_member::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&txn)
                .await
            {
                if db::is_unique_violation(&e) {
                    // Another round took some of these files: leave them to it.
                    txn.rollback().await?;
                    return Ok(None);
                }
                return Err(e.into());
            }
        }
        txn.commit().await?;
        tracing::info!(
            aggregation = %name,
            holding_id = h.id,
            members = members.len(),
            bytes = layout.size,
            "aggregate leased for writing"
        );
        let job = Envelope::new(
            tid,
            &h.user,
            &h.group,
            ApiAction::ArchivePut,
            "archive",
            Payload::ArchiveAggregate {
                aggregation_id: agg.last_insert_id,
                name,
                holding_id: h.id,
                members,
            },
        );
        Ok(Some((
            RoutingKey::new(Worker::ArchivePut, Action::Start),
            job,
        )))
    }

    /// `catalog-archive-update.start` with [`Payload::ArchiveStored`]: the aggregation is on the
    /// cold store and verified; its members get their cold locations. Idempotent.
    pub(super) async fn archive_stored(
        &self,
        env: &Envelope,
        aggregation_id: i64,
        name: &str,
        sums: &AggregateSums,
    ) -> Result<Outcome> {
        let txn = self.db.begin().await?;
        let Some(agg) = aggregation::Entity::find_by_id(aggregation_id)
            .one(&txn)
            .await?
            .filter(|a| a.name == name)
        else {
            // The lease expired and the round gave the files to another aggregation: this copy
            // is not catalogued (the cold store keeps an orphan an audit can remove).
            tracing::warn!(aggregation = %name, transaction_id = %env.transaction_id,
                "a written aggregate is no longer leased; it is not catalogued");
            return Ok(Outcome::none());
        };
        if agg.state == aggregation::State::Stored {
            return Ok(Outcome::none());
        }
        if to_u64(agg.size) != sums.size {
            return Err(super::internal(format!(
                "aggregate {name} was written with {} bytes, its layout has {}",
                sums.size, agg.size
            )));
        }
        aggregation::Entity::update(aggregation::ActiveModel {
            id: Set(agg.id),
            state: Set(aggregation::State::Stored),
            adler32: Set(Some(i64::from(sums.adler32))),
            crc32c: Set(Some(i64::from(sums.crc32c))),
            blake3: Set(Some(sums.blake3.clone())),
            lease_until: Set(None),
            stored: Set(Some(Utc::now())),
            ..Default::default()
        })
        .exec(&txn)
        .await?;
        let members: Vec<i64> = aggregation_member::Entity::find()
            .select_only()
            .column(aggregation_member::Column::FileId)
            .filter(aggregation_member::Column::AggregationId.eq(agg.id))
            .into_tuple()
            .all(&txn)
            .await?;
        let rows = members
            .iter()
            .map(|&file_id| super::location_row(file_id, Tier::Cold, &agg.backend, &agg.name))
            .collect();
        let before = super::usage::counted(&txn, &members).await?;
        super::add_locations(&txn, rows).await?;
        super::usage::settle(&txn, &members, &before).await?;
        txn.commit().await?;
        tracing::info!(aggregation = %name, members = members.len(), "aggregate catalogued as stored");
        Ok(Outcome::none())
    }

    /// `catalog-archive-update.start` with [`Payload::Failed`]: the write failed; the aggregation
    /// is deleted so its files are eligible again.
    pub(super) async fn archive_failed(
        &self,
        env: &Envelope,
        files: &[FailedFile],
    ) -> Result<Outcome> {
        let gone = aggregation::Entity::delete_many()
            .filter(aggregation::Column::TransactionId.eq(env.transaction_id.to_string()))
            .filter(aggregation::Column::State.eq(aggregation::State::Writing))
            .exec(&self.db)
            .await?;
        let why: Vec<&str> = files.iter().map(|f| f.reason.as_str()).collect();
        tracing::warn!(transaction_id = %env.transaction_id, released = gone.rows_affected,
            reason = %why.join("; "), "archive write failed; its files are eligible again");
        Ok(Outcome::none())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod recall_tests;
