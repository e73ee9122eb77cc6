//! Resource limits of the embedded server (`nlds-server embedded` as a child process, so what
//! is measured is the server alone): its peak resident memory over a put and a get of a few
//! thousand small files and a large one, and no database lock contention or transient-fault
//! redelivery on the way. Limits, not timings (speed is measured by `bench/run.sh`).

use nlds_core::State;
use serde_json::json;

use crate::helpers::{Api, ServerProcess, make_tree, peak_rss_kib, restored, shape, temp};

/// Issue 14's limit for the embedded process is 150 MiB resident. These tests run the debug
/// build, whose executable alone keeps about 30 MiB more resident than the release build's
/// (`RssFile` 63-70 MiB against 33-36 MiB, measured on the same workloads): a debug factor of 1.2.
/// The limit asserted is 150 MiB x 1.2; this workload peaked at 150 MiB (debug) when it was set,
/// 270 MiB before the changes of BENCHMARKS.md, "Where the memory went". Never raise it.
const EMBEDDED_LIMIT_KIB: u64 = 150 * 12 / 10 * 1024;

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

    // It runs with [memory]'s defaults: started again with glibc's allocator tuned (two heaps, a
    // fixed mmap threshold), and no transparent huge pages.
    let pid = server.pid();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        environ
            .split(|b| *b == 0)
            // glibc splits the variable at each ':' in place once it has read it.
            .any(|v| v.starts_with(b"GLIBC_TUNABLES=glibc.malloc.arena_max=2")),
        "nlds-server runs without the GLIBC_TUNABLES of [memory]'s defaults"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let thp = status.lines().find(|l| l.starts_with("THP_enabled:"));
    assert_eq!(
        thp.map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["THP_enabled:", "0"]),
        "transparent huge pages are not off"
    );

    let peak = peak_rss_kib(pid);
    eprintln!("peak RSS of nlds-server embedded: {} MiB", peak / 1024);
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
