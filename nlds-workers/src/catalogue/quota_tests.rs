//! Tests of quotas and the usage counters, on SQLite and PostgreSQL.

use std::sync::Arc;

use super::*;
use crate::db::testing;
use crate::db::{aggregation, outbox, quota_reservation, submission, transaction};
use nlds_core::api::ApiAction;
use nlds_core::message::ObjectRef;
use nlds_core::quota::{GroupQuota, SetQuota, SizeHint};
use nlds_core::{AccessRole, ErrorCode, FailedFile, PathKind};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

const G: &str = "climate";

fn env(group: &str, t: Uuid, action: ApiAction, payload: Payload) -> Envelope {
    Envelope::new(t, "alice", group, action, "job", payload)
}

fn rec(path: &str, size: u64) -> FileRecord {
    FileRecord {
        path: path.into(),
        kind: PathKind::File,
        link_target: None,
        size,
        uid: 1,
        gid: 1,
        mode: 0o644,
        mtime_ns: 0,
        blake3: Some("b3".into()),
        object: Some(ObjectRef {
            bucket: "nlds".into(),
            key: format!("obj{path}"),
            tenancy: None,
        }),
        holding_id: None,
        xattrs: Vec::new(),
        new_version: false,
    }
}

async fn rpc(cat: &Catalogue, action: Action, e: Envelope) -> RpcReply {
    let out = cat
        .handle(RoutingKey::new(Worker::Catalog, action), e)
        .await
        .unwrap();
    match out.reply.expect("an RPC replies").payload {
        Payload::Reply(r) => r,
        other => panic!("not a reply: {other:?}"),
    }
}

/// `catalog.setup` of a put of `/data` into holding `label`: the holding id, or the refusal.
async fn accept(
    cat: &Catalogue,
    t: Uuid,
    label: &str,
    hint: Option<SizeHint>,
) -> std::result::Result<i64, ApiError> {
    let p = Payload::SetupHolding {
        label: Some(label.into()),
        holding_id: None,
        tags: Default::default(),
        paths: vec!["/data".into()],
        size_hint: hint,
    };
    match rpc(cat, Action::Setup, env(G, t, ApiAction::Put, p)).await {
        RpcReply::Holding { id, .. } => Ok(id),
        RpcReply::Error(e) => Err(e),
        other => panic!("{other:?}"),
    }
}

fn files(h: i64, files: Vec<FileRecord>) -> Payload {
    Payload::Files {
        context: Vec::new(),
        failed: Vec::new(),
        holding_id: Some(h),
        files,
        target: None,
        overwrite: false,
    }
}

/// `catalog-check` of a batch: the paths kept and the files failed.
async fn check(
    cat: &Catalogue,
    t: Uuid,
    h: i64,
    batch: Vec<FileRecord>,
) -> (Vec<String>, Vec<FailedFile>) {
    let out = redelivered(
        cat,
        Worker::CatalogCheck,
        env(G, t, ApiAction::Put, files(h, batch)),
    )
    .await;
    match &out.publish[0].1.payload {
        Payload::Files { files, failed, .. } => (
            files.iter().map(|f| f.path.clone()).collect(),
            failed.clone(),
        ),
        other => panic!("{other:?}"),
    }
}

async fn put(cat: &Catalogue, t: Uuid, h: i64, batch: Vec<FileRecord>) {
    redelivered(
        cat,
        Worker::CatalogPut,
        env(G, t, ApiAction::Put, files(h, batch)),
    )
    .await;
}

/// Handles `<worker>.start` as the bus would: a transient failure (SQLite's writers contending)
/// is delivered again.
async fn redelivered(cat: &Catalogue, w: Worker, e: Envelope) -> Outcome {
    let mut attempts = 0;
    loop {
        match cat
            .handle(RoutingKey::new(w, Action::Start), e.clone())
            .await
        {
            Ok(out) => return out,
            Err(err) if err.retryable && attempts < 50 => attempts += 1,
            Err(err) => panic!("{err:?}"),
        }
    }
}

/// Checks and stores a batch that must fit.
async fn check_and_put(cat: &Catalogue, t: Uuid, h: i64, batch: Vec<FileRecord>) {
    let (kept, failed) = check(cat, t, h, batch.clone()).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(kept.len(), batch.len());
    put(cat, t, h, batch).await;
}

fn admin(payload: Payload) -> Envelope {
    Envelope::new(
        Uuid::new_v4(),
        "operator",
        "ops",
        ApiAction::Put,
        "rpc",
        payload,
    )
    .with_role(AccessRole::Admin)
}

async fn set_quota(cat: &Catalogue, warm: Option<u64>, files: Option<u64>) -> GroupQuota {
    let change = SetQuota {
        warm_bytes: Some(warm),
        cold_bytes: None,
        files: Some(files),
    };
    let p = Payload::QuotaSet {
        group: G.into(),
        change,
    };
    match rpc(cat, Action::QuotaSet, admin(p)).await {
        RpcReply::Quota(mut r) => r.groups.remove(0),
        other => panic!("{other:?}"),
    }
}

async fn show(cat: &Catalogue) -> GroupQuota {
    let p = Payload::QuotaShow {
        groups: Some(vec![G.into()]),
    };
    match rpc(cat, Action::Quota, admin(p)).await {
        RpcReply::Quota(mut r) => r.groups.remove(0),
        other => panic!("{other:?}"),
    }
}

/// The usage counters equal what the catalogue holds.
async fn counters_are_true(db: &DatabaseConnection, when: &str) {
    let stored = usage::stored(db).await.unwrap();
    let truth = usage::recompute(db).await.unwrap();
    assert_eq!(stored, truth, "usage counters after {when}");
}

fn hint(bytes: u64, files: u64) -> Option<SizeHint> {
    Some(SizeHint { bytes, files })
}

fn t(n: u128) -> Uuid {
    Uuid::from_u128(0x9a00_0000_0000_4000_8000_0000_0000_0000 + n)
}

/// Refusal at submit, reservation, settlement, per-batch checks, space given back by delete.
async fn quota_rules(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let q = set_quota(&cat, Some(1000), Some(10)).await;
    assert_eq!(q.limits.warm_bytes, Some(1000));
    assert_eq!(q.limits.files, Some(10));

    // Reserved at submit.
    let h1 = accept(&cat, t(1), "one", hint(600, 3)).await.unwrap();
    let q = show(&cat).await;
    assert_eq!((q.reserved.bytes, q.reserved.files), (600, 3));

    // A put that does not fit beside the reservation is refused, naming group, usage, limit
    // and size, and stores nothing.
    let outbox_before = outbox::Entity::find().count(&db).await.unwrap();
    let e = accept(&cat, t(2), "refused", hint(500, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::QuotaExceeded);
    for part in [
        "group climate",
        "needs 500 B",
        "1000 B limit",
        "0 B is used",
        "600 B reserved",
    ] {
        assert!(e.message.contains(part), "{part:?} not in {}", e.message);
    }
    assert!(
        e.message.contains("nlds admin quota set climate"),
        "{}",
        e.message
    );
    let tid2 = t(2).to_string();
    assert_eq!(
        crate::db::holding::Entity::find()
            .filter(crate::db::holding::Column::Label.eq("refused"))
            .count(&db)
            .await
            .unwrap(),
        0,
        "no holding"
    );
    for n in [
        transaction::Entity::find()
            .filter(transaction::Column::TransactionId.eq(tid2.as_str()))
            .count(&db)
            .await
            .unwrap(),
        submission::Entity::find()
            .filter(submission::Column::TransactionId.eq(tid2.as_str()))
            .count(&db)
            .await
            .unwrap(),
        quota_reservation::Entity::find()
            .filter(quota_reservation::Column::TransactionId.eq(tid2.as_str()))
            .count(&db)
            .await
            .unwrap(),
    ] {
        assert_eq!(n, 0, "a refused put stores nothing");
    }
    assert_eq!(
        outbox::Entity::find().count(&db).await.unwrap(),
        outbox_before
    );
    // Retrying an accepted put is not refused (nothing new is reserved).
    assert_eq!(accept(&cat, t(1), "one", hint(600, 3)).await, Ok(h1));

    // Settled at catalog-put: usage up, reservation down.
    check_and_put(
        &cat,
        t(1),
        h1,
        vec![rec("/a", 200), rec("/b", 200), rec("/c", 200)],
    )
    .await;
    let q = show(&cat).await;
    assert_eq!((q.usage.warm.bytes, q.usage.warm.files), (600, 3));
    assert_eq!((q.usage.all.bytes, q.usage.all.files), (600, 3));
    assert_eq!((q.reserved.bytes, q.reserved.files), (0, 0));
    counters_are_true(&db, "put").await;

    assert_eq!(
        accept(&cat, t(3), "three", hint(500, 1))
            .await
            .unwrap_err()
            .code,
        ErrorCode::QuotaExceeded
    );
    // Without a hint a put below the limit is accepted and checked batch by batch.
    let h4 = accept(&cat, t(4), "four", None).await.unwrap();
    check_and_put(&cat, t(4), h4, vec![rec("/d", 150), rec("/e", 150)]).await;
    let (kept, failed) = check(&cat, t(4), h4, vec![rec("/f", 100), rec("/g", 100)]).await;
    assert!(kept.is_empty(), "a batch past the limit transfers nothing");
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|f| f.code == ErrorCode::QuotaExceeded));
    assert!(
        failed[0]
            .reason
            .starts_with("/f: group climate would exceed its warm quota"),
        "{}",
        failed[0].reason
    );
    assert!(
        failed[0].reason.contains("1000 B limit"),
        "{}",
        failed[0].reason
    );
    // One that fits passes.
    check_and_put(&cat, t(4), h4, vec![rec("/f", 100)]).await;
    assert_eq!(show(&cat).await.usage.warm.bytes, 1000);
    // At the limit, a put without a hint is refused at submit.
    assert_eq!(
        accept(&cat, t(5), "five", None).await.unwrap_err().code,
        ErrorCode::QuotaExceeded
    );

    // Deleting gives the space back; the refused put now fits.
    let del = Payload::Delete {
        filter: HoldingFilter {
            holding_id: Some(h1),
            ..Default::default()
        },
        paths: Vec::new(),
        regex: false,
        dry_run: false,
    };
    let e = env(G, Uuid::new_v4(), ApiAction::Del, del).with_role(AccessRole::User);
    assert!(matches!(
        rpc(&cat, Action::Del, e).await,
        RpcReply::Deleted(_)
    ));
    let q = show(&cat).await;
    assert_eq!((q.usage.warm.bytes, q.usage.all.files), (400, 3));
    counters_are_true(&db, "delete").await;
    assert!(accept(&cat, t(3), "three", hint(500, 1)).await.is_ok());

    // The file limit counts too.
    set_quota(&cat, None, Some(4)).await;
    let e = accept(&cat, t(6), "six", hint(1, 2)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::QuotaExceeded);
    assert!(e.message.contains("file quota"), "{}", e.message);
    // Clearing the limits lets it in.
    set_quota(&cat, None, None).await;
    assert!(accept(&cat, t(6), "six", hint(1, 2)).await.is_ok());
}

/// The counters equal the catalogue after put, archive, evict, delete, undelete and purge.
async fn counters_follow_every_change(db: DatabaseConnection) {
    let cat =
        Catalogue::new(db.clone(), 1000, 1 << 30).with_archive(ArchiveConfig::default(), "dir");
    let h = accept(&cat, t(10), "data", None).await.unwrap();
    let mut dir = rec("/d", 4096);
    dir.kind = PathKind::Directory;
    dir.object = None;
    dir.blake3 = None;
    check_and_put(
        &cat,
        t(10),
        h,
        vec![dir, rec("/d/a", 10), rec("/d/b", 20), rec("/d/c", 30)],
    )
    .await;
    let q = show(&cat).await;
    assert_eq!((q.usage.warm.bytes, q.usage.warm.files), (60, 3));
    assert_eq!(
        (q.usage.all.bytes, q.usage.all.files),
        (60, 4),
        "a directory is a file of 0 bytes"
    );
    counters_are_true(&db, "put").await;

    // Archive: every file gets a cold copy.
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
    assert!(!out.publish.is_empty(), "an aggregate is written");
    for (_, job) in &out.publish {
        let Payload::ArchiveAggregate {
            aggregation_id,
            name,
            ..
        } = &job.payload
        else {
            panic!("{:?}", job.payload)
        };
        let agg = aggregation::Entity::find_by_id(*aggregation_id)
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        let stored = job.reply(Payload::ArchiveStored {
            aggregation_id: *aggregation_id,
            name: name.clone(),
            sums: nlds_core::message::AggregateSums {
                size: to_u64(agg.size),
                adler32: 1,
                crc32c: 2,
                blake3: "b3".into(),
            },
        });
        cat.handle(
            RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start),
            stored,
        )
        .await
        .unwrap();
    }
    let q = show(&cat).await;
    assert_eq!((q.usage.cold.bytes, q.usage.cold.files), (60, 3));
    counters_are_true(&db, "archive").await;

    // Evict: the warm usage goes, the cold stays.
    let evict = admin(Payload::Evict { holding_id: h });
    assert_eq!(cat.evict(&evict, h).await.unwrap().len(), 3);
    let q = show(&cat).await;
    assert_eq!((q.usage.warm.bytes, q.usage.warm.files), (0, 0));
    assert_eq!(q.usage.cold.bytes, 60);
    counters_are_true(&db, "evict").await;

    // Delete one file, undelete it, delete it again and purge.
    let sel = |p: Payload| env(G, Uuid::new_v4(), ApiAction::Del, p).with_role(AccessRole::User);
    let filter = HoldingFilter {
        holding_id: Some(h),
        ..Default::default()
    };
    let del = || Payload::Delete {
        filter: filter.clone(),
        paths: vec!["/d/c".into()],
        regex: false,
        dry_run: false,
    };
    assert!(matches!(
        rpc(&cat, Action::Del, sel(del())).await,
        RpcReply::Deleted(_)
    ));
    let q = show(&cat).await;
    assert_eq!(
        (q.usage.cold.bytes, q.usage.all.bytes, q.usage.all.files),
        (30, 30, 3)
    );
    counters_are_true(&db, "delete").await;
    let undel = Payload::Undelete {
        filter: filter.clone(),
        paths: vec!["/d/c".into()],
        regex: false,
        dry_run: false,
    };
    assert!(matches!(
        rpc(&cat, Action::Undelete, sel(undel)).await,
        RpcReply::Deleted(_)
    ));
    assert_eq!(show(&cat).await.usage.cold.bytes, 60);
    counters_are_true(&db, "undelete").await;
    assert!(matches!(
        rpc(&cat, Action::Del, sel(del())).await,
        RpcReply::Deleted(_)
    ));
    let purge = admin(Payload::Purge {
        holding_id: Some(h),
    });
    assert!(matches!(
        rpc(&cat, Action::Purge, purge).await,
        RpcReply::Purged { .. }
    ));
    assert_eq!(show(&cat).await.usage.cold.bytes, 30);
    counters_are_true(&db, "purge").await;
}

/// Six puts of a quarter of the limit each, at once: four are accepted, the usage never ends
/// above the limit. Then six puts without a hint race batch by batch: four batches pass.
async fn racing_puts(db: DatabaseConnection) {
    let cat = Arc::new(Catalogue::new(db.clone(), 1000, 1 << 30));
    set_quota(&cat, Some(1000), None).await;
    let tasks: Vec<_> = (0..6u128)
        .map(|i| {
            let cat = cat.clone();
            tokio::spawn(async move {
                accept(&cat, t(20 + i), &format!("race{i}"), hint(250, 1))
                    .await
                    .map(|h| (i, h))
            })
        })
        .collect();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(x) => accepted.push(x),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e:?}");
                refused += 1;
            }
        }
    }
    assert_eq!((accepted.len(), refused), (4, 2));
    assert_eq!(show(&cat).await.reserved.bytes, 1000);
    let tasks: Vec<_> = accepted
        .into_iter()
        .map(|(i, h)| {
            let cat = cat.clone();
            tokio::spawn(async move {
                check_and_put(&cat, t(20 + i), h, vec![rec(&format!("/r{i}"), 250)]).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let q = show(&cat).await;
    assert_eq!((q.usage.warm.bytes, q.reserved.bytes), (1000, 0));

    // Without hints: accepted below the limit, then the batches race.
    set_quota(&cat, Some(2000), None).await;
    let mut hs = Vec::new();
    for i in 0..6u128 {
        hs.push((
            i,
            accept(&cat, t(40 + i), &format!("nohint{i}"), None)
                .await
                .unwrap(),
        ));
    }
    let tasks: Vec<_> = hs
        .into_iter()
        .map(|(i, h)| {
            let cat = cat.clone();
            tokio::spawn(async move {
                let batch = vec![rec(&format!("/n{i}"), 250)];
                let (kept, failed) = check(&cat, t(40 + i), h, batch.clone()).await;
                if kept.is_empty() {
                    assert_eq!(failed[0].code, ErrorCode::QuotaExceeded);
                    false
                } else {
                    put(&cat, t(40 + i), h, batch).await;
                    true
                }
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        passed += usize::from(task.await.unwrap());
    }
    assert_eq!(passed, 4);
    assert_eq!(show(&cat).await.usage.warm.bytes, 2000);
    counters_are_true(&db, "racing puts").await;
}

#[tokio::test]
async fn quotas_refuse_reserve_settle_and_give_back_sqlite() {
    quota_rules(testing::memory().await).await;
}

#[tokio::test]
async fn usage_counters_equal_the_catalogue_after_every_change_sqlite() {
    counters_follow_every_change(testing::memory().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_racing_puts_never_end_above_the_limit_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("nlds.db").display());
    racing_puts(crate::db::connect(&url).await.unwrap()).await;
}

/// The same on PostgreSQL (`NLDS_TEST_DATABASE_URL`; required under `CI`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_postgres() {
    let mut dbs = Vec::new();
    for i in 0..3 {
        match testing::postgres(&format!("quota{i}")).await {
            Some(pg) => dbs.push(pg),
            None => return,
        }
    }
    quota_rules(dbs[0].db.clone()).await;
    counters_follow_every_change(dbs[1].db.clone()).await;
    racing_puts(dbs[2].db.clone()).await;
    for pg in dbs {
        pg.drop_now().await;
    }
}
