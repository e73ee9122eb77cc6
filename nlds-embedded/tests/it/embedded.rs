//! The full scenario in embedded mode (a restart after a crash: `restart.rs`).

use std::path::Path;

use nlds_core::State;
use nlds_embedded::{Embedded, EmbeddedOptions};
use nlds_server::ServerSettings;
use serde_json::json;

use crate::helpers::{Api, make_tree, restored, shape, temp};

pub async fn start_embedded(data: &Path) -> Embedded {
    Embedded::start(EmbeddedOptions {
        data_dir: data.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings: ServerSettings::default(),
    })
    .await
    .unwrap()
}

/// Put a tree of 1,000 files (nested directories, a symlink, an empty file, a large file, names
/// with spaces and non-ASCII characters) with a label and tags; get it back; list, find, meta, stat.
pub async fn scenario(api: &Api, big_mib: usize) {
    let src = temp();
    let root = src.path().join("run 42 ü");
    std::fs::create_dir(&root).unwrap();
    make_tree(&root, 1000, big_mib);
    let root_s = root.to_string_lossy().into_owned();

    let put = api
        .put_and_wait(json!({
            "paths": [root_s],
            "label": "run42",
            "tags": {"project": "ice cores", "site": "Halley, AQ"}
        }))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    assert_eq!(put.files_failed, 0);
    assert_eq!(put.percent, 100);
    assert_eq!(
        put.label.as_deref(),
        Some("run42"),
        "the transaction knows its holding"
    );
    assert!(put.holding_id.is_some());
    let entries = shape(&root).len() as u64 + 1; // plus the root directory itself
    // Files only: the directories (the root too) travel for their restore, uncounted.
    let files = crate::helpers::file_entries(&root);
    assert_eq!(put.files_done, files, "{put:#?}");
    assert_eq!(put.files_total, files, "{put:#?}");

    let tgt = temp();
    let got = api
        .get_and_wait(json!({"paths": [root_s], "label": "run42", "target": tgt.path()}))
        .await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    assert_eq!(
        shape(&restored(tgt.path(), &root)),
        shape(&root),
        "restored tree differs"
    );

    let (s, list) = api.get("/api/v2/holdings?label=run42").await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["total"], 1);
    let h = &list["holdings"][0];
    assert_eq!(h["label"], "run42");
    assert_eq!(h["tags"]["project"], "ice cores");
    assert_eq!(h["tags"]["site"], "Halley, AQ");
    assert_eq!(h["files"], entries);
    let hid = h["id"].as_i64().unwrap();

    let empty = root.join("empty");
    let (s, found) = api
        .get(&format!(
            "/api/v2/files?path={}",
            urlencode(&empty.to_string_lossy())
        ))
        .await;
    assert_eq!(s, 200, "{found}");
    assert_eq!(found["total"], 1, "{found}");
    let f = &found["files"][0];
    assert_eq!(f["size"], 0);
    assert_eq!(f["mode"], 0o640);
    assert_eq!(f["holding_id"], hid);
    assert_eq!(f["blake3"], blake3::hash(b"").to_hex().to_string());
    assert_eq!(f["locations"][0]["tier"], "warm");

    let (s, found) = api
        .get(&format!(
            "/api/v2/files?holding_id={hid}&regex=true&path={}",
            urlencode(r"file 1\d é\.dat$")
        ))
        .await;
    assert_eq!(s, 200, "{found}");
    assert_eq!(found["total"], 10, "{found}");

    let (s, meta) = api
        .post(
            "/api/v2/meta",
            &json!({"label": "run42", "new_label": "run42-final", "new_tags": {"status": "done"}, "del_tags": {"site": ""}}),
        )
        .await;
    assert_eq!(s, 200, "{meta}");
    assert_eq!(meta["holdings"][0]["old"]["label"], "run42");
    assert_eq!(meta["holdings"][0]["new"]["label"], "run42-final");
    let (_, list) = api.get("/api/v2/holdings?label=run42-final").await;
    let tags = &list["holdings"][0]["tags"];
    assert_eq!(tags, &json!({"project": "ice cores", "status": "done"}));
    let (s, _) = api.get("/api/v2/holdings?label=run42").await;
    assert_eq!(s, 404);
    // So is a find in it: the catalogue's answer is an error, not a page (distributed, the API
    // forwards a page undecoded and decodes anything else).
    let (s, body) = api.get("/api/v2/files?label=run42").await;
    assert_eq!(s, 404, "{body}");
    assert!(body.to_string().contains("run42"), "{body}");

    let (s, stat) = api.get("/api/v2/transactions?state=COMPLETE").await;
    assert_eq!(s, 200, "{stat}");
    let ids: Vec<&str> = stat["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["transaction_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&put.transaction_id.to_string().as_str()));
    assert!(ids.contains(&got.transaction_id.to_string().as_str()));

    // Putting the same files into the same holding again stores nothing twice: unchanged, they
    // are skipped (docs/VERSIONS.md), not failed.
    let again = api
        .put_and_wait(json!({"paths": [empty.to_string_lossy()], "holding_id": hid}))
        .await;
    assert_eq!(again.state, State::Complete, "{again:#?}");
    assert_eq!(again.failed_files().count(), 0, "{again:#?}");
    assert_eq!(
        (again.files_skipped, again.files_new_versions),
        (1, 0),
        "{again:#?}"
    );
    let (_, list) = api.get(&format!("/api/v2/holdings?holding_id={hid}")).await;
    assert_eq!(list["holdings"][0]["files"], entries);
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_put_get_list_find_meta_stat() {
    let data = temp();
    let e = start_embedded(data.path()).await;
    let api = Api::new(&e.url, &e.token);
    scenario(&api, 100).await;
    // The warm tier is real S3: objects live under the data directory.
    assert!(data.path().join("objects/nlds").is_dir());
    e.stop().await.unwrap();
}
