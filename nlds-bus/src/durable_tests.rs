//! The durable in-process bus across a "crash": a bus and its consumers dropped while a delivery
//! is unacknowledged, and a new bus opened on the same SQLite file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nlds_core::api::ApiAction;
use nlds_core::error::ErrorCode;
use nlds_core::{Action, Envelope, Payload, Role, RoutingKey, Worker};
use nlds_migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::memory::MemoryBus;
use crate::{Bus, ConsumeOptions, Handler, HandlerError, Outcome, RetryPolicy};

/// One connection to `path`, migrated (as the embedded process opens its database).
async fn open(path: &Path) -> DatabaseConnection {
    let mut o = ConnectOptions::new(format!("sqlite://{}?mode=rwc", path.display()));
    o.max_connections(1).min_connections(1).sqlx_logging(false);
    let db = Database::connect(o).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    db
}

async fn rows(db: &DatabaseConnection) -> i64 {
    let r = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM bus_message",
        ))
        .await
        .unwrap()
        .unwrap();
    r.try_get("", "n").unwrap()
}

fn env() -> Envelope {
    Envelope::new(
        Uuid::new_v4(),
        "u",
        "g",
        ApiAction::Put,
        "j",
        Payload::PutRequest {
            holding_id: 1,
            paths: vec!["/a".into()],
        },
    )
}

const ROUTE_PUT: RoutingKey = RoutingKey::new(Worker::Route, Action::Put);

#[derive(Clone, Copy)]
enum Act {
    /// Never returns (the process dies while handling).
    Hang,
    Ok,
    Transient,
    Permanent,
}

/// Records the transaction of every delivery of `route.put` (not the failure reports the bus
/// sends the router), then does what it was told.
struct Probe(Seen, Act);

#[async_trait]
impl Handler for Probe {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        if key != ROUTE_PUT {
            return Ok(Outcome::none());
        }
        self.0
            .lock()
            .unwrap()
            .push((env.transaction_id, Instant::now()));
        match self.1 {
            Act::Hang => std::future::pending().await,
            Act::Ok => Ok(Outcome::none()),
            Act::Transient => Err(HandlerError::transient(ErrorCode::Unavailable, "s3 down")),
            Act::Permanent => Err(HandlerError::permanent(
                ErrorCode::BadRequest,
                "no such path",
            )),
        }
    }
}

type Seen = Arc<Mutex<Vec<(Uuid, Instant)>>>;

/// Consumes the router's queue with a [`Probe`]; returns what it sees and the token that stops it.
fn consume(bus: &MemoryBus, act: Act, retry: RetryPolicy) -> (Seen, CancellationToken) {
    let options = ConsumeOptions {
        prefetch: 4,
        retry,
        ..Default::default()
    };
    let (seen, stop, _) = consume_with(bus, act, options);
    (seen, stop)
}

/// [`consume`] with `options`; also returns the consumer's task, which ends once it stopped.
fn consume_with(
    bus: &MemoryBus,
    act: Act,
    options: ConsumeOptions,
) -> (
    Seen,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), crate::BusError>>,
) {
    let seen = Seen::default();
    let stop = CancellationToken::new();
    let (b, h, s) = (bus.clone(), Probe(seen.clone(), act), stop.clone());
    let task = tokio::spawn(async move { b.consume(Role::Router, Arc::new(h), options, s).await });
    (seen, stop, task)
}

async fn wait_for(seen: &Seen, n: usize, within: Duration) {
    let start = Instant::now();
    while seen.lock().unwrap().len() < n {
        assert!(
            start.elapsed() < within,
            "{} deliveries after {within:?}, expected {n}",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_message_is_redelivered_after_a_crash_and_gone_once_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nlds.db");
    let e = env();
    {
        let bus = MemoryBus::durable(open(&file).await).await.unwrap();
        bus.publish(ROUTE_PUT, &e).await.unwrap();
        let (seen, _stop) = consume(&bus, Act::Hang, RetryPolicy::default());
        wait_for(&seen, 1, Duration::from_secs(5)).await;
        // The process "dies" here: the handler never finishes, nothing is acknowledged.
    }
    let db = open(&file).await;
    assert_eq!(
        rows(&db).await,
        1,
        "the delivery in progress is still stored"
    );
    let bus = MemoryBus::durable(db.clone()).await.unwrap();
    let (seen, stop) = consume(&bus, Act::Ok, RetryPolicy::default());
    wait_for(&seen, 1, Duration::from_secs(5)).await;
    assert_eq!(seen.lock().unwrap()[0].0, e.transaction_id);
    // Acknowledged: the row goes (the acknowledgement is stored after the handler returns).
    let start = Instant::now();
    while rows(&db).await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    drop(bus);
    let bus = MemoryBus::durable(open(&file).await).await.unwrap();
    let (seen, stop) = consume(&bus, Act::Ok, RetryPolicy::default());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "an acknowledged message came back"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_retry_survives_a_crash_with_its_time_and_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nlds.db");
    let delay = Duration::from_millis(1500);
    let one_retry = RetryPolicy {
        delays: vec![delay],
    };
    let failed_at = {
        let bus = MemoryBus::durable(open(&file).await).await.unwrap();
        bus.publish(ROUTE_PUT, &env()).await.unwrap();
        let (seen, stop) = consume(&bus, Act::Transient, one_retry.clone());
        wait_for(&seen, 1, Duration::from_secs(5)).await;
        let at = seen.lock().unwrap()[0].1;
        // Give the bus the moment it needs to store the retry, then "die" before it is due.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.cancel();
        at
    };
    let bus = MemoryBus::durable(open(&file).await).await.unwrap();
    let (seen, stop) = consume(&bus, Act::Transient, one_retry);
    wait_for(&seen, 1, Duration::from_secs(10)).await;
    let again = seen.lock().unwrap()[0].1;
    assert!(
        again.duration_since(failed_at) >= delay - Duration::from_millis(50),
        "redelivered {:?} after the failure, before its delay of {delay:?}",
        again.duration_since(failed_at)
    );
    // It was the second attempt, the last the policy allows: failing again dead-letters it.
    let start = Instant::now();
    let dead = loop {
        let dead = bus.dead_letters().await.unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        dead[0].reason.contains("gave up after 2 attempts"),
        "{}",
        dead[0].reason
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_survives_a_crash_and_is_not_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nlds.db");
    let e = env();
    {
        let bus = MemoryBus::durable(open(&file).await).await.unwrap();
        bus.publish(ROUTE_PUT, &e).await.unwrap();
        let (seen, stop) = consume(&bus, Act::Permanent, RetryPolicy::default());
        wait_for(&seen, 1, Duration::from_secs(5)).await;
        let start = Instant::now();
        while bus.dead_letters().await.unwrap().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "never dead-lettered"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
    }
    let bus = MemoryBus::durable(open(&file).await).await.unwrap();
    let dead = bus.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].queue, Role::Router.queue());
    assert_eq!(dead[0].key, ROUTE_PUT.to_string());
    assert_eq!(dead[0].reason, "no such path");
    let body: Envelope = serde_json::from_slice(&dead[0].data).unwrap();
    assert_eq!(body.transaction_id, e.transaction_id);
    let (seen, stop) = consume(&bus, Act::Ok, RetryPolicy::default());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "a dead letter was redelivered"
    );
    stop.cancel();
}

#[tokio::test]
async fn follow_ups_and_the_acknowledgement_are_stored_together() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("nlds.db")).await;
    let bus = MemoryBus::durable(db.clone()).await.unwrap();
    let e = env();
    bus.publish(ROUTE_PUT, &e).await.unwrap();
    assert_eq!(
        crate::transactions_in_flight(&db).await.unwrap(),
        [e.transaction_id]
    );
    // The router's delivery is replaced by the indexer's, which nobody consumes here.
    struct Relay;
    #[async_trait]
    impl Handler for Relay {
        async fn handle(&self, _: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
            Ok(Outcome::publish(
                RoutingKey::new(Worker::Index, Action::Start),
                env,
            ))
        }
    }
    let stop = CancellationToken::new();
    let (b, s) = (bus.clone(), stop.clone());
    tokio::spawn(async move {
        b.consume(Role::Router, Arc::new(Relay), ConsumeOptions::default(), s)
            .await
    });
    let start = Instant::now();
    loop {
        let queues = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT queue FROM bus_message",
            ))
            .await
            .unwrap();
        let queues: Vec<String> = queues
            .iter()
            .map(|r| r.try_get("", "queue").unwrap())
            .collect();
        if queues == [Role::Indexer.queue()] {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{queues:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        crate::transactions_in_flight(&db).await.unwrap(),
        [e.transaction_id]
    );
    stop.cancel();
}

/// A drained role's consumer stops and starts again in the same process (`nlds admin drain`,
/// then `resume`): the queue is consumed again, and a delivery abandoned when it stopped (its
/// handler outlived the grace) is delivered again then, not only at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stopped_and_started_again_gets_what_it_abandoned_and_what_came_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("nlds.db")).await;
    let bus = MemoryBus::durable(db.clone()).await.unwrap();
    let (first, second) = (env(), env());
    bus.publish(ROUTE_PUT, &first).await.unwrap();
    let (seen, stop, stopped) = consume_with(
        &bus,
        Act::Hang,
        ConsumeOptions {
            grace: Duration::from_millis(100),
            ..Default::default()
        },
    );
    wait_for(&seen, 1, Duration::from_secs(5)).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the consumer stops after its grace")
        .unwrap()
        .unwrap();
    assert_eq!(bus.consumers(Role::Router).await.unwrap(), 0);
    bus.publish(ROUTE_PUT, &second).await.unwrap();
    let (again, stop) = consume(&bus, Act::Ok, RetryPolicy::default());
    wait_for(&again, 2, Duration::from_secs(5)).await;
    let mut got: Vec<Uuid> = again.lock().unwrap().iter().map(|(t, _)| *t).collect();
    got.sort();
    let mut want = vec![first.transaction_id, second.transaction_id];
    want.sort();
    assert_eq!(
        got, want,
        "the abandoned delivery and the new one, once each"
    );
    let start = Instant::now();
    while rows(&db).await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
}
