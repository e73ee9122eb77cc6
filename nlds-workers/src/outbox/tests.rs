//! The outbox against SQLite and PostgreSQL, with a bus that records what it is given (and can
//! be told to refuse). The crash of a real process between commit and publish is tested in
//! `nlds-embedded/tests/it/distributed.rs`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use nlds_bus::{BusError, ConsumeOptions, Handler};
use nlds_core::api::ApiAction;
use nlds_core::{Action, Payload, Role, Worker};
use sea_orm::{EntityTrait, PaginatorTrait, TransactionTrait};
use uuid::Uuid;

use super::*;
use crate::db::testing;

/// Records every confirmed publish; refuses the publish numbered `fail_at` (0-based), once.
#[derive(Default)]
struct Recorder {
    published: Mutex<Vec<(RoutingKey, Uuid)>>,
    calls: AtomicUsize,
    fail_at: Option<usize>,
}

#[async_trait]
impl Bus for Recorder {
    async fn publish(&self, key: RoutingKey, env: &Envelope) -> Result<(), BusError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_at == Some(n) {
            return Err(BusError::Unavailable("test bus refuses this one".into()));
        }
        self.published
            .lock()
            .unwrap()
            .push((key, env.transaction_id));
        Ok(())
    }
    async fn rpc(&self, _: RoutingKey, _: &Envelope, _: Duration) -> Result<Envelope, BusError> {
        unreachable!("the relay never asks")
    }
    async fn consume(
        &self,
        _: Role,
        _: Arc<dyn Handler>,
        _: ConsumeOptions,
        _: CancellationToken,
    ) -> Result<(), BusError> {
        unreachable!("the relay never consumes")
    }
    async fn ready(&self) -> Result<(), BusError> {
        Ok(())
    }
    async fn publish_delayed(
        &self,
        _: RoutingKey,
        _: &Envelope,
        _: Duration,
    ) -> Result<(), BusError> {
        unreachable!("the relay never delays")
    }
    async fn consumers(&self, _: Role) -> Result<u32, BusError> {
        Ok(0)
    }
}

fn key() -> RoutingKey {
    RoutingKey::new(Worker::TransferPut, Action::Del)
}

fn message() -> Envelope {
    Envelope::new(
        Uuid::new_v4(),
        "alice",
        "ice",
        ApiAction::Del,
        "test",
        Payload::CheckTransactionId,
    )
}

async fn stage_n(db: &DatabaseConnection, n: usize) -> Vec<Uuid> {
    let txn = db.begin().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..n {
        let env = message();
        ids.push(env.transaction_id);
        stage(&txn, key(), &env).await.unwrap();
    }
    txn.commit().await.unwrap();
    ids
}

async fn left(db: &DatabaseConnection) -> u64 {
    outbox::Entity::find().count(db).await.unwrap()
}

async fn publishes_in_order_once_committed(db: DatabaseConnection) {
    // Staged in a transaction that rolls back: nothing to publish.
    let txn = db.begin().await.unwrap();
    stage(&txn, key(), &message()).await.unwrap();
    txn.rollback().await.unwrap();
    let bus = Arc::new(Recorder::default());
    let relay = Outbox::new().relay(db.clone(), bus.clone());
    assert_eq!(relay.drain().await.unwrap(), 0);

    let ids = stage_n(&db, 3).await;
    assert_eq!(relay.drain().await.unwrap(), 3);
    let got: Vec<Uuid> = bus.published.lock().unwrap().iter().map(|p| p.1).collect();
    assert_eq!(got, ids, "published in the order staged");
    assert!(bus.published.lock().unwrap().iter().all(|p| p.0 == key()));
    assert_eq!(left(&db).await, 0, "confirmed rows are deleted");
    assert_eq!(
        relay.drain().await.unwrap(),
        0,
        "nothing is published twice"
    );
}

async fn a_refused_publish_keeps_the_rest(db: DatabaseConnection) {
    let ids = stage_n(&db, 4).await;
    let bus = Arc::new(Recorder {
        fail_at: Some(1),
        ..Default::default()
    });
    let relay = Outbox::new().relay(db.clone(), bus.clone());
    assert!(relay.drain().await.is_err(), "the refusal is reported");
    assert_eq!(
        left(&db).await,
        3,
        "only the confirmed message left the outbox"
    );
    assert_eq!(relay.drain().await.unwrap(), 3);
    let got: Vec<Uuid> = bus.published.lock().unwrap().iter().map(|p| p.1).collect();
    assert_eq!(got, ids, "every message published once, in order");
    assert_eq!(left(&db).await, 0);
}

/// Large staged messages are loaded a few at a time (at most [`BATCH_BYTES`] of them, but always
/// one), and still all published, in order.
async fn large_messages_are_loaded_a_few_at_a_time(db: DatabaseConnection) {
    // Eight messages of about 0.9 MiB (a submission of 10,000 paths is about 0.7 MB).
    let big = |n: usize| {
        let mut env = message();
        env.payload = Payload::PutRequest {
            holding_id: 1,
            paths: (0..n)
                .map(|i| format!("/gws/project/run/{i:090}"))
                .collect(),
        };
        env
    };
    let txn = db.begin().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..8 {
        let env = big(9_000);
        ids.push(env.transaction_id);
        stage(&txn, key(), &env).await.unwrap();
    }
    txn.commit().await.unwrap();
    let (first, more) = next_ids(&db, false).await.unwrap();
    assert_eq!(
        first.len(),
        2,
        "two of about 0.9 MiB fit in {BATCH_BYTES} bytes"
    );
    assert!(more);

    // One message larger than the cap on its own is still taken.
    let txn = db.begin().await.unwrap();
    let huge = big(30_000);
    stage(&txn, key(), &huge).await.unwrap();
    txn.commit().await.unwrap();
    ids.push(huge.transaction_id);

    let bus = Arc::new(Recorder::default());
    let relay = Outbox::new().relay(db.clone(), bus.clone());
    assert_eq!(relay.drain().await.unwrap(), 9);
    let got: Vec<Uuid> = bus.published.lock().unwrap().iter().map(|p| p.1).collect();
    assert_eq!(got, ids, "every message published once, in order");
    assert_eq!(left(&db).await, 0);
}

#[tokio::test]
async fn sqlite_large_messages_are_loaded_a_few_at_a_time() {
    large_messages_are_loaded_a_few_at_a_time(testing::memory().await).await;
}

#[tokio::test]
async fn sqlite_publishes_in_order_once_committed() {
    publishes_in_order_once_committed(testing::memory().await).await;
}

#[tokio::test]
async fn sqlite_a_refused_publish_keeps_the_rest() {
    a_refused_publish_keeps_the_rest(testing::memory().await).await;
}

#[tokio::test]
async fn postgres_outbox() {
    let Some(pg) = testing::postgres("outbox").await else {
        return;
    };
    publishes_in_order_once_committed(pg.db.clone()).await;
    a_refused_publish_keeps_the_rest(pg.db.clone()).await;
    large_messages_are_loaded_a_few_at_a_time(pg.db.clone()).await;

    // Three relays of three processes drain one table at once: every row is published exactly
    // once (rows one relay holds are skipped by the others).
    let ids = stage_n(&pg.db, 1000).await;
    let bus = Arc::new(Recorder::default());
    let relays: Vec<Relay> = (0..3)
        .map(|_| Outbox::new().relay(pg.db.clone(), bus.clone()))
        .collect();
    let counts = futures::future::join_all(relays.iter().map(Relay::drain)).await;
    let total: usize = counts.into_iter().map(Result::unwrap).sum();
    assert_eq!(total, 1000);
    let mut got: Vec<Uuid> = bus.published.lock().unwrap().iter().map(|p| p.1).collect();
    got.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(got, want, "each row published exactly once");
    assert_eq!(left(&pg.db).await, 0);
    pg.drop_now().await;
}

/// The relay task publishes when woken and stops when told.
#[tokio::test]
async fn the_relay_task_publishes_when_woken() {
    let db = testing::memory().await;
    let bus = Arc::new(Recorder::default());
    let outbox = Outbox::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn(outbox.relay(db.clone(), bus.clone()).run(stop.clone()));
    stage_n(&db, 2).await;
    outbox.wake();
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while bus.published.lock().unwrap().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "woken relay did not publish (before its poll interval)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    task.await.unwrap();
}
