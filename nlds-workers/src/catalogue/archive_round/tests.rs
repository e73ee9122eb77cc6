use super::*;
use crate::db::testing::{self, holding_with};
use nlds_bus::Handler;
use nlds_core::api::Tier;
use sea_orm::{DatabaseConnection, PaginatorTrait};

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
        .filter(location::Column::Tier.eq(Tier::Cold))
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
    assert_eq!(agg.state, aggregation::State::Stored);
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
        .filter(aggregation::Column::State.eq(aggregation::State::Writing))
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

/// The file ids of each aggregate a round leased.
fn leased_files(out: &Outcome) -> Vec<Vec<i64>> {
    jobs(out)
        .iter()
        .map(|(.., m)| m.iter().map(|m| m.file_id).collect())
        .collect()
}

/// A holding of more eligible files than a round reads at once ([`PAGE`]): the aggregates span
/// pages, hold the files in id order, and a later round goes on where the leases stopped.
async fn pages(db: DatabaseConnection) {
    const FILES: usize = 2 * PAGE as usize + 500;
    let cfg = ArchiveConfig {
        aggregate_bytes: 1 << 30,
        aggregate_members: 600,
        holdings_per_round: 1,
        aggregates_per_holding: 3,
        lease_secs: 3600,
        ..Default::default()
    };
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30).with_archive(cfg, "dir");
    let (_, ids) = holding_with(&db, "many", &vec![1; FILES]).await;

    let out = cat
        .handle(key(Worker::CatalogArchiveNext), round())
        .await
        .unwrap();
    let members = leased_files(&out);
    // Three aggregates of 600: the second ends in the second page.
    assert_eq!(
        members,
        vec![
            ids[..600].to_vec(),
            ids[600..1200].to_vec(),
            ids[1200..1800].to_vec()
        ]
    );

    // The next round: the rest, the last aggregate not full.
    let out = cat
        .handle(key(Worker::CatalogArchiveNext), round())
        .await
        .unwrap();
    let members = leased_files(&out);
    assert_eq!(
        members,
        vec![ids[1800..2400].to_vec(), ids[2400..].to_vec()]
    );
    // Nothing is left to archive.
    let out = cat
        .handle(key(Worker::CatalogArchiveNext), round())
        .await
        .unwrap();
    assert!(jobs(&out).is_empty());
}

#[tokio::test]
async fn a_round_reads_a_large_holding_a_page_at_a_time_sqlite() {
    pages(testing::memory().await).await;
}

#[tokio::test]
async fn a_round_reads_a_large_holding_a_page_at_a_time_postgres() {
    let Some(pg) = testing::postgres("archive_pages").await else {
        return;
    };
    pages(pg.db.clone()).await;
    pg.drop_now().await;
}
