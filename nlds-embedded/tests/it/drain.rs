//! Draining a role for maintenance (`nlds admin drain ROLE`, `resume ROLE`, `drains`): its
//! consumers stop taking work (the broker counts none), a put waits queued for it and says why,
//! the drain outlasts a restart of the process, and resuming lets the put complete. Against the
//! embedded process through the real `nlds` CLI, and in distributed mode (RabbitMQ, PostgreSQL,
//! S3) with the role's process restarted while drained.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nlds_bus::Bus;
use nlds_core::{Role, State};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, serve_api, start_roles};
use crate::helpers::{Api, ServerProcess, make_tree, temp};

/// Heartbeats (and so the processes' second look at the drains) every second here.
const SETS: &[&str] = &["workers.heartbeat_secs=1"];

fn nlds_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("nlds")
}

/// Runs the `nlds` CLI against `url` with `token`.
fn nlds(url: &str, token: &str, cwd: &Path, args: &[&str]) -> Output {
    Command::new(nlds_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("NLDS_CONFIG")
        .env_remove("NLDS_GROUP")
        .env("NLDS_URL", url)
        .env("NLDS_TOKEN", token)
        .env("HOME", cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Waits until `f` holds (a deadline, not a timing claim).
async fn until<F: AsyncFnMut() -> bool>(what: &str, limit: Duration, mut f: F) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The operators' view of a role on `/api/v2/status`.
async fn role_status(api: &Api, role: Role) -> Value {
    let (code, st) = api.get("/api/v2/status").await;
    assert_eq!(code, 200, "{st}");
    st["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == role.as_str())
        .cloned()
        .unwrap()
}

/// The one sub-record of `tid` and the transaction's state.
async fn waiting_of(api: &Api, tid: &str) -> (State, Value) {
    let (code, t) = api.get(&format!("/api/v2/transactions/{tid}")).await;
    assert_eq!(code, 200, "{t}");
    let state: State = serde_json::from_value(t["state"].clone()).unwrap();
    let waiting = t["sub_records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| !s["waiting"].is_null())
        .map(|s| s["waiting"].clone())
        .unwrap_or(Value::Null);
    (state, waiting)
}

/// A put submitted while transfer-put is drained: waits queued for it, saying it is drained.
async fn assert_waits_drained(api: &Api, tid: &str) {
    let mut last = Value::Null;
    until(
        "the put waits for the drained transfer-put",
        Duration::from_secs(60),
        async || {
            let (state, waiting) = waiting_of(api, tid).await;
            assert!(
                !state.is_final(),
                "{tid} ended {state} while transfer-put was drained"
            );
            last = waiting.clone();
            waiting["reason"] == "queued"
                && waiting["step"] == "transfer-put"
                && waiting["drained"]["reason"] == "disk swap"
        },
    )
    .await;
    assert_eq!(last["drained"]["by"], "root", "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_role_takes_no_work_across_a_restart_until_it_is_resumed() {
    let dir = temp();
    let (data, logs) = (dir.path().join("data"), dir.path().join("logs"));
    let tokens = format!(
        "[[token]]\ntoken = \"{ROOT}\"\nuser = \"root\"\ngroups = [\"ops\"]\nadmin = true\n\
         [[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n"
    );
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("tokens.toml"), tokens).unwrap();
    let mut server = ServerProcess::start_with_sets(&data, &logs, "info", SETS).await;
    let root = Api::new(&server.url, ROOT);
    let alice = Api::new(&server.url, ALICE);

    // Refusals: a user is not an operator; unknown and undrainable roles are named.
    let (code, r) = alice.post("/api/v2/admin/drains/indexer", &json!({})).await;
    assert_eq!(code, 403, "{r}");
    let (code, r) = root.post("/api/v2/admin/drains/transfer", &json!({})).await;
    assert_eq!(code, 400, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("transfer-put"),
        "{r}"
    );
    let (code, r) = root
        .post("/api/v2/admin/drains/monitor-rpc", &json!({}))
        .await;
    assert_eq!(code, 400, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be drained"),
        "{r}"
    );
    let cli = nlds(
        &server.url,
        ROOT,
        dir.path(),
        &["admin", "drain", "transfer"],
    );
    assert_eq!(cli.status.code(), Some(2), "{}", text(&cli));

    // Drain transfer-put through the CLI.
    let cli = nlds(
        &server.url,
        ROOT,
        dir.path(),
        &["admin", "drain", "transfer-put", "--reason", "disk swap"],
    );
    assert!(cli.status.success(), "{}", text(&cli));
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(out.contains("transfer-put drained"), "{out}");
    assert!(out.contains("by root: disk swap"), "{out}");
    until(
        "transfer-put stops consuming",
        Duration::from_secs(30),
        async || {
            let r = role_status(&root, Role::TransferPut).await;
            r["consumers"] == 0 && r["drained"] == true
        },
    )
    .await;
    assert_eq!(role_status(&root, Role::TransferGet).await["consumers"], 1);

    // A put waits queued for the drained role, and says so.
    let src = dir.path().join("src");
    make_tree(&src, 5, 0);
    let (code, r) = alice
        .post("/api/v2/put", &json!({"paths": [src], "label": "drained"}))
        .await;
    assert_eq!(code, 202, "{r}");
    let tid = r["transaction_id"].as_str().unwrap().to_owned();
    assert_waits_drained(&alice, &tid).await;
    let stat = nlds(&server.url, ALICE, dir.path(), &["stat", "-n", &tid, "-S"]);
    let out = String::from_utf8_lossy(&stat.stdout);
    assert!(
        out.contains("transfer-put is drained for maintenance"),
        "{}",
        text(&stat)
    );

    // The drain outlasts a restart: the restarted process asks before it consumes.
    let listen = server.url.trim_start_matches("http://").to_owned();
    assert!(server.terminate(Duration::from_secs(60)).success());
    let server = ServerProcess::start_at(&listen, &data, &logs, "info", &[], SETS).await;
    let cli = nlds(
        &server.url,
        ROOT,
        dir.path(),
        &["admin", "drains", "--json"],
    );
    assert!(cli.status.success(), "{}", text(&cli));
    let listed: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(listed["drained"][0]["role"], "transfer-put", "{listed}");
    until(
        "the restarted process reports transfer-put drained",
        Duration::from_secs(30),
        async || role_status(&root, Role::TransferPut).await["drained"] == true,
    )
    .await;
    assert_eq!(role_status(&root, Role::TransferPut).await["consumers"], 0);
    assert_waits_drained(&alice, &tid).await;

    // Resumed: the put completes.
    let cli = nlds(
        &server.url,
        ROOT,
        dir.path(),
        &["admin", "resume", "transfer-put"],
    );
    assert!(cli.status.success(), "{}", text(&cli));
    assert!(String::from_utf8_lossy(&cli.stdout).contains("no role is drained"));
    let done = alice.wait(&tid, Duration::from_secs(60)).await;
    assert_eq!(done.state, State::Complete, "{done:?}");
    assert_eq!(done.files_failed, 0, "{done:?}");
    // The status page's figures are cached for a moment, and a heartbeat says what it holds.
    until(
        "transfer-put consumes and is no longer drained",
        Duration::from_secs(30),
        async || {
            let r = role_status(&root, Role::TransferPut).await;
            r["consumers"] == 1 && r["drained"] == false
        },
    )
    .await;
    server.stop();
}

/// Distributed: transfer-put runs in a process of its own (here: its own set of consumers on
/// RabbitMQ, stopped and started like one); draining it leaves its queue with no consumer while
/// the other roles work, a restarted transfer-put asks before it consumes, and resuming it lets
/// the waiting put complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distributed_a_drained_role_waits_in_its_queue_until_resumed() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let mut settings = svc.settings();
    settings.workers.heartbeat_secs = 1;
    let stop = CancellationToken::new();
    let others: Vec<Role> = Role::ALL
        .iter()
        .copied()
        .filter(|r| *r != Role::TransferPut)
        .collect();
    start_roles(&settings, others, stop.clone());
    let transfer = stop.child_token();
    start_roles(&settings, vec![Role::TransferPut], transfer.clone());
    let tokens = format!(
        "[[token]]\ntoken = \"{ROOT}\"\nuser = \"root\"\ngroups = [\"ops\"]\nadmin = true\n\
         [[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n"
    );
    let url = serve_api(&settings, &tokens, 30, stop.clone()).await;
    let (root, alice) = (Api::new(&url, ROOT), Api::new(&url, ALICE));
    let bus: Arc<dyn Bus> = nlds_workers::run::connect_bus(&settings.bus).await.unwrap();
    let consumers = async || bus.consumers(Role::TransferPut).await.unwrap();
    until(
        "transfer-put consumes",
        Duration::from_secs(30),
        async || consumers().await > 0,
    )
    .await;

    let (code, r) = root
        .post(
            "/api/v2/admin/drains/transfer-put",
            &json!({"reason": "disk swap"}),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    until(
        "the broker counts no transfer-put consumer",
        Duration::from_secs(30),
        async || consumers().await == 0,
    )
    .await;

    let dir = temp();
    let src = dir.path().join("src");
    make_tree(&src, 4, 0);
    let (code, r) = alice.post("/api/v2/put", &json!({"paths": [src]})).await;
    assert_eq!(code, 202, "{r}");
    let tid = r["transaction_id"].as_str().unwrap().to_owned();
    assert_waits_drained(&alice, &tid).await;

    // transfer-put's process stops and starts again while drained: it takes nothing.
    transfer.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let transfer = stop.child_token();
    start_roles(&settings, vec![Role::TransferPut], transfer.clone());
    // It asked the monitor (an answer within FIRST_ASK_LIMIT) and stays off the queue.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(consumers().await, 0, "a restarted drained role consumed");
    assert_waits_drained(&alice, &tid).await;

    let resumed = root
        .http
        .delete(format!("{url}/api/v2/admin/drains/transfer-put"))
        .bearer_auth(ROOT)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let r: Value = resumed.json().await.unwrap();
    assert_eq!(r["drained"], json!([]), "{r}");
    let done = alice.wait(&tid, Duration::from_secs(60)).await;
    assert_eq!(done.state, State::Complete, "{done:?}");
    assert_eq!(done.files_failed, 0, "{done:?}");
    assert!(consumers().await > 0);
    stop.cancel();
}

const ROOT: &str = "drain-test-root-token-0123456789";
const ALICE: &str = "drain-test-alice-token-012345678";
