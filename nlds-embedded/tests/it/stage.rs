//! Stage, status, cancel, release and archiveinfo (the WLCG Tape REST operations) on the dir tape
//! emulator and on XRootD: a holding is archived and evicted, staged back (SUBMITTED/STARTED →
//! COMPLETED, locality TAPE → DISK_AND_TAPE), after which a get needs no recall; two users stage
//! the same file and one's release keeps the other's pin (an operator's evict then keeps it warm);
//! a submitted stage is cancelled; another user's request id is not found; an unknown path is a
//! per-file error.

use std::time::{Duration, Instant};

use nlds_core::State;
use nlds_core::api::Tier;
use nlds_embedded::{Embedded, EmbeddedOptions};
use nlds_server::ServerSettings;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};

use crate::helpers::{Api, temp};

const ALICE: &str = "stage-alice-token-0123456789";
const BOB: &str = "stage-bob-token-0123456789ab";
const ROOT: &str = "stage-root-token-0123456789";

async fn start(data: &std::path::Path, cold: nlds_storage::cold::ColdConfig) -> Embedded {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        data.join("tokens.toml"),
        format!(
            "[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{BOB}\"\nuser = \"bob\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{ROOT}\"\nuser = \"root\"\ngroups = [\"ops\"]\nadmin = true\n"
        ),
    )
    .unwrap();
    let mut settings = ServerSettings::default();
    settings.workers.archive.interval_secs = 0;
    settings.workers.archive.recall_poll_secs = 1;
    settings.workers.cold = cold;
    // Only the stage requests' pins count here: a get pins nothing (its pins have their own
    // tests in access_tracking.rs and the catalogue's access tests).
    settings.policy.get_pin_secs = 0;
    Embedded::start(EmbeddedOptions {
        data_dir: data.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap()
}

/// The `n` column of a one-row query on the embedded catalogue.
async fn count(data: &std::path::Path, sql: &str) -> i64 {
    let db = Database::connect(format!(
        "sqlite://{}?mode=ro",
        data.join("nlds.db").display()
    ))
    .await
    .unwrap();
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

/// Polls until every plain file of `label` has a cold copy.
async fn wait_archived(api: &Api, label: &str, files: usize) {
    let start = Instant::now();
    loop {
        let (s, b) = api.get(&format!("/api/v2/files?label={label}")).await;
        assert_eq!(s, 200, "{b}");
        let page: nlds_core::api::FilePage = serde_json::from_value(b).unwrap();
        let cold = page
            .files
            .iter()
            .filter(|f| f.kind == nlds_core::PathKind::File)
            .filter(|f| f.locations.iter().any(|l| l.tier == Tier::Cold))
            .count();
        if cold >= files {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "not archived");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Per path, its locality (or `ERROR: ...`).
async fn locality(api: &Api, paths: &[&str]) -> Vec<String> {
    let (s, b) = api
        .post(
            "/api/v2/archiveinfo",
            &json!({"paths": paths, "label": "st", "groupall": true}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b.as_array()
        .unwrap()
        .iter()
        .map(|f| match f["locality"].as_str() {
            Some(l) => l.to_owned(),
            None => format!("ERROR: {}", f["error"].as_str().unwrap_or_default()),
        })
        .collect()
}

async fn stage(api: &Api, files: &[&str]) -> String {
    let (s, b) = api
        .post(
            "/api/v2/stage",
            &json!({"files": files, "label": "st", "groupall": true, "lifetime_secs": 3600}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b["request_id"].as_str().unwrap().to_owned()
}

/// The request's files as (path, state, error).
async fn states(api: &Api, id: &str) -> Vec<(String, String, String)> {
    let (s, b) = api.get(&format!("/api/v2/stage/{id}")).await;
    assert_eq!(s, 200, "{b}");
    let mut v: Vec<(String, String, String)> = b["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["state"].as_str().unwrap().to_owned(),
                f["error"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Polls a stage request until every file is final; returns its status.
async fn wait_staged(api: &Api, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let (s, b) = api.get(&format!("/api/v2/stage/{id}")).await;
        assert_eq!(s, 200, "{b}");
        let done = b["files"].as_array().unwrap().iter().all(|f| {
            matches!(
                f["state"].as_str(),
                Some("COMPLETED" | "FAILED" | "CANCELLED")
            )
        });
        if done {
            return b;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not staged: {b}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn pins(data: &std::path::Path, id: &str) -> i64 {
    count(
        data,
        &format!("SELECT COUNT(*) AS n FROM pin WHERE requester = 'stage:{id}'"),
    )
    .await
}

async fn stage_round_trip(cold: nlds_storage::cold::ColdConfig) {
    let data = temp();
    let e = start(data.path(), cold).await;
    let (alice, bob, root) = (
        Api::new(&e.url, ALICE),
        Api::new(&e.url, BOB),
        Api::new(&e.url, ROOT),
    );
    let src = temp();
    let dir = src.path().join("stage src");
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for i in 0..3 {
        let p = dir.join(format!("f{i}.dat"));
        std::fs::write(&p, vec![b'a' + i as u8; 1000 + i]).unwrap();
        paths.push(p.to_string_lossy().into_owned());
    }
    let p: Vec<&str> = paths.iter().map(String::as_str).collect();
    let put = alice
        .put_and_wait(json!({"paths": [dir], "label": "st"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    assert_eq!(locality(&alice, &[p[0]]).await, vec!["DISK"]);

    let (s, _) = root.post("/api/v2/admin/archive", &json!({})).await;
    assert_eq!(s, 202);
    wait_archived(&alice, "st", 3).await;
    let (s, b) = root
        .post(
            "/api/v2/admin/evict",
            &json!({"holding_id": put.holding_id.unwrap()}),
        )
        .await;
    assert_eq!((s, b["files"].as_u64()), (200, Some(3)), "{b}");
    assert_eq!(
        locality(&alice, &[p[0], "/no/such/file"]).await,
        vec!["TAPE", "ERROR: no such file"]
    );

    // Alice stages two files (and a path that is not hers); bob stages one of them too.
    let a = stage(&alice, &[p[0], p[1], "/no/such/file"]).await;
    let first = states(&alice, &a).await;
    assert_eq!(
        first[0],
        (
            "/no/such/file".into(),
            "FAILED".into(),
            "no such file".into()
        )
    );
    for (path, state, _) in &first[1..] {
        assert!(
            state == "SUBMITTED" || state == "STARTED",
            "{path}: {state} before its recall"
        );
    }
    let b_id = stage(&bob, &[p[0]]).await;
    // Another user's request is not found, whatever it holds.
    let (s, body) = bob.get(&format!("/api/v2/stage/{a}")).await;
    assert_eq!(s, 404, "{body}");
    assert!(!body.to_string().contains("alice"), "{body}");
    let (s, _) = bob.post("/api/v2/release", &json!({"request_id": a})).await;
    assert_eq!(s, 404);

    let done = wait_staged(&alice, &a).await;
    assert!(
        done["started_at"].is_i64() || done["started_at"].is_string(),
        "{done}"
    );
    assert!(!done["completed_at"].is_null(), "{done}");
    assert_eq!(
        states(&alice, &a).await[1..]
            .iter()
            .map(|f| f.1.as_str())
            .collect::<Vec<_>>(),
        vec!["COMPLETED", "COMPLETED"]
    );
    wait_staged(&bob, &b_id).await;
    assert_eq!(
        locality(&alice, &[p[0], p[1]]).await,
        vec!["DISK_AND_TAPE"; 2]
    );
    assert_eq!(
        (pins(data.path(), &a).await, pins(data.path(), &b_id).await),
        (2, 1)
    );

    // Staged: a get needs no recall.
    let tgt = temp();
    let got = alice
        .get_and_wait(json!({"paths": [p[0], p[1]], "label": "st", "target": tgt.path()}))
        .await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    assert_eq!(
        count(data.path(), "SELECT COUNT(*) AS n FROM recall_request").await,
        0
    );

    // Alice releases; bob's pin of f0 stays, so the operator's evict keeps f0 warm.
    let (s, b) = alice
        .post("/api/v2/release", &json!({"request_id": a}))
        .await;
    assert_eq!((s, b["unpinned"].as_u64()), (200, Some(2)), "{b}");
    assert_eq!(pins(data.path(), &b_id).await, 1);
    let (s, b) = root
        .post(
            "/api/v2/admin/evict",
            &json!({"holding_id": put.holding_id.unwrap()}),
        )
        .await;
    assert_eq!(
        (s, b["files"].as_u64()),
        (200, Some(2)),
        "f0 is pinned by bob: {b}"
    );
    assert_eq!(
        locality(&alice, &[p[0], p[1], p[2]]).await,
        vec!["DISK_AND_TAPE", "TAPE", "TAPE"]
    );

    // A submitted stage is cancelled: CANCELLED, and its request can be forgotten.
    let c = stage(&alice, &[p[1]]).await;
    let (s, b) = alice
        .post(
            &format!("/api/v2/stage/{c}/cancel"),
            &json!({"paths": [p[2]]}),
        )
        .await;
    assert_eq!(s, 400, "a path not in the request changes nothing: {b}");
    let (s, b) = alice
        .post(&format!("/api/v2/stage/{c}/cancel"), &json!({}))
        .await;
    assert_eq!((s, b["cancelled"].as_u64()), (200, Some(1)), "{b}");
    assert_eq!(
        states(&alice, &c).await[0].1,
        "CANCELLED",
        "a cancelled file stays cancelled"
    );
    let r = reqwest::Client::new()
        .delete(format!("{}/api/v2/stage/{c}", e.url))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, _) = alice.get(&format!("/api/v2/stage/{c}")).await;
    assert_eq!(s, 404, "a deleted request is gone");
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_round_trip_on_the_dir_tape_emulator() {
    let mut cold = nlds_storage::cold::ColdConfig::default();
    cold.dir_mut().stage_delay_ms = 1000;
    stage_round_trip(cold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_round_trip_on_xrootd() {
    let Some(url) = crate::helpers::service("NLDS_TEST_XROOTD_URL") else {
        return;
    };
    let mut cold = nlds_storage::cold::ColdConfig::Xrootd(Default::default());
    cold.xrootd_mut().url = format!(
        "{}/stage-{}",
        url.trim_end_matches('/'),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    stage_round_trip(cold).await;
}
