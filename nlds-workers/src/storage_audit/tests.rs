//! The storage audit on real services: moto S3 (`NLDS_TEST_S3_ENDPOINT`), the `dir` cold store,
//! SQLite and PostgreSQL (`NLDS_TEST_DATABASE_URL`). Aggregates are written by the real archive
//! round (catalogue + archive-put). Each fault is injected on its own copy, and the audit must
//! find exactly those, and the repair fix all it can.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use nlds_bus::Handler;
use nlds_core::api::{ApiAction, Tier};
use nlds_core::storage_audit::{AuditRequest, FindingKind};
use nlds_core::{Action, Envelope, Payload, RoutingKey, Worker};
use nlds_settings::ArchiveConfig;
use nlds_storage::cold::ColdStore;
use nlds_storage::cold::dir::{DirConfig, DirStore};
use nlds_storage::s3::S3Clients;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::Expr,
};
use uuid::Uuid;

use super::StorageAudit;
use crate::archive_put::ArchivePut;
use crate::catalogue::Catalogue;
use crate::db::testing::{self, holding_with};
use crate::db::{aggregation, checksum, location};
use crate::s3_testing::TestBucket;

struct Fixture {
    db: DatabaseConnection,
    s3: TestBucket,
    _root: tempfile::TempDir,
    cold: DirStore,
}

/// A file's content: deterministic, of a size that differs per file.
fn content(label: &str, i: usize) -> Vec<u8> {
    format!("{label}:{i};")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(100 + 37 * i)
        .collect()
}

impl Fixture {
    fn audit(&self) -> StorageAudit {
        StorageAudit::new(
            self.db.clone(),
            S3Clients::single(self.s3.client.clone(), self.s3.bucket.clone()),
            Some(Arc::new(self.cold.clone()) as Arc<dyn ColdStore>),
        )
        .with_stage_wait(Duration::from_secs(10))
    }

    /// A holding of `n` files, each stored in the test bucket with its blake3 catalogued.
    async fn holding(&self, label: &str, n: usize) -> Vec<i64> {
        let sizes: Vec<i64> = (0..n).map(|i| content(label, i).len() as i64).collect();
        let (_, ids) = holding_with(&self.db, label, &sizes).await;
        location::Entity::update_many()
            .col_expr(
                location::Column::Bucket,
                Expr::value(self.s3.bucket.clone()),
            )
            .filter(location::Column::FileId.is_in(ids.clone()))
            .exec(&self.db)
            .await
            .unwrap();
        for (i, id) in ids.iter().enumerate() {
            let body = content(label, i);
            self.s3.put(&format!("tx/{label}/{i}"), &body).await;
            checksum::Entity::insert(checksum::ActiveModel {
                file_id: Set(*id),
                algorithm: Set("blake3".into()),
                value: Set(blake3::hash(&body).to_hex().to_string()),
                ..Default::default()
            })
            .exec(&self.db)
            .await
            .unwrap();
        }
        ids
    }

    /// One archive round through the catalogue and archive-put (each report handed back to the
    /// catalogue as the router does); how many aggregates were stored.
    async fn archive_round(&self) -> usize {
        let cat = Catalogue::new(self.db.clone(), 1000, 1 << 30).with_archive(
            ArchiveConfig {
                aggregate_members: 100,
                holdings_per_round: 100,
                ..Default::default()
            },
            "dir",
        );
        let put = ArchivePut::with_clients(
            S3Clients::single(self.s3.client.clone(), self.s3.bucket.clone()),
            Arc::new(self.cold.clone()),
        );
        let round = Envelope::new(
            Uuid::new_v4(),
            "nlds",
            "nlds",
            ApiAction::ArchivePut,
            "archive-next",
            Payload::ArchiveNext,
        );
        let out = cat
            .handle(
                RoutingKey::new(Worker::CatalogArchiveNext, Action::Start),
                round,
            )
            .await
            .unwrap();
        let jobs: Vec<_> = out
            .publish
            .into_iter()
            .filter(|(k, _)| *k == RoutingKey::new(Worker::ArchivePut, Action::Start))
            .collect();
        let mut stored = 0;
        for (key, env) in &jobs {
            let done = put.handle(*key, env.clone()).await.unwrap();
            let (k, reply) = done.publish.into_iter().next().unwrap();
            if k == RoutingKey::new(Worker::ArchivePut, Action::Complete) {
                stored += 1;
            }
            cat.handle(
                RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start),
                reply,
            )
            .await
            .unwrap();
        }
        stored
    }

    /// The name of the aggregation holding file `id`.
    async fn aggregate_of(&self, id: i64) -> String {
        location::Entity::find()
            .filter(location::Column::FileId.eq(id))
            .filter(location::Column::Tier.eq(Tier::Cold))
            .one(&self.db)
            .await
            .unwrap()
            .expect("a cold copy")
            .key
    }
}

/// What a report found, as (kind, tier, object) for comparing as a set.
fn found(
    r: &nlds_core::storage_audit::AuditReport,
) -> BTreeSet<(FindingKind, &'static str, String)> {
    r.findings
        .iter()
        .map(|f| (f.kind, f.tier.into(), f.object.clone()))
        .collect()
}

fn scrub_all() -> AuditRequest {
    AuditRequest {
        scrub: true,
        ..Default::default()
    }
}

async fn scenario(db: DatabaseConnection, test: &str) {
    let Some(s3) = TestBucket::new(test).await else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let cold = DirStore::new(DirConfig {
        root: root.path().to_path_buf(),
        stage_delay_ms: 0,
    })
    .unwrap();
    let fx = Fixture {
        db,
        s3,
        _root: root,
        cold,
    };
    let bucket = fx.s3.bucket.clone();
    let url = |key: &str| format!("s3://{bucket}/{key}");

    let a = fx.holding("a", 3).await;
    let b = fx.holding("b", 2).await;
    assert_eq!(fx.archive_round().await, 2, "one aggregate per holding");
    fx.holding("w", 2).await; // warm only
    let agg_a = fx.aggregate_of(a[0]).await;
    let agg_b = fx.aggregate_of(b[0]).await;

    // Before any fault: nothing found, everything looked at.
    let clean = fx.audit().run(&scrub_all(), "operator").await.unwrap();
    assert!(clean.findings.is_empty(), "{:#?}", clean.findings);
    assert_eq!(clean.counts.warm_objects, 7);
    assert_eq!(clean.counts.warm_locations, 7);
    assert_eq!(clean.counts.aggregates, 2);
    assert_eq!(clean.counts.aggregations, 2);
    assert_eq!(
        clean.counts.scrubbed, 9,
        "7 warm copies and 2 aggregates re-read"
    );

    // The faults, each on its own copy.
    fx.s3
        .client
        .delete_object()
        .bucket(&bucket)
        .key("tx/a/0")
        .send()
        .await
        .unwrap(); // lost
    let mut flipped = content("a", 1);
    flipped[10] ^= 0x01;
    fx.s3.put("tx/a/1", &flipped).await; // corrupt, same size
    let mut longer = content("a", 2);
    longer.push(b'!');
    fx.s3.put("tx/a/2", &longer).await; // size mismatch
    fx.s3.put("tx/stray/object", b"nobody's").await; // dark
    fx.cold.remove(&agg_b).await.unwrap(); // a lost aggregate
    let stray_tar = vec![0u8; 1024];
    fx.cold
        .write(
            "h999/stray.tar",
            stray_tar.len() as u64,
            Box::pin(std::io::Cursor::new(stray_tar.clone())),
        )
        .await
        .unwrap(); // a dark aggregate
    let (_, orphan) = holding_with(&fx.db, "o", &[42]).await; // a row without storage
    location::Entity::update_many()
        .col_expr(location::Column::Bucket, Expr::value(bucket.clone()))
        .filter(location::Column::FileId.is_in(orphan.clone()))
        .exec(&fx.db)
        .await
        .unwrap();

    let mut expected: BTreeSet<(FindingKind, &'static str, String)> = [
        (FindingKind::Lost, "warm", url("tx/a/0")),
        (FindingKind::SizeMismatch, "warm", url("tx/a/2")),
        (FindingKind::Dark, "warm", url("tx/stray/object")),
        (FindingKind::Lost, "warm", url("tx/o/0")),
        (FindingKind::Lost, "cold", format!("cold:{agg_b}")),
        (FindingKind::Dark, "cold", "cold:h999/stray.tar".into()),
    ]
    .into_iter()
    .collect();

    // Without a scrub the flipped byte goes unseen; with one it is found too. Nothing else.
    let plain = AuditRequest::default();
    let r = fx.audit().run(&plain, "operator").await.unwrap();
    assert_eq!(found(&r), expected);
    expected.insert((FindingKind::Corrupt, "warm", url("tx/a/1")));
    let r = fx.audit().run(&scrub_all(), "operator").await.unwrap();
    assert_eq!(found(&r), expected, "{:#?}", r.findings);
    assert_eq!(
        (
            r.counts.dark,
            r.counts.lost,
            r.counts.size_mismatch,
            r.counts.corrupt
        ),
        (2, 3, 1, 1)
    );
    assert!(r.findings.iter().all(|f| f.repair.is_none() && !f.repaired));
    let corrupt = r
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::Corrupt)
        .unwrap();
    assert_eq!(corrupt.path.as_deref(), Some("/a/f1"));
    assert_eq!(corrupt.file_id, Some(a[1]));
    // Only the audit's own reads happened: nothing was changed.
    assert_eq!(fx.s3.get("tx/a/1").await.unwrap(), flipped);
    assert!(fx.s3.get("tx/stray/object").await.is_some());

    // A sample scrubs that many of each tier.
    let sampled = fx
        .audit()
        .run(
            &AuditRequest {
                scrub: true,
                sample: Some(1),
                ..Default::default()
            },
            "operator",
        )
        .await
        .unwrap();
    assert_eq!(
        sampled.counts.scrubbed, 2,
        "one warm copy and one aggregate"
    );

    // The repair: all but the row without any copy.
    let repair = AuditRequest {
        scrub: true,
        repair: true,
        ..Default::default()
    };
    let r = fx.audit().run(&repair, "operator").await.unwrap();
    assert_eq!(found(&r), expected);
    for f in &r.findings {
        let unrepairable = f.object == url("tx/o/0");
        assert_eq!(f.repaired, !unrepairable, "{f:#?}");
        assert!(f.repair.is_some(), "{f:#?}");
    }
    let orphan_finding = r
        .findings
        .iter()
        .find(|f| f.object == url("tx/o/0"))
        .unwrap();
    assert!(
        orphan_finding
            .repair
            .as_deref()
            .unwrap()
            .contains("no other copy"),
        "{orphan_finding:#?}"
    );
    assert_eq!(r.counts.repaired, 6);

    // Restored copies are the originals; the stray object and aggregate are quarantined.
    for i in 0..3 {
        assert_eq!(
            fx.s3.get(&format!("tx/a/{i}")).await.unwrap(),
            content("a", i)
        );
    }
    assert_eq!(fx.s3.get("tx/stray/object").await, None);
    let quarantined = fx.s3.keys("quarantine/").await;
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(
        quarantined[0].ends_with("/tx/stray/object"),
        "{quarantined:?}"
    );
    assert_eq!(fx.s3.get(&quarantined[0]).await.unwrap(), b"nobody's");
    let tape: Vec<String> = fx
        .cold
        .list()
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(!tape.contains(&"h999/stray.tar".to_owned()), "{tape:?}");
    assert!(
        tape.iter()
            .any(|n| n.starts_with("quarantine/") && n.ends_with("/h999/stray.tar")),
        "{tape:?}"
    );
    // The lost aggregate is forgotten: its files are warm only, and archived again.
    assert_eq!(
        aggregation::Entity::find()
            .filter(aggregation::Column::Name.eq(&agg_b))
            .count(&fx.db)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        location::Entity::find()
            .filter(location::Column::FileId.is_in(b.clone()))
            .filter(location::Column::Tier.eq(Tier::Cold))
            .count(&fx.db)
            .await
            .unwrap(),
        0
    );

    // The re-audit finds only what could not be repaired.
    let after = fx.audit().run(&scrub_all(), "operator").await.unwrap();
    assert_eq!(
        found(&after),
        [(FindingKind::Lost, "warm", url("tx/o/0"))]
            .into_iter()
            .collect(),
        "{:#?}",
        after.findings
    );
    // The next archive round writes b's files again (and w's, warm only so far; o's has no
    // copy to read, so its aggregate fails and is forgotten).
    assert_eq!(fx.archive_round().await, 2);
    let b_again = fx.aggregate_of(b[0]).await;
    assert_ne!(b_again, agg_b);
    let after = fx.audit().run(&scrub_all(), "operator").await.unwrap();
    assert_eq!(after.counts.findings(), 1, "{:#?}", after.findings);
    assert_eq!(after.counts.aggregations, 3);
    let _ = agg_a;

    // Only the operator's purge deletes the quarantine.
    let purged = fx.audit().purge_quarantine(None).await.unwrap();
    assert_eq!(purged.objects, 2);
    assert_eq!(purged.bytes, 8 + 1024);
    assert!(fx.s3.keys("quarantine/").await.is_empty());
    let tape = fx.cold.list().await.unwrap().unwrap();
    assert!(
        tape.iter().all(|(n, _)| !n.starts_with("quarantine/")),
        "{tape:?}"
    );

    fx.s3.remove().await;
}

#[tokio::test]
async fn sqlite_audit_finds_each_fault_and_repairs_it() {
    scenario(testing::memory().await, "storage_audit_sqlite").await;
}

#[tokio::test]
async fn postgres_audit_finds_each_fault_and_repairs_it() {
    let Some(pg) = testing::postgres("storage_audit").await else {
        return;
    };
    scenario(pg.db.clone(), "storage_audit_postgres").await;
    pg.drop_now().await;
}

/// A run whose process died keeps no lease: listing the runs closes it with the reason, while a
/// run whose lease is renewed stays "running".
async fn abandoned_runs(db: DatabaseConnection) {
    use super::{runner::LEASE, store};
    let req = AuditRequest::default();
    let dead = store::started(&db, "operator", &req).await.unwrap();
    // A live process holds the lease: its run is running.
    crate::policy::lease::take(&db, LEASE, "host:1:live", 120)
        .await
        .unwrap()
        .unwrap();
    let runs = store::recent(&db, 10).await.unwrap();
    assert_eq!(runs[0].id, Some(dead));
    assert_eq!(runs[0].notes, vec!["running".to_owned()]);
    // The lease runs out (the process was killed): the run is closed, with why.
    crate::policy::lease::give_up(&db, LEASE, "host:1:live")
        .await
        .unwrap();
    let runs = store::recent(&db, 10).await.unwrap();
    assert_eq!(
        runs[0].notes,
        vec![format!("stopped: {}", store::ABANDONED)],
        "{runs:?}"
    );
    assert!(runs[0].finished >= runs[0].started);
    // Closed once: a later listing changes nothing.
    assert_eq!(store::close_abandoned(&db, LEASE).await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_runs_of_a_dead_process_are_closed() {
    abandoned_runs(testing::memory().await).await;
}

#[tokio::test]
async fn postgres_runs_of_a_dead_process_are_closed() {
    let Some(pg) = testing::postgres("storage_audit_abandoned").await else {
        return;
    };
    abandoned_runs(pg.db.clone()).await;
    pg.drop_now().await;
}
