//! Logs an operator can use and a `/readyz` that means ready, with the real binaries in
//! distributed mode (RabbitMQ, PostgreSQL) and services this test owns: a private S3 server
//! (s3s-fs on its own port, stopped and restarted mid-put) and a private PostgreSQL (initdb and
//! pg_ctl on its own port, stopped and restarted). The shared services are never stopped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nlds_core::State;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, workers_binary};
use crate::helpers::{Api, temp};

const ALICE: &str = "logs-test-alice-token-0123456789";
const ADMIN: &str = "logs-test-admin-token-0123456789";

/// A private S3 server (s3s-fs over a directory, so a restart keeps the bucket and the objects).
/// Stopping it closes the listener and every open connection: the clients meet a refused
/// connection, as when a real server is down.
struct PrivateS3 {
    root: PathBuf,
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PrivateS3 {
    async fn start(root: &Path, port: u16) -> Self {
        std::fs::create_dir_all(root).unwrap();
        let fs = s3s_fs::FileSystem::new(root).unwrap();
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single("testing", "testing"));
        let service = b.build();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let cancelled = stop.clone();
        let task = tokio::spawn(async move {
            let http =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            // Dropped at the end: every connection is aborted.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (socket, _) = tokio::select! {
                    _ = cancelled.cancelled() => break,
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                };
                let conn = http
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                    .into_owned();
                conns.spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Self {
            root: root.to_owned(),
            addr,
            stop,
            task: Some(task),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    async fn restart(&mut self) {
        self.stop().await;
        *self = Self::start(&self.root.clone(), self.addr.port()).await;
    }
}

/// A private PostgreSQL cluster on its own port (trust authentication; run as `postgres` when the
/// test runs as root), in a directory given to that account.
struct PrivatePg {
    data: PathBuf,
    port: u16,
}

fn as_postgres(args: &[&str]) -> std::process::Output {
    let mut cmd = if rustix::process::geteuid().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]);
        c
    } else {
        Command::new(args[0])
    };
    let args = if rustix::process::geteuid().is_root() {
        args
    } else {
        &args[1..]
    };
    cmd.args(args).stdin(Stdio::null()).output().unwrap()
}

impl PrivatePg {
    fn init(dir: &Path) -> Self {
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data).unwrap();
        if rustix::process::geteuid().is_root() {
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        let d = data.to_str().unwrap();
        let out = as_postgres(&[
            "initdb",
            "-D",
            d,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]);
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let pg = Self { data, port };
        pg.start();
        pg
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self, args: &[&str]) {
        let d = self.data.to_str().unwrap();
        let log = self.data.join("server.log");
        let mut all = vec!["pg_ctl", "-D", d, "-l", log.to_str().unwrap(), "-w"];
        all.extend_from_slice(args);
        let out = as_postgres(&all);
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -h 127.0.0.1 -k {}",
            self.port,
            self.data.to_str().unwrap()
        );
        self.pg_ctl(&["-o", &opts, "start"]);
    }

    fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let d = self.data.to_str().unwrap().to_owned();
        let _ = as_postgres(&["pg_ctl", "-D", &d, "-m", "immediate", "stop"]);
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin` with `args`, standard error and output into the file `log` (not a terminal).
fn spawn(bin: &Path, args: &[&str], log: &Path, env: &[(&str, &str)]) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("RUST_LOG", "info")
        .env_remove("NLDS_LOG_JSON")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().unwrap())
}

/// The server and the workers of one test, their settings and logs.
struct Deployment {
    url: String,
    ops: String,
    server_log: PathBuf,
    workers_log: PathBuf,
    log_dir: PathBuf,
    _procs: Vec<Proc>,
}

/// Writes the settings (`edit` changes them) and starts `nlds-workers all` (JSON logs) and
/// `nlds-server serve` (plain logs), both logging into files; waits until the API answers.
async fn deploy(
    svc: &Services,
    dir: &Path,
    edit: impl FnOnce(&mut nlds_workers::run::Settings),
) -> Deployment {
    std::fs::create_dir_all(dir).unwrap();
    let mut settings = svc.settings();
    let tokens = dir.join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\n\
             [[token]]\ntoken = \"{ADMIN}\"\nuser = \"root\"\ngroups = [\"climate\"]\nadmin = true\n"
        ),
    )
    .unwrap();
    let log_dir = dir.join("logger");
    settings.workers.log_dir = log_dir.clone();
    let ops_port = free_port();
    settings.workers.ops_listen = Some(format!("127.0.0.1:{ops_port}").parse().unwrap());
    let port = free_port();
    settings.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    settings.server.tokens_file = tokens;
    edit(&mut settings);
    let config = dir.join("nlds.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
    let config = config.to_string_lossy().into_owned();
    let (server_log, workers_log) = (dir.join("server.log"), dir.join("workers.log"));
    let workers = spawn(
        &workers_binary(),
        &["--config", &config, "all"],
        &workers_log,
        &[("NLDS_LOG_JSON", "1")],
    );
    let server = spawn(
        &workers_binary().with_file_name("nlds-server"),
        &["serve", "--config", &config],
        &server_log,
        &[],
    );
    let d = Deployment {
        url: format!("http://127.0.0.1:{port}"),
        ops: format!("http://127.0.0.1:{ops_port}"),
        server_log,
        workers_log,
        log_dir,
        _procs: vec![workers, server],
    };
    let http = reqwest::Client::new();
    for base in [&d.url, &d.ops] {
        let start = Instant::now();
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{base} did not start: server: {}\nworkers: {}",
                read(&d.server_log),
                read(&d.workers_log)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    d
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// `GET base/readyz`: the status and the checks.
async fn readyz(base: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Polls `base/readyz` until it answers `status` (the checks cache for a few seconds).
async fn readyz_until(base: &str, status: u16, what: &str) -> Value {
    let start = Instant::now();
    loop {
        let (s, v) = readyz(base).await;
        if s == status {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{base}/readyz still {s} ({v}), expected {status}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs the `nlds` CLI in-process as `token`; (exit code, standard output, standard error).
async fn nlds(url: &str, token: &str, args: &[&str]) -> (u8, String, String) {
    use clap::Parser;
    let cli =
        nlds_cli::cli::Cli::try_parse_from(std::iter::once("nlds").chain(args.iter().copied()))
            .unwrap();
    let home = temp();
    let env = nlds_cli::app::Env::new(
        [
            ("NLDS_URL", url),
            ("NLDS_TOKEN", token),
            ("HOME", home.path().to_str().unwrap()),
        ],
        "/",
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdin = std::io::empty();
    let mut io = nlds_cli::app::Io {
        out: &mut out,
        err: &mut err,
        stdin: &mut stdin,
    };
    let code = nlds_cli::app::run(cli, &env, &mut io).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_s3_outage_reaches_the_logs_and_the_transaction_and_readyz() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let dir = temp();
    let mut s3 = PrivateS3::start(&dir.path().join("s3"), 0).await;
    let s3_url = s3.url();
    let d = deploy(&svc, dir.path(), |s| {
        s.workers.object_store.endpoint = s3_url.clone();
        // Four retries, the outage below lasts through the first one or two.
        s.bus.retry_delays_ms = vec![1500, 3000, 6000, 12000];
    })
    .await;
    let v = readyz_until(&d.ops, 200, "everything is up").await;
    for check in ["bus", "database", "object_store"] {
        assert_eq!(v["checks"][check], "ok", "{v}");
    }
    let v = readyz_until(&d.url, 200, "everything is up").await;
    assert_eq!(
        (&v["checks"]["bus"], &v["checks"]["database"]),
        (&json!("ok"), &json!("ok")),
        "{v}"
    );

    // S3 goes down; a put is accepted and its transfer step is retried.
    s3.stop().await;
    let v = readyz_until(&d.ops, 503, "S3 is down").await;
    let failing = v["checks"]["object_store"].as_str().unwrap();
    assert!(failing.contains(&svc.bucket), "names the bucket: {v}");
    assert_eq!(v["checks"]["database"], "ok", "{v}");

    let src = temp();
    let file = src.path().join("during-the-outage.nc");
    std::fs::write(&file, b"written while S3 was down").unwrap();
    let alice = Api::new(&d.url, ALICE);
    let (s, r) = alice
        .post("/api/v2/put", &json!({"paths": [file.to_string_lossy()]}))
        .await;
    assert_eq!(s, 202, "{r}");
    let tid = r["transaction_id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    let note = loop {
        let (_, t) = alice.get(&format!("/api/v2/transactions/{tid}")).await;
        let notes: Vec<String> = t["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|w| w.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(n) = notes.iter().find(|w| w.contains("(transfer-put)")) {
            break n.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no retry warning on the transaction: {t}\nworkers: {}",
            read(&d.workers_log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(note.starts_with("retry 1 of 4 at "), "{note}");
    assert!(note.contains("unavailable"), "the error's kind: {note}");
    // Its batch waits for that retry, in fields (docs/WAITING.md), and the admin view says so.
    let retrying = crate::waiting::until_waiting(&alice, &tid, "retrying").await;
    assert_eq!(
        (
            &retrying["step"],
            &retrying["retry"],
            &retrying["of"],
            &retrying["code"]
        ),
        (
            &json!("transfer-put"),
            &json!(1),
            &json!(4),
            &json!("unavailable")
        ),
        "{retrying}"
    );
    assert!(retrying["next_try"].is_string(), "{retrying}");
    let operator = Api::new(&d.url, ADMIN);
    assert!(
        crate::waiting::admin_waiting(&operator, "retrying")
            .await
            .contains(&tid)
    );
    assert!(
        !crate::waiting::admin_waiting(&operator, "queued")
            .await
            .contains(&tid)
    );
    let (code, out, err) = nlds(&d.url, ALICE, &["stat", "-n", &tid]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("retry 1 of 4 at "),
        "nlds stat shows the warning: {out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("waiting") && l.contains("retry 1 of 4 of transfer-put at ")),
        "nlds stat shows why it waits: {out}"
    );

    // S3 comes back: the put completes; the warning stays as history without degrading the state.
    s3.restart().await;
    let t = alice.wait(&tid, Duration::from_secs(120)).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    assert!(t.warnings.iter().any(|w| w == &note), "{t:#?}");
    assert!(t.sub_records.iter().all(|s| s.waiting.is_none()), "{t:#?}");
    readyz_until(&d.ops, 200, "S3 is back").await;

    // The operator finds the outage's records with `nlds admin logs`.
    let start = Instant::now();
    loop {
        let (code, out, err) = nlds(
            &d.url,
            ADMIN,
            &[
                "admin", "logs", "-n", &tid, "--level", "warning", "--since", "1h", "-w",
            ],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        if out.contains("transfer-put") && out.contains("will retry") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no warning record of the outage: {out}\nworkers: {}",
            read(&d.workers_log)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // ... and in the logger's file, as JSON lines naming the transaction.
    let file_log = read(&d.log_dir.join("transfer-put.log"));
    let records: Vec<Value> = file_log
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r["transaction_id"] == tid.as_str() && r["level"] == "warning"),
        "{file_log}"
    );

    // Standard error: JSON lines from the workers (NLDS_LOG_JSON=1), one per message handled with
    // its transaction id; plain text without colour codes from the server (not a terminal).
    let workers = read(&d.workers_log);
    let lines: Vec<Value> = workers
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let handled: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["fields"]["message"] == "handled" && l["fields"]["transaction_id"] == tid.as_str()
        })
        .collect();
    let outcomes = |role: &str| -> Vec<&str> {
        handled
            .iter()
            .filter(|l| l["fields"]["role"] == role)
            .filter_map(|l| l["fields"]["outcome"].as_str())
            .collect()
    };
    let put = outcomes("transfer-put");
    assert!(
        put.contains(&"retry") && put.contains(&"done"),
        "{put:?}: {workers}"
    );
    assert!(!outcomes("index").is_empty(), "{workers}");
    assert!(
        handled
            .iter()
            .all(|l| l["fields"]["duration_ms"].is_u64() && l["fields"]["key"].is_string())
    );
    let server = read(&d.server_log);
    assert!(server.contains("nlds-server listening"), "{server}");
    assert!(
        !server.contains('\u{1b}'),
        "ANSI codes in a redirected log: {server:?}"
    );
    assert!(!workers.contains('\u{1b}'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_names_the_database_while_postgres_is_down() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let dir = temp();
    // Its own directory: the cluster's owner must reach it.
    let pg_dir = temp();
    let pg = PrivatePg::init(pg_dir.path());
    let pg_url = pg.url();
    let d = deploy(&svc, dir.path(), |s| {
        s.workers.database_url = pg_url.clone();
    })
    .await;
    readyz_until(&d.ops, 200, "everything is up").await;
    readyz_until(&d.url, 200, "everything is up").await;

    pg.stop();
    let v = readyz_until(&d.ops, 503, "PostgreSQL is down").await;
    assert_ne!(v["checks"]["database"], "ok", "{v}");
    assert_eq!(
        (&v["checks"]["bus"], &v["checks"]["object_store"]),
        (&json!("ok"), &json!("ok")),
        "{v}"
    );
    assert_eq!(v["ready"], false);
    let v = readyz_until(&d.url, 503, "PostgreSQL is down").await;
    assert!(
        v["checks"]["database"]
            .as_str()
            .unwrap()
            .contains("monitor"),
        "{v}"
    );
    assert_eq!(v["checks"]["bus"], "ok", "{v}");

    pg.start();
    let v = readyz_until(&d.ops, 200, "PostgreSQL is back").await;
    assert_eq!(v["checks"]["database"], "ok");
    readyz_until(&d.url, 200, "PostgreSQL is back").await;
}
