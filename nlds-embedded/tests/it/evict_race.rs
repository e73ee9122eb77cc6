//! A get right after an eviction: the eviction drops the warm copies from the catalogue at once
//! and deletes their objects afterwards (transfer-del, through the outbox), so a get can recall
//! the files from the cold tier while those deletions are still on their way. The restored
//! copies must survive the deletions: a recall writes each file to a key of its own, never to the
//! key being deleted.
//!
//! The race is made deterministic with the `del.before-delete` pause point: transfer-del holds the
//! eviction's deletion until the get has recalled and restored every file.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nlds_core::State;
use nlds_core::api::{FilePage, Tier};
use nlds_hooks::{control, points};
use serde_json::json;

use crate::archive::wait_archived;
use crate::helpers::{Api, ServerProcess, make_tree, restored, shape, stored_objects, temp};

/// How long the server may take to reach the pause point.
const REACH: Duration = Duration::from_secs(120);

/// The warm keys the catalogue records for the files of `label`.
async fn warm_keys(api: &Api, label: &str) -> BTreeSet<String> {
    let (s, b) = api
        .get(&format!("/api/v2/files?label={label}&limit=10000"))
        .await;
    assert_eq!(s, 200, "{b}");
    let page: FilePage = serde_json::from_value(b).unwrap();
    page.files
        .iter()
        .flat_map(|f| f.locations.iter())
        .filter(|l| l.tier == Tier::Warm)
        .map(|l| l.key.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_get_during_an_evictions_deletions_keeps_the_restored_copies() {
    let (data, logs, pause, src) = (temp(), temp(), temp(), temp());
    let root = src.path().join("evicted tree");
    std::fs::create_dir(&root).unwrap();
    let n = make_tree(&root, 30, 0);
    let config = data.path().join("nlds.toml");
    std::fs::write(
        &config,
        "[workers.archive]\ninterval_secs = 0\nrecall_poll_secs = 1\n",
    )
    .unwrap();
    let server = ServerProcess::start_with_env(
        data.path(),
        logs.path(),
        Some(config.as_path()),
        "info",
        &[(nlds_hooks::ENV, pause.path().as_os_str())],
    )
    .await;
    let api = Api::new(&server.url, &server.operator_token());

    let put = api
        .put_and_wait(json!({"paths": [root], "label": "race"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    let put_keys = warm_keys(&api, "race").await;
    assert_eq!(put_keys.len(), n, "one warm object per file: {put_keys:?}");
    let (s, b) = api.post("/api/v2/admin/archive", &json!({})).await;
    assert_eq!(s, 202, "{b}");
    wait_archived(
        &api,
        "race",
        n,
        Duration::from_secs(180),
        Duration::from_millis(300),
    )
    .await;

    // The eviction's deletions are held before they delete anything.
    control::arm(pause.path(), points::DEL_BEFORE_DELETE).unwrap();
    let (s, b) = api
        .post(
            "/api/v2/admin/evict",
            &json!({"holding_id": put.holding_id.unwrap()}),
        )
        .await;
    assert_eq!((s, b["files"].as_u64()), (200, Some(n as u64)), "{b}");
    let held = tokio::task::spawn_blocking({
        let dir = pause.path().to_owned();
        move || control::reached(&dir, points::DEL_BEFORE_DELETE, REACH)
    })
    .await
    .unwrap()
    .expect("transfer-del never reached its pause point: the race was not tested");
    assert!(
        put_keys.contains(&held.to_string_lossy().into_owned()),
        "the held deletion is not the eviction's: {held:?}"
    );
    assert!(
        warm_keys(&api, "race").await.is_empty(),
        "evicted, no warm copy left"
    );

    // The get recalls every file from the cold tier while the deletions wait.
    let first = temp();
    let got = api
        .get_and_wait(json!({"paths": [root], "label": "race", "target": first.path()}))
        .await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    assert_eq!(shape(&restored(first.path(), &root)), shape(&root));
    let restored_keys = warm_keys(&api, "race").await;
    assert_eq!(restored_keys.len(), n, "{restored_keys:?}");
    assert!(
        restored_keys.is_disjoint(&put_keys),
        "a recall restored a copy to a key an eviction is deleting: {:?}",
        restored_keys.intersection(&put_keys).collect::<Vec<_>>()
    );

    // The deletions go ahead: the evicted objects go, the restored ones stay.
    control::release(pause.path(), points::DEL_BEFORE_DELETE).unwrap();
    let start = Instant::now();
    loop {
        let stored = stored_objects(data.path());
        if stored.is_disjoint(&put_keys) {
            assert_eq!(
                stored, restored_keys,
                "the bucket holds exactly the restored copies the catalogue records"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the evicted objects were never deleted: {:?}",
            stored.intersection(&put_keys).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A second get reads the restored warm copies (no recall needed) and is identical.
    let second = temp();
    let got = api
        .get_and_wait(json!({"paths": [root], "label": "race", "target": second.path()}))
        .await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    assert_eq!(shape(&restored(second.path(), &root)), shape(&root));
    server.stop();
}
