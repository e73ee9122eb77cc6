//! Secrets never leak: a full put and get in distributed mode (the `nlds-server` and
//! `nlds-workers` binaries over RabbitMQ, PostgreSQL and S3) with unique random secrets: the S3
//! secret key (read from a `*_FILE` mount), the object-store keys an old client sends on
//! `/api/1.0.0`, the bearer token, the key users' webhook secrets are derived from, and a
//! user's webhook signing secret (which the API server shows its owner, `nlds notify show
//! --secret` included, and the monitor signs with: each derives it, so it never crosses the
//! bus). Every message published on the test's vhost (a tap queue on the exchange, and
//! RabbitMQ's firehose for everything else, RPC replies included), every log line of the server
//! and the workers (debug level), the logger's files, every HTTP answer (but the webhook
//! secret's own, to its owner) and the catalogue database are searched for them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use nlds_core::State;
use serde_json::json;

use crate::distributed::{Services, workers_binary};
use crate::helpers::{Api, temp};

fn random(what: &str) -> String {
    format!(
        "{what}-{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn server_binary() -> PathBuf {
    workers_binary().with_file_name("nlds-server")
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(bin: &Path, args: &[&str], log: &Path, secret_file: &Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    Proc(
        Command::new(bin)
            .args(args)
            .env("RUST_LOG", "debug")
            .env("NLDS_S3_SECRET_KEY_FILE", secret_file)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything queued on `queue`: (routing key, headers, body) as text.
async fn drain(conn: &Connection, queue: &str) -> Vec<(String, String, String)> {
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        out.push((
            m.delivery.routing_key.to_string(),
            format!("{:?}", m.delivery.properties),
            String::from_utf8_lossy(&m.delivery.data).into_owned(),
        ));
    }
    out
}

/// Every file under `dir` as text, by path.
fn texts_under(dir: &Path) -> Vec<(PathBuf, String)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
            (e.path().to_owned(), text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_reaches_the_broker_the_logs_or_an_answer() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let s3_secret = random("s3secret");
    let legacy_access = random("legacyaccess");
    let legacy_secret = random("legacysecret");
    let token = random("token");
    let tenancy_secret = random("tenancysecret");
    let webhook_key = random("webhookkey");
    let mut secrets = vec![
        ("the webhook key", webhook_key.as_str()),
        ("the S3 secret key", s3_secret.as_str()),
        ("tenancy b's S3 secret key", tenancy_secret.as_str()),
        ("the legacy access_key", legacy_access.as_str()),
        ("the legacy secret_key", legacy_secret.as_str()),
        ("the bearer token", token.as_str()),
    ];

    let dir = temp();
    let secret_file = dir.path().join("s3-secret-key");
    std::fs::write(&secret_file, format!("{s3_secret}\n")).unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!("[[token]]\ntoken = \"{token}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n"),
    )
    .unwrap();
    let mut settings = svc.settings();
    // The secret key comes only from the file named by NLDS_S3_SECRET_KEY_FILE.
    settings.workers.object_store.secret_key = Default::default();
    // A second tenancy, its secret key in its own file.
    let tenancy_file = dir.path().join("tenancy-b-secret-key");
    std::fs::write(&tenancy_file, format!("{tenancy_secret}\n")).unwrap();
    settings.workers.object_store.tenancies.insert(
        "b".into(),
        nlds_workers::config::TenancyConfig {
            access_key: Some("tenancy-b-access".into()),
            secret_key_file: Some(tenancy_file.clone()),
            bucket: Some(format!("{}-b", svc.bucket)),
            ..Default::default()
        },
    );
    // The key users' webhook secrets are derived from, in a file both processes read.
    let key_file = dir.path().join("webhook.key");
    std::fs::write(&key_file, format!("{webhook_key}\n")).unwrap();
    settings.notify.webhook_key_file = Some(key_file);
    settings.notify.poll_ms = 100;
    settings.notify.webhook_timeout_secs = 5;
    let log_dir = dir.path().join("logger");
    settings.workers.log_dir = log_dir.clone();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = dir.path().join("nlds.toml");
    // One settings type: the server's section is written with the rest.
    settings.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    settings.server.tokens_file = tokens.clone();
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
    let config_arg = config.to_string_lossy().into_owned();
    assert!(
        !std::fs::read_to_string(&config)
            .unwrap()
            .contains(&s3_secret),
        "the settings file holds no secret"
    );

    let server_log = dir.path().join("server.log");
    let workers_log = dir.path().join("workers.log");
    let workers_proc = spawn(
        &workers_binary(),
        &["--config", &config_arg, "all"],
        &workers_log,
        &secret_file,
    );
    let server_proc = spawn(
        &server_binary(),
        &["serve", "--config", &config_arg],
        &server_log,
        &secret_file,
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut answers = Vec::new();
    let api = Api::new(&url, &token);
    let mut up = false;
    for _ in 0..300 {
        if api.http.get(format!("{url}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        up,
        "nlds-server did not start: {}",
        std::fs::read_to_string(&server_log).unwrap()
    );

    // Tap every message of the vhost: a queue on the exchange with `#`, and the firehose
    // (which also sees RPC requests and the direct reply-to answers).
    let conn = Connection::connect(&svc.amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let vhost = svc.amqp_url.rsplit('/').next().unwrap().to_owned();
    rabbitmqctl(&["trace_on", "-p", &vhost]);
    for (queue, exchange) in [
        ("secrets-tap", nlds_core::routing::EXCHANGE),
        ("secrets-firehose", "amq.rabbitmq.trace"),
    ] {
        ch.queue_declare(
            queue.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }

    // A webhook, set while the tap listens: the answer (the HTTP one, to its owner) shows the
    // secret; the monitor's RPC answer carries only the nonce.
    let rx = crate::notify::receiver(0).await;
    let r = api
        .http
        .put(format!("{url}/api/v2/notify"))
        .bearer_auth(&token)
        .json(&json!({"webhook": rx.url, "on": "always"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set: serde_json::Value = r.json().await.unwrap();
    let webhook_secret = set["webhook_secret"]
        .as_str()
        .expect("a new webhook's secret")
        .to_owned();
    assert_eq!(webhook_secret.len(), 64, "{set}");
    let nonce = set["webhook_nonce"].as_str().unwrap().to_owned();
    assert!(!webhook_secret.contains(&nonce));
    let (_, shown) = api.get("/api/v2/notify?secret=true").await;
    assert_eq!(shown["webhook_secret"], webhook_secret.as_str(), "{shown}");
    let (_, plain) = api.get("/api/v2/notify").await;
    assert!(plain.get("webhook_secret").is_none(), "{plain}");
    answers.push(plain.to_string());
    let cli = crate::policy_cli::nlds(&url, &token, &["notify", "show", "--secret"]);
    let cli = crate::policy_cli::text(&cli);
    assert!(cli.contains(&webhook_secret), "{cli}");

    // A put and a get through the legacy API, the way the Python client sends them: object-store
    // keys in the query string.
    let src = temp();
    let file = src.path().join("data.nc");
    std::fs::write(&file, b"payload of the secrets test").unwrap();
    let target = temp();
    let legacy = |path: &str, tid: &str, extra: &str| {
        format!(
            "{url}/api/1.0.0/{path}?transaction_id={tid}&user=alice&group=climate\
             &access_key={legacy_access}&secret_key={legacy_secret}&tenancy=s3.example.org{extra}"
        )
    };
    let put_tid = uuid::Uuid::new_v4().to_string();
    let r = api
        .http
        .put(legacy("files/", &put_tid, "&job_label=secrets"))
        .bearer_auth(&token)
        .json(&json!({"filelist": [file.to_string_lossy()], "label": "secrets"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    answers.push(r.text().await.unwrap());
    let t = api.wait(&put_tid, Duration::from_secs(300)).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    // Its end reaches the webhook, signed with the secret the API showed.
    let mut delivered = None;
    for _ in 0..600 {
        delivered = rx
            .got
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.body.contains(&put_tid))
            .cloned();
        if delivered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = delivered.expect("the put's end is delivered to the webhook");
    assert!(
        crate::notify::verify(&webhook_secret, &delivered),
        "the delivery verifies with the secret shown: {delivered:?}"
    );

    let get_tid = uuid::Uuid::new_v4().to_string();
    let r = api
        .http
        .get(legacy(
            "files/",
            &get_tid,
            &format!(
                "&filepath={}&target={}&label=secrets",
                file.display(),
                target.path().display()
            ),
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    answers.push(r.text().await.unwrap());
    let t = api.wait(&get_tid, Duration::from_secs(300)).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let back = target.path().join(file.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(&back).unwrap(),
        b"payload of the secrets test"
    );

    // A put into tenancy b and a get of it back (native API): its credentials are used by the
    // workers only.
    let file_b = src.path().join("data-b.nc");
    std::fs::write(&file_b, b"payload of tenancy b").unwrap();
    let t = api
        .put_and_wait(
            json!({"paths": [file_b.to_string_lossy()], "label": "secrets-b", "tenancy": "b"}),
        )
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let target_b = temp();
    let (status, r) = api
        .post(
            "/api/v2/get",
            &json!({"paths": [file_b.to_string_lossy()], "label": "secrets-b",
                    "target": target_b.path().to_string_lossy()}),
        )
        .await;
    assert_eq!(status, 202, "{r}");
    answers.push(r.to_string());
    let t = api
        .wait(
            r["transaction_id"].as_str().unwrap(),
            Duration::from_secs(300),
        )
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    assert_eq!(
        std::fs::read(target_b.path().join(file_b.strip_prefix("/").unwrap())).unwrap(),
        b"payload of tenancy b"
    );

    // Errors and queries carrying the keys: list, find, stat, a malformed request, a wrong
    // token with the real keys.
    for q in [
        "catalog/list/",
        "catalog/find/",
        "status/",
        "catalog/list/?limit=nope&x=",
    ] {
        let (path, extra) = q.split_once('?').map_or((q, ""), |(p, e)| (p, e));
        let r = api
            .http
            .get(legacy(path, &get_tid, &format!("&{extra}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        answers.push(format!("{} {}", r.status(), r.text().await.unwrap()));
    }
    let r = api
        .http
        .get(legacy("catalog/list/", &get_tid, ""))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    answers.push(format!("{} {}", r.status(), r.text().await.unwrap()));
    let (_, stat) = api.get(&format!("/api/v2/transactions/{get_tid}")).await;
    answers.push(stat.to_string());
    // A batch a worker gives up on: its error record goes to the logger, which writes it to a
    // file (scanned below with everything else).
    let poison = nlds_core::Envelope::new(
        uuid::Uuid::new_v4(),
        "alice",
        "climate",
        nlds_core::api::ApiAction::Put,
        "poison",
        nlds_core::Payload::PutRequest {
            holding_id: 1,
            paths: vec![file.to_string_lossy().into_owned()],
        },
    );
    ch.basic_publish(
        nlds_core::routing::EXCHANGE.into(),
        "nlds-api.transfer-put.start".into(),
        lapin::options::BasicPublishOptions::default(),
        &poison.to_json(),
        lapin::BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mut logged = false;
    for _ in 0..100 {
        if !texts_under(&log_dir).is_empty() {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        logged,
        "the logger wrote the error record under {}",
        log_dir.display()
    );

    // Let the last monitor updates and log messages land, then stop everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tap = drain(&conn, "secrets-tap").await;
    let firehose = drain(&conn, "secrets-firehose").await;
    rabbitmqctl(&["trace_off", "-p", &vhost]);
    drop(server_proc);
    drop(workers_proc);

    // The tap saw the whole put and get, so finding nothing below means something.
    assert!(
        firehose.iter().any(|(_, _, body)| body.contains(&nonce)),
        "the firehose saw the monitor's notify answer (its nonce)"
    );
    secrets.push(("the webhook signing secret", webhook_secret.as_str()));
    let keys: Vec<&str> = tap.iter().map(|(k, _, _)| k.as_str()).collect();
    for expected in [
        "nlds-api.route.put",
        "nlds-api.index.start",
        "nlds-api.transfer-put.start",
        "nlds-api.catalog-put.start",
        "nlds-api.route.get",
        "nlds-api.catalog-get.start",
        "nlds-api.transfer-get.start",
    ] {
        assert!(
            keys.contains(&expected),
            "the tap missed {expected}: {keys:?}"
        );
    }
    assert!(
        tap.iter()
            .any(|(_, _, body)| body.contains(&put_tid) && body.contains("data.nc")),
        "the tap holds the put's messages"
    );
    assert!(
        firehose.len() > tap.len(),
        "the firehose sees RPCs and replies too ({} vs {})",
        firehose.len(),
        tap.len()
    );

    // Where to look.
    let mut haystacks: Vec<(String, String)> = Vec::new();
    for (k, props, body) in tap.iter().chain(firehose.iter()) {
        haystacks.push((format!("broker message {k}"), format!("{k} {props} {body}")));
    }
    for (name, log) in [("server log", &server_log), ("workers log", &workers_log)] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(
            text.contains("DEBUG"),
            "{name} is at debug level, so it would show what leaks"
        );
        haystacks.push((name.into(), text));
    }
    for (p, text) in texts_under(&log_dir) {
        haystacks.push((format!("logger file {}", p.display()), text));
    }
    for (i, a) in answers.iter().enumerate() {
        haystacks.push((format!("HTTP answer {i}"), a.clone()));
    }
    let dump = Command::new("pg_dump")
        .args(["-h", "127.0.0.1", "-U", "postgres", "--data-only"])
        .arg(svc.database_url.rsplit('/').next().unwrap())
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(dump.contains("data.nc"), "the dump holds the catalogue");
    haystacks.push(("the catalogue and monitor database".into(), dump));

    let mut leaks = Vec::new();
    for (where_, text) in &haystacks {
        for &(what, secret) in &secrets {
            if text.contains(secret) {
                let at = text.find(secret).unwrap();
                let from = at.saturating_sub(200);
                let context = String::from_utf8_lossy(&text.as_bytes()[from..at + secret.len()]);
                leaks.push(format!("{what} appears in {where_}: ...{context}..."));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}
