//! Delete, undelete and purge end to end: soft delete hides files at once from list, find and
//! get; undelete brings them back; who may delete what follows the caller's role; the
//! `/api/1.0.0` adapter's `DELETE files/`; an operator's purge removes the objects from the S3
//! bucket (moto, checked directly) and an aggregate whose members are all deleted from the cold
//! store. The last-copy invariant is tested in the catalogue (nlds-workers
//! `catalogue::delete::tests`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nlds_core::State;
use nlds_core::api::{FilePage, Tier, TransactionStatus};
use nlds_embedded::{Embedded, EmbeddedOptions};
use nlds_server::ServerSettings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, TOKEN, start_roles, start_server};
use crate::helpers::{Api, service, temp};

const ALICE: &str = "delete-alice-token-0123456789";
const BOB: &str = "delete-bob-token-0123456789ab";
const CAROL: &str = "delete-carol-token-012345678";
const ROOT: &str = "delete-root-token-0123456789";

fn tokens(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        data.join("tokens.toml"),
        format!(
            "[[token]]\ntoken = \"{ROOT}\"\nuser = \"root\"\ngroups = [\"ops\"]\nadmin = true\n\
             [[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{BOB}\"\nuser = \"bob\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{CAROL}\"\nuser = \"carol\"\ngroups = [\"climate\"]\nroles = {{ climate = \"manager\" }}\n"
        ),
    )
    .unwrap();
}

/// An embedded instance with these users, the cold tier under `cold`, and (when given) the moto
/// bucket as its object store.
async fn start(data: &Path, cold: &Path, s3: Option<(&str, &str)>) -> Embedded {
    tokens(data);
    let mut settings = ServerSettings::default();
    settings.workers.archive.interval_secs = 0;
    settings.workers.cold.dir_mut().root = cold.to_owned();
    settings.workers.cold.dir_mut().stage_delay_ms = 0;
    let external = s3.map(
        |(endpoint, bucket)| nlds_workers::config::ObjectStoreConfig {
            endpoint: endpoint.to_owned(),
            access_key: "testing".into(),
            secret_key: "testing".into(),
            bucket: bucket.to_owned(),
            ..Default::default()
        },
    );
    Embedded::start(EmbeddedOptions {
        data_dir: data.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: external,
        settings,
    })
    .await
    .unwrap()
}

async fn find(api: &Api, query: &str) -> FilePage {
    let (s, b) = api.get(&format!("/api/v2/files?{query}")).await;
    assert_eq!(s, 200, "{b}");
    serde_json::from_value(b).unwrap()
}

fn paths(p: &FilePage) -> Vec<String> {
    let mut v: Vec<String> = p
        .files
        .iter()
        .filter(|f| f.kind == nlds_core::PathKind::File)
        .map(|f| f.path.clone())
        .collect();
    v.sort();
    v
}

async fn delete_and_wait(api: &Api, body: Value) -> TransactionStatus {
    let (s, r) = api.post("/api/v2/delete", &body).await;
    assert_eq!(s, 202, "{r}");
    assert!(
        r["api_action"] == "del" || r["api_action"] == "dellist",
        "{r}"
    );
    api.wait(
        r["transaction_id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await
}

fn tree(root: &Path, names: &[&str]) -> Vec<String> {
    std::fs::create_dir_all(root).unwrap();
    names
        .iter()
        .map(|n| {
            let p = root.join(n);
            std::fs::write(&p, format!("content of {n}").repeat(50)).unwrap();
            p.to_string_lossy().into_owned()
        })
        .collect()
}

/// Polls `check` until it holds (the removals are carried out by workers after the answer).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Does the moto bucket hold the object (asked directly, with the test credentials)?
async fn object_exists(endpoint: &str, bucket: &str, key: &str) -> bool {
    let cfg = nlds_workers::config::ObjectStoreConfig {
        endpoint: endpoint.to_owned(),
        access_key: "testing".into(),
        secret_key: "testing".into(),
        ..Default::default()
    };
    let s3 = nlds_storage::s3::client(&cfg).await.unwrap();
    s3.head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

fn warm_key(p: &FilePage, path: &str) -> (String, String) {
    let f = p.files.iter().find(|f| f.path == path).unwrap();
    let l = f.locations.iter().find(|l| l.tier == Tier::Warm).unwrap();
    (l.bucket.clone(), l.key.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_hides_at_once_undelete_restores_and_purge_empties_the_bucket() {
    let Some(endpoint) = service("NLDS_TEST_S3_ENDPOINT") else {
        return;
    };
    let bucket = format!(
        "nlds-del-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let (data, cold, src) = (temp(), temp(), temp());
    let e = start(data.path(), cold.path(), Some((&endpoint, &bucket))).await;
    let alice = Api::new(&e.url, ALICE);
    let bob = Api::new(&e.url, BOB);
    let carol = Api::new(&e.url, CAROL);
    let root = Api::new(&e.url, ROOT);
    let files = tree(&src.path().join("run"), &["a.nc", "b.nc", "c.nc", "d.nc"]);
    let put = alice
        .put_and_wait(json!({"paths": [src.path().join("run")], "label": "run"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    let h = put.holding_id.unwrap();
    let before = find(&alice, "label=run").await;
    assert_eq!(paths(&before), files);
    for f in &files {
        let (b, k) = warm_key(&before, f);
        assert!(object_exists(&endpoint, &b, &k).await, "{f}");
    }

    // A dry run lists what would go and changes nothing.
    let (s, plan) = alice
        .post(
            "/api/v2/delete",
            &json!({"paths": [files[0]], "label": "run", "dry_run": true}),
        )
        .await;
    assert_eq!(s, 200, "{plan}");
    assert_eq!(plan["files"][0]["path"], files[0].as_str());
    assert_eq!(paths(&find(&alice, "label=run").await).len(), 4);

    // Deleted: gone at once from find, list and get.
    let t = delete_and_wait(&alice, json!({"paths": [files[0]], "label": "run"})).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    assert_eq!(paths(&find(&alice, "label=run").await), files[1..]);
    let (s, l) = alice.get(&format!("/api/v2/holdings?holding_id={h}")).await;
    assert_eq!(s, 200);
    assert_eq!(
        l["holdings"][0]["files"], 4,
        "3 files and the directory: {l}"
    );
    let target = temp();
    let get = alice
        .get_and_wait(json!({"paths": [files[0]], "target": target.path()}))
        .await;
    assert_eq!(get.state, State::Failed, "{get:#?}");
    assert!(std::fs::read_dir(target.path()).unwrap().next().is_none());

    // bob (a user of the same group) may not delete alice's holding: a 403 naming it ...
    let (s, r) = bob.post("/api/v2/delete", &json!({"holding_id": h})).await;
    assert_eq!(s, 403, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("holding {h}")) && msg.contains("alice"),
        "{msg}"
    );
    // ... and through the group's view each file is a failure saying why.
    let t = delete_and_wait(&bob, json!({"paths": [files[1]], "groupall": true})).await;
    assert_eq!(t.state, State::Failed, "{t:#?}");
    let failed: Vec<_> = t.failed_files().collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].code, nlds_core::ErrorCode::Forbidden);
    assert!(
        failed[0].reason.contains(&format!("holding {h}")),
        "{failed:?}"
    );
    // carol, a manager of the group, may.
    let t = delete_and_wait(&carol, json!({"paths": [files[1]], "groupall": true})).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    assert_eq!(paths(&find(&alice, "label=run").await), files[2..]);

    // The legacy adapter: DELETE files/ with the body of PUT files/.
    let tid = uuid::Uuid::new_v4();
    let r = reqwest::Client::new()
        .delete(format!("{}/api/1.0.0/files", e.url))
        .bearer_auth(ALICE)
        .query(&[
            ("user", "alice"),
            ("group", "climate"),
            ("transaction_id", &tid.to_string()),
        ])
        .json(&json!({"filelist": [files[2]], "label": "run"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let body: String = r.json().await.unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["api_action"], "del", "{body}");
    assert_eq!(body["holding_id"], h, "{body}");
    let t = alice.wait(&tid.to_string(), Duration::from_secs(60)).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    assert_eq!(paths(&find(&alice, "label=run").await), files[3..]);

    // Undelete within the retention period.
    let (s, r) = alice
        .post(
            "/api/v2/undelete",
            &json!({"paths": [files[0]], "label": "run"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["files_total"], 1, "{r}");
    let mut back = vec![files[0].clone(), files[3].clone()];
    back.sort();
    assert_eq!(paths(&find(&alice, "label=run").await), back);

    // Purging is for operators; it removes the deleted files' objects from the bucket.
    let (s, r) = alice.post("/api/v2/admin/purge", &json!({})).await;
    assert_eq!(s, 403, "{r}");
    let (s, r) = root
        .post("/api/v2/admin/purge", &json!({"holding_id": h}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["files"].as_u64(), r["objects"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    for f in &files[1..3] {
        let (b, k) = warm_key(&before, f);
        eventually(&format!("{f}'s object removed"), async || {
            !object_exists(&endpoint, &b, &k).await
        })
        .await;
    }
    for f in [&files[0], &files[3]] {
        let (b, k) = warm_key(&before, f);
        assert!(object_exists(&endpoint, &b, &k).await, "{f} is live");
    }
    // A purged file cannot be undeleted.
    let (s, r) = alice
        .post(
            "/api/v2/undelete",
            &json!({"paths": [files[1]], "label": "run"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["files_total"], 0, "{r}");
    assert_eq!(r["failed"][0]["code"], "not_found", "{r}");
    e.stop().await.unwrap();
}

fn tape_files(cold: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![cold.join("tape")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tar") {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_every_member_removes_the_aggregate_from_the_cold_store() {
    let (data, cold, src) = (temp(), temp(), temp());
    let e = start(data.path(), cold.path(), None).await;
    let alice = Api::new(&e.url, ALICE);
    let root = Api::new(&e.url, ROOT);
    let kept = tree(&src.path().join("kept"), &["k.nc"]);
    tree(&src.path().join("gone"), &["x.nc", "y.nc", "z.nc"]);
    for label in ["kept", "gone"] {
        let put = alice
            .put_and_wait(json!({"paths": [src.path().join(label)], "label": label}))
            .await;
        assert_eq!(put.state, State::Complete, "{put:#?}");
    }
    let (s, b) = root.post("/api/v2/admin/archive", &json!({})).await;
    assert_eq!(s, 202, "{b}");
    eventually("both holdings archived", async || {
        let p = find(&alice, "limit=100").await;
        p.files
            .iter()
            .filter(|f| f.kind == nlds_core::PathKind::File)
            .all(|f| f.locations.iter().any(|l| l.tier == Tier::Cold))
    })
    .await;
    assert_eq!(
        tape_files(cold.path()).len(),
        2,
        "one aggregate per holding"
    );

    // Delete the holding whole: gone from list; purged, its aggregate leaves the tape.
    let t = delete_and_wait(&alice, json!({"label": "gone"})).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let (s, l) = alice.get("/api/v2/holdings?label=gone").await;
    assert_eq!(s, 404, "{l}");
    let (s, r) = root.post("/api/v2/admin/purge", &json!({})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["aggregates"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["holdings"], 1, "{r}");
    eventually("the aggregate removed from the tape", async || {
        tape_files(cold.path()).len() == 1
    })
    .await;
    // The other holding is untouched, with both its copies.
    let p = find(&alice, "label=kept").await;
    assert_eq!(paths(&p), kept);
    assert_eq!(
        p.files
            .iter()
            .find(|f| f.path == kept[0])
            .unwrap()
            .locations
            .len(),
        2
    );
    e.stop().await.unwrap();
}

/// Put, delete, find, undelete over RabbitMQ and PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_and_undelete_in_distributed_mode() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let settings = svc.settings();
    let stop = CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);
    let src = temp();
    let files = tree(&src.path().join("d"), &["one", "two"]);
    let put = api
        .put_and_wait(json!({"paths": [src.path().join("d")], "label": "dist"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    let t = delete_and_wait(&api, json!({"paths": [files[0]], "label": "dist"})).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    assert_eq!(paths(&find(&api, "label=dist").await), files[1..]);
    let t = delete_and_wait(&api, json!({"label": "dist"})).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let (s, _) = api.get("/api/v2/holdings?label=dist").await;
    assert_eq!(s, 404);
    let (s, r) = api
        .post("/api/v2/undelete", &json!({"label": "dist"}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["holdings"][0]["label"], "dist", "{r}");
    // The holding comes back with the files deleted with it; the earlier delete stands.
    assert_eq!(paths(&find(&api, "label=dist").await), files[1..]);
    stop.cancel();
}
