//! Rolling restarts (issue 17, item 6): the distributed deployment, one process per role and the
//! API server over RabbitMQ, PostgreSQL and S3, has every process stopped with SIGTERM one after
//! another, as Kubernetes does in a rolling update, and started again, during a put of 2,000
//! files and then during the get of them. Each process must exit with 0 within its shutdown
//! deadline (`[bus] shutdown_grace_secs` plus `SHUTDOWN_MARGIN_SECS`), and both transactions
//! must complete with every file stored exactly once (catalogue rows and bucket objects counted:
//! no duplicate, no orphan, no unfinished multipart upload) and restored byte for byte.

use std::time::{Duration, Instant};

use nlds_core::{Role, State};
use serde_json::{Value, json};

use crate::chaos::fleet::Fleet;
use crate::chaos::services::free_port;
use crate::distributed::{Services, TOKEN, bucket_keys, unfinished_uploads};
use crate::helpers::{Api, make_tree, restored, shape, temp};

/// `[bus] shutdown_grace_secs` of every process here.
const GRACE_SECS: u64 = 5;

/// An API call that tolerates the API server being restarted: `None` while it does not answer.
async fn call(api: &Api, req: reqwest::RequestBuilder) -> Option<(u16, Value)> {
    let r = req.bearer_auth(&api.token).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// Submits a put or get (again while the API server restarts); returns its transaction id.
async fn submit(api: &Api, path: &str, body: &Value) -> String {
    let start = Instant::now();
    loop {
        match call(api, api.http.post(format!("{}{path}", api.url)).json(body)).await {
            Some((202, r)) => return r["transaction_id"].as_str().unwrap().to_owned(),
            Some((s, r)) => assert!(s >= 500, "{path} refused: {s} {r}"),
            None => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{path} never accepted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The transaction's status once it has ended.
async fn wait_final(api: &Api, tid: &str, limit: Duration) -> Value {
    let start = Instant::now();
    let url = format!("{}/api/v2/transactions/{tid}", api.url);
    loop {
        if let Some((200, t)) = call(api, api.http.get(&url)).await {
            let state: State = serde_json::from_value(t["state"].clone()).unwrap();
            if state.is_final() || state.is_failed() {
                return t;
            }
        }
        assert!(
            start.elapsed() < limit,
            "{tid} did not end within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Stops (SIGTERM) and starts again every role's process and the API server, one after another,
/// each new process consuming (or answering) before the next is stopped. Returns how many were
/// restarted while `tid` had not ended yet.
async fn roll(fleet: &mut Fleet, api: &Api, bus: &dyn nlds_bus::Bus, tid: &str) -> usize {
    let limit = Duration::from_secs(GRACE_SECS + nlds_settings::bus::SHUTDOWN_MARGIN_SECS);
    let mut during = 0;
    let processes = Role::ALL.iter().map(|r| Some(*r)).chain([None]);
    for role in processes {
        let url = format!("{}/api/v2/transactions/{tid}", api.url);
        if let Some((200, t)) = call(api, api.http.get(&url)).await {
            let state: State = serde_json::from_value(t["state"].clone()).unwrap();
            during += usize::from(!state.is_final() && !state.is_failed());
        }
        let name = role.map_or("server", |r| r.as_str());
        let status = fleet.stop_and_restart(role, limit);
        assert!(
            status.success(),
            "{name} exited with {status} on SIGTERM:\n{}",
            fleet.log(name)
        );
        let start = Instant::now();
        loop {
            let up = match role {
                Some(r) => bus.consumers(r).await.is_ok_and(|n| n > 0),
                None => reqwest::get(format!("{}/healthz", api.url)).await.is_ok(),
            };
            if up {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{name} did not come back:\n{}",
                fleet.log(name)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    during
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restarts_of_every_process_lose_and_duplicate_nothing() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let dir = temp();
    let port = free_port();
    let mut s = svc.settings();
    s.bus.shutdown_grace_secs = GRACE_SECS;
    s.bus.prefetch = 4;
    s.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    s.server.tokens_file = dir.path().join("tokens.toml");
    std::fs::write(
        &s.server.tokens_file,
        format!("[[token]]\ntoken = \"{TOKEN}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n"),
    )
    .unwrap();
    s.workers.index.batch_files = 100;
    // One file in parts, so a transfer-put stopped mid-file has an upload to abort.
    s.workers.transfer.multipart_threshold = 5 << 20;
    s.workers.transfer.part_size = 5 << 20;
    s.workers.archive.interval_secs = 0;
    let config = dir.path().join("nlds.toml");
    std::fs::write(&config, toml::to_string(&s).unwrap()).unwrap();
    let logs = dir.path().join("logs");
    let mut fleet = Fleet::start(&config, &logs, port).await;
    let api = Api::new(&fleet.url, TOKEN);
    let bus = nlds_workers::run::connect_bus(&s.bus).await.unwrap();
    let os = &s.workers.object_store;

    let src = temp();
    let n = make_tree(src.path(), 2000, 12);
    let put = submit(
        &api,
        "/api/v2/put",
        &json!({"paths": [src.path()], "label": "rolling"}),
    )
    .await;
    let during_put = roll(&mut fleet, &api, bus.as_ref(), &put).await;
    let t = wait_final(&api, &put, Duration::from_secs(300)).await;
    assert_eq!(t["state"], "COMPLETE", "{t:#}");
    println!("put: {during_put} of 14 processes restarted while it ran");

    // Every file catalogued exactly once, with one warm copy ...
    let (status, found) = api.get("/api/v2/files?label=rolling&limit=10000").await;
    assert_eq!(status, 200, "{found}");
    let files = found["files"].as_array().unwrap();
    let mut paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    let total = paths.len();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), total, "duplicate catalogue rows");
    let regular: Vec<&Value> = files.iter().filter(|f| f["kind"] == "file").collect();
    assert_eq!(regular.len(), n, "every regular file catalogued");
    let mut catalogued: Vec<String> = regular
        .iter()
        .map(|f| {
            let locations = f["locations"].as_array().unwrap();
            assert_eq!(
                locations.len(),
                1,
                "one copy of {}: {locations:?}",
                f["path"]
            );
            locations[0]["key"].as_str().unwrap().to_owned()
        })
        .collect();
    catalogued.sort();
    // ... and the bucket holds exactly those objects, none unfinished.
    let mut keys = bucket_keys(os, "").await;
    keys.sort();
    assert_eq!(
        keys, catalogued,
        "the bucket's objects are not the catalogued ones"
    );
    let client = nlds_storage::s3::client(os).await.unwrap();
    assert_eq!(
        unfinished_uploads(&client, &os.bucket).await,
        Vec::<String>::new(),
        "unfinished multipart uploads left behind"
    );

    let target = temp();
    let get = submit(
        &api,
        "/api/v2/get",
        &json!({"paths": [src.path()], "label": "rolling", "target": target.path()}),
    )
    .await;
    let during_get = roll(&mut fleet, &api, bus.as_ref(), &get).await;
    let t = wait_final(&api, &get, Duration::from_secs(300)).await;
    assert_eq!(t["state"], "COMPLETE", "{t:#}");
    println!("get: {during_get} of 14 processes restarted while it ran");
    // Byte for byte, and nothing else in the target (no temporary file left).
    assert_eq!(
        shape(&restored(target.path(), src.path())),
        shape(src.path())
    );
    let mut after = bucket_keys(os, "").await;
    after.sort();
    assert_eq!(after, catalogued, "the get changed the bucket");
    fleet.assert_all_running();
}
