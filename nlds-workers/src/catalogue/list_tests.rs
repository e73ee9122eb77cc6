//! `catalog.list`'s one statement (`list.rs`) on SQLite and (with `NLDS_TEST_DATABASE_URL`;
//! required under `CI`) PostgreSQL: each holding's counts, tags and transactions as the
//! database aggregates them, and a holding that has none of them.

use chrono::{Duration, Utc};
use nlds_core::api::{ApiAction, HoldingSummary, Tags};
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};

use super::*;
use crate::db::{holding, tag, testing};

fn tid(n: u128) -> Uuid {
    Uuid::from_u128(0x11a7_0000_0000_4000_8000_0000_0000_0000 + n)
}

async fn add_transaction(db: &DatabaseConnection, h: i64, t: Uuid, hours: i64) {
    transaction::Entity::insert(transaction::ActiveModel {
        transaction_id: Set(t.to_string()),
        holding_id: Set(h),
        ingest_time: Set(Utc::now() + Duration::hours(hours)),
        ..Default::default()
    })
    .exec(db)
    .await
    .unwrap();
}

/// Tags whose keys and values need JSON's escapes, or look like the aggregates' separators.
fn awkward_tags() -> Tags {
    [
        ("project", "cmip6"),
        ("note", "a, b; \"quoted\" \\ back\nslash {x: [1]}"),
        ("ünï", "çødé ✓"),
        ("empty", ""),
        ("a,b", "1,2,3,4"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn scenario(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    // A holding of two files (one above 4 GiB), three transactions whose ingest order is not
    // the order of their ids, and awkward tags.
    let (full, _) = testing::holding_with(&db, "full", &[5_000_000_000, 7]).await;
    let first = transaction::Entity::find().all(&db).await.unwrap()[0]
        .transaction_id
        .clone();
    add_transaction(&db, full, tid(1), 2).await;
    add_transaction(&db, full, tid(2), -2).await;
    for (k, v) in awkward_tags() {
        tag::Entity::insert(tag::ActiveModel {
            holding_id: Set(full),
            key: Set(k),
            value: Set(v),
            ..Default::default()
        })
        .exec(&db)
        .await
        .unwrap();
    }
    // A holding with no file, transaction or tag (a put that catalogued nothing yet).
    let empty = holding::Entity::insert(holding::ActiveModel {
        label: Set("empty".into()),
        user: Set("alice".into()),
        group: Set("climate".into()),
        created: Set(Utc::now() + Duration::minutes(1)),
        ..Default::default()
    })
    .exec(&db)
    .await
    .unwrap()
    .last_insert_id;

    let env = Envelope::new(
        tid(9),
        "alice",
        "climate",
        ApiAction::Put,
        "job",
        Payload::ListHoldings {
            filter: HoldingFilter::default(),
        },
    );
    let page = cat.list(&env, &HoldingFilter::default()).await.unwrap();
    assert_eq!(page.total, 2);
    let [a, b]: [HoldingSummary; 2] = page.holdings.try_into().unwrap();
    assert_eq!((a.id, a.label.as_str()), (full, "full"));
    assert_eq!(
        (a.files, a.bytes, a.warm_files, a.cold_files),
        (2, 5_000_000_007, 2, 0)
    );
    assert_eq!(a.tags, awkward_tags());
    assert_eq!(
        a.transactions,
        [tid(2), Uuid::parse_str(&first).unwrap(), tid(1)],
        "in ingest order, not in the order they were recorded"
    );
    assert_eq!((b.id, b.label.as_str()), (empty, "empty"));
    assert_eq!((b.files, b.bytes, b.warm_files, b.cold_files), (0, 0, 0, 0));
    assert!(b.tags.is_empty() && b.transactions.is_empty(), "{b:?}");

    // Paging keeps the aggregates of the rows it returns.
    let second = HoldingFilter {
        limit: 1,
        offset: 1,
        ..Default::default()
    };
    let page = cat.list(&env, &second).await.unwrap();
    assert_eq!((page.total, page.holdings.len()), (2, 1));
    assert_eq!(page.holdings[0].id, empty);
    // bob sees neither.
    let bob = Envelope::new(
        tid(10),
        "bob",
        "other",
        ApiAction::Put,
        "job",
        env.payload.clone(),
    );
    let page = cat.list(&bob, &HoldingFilter::default()).await.unwrap();
    assert_eq!((page.total, page.holdings.len()), (0, 0));
}

#[tokio::test]
async fn list_aggregates_sqlite() {
    scenario(testing::memory().await).await;
}

#[tokio::test]
async fn list_aggregates_postgres() {
    let Some(pg) = testing::postgres("list").await else {
        return;
    };
    scenario(pg.db.clone()).await;
    pg.drop_now().await;
}
