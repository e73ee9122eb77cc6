//! Access tracking and get pins, on SQLite and (with `NLDS_TEST_DATABASE_URL`) PostgreSQL: a get
//! of many files records them and pins them with a bounded number of statements.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use nlds_bus::Handler;
use nlds_core::api::ApiAction;
use nlds_core::message::{HoldingFilter, RpcReply};
use nlds_core::{Action, Envelope, Payload, RoutingKey, Worker};
use nlds_settings::PolicyConfig;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use super::{get_requester, pin, pinned, record, touch, unpin};
use crate::catalogue::Catalogue;
use crate::db::{file, holding, pin as pin_row, testing};

/// Files in the holding a get reads: more than two chunks of ids.
const N: usize = 1_201;
const PIN_SECS: u64 = 600;

/// The SQL of every statement run on a connection.
type Log = Arc<Mutex<Vec<String>>>;

fn logged(db: &DatabaseConnection) -> (DatabaseConnection, Log) {
    let log: Log = Arc::default();
    let mut db = db.clone();
    let l = log.clone();
    db.set_metric_callback(move |info| l.lock().unwrap().push(info.statement.sql.clone()));
    (db, log)
}

/// How many logged statements start with `prefix`.
fn count(log: &Log, prefix: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|s| s.starts_with(prefix))
        .count()
}

fn env(t: Uuid, payload: Payload) -> Envelope {
    Envelope::new(t, "alice", "climate", ApiAction::Get, "job", payload)
}

async fn get(cat: &Catalogue, t: Uuid, path: &str) {
    let batches = get_part(cat, t, path).await;
    assert!(batches > 2, "the get is split into {batches} batches");
}

/// A get of `path` for transaction `t`: how many batches it made.
async fn get_part(cat: &Catalogue, t: Uuid, path: &str) -> usize {
    let payload = Payload::GetRequest {
        filter: HoldingFilter::default(),
        paths: vec![path.to_owned()],
        regex: false,
        target: Some("/restore".into()),
        overwrite: true,
    };
    let out = cat
        .handle(
            RoutingKey::new(Worker::CatalogGet, Action::Start),
            env(t, payload),
        )
        .await
        .unwrap();
    out.publish
        .iter()
        .filter(|(k, _)| *k == RoutingKey::new(Worker::CatalogGet, Action::Complete))
        .count()
}

async fn rpc(cat: &Catalogue, action: Action, payload: Payload) -> RpcReply {
    let out = cat
        .handle(
            RoutingKey::new(Worker::Catalog, action),
            env(Uuid::new_v4(), payload),
        )
        .await
        .unwrap();
    match out.reply.expect("an RPC replies").payload {
        Payload::Reply(r) => r,
        other => panic!("not a reply: {other:?}"),
    }
}

async fn files_of(db: &DatabaseConnection, holding_id: i64) -> Vec<file::Model> {
    file::Entity::find()
        .filter(file::Column::HoldingId.eq(holding_id))
        .order_by_asc(file::Column::Id)
        .all(db)
        .await
        .unwrap()
}

/// `t` is within `[lo, hi]`, allowing for the database's precision.
fn within(t: Option<DateTime<Utc>>, lo: DateTime<Utc>, hi: DateTime<Utc>) -> bool {
    let slack = TimeDelta::milliseconds(1);
    t.is_some_and(|t| t >= lo - slack && t <= hi + slack)
}

async fn pins_of(db: &DatabaseConnection, requester: &str) -> Vec<pin_row::Model> {
    pin_row::Entity::find()
        .filter(pin_row::Column::Requester.eq(requester))
        .all(db)
        .await
        .unwrap()
}

async fn get_records_and_pins(db: DatabaseConnection) {
    let (h, ids) = testing::holding_with(&db, "run", &vec![10; N]).await;
    let (other, other_ids) = testing::holding_with(&db, "other", &[5, 6]).await;
    let (logged_db, log) = logged(&db);
    let cat = Catalogue::new(logged_db, 100, 1 << 30).with_policy(PolicyConfig {
        get_pin_secs: PIN_SECS,
        ..PolicyConfig::default()
    });

    // One get of N files: two statements per chunk of 500 ids to record, one to pin.
    let t1 = Uuid::new_v4();
    let before = Utc::now();
    get(&cat, t1, "/run").await;
    let after = Utc::now();
    let chunks = N.div_ceil(super::CHUNK);
    assert_eq!(chunks, 3);
    assert_eq!(count(&log, r#"UPDATE "file""#), chunks);
    assert_eq!(count(&log, r#"UPDATE "holding""#), chunks);
    assert_eq!(count(&log, r#"INSERT INTO "pin""#), chunks);
    let total = log.lock().unwrap().len();
    assert!(
        total < 40,
        "a get of {N} files ran {total} statements: {:?}",
        log.lock().unwrap()
    );

    let files = files_of(&db, h).await;
    assert_eq!(files.len(), N);
    assert!(files.iter().all(|f| f.access_count == 1), "counted once");
    assert!(files.iter().all(|f| within(f.last_access, before, after)));
    let seen = files[0].last_access;
    assert!(files.iter().all(|f| f.last_access == seen), "one time");
    let untouched = files_of(&db, other).await;
    assert!(
        untouched
            .iter()
            .all(|f| f.access_count == 0 && f.last_access.is_none())
    );
    let holdings = holding::Entity::find()
        .order_by_asc(holding::Column::Id)
        .all(&db)
        .await
        .unwrap();
    assert_eq!(holdings[0].id, h);
    assert_eq!(holdings[0].last_access, seen);
    assert_eq!(holdings[1].last_access, None);

    // Pinned for the get's transaction until now + get_pin_secs.
    let pins = pins_of(&db, &get_requester(t1)).await;
    assert_eq!(pins.len(), N);
    let secs = TimeDelta::seconds(PIN_SECS as i64);
    assert!(
        pins.iter()
            .all(|p| within(Some(p.until), before + secs, after + secs))
    );
    let first_until = pins[0].until;
    assert_eq!(
        pinned(&db, &ids, Utc::now()).await.unwrap().len(),
        N,
        "every file of the get is pinned"
    );
    assert!(
        pinned(&db, &other_ids, Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        pinned(&db, &ids, after + secs + TimeDelta::seconds(1))
            .await
            .unwrap()
            .is_empty(),
        "the pins end"
    );

    // The same get redelivered counts nothing again and changes no pin.
    log.lock().unwrap().clear();
    get(&cat, t1, "/run").await;
    assert_eq!(count(&log, r#"UPDATE "file""#), 0);
    assert_eq!(count(&log, r#"INSERT INTO "pin""#), 0);
    assert!(files_of(&db, h).await.iter().all(|f| f.access_count == 1));
    assert_eq!(pin_row::Entity::find().count(&db).await.unwrap(), N as u64);

    // A second get: counted again, pinned for its own transaction.
    let t2 = Uuid::new_v4();
    get(&cat, t2, "/run").await;
    let files = files_of(&db, h).await;
    assert!(files.iter().all(|f| f.access_count == 2), "counted twice");
    assert!(files[0].last_access >= seen);
    assert_eq!(pins_of(&db, &get_requester(t2)).await.len(), N);

    // The catalogue's find and list show it.
    let found = rpc(
        &cat,
        Action::Find,
        Payload::FindFiles {
            filter: HoldingFilter {
                limit: 5,
                ..HoldingFilter::default()
            },
            path: Some(files[0].path.clone()),
            path_regex: false,
            files_only: false,
            named_must_exist: false,
        },
    )
    .await;
    let RpcReply::Files(page) = found else {
        panic!("{found:?}")
    };
    assert_eq!(page.files.len(), 1);
    assert_eq!(page.files[0].access_count, 2);
    assert_eq!(page.files[0].last_access, files[0].last_access);
    let listed = rpc(
        &cat,
        Action::List,
        Payload::ListHoldings {
            filter: HoldingFilter::default(),
        },
    )
    .await;
    let RpcReply::Holdings(page) = listed else {
        panic!("{listed:?}")
    };
    let by_id = |id| page.holdings.iter().find(|s| s.id == id).unwrap();
    assert_eq!(by_id(h).last_access, files[0].last_access);
    assert_eq!(by_id(other).last_access, None);

    // A pin is extended, never shortened.
    let r1 = get_requester(t1);
    let later = first_until + TimeDelta::seconds(3600);
    pin(&db, &ids, &r1, later).await.unwrap();
    pin(&db, &ids, &r1, first_until - TimeDelta::seconds(3600))
        .await
        .unwrap();
    let pins = pins_of(&db, &r1).await;
    assert_eq!(pins.len(), N, "one pin per file and requester");
    assert!(pins.iter().all(|p| within(Some(p.until), later, later)));

    // Releasing one requester's pins keeps the other's.
    assert_eq!(unpin(&db, &r1, Some(&ids[..10])).await.unwrap(), 10);
    assert_eq!(pinned(&db, &ids, Utc::now()).await.unwrap().len(), N);
    assert_eq!(
        unpin(&db, &get_requester(t2), None).await.unwrap(),
        N as u64
    );
    let left = pinned(&db, &ids, Utc::now()).await.unwrap();
    assert_eq!(left.len(), N - 10);
    assert!(ids[..10].iter().all(|id| !left.contains(id)));
    assert_eq!(unpin(&db, &r1, None).await.unwrap(), (N - 10) as u64);
    assert!(pinned(&db, &ids, Utc::now()).await.unwrap().is_empty());

    // A getlist's later part (its paths came in another chunk) is another message of the same
    // transaction: its own files are counted and pinned too, not taken for a redelivery.
    let t3 = Uuid::new_v4();
    get(&cat, t3, "/run").await;
    assert!(files_of(&db, h).await.iter().all(|f| f.access_count == 3));
    assert_eq!(get_part(&cat, t3, "/other").await, 1);
    assert!(
        files_of(&db, other)
            .await
            .iter()
            .all(|f| f.access_count == 1),
        "the second part's files are counted"
    );
    assert_eq!(pins_of(&db, &get_requester(t3)).await.len(), N + 2);
    assert_eq!(pinned(&db, &other_ids, Utc::now()).await.unwrap().len(), 2);
    // Either part redelivered counts nothing again.
    get_part(&cat, t3, "/other").await;
    get(&cat, t3, "/run").await;
    assert!(
        files_of(&db, other)
            .await
            .iter()
            .all(|f| f.access_count == 1)
    );
    assert!(files_of(&db, h).await.iter().all(|f| f.access_count == 3));
}

/// `record` counts, `touch` (a recall restored the files) only moves the last access; both set
/// the holding's last access and leave other files alone.
async fn record_and_touch(db: DatabaseConnection) {
    let (h, ids) = testing::holding_with(&db, "a", &[1, 2, 3]).await;
    let t0 = Utc::now() - TimeDelta::seconds(60);
    record(&db, &ids[..2], t0).await.unwrap();
    record(&db, &ids[..1], t0).await.unwrap();
    let files = files_of(&db, h).await;
    let counts: Vec<i64> = files.iter().map(|f| f.access_count).collect();
    assert_eq!(counts, [2, 1, 0]);
    assert!(within(files[0].last_access, t0, t0));
    assert_eq!(files[2].last_access, None);

    let t1 = Utc::now();
    touch(&db, &ids[1..], t1).await.unwrap();
    let files = files_of(&db, h).await;
    let counts: Vec<i64> = files.iter().map(|f| f.access_count).collect();
    assert_eq!(counts, [2, 1, 0], "a recall does not count again");
    assert!(within(files[0].last_access, t0, t0));
    assert!(within(files[1].last_access, t1, t1));
    assert!(within(files[2].last_access, t1, t1));
    let hold = holding::Entity::find_by_id(h)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert!(within(hold.last_access, t1, t1));

    // Nothing to do is no statement and no error.
    record(&db, &[], t1).await.unwrap();
    pin(&db, &[], "get:x", t1).await.unwrap();
    assert_eq!(unpin(&db, "get:x", Some(&[])).await.unwrap(), 0);
    assert!(pinned(&db, &[], t1).await.unwrap().is_empty());
    // The same file twice in one call is one pin.
    pin(&db, &[ids[0], ids[0]], "stage:s", t1).await.unwrap();
    assert_eq!(pins_of(&db, "stage:s").await.len(), 1);
}

/// A get pin of 0 seconds pins nothing but still counts the access.
async fn no_pin_when_zero(db: DatabaseConnection) {
    let (h, _) = testing::holding_with(&db, "z", &vec![1; 250]).await;
    let cat = Catalogue::new(db.clone(), 100, 1 << 30).with_policy(PolicyConfig {
        get_pin_secs: 0,
        ..PolicyConfig::default()
    });
    get(&cat, Uuid::new_v4(), "/z").await;
    assert!(files_of(&db, h).await.iter().all(|f| f.access_count == 1));
    assert_eq!(pin_row::Entity::find().count(&db).await.unwrap(), 0);
}

#[tokio::test]
async fn get_records_and_pins_sqlite() {
    get_records_and_pins(testing::memory().await).await;
}

#[tokio::test]
async fn record_and_touch_sqlite() {
    record_and_touch(testing::memory().await).await;
}

#[tokio::test]
async fn no_pin_when_zero_sqlite() {
    no_pin_when_zero(testing::memory().await).await;
}

/// The same scenarios on PostgreSQL (`NLDS_TEST_DATABASE_URL`; required under `CI`).
#[tokio::test]
async fn access_postgres() {
    let Some(a) = testing::postgres("access_get").await else {
        return;
    };
    get_records_and_pins(a.db.clone()).await;
    a.drop_now().await;
    let Some(b) = testing::postgres("access_record").await else {
        return;
    };
    record_and_touch(b.db.clone()).await;
    b.drop_now().await;
    let Some(c) = testing::postgres("access_zero").await else {
        return;
    };
    no_pin_when_zero(c.db.clone()).await;
    c.drop_now().await;
}
