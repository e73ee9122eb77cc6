//! The catalogue's side of archiving (`catalog-archive-next.start`, `catalog-archive-update.start`).
//!
//! `archive_next` picks what to archive: every file with a warm copy, no cold copy and no place
//! in an aggregation, holding by holding, fairly (the holdings archived least recently first, a
//! bounded number of aggregates each per round). It packs them ([`aggregate::pack`]), records
//! each aggregation as `writing` with a lease and its members with their offsets, and sends one
//! `archive-put.start` per aggregation. A file is in at most one aggregation (a unique index), so
//! two rounds running at once never archive a file twice.
//!
//! Only when an archive-put worker reports the aggregation written and verified
//! (`archive_stored`) does the catalogue give its members cold locations. A failed write
//! (`archive_failed`) deletes the aggregation, and so does an expired lease at the next round
//! (a worker that died mid-write): the files are eligible again and nothing is marked archived.

use std::collections::HashMap;

use chrono::Utc;
use nlds_bus::Outcome;
use nlds_core::api::ApiAction;
use nlds_core::message::{AggregateSums, ArchiveMember, ObjectRef};
use nlds_core::{Action, Envelope, FailedFile, Payload, RoutingKey, Worker};
use nlds_storage::cold::aggregate::{self, member_of};
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;

use super::{BLAKE3, COLD, Catalogue, Result, WARM, to_i64, to_u32, to_u64};
use crate::db::{self, aggregation, aggregation_member, checksum, file, holding, location};

pub use nlds_settings::ArchiveConfig;

/// A recall not taken up by archive-get within this long is sent again by the next round.
fn stale_recall() -> chrono::Duration {
    chrono::Duration::minutes(5)
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
        .and_where(location::Column::Tier.eq(WARM))
        .to_owned();
    let cold = Query::select()
        .column((location::Entity, location::Column::FileId))
        .from(location::Entity)
        .and_where(location::Column::Tier.eq(COLD))
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
        let cfg = &self.archive;
        let now = Utc::now();
        // Writes that outlived their lease are given up: their files become eligible again.
        let expired = aggregation::Entity::delete_many()
            .filter(aggregation::Column::State.eq(aggregation::WRITING))
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
        let candidates: Vec<i64> = file::Entity::find()
            .select_only()
            .column(file::Column::HoldingId)
            .distinct()
            .filter(eligible())
            .into_tuple()
            .all(&self.db)
            .await?;
        // Deleted files past their retention are purged with every round.
        let purged = self.purge_expired().await?;
        if candidates.is_empty() {
            return Ok(then(
                purged,
                self.resend_stale_recalls(stale_recall()).await?,
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
        order.truncate(usize::try_from(cfg.holdings_per_round.max(1)).unwrap_or(usize::MAX));

        let mut out = then(purged, self.resend_stale_recalls(stale_recall()).await?);
        for holding_id in order {
            let Some(h) = holding::Entity::find_by_id(holding_id)
                .one(&self.db)
                .await?
            else {
                continue;
            };
            let limit = (cfg.aggregate_members.max(1) * cfg.aggregates_per_holding.max(1)) as u64;
            let files = file::Entity::find()
                .filter(eligible())
                .filter(file::Column::HoldingId.eq(holding_id))
                .order_by_asc(file::Column::Id)
                .limit(limit)
                .all(&self.db)
                .await?;
            let sizes: Vec<u64> = files.iter().map(|f| to_u64(f.size)).collect();
            let groups = aggregate::pack(&sizes, cfg.aggregate_bytes.max(1), cfg.aggregate_members);
            for group in groups.into_iter().take(cfg.aggregates_per_holding.max(1)) {
                let members: Vec<&file::Model> = group.iter().map(|&i| &files[i]).collect();
                if let Some((key, job)) = self.lease(&h, &members).await? {
                    out = out.and(key, job);
                }
            }
        }
        Ok(out)
    }

    /// Records one aggregation as `writing` with its members, and builds its `archive-put.start`.
    /// `None` when another round took some of the files first.
    async fn lease(
        &self,
        h: &holding::Model,
        files: &[&file::Model],
    ) -> Result<Option<(RoutingKey, Envelope)>> {
        let ids: Vec<i64> = files.iter().map(|f| f.id).collect();
        let warm: HashMap<i64, location::Model> = location::Entity::find()
            .filter(location::Column::FileId.is_in(ids.iter().copied()))
            .filter(location::Column::Tier.eq(WARM))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|l| (l.file_id, l))
            .collect();
        let sums: HashMap<i64, String> = checksum::Entity::find()
            .filter(checksum::Column::FileId.is_in(ids.iter().copied()))
            .filter(checksum::Column::Algorithm.eq(BLAKE3))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|c| (c.file_id, c.value))
            .collect();
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
            state: Set(aggregation::WRITING.into()),
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
        if agg.state == aggregation::STORED {
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
            state: Set(aggregation::STORED.into()),
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
            .map(|&file_id| super::location_row(file_id, COLD, &agg.backend, &agg.name))
            .collect();
        super::add_locations(&txn, rows).await?;
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
            .filter(aggregation::Column::State.eq(aggregation::WRITING))
            .exec(&self.db)
            .await?;
        let why: Vec<&str> = files.iter().map(|f| f.reason.as_str()).collect();
        tracing::warn!(transaction_id = %env.transaction_id, released = gone.rows_affected,
            reason = %why.join("; "), "archive write failed; its files are eligible again");
        Ok(Outcome::none())
    }
}

#[cfg(test)]
pub(super) mod tests_support {
    pub use super::tests::holding_with;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{testing, transaction};
    use nlds_bus::Handler;
    use sea_orm::{DatabaseConnection, PaginatorTrait};

    /// A holding of `sizes.len()` files, each with a warm copy; returns its id and file ids.
    pub async fn holding_with(
        db: &DatabaseConnection,
        label: &str,
        sizes: &[i64],
    ) -> (i64, Vec<i64>) {
        let now = Utc::now();
        let h = holding::Entity::insert(holding::ActiveModel {
            label: Set(label.into()),
            user: Set("alice".into()),
            group: Set("climate".into()),
            created: Set(now),
            ..Default::default()
        })
        .exec(db)
        .await
        .unwrap()
        .last_insert_id;
        let t = transaction::Entity::insert(transaction::ActiveModel {
            transaction_id: Set(Uuid::new_v4().to_string()),
            holding_id: Set(h),
            ingest_time: Set(now),
            ..Default::default()
        })
        .exec(db)
        .await
        .unwrap()
        .last_insert_id;
        let mut ids = Vec::new();
        for (i, s) in sizes.iter().enumerate() {
            let f = file::Entity::insert(file::ActiveModel {
                holding_id: Set(h),
                transaction_id: Set(t),
                path: Set(format!("/{label}/f{i}")),
                kind: Set("file".into()),
                size: Set(*s),
                uid: Set(1),
                gid: Set(1),
                mode: Set(0o644),
                mtime_ns: Set(0),
                ..Default::default()
            })
            .exec(db)
            .await
            .unwrap()
            .last_insert_id;
            location::Entity::insert(location::ActiveModel {
                file_id: Set(f),
                tier: Set(WARM.into()),
                bucket: Set("nlds".into()),
                key: Set(format!("tx/{label}/{i}")),
                created: Set(now),
                ..Default::default()
            })
            .exec(db)
            .await
            .unwrap();
            ids.push(f);
        }
        (h, ids)
    }

    fn key(w: Worker) -> RoutingKey {
        RoutingKey::new(w, Action::Start)
    }

    fn round() -> Envelope {
        Envelope::new(
            Uuid::new_v4(),
            "nlds",
            "nlds",
            ApiAction::ArchivePut,
            "archive-next",
            Payload::ArchiveNext,
        )
    }

    fn jobs(out: &Outcome) -> Vec<(Envelope, i64, String, Vec<ArchiveMember>)> {
        out.publish
            .iter()
            .map(|(k, e)| {
                assert_eq!(*k, key(Worker::ArchivePut));
                match &e.payload {
                    Payload::ArchiveAggregate {
                        aggregation_id,
                        name,
                        members,
                        ..
                    } => (e.clone(), *aggregation_id, name.clone(), members.clone()),
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    fn sums(size: u64) -> AggregateSums {
        AggregateSums {
            size,
            adler32: 7,
            crc32c: 9,
            blake3: "ab".into(),
        }
    }

    async fn cold_count(db: &DatabaseConnection) -> u64 {
        location::Entity::find()
            .filter(location::Column::Tier.eq(COLD))
            .count(db)
            .await
            .unwrap()
    }

    async fn scenario(db: DatabaseConnection) {
        let cfg = ArchiveConfig {
            aggregate_bytes: 100,
            aggregate_members: 3,
            holdings_per_round: 1,
            aggregates_per_holding: 2,
            lease_secs: 3600,
            ..Default::default()
        };
        let cat = Catalogue::new(db.clone(), 1000, 1 << 30).with_archive(cfg, "dir");
        let (h1, f1) = holding_with(&db, "one", &[10, 10, 10, 10, 500]).await;
        let (h2, _) = holding_with(&db, "two", &[1, 1]).await;

        // Round 1: one holding (the first, never archived), two aggregates of it.
        let out = cat
            .handle(key(Worker::CatalogArchiveNext), round())
            .await
            .unwrap();
        let js = jobs(&out);
        assert_eq!(js.len(), 2, "aggregates_per_holding bounds a round");
        assert!(
            js.iter()
                .all(|(e, ..)| e.user == "alice" && e.group == "climate")
        );
        let (agg_ids, names): (Vec<i64>, Vec<String>) =
            js.iter().map(|(_, id, n, _)| (*id, n.clone())).unzip();
        assert!(names.iter().all(|n| n.starts_with(&format!("h{h1:06}/"))));
        let sizes: Vec<Vec<u64>> = js
            .iter()
            .map(|(.., m)| m.iter().map(|m| m.size).collect())
            .collect();
        // In file order: three small files fill an aggregate (3 members at most), the large one
        // goes alone.
        assert_eq!(sizes, vec![vec![10, 10, 10], vec![500]]);
        assert_eq!(js[1].3[0].object.key, "tx/one/4");

        // Nothing is cold until a write is reported stored.
        assert_eq!(cold_count(&db).await, 0);

        // Round 2: holding two has never been archived, so it goes first (fairness).
        let out = cat
            .handle(key(Worker::CatalogArchiveNext), round())
            .await
            .unwrap();
        let js2 = jobs(&out);
        assert_eq!(js2.len(), 1);
        assert!(js2[0].2.starts_with(&format!("h{h2:06}/")), "{}", js2[0].2);
        // Round 3: back to holding one, whose leased files are not offered again.
        let out = cat
            .handle(key(Worker::CatalogArchiveNext), round())
            .await
            .unwrap();
        let js3 = jobs(&out);
        assert_eq!(js3.len(), 1);
        assert_eq!(js3[0].3.len(), 1, "only the file not yet leased");
        assert_eq!(js3[0].3[0].file_id, f1[3]);

        // Stored: members get cold locations (idempotent); the size must match the layout.
        let agg = aggregation::Entity::find_by_id(agg_ids[1])
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        let stored = |id: i64, name: &str, size: u64, env: &Envelope| {
            env.reply(Payload::ArchiveStored {
                aggregation_id: id,
                name: name.to_owned(),
                sums: sums(size),
            })
        };
        let upd = key(Worker::CatalogArchiveUpdate);
        let bad = cat
            .handle(upd, stored(agg.id, &agg.name, 1, &js[1].0))
            .await
            .unwrap_err();
        assert!(bad.message.contains("layout"), "{bad:?}");
        for _ in 0..2 {
            cat.handle(upd, stored(agg.id, &agg.name, to_u64(agg.size), &js[1].0))
                .await
                .unwrap();
        }
        assert_eq!(cold_count(&db).await, 1);
        let agg = aggregation::Entity::find_by_id(agg_ids[1])
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(agg.state, aggregation::STORED);
        assert_eq!((agg.adler32, agg.crc32c), (Some(7), Some(9)));
        assert!(agg.lease_until.is_none());

        // Failed: the aggregation is forgotten and its files are offered again.
        cat.handle(
            upd,
            js[0].0.reply(Payload::Failed {
                files: vec![FailedFile::new(
                    "aggregate x",
                    nlds_core::ErrorCode::StorageError,
                    "boom",
                )],
            }),
        )
        .await
        .unwrap();
        assert!(
            aggregation::Entity::find_by_id(agg_ids[0])
                .one(&db)
                .await
                .unwrap()
                .is_none()
        );
        // An expired lease frees its files too (a worker died mid-write).
        aggregation::Entity::update_many()
            .col_expr(
                aggregation::Column::LeaseUntil,
                sea_orm::sea_query::Expr::value(Utc::now() - chrono::Duration::seconds(1)),
            )
            .filter(aggregation::Column::State.eq(aggregation::WRITING))
            .exec(&db)
            .await
            .unwrap();
        let mut offered = Vec::new();
        for _ in 0..2 {
            let out = cat
                .handle(key(Worker::CatalogArchiveNext), round())
                .await
                .unwrap();
            offered.extend(
                jobs(&out)
                    .into_iter()
                    .flat_map(|(.., m)| m.into_iter().map(|m| m.file_id)),
            );
        }
        offered.sort();
        let mut want = vec![f1[0], f1[1], f1[2], f1[3]];
        want.extend(
            file::Entity::find()
                .filter(file::Column::HoldingId.eq(h2))
                .all(&db)
                .await
                .unwrap()
                .into_iter()
                .map(|f| f.id),
        );
        want.sort();
        assert_eq!(offered, want);
        // A late report for an aggregation whose lease expired is not catalogued.
        let before = cold_count(&db).await;
        cat.handle(upd, stored(js3[0].1, &js3[0].2, 1, &js3[0].0))
            .await
            .unwrap();
        assert_eq!(cold_count(&db).await, before);
    }

    #[tokio::test]
    async fn archive_rounds_lease_fairly_and_catalogue_only_stored_aggregates_sqlite() {
        scenario(testing::memory().await).await;
    }

    #[tokio::test]
    async fn archive_rounds_lease_fairly_and_catalogue_only_stored_aggregates_postgres() {
        let Some(pg) = testing::postgres("archive").await else {
            return;
        };
        scenario(pg.db.clone()).await;
        pg.drop_now().await;
    }
}

#[cfg(test)]
mod recall_tests {
    use super::*;
    use crate::db::{recall, testing};
    use nlds_bus::Handler;
    use nlds_core::message::HoldingFilter;

    fn starts(out: &Outcome) -> usize {
        out.publish
            .iter()
            .filter(|(k, _)| *k == RoutingKey::new(Worker::ArchiveGet, Action::Start))
            .count()
    }

    /// Concurrent gets share one recall; a recall nobody took up is sent again by the next round
    /// (and only until archive-get reports it).
    #[tokio::test]
    async fn recalls_are_shared_and_resent_until_taken_up() {
        let db = testing::memory().await;
        let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
        let (h, files) = super::tests_support::holding_with(&db, "r", &[5, 6]).await;
        let round = Envelope::new(
            Uuid::new_v4(),
            "nlds",
            "nlds",
            ApiAction::ArchivePut,
            "a",
            Payload::ArchiveNext,
        );
        let out = cat
            .handle(
                RoutingKey::new(Worker::CatalogArchiveNext, Action::Start),
                round.clone(),
            )
            .await
            .unwrap();
        let (job_key, job) = out.publish[0].clone();
        assert_eq!(job_key, RoutingKey::new(Worker::ArchivePut, Action::Start));
        let Payload::ArchiveAggregate {
            aggregation_id,
            name,
            ..
        } = &job.payload
        else {
            panic!()
        };
        let size = aggregation::Entity::find_by_id(*aggregation_id)
            .one(&db)
            .await
            .unwrap()
            .unwrap()
            .size;
        cat.handle(
            RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start),
            job.reply(Payload::ArchiveStored {
                aggregation_id: *aggregation_id,
                name: name.clone(),
                sums: AggregateSums {
                    size: to_u64(size),
                    adler32: 1,
                    crc32c: 2,
                    blake3: "b".into(),
                },
            }),
        )
        .await
        .unwrap();
        assert_eq!(cat.evict(h).await.unwrap().len(), files.len());

        let get = |tid: Uuid| {
            Envelope::new(
                tid,
                "alice",
                "climate",
                ApiAction::Get,
                "g",
                Payload::GetRequest {
                    filter: HoldingFilter {
                        holding_id: Some(h),
                        ..Default::default()
                    },
                    paths: vec!["/r/f0".into()],
                    regex: false,
                    target: Some("/t".into()),
                    overwrite: false,
                },
            )
        };
        let key = RoutingKey::new(Worker::CatalogGet, Action::Start);
        let first = cat.handle(key, get(Uuid::new_v4())).await.unwrap();
        let second = cat.handle(key, get(Uuid::new_v4())).await.unwrap();
        assert_eq!(
            (starts(&first), starts(&second)),
            (1, 0),
            "one recall for both gets"
        );

        // Nobody took it up (say the first start was lost): the next round sends it again.
        let age = |mins: i64| {
            let db = db.clone();
            async move {
                recall::Entity::update_many()
                    .col_expr(
                        recall::Column::Created,
                        sea_orm::sea_query::Expr::value(
                            Utc::now() - chrono::Duration::minutes(mins),
                        ),
                    )
                    .exec(&db)
                    .await
                    .unwrap();
            }
        };
        let next = RoutingKey::new(Worker::CatalogArchiveNext, Action::Start);
        assert_eq!(
            starts(&cat.handle(next, round.clone()).await.unwrap()),
            0,
            "too recent"
        );
        age(10).await;
        assert_eq!(starts(&cat.handle(next, round.clone()).await.unwrap()), 1);
        assert_eq!(
            starts(&cat.handle(next, round.clone()).await.unwrap()),
            0,
            "sent once per staleness"
        );
        // archive-get takes it up: never sent again.
        cat.handle(
            RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start),
            job.reply(Payload::RecallProgress {
                aggregation_id: *aggregation_id,
                state: nlds_core::State::ArchivePreparing,
            }),
        )
        .await
        .unwrap();
        age(10).await;
        assert_eq!(starts(&cat.handle(next, round).await.unwrap()), 0);
    }
}
