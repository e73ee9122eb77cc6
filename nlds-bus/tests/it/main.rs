//! The RabbitMQ bus against a real broker: confirms and mandatory publishing, durable retries
//! through TTL queues, dead-lettering, RPC with timeout, and reconnecting after the broker drops
//! the connections. Each test gets its own vhost.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::BasicGetOptions;
use lapin::{Connection, ConnectionProperties};
use nlds_bus::rabbit::RabbitBus;
use nlds_bus::{Bus, BusError, ConsumeOptions, Handler, HandlerError, Outcome, RetryPolicy};
use nlds_core::api::ApiAction;
use nlds_core::{Action, Envelope, ErrorCode, Payload, Role, RoutingKey, Worker};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Vhost {
    name: String,
    url: String,
}

impl Vhost {
    fn new() -> Option<Self> {
        let base = match std::env::var("NLDS_TEST_AMQP_URL")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(v) => v,
            None if std::env::var_os("CI").is_some() => {
                panic!("NLDS_TEST_AMQP_URL is not set: CI must test the real broker")
            }
            None => {
                eprintln!(
                    "SKIPPED: NLDS_TEST_AMQP_URL is not set (run scripts/services.sh and scripts/test.sh)"
                );
                return None;
            }
        };
        let name = format!(
            "nlds-bus-test-{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        let root = base
            .trim_end_matches('/')
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(base);
        Some(Self {
            url: format!("{root}/{name}"),
            name,
        })
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn env(paths: &[&str]) -> Envelope {
    Envelope::new(
        Uuid::new_v4(),
        "alice",
        "climate",
        ApiAction::Putlist,
        "j",
        Payload::PutRequest {
            holding_id: 1,
            paths: paths.iter().map(|p| p.to_string()).collect(),
        },
    )
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        delays: vec![Duration::from_millis(200), Duration::from_millis(400)],
    }
}

/// Fails transiently `fail` times, then forwards the message to `index.start`.
struct Flaky {
    calls: Arc<AtomicU32>,
    fail: u32,
    permanent: bool,
}

#[async_trait]
impl Handler for Flaky {
    async fn handle(&self, _: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.permanent {
            return Err(HandlerError::permanent(
                ErrorCode::BadRequest,
                "cannot do this",
            ));
        }
        if n <= self.fail {
            return Err(HandlerError::transient(
                ErrorCode::Unavailable,
                "object store down",
            ));
        }
        Ok(Outcome::publish(
            RoutingKey::new(Worker::Index, Action::Start),
            env,
        ))
    }
}

/// Consumes `role` with `handler` in the background until the returned token is cancelled.
fn spawn_consumer(
    bus: &RabbitBus,
    role: Role,
    handler: Arc<dyn Handler>,
    opts: ConsumeOptions,
) -> CancellationToken {
    let stop = CancellationToken::new();
    let (b, s) = (bus.clone(), stop.clone());
    tokio::spawn(async move { b.consume(role, handler, opts, s).await });
    stop
}

fn once(prefetch: u16) -> ConsumeOptions {
    ConsumeOptions {
        prefetch,
        retry: fast_retry(),
        ..Default::default()
    }
}

/// Closes every connection of `v`'s vhost, as a broker restart would.
fn close_connections(v: &Vhost) {
    let conns = rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "pid",
        "vhost",
    ]);
    for line in conns.lines().filter(|l| l.ends_with(&v.name)) {
        let pid = line.split_whitespace().next().unwrap();
        let _ = Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test restart"])
            .output();
    }
}

async fn count_in(url: &str, queue: &str) -> Vec<Vec<u8>> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        out.push(m.delivery.data.clone());
    }
    out
}

async fn eventually<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn unroutable_messages_are_errors_not_drops() {
    let Some(v) = Vhost::new() else { return };
    let bus = RabbitBus::connect(&v.url, fast_retry()).await.unwrap();
    let err = bus
        .publish(
            RoutingKey::new(Worker::ArchiveGet, Action::Next),
            &env(&["/a"]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, BusError::Unroutable(ref k) if k == "nlds-api.archive-get.next"),
        "{err}"
    );
    bus.publish(RoutingKey::new(Worker::Index, Action::Start), &env(&["/a"]))
        .await
        .unwrap();
    assert_eq!(
        count_in(&v.url, "nlds.indexer").await.len(),
        1,
        "the routed message is stored durably"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_through_delay_queues() {
    let Some(v) = Vhost::new() else { return };
    let bus = RabbitBus::connect(&v.url, fast_retry()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let h = Arc::new(Flaky {
        calls: calls.clone(),
        fail: 2,
        permanent: false,
    });
    let stop = spawn_consumer(&bus, Role::Router, h, once(1));
    let e = env(&["/x"]);
    bus.publish(RoutingKey::new(Worker::Route, Action::Putlist), &e)
        .await
        .unwrap();
    eventually("three attempts", || calls.load(Ordering::SeqCst) >= 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let forwarded = count_in(&v.url, "nlds.indexer").await;
    assert_eq!(
        forwarded.len(),
        1,
        "forwarded exactly once after the retries"
    );
    let got: Envelope = serde_json::from_slice(&forwarded[0]).unwrap();
    assert_eq!(got.transaction_id, e.transaction_id);
    assert!(count_in(&v.url, "nlds.router.dead").await.is_empty());
}

#[tokio::test]
async fn exhausted_and_permanent_failures_dead_letter_and_fail_the_batch() {
    let Some(v) = Vhost::new() else { return };
    let bus = RabbitBus::connect(&v.url, fast_retry()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let h = Arc::new(Flaky {
        calls: calls.clone(),
        fail: 0,
        permanent: true,
    });
    let stop = spawn_consumer(&bus, Role::Indexer, h, once(1));
    let e = env(&["/p1", "/p2"]);
    bus.publish(RoutingKey::new(Worker::Index, Action::Start), &e)
        .await
        .unwrap();
    eventually("one attempt", || calls.load(Ordering::SeqCst) >= 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let dead = count_in(&v.url, "nlds.indexer.dead").await;
    assert_eq!(dead.len(), 1, "the message is in the dead-letter queue");
    // The router got the failure report: both paths, with the reason.
    let reports = count_in(&v.url, "nlds.router").await;
    let report: Envelope = serde_json::from_slice(&reports[0]).unwrap();
    let Payload::Failed { files } = report.payload else {
        panic!("{report:?}")
    };
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].reason, "cannot do this");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a permanent failure is not retried"
    );
    assert_eq!(
        count_in(&v.url, "nlds.logger").await.len(),
        1,
        "an error record for the logger"
    );
}

#[tokio::test]
async fn poison_messages_go_to_the_dead_letter_queue() {
    let Some(v) = Vhost::new() else { return };
    let bus = RabbitBus::connect(&v.url, fast_retry()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let h = Arc::new(Flaky {
        calls: calls.clone(),
        fail: 0,
        permanent: false,
    });
    let stop = spawn_consumer(&bus, Role::Indexer, h, ConsumeOptions::default());
    let conn = Connection::connect(&v.url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        "nlds".into(),
        "nlds-api.index.start".into(),
        Default::default(),
        b"{this is not json",
        Default::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let url = v.url.clone();
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = count_in(&url, "nlds.indexer.dead").await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    assert_eq!(dead, vec![b"{this is not json".to_vec()]);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never saw it");
}

struct Echo;
#[async_trait]
impl Handler for Echo {
    async fn handle(&self, _: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        Ok(Outcome::reply(env))
    }
}

#[tokio::test]
async fn rpc_answers_and_times_out_instead_of_hanging() {
    let Some(v) = Vhost::new() else { return };
    let bus = RabbitBus::connect(&v.url, fast_retry()).await.unwrap();
    let key = RoutingKey::new(Worker::Catalog, Action::List);
    let start = std::time::Instant::now();
    let err = bus
        .rpc(key, &env(&[]), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout(..)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let stop = spawn_consumer(
        &bus,
        Role::CatalogueRpc,
        Arc::new(Echo),
        ConsumeOptions::default(),
    );
    let e = env(&["/q"]);
    let mut answer = None;
    for _ in 0..20 {
        match bus.rpc(key, &e, Duration::from_secs(2)).await {
            Ok(r) => {
                answer = Some(r);
                break;
            }
            Err(BusError::Timeout(..)) => continue, // the consumer may not be attached yet
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(answer.expect("an answer").transaction_id, e.transaction_id);
    stop.cancel();
}

/// Records the first path of each request it answers.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<String>>);
#[async_trait]
impl Handler for Seen {
    async fn handle(&self, _: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        if let Payload::PutRequest { paths, .. } = &env.payload {
            self.0.lock().unwrap().extend(paths.first().cloned());
        }
        Ok(Outcome::reply(env))
    }
}

/// A request that waited in its queue past its caller's timeout (no consumer then) is dropped
/// unhandled by the consumer that comes later, and is not dead-lettered either: its caller gave
/// up, so nothing is left for anyone to do (an AMQP expiration would have put it in
/// `nlds.catalog-rpc.dead`).
#[tokio::test]
async fn an_rpc_request_its_caller_gave_up_on_is_dropped_not_dead_lettered() {
    let Some(v) = Vhost::new() else { return };
    let bus = RabbitBus::connect(&v.url, fast_retry()).await.unwrap();
    let key = RoutingKey::new(Worker::Catalog, Action::List);
    let err = bus
        .rpc(key, &env(&["/stale"]), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout(..)), "{err}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = Arc::new(Seen::default());
    let stop = spawn_consumer(
        &bus,
        Role::CatalogueRpc,
        seen.clone(),
        ConsumeOptions::default(),
    );
    let mut answered = false;
    for _ in 0..20 {
        match bus
            .rpc(key, &env(&["/fresh"]), Duration::from_secs(2))
            .await
        {
            Ok(_) => {
                answered = true;
                break;
            }
            Err(BusError::Timeout(..)) => continue, // the consumer may not be attached yet
            Err(other) => panic!("{other}"),
        }
    }
    assert!(answered, "a fresh request is answered");
    let seen = seen.0.lock().unwrap().clone();
    assert!(seen.contains(&"/fresh".to_owned()), "{seen:?}");
    assert!(
        !seen.contains(&"/stale".to_owned()),
        "the stale request was handled: {seen:?}"
    );
    stop.cancel();
    let queue = Role::CatalogueRpc.queue();
    assert!(count_in(&v.url, &queue).await.is_empty(), "left in {queue}");
    let dead = count_in(&v.url, &format!("{queue}.dead")).await;
    assert!(dead.is_empty(), "dead-lettered: {} message(s)", dead.len());
}

#[tokio::test]
async fn publisher_and_consumers_reconnect_after_the_broker_drops_them() {
    let Some(v) = Vhost::new() else { return };
    let bus = RabbitBus::connect(&v.url, fast_retry()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let h = Arc::new(Flaky {
        calls: calls.clone(),
        fail: 0,
        permanent: false,
    });
    let stop = spawn_consumer(&bus, Role::Router, h, ConsumeOptions::default());
    bus.publish(RoutingKey::new(Worker::Route, Action::Put), &env(&["/1"]))
        .await
        .unwrap();
    eventually("first delivery", || calls.load(Ordering::SeqCst) >= 1).await;

    // Close every connection of this vhost, as a broker restart would.
    close_connections(&v);
    tokio::time::sleep(Duration::from_millis(300)).await;

    bus.publish(RoutingKey::new(Worker::Route, Action::Put), &env(&["/2"]))
        .await
        .unwrap();
    eventually("delivery after reconnect", || {
        calls.load(Ordering::SeqCst) >= 2
    })
    .await;
    stop.cancel();
}

/// A delayed message is held by the broker (not by this process) and delivered after its delay.
#[tokio::test]
async fn delayed_messages_arrive_after_their_delay_from_the_broker() {
    let Some(v) = Vhost::new() else { return };
    let bus = RabbitBus::connect(&v.url, fast_retry()).await.unwrap();
    let e = env(&["/late"]);
    let sent = std::time::Instant::now();
    bus.publish_delayed(
        RoutingKey::new(Worker::Index, Action::Start),
        &e,
        Duration::from_millis(1200),
    )
    .await
    .unwrap();
    // A publisher that goes away does not lose it: drop our connection at once.
    drop(bus);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        count_in(&v.url, &Role::Indexer.queue()).await.is_empty(),
        "delivered before its delay"
    );
    let mut got = Vec::new();
    for _ in 0..60 {
        got = count_in(&v.url, &Role::Indexer.queue()).await;
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent.elapsed() >= Duration::from_millis(1200));
    assert_eq!(got.len(), 1, "delivered exactly once");
    let back: Envelope = serde_json::from_slice(&got[0]).unwrap();
    assert_eq!(back.transaction_id, e.transaction_id);
    // Unroutable keys are refused up front.
    let bus = RabbitBus::connect(&v.url, fast_retry()).await.unwrap();
    assert!(matches!(
        bus.publish_delayed(
            RoutingKey::new(Worker::ArchiveGet, Action::Next),
            &e,
            Duration::from_millis(10)
        )
        .await,
        Err(BusError::Unroutable(_))
    ));
}

/// Transaction changes go to every watching process (each with its own exclusive queue), not to a
/// work queue; a change nobody watches is no error; a watcher keeps receiving after the broker
/// dropped its connection.
#[tokio::test]
async fn announced_changes_reach_every_watching_process_and_survive_a_reconnect() {
    let Some(v) = Vhost::new() else { return };
    let monitor = RabbitBus::connect(&v.url, fast_retry()).await.unwrap();
    // Nobody watches yet: dropped quietly.
    let early = nlds_core::Change::of(Uuid::new_v4());
    monitor.announce(early).await.unwrap();

    let (server_a, server_b) = (
        RabbitBus::connect(&v.url, fast_retry()).await.unwrap(),
        RabbitBus::connect(&v.url, fast_retry()).await.unwrap(),
    );
    let mut a = server_a
        .changes()
        .await
        .unwrap()
        .expect("RabbitMQ carries changes");
    let mut b = server_b
        .changes()
        .await
        .unwrap()
        .expect("RabbitMQ carries changes");
    // Each process declares its queue in the background: announce until both hear one.
    let first = nlds_core::Change::of(Uuid::new_v4());
    let heard = |rx: &mut tokio::sync::broadcast::Receiver<nlds_core::Change>| {
        let mut got = Vec::new();
        while let Ok(c) = rx.try_recv() {
            got.push(c);
        }
        got
    };
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        monitor.announce(first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        got_a.extend(heard(&mut a));
        got_b.extend(heard(&mut b));
        if !got_a.is_empty() && !got_b.is_empty() {
            break;
        }
    }
    assert!(
        got_a.contains(&first) && got_b.contains(&first),
        "{got_a:?} {got_b:?}"
    );
    assert!(
        !got_a.contains(&early),
        "a change before anyone watched was kept"
    );

    // Changes are no work: no role's queue holds one.
    for role in Role::ALL {
        assert!(
            count_in(&v.url, &role.queue()).await.is_empty(),
            "{} holds a change",
            role.queue()
        );
    }

    // Close every connection of this vhost; server A's watcher comes back by itself.
    close_connections(&v);
    let after = nlds_core::Change::of(Uuid::new_v4());
    let mut got = Vec::new();
    for _ in 0..200 {
        let _ = monitor.announce(after).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        got.extend(heard(&mut a));
        if got.contains(&after) {
            break;
        }
    }
    assert!(
        got.contains(&after),
        "no change after the reconnect: {got:?}"
    );
}

/// Holds `/quick` until `release`, holds `/slow` for good (until its future is dropped, which a
/// guard records and follows with a clean-up task), forwards the rest to `index.start`.
struct Held {
    started: Arc<std::sync::Mutex<Vec<String>>>,
    release: Arc<tokio::sync::Notify>,
    dropped: Arc<std::sync::atomic::AtomicBool>,
    cleaned: Arc<std::sync::atomic::AtomicBool>,
}

/// Sets `dropped` and spawns the clean-up that sets `cleaned`, when the slow handler's future
/// is dropped.
struct OnDrop(
    Arc<std::sync::atomic::AtomicBool>,
    Arc<std::sync::atomic::AtomicBool>,
);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        let cleaned = self.1.clone();
        nlds_bus::shutdown::spawn_cleanup(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            cleaned.store(true, Ordering::SeqCst);
        });
    }
}

#[async_trait]
impl Handler for Held {
    async fn handle(&self, _: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let Payload::PutRequest { paths, .. } = &env.payload else {
            unreachable!()
        };
        let path = paths[0].clone();
        self.started.lock().unwrap().push(path.clone());
        match path.as_str() {
            "/quick" => self.release.notified().await,
            "/slow" => {
                let _guard = OnDrop(self.dropped.clone(), self.cleaned.clone());
                std::future::pending::<()>().await;
            }
            _ => {}
        }
        Ok(Outcome::publish(
            RoutingKey::new(Worker::Index, Action::Start),
            env,
        ))
    }
}

/// A consumer told to stop takes nothing more, lets a delivery in hand that ends within the
/// grace finish (acknowledged, its follow-up published), abandons the one that does not (its
/// handler's future dropped, the clean-up it spawned waited for) and returns it to the queue,
/// with the message it never took.
#[tokio::test]
async fn a_stopping_consumer_finishes_what_ends_within_the_grace_and_returns_the_rest() {
    let Some(v) = Vhost::new() else { return };
    let bus = RabbitBus::connect(&v.url, fast_retry()).await.unwrap();
    let h = Arc::new(Held {
        started: Default::default(),
        release: Default::default(),
        dropped: Default::default(),
        cleaned: Default::default(),
    });
    let stop = CancellationToken::new();
    let opts = ConsumeOptions {
        prefetch: 2,
        retry: fast_retry(),
        grace: Duration::from_secs(5),
    };
    let consumer = {
        let (b, s, h) = (bus.clone(), stop.clone(), h.clone() as Arc<dyn Handler>);
        tokio::spawn(async move { b.consume(Role::Router, h, opts, s).await })
    };
    let key = RoutingKey::new(Worker::Route, Action::Putlist);
    for p in ["/quick", "/slow", "/later"] {
        bus.publish(key, &env(&[p])).await.unwrap();
    }
    eventually("both deliveries in hand", || {
        h.started.lock().unwrap().len() >= 2
    })
    .await;
    stop.cancel();
    h.release.notify_one();
    consumer.await.unwrap().unwrap();

    assert_eq!(
        *h.started.lock().unwrap(),
        ["/quick", "/slow"],
        "nothing more was taken once the consumer was full and then stopping"
    );
    let forwarded = count_in(&v.url, "nlds.indexer").await;
    assert_eq!(forwarded.len(), 1, "the quick delivery finished");
    let got: Envelope = serde_json::from_slice(&forwarded[0]).unwrap();
    assert_eq!(got.payload, env(&["/quick"]).payload);
    assert!(
        h.dropped.load(Ordering::SeqCst),
        "the slow handler was dropped"
    );
    assert!(
        h.cleaned.load(Ordering::SeqCst),
        "the consumer returned before its abandoned handler's clean-up ended"
    );
    let mut left: Vec<String> = count_in(&v.url, "nlds.router")
        .await
        .iter()
        .map(|d| {
            let e: Envelope = serde_json::from_slice(d).unwrap();
            match e.payload {
                Payload::PutRequest { paths, .. } => paths[0].clone(),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    left.sort();
    assert_eq!(left, ["/later", "/slow"], "returned to the queue");
    assert!(count_in(&v.url, "nlds.router.dead").await.is_empty());
}
