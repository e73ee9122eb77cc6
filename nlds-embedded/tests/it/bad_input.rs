//! Bad input: each gets a clear error naming the problem, nothing stored is lost, and no request
//! produces a 500.

use std::io::BufRead;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::Duration;

use nlds_core::{ErrorCode, State};
use serde_json::{Value, json};

use crate::embedded::start_embedded;
use crate::helpers::{Api, temp};

const BOB: &str = "bob-token-0123456789abcdef";

fn two_users(data: &std::path::Path) -> String {
    let alice = "alice-token-0123456789abcdef";
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        data.join("tokens.toml"),
        format!(
            "[[token]]\ntoken = \"{alice}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{BOB}\"\nuser = \"bob\"\ngroups = [\"climate\"]\n"
        ),
    )
    .unwrap();
    alice.to_owned()
}

fn assert_error(status: u16, body: &Value, want: u16, code: &str, needle: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(needle),
        "message {msg:?} should mention {needle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_clear_errors_and_lose_nothing() {
    let data = temp();
    two_users(data.path());
    let e = start_embedded(data.path()).await;
    let alice = Api::new(&e.url, &e.token);
    let bob = Api::new(&e.url, BOB);
    assert_eq!(e.token, "alice-token-0123456789abcdef");

    let src = temp();
    let f = src.path().join("kept.txt");
    std::fs::write(&f, b"precious").unwrap();
    let t = alice
        .put_and_wait(json!({"paths": [f], "label": "mine"}))
        .await;
    assert_eq!(t.state, State::Complete);
    let (_, list) = alice.get("/api/v2/holdings?label=mine").await;
    let hid = list["holdings"][0]["id"].as_i64().unwrap();

    // A missing path fails that file, naming it.
    let missing = src.path().join("not here");
    let t = alice
        .put_and_wait(json!({"paths": [missing], "label": "mine"}))
        .await;
    assert_eq!(t.state, State::Failed, "{t:#?}");
    let ff: Vec<_> = t.failed_files().collect();
    assert_eq!(ff.len(), 1);
    assert_eq!(ff[0].path, missing.to_string_lossy());
    assert_eq!(ff[0].code, ErrorCode::PathMissing);
    assert_eq!(ff[0].reason, "no such file or directory");
    // The logger collected the failure in the indexer's log file (JSON lines).
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(data.path().join("logs/index.log")).unwrap_or_default();
        if log.contains("not here") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        log.contains(r#""level":"warning""#) && log.contains("not here"),
        "index.log: {log}"
    );

    // Request-level errors.
    let (s, b) = alice.post("/api/v2/put", &json!({"paths": []})).await;
    assert_error(s, &b, 400, "bad_request", "no paths given");
    let (s, b) = alice
        .post("/api/v2/put", &json!({"paths": ["/a", "", "relative/b"]}))
        .await;
    assert_error(s, &b, 400, "bad_request", "entry 2 is blank");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("entry 3 (\"relative/b\") is not an absolute path")
    );
    let (s, b) = alice
        .post("/api/v2/put", &json!({"paths": ["/a", "/b", "/a"]}))
        .await;
    assert_error(s, &b, 400, "bad_request", "entry 3 repeats entry 1");
    let many: Vec<String> = (0..100_000).map(|i| format!("/data/f{i}")).collect();
    let (s, b) = alice.post("/api/v2/put", &json!({"paths": many})).await;
    assert_error(s, &b, 413, "payload_too_large", "100000 paths");
    let (s, b) = alice
        .post("/api/v2/put", &json!({"paths": [f], "holding_id": 999_999}))
        .await;
    assert_error(s, &b, 404, "not_found", "holding 999999");
    let (s, b) = alice
        .post("/api/v2/get", &json!({"paths": [f], "holding_id": 999_999}))
        .await;
    assert_error(s, &b, 404, "not_found", "holding 999999");
    let (s, b) = alice
        .post("/api/v2/get", &json!({"paths": [".*"], "regex": true}))
        .await;
    assert_error(s, &b, 400, "bad_request", "can only search named holdings");
    let (s, b) = alice
        .post(
            "/api/v2/get",
            &json!({"paths": ["(unclosed"], "regex": true, "label": "mine"}),
        )
        .await;
    assert_error(s, &b, 400, "bad_request", "invalid regular expression");
    let (s, b) = alice
        .post(
            "/api/v2/get",
            &json!({"paths": [f], "target": "relative/dir"}),
        )
        .await;
    assert_error(s, &b, 400, "bad_request", "not an absolute path");
    let (s, b) = alice.get("/api/v2/transactions/not-a-uuid").await;
    assert_error(s, &b, 400, "bad_request", "not a valid transaction id");
    let (s, b) = alice
        .get(&format!("/api/v2/transactions/{}", uuid::Uuid::new_v4()))
        .await;
    assert_error(s, &b, 404, "not_found", "not found");
    let (s, b) = alice
        .raw_post("/api/v2/put", "{\"paths\": [", Some(&e.token))
        .await;
    assert_error(s, &b, 400, "bad_request", "invalid JSON body");
    let (s, b) = alice
        .raw_post("/api/v2/put", "{\"paths\": 7}", Some(&e.token))
        .await;
    assert_error(s, &b, 400, "bad_request", "invalid JSON body");
    let (s, b) = alice.raw_post("/api/v2/put", "{}", None).await;
    assert_error(s, &b, 401, "unauthorized", "missing bearer token");
    let (s, b) = alice
        .raw_post("/api/v2/put", "{}", Some("wrong-token-xxxxxxxxxxxx"))
        .await;
    assert_error(s, &b, 401, "unauthorized", "invalid or expired token");
    let (s, b) = alice.get("/api/v2/holdings?limit=abc").await;
    assert_error(s, &b, 400, "bad_request", "invalid query string");
    let (s, b) = alice.get("/api/v2/transactions?state=DANCING").await;
    assert_error(s, &b, 400, "bad_request", "DANCING");
    let (s, b) = alice
        .post("/api/v2/put", &json!({"paths": [f], "group": "ocean"}))
        .await;
    assert_error(s, &b, 403, "forbidden", "not a member of group ocean");

    // Another user's holding: bob can neither add to it nor see it, and his own label is his own.
    let (s, b) = bob
        .post("/api/v2/put", &json!({"paths": [f], "holding_id": hid}))
        .await;
    assert_error(s, &b, 403, "forbidden", "belongs to another user");
    let (s, b) = bob.get(&format!("/api/v2/holdings?holding_id={hid}")).await;
    assert_error(s, &b, 404, "not_found", &hid.to_string());
    let t = bob
        .put_and_wait(json!({"paths": [f], "label": "mine"}))
        .await;
    assert_eq!(t.state, State::Complete);
    let (_, bl) = bob.get("/api/v2/holdings?label=mine").await;
    assert_ne!(bl["holdings"][0]["id"].as_i64().unwrap(), hid);
    let (_, gl) = bob.get("/api/v2/holdings?groupall=true&label=mine").await;
    assert_eq!(gl["total"], 2, "groupall shows the group's holdings: {gl}");

    // Health, readiness and the OpenAPI document are served; unknown endpoints answer JSON 404s.
    let anon = Api::new(&e.url, "");
    for path in ["/healthz", "/readyz", "/api/v2/openapi.json"] {
        let r = anon
            .http
            .get(format!("{}{path}", e.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let (s, doc) = alice.get("/api/v2/openapi.json").await;
    assert_eq!(s, 200);
    for path in [
        "/api/v2/put",
        "/api/v2/get",
        "/api/v2/holdings",
        "/api/v2/files",
        "/api/v2/meta",
        "/api/v2/transactions",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    let (s, b) = alice.get("/api/v2/nowhere").await;
    assert_error(s, &b, 404, "not_found", "no such endpoint");

    // Nothing of alice's was lost along the way.
    let (_, list) = alice
        .get(&format!("/api/v2/holdings?holding_id={hid}"))
        .await;
    assert_eq!(list["holdings"][0]["files"], 1, "{list}");
    let tgt = temp();
    let t = alice
        .get_and_wait(json!({"paths": [f], "holding_id": hid, "target": tgt.path()}))
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let back = tgt.path().join(f.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(back).unwrap(), b"precious");
    e.stop().await.unwrap();
}

/// Unreadable files and directories fail with permission_denied. Root reads everything, so when
/// the tests run as root the server runs as `nobody` in a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_files_and_directories_fail_with_their_reason() {
    let base = tempfile::Builder::new()
        .prefix("nlds-perm-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let data = base.path().join("data");
    let src = base.path().join("src");
    std::fs::create_dir_all(src.join("closed")).unwrap();
    std::fs::write(src.join("open.txt"), b"ok").unwrap();
    std::fs::write(src.join("secret.txt"), b"no").unwrap();
    std::fs::write(src.join("closed/inside.txt"), b"no").unwrap();
    std::fs::set_permissions(
        src.join("secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(src.join("closed"), std::fs::Permissions::from_mode(0o000)).unwrap();

    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let mut cmd = if root {
        std::fs::create_dir_all(&data).unwrap();
        let chown = Command::new("chown")
            .args(["-R", "65534:65534", &data.to_string_lossy()])
            .status()
            .unwrap();
        assert!(chown.success());
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_nlds-server"),
        ]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_nlds-server"))
    };
    let mut child = cmd
        .args([
            "embedded",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data.to_string_lossy(),
        ])
        .env("RUST_LOG", "warn")
        .env("USER", "tester")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start nlds-server");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("server printed its URL").unwrap();
    let url = first.rsplit(' ').next().unwrap().to_owned();
    let client: toml::Value =
        toml::from_str(&std::fs::read_to_string(data.join("client.toml")).unwrap()).unwrap();
    let api = Api::new(&url, client["token"].as_str().unwrap());

    let t = api
        .put_and_wait(json!({"paths": [src], "label": "perm"}))
        .await;
    child.kill().ok();
    child.wait().ok();
    assert_eq!(t.state, State::CompleteWithErrors, "{t:#?}");
    let mut failed: Vec<_> = t
        .failed_files()
        .map(|f| (f.path.clone(), f.code, f.reason.clone()))
        .collect();
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    let secret = src.join("secret.txt").to_string_lossy().into_owned();
    let closed = src.join("closed").to_string_lossy().into_owned();
    assert!(
        failed.iter().any(|(p, c, r)| *p == secret
            && *c == ErrorCode::PermissionDenied
            && r.contains("permission denied")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|(p, c, _)| *p == closed && *c == ErrorCode::PermissionDenied),
        "{failed:?}"
    );
    assert_eq!(
        t.files_done, 1,
        "open.txt is stored (and the root directory, not counted as a file): {t:#?}"
    );
    let _ = Duration::from_secs(0);
}
