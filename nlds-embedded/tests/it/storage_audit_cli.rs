//! The storage audit through the API and the real `nlds` CLI against distributed roles
//! (PostgreSQL, RabbitMQ, moto S3, the dir cold store): a clean store audits clean; a deleted
//! object and a stray one are found (exit 11) and repaired (the copy restored from its aggregate,
//! the stray quarantined); the re-audit is clean; only the operator's purge deletes the
//! quarantine; users are refused; `nlds admin audit` alone still shows the audit log.

use std::time::{Duration, Instant};

use nlds_core::State;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, TOKEN, serve_api, start_roles};
use crate::helpers::{Api, temp};
use crate::policy_cli::{nlds, ok, text};

const OPS: &str = "storage-audit-test-operator-token-0123";

/// Every copy of `label`'s files: (path, [(tier, key)]).
async fn copies(api: &Api, label: &str) -> Vec<(String, Vec<(String, String)>)> {
    let (s, page) = api.get(&format!("/api/v2/files?label={label}")).await;
    assert_eq!(s, 200, "{page}");
    let mut out: Vec<_> = page["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "file")
        .map(|f| {
            let mut l: Vec<(String, String)> = f["locations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        l["tier"].as_str().unwrap().to_owned(),
                        l["key"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            l.sort();
            (f["path"].as_str().unwrap().to_owned(), l)
        })
        .collect();
    out.sort();
    out
}

/// The run's report, as `--json` prints it.
fn report(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn counts(r: &Value) -> (u64, u64, u64, u64, u64) {
    let c = &r["counts"];
    let n = |k: &str| c[k].as_u64().unwrap();
    (
        n("dark"),
        n("lost"),
        n("size_mismatch"),
        n("corrupt"),
        n("repaired"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_finds_a_lost_and_a_stray_object_repairs_them_and_purges_the_quarantine() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let dir = temp();
    let mut settings = svc.settings();
    settings.workers.archive.interval_secs = 0;
    settings.workers.cold.dir_mut().root = dir.path().join("cold");
    settings.workers.cold.dir_mut().stage_delay_ms = 0;
    let stop = CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let tokens = format!(
        "[[token]]\ntoken = \"{TOKEN}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\
         [[token]]\ntoken = \"{OPS}\"\nuser = \"ops\"\ngroups = [\"climate\"]\nadmin = true\n"
    );
    let url = serve_api(&settings, &tokens, 30, stop.clone()).await;
    let (alice, ops) = (Api::new(&url, TOKEN), Api::new(&url, OPS));

    let src = temp();
    for i in 0..3 {
        std::fs::write(
            src.path().join(format!("f{i}.dat")),
            vec![b'a' + i as u8; 2000 + i],
        )
        .unwrap();
    }
    let put = alice
        .put_and_wait(json!({"paths": [src.path()], "label": "audited"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    // Archived, so every file has a second copy to be restored from.
    let (s, b) = ops.post("/api/v2/admin/archive", &json!({})).await;
    assert_eq!(s, 202, "{b}");
    let t0 = Instant::now();
    let files = loop {
        let files = copies(&alice, "audited").await;
        if files.len() == 3 && files.iter().all(|(_, l)| l.len() == 2) {
            break files;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "not archived: {files:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Users are refused; `nlds admin audit` alone is still the audit log.
    let refused = nlds(&url, TOKEN, &["admin", "audit", "storage"]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    let (s, b) = alice
        .post(
            "/api/v2/admin/audit/storage",
            &json!({"warm": true, "cold": true}),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    let log: Value =
        serde_json::from_str(&ok(nlds(&url, OPS, &["--json", "admin", "audit"]))).unwrap();
    assert!(log["records"].is_array(), "{log}");

    // Clean: nothing found, everything looked at and re-read.
    let clean = nlds(
        &url,
        OPS,
        &["--json", "admin", "audit", "storage", "--scrub"],
    );
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    let r = report(&clean);
    assert_eq!(counts(&r), (0, 0, 0, 0, 0), "{r}");
    assert_eq!(r["counts"]["warm_objects"], 3, "{r}");
    assert_eq!(r["counts"]["aggregations"], 1, "{r}");
    assert_eq!(r["counts"]["scrubbed"], 4, "{r}");

    // The faults: one object deleted, one stray object.
    let os = &settings.workers.object_store;
    let s3 = nlds_storage::s3::client(os).await.unwrap();
    let (lost_path, lost_locs) = &files[0];
    let lost_key = &lost_locs.iter().find(|(t, _)| t == "warm").unwrap().1;
    s3.delete_object()
        .bucket(&os.bucket)
        .key(lost_key)
        .send()
        .await
        .unwrap();
    let stray = "tx/00000000-0000-0000-0000-000000000000/stray";
    s3.put_object()
        .bucket(&os.bucket)
        .key(stray)
        .body(b"stray bytes".to_vec().into())
        .send()
        .await
        .unwrap();

    // Found, exactly those two, in the table and as JSON (exit 11: left unrepaired).
    let found = nlds(&url, OPS, &["-w", "admin", "audit", "storage"]);
    assert_eq!(found.status.code(), Some(11), "{}", text(&found));
    let shown = String::from_utf8_lossy(&found.stdout).into_owned();
    assert!(
        shown.contains("1 dark, 1 lost, 0 size mismatch, 0 corrupt"),
        "{shown}"
    );
    assert!(shown.contains(stray) && shown.contains(lost_key), "{shown}");
    assert!(shown.contains(lost_path.as_str()), "{shown}");

    // Repaired: exit 0, the copy is back with its bytes, the stray quarantined.
    let repaired = nlds(
        &url,
        OPS,
        &["--json", "admin", "audit", "storage", "--repair"],
    );
    assert_eq!(repaired.status.code(), Some(0), "{}", text(&repaired));
    assert_eq!(counts(&report(&repaired)), (1, 1, 0, 0, 2));
    let back = s3
        .get_object()
        .bucket(&os.bucket)
        .key(lost_key)
        .send()
        .await
        .unwrap();
    let bytes = back.body.collect().await.unwrap().into_bytes();
    assert_eq!(bytes.as_ref(), std::fs::read(lost_path).unwrap().as_slice());
    let listed = |prefix: &'static str| {
        let s3 = s3.clone();
        let bucket = os.bucket.clone();
        async move {
            s3.list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .unwrap()
                .contents()
                .iter()
                .map(|o| o.key().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let quarantined = listed("quarantine/").await;
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(quarantined[0].ends_with(stray), "{quarantined:?}");
    assert!(!listed("tx/").await.contains(&stray.to_owned()));

    // The re-audit is clean, scrub included; the runs are in the admin view.
    let again = nlds(
        &url,
        OPS,
        &["--json", "admin", "audit", "storage", "--scrub"],
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(counts(&report(&again)), (0, 0, 0, 0, 0));
    let (s, runs) = ops.get("/api/v2/admin/audit/storage?runs=10").await;
    assert_eq!(s, 200, "{runs}");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 4, "{runs}");
    assert_eq!(runs["runs"][1]["counts"]["repaired"], 2, "{runs}");
    let status = ok(nlds(
        &url,
        OPS,
        &["admin", "audit", "storage", "--status", "-N", "1"],
    ));
    assert!(status.contains("0 dark, 0 lost"), "{status}");

    // Only the operator's purge deletes the quarantine.
    let purged = ok(nlds(&url, OPS, &["admin", "audit", "purge-quarantine"]));
    assert!(
        purged.contains("Purged 1 quarantined object(s)"),
        "{purged}"
    );
    assert!(listed("quarantine/").await.is_empty());
    stop.cancel();
}
