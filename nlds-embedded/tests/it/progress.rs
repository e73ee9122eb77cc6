//! What live status shows while it waits (issue 16): the bytes a transfer moved of a batch still
//! in flight (reported to the monitor, `monitor-put.progress`) are in `bytes_done` before the
//! batch completes, for a put and a get; and the counts users see are of files, not of the
//! directories a put also records.

use std::path::Path;
use std::time::Duration;

use nlds_core::State;
use nlds_hooks::{control, points};
use serde_json::{Value, json};

use crate::cli::Cli;
use crate::helpers::{ServerProcess, file_entries, temp};
use crate::live::{ALICE, Stream};

const REACH: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;

/// An embedded server whose uploads send one part at a time (so a held part holds the whole
/// upload), with pause points in `pause`.
async fn server(data: &Path, logs: &Path, pause: &Path) -> ServerProcess {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        data.join("tokens.toml"),
        format!("[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n"),
    )
    .unwrap();
    ServerProcess::start_with(
        data,
        logs,
        "warn",
        &[(nlds_hooks::ENV, pause.as_os_str())],
        &[
            "server.events_keepalive_secs=1",
            "workers.transfer.parts_in_flight=1",
        ],
    )
    .await
}

/// `size` bytes that do not compress to nothing.
fn content(size: u64) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + i / 4099) as u8).collect()
}

async fn post(url: &str, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(ALICE)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{path}");
    r.json().await.unwrap()
}

/// Waits until the transfer reaches `point` (armed before), returning the context it reached it
/// with.
async fn reached(pause: &Path, point: &'static str) -> std::path::PathBuf {
    let dir = pause.to_owned();
    tokio::task::spawn_blocking(move || control::reached(&dir, point, REACH))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the transfer never reached {point}"))
}

/// Reads `tid`'s event stream while its transfer is held at `point`: the first status with
/// `0 < bytes_done < bytes_total`, which must come before anything final. Then releases the
/// transfer and reads to the end: the final status.
async fn moving_then_final(
    url: &str,
    pause: &Path,
    point: &'static str,
    tid: &str,
) -> (Value, Value) {
    let (code, mut stream) = Stream::open(url, ALICE, tid, None).await;
    assert_eq!(code, 200);
    let moving = loop {
        let (_, s) = stream
            .next_event(REACH)
            .await
            .unwrap_or_else(|| panic!("the stream of {tid} ended while its transfer was held"));
        let state: State = serde_json::from_value(s["state"].clone()).unwrap();
        assert!(!state.is_final(), "final while the transfer is held: {s:#}");
        let (done, total) = (
            s["bytes_done"].as_u64().unwrap(),
            s["bytes_total"].as_u64().unwrap(),
        );
        if done > 0 {
            assert!(done < total, "all bytes done while one is held: {s:#}");
            break s;
        }
    };
    control::release(pause, point).unwrap();
    let mut last = moving.clone();
    while let Some((_, s)) = stream.next_event(REACH).await {
        last = s;
    }
    (moving, last)
}

/// The batch of a one-file transfer in `s`: not complete, with bytes moving.
fn assert_batch_in_flight(s: &Value) {
    let subs = s["sub_records"].as_array().unwrap();
    let in_flight: Vec<&Value> = subs
        .iter()
        .filter(|b| b["bytes_moving"].as_u64().unwrap_or(0) > 0)
        .collect();
    assert_eq!(in_flight.len(), 1, "{s:#}");
    assert_ne!(in_flight[0]["state"], "COMPLETE", "{s:#}");
    assert_eq!(s["files_done"], 0, "no file is done yet: {s:#}");
}

/// A put and a get of a 20 MiB file, each held mid-stream (the put after its first part is
/// stored, the get while its temporary file is being written): their event streams show bytes
/// done before the batch completes, then end with all of them done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_held_mid_stream_shows_its_bytes_moving_before_the_final_event() {
    let (data, logs, pause, src, tgt) = (temp(), temp(), temp(), temp(), temp());
    let server = server(data.path(), logs.path(), pause.path()).await;
    let big = src.path().join("big.dat");
    std::fs::write(&big, content(20 * MIB)).unwrap();

    // The put: held once its first part (8 MiB of 20) is stored.
    control::arm(pause.path(), points::PUT_PART_UPLOADED).unwrap();
    let tid = post(
        &server.url,
        "/api/v2/put",
        json!({"paths": [big], "label": "moving"}),
    )
    .await["transaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    reached(pause.path(), points::PUT_PART_UPLOADED).await;
    let (moving, last) =
        moving_then_final(&server.url, pause.path(), points::PUT_PART_UPLOADED, &tid).await;
    assert_eq!(moving["bytes_total"], 20 * MIB, "{moving:#}");
    assert_eq!(moving["files_total"], 1, "{moving:#}");
    assert_batch_in_flight(&moving);
    let percent = moving["percent"].as_u64().unwrap();
    assert!(
        percent > 0 && percent < 100,
        "bytes done of bytes: {moving:#}"
    );
    assert_eq!(last["state"], "COMPLETE", "{last:#}");
    assert_eq!(last["bytes_done"], 20 * MIB, "{last:#}");
    assert_eq!(last["bytes_total"], 20 * MIB, "{last:#}");
    assert_eq!(
        (&last["files_done"], &last["percent"]),
        (&json!(1), &json!(100))
    );
    assert!(
        last["sub_records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b.get("bytes_moving").is_none()),
        "final batches have nothing moving: {last:#}"
    );

    // The get: held while the file is being written (its download goes on into a bounded
    // buffer, then waits).
    control::arm(pause.path(), points::GET_TEMP_WRITING).unwrap();
    let gid = post(
        &server.url,
        "/api/v2/get",
        json!({"paths": [big], "label": "moving", "target": tgt.path()}),
    )
    .await["transaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    reached(pause.path(), points::GET_TEMP_WRITING).await;
    let (moving, last) =
        moving_then_final(&server.url, pause.path(), points::GET_TEMP_WRITING, &gid).await;
    assert_eq!(moving["bytes_total"], 20 * MIB, "{moving:#}");
    assert_batch_in_flight(&moving);
    assert_eq!(last["state"], "COMPLETE", "{last:#}");
    assert_eq!(
        (
            &last["bytes_done"],
            &last["bytes_total"],
            &last["files_done"]
        ),
        (&json!(20 * MIB), &json!(20 * MIB), &json!(1)),
        "{last:#}"
    );
    let restored = crate::helpers::restored(tgt.path(), &big);
    assert_eq!(std::fs::read(restored).unwrap(), content(20 * MIB));
}

/// A put of 6 files (one a symbolic link, one empty) in 4 directories (one empty) under its
/// root: `files_total` and `files_done` are 6 on the native API and in `nlds stat`; the legacy
/// API lists the 6 files it always listed (never the directories), as 1.0.x servers did.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_counts_files_not_directories() {
    let (data, logs, pause, src) = (temp(), temp(), temp(), temp());
    let server = server(data.path(), logs.path(), pause.path()).await;
    let root = src.path().join("tree");
    for d in ["a", "b/c", "empty"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("f0"), content(1000)).unwrap();
    std::fs::write(root.join("a/f1"), content(2000)).unwrap();
    std::fs::write(root.join("a/f2"), b"").unwrap();
    std::fs::write(root.join("b/f3"), content(3000)).unwrap();
    std::fs::write(root.join("b/c/f4"), content(4000)).unwrap();
    std::os::unix::fs::symlink("f0", root.join("link")).unwrap();
    const FILES: u64 = 6;
    // And 4 directories: a, b, b/c, empty (and the root).
    assert_eq!(file_entries(&root), FILES);
    assert_eq!(crate::helpers::shape(&root).len(), 6 + 4);

    let tid = post(
        &server.url,
        "/api/v2/put",
        json!({"paths": [root], "label": "counts"}),
    )
    .await["transaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, mut stream) = Stream::open(&server.url, ALICE, &tid, None).await;
    assert_eq!(code, 200);
    let mut last = Value::Null;
    while let Some((_, s)) = stream.next_event(REACH).await {
        // Never more files than there are, at any point.
        assert!(s["files_total"].as_u64().unwrap() <= FILES, "{s:#}");
        last = s;
    }
    assert_eq!(last["state"], "COMPLETE", "{last:#}");
    assert_eq!(
        (&last["files_total"], &last["files_done"]),
        (&json!(FILES), &json!(FILES)),
        "{last:#}"
    );
    assert_eq!(last["percent"], 100);

    // The CLI says the same.
    let cli = Cli {
        url: server.url.clone(),
        token: ALICE.to_owned(),
        cwd: src.path().to_owned(),
    };
    let stat = cli.json(&["stat", "--transaction-id", &tid]);
    let t = &stat["transactions"][0];
    assert_eq!(
        (&t["files_total"], &t["files_done"]),
        (&json!(FILES), &json!(FILES)),
        "{stat:#}"
    );
    let text = cli.ok(&["stat", "--transaction-id", &tid]);
    assert!(text.contains("6 of 6 done, 0 failed"), "{text}");

    // The legacy API lists what it always did: the files, not the directories.
    let r = reqwest::Client::new()
        .get(format!("{}/api/1.0.0/catalog/find/", server.url))
        .bearer_auth(ALICE)
        .query(&[("user", "alice"), ("group", "climate"), ("label", "counts")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    // Upstream's JSON: a string holding the document.
    let v: Value = r.json().await.unwrap();
    let v: Value = serde_json::from_str(v.as_str().unwrap_or_else(|| panic!("{v:#}"))).unwrap();
    let listed = v["data"]["holdings"]["counts"]["transactions"][&tid]["filelist"]
        .as_array()
        .unwrap_or_else(|| panic!("{v:#}"))
        .len() as u64;
    assert_eq!(listed, FILES, "{v:#}");
}
