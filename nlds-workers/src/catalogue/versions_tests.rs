//! Versions of a path (docs/VERSIONS.md) in the catalogue: check classifies against the newest
//! live version, put stores changed paths as the next version (also when two puts race), reads
//! select a version, delete takes the newest, `[workers.versions] keep` prunes. Each scenario
//! runs on SQLite and (with `NLDS_TEST_DATABASE_URL`; required under `CI`) on PostgreSQL.

use super::*;
use crate::db::testing;
use nlds_core::api::{ApiAction, FileEntry};
use nlds_core::message::ObjectRef;
use nlds_core::versions::{SyncLevel, VersionSelect};
use nlds_core::{ErrorCode, FailedFile, PathKind};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

const ALICE: &str = "alice";
const CLIMATE: &str = "climate";

fn tid(n: u128) -> Uuid {
    Uuid::from_u128(0x7a1c_7a52_2b7e_4c39_9d1e_0000_0000_0000 + n)
}

fn env(t: Uuid, sync: Option<SyncLevel>, payload: Payload) -> Envelope {
    Envelope::new(t, ALICE, CLIMATE, ApiAction::Put, "job", payload).with_sync(sync)
}

fn key(w: Worker, a: Action) -> RoutingKey {
    RoutingKey::new(w, a)
}

/// A file as transfer-put reports it: its object is named by the put's transaction.
fn rec(t: Uuid, path: &str, size: u64, mtime_ns: i64) -> FileRecord {
    FileRecord {
        path: path.into(),
        kind: PathKind::File,
        link_target: None,
        size,
        uid: 1000,
        gid: 100,
        mode: 0o644,
        mtime_ns,
        blake3: Some(format!("b3:{t}:{path}")),
        object: Some(ObjectRef {
            bucket: "nlds".into(),
            key: format!("{t}{path}"),
            tenancy: None,
        }),
        holding_id: None,
        new_version: false,
        xattrs: Vec::new(),
    }
}

fn dir(path: &str, mtime_ns: i64) -> FileRecord {
    FileRecord {
        kind: PathKind::Directory,
        size: 0,
        blake3: None,
        object: None,
        ..rec(tid(0), path, 0, mtime_ns)
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

async fn rpc(cat: &Catalogue, action: Action, e: Envelope) -> RpcReply {
    let out = cat.handle(key(Worker::Catalog, action), e).await.unwrap();
    match out.reply.expect("an RPC replies").payload {
        Payload::Reply(r) => r,
        other => panic!("not a reply: {other:?}"),
    }
}

async fn holding(cat: &Catalogue, t: Uuid) -> i64 {
    holding_of(cat, t, ALICE).await
}

/// `user`'s holding labelled `data`.
async fn holding_of(cat: &Catalogue, t: Uuid, user: &str) -> i64 {
    let setup = Payload::SetupHolding {
        label: Some("data".into()),
        holding_id: None,
        tags: Default::default(),
        paths: Vec::new(),
        size_hint: None,
    };
    let e = Envelope::new(t, user, CLIMATE, ApiAction::Put, "job", setup);
    match rpc(cat, Action::Setup, e).await {
        RpcReply::Holding { id, .. } => id,
        other => panic!("setup failed: {other:?}"),
    }
}

/// The files and failures of the completion `w` sent.
async fn step(
    cat: &Catalogue,
    w: Worker,
    t: Uuid,
    sync: Option<SyncLevel>,
    h: i64,
    batch: Vec<FileRecord>,
) -> (Vec<FileRecord>, Vec<FailedFile>) {
    let out = cat
        .handle(key(w, Action::Start), env(t, sync, files(h, batch)))
        .await
        .unwrap();
    let (_, e) = out
        .publish
        .iter()
        .find(|(k, _)| *k == key(w, Action::Complete))
        .expect("a completion");
    match &e.payload {
        Payload::Files { files, failed, .. } => (files.clone(), failed.clone()),
        other => panic!("not files: {other:?}"),
    }
}

async fn find(cat: &Catalogue, h: i64, path: &str, versions: VersionSelect) -> Vec<FileEntry> {
    let filter = HoldingFilter {
        holding_id: Some(h),
        versions,
        ..Default::default()
    };
    find_in(cat, ALICE, filter, path).await
}

/// The files at `path` of the holdings `filter` selects for `user`, by version.
async fn find_in(cat: &Catalogue, user: &str, filter: HoldingFilter, path: &str) -> Vec<FileEntry> {
    let q = Payload::FindFiles {
        filter,
        path: Some(path.into()),
        path_regex: false,
        files_only: false,
        named_must_exist: false,
    };
    let e = Envelope::new(tid(99), user, CLIMATE, ApiAction::Put, "job", q);
    match rpc(cat, Action::Find, e).await {
        RpcReply::Files(page) => {
            let mut v = page.files;
            v.sort_by_key(|f| f.version);
            v
        }
        other => panic!("find failed: {other:?}"),
    }
}

fn numbers(v: &[FileEntry]) -> Vec<u32> {
    v.iter().map(|f| f.version).collect()
}

/// The object key a get of `path` (with `versions`) restores from.
async fn get_key(cat: &Catalogue, h: i64, path: &str, versions: VersionSelect) -> String {
    let filter = HoldingFilter {
        holding_id: Some(h),
        versions,
        ..Default::default()
    };
    let get = Payload::GetRequest {
        filter,
        paths: vec![path.into()],
        regex: false,
        target: Some("/restore".into()),
        overwrite: true,
    };
    let out = cat
        .handle(
            key(Worker::CatalogGet, Action::Start),
            env(tid(98), None, get),
        )
        .await
        .unwrap();
    out.publish
        .iter()
        .find_map(|(_, e)| match &e.payload {
            Payload::Files { files, .. } => files
                .iter()
                .find(|f| f.path == path)
                .and_then(|f| f.object.clone()),
            _ => None,
        })
        .map(|o| o.key)
        .expect("the get restores the path")
}

async fn scenario(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let (t1, t2) = (tid(1), tid(2));
    let h = holding(&cat, t1).await;
    let first = vec![
        dir("/d", 5),
        rec(t1, "/d/a", 10, 100),
        rec(t1, "/d/b", 10, 100),
        rec(t1, "/d/s", 10, 100),
    ];
    let (stored, failed) = step(
        &cat,
        Worker::CatalogPut,
        t1,
        Some(SyncLevel::Mtime),
        h,
        first,
    )
    .await;
    assert_eq!((stored.len(), failed.len()), (4, 0));
    assert!(stored.iter().all(|f| !f.new_version));

    // Check at the mtime level: an unchanged file and directory are skipped (code `unchanged`,
    // naming the version), a changed file and a new one go on, the changed one as a version.
    let again = vec![
        dir("/d", 5),
        rec(t2, "/d/a", 10, 100),
        rec(t2, "/d/b", 10, 200),
        rec(t2, "/d/c", 1, 100),
    ];
    let (kept, skipped) = step(
        &cat,
        Worker::CatalogCheck,
        t2,
        Some(SyncLevel::Mtime),
        h,
        again,
    )
    .await;
    let kept: Vec<(&str, bool)> = kept
        .iter()
        .map(|f| (f.path.as_str(), f.new_version))
        .collect();
    assert_eq!(kept, [("/d/b", true), ("/d/c", false)]);
    let skipped: Vec<(&str, ErrorCode)> =
        skipped.iter().map(|f| (f.path.as_str(), f.code)).collect();
    assert_eq!(
        skipped,
        [("/d", ErrorCode::Unchanged), ("/d/a", ErrorCode::Unchanged)]
    );

    // Every level on the same pair: same size, other mtime and content.
    let same_size = || vec![rec(t2, "/d/s", 10, 999)];
    let verdict = async |level| {
        let (kept, skipped) =
            step(&cat, Worker::CatalogCheck, t2, Some(level), h, same_size()).await;
        (kept.first().map(|f| f.blake3.clone()), skipped.len())
    };
    assert_eq!(verdict(SyncLevel::Exists).await, (None, 1));
    assert_eq!(verdict(SyncLevel::Size).await, (None, 1));
    assert_eq!(
        verdict(SyncLevel::Mtime).await,
        (Some(Some(format!("b3:{t2}:/d/s"))), 0),
        "mtime: changed, goes on with its own (transfer's) checksum"
    );
    assert_eq!(
        verdict(SyncLevel::Checksum).await,
        (Some(Some(format!("b3:{t1}:/d/s"))), 0),
        "checksum: goes on with the stored blake3 for transfer-put to compare"
    );
    // Without a sync level (the legacy API's default): a conflict, as on 1.0.x.
    let (kept, failed) = step(&cat, Worker::CatalogCheck, t2, None, h, same_size()).await;
    assert!(kept.is_empty());
    assert_eq!(failed[0].code, ErrorCode::Conflict);

    // Put: the changed file becomes version 2 of its path, the new one version 1.
    let batch = vec![
        FileRecord {
            new_version: true,
            ..rec(t2, "/d/b", 10, 200)
        },
        rec(t2, "/d/c", 1, 100),
    ];
    let (stored, failed) = step(
        &cat,
        Worker::CatalogPut,
        t2,
        Some(SyncLevel::Mtime),
        h,
        batch.clone(),
    )
    .await;
    assert!(failed.is_empty(), "{failed:?}");
    let marks: Vec<(&str, bool)> = stored
        .iter()
        .map(|f| (f.path.as_str(), f.new_version))
        .collect();
    assert_eq!(marks, [("/d/b", true), ("/d/c", false)]);
    // Redelivered: the same answer, no third version.
    let (stored, _) = step(
        &cat,
        Worker::CatalogPut,
        t2,
        Some(SyncLevel::Mtime),
        h,
        batch,
    )
    .await;
    assert_eq!(stored.len(), 2);
    assert_eq!(
        numbers(&find(&cat, h, "/d/b", VersionSelect::All).await),
        [1, 2]
    );

    // Reads: the newest by default, a number, a time, or all.
    let newest = find(&cat, h, "/d/b", VersionSelect::Newest).await;
    assert_eq!((numbers(&newest), newest[0].transaction_id), (vec![2], t2));
    assert_eq!(
        numbers(&find(&cat, h, "/d/b", VersionSelect::Number(1)).await),
        [1]
    );
    let t1_time = transaction::Entity::find()
        .filter(transaction::Column::TransactionId.eq(t1.to_string()))
        .one(&db)
        .await
        .unwrap()
        .unwrap()
        .ingest_time;
    assert_eq!(
        numbers(&find(&cat, h, "/d/b", VersionSelect::At(t1_time)).await),
        [1]
    );
    let before_all = t1_time - chrono::TimeDelta::days(1);
    assert!(
        find(&cat, h, "/d/b", VersionSelect::At(before_all))
            .await
            .is_empty()
    );
    assert_eq!(
        get_key(&cat, h, "/d/b", VersionSelect::Newest).await,
        format!("{t2}/d/b")
    );
    assert_eq!(
        get_key(&cat, h, "/d/b", VersionSelect::Number(1)).await,
        format!("{t1}/d/b")
    );
    assert_eq!(
        get_key(&cat, h, "/d/b", VersionSelect::At(t1_time)).await,
        format!("{t1}/d/b")
    );

    // Two puts of the same path at once: both end as versions (3 and 4), none lost or failed.
    let (t3, t4) = (tid(3), tid(4));
    let changed = |t| {
        vec![FileRecord {
            new_version: true,
            ..rec(t, "/d/b", 11, 300)
        }]
    };
    let (a, b) = tokio::join!(
        step(
            &cat,
            Worker::CatalogPut,
            t3,
            Some(SyncLevel::Mtime),
            h,
            changed(t3)
        ),
        step(
            &cat,
            Worker::CatalogPut,
            t4,
            Some(SyncLevel::Mtime),
            h,
            changed(t4)
        ),
    );
    assert!(a.1.is_empty() && b.1.is_empty(), "{a:?} {b:?}");
    assert!(a.0[0].new_version && b.0[0].new_version);
    let all = find(&cat, h, "/d/b", VersionSelect::All).await;
    assert_eq!(numbers(&all), [1, 2, 3, 4]);
    let mut by: Vec<Uuid> = all[2..].iter().map(|f| f.transaction_id).collect();
    by.sort();
    assert_eq!(by, [t3, t4]);

    // A find naming a label two holdings of the group have (alice's, with four versions of the
    // path, and bob's, with one): the newest of each. The newer-version probe is skipped only
    // when no holding the find names holds two versions of a path (bob's alone).
    let t9 = tid(9);
    let h2 = holding_of(&cat, t9, "bob").await;
    let (stored, _) = step(
        &cat,
        Worker::CatalogPut,
        t9,
        Some(SyncLevel::Mtime),
        h2,
        vec![rec(t9, "/d/b", 10, 100)],
    )
    .await;
    assert_eq!(stored.len(), 1);
    let data = HoldingFilter {
        label: Some("data".into()),
        groupall: true,
        ..Default::default()
    };
    let newest: Vec<(i64, u32)> = find_in(&cat, ALICE, data.clone(), "/d/b")
        .await
        .iter()
        .map(|f| (f.holding_id, f.version))
        .collect();
    assert_eq!(newest, [(h2, 1), (h, 4)]);
    let own = HoldingFilter {
        groupall: false,
        ..data
    };
    assert_eq!(numbers(&find_in(&cat, "bob", own, "/d/b").await), [1]);

    // Delete takes the newest only: the one before becomes the newest; undeleted, it is back.
    let del = |versions, dry_run| Payload::Delete {
        filter: HoldingFilter {
            holding_id: Some(h),
            versions,
            ..Default::default()
        },
        paths: vec!["/d/b".into()],
        regex: false,
        dry_run,
    };
    let plan = match rpc(
        &cat,
        Action::Del,
        env(tid(5), None, del(VersionSelect::Newest, false)),
    )
    .await
    {
        RpcReply::Deleted(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(plan.files_total, 1);
    assert_eq!(
        numbers(&find(&cat, h, "/d/b", VersionSelect::Newest).await),
        [3]
    );
    assert_eq!(
        numbers(&find(&cat, h, "/d/b", VersionSelect::All).await),
        [1, 2, 3]
    );
    let undel = Payload::Undelete {
        filter: HoldingFilter {
            holding_id: Some(h),
            ..Default::default()
        },
        paths: vec!["/d/b".into()],
        regex: false,
        dry_run: false,
    };
    match rpc(&cat, Action::Undelete, env(tid(6), None, undel)).await {
        RpcReply::Deleted(p) => assert_eq!((p.files_total, p.failed.len()), (1, 0), "{p:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        numbers(&find(&cat, h, "/d/b", VersionSelect::Newest).await),
        [4]
    );
    // With every version: all of them.
    match rpc(
        &cat,
        Action::Del,
        env(tid(7), None, del(VersionSelect::All, true)),
    )
    .await
    {
        RpcReply::Deleted(p) => assert_eq!(p.files_total, 4),
        other => panic!("{other:?}"),
    }

    // keep = 2: a new version deletes (soft) all but the newest two; old versions count in the
    // usage until then.
    let cat = cat.with_versions(nlds_settings::VersionsConfig { keep: 2 });
    let t8 = tid(8);
    let (stored, _) = step(
        &cat,
        Worker::CatalogPut,
        t8,
        Some(SyncLevel::Mtime),
        h,
        changed(t8),
    )
    .await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        numbers(&find(&cat, h, "/d/b", VersionSelect::All).await),
        [4, 5]
    );
    let pruned = file::Entity::find()
        .filter(file::Column::Path.eq("/d/b"))
        .filter(file::Column::DeletedAt.is_not_null())
        .all(&db)
        .await
        .unwrap();
    assert_eq!(pruned.len(), 3);
    assert!(
        pruned
            .iter()
            .all(|f| f.deleted_by.as_deref() == Some("versions.keep = 2"))
    );
    let (recomputed, counters) = (
        usage::recompute(&db).await.unwrap(),
        usage::stored(&db).await.unwrap(),
    );
    assert_eq!(
        recomputed, counters,
        "the usage counters follow the pruning"
    );
}

#[tokio::test]
async fn versions_sqlite() {
    scenario(testing::memory().await).await;
}

#[tokio::test]
async fn versions_postgres() {
    let Some(pg) = testing::postgres("versions").await else {
        return;
    };
    scenario(pg.db.clone()).await;
    pg.drop_now().await;
}
