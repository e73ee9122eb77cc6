//! Stage requests through their states, on SQLite and PostgreSQL: warm files complete at once,
//! cold-only ones wait for the shared recall (SUBMITTED → STARTED → COMPLETED), pins per
//! requester, cancel, release, delete, locality, and the owner-only visibility of a request.

use nlds_bus::Handler;
use nlds_core::AccessRole;
use nlds_core::api::ApiAction;
use nlds_core::message::{AggregateSums, ObjectRef, RestoredFile, RpcReply};
use sea_orm::{DatabaseConnection, PaginatorTrait};

use super::*;
use crate::db::{outbox, pin, recall, testing};

fn env(user: &str, role: AccessRole, q: StageQuery) -> Envelope {
    Envelope::new(
        Uuid::new_v4(),
        user,
        "climate",
        ApiAction::Get,
        "rpc",
        Payload::Stage(q),
    )
    .with_role(role)
}

async fn ask(
    cat: &Catalogue,
    user: &str,
    q: StageQuery,
) -> std::result::Result<StageAnswer, ApiError> {
    let out = cat
        .handle(
            RoutingKey::new(Worker::Catalog, Action::Stage),
            env(user, AccessRole::User, q),
        )
        .await
        .unwrap();
    match out.reply.expect("an RPC replies").payload {
        Payload::Reply(RpcReply::Stage(a)) => Ok(a),
        Payload::Reply(RpcReply::Error(e)) => Err(e),
        other => panic!("not a stage answer: {other:?}"),
    }
}

async fn stage(cat: &Catalogue, user: &str, h: i64, paths: &[&str]) -> Uuid {
    let q = StageQuery::Create {
        selection: Selection {
            holding_id: Some(h),
            groupall: true,
            ..Default::default()
        },
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        lifetime_secs: Some(3600),
    };
    match ask(cat, user, q).await.unwrap() {
        StageAnswer::Created(c) => c.request_id,
        other => panic!("{other:?}"),
    }
}

async fn status(cat: &Catalogue, user: &str, id: Uuid) -> Vec<(String, StageState)> {
    match ask(cat, user, StageQuery::Status { request_id: id })
        .await
        .unwrap()
    {
        StageAnswer::Status(s) => s.files.into_iter().map(|f| (f.path, f.state)).collect(),
        other => panic!("{other:?}"),
    }
}

async fn locality(cat: &Catalogue, h: i64, paths: &[&str]) -> Vec<Option<Locality>> {
    let q = StageQuery::Locality {
        selection: Selection {
            holding_id: Some(h),
            ..Default::default()
        },
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    };
    match ask(cat, "alice", q).await.unwrap() {
        StageAnswer::Localities(l) => l.into_iter().map(|f| f.locality).collect(),
        other => panic!("{other:?}"),
    }
}

async fn pins(db: &DatabaseConnection) -> Vec<(i64, String)> {
    let mut v: Vec<(i64, String)> = pin::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.file_id, p.requester))
        .collect();
    v.sort();
    v
}

async fn recall_starts(db: &DatabaseConnection) -> usize {
    outbox::Entity::find()
        .all(db)
        .await
        .unwrap()
        .iter()
        .filter(|m| m.routing_key == "nlds-api.archive-get.start")
        .count()
}

/// Archives the holding's files into one aggregate, records it stored and evicts the warm
/// copies; returns the aggregation id.
async fn archive_and_evict(cat: &Catalogue, db: &DatabaseConnection, h: i64) -> i64 {
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
            round,
        )
        .await
        .unwrap();
    let (_, job) = out.publish[0].clone();
    let Payload::ArchiveAggregate {
        aggregation_id,
        name,
        ..
    } = &job.payload
    else {
        panic!("{:?}", job.payload)
    };
    let size = aggregation::Entity::find_by_id(*aggregation_id)
        .one(db)
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
                size: super::super::to_u64(size),
                adler32: 1,
                crc32c: 2,
                blake3: "b".into(),
            },
        }),
    )
    .await
    .unwrap();
    cat.evict(&evict_request(), h).await.unwrap();
    *aggregation_id
}

fn evict_request() -> Envelope {
    Envelope::new(
        Uuid::new_v4(),
        "nlds",
        "nlds",
        ApiAction::Get,
        "rpc",
        Payload::Evict { holding_id: 0 },
    )
}

/// archive-get reports to the catalogue about aggregation `agg`.
async fn report(cat: &Catalogue, agg: i64, payload: Payload) {
    let e = Envelope::new(
        Uuid::new_v4(),
        "nlds",
        "nlds",
        ApiAction::ArchiveGet,
        "recall",
        payload,
    );
    let _ = agg;
    cat.handle(
        RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start),
        e,
    )
    .await
    .unwrap();
}

fn restored(ids: &[i64]) -> Vec<RestoredFile> {
    ids.iter()
        .map(|id| RestoredFile {
            file_id: *id,
            object: ObjectRef {
                bucket: "nlds".into(),
                key: format!("back/{id}"),
                tenancy: None,
            },
        })
        .collect()
}

async fn lifecycle(db: DatabaseConnection) {
    use StageState::*;
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let (h, files) = testing::holding_with(&db, "s", &[5, 6, 7]).await;

    // Warm: COMPLETED at once and pinned; unknown paths fail per file.
    let warm = stage(&cat, "alice", h, &["/s/f2", "/nope"]).await;
    assert_eq!(
        status(&cat, "alice", warm).await,
        vec![("/nope".into(), Failed), ("/s/f2".into(), Completed)]
    );
    assert_eq!(pins(&db).await, vec![(files[2], stage_requester(warm))]);
    let f2 = file::Entity::find_by_id(files[2])
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f2.access_count, 1, "a stage is an access");
    ask(&cat, "alice", StageQuery::Delete { request_id: warm })
        .await
        .unwrap();
    assert!(
        pins(&db).await.is_empty(),
        "deleting a request drops its pins"
    );

    let agg = archive_and_evict(&cat, &db, h).await;
    assert_eq!(
        locality(&cat, h, &["/s/f0", "/s", "/missing"]).await,
        vec![Some(Locality::Tape), Some(Locality::None), None]
    );

    // Two users stage the same file: one recall for both (one per aggregate).
    let a = stage(&cat, "alice", h, &["/s/f0", "/s/f1"]).await;
    let b = stage(&cat, "bob", h, &["/s/f0"]).await;
    assert_eq!(recall::Entity::find().count(&db).await.unwrap(), 1);
    assert_eq!(
        recall_starts(&db).await,
        1,
        "one archive-get.start for both"
    );
    assert_eq!(
        status(&cat, "alice", a).await,
        vec![("/s/f0".into(), Submitted), ("/s/f1".into(), Submitted)]
    );
    // Another user's request is not found, and says nothing of whose it is.
    let e = ask(&cat, "bob", StageQuery::Status { request_id: a })
        .await
        .unwrap_err();
    assert_eq!(e.code, nlds_core::ErrorCode::NotFound, "{e:?}");
    assert!(!e.message.contains("alice"), "{}", e.message);

    report(
        &cat,
        agg,
        Payload::RecallProgress {
            aggregation_id: agg,
            state: nlds_core::State::ArchivePreparing,
        },
    )
    .await;
    assert_eq!(
        status(&cat, "bob", b).await,
        vec![("/s/f0".into(), Started)]
    );
    report(
        &cat,
        agg,
        Payload::ArchiveRestored {
            aggregation_id: agg,
            restored: restored(&files),
        },
    )
    .await;
    assert_eq!(
        status(&cat, "alice", a).await,
        vec![("/s/f0".into(), Completed), ("/s/f1".into(), Completed)]
    );
    let mut expected = vec![
        (files[0], stage_requester(a)),
        (files[0], stage_requester(b)),
        (files[1], stage_requester(a)),
    ];
    expected.sort();
    assert_eq!(pins(&db).await, expected);
    assert_eq!(
        locality(&cat, h, &["/s/f0", "/s/f2"]).await,
        vec![Some(Locality::DiskAndTape), Some(Locality::DiskAndTape)]
    );

    // Alice releases: bob's pin of f0 stays, so evicting keeps f0 warm.
    let released = ask(
        &cat,
        "alice",
        StageQuery::Release {
            request_id: a,
            paths: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        released,
        StageAnswer::Changed(StageChange {
            cancelled: 0,
            unpinned: 2
        })
    );
    assert_eq!(pins(&db).await, vec![(files[0], stage_requester(b))]);
    let mut evicted: Vec<String> = cat
        .evict(&evict_request(), h)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.path)
        .collect();
    evicted.sort();
    assert_eq!(evicted, vec!["/s/f1".to_owned(), "/s/f2".to_owned()]);
    assert_eq!(
        locality(&cat, h, &["/s/f0", "/s/f1"]).await,
        vec![Some(Locality::DiskAndTape), Some(Locality::Tape)]
    );

    // A release naming a path that is not the request's changes nothing.
    let e = ask(
        &cat,
        "bob",
        StageQuery::Release {
            request_id: b,
            paths: Some(vec!["/s/f1".into()]),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, nlds_core::ErrorCode::BadRequest, "{e:?}");
    assert_eq!(pins(&db).await.len(), 1);

    // Cancel a submitted stage: CANCELLED, it stops waiting, the recall continues for others.
    let c = stage(&cat, "alice", h, &["/s/f1"]).await;
    let g = stage(&cat, "bob", h, &["/s/f1"]).await;
    assert_eq!(
        recall_starts(&db).await,
        2,
        "a new recall of the evicted file"
    );
    let changed = ask(
        &cat,
        "alice",
        StageQuery::Cancel {
            request_id: c,
            paths: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        changed,
        StageAnswer::Changed(StageChange {
            cancelled: 1,
            unpinned: 0
        })
    );
    assert_eq!(
        status(&cat, "alice", c).await,
        vec![("/s/f1".into(), Cancelled)]
    );
    assert_eq!(recall::Entity::find().count(&db).await.unwrap(), 1);
    report(
        &cat,
        agg,
        Payload::ArchiveRestored {
            aggregation_id: agg,
            restored: restored(&files[1..]),
        },
    )
    .await;
    assert_eq!(
        status(&cat, "alice", c).await,
        vec![("/s/f1".into(), Cancelled)]
    );
    assert_eq!(
        status(&cat, "bob", g).await,
        vec![("/s/f1".into(), Completed)]
    );
    assert!(
        !pins(&db).await.contains(&(files[1], stage_requester(c))),
        "a cancelled stage pins nothing"
    );

    // A failed recall fails the stage's waiting files with the reason.
    cat.evict(&evict_request(), h).await.unwrap();
    let f = stage(&cat, "alice", h, &["/s/f2"]).await;
    let agg_tid = aggregation::Entity::find_by_id(agg)
        .one(&db)
        .await
        .unwrap()
        .unwrap()
        .transaction_id;
    let mut failed = Envelope::new(
        Uuid::parse_str(&agg_tid).unwrap(),
        "nlds",
        "nlds",
        ApiAction::ArchiveGet,
        "recall",
        Payload::Failed {
            files: vec![nlds_core::FailedFile::new(
                "agg",
                nlds_core::ErrorCode::StorageError,
                "the tape is unreadable",
            )],
        },
    );
    failed.sub_id = failed.transaction_id;
    cat.handle(
        RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start),
        failed,
    )
    .await
    .unwrap();
    match ask(&cat, "alice", StageQuery::Status { request_id: f })
        .await
        .unwrap()
    {
        StageAnswer::Status(s) => {
            assert_eq!(s.files[0].state, Failed);
            assert_eq!(s.files[0].error.as_deref(), Some("the tape is unreadable"));
            assert!(s.completed_at.is_some());
        }
        other => panic!("{other:?}"),
    }

    // Deleting forgets the request.
    ask(&cat, "alice", StageQuery::Delete { request_id: c })
        .await
        .unwrap();
    let e = ask(&cat, "alice", StageQuery::Status { request_id: c })
        .await
        .unwrap_err();
    assert_eq!(e.code, nlds_core::ErrorCode::NotFound);
}

#[tokio::test]
async fn stage_lifecycle_sqlite() {
    lifecycle(testing::memory().await).await;
}

#[tokio::test]
async fn stage_lifecycle_postgres() {
    let Some(pg) = testing::postgres("stage").await else {
        return;
    };
    lifecycle(pg.db.clone()).await;
    pg.drop_now().await;
}

#[tokio::test]
async fn lifetimes_default_and_cap() {
    let policy = nlds_settings::PolicyConfig {
        stage_lifetime_secs: 100,
        stage_max_lifetime_secs: 1000,
        ..Default::default()
    };
    let cat = Catalogue::new(testing::memory().await, 1000, 1 << 30).with_policy(policy);
    assert_eq!(cat.stage_lifetime(None).unwrap(), 100);
    assert_eq!(cat.stage_lifetime(Some(500)).unwrap(), 500);
    assert_eq!(cat.stage_lifetime(Some(5000)).unwrap(), 1000);
    assert!(cat.stage_lifetime(Some(0)).is_err());
}

#[test]
fn locality_of_each_kind_of_copy() {
    let now = Utc::now();
    let m = file::Model {
        id: 1,
        holding_id: 1,
        transaction_id: 1,
        path: "/a".into(),
        kind: PathKind::File,
        link_target: None,
        size: 5,
        uid: 0,
        gid: 0,
        mode: 0,
        mtime_ns: 0,
        version: 1,
        deleted_at: None,
        deleted_by: None,
        delete_transaction: None,
        last_access: None,
        access_count: 0,
        xattrs: None,
    };
    let loc = |tier, key: &str| location::Model {
        id: 0,
        file_id: 1,
        tier,
        bucket: "b".into(),
        key: key.into(),
        tenancy: None,
        created: now,
    };
    let stored: HashMap<String, aggregation::Model> = HashMap::new();
    let mut with_agg = stored.clone();
    with_agg.insert(
        "agg".into(),
        aggregation::Model {
            id: 1,
            name: "agg".into(),
            transaction_id: Uuid::nil().to_string(),
            holding_id: 1,
            backend: "dir".into(),
            state: aggregation::State::Stored,
            size: 5,
            members: 1,
            adler32: None,
            crc32c: None,
            blake3: None,
            created: now,
            lease_until: None,
            stored: Some(now),
        },
    );
    assert_eq!(
        locality_of(&m, &[loc(Tier::Warm, "k")], &stored),
        Locality::Disk
    );
    assert_eq!(
        locality_of(&m, &[loc(Tier::Cold, "agg")], &with_agg),
        Locality::Tape
    );
    assert_eq!(
        locality_of(
            &m,
            &[loc(Tier::Warm, "k"), loc(Tier::Cold, "agg")],
            &with_agg
        ),
        Locality::DiskAndTape
    );
    assert_eq!(
        locality_of(&m, &[loc(Tier::Cold, "gone")], &with_agg),
        Locality::Lost
    );
    assert_eq!(
        locality_of(
            &m,
            &[loc(Tier::Warm, "k"), loc(Tier::Cold, "gone")],
            &with_agg
        ),
        Locality::Disk
    );
    let dir = file::Model {
        kind: PathKind::Directory,
        size: 0,
        ..m.clone()
    };
    assert_eq!(locality_of(&dir, &[], &stored), Locality::None);
}
