//! Resource limits of the embedded server (`nlds-server embedded` as a child process, so what
//! is measured is the server alone): its peak resident memory over a put and a get of a few
//! thousand small files and a large one, and no database lock contention or transient-fault
//! redelivery on the way. Limits, not timings (speed is measured by `bench/run.sh`).

use nlds_core::State;
use serde_json::json;

use crate::helpers::{Api, ServerProcess, make_tree, peak_rss_kib, restored, shape, temp};

/// A regression guard, not yet issue 14's target: the issue asks for at most 150 MiB resident
/// during the benchmarks, and this workload peaked at 270 MiB (debug build) when the guard was
/// set (BENCHMARKS.md, "Memory"). Lower it as the peak comes down; never raise it.
const EMBEDDED_LIMIT_KIB: u64 = 320 * 1024;

#[tokio::test]
async fn embedded_server_stays_within_its_memory_limit_and_meets_no_lock() {
    let data = temp();
    let logs = temp();
    let src = temp();
    let tgt = temp();
    // 4,000 small files in one put (several batches, so the catalogue, the monitor and the
    // logger write the database at once) and a 96 MiB file (a multipart upload).
    let n = make_tree(src.path(), 4000, 96);
    let server = ServerProcess::start(data.path(), logs.path(), None, "info").await;
    let client = std::fs::read_to_string(data.path().join("client.toml")).unwrap();
    let token = client
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .and_then(|t| t.strip_suffix('"'))
        .unwrap()
        .to_owned();
    let api = Api::new(&server.url, &token);
    let root = src.path().to_string_lossy().into_owned();

    let put = api
        .put_and_wait(json!({"paths": [root], "label": "rss"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    assert_eq!(put.files_failed, 0, "{put:#?}");
    let got = api
        .get_and_wait(json!({"paths": [root], "label": "rss", "target": tgt.path()}))
        .await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    assert_eq!(
        shape(&restored(tgt.path(), src.path())),
        shape(src.path()),
        "restored tree differs"
    );
    assert!(n > 4000);

    let peak = peak_rss_kib(server.pid());
    assert!(
        peak <= EMBEDDED_LIMIT_KIB,
        "nlds-server embedded peaked at {} MiB resident, above the limit of {} MiB",
        peak / 1024,
        EMBEDDED_LIMIT_KIB / 1024
    );
    let stderr = server.stderr.clone();
    server.stop();
    // The counters it logs when it stops: no operation met a database lock, no delivery was
    // redelivered after a transient fault.
    let out = std::fs::read_to_string(stderr).unwrap();
    let stopped = out
        .lines()
        .find(|l| l.contains("database_contention="))
        .unwrap_or_else(|| panic!("no counters logged at stop:\n{out}"));
    assert!(stopped.contains("database_contention=0"), "{stopped}");
    assert!(stopped.contains("bus_retries=0"), "{stopped}");
}
