//! A recall from tape through XRootD (scripts/xrootd.sh's HSM-like front end): the holding is
//! archived, each aggregate is evicted from the XRootD disk cache (so it exists only on "tape",
//! `xrdfs stat` says Offline) and the warm copies are evicted; a get then has to stage the
//! aggregates back from tape, and restores the tree byte-identical.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use nlds_core::State;
use nlds_core::api::Tier;
use nlds_embedded::{Embedded, EmbeddedOptions};
use nlds_server::ServerSettings;
use serde_json::json;

use crate::archive::wait_archived;
use crate::helpers::{Api, restored, service, shape, temp};

/// `xrdfs HOST ARGS...`; fails the test naming the command when it fails.
fn xrdfs(host: &str, args: &[&str]) -> String {
    let out = Command::new("xrdfs")
        .arg(host)
        .args(args)
        .output()
        .expect("xrdfs runs (scripts/xrootd.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "xrdfs {host} {args:?}: {text}");
    text
}

/// Whether `xrdfs stat` flags `path` offline (on tape only).
fn offline(host: &str, path: &str) -> bool {
    xrdfs(host, &["stat", path])
        .lines()
        .any(|l| l.starts_with("Flags:") && l.contains("Offline"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_recalls_aggregates_that_exist_only_on_tape() {
    let Some(url) = service("NLDS_TEST_XROOTD_URL") else {
        return;
    };
    // root://HOST:PORT//tape -> the host for xrdfs and the export path.
    let rest = url.strip_prefix("root://").expect("a root:// URL");
    let (host, export) = rest.split_once("//").expect("root://HOST//PATH");
    let dir = format!(
        "/{}/tape-only-{}",
        export.trim_matches('/'),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let data = temp();
    let mut settings = ServerSettings::default();
    settings.workers.archive.interval_secs = 0;
    settings.workers.archive.aggregate_bytes = 256 << 10;
    settings.workers.archive.recall_poll_secs = 1;
    settings.workers.cold = nlds_storage::cold::ColdConfig::Xrootd(Default::default());
    settings.workers.cold.xrootd_mut().url = format!("root://{host}/{dir}");
    let e = Embedded::start(EmbeddedOptions {
        data_dir: data.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap();
    let api = Api::new(&e.url, &e.token);

    let src = temp();
    let root = src.path().join("tape only");
    std::fs::create_dir_all(&root).unwrap();
    let n = crate::helpers::make_tree(&root, 120, 2);
    let put = api
        .put_and_wait(json!({"paths": [root], "label": "tape"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    let (s, _) = api.post("/api/v2/admin/archive", &json!({})).await;
    assert_eq!(s, 202);
    let page = wait_archived(
        &api,
        "tape",
        n,
        Duration::from_secs(240),
        Duration::from_millis(500),
    )
    .await;
    let aggregates: BTreeSet<String> = page
        .files
        .iter()
        .filter(|f| f.kind == nlds_core::PathKind::File)
        .map(|f| {
            let cold = f.locations.iter().find(|l| l.tier == Tier::Cold).unwrap();
            format!("{dir}/{}", cold.key)
        })
        .collect();
    assert!(aggregates.len() > 1, "{aggregates:?}");

    // Every aggregate off the disk cache: on tape only.
    for a in &aggregates {
        assert!(!offline(host, a), "{a} is offline before the evict");
        xrdfs(host, &["prepare", "-e", a]);
    }
    let start = Instant::now();
    while !aggregates.iter().all(|a| offline(host, a)) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the XRootD server never took the aggregates offline: {aggregates:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // ... and off the warm tier.
    let (s, b) = api
        .post(
            "/api/v2/admin/evict",
            &json!({"holding_id": put.holding_id.unwrap()}),
        )
        .await;
    assert_eq!((s, b["files"].as_u64()), (200, Some(n as u64)), "{b}");

    let target = temp();
    let got = api
        .get_and_wait(json!({"paths": [root], "label": "tape", "target": target.path()}))
        .await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    assert_eq!(
        shape(&restored(target.path(), &root)),
        shape(&root),
        "the tree recalled from tape differs"
    );
    // The get staged each of them back from tape: the tape emulator logged its recall.
    let hsm_log = std::path::Path::new(
        &std::env::var("NLDS_XROOTD_DIR").unwrap_or_else(|_| "/var/tmp/nlds-xrootd".into()),
    )
    .join("log/hsm.log");
    let log = std::fs::read_to_string(&hsm_log)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", hsm_log.display()));
    for a in &aggregates {
        assert!(
            log.lines()
                .any(|l| l.contains(" recalled ") && l.contains(&format!("{a} -> "))),
            "{a} was not recalled from tape (see {})",
            hsm_log.display()
        );
    }
    e.stop().await.unwrap();
}
