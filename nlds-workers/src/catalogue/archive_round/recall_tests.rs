use super::*;
use crate::db::{recall, testing};
use nlds_bus::Handler;
use nlds_core::PathKind;
use nlds_core::message::{HoldingFilter, RestoredFile};

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
    let (h, files) = crate::db::testing::holding_with(&db, "r", &[5, 6]).await;
    let (job, aggregation_id, evicted) = archived_and_evicted(&db, &cat, h).await;
    assert_eq!(evicted, files.len());
    let round = archive_next();

    let get = |tid: Uuid| get_request(tid, h, "/r/f0");
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
                    sea_orm::sea_query::Expr::value(Utc::now() - chrono::Duration::minutes(mins)),
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
            aggregation_id,
            state: nlds_core::State::ArchivePreparing,
        }),
    )
    .await
    .unwrap();
    age(10).await;
    assert_eq!(starts(&cat.handle(next, round).await.unwrap()), 0);
}

/// Alice's get of `path` from holding `h` into `/t`, as transaction `tid`.
fn get_request(tid: Uuid, h: i64, path: &str) -> Envelope {
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
            paths: vec![path.into()],
            regex: false,
            target: Some("/t".into()),
            overwrite: false,
        },
    )
}

/// A `catalog-archive-next.start` (one archive round).
fn archive_next() -> Envelope {
    Envelope::new(
        Uuid::new_v4(),
        "nlds",
        "nlds",
        ApiAction::ArchivePut,
        "a",
        Payload::ArchiveNext,
    )
}

/// Archives every file of holding `h` (one aggregate, reported stored) and evicts their warm
/// copies: the archive-put job, its aggregation id, and how many copies were evicted.
async fn archived_and_evicted(
    db: &sea_orm::DatabaseConnection,
    cat: &Catalogue,
    h: i64,
) -> (Envelope, i64, usize) {
    let out = cat
        .handle(
            RoutingKey::new(Worker::CatalogArchiveNext, Action::Start),
            archive_next(),
        )
        .await
        .unwrap();
    let (job_key, job) = out.publish[0].clone();
    assert_eq!(job_key, RoutingKey::new(Worker::ArchivePut, Action::Start));
    let Payload::ArchiveAggregate {
        aggregation_id,
        name,
        ..
    } = job.payload.clone()
    else {
        panic!("{:?}", job.payload)
    };
    let size = aggregation::Entity::find_by_id(aggregation_id)
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .size;
    cat.handle(
        RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start),
        job.reply(Payload::ArchiveStored {
            aggregation_id,
            name,
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
    let evicted = cat.evict(&evict_request(h), h).await.unwrap().len();
    (job, aggregation_id, evicted)
}

/// The `catalog.evict` request of an operator for holding `h`.
fn evict_request(h: i64) -> Envelope {
    Envelope::new(
        uuid::Uuid::new_v4(),
        "nlds",
        "nlds",
        nlds_core::api::ApiAction::Get,
        "rpc",
        Payload::Evict { holding_id: h },
    )
}

/// A recall of the first file of holding `h` (labelled `label`, every file of it archived and
/// evicted) that a get waits for: its aggregation id.
async fn a_waiting_recall(
    db: &sea_orm::DatabaseConnection,
    cat: &Catalogue,
    h: i64,
    label: &str,
) -> i64 {
    let (_, aggregation_id, _) = archived_and_evicted(db, cat, h).await;
    let get = get_request(Uuid::new_v4(), h, &format!("/{label}/f0"));
    let out = cat
        .handle(RoutingKey::new(Worker::CatalogGet, Action::Start), get)
        .await
        .unwrap();
    assert_eq!(starts(&out), 1);
    aggregation_id
}

/// How many get batches an outcome resumes.
fn resumed(out: &Outcome) -> usize {
    out.publish
        .iter()
        .filter(|(k, _)| *k == RoutingKey::new(Worker::CatalogGet, Action::Complete))
        .count()
}

/// Two reports that the same recall restored its files, handled at once (a worker killed
/// mid-recall; its job and its delayed check both taken up by the next one): only one resumes
/// the waiting get. The other report's claim is held open in a transaction of the test while the
/// catalogue handles the second, as two catalogue consumers would interleave on PostgreSQL.
#[tokio::test]
async fn a_recall_reported_restored_twice_at_once_resumes_its_get_once() {
    use sea_orm::TransactionTrait;
    let Some(pg) = testing::postgres("recall_claim").await else {
        return;
    };
    let db = pg.db.clone();
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    // Reports of recall `agg` of `file` while a transaction of the test holds the recall's row
    // deleted: the outcome of the catalogue's report, once the test's transaction commits
    // (`commit`: it claimed the recall first) or rolls back.
    let race = |agg: i64, file: i64, commit: bool| {
        let (db, cat) = (db.clone(), &cat);
        async move {
            let restored = vec![RestoredFile {
                file_id: file,
                object: ObjectRef {
                    bucket: "b".into(),
                    key: format!("k{file}"),
                    tenancy: Default::default(),
                },
            }];
            let other = db.begin().await.unwrap();
            let taken = recall::Entity::delete_many()
                .filter(recall::Column::AggregationId.eq(agg))
                .exec(&other)
                .await
                .unwrap();
            assert_eq!(taken.rows_affected, 1);
            let (out, ()) = tokio::join!(cat.recall_restored(agg, &restored), async {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if commit {
                    other.commit().await.unwrap();
                } else {
                    other.rollback().await.unwrap();
                }
            });
            resumed(&out.unwrap())
        }
    };

    // The other report claimed the recall first: this one resumes nothing.
    let (h, files) = testing::holding_with(&db, "w", &[5, 6]).await;
    let agg = a_waiting_recall(&db, &cat, h, "w").await;
    assert_eq!(
        race(agg, files[0], true).await,
        0,
        "resumed by the other report only"
    );

    // The other report's claim came to nothing (its transaction failed): this one resumes the
    // get.
    let (h, files) = testing::holding_with(&db, "v", &[7, 8]).await;
    let agg = a_waiting_recall(&db, &cat, h, "v").await;
    assert_eq!(race(agg, files[0], false).await, 1);
    pg.drop_now().await;
}

/// The files of a get that waited for a recall are restored last, after the batch with their
/// directory gave it its recorded time: their batch carries that directory (`context`), so
/// transfer-get gives it its time again once it wrote into it.
#[tokio::test]
async fn a_resumed_get_carries_the_directories_its_files_are_in() {
    let db = testing::memory().await;
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let (h, files) = testing::holding_with(&db, "r", &[5, 6]).await;
    let (_, agg, _) = archived_and_evicted(&db, &cat, h).await;
    let f0 = crate::db::file::Entity::find_by_id(files[0])
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    crate::db::file::Entity::insert(crate::db::file::ActiveModel {
        holding_id: sea_orm::Set(h),
        transaction_id: sea_orm::Set(f0.transaction_id),
        path: sea_orm::Set("/r".into()),
        kind: sea_orm::Set(PathKind::Directory),
        size: sea_orm::Set(0),
        uid: sea_orm::Set(1),
        gid: sea_orm::Set(1),
        mode: sea_orm::Set(0o555),
        mtime_ns: sea_orm::Set(1_600_000_000_000_000_000),
        ..Default::default()
    })
    .exec(&db)
    .await
    .unwrap();
    let get = get_request(Uuid::new_v4(), h, "/r");
    let out = cat
        .handle(RoutingKey::new(Worker::CatalogGet, Action::Start), get)
        .await
        .unwrap();
    assert_eq!(starts(&out), 1, "the files wait for a recall");
    let restored: Vec<RestoredFile> = files
        .iter()
        .map(|&file_id| RestoredFile {
            file_id,
            object: ObjectRef {
                bucket: "b".into(),
                key: format!("k{file_id}"),
                tenancy: Default::default(),
            },
        })
        .collect();
    let out = cat.recall_restored(agg, &restored).await.unwrap();
    let batches: Vec<_> = out
        .publish
        .iter()
        .filter(|(k, _)| *k == RoutingKey::new(Worker::CatalogGet, Action::Complete))
        .collect();
    assert_eq!(batches.len(), 1);
    let Payload::Files { files, context, .. } = &batches[0].1.payload else {
        panic!("{:?}", batches[0].1.payload)
    };
    assert_eq!(files.len(), 2);
    let context: Vec<(&str, u32, i64)> = context
        .iter()
        .map(|r| (r.path.as_str(), r.mode, r.mtime_ns))
        .collect();
    assert_eq!(context, [("/r", 0o555, 1_600_000_000_000_000_000)]);
}
