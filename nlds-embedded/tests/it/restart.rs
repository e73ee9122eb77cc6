//! The embedded server (`nlds-server embedded`, a child process) killed with SIGKILL in the middle
//! of a put, and started again on the same data directory: its in-process bus kept its queues in
//! `nlds.db`, so the put resumes where it stopped and completes; nothing is failed, catalogued
//! twice or left in the bucket unreferenced. And the same server stopped with SIGTERM while a
//! handler is held past the shutdown grace: it exits 0 within its deadline, and the delivery it
//! abandoned is handled when it starts again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use nlds_core::State;
use nlds_hooks::{control, points};
use serde_json::json;

use crate::helpers::{Api, ServerProcess, make_tree, restored, shape, stored_objects, temp};

/// How long the server may take to reach the pause point.
const REACH: Duration = Duration::from_secs(120);

fn token(data: &Path) -> String {
    let client = std::fs::read_to_string(data.join("client.toml")).unwrap();
    client
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .and_then(|t| t.strip_suffix('"'))
        .unwrap()
        .to_owned()
}

/// The embedded server on `data` with `config`, and a put of `root` labelled `label` held at
/// catalog-put (a batch uploaded, not catalogued): the server, its API and the put's id.
async fn held_put(
    data: &Path,
    logs: &Path,
    pause: &Path,
    config: &Path,
    root: &Path,
    label: &str,
) -> (ServerProcess, Api, String) {
    control::arm(pause, points::CATALOG_BEFORE_PUT).unwrap();
    let server = ServerProcess::start_with_env(
        data,
        &logs.join("first"),
        Some(config),
        "info",
        &[(nlds_hooks::ENV, pause.as_os_str())],
    )
    .await;
    let api = Api::new(&server.url, &token(data));
    let (s, r) = api
        .post("/api/v2/put", &json!({"paths": [root], "label": label}))
        .await;
    assert_eq!(s, 202, "{r}");
    let tid = r["transaction_id"].as_str().unwrap().to_owned();
    let held = tokio::task::spawn_blocking({
        let dir = pause.to_owned();
        move || control::reached(&dir, points::CATALOG_BEFORE_PUT, REACH)
    })
    .await
    .unwrap();
    assert_eq!(
        held.as_deref(),
        Some(Path::new(&tid)),
        "the server never held a batch of the put between upload and catalogue"
    );
    (server, api, tid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_embedded_server_killed_mid_put_resumes_the_put_when_it_starts_again() {
    let (data, logs, pause, src, tgt) = (temp(), temp(), temp(), temp(), temp());
    let root = src.path().join("crash tree");
    std::fs::create_dir(&root).unwrap();
    make_tree(&root, 300, 0);
    // Batches of 40 files: some are catalogued before the kill, some are held or not done yet.
    let config = data.path().join("nlds.toml");
    std::fs::write(&config, "[workers.index]\nbatch_files = 40\n").unwrap();
    // A batch is uploaded and held before the catalogue records it: the put is in flight.
    let (server, api, tid) = held_put(
        data.path(),
        logs.path(),
        pause.path(),
        &config,
        &root,
        "crash",
    )
    .await;
    let (_, t) = api.get(&format!("/api/v2/transactions/{tid}")).await;
    let state: State = serde_json::from_value(t["state"].clone()).unwrap();
    assert!(!state.is_final() && !state.is_failed(), "{t}");
    server.crash(); // SIGKILL: no shutdown, nothing flushed or acknowledged

    // Started again on the same data directory, without pause points.
    let server = ServerProcess::start(
        data.path(),
        &logs.path().join("second"),
        Some(config.as_path()),
        "info",
    )
    .await;
    let api = Api::new(&server.url, &api.token);
    let put = api.wait(&tid, Duration::from_secs(300)).await;
    assert_eq!(
        put.state,
        State::Complete,
        "resumed, not interrupted: {put:#?}"
    );
    assert_eq!(put.files_failed, 0, "{put:#?}");
    assert_eq!(put.failed_files().count(), 0, "{put:#?}");
    let entries = shape(&root).len() + 1; // and the root directory itself
    let files = crate::helpers::file_entries(&root); // directories are not counted
    assert_eq!(put.files_done, files, "{put:#?}");
    assert!(
        server
            .output()
            .contains("redelivering the messages the last run left unfinished"),
        "the second run resumed nothing from the bus's store:\n{}",
        server.output()
    );

    // Every entry catalogued once, at version 1, each file's object in the bucket; and nothing
    // in the bucket the catalogue does not reference.
    let (s, files) = api.get("/api/v2/files?label=crash&limit=10000").await;
    assert_eq!(s, 200, "{files}");
    let files = files["files"].as_array().unwrap();
    let mut catalogued: BTreeMap<String, u64> = BTreeMap::new();
    let mut referenced = BTreeSet::new();
    for f in files {
        *catalogued
            .entry(f["path"].as_str().unwrap().to_owned())
            .or_default() += 1;
        assert_eq!(f["version"], 1, "{f}");
        // (An archive round may have copied it to the cold tier too: not an object of the bucket.)
        for l in f["locations"].as_array().into_iter().flatten() {
            if l["tier"] != "warm" {
                continue;
            }
            assert_eq!(l["bucket"], "nlds", "{f}");
            referenced.insert(l["key"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(catalogued.len(), entries, "{catalogued:?}");
    let twice: Vec<_> = catalogued.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "catalogued more than once: {twice:?}");
    assert_eq!(
        stored_objects(data.path()),
        referenced,
        "the bucket holds exactly the objects the catalogue references"
    );

    // A get restores the tree byte for byte: paths, sizes, modes, content, the link.
    let got = api
        .get_and_wait(json!({"paths": [root], "label": "crash", "target": tgt.path()}))
        .await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    assert_eq!(
        shape(&restored(tgt.path(), &root)),
        shape(&root),
        "restored tree differs"
    );

    // Running the put again fails nothing and stores nothing twice: every file is unchanged.
    let again = api
        .put_and_wait(json!({"paths": [root], "label": "crash"}))
        .await;
    assert_eq!(again.state, State::Complete, "{again:#?}");
    assert_eq!(again.failed_files().count(), 0, "{again:#?}");
    assert_eq!(again.files_new_versions, 0, "{again:#?}");
    assert!(again.files_skipped > 0, "{again:#?}");
    assert_eq!(
        stored_objects(data.path()),
        referenced,
        "the second put stored no object"
    );
    server.stop();
}

/// SIGTERM while the catalogue holds a put's batch (paused past `[bus] shutdown_grace_secs`):
/// the embedded process abandons that delivery (it stays stored, unacknowledged), exits 0 within
/// the grace plus its margin, and started again completes the put with every entry catalogued
/// once and the bucket holding exactly the catalogued objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_embedded_server_stopped_mid_put_exits_0_and_resumes_what_it_abandoned() {
    let (data, logs, pause, src) = (temp(), temp(), temp(), temp());
    let root = src.path().join("stopped tree");
    std::fs::create_dir(&root).unwrap();
    make_tree(&root, 200, 0);
    let grace = 2;
    let config = data.path().join("nlds.toml");
    std::fs::write(
        &config,
        format!("[bus]\nshutdown_grace_secs = {grace}\n[workers.index]\nbatch_files = 40\n"),
    )
    .unwrap();
    let (mut server, api, tid) = held_put(
        data.path(),
        logs.path(),
        pause.path(),
        &config,
        &root,
        "stopped",
    )
    .await;

    // The held batch never finishes: the process must give it up, not wait for it.
    let limit = Duration::from_secs(grace + nlds_settings::bus::SHUTDOWN_MARGIN_SECS);
    let status = server.terminate(limit);
    assert!(status.success(), "exit {status}:\n{}", server.output());
    assert!(
        server
            .output()
            .contains("deliveries still in hand after the grace are abandoned"),
        "nothing was abandoned:\n{}",
        server.output()
    );

    let server = ServerProcess::start(
        data.path(),
        &logs.path().join("second"),
        Some(config.as_path()),
        "info",
    )
    .await;
    let api = Api::new(&server.url, &api.token);
    let put = api.wait(&tid, Duration::from_secs(300)).await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    assert_eq!(put.files_failed, 0, "{put:#?}");
    let entries = shape(&root).len() + 1;
    let files = crate::helpers::file_entries(&root);
    assert_eq!(put.files_done, files, "{put:#?}");
    let (s, files) = api.get("/api/v2/files?label=stopped&limit=10000").await;
    assert_eq!(s, 200, "{files}");
    let mut catalogued: BTreeMap<String, u64> = BTreeMap::new();
    let mut referenced = BTreeSet::new();
    for f in files["files"].as_array().unwrap() {
        *catalogued
            .entry(f["path"].as_str().unwrap().to_owned())
            .or_default() += 1;
        for l in f["locations"].as_array().into_iter().flatten() {
            if l["tier"] == "warm" {
                referenced.insert(l["key"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(catalogued.len(), entries, "{catalogued:?}");
    assert!(catalogued.values().all(|n| *n == 1), "{catalogued:?}");
    assert_eq!(stored_objects(data.path()), referenced);
    server.stop();
}
