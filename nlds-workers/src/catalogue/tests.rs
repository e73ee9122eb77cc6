use super::store::{find_query, load_tags, scoped_files};
use super::*;
use crate::db::testing;
use crate::db::{checksum, holding, location, tag};
use nlds_core::PathKind;
use nlds_core::api::ApiAction;
use nlds_core::api::{FileLocation, Tags, Tier};
use nlds_core::message::{ObjectRef, sub_id};
use nlds_core::{ErrorCode, FailedFile, State};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use sea_orm::{DbBackend, QueryTrait, Statement};
use std::collections::HashMap;

const ALICE: &str = "alice";
const BOB: &str = "bob";
const CAROL: &str = "carol";
const CLIMATE: &str = "climate";
const OCEAN: &str = "ocean";

fn tid(n: u128) -> Uuid {
    Uuid::from_u128(0x6f1c_7a52_2b7e_4c39_9d1e_0000_0000_0000 + n)
}

fn env(user: &str, group: &str, t: Uuid, payload: Payload) -> Envelope {
    Envelope::new(t, user, group, ApiAction::Put, "job", payload)
}

fn key(w: Worker, a: Action) -> RoutingKey {
    RoutingKey::new(w, a)
}

fn file_rec(path: &str, size: u64) -> FileRecord {
    FileRecord {
        path: path.into(),
        kind: PathKind::File,
        link_target: None,
        size,
        uid: 1000,
        gid: 100,
        mode: 0o644,
        mtime_ns: 1_700_000_000_123_456_789,
        blake3: Some(format!("b3:{path}")),
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

fn dir_rec(path: &str) -> FileRecord {
    FileRecord {
        kind: PathKind::Directory,
        size: 0,
        mode: 0o755,
        blake3: None,
        object: None,
        ..file_rec(path, 0)
    }
}

fn link_rec(path: &str, target: &str) -> FileRecord {
    FileRecord {
        kind: PathKind::Link,
        link_target: Some(target.into()),
        size: 0,
        blake3: None,
        object: None,
        ..file_rec(path, 0)
    }
}

async fn rpc(cat: &Catalogue, action: Action, e: Envelope) -> RpcReply {
    let out = cat.handle(key(Worker::Catalog, action), e).await.unwrap();
    assert!(out.publish.is_empty(), "an RPC publishes nothing");
    match out.reply.expect("an RPC replies").payload {
        Payload::Reply(r) => r,
        other => panic!("not a reply: {other:?}"),
    }
}

fn api_error(r: RpcReply) -> ApiError {
    match r {
        RpcReply::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn setup_as(
    cat: &Catalogue,
    user: &str,
    group: &str,
    t: Uuid,
    label: Option<&str>,
    holding_id: Option<i64>,
    tags: &[(&str, &str)],
) -> RpcReply {
    let payload = Payload::SetupHolding {
        label: label.map(str::to_owned),
        holding_id,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        paths: Vec::new(),
        size_hint: None,
    };
    rpc(cat, Action::Setup, env(user, group, t, payload)).await
}

/// Sets up holding `label` for transaction `t` and returns its id.
async fn holding(cat: &Catalogue, user: &str, group: &str, t: Uuid, label: &str) -> i64 {
    match setup_as(cat, user, group, t, Some(label), None, &[]).await {
        RpcReply::Holding { id, label: l } => {
            assert_eq!(l, label);
            id
        }
        other => panic!("setup failed: {other:?}"),
    }
}

fn files_msg(h: i64, files: Vec<FileRecord>) -> Payload {
    Payload::Files {
        context: Vec::new(),
        failed: Vec::new(),
        holding_id: Some(h),
        files,
        target: None,
        overwrite: false,
    }
}

async fn put(
    cat: &Catalogue,
    user: &str,
    group: &str,
    t: Uuid,
    h: i64,
    files: Vec<FileRecord>,
) -> Outcome {
    cat.handle(
        key(Worker::CatalogPut, Action::Start),
        env(user, group, t, files_msg(h, files)),
    )
    .await
    .unwrap()
}

/// The messages of an outcome published to `w.a`.
fn sent(out: &Outcome, w: Worker, a: Action) -> Vec<&Envelope> {
    out.publish
        .iter()
        .filter(|(k, _)| *k == key(w, a))
        .map(|(_, e)| e)
        .collect()
}

fn paths_of(e: &Envelope) -> Vec<String> {
    match &e.payload {
        Payload::Files { files, .. } => files.iter().map(|f| f.path.clone()).collect(),
        Payload::Failed { files } => files.iter().map(|f| f.path.clone()).collect(),
        other => panic!("no files in {other:?}"),
    }
}

fn failed_of(e: &Envelope) -> Vec<FailedFile> {
    match &e.payload {
        Payload::Failed { files } => files.clone(),
        Payload::Files { failed, .. } => failed.clone(),
        other => panic!("not a failure: {other:?}"),
    }
}

/// The failures of a get resolution, wherever they travel (with the first batch, or on
/// their own `.failed` when nothing was found).
fn get_failures(out: &Outcome) -> Vec<FailedFile> {
    sent(out, Worker::CatalogGet, Action::Complete)
        .into_iter()
        .chain(sent(out, Worker::CatalogGet, Action::Failed))
        .flat_map(failed_of)
        .collect()
}

fn records_of(out: &Outcome, w: Worker) -> Vec<FileRecord> {
    sent(out, w, Action::Complete)
        .into_iter()
        .flat_map(|e| match &e.payload {
            Payload::Files { files, .. } => files.clone(),
            other => panic!("not files: {other:?}"),
        })
        .collect()
}

async fn rows<E>(db: &DatabaseConnection, _table: E) -> u64
where
    E: EntityTrait,
    E::Model: Sync,
{
    E::find().count(db).await.unwrap()
}

fn get_filter() -> HoldingFilter {
    HoldingFilter::default()
}

async fn get(
    cat: &Catalogue,
    user: &str,
    group: &str,
    t: Uuid,
    filter: HoldingFilter,
    paths: &[&str],
    regex: bool,
) -> Result<Outcome, HandlerError> {
    let payload = Payload::GetRequest {
        filter,
        paths: paths.iter().map(|p| p.to_string()).collect(),
        regex,
        target: Some("/restore".into()),
        overwrite: true,
    };
    cat.handle(
        key(Worker::CatalogGet, Action::Start),
        env(user, group, t, payload),
    )
    .await
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// -------------------------------------------------------------------------------------
// Scenarios, each run on SQLite and (with NLDS_TEST_DATABASE_URL) on PostgreSQL.

async fn setup_rules(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);

    // No label: the holding is labelled with the transaction id's first 8 characters, and
    // the same setup again (a retried request) gives the same holding and transaction.
    let t0 = tid(1);
    let first = setup_as(&cat, ALICE, CLIMATE, t0, None, None, &[]).await;
    let RpcReply::Holding { id: h0, label } = first.clone() else {
        panic!("{first:?}")
    };
    assert_eq!(label, t0.to_string()[..8]);
    assert_eq!(
        setup_as(&cat, ALICE, CLIMATE, t0, None, None, &[]).await,
        first
    );
    assert_eq!(rows(&db, transaction::Entity).await, 1);

    // A label: get or create, with tags added only for new keys.
    let h1 = match setup_as(
        &cat,
        ALICE,
        CLIMATE,
        tid(2),
        Some("run42"),
        None,
        &[("a", "1")],
    )
    .await
    {
        RpcReply::Holding { id, .. } => id,
        other => panic!("{other:?}"),
    };
    assert_ne!(h1, h0);
    let again = setup_as(
        &cat,
        ALICE,
        CLIMATE,
        tid(3),
        Some("run42"),
        None,
        &[("a", "2"), ("b", "3")],
    )
    .await;
    assert_eq!(
        again,
        RpcReply::Holding {
            id: h1,
            label: "run42".into()
        }
    );
    let tags = load_tags(&db, &[h1]).await.unwrap().remove(&h1).unwrap();
    assert_eq!(
        tags.get("a").map(String::as_str),
        Some("1"),
        "existing keys keep their value"
    );
    assert_eq!(tags.get("b").map(String::as_str), Some("3"));
    assert_eq!(rows(&db, holding::Entity).await, 2);
    assert_eq!(rows(&db, transaction::Entity).await, 3);

    // By id: it must exist and be the caller's.
    let e = api_error(setup_as(&cat, ALICE, CLIMATE, tid(4), None, Some(h1 + 100), &[]).await);
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(e.message, format!("holding {} not found", h1 + 100));
    let e = api_error(setup_as(&cat, BOB, CLIMATE, tid(5), None, Some(h1), &[]).await);
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert_eq!(e.message, format!("holding {h1} belongs to another user"));
    // Outside the caller's group: the answer of an id that does not exist.
    let e = api_error(setup_as(&cat, CAROL, OCEAN, tid(5), None, Some(h1), &[]).await);
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(e.message, format!("holding {h1} not found"));
    assert_eq!(
        setup_as(&cat, ALICE, CLIMATE, tid(6), None, Some(h1), &[]).await,
        RpcReply::Holding {
            id: h1,
            label: "run42".into()
        }
    );

    // The same label in another group is a conflict naming the group.
    let e = api_error(setup_as(&cat, ALICE, OCEAN, tid(7), Some("run42"), None, &[]).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains(CLIMATE), "{}", e.message);
    // Another user may use the same label.
    let hb = holding(&cat, BOB, CLIMATE, tid(8), "run42").await;
    assert_ne!(hb, h1);

    // Labels are validated.
    for bad in ["", "   ", "tab\there", &"x".repeat(257)] {
        let e = api_error(setup_as(&cat, ALICE, CLIMATE, tid(9), Some(bad), None, &[]).await);
        assert_eq!(e.code, ErrorCode::BadRequest, "{bad:?}");
    }
    let ok = "é".repeat(256);
    holding(&cat, ALICE, CLIMATE, tid(10), &ok).await;
    let e = api_error(setup_as(&cat, ALICE, CLIMATE, tid(11), Some("t"), None, &[("", "v")]).await);
    assert_eq!(e.code, ErrorCode::BadRequest);

    // A transaction belongs to one holding; the refusal does not say which.
    let e = api_error(setup_as(&cat, ALICE, CLIMATE, tid(2), None, Some(h0), &[]).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(
        e.message.contains("already in use") && !e.message.contains("holding"),
        "{}",
        e.message
    );

    // Concurrent puts to a new label create one holding.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8u128 {
        let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
        tasks.spawn(async move {
            setup_as(
                &cat,
                CAROL,
                OCEAN,
                tid(100 + i),
                Some("race"),
                None,
                &[("k", "v")],
            )
            .await
        });
    }
    let mut ids = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            RpcReply::Holding { id, .. } => ids.insert(id),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(ids.len(), 1);
    let n = holding::Entity::find()
        .filter(holding::Column::User.eq(CAROL))
        .count(&db)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

async fn put_and_check(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let (t1, t2) = (tid(1), tid(2));
    let h = holding(&cat, ALICE, CLIMATE, t1, "data").await;
    let batch = vec![
        dir_rec("/d"),
        file_rec("/d/a", 10),
        file_rec("/d/b", 20),
        link_rec("/d/l", "a"),
        file_rec("/d/a", 10), // the same path twice in one message
    ];
    let out = put(&cat, ALICE, CLIMATE, t1, h, batch.clone()).await;
    let complete = sent(&out, Worker::CatalogPut, Action::Complete);
    assert_eq!(complete.len(), 1);
    assert_eq!(paths_of(complete[0]), ["/d", "/d/a", "/d/b", "/d/l"]);
    assert_eq!(complete[0].sub_id, t1);
    assert!(failed_of(sent(&out, Worker::CatalogPut, Action::Complete)[0]).is_empty());
    let counts = |db: DatabaseConnection| async move {
        (
            rows(&db, file::Entity).await,
            rows(&db, location::Entity).await,
            rows(&db, checksum::Entity).await,
        )
    };
    assert_eq!(counts(db.clone()).await, (4, 2, 2));

    // Redelivery: the same answer, no new rows.
    let out = put(&cat, ALICE, CLIMATE, t1, h, batch).await;
    assert_eq!(
        paths_of(sent(&out, Worker::CatalogPut, Action::Complete)[0]),
        ["/d", "/d/a", "/d/b", "/d/l"]
    );
    assert!(failed_of(sent(&out, Worker::CatalogPut, Action::Complete)[0]).is_empty());
    assert!(sent(&out, Worker::TransferDel, Action::Start).is_empty());
    assert_eq!(counts(db.clone()).await, (4, 2, 2));

    // The stored rows.
    let a = file::Entity::find()
        .filter(file::Column::Path.eq("/d/a"))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.kind.as_str(), a.size, a.mode, a.mtime_ns),
        ("file", 10, 0o644, 1_700_000_000_123_456_789)
    );
    let (locs, sums) = load_copies(&db, &[a.id]).await.unwrap();
    let loc = &locs[&a.id][0];
    assert_eq!(
        (loc.tier.as_str(), loc.bucket.as_str(), loc.key.as_str()),
        ("warm", "nlds", "obj/d/a")
    );
    assert_eq!(sums[&a.id], "b3:/d/a");
    let l = file::Entity::find()
        .filter(file::Column::Path.eq("/d/l"))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.link_target.as_deref(), Some("a"));

    // Check: paths already there from another transaction are dropped.
    setup_as(&cat, ALICE, CLIMATE, t2, None, Some(h), &[]).await;
    let check = |t: Uuid, files: Vec<FileRecord>| {
        cat.handle(
            key(Worker::CatalogCheck, Action::Start),
            env(ALICE, CLIMATE, t, files_msg(h, files)),
        )
    };
    let out = check(t2, vec![file_rec("/d/a", 1), file_rec("/d/c", 1)])
        .await
        .unwrap();
    assert_eq!(
        paths_of(sent(&out, Worker::CatalogCheck, Action::Complete)[0]),
        ["/d/c"]
    );
    let failed = failed_of(sent(&out, Worker::CatalogCheck, Action::Complete)[0]);
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].path.as_str(), failed[0].code),
        ("/d/a", ErrorCode::Conflict)
    );
    assert!(
        failed[0].reason.contains(&t1.to_string()),
        "{}",
        failed[0].reason
    );
    // ... but not those of the same transaction (a redelivery after the put).
    let out = check(t1, vec![file_rec("/d/a", 1)]).await.unwrap();
    assert_eq!(
        paths_of(sent(&out, Worker::CatalogCheck, Action::Complete)[0]),
        ["/d/a"]
    );
    assert!(failed_of(sent(&out, Worker::CatalogCheck, Action::Complete)[0]).is_empty());
    // Everything dropped still completes (empty), so the batch can finish.
    let out = check(t2, vec![file_rec("/d/b", 1)]).await.unwrap();
    assert!(paths_of(sent(&out, Worker::CatalogCheck, Action::Complete)[0]).is_empty());

    // Put: a path from another transaction fails and its new object is deleted again,
    // unless it is the catalogued object itself; a file without an object fails.
    let mut same_object = file_rec("/d/b", 20);
    same_object.object = Some(ObjectRef {
        bucket: "nlds".into(),
        key: "obj/d/b".into(),
        tenancy: None,
    });
    let mut no_object = file_rec("/d/e", 5);
    no_object.object = None;
    let mut other_object = file_rec("/d/a", 11);
    other_object.object = Some(ObjectRef {
        bucket: "nlds".into(),
        key: "t2/d/a".into(),
        tenancy: None,
    });
    let out = put(
        &cat,
        ALICE,
        CLIMATE,
        t2,
        h,
        vec![other_object, file_rec("/d/c", 30), same_object, no_object],
    )
    .await;
    assert_eq!(
        paths_of(sent(&out, Worker::CatalogPut, Action::Complete)[0]),
        ["/d/c"]
    );
    let failed = failed_of(sent(&out, Worker::CatalogPut, Action::Complete)[0]);
    let codes: Vec<(&str, ErrorCode)> = failed.iter().map(|f| (f.path.as_str(), f.code)).collect();
    assert_eq!(
        codes,
        [
            ("/d/a", ErrorCode::Conflict),
            ("/d/b", ErrorCode::Conflict),
            ("/d/e", ErrorCode::StorageError)
        ]
    );
    let del = sent(&out, Worker::TransferDel, Action::Start);
    assert_eq!(del.len(), 1);
    match &del[0].payload {
        Payload::Files { files, .. } => {
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].object.as_ref().unwrap().key, "t2/d/a");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(counts(db.clone()).await, (5, 3, 3));
    let a_again = file::Entity::find_by_id(a.id)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a_again, a, "the catalogued file is untouched");

    // Work errors are permanent handler errors.
    let err = cat
        .handle(
            key(Worker::CatalogPut, Action::Start),
            env(
                ALICE,
                CLIMATE,
                t1,
                Payload::Files {
                    context: Vec::new(),
                    failed: Vec::new(),
                    holding_id: None,
                    files: vec![],
                    target: None,
                    overwrite: false,
                },
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(!err.retryable);
}

/// alice: "one" (t1) and, later, "two" (t2) in climate; bob: "bobs" in climate; carol:
/// "carols" in ocean.
async fn get_world(cat: &Catalogue) -> (i64, i64, i64, i64) {
    let h1 = holding(cat, ALICE, CLIMATE, tid(1), "one").await;
    put(
        cat,
        ALICE,
        CLIMATE,
        tid(1),
        h1,
        vec![
            dir_rec("/data/dir"),
            file_rec("/data/dir/a.nc", 100),
            file_rec("/data/dir/sub/b.nc", 200),
            file_rec("/data/dirx/c.nc", 300),
            file_rec("/data/dir.nc", 1),
            file_rec("/data/x.txt", 1),
            link_rec("/data/link", "x.txt"),
        ],
    )
    .await;
    let h2 = holding(cat, ALICE, CLIMATE, tid(2), "two").await;
    let mut newer = file_rec("/data/x.txt", 2);
    newer.object = Some(ObjectRef {
        bucket: "nlds".into(),
        key: "two/x.txt".into(),
        tenancy: None,
    });
    put(
        cat,
        ALICE,
        CLIMATE,
        tid(2),
        h2,
        vec![newer, file_rec("/data/dir/a.nc", 101)],
    )
    .await;
    let hb = holding(cat, BOB, CLIMATE, tid(3), "bobs").await;
    put(
        cat,
        BOB,
        CLIMATE,
        tid(3),
        hb,
        vec![file_rec("/data/bob.nc", 7)],
    )
    .await;
    let hc = holding(cat, CAROL, OCEAN, tid(4), "carols").await;
    put(
        cat,
        CAROL,
        OCEAN,
        tid(4),
        hc,
        vec![file_rec("/data/carol.nc", 9)],
    )
    .await;
    (h1, h2, hb, hc)
}

async fn get_resolution(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let (h1, h2, hb, _hc) = get_world(&cat).await;
    let g = tid(50);

    // Exact path: the newest ingest wins; with a holding named, that holding's copy.
    let out = get(
        &cat,
        ALICE,
        CLIMATE,
        g,
        get_filter(),
        &["/data/x.txt"],
        false,
    )
    .await
    .unwrap();
    let recs = records_of(&out, Worker::CatalogGet);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].holding_id, Some(h2));
    assert_eq!(recs[0].size, 2);
    assert_eq!(recs[0].object.as_ref().unwrap().key, "two/x.txt");
    assert_eq!(recs[0].blake3.as_deref(), Some("b3:/data/x.txt"));
    assert_eq!(recs[0].mtime_ns, 1_700_000_000_123_456_789);
    let named = HoldingFilter {
        holding_id: Some(h1),
        ..get_filter()
    };
    let out = get(&cat, ALICE, CLIMATE, g, named, &["/data/x.txt"], false)
        .await
        .unwrap();
    let recs = records_of(&out, Worker::CatalogGet);
    assert_eq!((recs[0].holding_id, recs[0].size), (Some(h1), 1));
    let by_label = HoldingFilter {
        label: Some("one".into()),
        ..get_filter()
    };
    let out = get(
        &cat,
        ALICE,
        CLIMATE,
        g,
        by_label,
        &["/data/dir/a.nc"],
        false,
    )
    .await
    .unwrap();
    assert_eq!(records_of(&out, Worker::CatalogGet)[0].size, 100);

    // A directory: itself and everything under it (not /data/dirx or /data/dir.nc), the
    // newest copy of each; a trailing slash changes nothing.
    for p in ["/data/dir", "/data/dir/"] {
        let out = get(&cat, ALICE, CLIMATE, g, get_filter(), &[p], false)
            .await
            .unwrap();
        let recs = records_of(&out, Worker::CatalogGet);
        let got: Vec<(String, u64)> = recs.iter().map(|r| (r.path.clone(), r.size)).collect();
        assert_eq!(
            got,
            [
                ("/data/dir".to_owned(), 0),
                ("/data/dir/a.nc".to_owned(), 101),
                ("/data/dir/sub/b.nc".to_owned(), 200)
            ]
        );
        assert!(recs[0].object.is_none(), "directories have no object");
        assert!(get_failures(&out).is_empty());
    }
    // A prefix that is not a catalogued directory still selects what is under it.
    let out = get(
        &cat,
        ALICE,
        CLIMATE,
        g,
        get_filter(),
        &["/data/dir/sub"],
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(
            records_of(&out, Worker::CatalogGet)
                .iter()
                .map(|r| r.path.clone())
                .collect()
        ),
        ["/data/dir/sub/b.nc"]
    );
    // Links travel without an object.
    let out = get(
        &cat,
        ALICE,
        CLIMATE,
        g,
        get_filter(),
        &["/data/link"],
        false,
    )
    .await
    .unwrap();
    let recs = records_of(&out, Worker::CatalogGet);
    assert_eq!(
        (recs[0].kind, recs[0].link_target.as_deref()),
        (PathKind::Link, Some("x.txt"))
    );
    assert!(recs[0].object.is_none());

    // Regex: only with a holding selector, matched in the selected holdings only.
    let err = get(&cat, ALICE, CLIMATE, g, get_filter(), &[r"\.nc$"], true)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    let one = HoldingFilter {
        label: Some("one".into()),
        ..get_filter()
    };
    let out = get(
        &cat,
        ALICE,
        CLIMATE,
        g,
        one.clone(),
        &[r"\.nc$", "^/nothing"],
        true,
    )
    .await
    .unwrap();
    let recs = records_of(&out, Worker::CatalogGet);
    assert_eq!(
        recs.iter()
            .map(|r| (r.path.as_str(), r.holding_id))
            .collect::<Vec<_>>(),
        [
            ("/data/dir.nc", Some(h1)),
            ("/data/dir/a.nc", Some(h1)),
            ("/data/dir/sub/b.nc", Some(h1)),
            ("/data/dirx/c.nc", Some(h1))
        ]
    );
    let failed = get_failures(&out);
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].path.as_str(), failed[0].code),
        ("^/nothing", ErrorCode::NotFound)
    );
    let err = get(&cat, ALICE, CLIMATE, g, one, &["(unclosed"], true)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    // A label regex selects holdings.
    let re_label = HoldingFilter {
        label: Some("^t.o$".into()),
        label_regex: true,
        ..get_filter()
    };
    let out = get(&cat, ALICE, CLIMATE, g, re_label, &["."], true)
        .await
        .unwrap();
    assert_eq!(
        records_of(&out, Worker::CatalogGet)
            .iter()
            .map(|r| r.holding_id)
            .collect::<Vec<_>>(),
        [Some(h2), Some(h2)]
    );

    // Unknown paths: one failed message naming them.
    let out = get(
        &cat,
        ALICE,
        CLIMATE,
        g,
        get_filter(),
        &["/data/x.txt", "/nope", "/data/bob.nc"],
        false,
    )
    .await
    .unwrap();
    assert_eq!(records_of(&out, Worker::CatalogGet).len(), 1);
    assert!(
        sent(&out, Worker::CatalogGet, Action::Failed).is_empty(),
        "with a batch, the failures travel in it"
    );
    let failed = get_failures(&out);
    assert_eq!(failed.len(), 2);
    for (f, p) in failed.iter().zip(["/nope", "/data/bob.nc"]) {
        assert_eq!((f.path.as_str(), f.code), (p, ErrorCode::NotFound));
        assert!(
            f.reason.contains(p) && f.reason.contains("none of alice's holdings"),
            "{}",
            f.reason
        );
    }
    // The group's holdings with groupall only; never another group's.
    let groupall = HoldingFilter {
        groupall: true,
        ..get_filter()
    };
    let out = get(
        &cat,
        ALICE,
        CLIMATE,
        g,
        groupall,
        &["/data/bob.nc", "/data/carol.nc"],
        false,
    )
    .await
    .unwrap();
    let recs = records_of(&out, Worker::CatalogGet);
    assert_eq!((recs.len(), recs[0].holding_id), (1, Some(hb)));
    let failed = get_failures(&out);
    assert_eq!(failed[0].path, "/data/carol.nc");

    // A file without a warm copy fails with storage_error.
    let b = file::Entity::find()
        .filter(file::Column::Path.eq("/data/dir/sub/b.nc"))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    location::Entity::delete_many()
        .filter(location::Column::FileId.eq(b.id))
        .exec(&db)
        .await
        .unwrap();
    let out = get(
        &cat,
        ALICE,
        CLIMATE,
        g,
        get_filter(),
        &["/data/dir/sub/b.nc", "/data/x.txt"],
        false,
    )
    .await
    .unwrap();
    assert_eq!(records_of(&out, Worker::CatalogGet).len(), 1);
    let failed = get_failures(&out);
    assert_eq!(
        (failed[0].path.as_str(), failed[0].code),
        ("/data/dir/sub/b.nc", ErrorCode::StorageError)
    );
    assert!(
        failed[0].reason.contains("no stored copy"),
        "{}",
        failed[0].reason
    );
}

async fn get_batches(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 2, 250);
    let (h1, _, _, _) = get_world(&cat).await;
    let g = tid(60);
    let one = HoldingFilter {
        holding_id: Some(h1),
        ..get_filter()
    };
    // dir (0) + a.nc (100) | sub/b.nc (200) | dirx/c.nc (300, alone: larger than a batch)
    let out = get(
        &cat,
        ALICE,
        CLIMATE,
        g,
        one,
        &["/data/dir", "/data/dirx"],
        false,
    )
    .await
    .unwrap();
    let batches = sent(&out, Worker::CatalogGet, Action::Complete);
    let got: Vec<(Uuid, Vec<String>)> = batches.iter().map(|e| (e.sub_id, paths_of(e))).collect();
    assert_eq!(
        got,
        [
            (
                sub_id(g, "get", 0),
                vec!["/data/dir".to_owned(), "/data/dir/a.nc".to_owned()]
            ),
            (sub_id(g, "get", 1), vec!["/data/dir/sub/b.nc".to_owned()]),
            (sub_id(g, "get", 2), vec!["/data/dirx/c.nc".to_owned()]),
        ]
    );
    // The restored directory a later batch writes into travels with it, to be given its
    // recorded time again (/data/dirx has no record: nothing to give it).
    let contexts: Vec<Vec<&str>> = batches
        .iter()
        .map(|e| match &e.payload {
            Payload::Files { context, .. } => context.iter().map(|r| r.path.as_str()).collect(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(contexts, [vec![], vec!["/data/dir"], vec![]]);
    for b in &batches {
        match &b.payload {
            Payload::Files {
                holding_id,
                target,
                overwrite,
                ..
            } => {
                assert_eq!(*holding_id, Some(h1));
                assert_eq!(target.as_deref(), Some("/restore"));
                assert!(*overwrite);
            }
            other => panic!("{other:?}"),
        }
    }
    let split = sent(&out, Worker::MonitorPut, Action::Start);
    assert_eq!(split.len(), 1);
    assert_eq!(split[0].sub_id, g);
    assert_eq!(
        split[0].payload,
        Payload::MonitorUpdate {
            state: State::Split,
            files: 4,
            bytes: 600,
            failed: vec![],
            warnings: vec![],
            versions: 0,
        }
    );
    // Nothing found: no batches, one failure, and the SPLIT that ends the parent.
    let out = get(&cat, ALICE, CLIMATE, g, get_filter(), &["/nope"], false)
        .await
        .unwrap();
    assert!(sent(&out, Worker::CatalogGet, Action::Complete).is_empty());
    assert_eq!(sent(&out, Worker::CatalogGet, Action::Failed).len(), 1);
    assert_eq!(sent(&out, Worker::MonitorPut, Action::Start).len(), 1);
}

async fn list_find_meta(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let (h1, h2, hb, hc) = get_world(&cat).await;
    let e = |user: &str, group: &str, p: Payload| env(user, group, tid(70), p);
    let list = |f: HoldingFilter| e(ALICE, CLIMATE, Payload::ListHoldings { filter: f });
    setup_as(
        &cat,
        ALICE,
        CLIMATE,
        tid(5),
        None,
        Some(h1),
        &[("project", "cmip")],
    )
    .await;

    // list: paging, order, totals and summaries.
    let page = match rpc(&cat, Action::List, list(get_filter())).await {
        RpcReply::Holdings(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!((page.total, page.limit, page.offset), (2, DEFAULT_LIMIT, 0));
    let s1 = &page.holdings[0];
    assert_eq!(
        (
            s1.id,
            s1.label.as_str(),
            s1.user.as_str(),
            s1.group.as_str()
        ),
        (h1, "one", ALICE, CLIMATE)
    );
    assert_eq!((s1.files, s1.bytes), (7, 602));
    assert_eq!(s1.transactions, [tid(1), tid(5)]);
    assert_eq!(s1.tags.get("project").map(String::as_str), Some("cmip"));
    assert_eq!(
        (
            page.holdings[1].id,
            page.holdings[1].files,
            page.holdings[1].bytes
        ),
        (h2, 2, 103)
    );
    let desc = HoldingFilter {
        groupall: true,
        descending: true,
        limit: 2,
        ..get_filter()
    };
    let RpcReply::Holdings(page) = rpc(&cat, Action::List, list(desc.clone())).await else {
        panic!()
    };
    assert_eq!(page.total, 3, "groupall adds bob's holding, never carol's");
    assert_eq!(
        page.holdings.iter().map(|h| h.id).collect::<Vec<_>>(),
        [hb, h2]
    );
    let RpcReply::Holdings(page) = rpc(
        &cat,
        Action::List,
        list(HoldingFilter { offset: 2, ..desc }),
    )
    .await
    else {
        panic!()
    };
    assert_eq!((page.total, page.offset), (3, 2));
    assert_eq!(page.holdings.iter().map(|h| h.id).collect::<Vec<_>>(), [h1]);
    for (filter, want) in [
        (
            HoldingFilter {
                tags: [("project".to_owned(), "cmip".to_owned())].into(),
                ..get_filter()
            },
            vec![h1],
        ),
        (
            HoldingFilter {
                tags: [("project".to_owned(), "other".to_owned())].into(),
                ..get_filter()
            },
            vec![],
        ),
        (
            HoldingFilter {
                transaction_id: Some(tid(2)),
                ..get_filter()
            },
            vec![h2],
        ),
        (
            HoldingFilter {
                label: Some("o".into()),
                label_regex: true,
                ..get_filter()
            },
            vec![h1, h2],
        ),
        (
            HoldingFilter {
                label: Some("bobs".into()),
                ..get_filter()
            },
            vec![],
        ),
        (
            HoldingFilter {
                holding_id: Some(hc),
                groupall: true,
                ..get_filter()
            },
            vec![],
        ),
    ] {
        let RpcReply::Holdings(page) = rpc(&cat, Action::List, list(filter.clone())).await else {
            panic!()
        };
        assert_eq!(
            page.holdings.iter().map(|h| h.id).collect::<Vec<_>>(),
            want,
            "{filter:?}"
        );
        assert_eq!(page.total, want.len() as u64);
    }

    // find: an exact path, everything (paged), a regex.
    let find = |filter: HoldingFilter, path: Option<&str>, path_regex: bool| {
        e(
            ALICE,
            CLIMATE,
            Payload::FindFiles {
                filter,
                path: path.map(str::to_owned),
                path_regex,
                files_only: false,
                named_must_exist: false,
            },
        )
    };
    let RpcReply::Files(page) = rpc(
        &cat,
        Action::Find,
        find(get_filter(), Some("/data/dir/a.nc"), false),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(page.total, 2);
    let f = &page.files[0];
    assert_eq!(
        (f.holding_id, f.label.as_str(), f.size, f.transaction_id),
        (h1, "one", 100, tid(1))
    );
    assert_eq!(
        (f.kind, f.uid, f.gid, f.mode),
        (PathKind::File, 1000, 100, 0o644)
    );
    assert_eq!(
        f.mtime,
        DateTime::from_timestamp_nanos(1_700_000_000_123_456_789)
    );
    assert_eq!(f.blake3.as_deref(), Some("b3:/data/dir/a.nc"));
    // `/api/v2` (named_must_exist): a named holding the caller cannot see is not found, in one
    // text for another group's and for none at all; an empty find in a visible one is a page.
    let named = |filter: HoldingFilter, path: &str| {
        e(
            ALICE,
            CLIMATE,
            Payload::FindFiles {
                filter,
                path: Some(path.to_owned()),
                path_regex: false,
                files_only: false,
                named_must_exist: true,
            },
        )
    };
    for (filter, want) in [
        (
            HoldingFilter {
                holding_id: Some(hc),
                ..get_filter()
            },
            format!("holding {hc} not found among the holdings you can see"),
        ),
        (
            HoldingFilter {
                holding_id: Some(999_999),
                ..get_filter()
            },
            "holding 999999 not found among the holdings you can see".to_owned(),
        ),
        (
            HoldingFilter {
                label: Some("carols".into()),
                ..get_filter()
            },
            r#"no holding labelled "carols" among the holdings you can see"#.to_owned(),
        ),
    ] {
        let err = api_error(rpc(&cat, Action::Find, named(filter, "/data/dir/a.nc")).await);
        assert_eq!((err.code, err.message), (ErrorCode::NotFound, want));
    }
    let RpcReply::Files(empty) = rpc(
        &cat,
        Action::Find,
        named(
            HoldingFilter {
                holding_id: Some(h1),
                ..get_filter()
            },
            "/no/such/file",
        ),
    )
    .await
    else {
        panic!()
    };
    assert_eq!((empty.total, empty.files.len()), (0, 0));
    assert_eq!(
        f.locations,
        [FileLocation {
            tier: Tier::Warm,
            bucket: "nlds".into(),
            key: "obj/data/dir/a.nc".into()
        }]
    );
    assert_eq!((page.files[1].holding_id, page.files[1].size), (h2, 101));
    assert!(page.files[0].ingest_time <= page.files[1].ingest_time);
    let paged = HoldingFilter {
        limit: 3,
        offset: 3,
        descending: true,
        ..get_filter()
    };
    let RpcReply::Files(page) = rpc(&cat, Action::Find, find(paged.clone(), None, false)).await
    else {
        panic!()
    };
    assert_eq!(
        (page.total, page.limit, page.offset, page.files.len()),
        (9, 3, 3, 3)
    );
    // Newest first: t2's two files, then t1's seven by descending id.
    assert!(page.files.iter().all(|f| f.holding_id == h1));
    // The total without a count (the last page, full or not) and with one (past the end).
    for (offset, want) in [(6, (9, 3)), (7, (9, 2)), (20, (9, 0))] {
        let filter = HoldingFilter {
            offset,
            ..paged.clone()
        };
        let RpcReply::Files(page) = rpc(&cat, Action::Find, find(filter, None, false)).await else {
            panic!()
        };
        assert_eq!((page.total, page.files.len()), want, "offset {offset}");
    }
    let RpcReply::Files(page) = rpc(
        &cat,
        Action::Find,
        find(
            HoldingFilter {
                limit: 2,
                offset: 1,
                ..get_filter()
            },
            Some(r"/dir/.*\.nc$"),
            true,
        ),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(page.total, 3);
    assert_eq!(
        page.files
            .iter()
            .map(|f| (f.path.as_str(), f.holding_id))
            .collect::<Vec<_>>(),
        [("/data/dir/sub/b.nc", h1), ("/data/dir/a.nc", h2)]
    );
    let err = api_error(rpc(&cat, Action::Find, find(get_filter(), Some("("), true)).await);
    assert_eq!(err.code, ErrorCode::BadRequest);

    // A regex anchored at a literal scans that literal's index range, and the regex still
    // decides; `files_only` (the `/api/1.0.0` view) leaves the directory records out.
    let found = |pattern: &str, files_only: bool| {
        let cat = &cat;
        let req = e(
            ALICE,
            CLIMATE,
            Payload::FindFiles {
                filter: get_filter(),
                path: Some(pattern.to_owned()),
                path_regex: true,
                files_only,
                named_must_exist: false,
            },
        );
        async move {
            let RpcReply::Files(page) = rpc(cat, Action::Find, req).await else {
                panic!()
            };
            let mut paths: Vec<String> = page.files.into_iter().map(|f| f.path).collect();
            paths.sort();
            paths
        }
    };
    assert_eq!(
        found(r"^/data/dir/.*\.nc$", false).await,
        ["/data/dir/a.nc", "/data/dir/a.nc", "/data/dir/sub/b.nc"]
    );
    assert_eq!(
        found("^/data/dir", false).await,
        [
            "/data/dir",
            "/data/dir.nc",
            "/data/dir/a.nc",
            "/data/dir/a.nc",
            "/data/dir/sub/b.nc",
            "/data/dirx/c.nc"
        ]
    );
    assert_eq!(
        found("^/data/dir", true).await,
        [
            "/data/dir.nc",
            "/data/dir/a.nc",
            "/data/dir/a.nc",
            "/data/dir/sub/b.nc",
            "/data/dirx/c.nc"
        ]
    );
    assert_eq!(
        found("^/data/dir$|^/data/x", false).await,
        ["/data/dir", "/data/x.txt", "/data/x.txt"]
    );
    assert_eq!(found("^/data/link", true).await, ["/data/link"]);

    // meta: selectors, relabel, tags, ownership.
    let meta = |user: &str,
                filter: HoldingFilter,
                new_label: Option<&str>,
                new: &[(&str, &str)],
                del: &[(&str, &str)]| {
        let tags = |t: &[(&str, &str)]| -> Tags {
            t.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        e(
            user,
            CLIMATE,
            Payload::ChangeMeta {
                filter,
                new_label: new_label.map(str::to_owned),
                new_tags: tags(new),
                del_tags: tags(del),
                dry_run: false,
            },
        )
    };
    let err = api_error(
        rpc(
            &cat,
            Action::Meta,
            meta(ALICE, get_filter(), Some("x"), &[], &[]),
        )
        .await,
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (ErrorCode::BadRequest, "give a holding id, label or tags")
    );
    let by_id = |id| HoldingFilter {
        holding_id: Some(id),
        ..get_filter()
    };
    let err = api_error(
        rpc(
            &cat,
            Action::Meta,
            meta(ALICE, by_id(h1), Some("two"), &[], &[]),
        )
        .await,
    );
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(err.message.contains(&h2.to_string()), "{}", err.message);
    let err = api_error(
        rpc(
            &cat,
            Action::Meta,
            meta(
                ALICE,
                HoldingFilter {
                    groupall: true,
                    ..by_id(hb)
                },
                Some("mine"),
                &[],
                &[],
            ),
        )
        .await,
    );
    assert_eq!(err.code, ErrorCode::Forbidden);
    let err = api_error(
        rpc(
            &cat,
            Action::Meta,
            meta(
                ALICE,
                HoldingFilter {
                    label: Some("nope".into()),
                    ..get_filter()
                },
                None,
                &[("a", "b")],
                &[],
            ),
        )
        .await,
    );
    assert_eq!(err.code, ErrorCode::NotFound);
    let err = api_error(
        rpc(
            &cat,
            Action::Meta,
            meta(
                ALICE,
                HoldingFilter {
                    label: Some("o".into()),
                    label_regex: true,
                    ..get_filter()
                },
                Some("both"),
                &[],
                &[],
            ),
        )
        .await,
    );
    assert_eq!(err.code, ErrorCode::BadRequest);

    setup_as(
        &cat,
        ALICE,
        CLIMATE,
        tid(6),
        None,
        Some(h1),
        &[("keep", "1"), ("drop", "x"), ("any", "y")],
    )
    .await;
    let reply = rpc(
        &cat,
        Action::Meta,
        meta(
            ALICE,
            by_id(h1),
            Some("uno"),
            &[("project", "cmip7"), ("new", "n")],
            &[("drop", "x"), ("keep", "2"), ("any", "")],
        ),
    )
    .await;
    let RpcReply::Meta(m) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(m.holdings.len(), 1);
    let c = &m.holdings[0];
    assert_eq!(
        (
            c.id,
            c.user.as_str(),
            c.old.label.as_str(),
            c.new.label.as_str()
        ),
        (h1, ALICE, "one", "uno")
    );
    let keys = |t: &Tags| {
        t.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&c.old.tags),
        ["any=y", "drop=x", "keep=1", "project=cmip"]
    );
    assert_eq!(keys(&c.new.tags), ["keep=1", "new=n", "project=cmip7"]);
    let stored = holding::Entity::find_by_id(h1)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.label, "uno");
    assert_eq!(
        keys(&load_tags(&db, &[h1]).await.unwrap()[&h1]),
        ["keep=1", "new=n", "project=cmip7"]
    );
    // Select by tags, several holdings at once.
    setup_as(
        &cat,
        ALICE,
        CLIMATE,
        tid(7),
        None,
        Some(h2),
        &[("new", "n")],
    )
    .await;
    let RpcReply::Meta(m) = rpc(
        &cat,
        Action::Meta,
        meta(
            ALICE,
            HoldingFilter {
                tags: [("new".to_owned(), "n".to_owned())].into(),
                ..get_filter()
            },
            None,
            &[("shared", "s")],
            &[],
        ),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(
        m.holdings.iter().map(|c| c.id).collect::<Vec<_>>(),
        [h1, h2]
    );
    assert!(
        m.holdings
            .iter()
            .all(|c| c.new.tags.get("shared").map(String::as_str) == Some("s"))
    );
}

/// Pages of more than [`CHUNK`] rows, whose lookups take several `IN` lists on SQLite and one
/// array on PostgreSQL (`id_set`): every file of a find gets its own checksum and copy, whether the
/// page is read in order or fetched by id after a regex, and every holding of a list its own
/// tags and transaction.
async fn pages_beyond_a_chunk(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let e = |p: Payload| env(ALICE, CLIMATE, tid(90), p);
    let n = 2 * CHUNK + 1;
    let h = holding(&cat, ALICE, CLIMATE, tid(91), "big").await;
    let files: Vec<FileRecord> = (0..n)
        .map(|i| file_rec(&format!("/big/f{i:05}"), i as u64))
        .collect();
    put(&cat, ALICE, CLIMATE, tid(91), h, files).await;
    for (path, path_regex) in [(None, false), (Some("^/big/f0"), true)] {
        let filter = HoldingFilter {
            holding_id: Some(h),
            limit: n as u64,
            ..get_filter()
        };
        let find = Payload::FindFiles {
            filter,
            path: path.map(str::to_owned),
            path_regex,
            files_only: false,
            named_must_exist: false,
        };
        let RpcReply::Files(page) = rpc(&cat, Action::Find, e(find)).await else {
            panic!("not a page of files")
        };
        assert_eq!((page.total, page.files.len()), (n as u64, n), "{path:?}");
        let distinct: HashSet<&str> = page.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(distinct.len(), n, "{path:?}");
        for f in &page.files {
            assert_eq!(f.blake3, Some(format!("b3:{}", f.path)), "{path:?}");
            let keys: Vec<&str> = f.locations.iter().map(|l| l.key.as_str()).collect();
            assert_eq!(keys, [format!("obj{}", f.path)], "{path:?}");
            assert_eq!(f.size, f.path[7..].parse::<u64>().unwrap(), "{path:?}");
        }
    }

    let mut want = HashMap::new();
    for i in 0..=CHUNK as u128 {
        let label = format!("h{i:04}");
        let tags = [("name", label.as_str())];
        match setup_as(
            &cat,
            BOB,
            CLIMATE,
            tid(1_000 + i),
            Some(&label),
            None,
            &tags,
        )
        .await
        {
            RpcReply::Holding { id, .. } => want.insert(id, (label, tid(1_000 + i))),
            other => panic!("setup failed: {other:?}"),
        };
    }
    let list = Payload::ListHoldings {
        filter: HoldingFilter {
            limit: CHUNK as u64 + 1,
            ..get_filter()
        },
    };
    let page = match rpc(&cat, Action::List, env(BOB, CLIMATE, tid(92), list)).await {
        RpcReply::Holdings(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(page.holdings.len(), CHUNK + 1);
    for s in &page.holdings {
        let (label, t) = &want[&s.id];
        assert_eq!(&s.label, label);
        assert_eq!(s.tags.get("name"), Some(label));
        assert_eq!(s.transactions, [*t]);
    }
}

async fn run_all(db: impl AsyncFn() -> DatabaseConnection) {
    setup_rules(db().await).await;
    put_and_check(db().await).await;
    get_resolution(db().await).await;
    get_batches(db().await).await;
    list_find_meta(db().await).await;
    pages_beyond_a_chunk(db().await).await;
}

#[tokio::test]
async fn setup_rules_sqlite() {
    setup_rules(testing::memory().await).await;
}

#[tokio::test]
async fn put_is_idempotent_and_check_drops_existing_sqlite() {
    put_and_check(testing::memory().await).await;
}

#[tokio::test]
async fn get_resolution_sqlite() {
    get_resolution(testing::memory().await).await;
}

#[tokio::test]
async fn get_batches_sqlite() {
    get_batches(testing::memory().await).await;
}

#[tokio::test]
async fn list_find_meta_sqlite() {
    list_find_meta(testing::memory().await).await;
}

#[tokio::test]
async fn pages_beyond_a_chunk_sqlite() {
    pages_beyond_a_chunk(testing::memory().await).await;
}

/// `catalog.meta` by role: a USER changes only their own holdings, a MANAGER (or DEPUTY)
/// any of their group's but not another group's, an ADMIN any; a refusal in the group names
/// the holding, its owner and the reason, another group's holding is not found (as a missing
/// one), and nothing changes.
#[tokio::test]
async fn meta_changes_follow_the_callers_role() {
    use nlds_core::AccessRole;
    let cat = Catalogue::new(testing::memory().await, 1000, 1 << 30);
    let ha = holding(&cat, ALICE, CLIMATE, tid(1), "alice-run").await;
    let hb = holding(&cat, BOB, CLIMATE, tid(2), "bob-run").await;
    let hc = holding(&cat, CAROL, OCEAN, tid(3), "carol-run").await;
    let change = |user: &str, role: AccessRole, id: i64, tag: &str| {
        env(
            user,
            CLIMATE,
            tid(9),
            Payload::ChangeMeta {
                filter: HoldingFilter {
                    holding_id: Some(id),
                    ..get_filter()
                },
                new_label: None,
                new_tags: [("by".to_owned(), tag.to_owned())].into(),
                del_tags: Tags::new(),
                dry_run: false,
            },
        )
        .with_role(role)
    };
    let tags_of = async |id: i64| {
        let m = tag::Entity::find()
            .filter(tag::Column::HoldingId.eq(id))
            .all(&cat.db)
            .await
            .unwrap();
        m.into_iter()
            .map(|t| format!("{}={}", t.key, t.value))
            .collect::<Vec<_>>()
    };

    // A USER: not bob's holding in the same group, whatever the reply lets them see.
    let err = api_error(
        rpc(
            &cat,
            Action::Meta,
            change(ALICE, AccessRole::User, hb, "alice"),
        )
        .await,
    );
    assert_eq!(err.code, ErrorCode::Forbidden, "{}", err.message);
    assert!(
        err.message
            .contains(&format!("holding {hb} (\"bob-run\") belongs to bob"))
            && err.message.contains("may change only their own holdings"),
        "{}",
        err.message
    );
    assert!(tags_of(hb).await.is_empty(), "nothing changed");
    // ... but their own.
    let ok = rpc(
        &cat,
        Action::Meta,
        change(ALICE, AccessRole::User, ha, "alice"),
    )
    .await;
    assert!(matches!(ok, RpcReply::Meta(_)), "{ok:?}");
    assert_eq!(tags_of(ha).await, ["by=alice"]);

    // A MANAGER (and a DEPUTY) of climate: bob's holding, not carol's in ocean.
    for (role, tag) in [
        (AccessRole::Manager, "manager"),
        (AccessRole::Deputy, "deputy"),
    ] {
        let ok = rpc(&cat, Action::Meta, change(ALICE, role, hb, tag)).await;
        let RpcReply::Meta(m) = ok else {
            panic!("{role}: {ok:?}")
        };
        assert_eq!((m.holdings[0].id, m.holdings[0].user.as_str()), (hb, BOB));
        assert_eq!(tags_of(hb).await, [format!("by={tag}")]);
    }
    let err = api_error(
        rpc(
            &cat,
            Action::Meta,
            change(ALICE, AccessRole::Manager, hc, "x"),
        )
        .await,
    );
    // Another group's holding is outside alice's scope: not found, exactly like an id that
    // does not exist, naming nothing of it (label, owner, group).
    let missing = api_error(
        rpc(
            &cat,
            Action::Meta,
            change(ALICE, AccessRole::Manager, hc + 1000, "x"),
        )
        .await,
    );
    assert_eq!(err.code, ErrorCode::NotFound, "{err:?}");
    assert_eq!(
        err, missing,
        "another group's holding answers as a missing one"
    );
    for secret in ["carol-run", CAROL, OCEAN] {
        assert!(!err.message.contains(secret), "{}", err.message);
    }
    for role in [AccessRole::User, AccessRole::Deputy] {
        let e = api_error(rpc(&cat, Action::Meta, change(ALICE, role, hc, "x")).await);
        assert_eq!(e, missing, "{role}");
    }
    assert!(
        tags_of(hc).await.is_empty(),
        "another group's holding is untouched"
    );
    // A manager renaming bob's holding: the label is unique among bob's holdings.
    let relabel = env(
        ALICE,
        CLIMATE,
        tid(9),
        Payload::ChangeMeta {
            filter: HoldingFilter {
                holding_id: Some(hb),
                ..get_filter()
            },
            new_label: Some("alice-run".into()),
            new_tags: Tags::new(),
            del_tags: Tags::new(),
            dry_run: false,
        },
    )
    .with_role(AccessRole::Manager);
    let ok = rpc(&cat, Action::Meta, relabel).await;
    assert!(
        matches!(ok, RpcReply::Meta(_)),
        "alice's own label does not clash: {ok:?}"
    );

    // An ADMIN: any group's holding.
    let ok = rpc(
        &cat,
        Action::Meta,
        change(ALICE, AccessRole::Admin, hc, "admin"),
    )
    .await;
    assert!(matches!(ok, RpcReply::Meta(_)), "{ok:?}");
    assert_eq!(tags_of(hc).await, ["by=admin"]);
}

/// The same scenarios on PostgreSQL (`NLDS_TEST_DATABASE_URL`; required under `CI`), each
/// in a fresh database.
#[tokio::test]
async fn catalogue_postgres() {
    let mut dbs = Vec::new();
    for i in 0..6 {
        match testing::postgres(&format!("catalogue{i}")).await {
            Some(pg) => dbs.push(pg),
            None => return,
        }
    }
    let conns: Vec<DatabaseConnection> = dbs.iter().map(|p| p.db.clone()).collect();
    let next = std::sync::Mutex::new(conns.into_iter());
    run_all(async || next.lock().unwrap().next().unwrap()).await;
    for pg in dbs {
        pg.drop_now().await;
    }
}

#[tokio::test]
async fn plan_lists_what_a_get_restores_and_meta_dry_run_changes_nothing() {
    let db = testing::memory().await;
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let (h1, h2, _, _) = get_world(&cat).await;
    let plan = Payload::PlanGet {
        filter: get_filter(),
        paths: vec!["/data/dir".into(), "/data/x.txt".into(), "/nowhere".into()],
        regex: false,
    };
    let RpcReply::Plan { files, missing } =
        rpc(&cat, Action::Plan, env(ALICE, CLIMATE, tid(9), plan)).await
    else {
        panic!("not a plan")
    };
    let got: Vec<(&str, i64, u64)> = files
        .iter()
        .map(|f| (f.path.as_str(), f.holding_id, f.size))
        .collect();
    // The newest copy of each path wins, as in a real get; nothing is published.
    assert!(got.contains(&("/data/x.txt", h2, 2)), "{got:?}");
    assert!(got.contains(&("/data/dir/a.nc", h2, 101)), "{got:?}");
    assert!(got.contains(&("/data/dir/sub/b.nc", h1, 200)), "{got:?}");
    assert!(
        !got.iter().any(|(p, _, _)| p.starts_with("/data/dirx")),
        "{got:?}"
    );
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].path, "/nowhere");
    assert_eq!(missing[0].code, ErrorCode::NotFound);

    let change = |dry_run| Payload::ChangeMeta {
        filter: HoldingFilter {
            holding_id: Some(h1),
            ..get_filter()
        },
        new_label: Some("renamed".into()),
        new_tags: [("k".to_string(), "v".to_string())].into(),
        del_tags: Tags::new(),
        dry_run,
    };
    let RpcReply::Meta(m) = rpc(
        &cat,
        Action::Meta,
        env(ALICE, CLIMATE, tid(9), change(true)),
    )
    .await
    else {
        panic!("not a meta reply")
    };
    assert!(m.dry_run);
    assert_eq!(m.holdings[0].new.label, "renamed");
    assert_eq!(
        m.holdings[0].new.tags.get("k").map(String::as_str),
        Some("v")
    );
    let stored = holding::Entity::find_by_id(h1)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.label, "one", "a dry run must not rename");
    assert!(
        load_tags(&db, &[h1])
            .await
            .unwrap()
            .get(&h1)
            .is_none_or(|t| t.is_empty())
    );
    let RpcReply::Meta(m) = rpc(
        &cat,
        Action::Meta,
        env(ALICE, CLIMATE, tid(9), change(false)),
    )
    .await
    else {
        panic!("not a meta reply")
    };
    assert!(!m.dry_run);
    let stored = holding::Entity::find_by_id(h1)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.label, "renamed");
}

#[tokio::test]
async fn exact_and_prefix_lookups_use_the_path_index() {
    let db = testing::memory().await;
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    get_world(&cat).await;
    let e = env(
        ALICE,
        CLIMATE,
        tid(80),
        Payload::Stat {
            filter: Default::default(),
        },
    );
    let scope = cat.scope(&e, &get_filter(), false).await.unwrap();
    let plan = |q: sea_orm::Select<file::Entity>| {
        let db = db.clone();
        async move {
            let stmt = q.build(DbBackend::Sqlite);
            let explain = Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!("EXPLAIN QUERY PLAN {}", stmt.sql),
                stmt.values.unwrap_or(sea_orm::Values(Vec::new())),
            );
            db.query_all_raw(explain)
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<String>("", "detail").unwrap())
                .collect::<Vec<_>>()
        }
    };
    let exact =
        plan(find_query(scope.clone(), Order::Asc).filter(file::Column::Path.eq("/data/x.txt")))
            .await;
    assert!(
        exact
            .iter()
            .any(|d| d.starts_with("SEARCH file USING INDEX") && d.contains("path=?")),
        "{exact:?}"
    );
    let (lo, hi) = prefix_range("/data/dir");
    let range = plan(
        scoped_files(&scope)
            .filter(file::Column::Path.gt(lo))
            .filter(file::Column::Path.lt(hi)),
    )
    .await;
    assert!(
        range
            .iter()
            .any(|d| d.starts_with("SEARCH file USING INDEX") && d.contains("path>? AND path<?")),
        "{range:?}"
    );
}

#[test]
fn prefix_ranges_and_paths() {
    assert_eq!(
        prefix_range("/a/b"),
        ("/a/b/".to_owned(), "/a/b0".to_owned())
    );
    assert_eq!(prefix_range("/"), ("/".to_owned(), "0".to_owned()));
    assert_eq!(normalise("/a/b//"), "/a/b");
    assert_eq!(normalise("/"), "/");
    // Byte order puts every "/a/b/..." between the bounds and "/a/b.c", "/a/bc" outside.
    let (lo, hi) = prefix_range("/a/b");
    for inside in ["/a/b/c", "/a/b//", "/a/b/\u{10ffff}"] {
        assert!(lo.as_str() < inside && inside < hi.as_str(), "{inside}");
    }
    for outside in ["/a/b", "/a/b.c", "/a/bc", "/a/b0", "/a/b-"] {
        assert!(
            !(lo.as_str() < outside && outside < hi.as_str()),
            "{outside}"
        );
    }
}

#[tokio::test]
async fn rpc_errors_are_replies_and_unknown_keys_are_refused() {
    let cat = Catalogue::new(testing::memory().await, 10, 10);
    let e = env(
        ALICE,
        CLIMATE,
        tid(1),
        Payload::Stat {
            filter: Default::default(),
        },
    );
    let err = api_error(rpc(&cat, Action::List, e.clone()).await);
    assert_eq!(err.code, ErrorCode::BadRequest);
    let err = cat
        .handle(key(Worker::Index, Action::Start), e)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(
        err.message.contains("nlds-api.index.start"),
        "{}",
        err.message
    );
}
