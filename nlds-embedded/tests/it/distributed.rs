//! The scenario in distributed mode over real RabbitMQ, PostgreSQL and S3 (moto), and a kill -9 of
//! the transfer-put process in the middle of a multipart upload.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use nlds_core::State;
use nlds_server::auth::StaticTokens;
use nlds_server::{AppState, ServerConfig, router};
use nlds_workers::WorkerConfig;
use nlds_workers::run::{BusConfig, BusKind, Settings};
use sea_orm::{ConnectionTrait, Database};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::embedded::scenario;
use crate::helpers::{Api, service, temp};

pub const TOKEN: &str = "distributed-test-token-0123456789";

/// Isolated services for one test: a RabbitMQ vhost, a PostgreSQL database and an S3 bucket.
pub struct Services {
    db: String,
    pub amqp_url: String,
    pub database_url: String,
    pub s3_endpoint: String,
    pub bucket: String,
    vhost: String,
}

impl Services {
    pub async fn new() -> Option<Self> {
        let amqp = service("NLDS_TEST_AMQP_URL")?;
        let pg = service("NLDS_TEST_DATABASE_URL")?;
        let s3 = service("NLDS_TEST_S3_ENDPOINT")?;
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let vhost = format!("nlds-test-{id}");
        for args in [
            vec!["add_vhost", vhost.as_str()],
            vec![
                "set_permissions",
                "-p",
                vhost.as_str(),
                "guest",
                ".*",
                ".*",
                ".*",
            ],
        ] {
            let out = Command::new("rabbitmqctl")
                .args(&args)
                .output()
                .expect("rabbitmqctl runs");
            assert!(
                out.status.success(),
                "rabbitmqctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let base = amqp
            .trim_end_matches('/')
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned());
        let base = base
            .filter(|b| b.starts_with("amqp://") && b.len() > 7)
            .unwrap_or(amqp.trim_end_matches('/').to_owned());
        let admin = Database::connect(format!("{}/postgres", pg.trim_end_matches('/')))
            .await
            .unwrap();
        let db = format!("nlds_test_{id}");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        Some(Self {
            db: db.clone(),
            amqp_url: format!("{base}/{vhost}"),
            database_url: format!("{}/{db}", pg.trim_end_matches('/')),
            s3_endpoint: s3,
            bucket: format!("nlds-test-{id}"),
            vhost,
        })
    }

    pub fn settings(&self) -> Settings {
        let mut workers = WorkerConfig {
            database_url: self.database_url.clone(),
            log_dir: std::env::temp_dir().join(format!("{}-logs", self.vhost)),
            ..Default::default()
        };
        workers.object_store.endpoint = self.s3_endpoint.clone();
        workers.object_store.access_key = "testing".into();
        workers.object_store.secret_key = "testing".into();
        workers.object_store.bucket = self.bucket.clone();
        // The test users are not system accounts (tests/it/posix.rs covers "user").
        workers.posix_checks = Some(nlds_workers::posix::PosixChecks::Service);
        workers.cold.dir_mut().root = std::env::temp_dir().join(format!("{}-cold", self.vhost));
        workers.work_dir = std::env::temp_dir().join(format!("{}-work", self.vhost));
        Settings {
            bus: BusConfig {
                kind: BusKind::Rabbitmq,
                amqp_url: self.amqp_url.clone(),
                prefetch: 8,
                retry_delays_ms: vec![200, 1000, 3000],
                ..Default::default()
            },
            workers,
            ..Default::default()
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db))
            .output();
    }
}

/// Starts the API server against the bus; returns its URL.
pub async fn start_server(settings: &Settings, stop: CancellationToken) -> String {
    start_server_with(settings, stop, 30).await
}

async fn start_server_with(
    settings: &Settings,
    stop: CancellationToken,
    rpc_timeout_secs: u64,
) -> String {
    let tokens =
        format!("[[token]]\ntoken = \"{TOKEN}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n");
    serve_api(settings, &tokens, rpc_timeout_secs, stop).await
}

/// Starts the API server against the bus with the static tokens `tokens` (a tokens file's TOML)
/// and an RPC timeout; returns its URL.
pub async fn serve_api(
    settings: &Settings,
    tokens: &str,
    rpc_timeout_secs: u64,
    stop: CancellationToken,
) -> String {
    let bus = nlds_workers::run::connect_bus(&settings.bus).await.unwrap();
    let auth = StaticTokens::from_toml(tokens).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = ServerConfig {
        listen: addr,
        rpc_timeout_secs,
        ..Default::default()
    };
    let state = AppState {
        bus,
        auth: Arc::new(auth),
        cfg: Arc::new(cfg),
        live: Default::default(),
        webhook_key: None,
    };
    tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    format!("http://{addr}")
}

pub fn start_roles(settings: &Settings, roles: Vec<nlds_core::Role>, stop: CancellationToken) {
    let s = settings.clone();
    tokio::spawn(async move {
        let bus = nlds_workers::run::connect_bus(&s.bus).await.unwrap();
        nlds_workers::run::run_roles(bus, &roles, &s, stop).await
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distributed_put_get_list_find_meta_stat() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let settings = svc.settings();
    let stop = CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    scenario(&Api::new(&url, TOKEN), 100).await;
    stop.cancel();
}

pub fn workers_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("nlds-workers");
    assert!(
        bin.exists(),
        "{} not built: run the tests with --workspace",
        bin.display()
    );
    bin
}

/// Starts `nlds-workers <role>` with `config`, and the pause directory `pause` if given.
pub fn spawn_role(config: &std::path::Path, role: &str, pause: Option<&std::path::Path>) -> Child {
    let mut cmd = Command::new(workers_binary());
    cmd.args(["--config", &config.to_string_lossy(), role])
        .env("RUST_LOG", "warn");
    if let Some(dir) = pause {
        cmd.env(nlds_hooks::ENV, dir);
    }
    cmd.spawn().unwrap()
}

/// The unfinished multipart uploads of `bucket` (their keys).
pub async fn unfinished_uploads(client: &nlds_storage::s3::Client, bucket: &str) -> Vec<String> {
    let page = client
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    page.uploads()
        .iter()
        .filter_map(|u| u.key().map(str::to_owned))
        .collect()
}

/// transfer-put is killed (-9) while a multipart upload is provably in flight (paused after its
/// first part, the upload listed by the store), and started again: the put completes, every
/// file is catalogued once with one object and the bucket holds exactly the catalogued objects
/// (listed, not derived from deterministic keys), no multipart upload is left unfinished, and a
/// get restores every file byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_transfer_put_mid_upload_loses_duplicates_and_leaves_nothing() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let mut settings = svc.settings();
    settings.workers.index.batch_files = 50;
    settings.bus.prefetch = 2;
    settings.workers.transfer.multipart_threshold = 5 << 20;
    settings.workers.transfer.part_size = 5 << 20;
    // One transfer-put process at a time here: whatever is unfinished at its start is debris.
    settings.workers.transfer.stale_upload_secs = 0;
    let dir = temp();
    let config = dir.path().join("workers.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
    let pause = temp();

    let stop = CancellationToken::new();
    let others: Vec<_> = nlds_workers::run::all_roles()
        .into_iter()
        .filter(|r| *r != nlds_core::Role::TransferPut)
        .collect();
    start_roles(&settings, others, stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);
    let os = &settings.workers.object_store;
    let client = nlds_storage::s3::client(os).await.unwrap();

    let src = temp();
    // 400 small files and a 40 MiB one: eight parts of 5 MiB.
    let n = crate::helpers::make_tree(src.path(), 400, 40);
    nlds_hooks::control::arm(pause.path(), nlds_hooks::points::PUT_PART_UPLOADED).unwrap();
    let mut child = spawn_role(&config, "transfer-put", Some(pause.path()));
    let (s, r) = api
        .post(
            "/api/v2/put",
            &json!({"paths": [src.path()], "label": "crash"}),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    let tid = r["transaction_id"].as_str().unwrap().to_owned();

    let p = pause.path().to_owned();
    let key = tokio::task::spawn_blocking(move || {
        nlds_hooks::control::reached(
            &p,
            nlds_hooks::points::PUT_PART_UPLOADED,
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap()
    .expect("transfer-put never uploaded a part of big.bin");
    let key = key.to_string_lossy().into_owned();
    assert!(key.starts_with(&format!("tx/{tid}/")), "{key}");
    let in_flight = unfinished_uploads(&client, &os.bucket).await;
    assert!(
        in_flight.contains(&key),
        "the multipart upload of {key} is not in flight: {in_flight:?}"
    );
    child.kill().unwrap(); // SIGKILL, mid-upload
    child.wait().unwrap();
    let mut child = spawn_role(&config, "transfer-put", None);

    let t = api.wait(&tid, Duration::from_secs(600)).await;
    child.kill().ok();
    child.wait().ok();
    assert_eq!(t.state, State::Complete, "{t:#?}");

    // Every file catalogued exactly once, with one warm copy ...
    let (_, found) = api.get("/api/v2/files?label=crash&limit=10000").await;
    let files = found["files"].as_array().unwrap();
    let mut paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    let total = paths.len();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), total, "duplicate catalogue rows");
    let regular: Vec<&serde_json::Value> = files.iter().filter(|f| f["kind"] == "file").collect();
    assert_eq!(regular.len(), n, "every regular file catalogued");
    let mut catalogued = Vec::new();
    for f in &regular {
        let locations = f["locations"].as_array().unwrap();
        assert_eq!(
            locations.len(),
            1,
            "one copy of {}: {locations:?}",
            f["path"]
        );
        assert_eq!(locations[0]["bucket"], os.bucket.as_str());
        catalogued.push(locations[0]["key"].as_str().unwrap().to_owned());
    }
    catalogued.sort();
    // ... and the bucket holds exactly those objects: none twice, no orphan.
    assert_eq!(
        {
            let mut keys = bucket_keys(os, "").await;
            keys.sort();
            keys
        },
        catalogued,
        "the bucket's objects are not the catalogued ones"
    );
    assert_eq!(
        unfinished_uploads(&client, &os.bucket).await,
        Vec::<String>::new(),
        "unfinished multipart uploads left behind"
    );
    // The data reads back byte for byte.
    let target = temp();
    let got = api
        .get_and_wait(json!({"paths": [src.path()], "label": "crash", "target": target.path()}))
        .await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    assert_eq!(
        crate::helpers::shape(&crate::helpers::restored(target.path(), src.path())),
        crate::helpers::shape(src.path())
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_answer_504_when_the_catalogue_does_not() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let settings = svc.settings();
    let stop = CancellationToken::new();
    // No worker runs: nothing will answer the catalogue and monitor RPCs.
    let url = start_server_with(&settings, stop.clone(), 1).await;
    let api = Api::new(&url, TOKEN);
    for path in [
        "/api/v2/holdings",
        "/api/v2/files?label=x",
        "/api/v2/transactions",
    ] {
        let start = std::time::Instant::now();
        let (s, b) = api.get(path).await;
        assert_eq!(s, 504, "{path}: {b}");
        assert_eq!(b["error"]["code"], "timeout", "{b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("did not answer within 1s"),
            "{b}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{path} took {:?}",
            start.elapsed()
        );
    }
    let (s, b) = api.post("/api/v2/put", &json!({"paths": ["/tmp"]})).await;
    assert_eq!(s, 504, "{b}");
    // The broker is up but nothing answers for the database: the server is not ready, and says
    // which check failed.
    let (s, b) = api.get("/readyz").await;
    assert_eq!(s, 503, "{b}");
    assert!(b.to_string().contains("database"), "{b}");
    stop.cancel();
}

/// Waits (at most 2 minutes) until no object is left under `prefix`; fails naming the orphans.
pub async fn wait_removed(os: &nlds_workers::config::ObjectStoreConfig, prefix: &str) {
    let start = std::time::Instant::now();
    loop {
        let left = bucket_keys(os, prefix).await;
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} objects orphaned: {left:?}",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The keys of the objects under `prefix` in the test bucket.
pub async fn bucket_keys(
    os: &nlds_workers::config::ObjectStoreConfig,
    prefix: &str,
) -> Vec<String> {
    let client = nlds_storage::s3::client(os).await.unwrap();
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(&os.bucket)
            .prefix(prefix)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return keys;
        }
    }
}

/// The API server binary (`nlds-server serve`) as a child process on a free port (with the test
/// pause points of `pause`, if given).
pub fn spawn_server(
    dir: &std::path::Path,
    settings: &Settings,
    pause: Option<&std::path::Path>,
) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tokens = dir.join("tokens.toml");
    std::fs::write(
        &tokens,
        format!("[[token]]\ntoken = \"{TOKEN}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n"),
    )
    .unwrap();
    let s = nlds_server::ServerSettings {
        server: ServerConfig {
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            tokens_file: tokens,
            ..Default::default()
        },
        bus: settings.bus.clone(),
        workers: settings.workers.clone(),
        ..Default::default()
    };
    let config = dir.join("server.toml");
    std::fs::write(&config, toml::to_string(&s).unwrap()).unwrap();
    let bin = workers_binary().with_file_name("nlds-server");
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--config", &config.to_string_lossy()])
        .env("RUST_LOG", "warn");
    if let Some(dir) = pause {
        cmd.env(nlds_hooks::ENV, dir);
    }
    let child = cmd.spawn().unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

/// Waits (at most a minute) until the API at `url` answers `/healthz`.
pub async fn wait_healthy(url: &str) {
    let start = std::time::Instant::now();
    while reqwest::get(format!("{url}/healthz")).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the API at {url} never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The API dies (kill -9) right after it accepted a delete: the delete is on record and
/// complete, the files are gone from the catalogue, and the next purge sweep removes every
/// object (nothing is left for an API that is no longer there to send).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_api_after_a_delete_orphans_nothing() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let mut settings = svc.settings();
    // Deleted files are purged at the next archive round.
    settings.workers.delete.retention_secs = 0;
    let stop = CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let dir = temp();
    let (mut child, url) = spawn_server(dir.path(), &settings, None);
    let api = Api::new(&url, TOKEN);
    wait_healthy(&url).await;

    let src = temp();
    let n = crate::helpers::make_tree(src.path(), 30, 1);
    let (s, r) = api
        .post(
            "/api/v2/put",
            &json!({"paths": [src.path()], "label": "doomed"}),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    let put = r["transaction_id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.wait(&put, Duration::from_secs(300)).await.state,
        State::Complete
    );
    let os = &settings.workers.object_store;
    assert_eq!(bucket_keys(os, &format!("tx/{put}/")).await.len(), n);

    let (s, r) = api
        .post("/api/v2/delete", &json!({"label": "doomed"}))
        .await;
    assert_eq!(s, 202, "{r}");
    child.kill().unwrap(); // SIGKILL, right after the answer
    child.wait().unwrap();
    let del = r["transaction_id"].as_str().unwrap().to_owned();

    // Another API instance sees a consistent catalogue: the delete on record and complete,
    // the files gone.
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);
    let t = api.wait(&del, Duration::from_secs(60)).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let (_, found) = api.get("/api/v2/files?label=doomed&limit=10000").await;
    assert_eq!(found["files"].as_array().map_or(0, Vec::len), 0, "{found}");

    // The next round's purge sweep removes every object.
    let bus = nlds_workers::run::connect_bus(&settings.bus).await.unwrap();
    nlds_workers::archive_put::request_round(bus.as_ref())
        .await
        .unwrap();
    wait_removed(os, &format!("tx/{put}/")).await;
    stop.cancel();
}

/// The API dies the instant the catalogue answers: a delete is still on record and complete, and
/// a purge's objects are still removed, because the catalogue sent those messages with its
/// answer (the API is simulated by the bare RPCs it makes, and then does nothing more).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_that_dies_when_the_catalogue_answers_loses_no_record_and_orphans_nothing() {
    use nlds_core::api::ApiAction;
    use nlds_core::message::{HoldingFilter, RpcReply};
    use nlds_core::{AccessRole, Action, Envelope, Payload, RoutingKey, Worker};
    let Some(svc) = Services::new().await else {
        return;
    };
    let settings = svc.settings();
    let stop = CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);
    let src = temp();
    let n = crate::helpers::make_tree(src.path(), 20, 1);
    let (s, r) = api
        .post(
            "/api/v2/put",
            &json!({"paths": [src.path()], "label": "gone"}),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    let put = r["transaction_id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.wait(&put, Duration::from_secs(300)).await.state,
        State::Complete
    );
    let os = &settings.workers.object_store;
    assert_eq!(bucket_keys(os, &format!("tx/{put}/")).await.len(), n);

    let bus = nlds_workers::run::connect_bus(&settings.bus).await.unwrap();
    let rpc = |key: RoutingKey, env: Envelope| {
        let bus = bus.clone();
        async move {
            let reply = bus.rpc(key, &env, Duration::from_secs(30)).await.unwrap();
            let Payload::Reply(r) = reply.payload else {
                panic!("not a reply: {reply:?}")
            };
            r
        }
    };
    // catalog.del as the API sends it; the API dies before recording anything.
    let del = uuid::Uuid::new_v4();
    let env = Envelope::new(
        del,
        "alice",
        "climate",
        ApiAction::Del,
        "gone",
        Payload::Delete {
            filter: HoldingFilter {
                label: Some("gone".into()),
                descending: true,
                ..Default::default()
            },
            paths: vec![],
            regex: false,
            dry_run: false,
        },
    )
    .with_role(AccessRole::User);
    let RpcReply::Deleted(plan) = rpc(RoutingKey::new(Worker::Catalog, Action::Del), env).await
    else {
        panic!("catalog.del did not answer with a plan")
    };
    assert_eq!(plan.holdings.len(), 1, "{plan:?}");
    let t = api.wait(&del.to_string(), Duration::from_secs(60)).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    assert_eq!(t.label.as_deref(), Some("gone"), "{t:#?}");

    // catalog.purge as the API sends it; the API dies before doing anything with the answer.
    let env = Envelope::new(
        uuid::Uuid::new_v4(),
        "alice",
        "climate",
        ApiAction::Get,
        "rpc",
        Payload::Purge { holding_id: None },
    )
    .with_role(AccessRole::Admin);
    let RpcReply::Purged { summary, .. } =
        rpc(RoutingKey::new(Worker::Catalog, Action::Purge), env).await
    else {
        panic!("catalog.purge did not answer with a summary")
    };
    assert_eq!(summary.objects as usize, n, "{summary:?}");
    wait_removed(os, &format!("tx/{put}/")).await;
    stop.cancel();
}
