//! Operator alerts (docs/NOTIFY.md, "Operators") end to end, besides the stalled transaction
//! (tests/it/notify.rs): dead letters (the embedded bus's dead rows, and RabbitMQ's
//! `nlds.<role>.dead`), the policy's circuit breaker (also by e-mail, to the SMTP sink), and the
//! object store and the cold store (XRootD) unreachable (a relay in front of each is cut). Each is sent to the operators' webhook signed with their secret,
//! once per episode however many checks see it (`alert_check_secs = 1`), and an episode that
//! closed (its `notify_alert` row gone) and comes back is sent again. No timing asserts: every
//! wait is for a condition, with a deadline.

use std::path::Path;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use nlds_core::{Role, State};
use nlds_workers::run::Settings;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, serve_api, start_roles};
use crate::helpers::{Api, temp};
use crate::notify::{Receiver, eventually, receiver, server_with, smtp_python, smtp_sink, verify};

const OPS_SECRET: &str = "operators-alert-secret";
const ALICE: &str = "alerts-test-alice-token-0123456789";
const OPS: &str = "alerts-test-operator-token-0123456789";

/// The `alert.opened` bodies the receiver got of `kind` about a subject `subject` accepts, each
/// checked to verify with the operators' secret.
fn alerts(rx: &Receiver, kind: &str, subject: impl Fn(&str) -> bool) -> Vec<Value> {
    rx.got
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let b: Value = serde_json::from_str(&r.body).ok()?;
            (b["event"] == "alert.opened"
                && b["kind"] == kind
                && subject(b["subject"].as_str().unwrap_or_default()))
            .then(|| {
                assert!(
                    verify(OPS_SECRET, r),
                    "signed with the operators' secret: {r:?}"
                );
                assert!(!verify("another secret", r));
                b
            })
        })
        .collect()
}

/// Waits for the `n`th alert of `kind` (about a subject `subject` accepts); returns it.
async fn nth_alert(rx: &Receiver, n: usize, kind: &str, subject: impl Fn(&str) -> bool) -> Value {
    eventually(
        Duration::from_secs(90),
        &format!("alert {n} of {kind}"),
        async || alerts(rx, kind, &subject).get(n - 1).cloned(),
    )
    .await
}

/// Lets several alert checks (one a second) run, then says how many alerts of `kind` there
/// are: the episode is still open, so checks that see it again send nothing.
async fn after_more_checks(rx: &Receiver, kind: &str, subject: impl Fn(&str) -> bool) -> usize {
    tokio::time::sleep(Duration::from_secs(4)).await;
    alerts(rx, kind, subject).len()
}

/// The keys of the open episodes (`notify_alert`).
async fn open_episodes(db: &DatabaseConnection) -> Vec<String> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT key FROM notify_alert ORDER BY key",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<String>("", "key").unwrap())
    .collect()
}

/// Waits until no open episode's key starts with `prefix` (a check no longer saw it).
async fn episode_closes(db: &DatabaseConnection, prefix: &str) {
    eventually(
        Duration::from_secs(60),
        &format!("the episode {prefix}* closes"),
        async || {
            let open = open_episodes(db).await;
            (!open.iter().any(|k| k.starts_with(prefix))).then_some(())
        },
    )
    .await;
}

/// The operators' channels of the distributed tests: their webhook `rx`, signed with the secret
/// in `secret_file`, checks every second, fast delivery.
fn with_operators(mut s: Settings, rx: &Receiver, secret_file: &Path) -> Settings {
    std::fs::write(secret_file, format!("{OPS_SECRET}\n")).unwrap();
    s.notify.operator_webhook = Some(rx.url.clone());
    s.notify.operator_webhook_secret_file = Some(secret_file.to_owned());
    s.notify.alert_check_secs = 1;
    s.notify.poll_ms = 100;
    s.notify.backoff_ms = 200;
    s.notify.backoff_max_ms = 400;
    s.notify.webhook_timeout_secs = 2;
    s.notify.stalled_after_secs = 0;
    s
}

/// An envelope no transfer-put handler accepts (a put request instead of files): a permanent
/// failure, dead-lettered.
fn poison() -> Vec<u8> {
    nlds_core::Envelope::new(
        uuid::Uuid::new_v4(),
        "alice",
        "climate",
        nlds_core::api::ApiAction::Put,
        "poison",
        nlds_core::Payload::PutRequest {
            holding_id: 1,
            paths: vec!["/nowhere/poison.dat".into()],
        },
    )
    .to_json()
}

/// RabbitMQ: a poison message on transfer-put's queue is dead-lettered into
/// `nlds.transfer-put.dead`; the monitor's check (a passive declare) alerts the operators once,
/// however many checks see it and however many more dead letters join it; purging the queue
/// closes the episode, and the next dead letter is a new alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_dead_letters_on_rabbitmq_once_per_episode_and_again_after_a_purge() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let dir = temp();
    let rx = receiver(0).await;
    let settings = with_operators(svc.settings(), &rx, &dir.path().join("ops-secret"));
    let stop = CancellationToken::new();
    start_roles(
        &settings,
        vec![Role::Monitor, Role::TransferPut],
        stop.clone(),
    );
    let db = Database::connect(&svc.database_url).await.unwrap();
    let conn = Connection::connect(&svc.amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let queue = Role::TransferPut.queue();
    let dead_queue = format!("{queue}.dead");
    // transfer-put consumes (so its queue, bound and with its dead-letter queue, exists).
    eventually(
        Duration::from_secs(60),
        "transfer-put consuming",
        async || {
            let probe = conn.create_channel().await.ok()?;
            let q = probe
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .ok()?;
            let _ = probe.close(200, "done".into()).await;
            (q.consumer_count() > 0).then_some(())
        },
    )
    .await;
    let publish = async || {
        ch.basic_publish(
            nlds_core::routing::EXCHANGE.into(),
            "nlds-api.transfer-put.start".into(),
            BasicPublishOptions::default(),
            &poison(),
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    };
    let ours = |s: &str| s == dead_queue;

    publish().await;
    let first = nth_alert(&rx, 1, "dead_letters", ours).await;
    assert!(
        first["message"].as_str().unwrap().contains(&dead_queue),
        "the alert names the queue: {first}"
    );
    // More dead letters and more checks: the same episode, no new alert.
    publish().await;
    assert_eq!(after_more_checks(&rx, "dead_letters", ours).await, 1);
    assert!(
        open_episodes(&db)
            .await
            .contains(&format!("dead_letters:{dead_queue}"))
    );

    // The operators deal with them (here: purge the dead-letter queue): the episode closes.
    let purged = ch
        .queue_purge(dead_queue.as_str().into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    assert_eq!(purged, 2, "both dead letters were there");
    episode_closes(&db, &format!("dead_letters:{dead_queue}")).await;
    assert_eq!(alerts(&rx, "dead_letters", ours).len(), 1);

    // A new dead letter is a new episode: alerted again.
    publish().await;
    let second = nth_alert(&rx, 2, "dead_letters", ours).await;
    assert_ne!(first["opened"], second["opened"], "{first} {second}");
    stop.cancel();
}

/// Writes a message no handler can read into the embedded bus's queue table of the stopped
/// server whose data directory is `data` (it is delivered when the server starts again).
async fn poison_row(data: &Path) {
    let db = Database::connect(format!(
        "sqlite://{}?mode=rw",
        data.join("data").join("nlds.db").display()
    ))
    .await
    .unwrap();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO bus_message (queue, routing_key, body, attempt, not_before, \
         transaction_id, dead_reason) VALUES (?, ?, ?, 1, 0, NULL, NULL)",
        [
            Role::TransferPut.queue().into(),
            "nlds-api.transfer-put.start".into(),
            b"{ this is not an envelope".to_vec().into(),
        ],
    ))
    .await
    .unwrap();
    db.close().await.unwrap();
}

/// The embedded process: a poison message on its durable in-process bus is dead-lettered (the
/// row stays, marked dead); the operators hear once, however many checks see it; removing the
/// dead row (the embedded mode has no requeue command: the operator deletes it from
/// `bus_message`) closes the episode; the next dead letter is alerted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_dead_letters_of_the_embedded_bus_once_per_episode() {
    let dir = temp();
    let rx = receiver(0).await;
    let secret_file = dir.path().join("ops-secret");
    std::fs::write(&secret_file, format!("{OPS_SECRET}\n")).unwrap();
    let sets = [
        format!("notify.operator_webhook={}", rx.url),
        format!(
            "notify.operator_webhook_secret_file={}",
            secret_file.display()
        ),
        "notify.alert_check_secs=1".into(),
    ];
    let dead_queue = format!("{}.dead", Role::TransferPut.queue());
    let ours = |s: &str| s == dead_queue;
    // The first start makes the database; the poison goes in while the server is stopped.
    server_with(dir.path(), &[], &sets).await.stop();
    poison_row(dir.path()).await;
    let srv = server_with(dir.path(), &[], &sets).await;
    let first = nth_alert(&rx, 1, "dead_letters", ours).await;
    assert!(
        first["message"].as_str().unwrap().contains("1 message(s)"),
        "{first}"
    );
    assert_eq!(after_more_checks(&rx, "dead_letters", ours).await, 1);

    let db = Database::connect(format!(
        "sqlite://{}?mode=rw",
        dir.path().join("data").join("nlds.db").display()
    ))
    .await
    .unwrap();
    let removed = db
        .execute_raw(Statement::from_string(
            db.get_database_backend(),
            "DELETE FROM bus_message WHERE dead_reason IS NOT NULL",
        ))
        .await
        .unwrap();
    assert_eq!(removed.rows_affected(), 1);
    episode_closes(&db, &format!("dead_letters:{dead_queue}")).await;
    db.close().await.unwrap();
    srv.stop();

    poison_row(dir.path()).await;
    let srv = server_with(dir.path(), &[], &sets).await;
    nth_alert(&rx, 2, "dead_letters", ours).await;
    assert!(!srv.output().contains(OPS_SECRET));
    srv.stop();
}

/// The policy's circuit breaker opens (every archive write fails: the cold store's root became
/// a plain file): the operators hear once on their webhook and by e-mail (the SMTP sink);
/// `nlds admin policy reset` closes the episode.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_policy_breaker_once_on_the_webhook_and_by_email() {
    let Some(python) = smtp_python() else {
        return;
    };
    let Some(svc) = Services::new().await else {
        return;
    };
    let dir = temp();
    let maildir = dir.path().join("maildir");
    let sink = smtp_sink(&python, &maildir).await;
    let rx = receiver(0).await;
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"archive-dat\"\naction = \"archive\"\npath = \"*.dat\"\n",
    )
    .unwrap();
    let cold = dir.path().join("cold");
    let mut settings = with_operators(svc.settings(), &rx, &dir.path().join("ops-secret"));
    settings.notify.operator_emails = vec!["ops@example.org".into()];
    settings.notify.smtp_host = Some("127.0.0.1".into());
    settings.notify.smtp_port = sink.port;
    settings.notify.smtp_tls = nlds_settings::SmtpTls::None;
    settings.notify.from = "nlds@test.example.org".into();
    settings.workers.archive.interval_secs = 0;
    settings.workers.archive.aggregate_members = 1;
    settings.workers.cold.dir_mut().root = cold.clone();
    settings.policy.enabled = true;
    settings.policy.file = Some(rules);
    settings.policy.interval_secs = 0;
    settings.policy.breaker_min_actions = 3;
    settings.policy.breaker_error_rate = 0.5;
    settings.policy.archive_wait_secs = 90;
    let stop = CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let tokens = format!(
        "[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\
         [[token]]\ntoken = \"{OPS}\"\nuser = \"ops\"\ngroups = [\"climate\"]\nadmin = true\n"
    );
    let url = serve_api(&settings, &tokens, 30, stop.clone()).await;
    let (alice, ops) = (Api::new(&url, ALICE), Api::new(&url, OPS));
    let db = Database::connect(&svc.database_url).await.unwrap();

    let src = temp();
    for i in 0..5 {
        std::fs::write(src.path().join(format!("c{i}.dat")), vec![b'c'; 700]).unwrap();
    }
    let put = alice
        .put_and_wait(json!({"paths": [src.path()], "label": "breaker"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    // The tape goes away: every aggregate write fails.
    if cold.exists() {
        std::fs::rename(&cold, dir.path().join("cold.gone")).unwrap();
    }
    std::fs::write(&cold, "not a directory").unwrap();
    let (s, b) = ops.post("/api/v2/admin/policy/run", &json!({})).await;
    assert_eq!(s, 202, "{b}");

    let any = |_: &str| true;
    let alert = nth_alert(&rx, 1, "policy_breaker", any).await;
    let message = alert["message"].as_str().unwrap();
    assert!(message.contains("archive actions failed"), "{alert}");
    assert!(message.contains("nlds admin policy reset"), "{alert}");
    assert_eq!(after_more_checks(&rx, "policy_breaker", any).await, 1);
    // The same alert by e-mail.
    let mail = eventually(Duration::from_secs(60), "the alert's e-mail", async || {
        let new = std::fs::read_dir(maildir.join("new")).ok()?;
        new.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .find(|m| m.contains("Subject: [nlds alert] policy_breaker"))
    })
    .await;
    assert!(mail.contains("To: ops@example.org"), "{mail}");
    assert!(mail.contains("From: nlds@test.example.org"), "{mail}");
    assert!(mail.contains("archive actions failed"), "{mail}");
    assert!(!mail.contains(OPS_SECRET), "{mail}");

    // An operator closes the breaker: the episode closes with it.
    let (s, b) = ops.post("/api/v2/admin/policy/reset", &json!({})).await;
    assert_eq!(s, 200, "{b}");
    episode_closes(&db, "policy_breaker:").await;
    assert_eq!(alerts(&rx, "policy_breaker", any).len(), 1);
    stop.cancel();
}

/// A TCP relay on loopback to `target` (`host:port`) that can be cut: while down it closes every
/// connection it has open and every new one at once (the object store is unreachable).
struct Relay {
    url: String,
    up: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (up, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watch = watch.clone();
                if !*watch.borrow() {
                    continue; // dropped: closed at once
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { url, up }
    }

    fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// Cuts `relay` twice: each outage of the backend `subject` is one alert however many checks see
/// it, its message saying what cannot be reached; back, its episode closes (the row is deleted).
async fn two_outages(rx: &Receiver, db: &DatabaseConnection, relay: &Relay, subject: &str) {
    let ours = |s: &str| s == subject;
    let key = format!("backend_unreachable:{subject}");
    // The monitor has migrated the database (its table of episodes answers).
    eventually(
        Duration::from_secs(120),
        "the monitor's tables",
        async || {
            db.query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT key FROM notify_alert",
            ))
            .await
            .ok()
        },
    )
    .await;
    // Reachable: checks run and nothing is alerted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(alerts(rx, "backend_unreachable", ours).is_empty());
    assert!(!open_episodes(db).await.contains(&key));
    for outage in 1..=2 {
        relay.set(false);
        let alert = nth_alert(rx, outage, "backend_unreachable", ours).await;
        assert!(
            alert["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("the {subject} cannot be reached")),
            "{alert}"
        );
        assert_eq!(
            after_more_checks(rx, "backend_unreachable", ours).await,
            outage,
            "one alert per outage"
        );
        assert!(open_episodes(db).await.contains(&key));
        relay.set(true);
        episode_closes(db, &key).await;
    }
    assert_eq!(alerts(rx, "backend_unreachable", ours).len(), 2);
}

/// The object store stops answering (a relay in front of the S3 endpoint is cut): one alert
/// naming it, however many checks see it; reachable again, the episode closes (its row is
/// deleted); a later outage is alerted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_object_store_unreachable_once_per_outage_and_again_after_it_came_back() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let dir = temp();
    let rx = receiver(0).await;
    let target = svc
        .s3_endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let relay = Relay::start(target).await;
    let mut settings = with_operators(svc.settings(), &rx, &dir.path().join("ops-secret"));
    settings.workers.object_store.endpoint = relay.url.clone();
    let stop = CancellationToken::new();
    start_roles(&settings, vec![Role::Monitor], stop.clone());
    let db = Database::connect(&svc.database_url).await.unwrap();
    two_outages(&rx, &db, &relay, "object store").await;
    stop.cancel();
}

/// The cold store (XRootD, the tape front end) stops answering where the monitor's process also
/// runs an archive role (the only processes that reach it): alerted once per outage, closed
/// when it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_cold_store_unreachable_where_an_archive_role_runs() {
    let Some(xrootd) = crate::helpers::service("NLDS_TEST_XROOTD_URL") else {
        return;
    };
    let Some(svc) = Services::new().await else {
        return;
    };
    // root://host:port//path: the relay stands in for host:port.
    let rest = xrootd.strip_prefix("root://").expect("a root:// URL");
    let (hostport, path) = rest.split_once("//").expect("root://host:port//path");
    let relay = Relay::start(hostport.to_owned()).await;
    let dir = temp();
    let rx = receiver(0).await;
    let mut settings = with_operators(svc.settings(), &rx, &dir.path().join("ops-secret"));
    let x = settings.workers.cold.xrootd_mut();
    x.url = format!(
        "root://{}//{}/alerts-{}",
        relay.url.trim_start_matches("http://"),
        path.trim_end_matches('/'),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    x.timeout_secs = 2;
    let stop = CancellationToken::new();
    start_roles(
        &settings,
        vec![Role::Monitor, Role::ArchiveGet],
        stop.clone(),
    );
    let db = Database::connect(&svc.database_url).await.unwrap();
    two_outages(&rx, &db, &relay, "cold store").await;
    stop.cancel();
}
