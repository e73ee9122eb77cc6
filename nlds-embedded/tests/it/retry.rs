//! Retry (issue 16): `POST /api/v2/transactions/{id}/retry` puts a finished put's failed files
//! again, into the same holding, as a new transaction linked to the first both ways.

use std::time::Duration;

use nlds_hooks::{control, points};
use serde_json::{Value, json};

use crate::helpers::{Api, temp};
use crate::live::{ALICE, CAROL, paused_put_answer, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_puts_only_the_failed_files_into_the_same_holding_and_is_linked() {
    let (data, logs, pause, src) = (temp(), temp(), temp(), temp());
    let server = server(data.path(), logs.path(), pause.path()).await;
    let alice = Api::new(&server.url, ALICE);
    let carol = Api::new(&server.url, CAROL);
    // f1 vanishes after the put indexed it: that file fails, the others are stored.
    let accepted = paused_put_answer(&server.url, pause.path(), src.path()).await;
    let first = accepted["transaction_id"].as_str().unwrap().to_owned();
    let gone = src.path().join("f1");
    std::fs::remove_file(&gone).unwrap();

    // Not ended yet: nothing to retry.
    let (code, body) = alice
        .post(&format!("/api/v2/transactions/{first}/retry"), &Value::Null)
        .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("still"),
        "{body}"
    );

    control::release(pause.path(), points::PUT_BEFORE_OPEN).unwrap();
    let done = alice.wait(&first, Duration::from_secs(120)).await;
    assert_eq!(done.files_failed, 1, "{done:#?}");
    let failed: Vec<_> = done.failed_files().map(|f| f.path.clone()).collect();
    assert_eq!(failed, vec![gone.to_string_lossy().into_owned()]);

    // Someone else cannot retry it (or learn that it exists).
    let (code, body) = carol
        .post(&format!("/api/v2/transactions/{first}/retry"), &Value::Null)
        .await;
    assert_eq!(code, 404, "{body}");

    std::fs::write(&gone, "file 1, back").unwrap();
    let (code, retried) = alice
        .post(&format!("/api/v2/transactions/{first}/retry"), &Value::Null)
        .await;
    assert_eq!(code, 202, "{retried}");
    let second = retried["transaction_id"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(retried["holding_id"], accepted["holding_id"]);
    let again = alice.wait(&second, Duration::from_secs(120)).await;
    assert_eq!(again.state, nlds_core::State::Complete, "{again:#?}");
    assert_eq!(
        again.files_total, 1,
        "only the failed file is put again: {again:#?}"
    );
    assert_eq!(again.retry_of.map(|u| u.to_string()), Some(first.clone()));

    let (_, status) = alice.get(&format!("/api/v2/transactions/{first}")).await;
    assert_eq!(status["retried_by"], json!([second]), "{status}");

    // The holding now has all three files.
    let (code, files) = alice
        .get(&format!(
            "/api/v2/files?holding_id={}",
            accepted["holding_id"].as_i64().unwrap()
        ))
        .await;
    assert_eq!(code, 200);
    let mut paths: Vec<String> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "file")
        .map(|f| {
            f["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    paths.sort();
    assert_eq!(paths, vec!["f0", "f1", "f2"], "{files}");

    // A put that has no failed files left: nothing to retry.
    let (code, body) = alice
        .post(
            &format!("/api/v2/transactions/{second}/retry"),
            &Value::Null,
        )
        .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no failed files"),
        "{body}"
    );
}
