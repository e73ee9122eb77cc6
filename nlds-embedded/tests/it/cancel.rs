//! Cancel (issue 16): `POST /api/v2/transactions/{id}/cancel` stops a put or get in each state it
//! can be in (indexing, transferring, cataloguing, waiting for a recall), in the embedded process
//! and over RabbitMQ, PostgreSQL and S3: it ends CANCELLED (FAILED on `/api/1.0.0`), nothing it
//! uploaded is left uncatalogued, nothing is catalogued for it, and only its owner, a manager
//! of its group or an operator may cancel it (anyone else gets the 404 of an unknown one).

use std::path::Path;
use std::time::{Duration, Instant};

use nlds_core::State;
use nlds_core::api::TransactionStatus;
use nlds_hooks::{control, points};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cli::Cli;
use crate::distributed::{Services, bucket_keys, serve_api, spawn_role, start_roles, wait_removed};
use crate::helpers::{Api, ServerProcess, stored_objects, temp};
use crate::waiting;

const ALICE: &str = "cancel-alice-token-0123456789ab";
/// Another member of alice's group, no manager.
const BOB: &str = "cancel-bob-token-0123456789abcd";
/// A manager of alice's group.
const MONA: &str = "cancel-mona-token-0123456789abc";
/// An operator.
const ROOT: &str = "cancel-root-token-0123456789abc";
/// Another group.
const CAROL: &str = "cancel-carol-token-0123456789ab";

fn tokens() -> String {
    format!(
        "[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\
         [[token]]\ntoken = \"{BOB}\"\nuser = \"bob\"\ngroups = [\"climate\"]\n\
         [[token]]\ntoken = \"{MONA}\"\nuser = \"mona\"\ngroups = [\"climate\"]\nroles = {{ climate = \"manager\" }}\n\
         [[token]]\ntoken = \"{ROOT}\"\nuser = \"root\"\ngroups = [\"ops\"]\nadmin = true\n\
         [[token]]\ntoken = \"{CAROL}\"\nuser = \"carol\"\ngroups = [\"ocean\"]\n"
    )
}

/// The states a put is cancelled in here: where it is held (a pause point of the role that does
/// that step) and who cancels it.
const PUT_CASES: [(&str, &str, &str); 3] = [
    // Indexing: the indexer has not walked the tree yet.
    (points::INDEX_BEFORE_WALK, ALICE, "indexing"),
    // Transferring: transfer-put is about to open its first file.
    (points::PUT_BEFORE_OPEN, MONA, "transferring"),
    // Cataloguing: the objects are uploaded, the catalogue is about to record them.
    (points::CATALOG_BEFORE_PUT, ROOT, "cataloguing"),
];

async fn reached(pause: &Path, point: &'static str) {
    let dir = pause.to_owned();
    tokio::task::spawn_blocking(move || control::reached(&dir, point, Duration::from_secs(120)))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{point} never reached"));
}

/// Waits for `tid` to end, as `api`'s caller sees it.
async fn ended(api: &Api, tid: &str) -> TransactionStatus {
    api.wait(tid, Duration::from_secs(120)).await
}

/// A put of three files, held at `point` and cancelled there by `canceller`: checks who may
/// not cancel it, the answers, and that it ends CANCELLED with nothing catalogued (and, if
/// `heard`, that transfer-put dropped the file it held); returns its id once it ended.
async fn cancel_a_put(
    url: &str,
    pause: &Path,
    point: &'static str,
    canceller: &str,
    label: &str,
    heard: bool,
) -> String {
    let alice = Api::new(url, ALICE);
    let src = temp();
    for i in 0..3 {
        std::fs::write(
            src.path().join(format!("f{i}")),
            format!("{label} file {i}"),
        )
        .unwrap();
    }
    control::arm(pause, point).unwrap();
    let (code, accepted) = alice
        .post(
            "/api/v2/put",
            &json!({"paths": [src.path()], "label": label}),
        )
        .await;
    assert_eq!(code, 202, "{accepted}");
    let tid = accepted["transaction_id"].as_str().unwrap().to_owned();
    reached(pause, point).await;
    let path = format!("/api/v2/transactions/{tid}/cancel");

    // Held at a step: it waits for that step (docs/WAITING.md), and the admin view says so.
    let operator = Api::new(url, ROOT);
    let queued = waiting::until_waiting(&alice, &tid, "queued").await;
    assert!(
        queued["step"].as_str().is_some_and(|s| !s.is_empty()) && queued["since"].is_string(),
        "{label}: {queued}"
    );
    assert!(
        waiting::admin_waiting(&operator, "queued")
            .await
            .contains(&tid)
    );
    assert!(
        !waiting::admin_waiting(&operator, "cancelled")
            .await
            .contains(&tid)
    );

    // Neither a plain member of the group nor someone of another group may cancel it, or learn
    // that it exists.
    for other in [BOB, CAROL] {
        let (code, body) = Api::new(url, other).post(&path, &Value::Null).await;
        assert_eq!(code, 404, "{label}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    }
    let (code, body) = Api::new(url, canceller).post(&path, &Value::Null).await;
    assert_eq!(code, 202, "{label}: {body}");
    assert_eq!(body["transaction_id"], tid.as_str());
    assert_eq!(body["first"], true, "{body}");
    let at: State = serde_json::from_value(body["state"].clone()).unwrap();
    assert!(!at.is_final(), "{label}: cancelled while {at}");
    // Again: recorded already, nothing changes.
    let (code, again) = alice.post(&path, &Value::Null).await;
    assert_eq!((code, &again["first"]), (202, &json!(false)), "{again}");
    // Still held: every batch that has not ended now waits to end as cancelled.
    let cancelled = waiting::until_waiting(&alice, &tid, "cancelled").await;
    assert!(cancelled["since"].is_string(), "{cancelled}");
    assert!(
        waiting::admin_waiting(&operator, "cancelled")
            .await
            .contains(&tid)
    );
    assert!(
        !waiting::admin_waiting(&operator, "queued")
            .await
            .contains(&tid)
    );

    control::release(pause, point).unwrap();
    let t = ended(&alice, &tid).await;
    assert_eq!(t.state, State::Cancelled, "{label}: {t:#?}");
    // Every file it did not store is reported, as cancelled.
    let failed: Vec<_> = t.failed_files().collect();
    assert!(
        !failed.is_empty()
            && failed
                .iter()
                .all(|f| f.code == nlds_core::ErrorCode::Cancelled),
        "{label}: {failed:#?}"
    );
    assert!(
        failed.iter().all(|f| f.reason.starts_with("cancelled")),
        "{failed:#?}"
    );
    if heard && point == points::PUT_BEFORE_OPEN {
        // transfer-put heard of the cancel while it held the file: it did not upload it.
        assert!(
            failed.iter().any(|f| f.reason.contains("was not uploaded")),
            "{failed:#?}"
        );
    }

    // Nothing was catalogued for it.
    let (code, files) = alice.get(&format!("/api/v2/files?label={label}")).await;
    let listed = files["files"].as_array().map_or(0, |f| f.len());
    assert!(code == 404 || listed == 0, "{label}: {code} {files}");

    // Ended: nothing waits any more.
    let (_, left) = waiting::reasons(&alice, &tid).await;
    assert!(left.is_empty(), "{label}: {left:?}");

    // Ended: a cancel now is a 409 that names how it ended.
    let (code, body) = alice.post(&path, &Value::Null).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CANCELLED"),
        "{body}"
    );
    // On /api/1.0.0 it failed, with the reason.
    let legacy = legacy_status(url, &tid, Value::Null).await;
    let subs = legacy["data"]["records"][0]["sub_records"]
        .as_array()
        .unwrap_or_else(|| panic!("{label}: no sub-records on /api/1.0.0: {legacy}"))
        .clone();
    assert!(
        !subs.is_empty() && subs.iter().all(|s| s["state"] == "FAILED"),
        "{legacy}"
    );
    assert!(
        subs.iter()
            .flat_map(|s| s["failed_files"].as_array().unwrap())
            .any(|f| f["reason"].as_str().unwrap().starts_with("cancelled")),
        "{legacy}"
    );
    // Its clients' FAILED filter finds it.
    let failed = legacy_status(url, &tid, json!(["FAILED"])).await;
    assert_eq!(
        failed["data"]["records"][0]["transaction_id"],
        tid.as_str(),
        "{failed}"
    );
    tid
}

/// `GET /api/1.0.0/status/` of alice's transaction `tid`, as the published client asks it.
async fn legacy_status(url: &str, tid: &str, state: Value) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{url}/api/1.0.0/status/"))
        .bearer_auth(ALICE)
        .query(&[
            ("user", "alice"),
            ("group", "climate"),
            ("groupall", "False"),
            ("transaction_id", tid),
        ])
        .json(&json!({"api_action": null, "exclude_api_action": null, "state": state}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    // The body is a JSON string holding the JSON document, as upstream's.
    let body: Value = r.json().await.unwrap();
    serde_json::from_str(body.as_str().expect("a JSON string")).unwrap()
}

/// Waits until `keys()` holds no object of transaction `tid` (the removals of what it uploaded
/// run after it ended).
async fn no_objects_of<F, Fut>(tid: &str, keys: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let start = Instant::now();
    loop {
        let left: Vec<String> = keys()
            .await
            .into_iter()
            .filter(|k| k.starts_with(&format!("tx/{tid}/")))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "objects of cancelled transaction {tid} left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_is_cancelled_while_indexing_transferring_or_cataloguing_embedded() {
    let (data, logs, pause) = (temp(), temp(), temp());
    std::fs::create_dir_all(data.path()).unwrap();
    std::fs::write(data.path().join("tokens.toml"), tokens()).unwrap();
    let server = ServerProcess::start_with(
        data.path(),
        logs.path(),
        "warn",
        &[(nlds_hooks::ENV, pause.path().as_os_str())],
        &[],
    )
    .await;
    for (point, who, label) in PUT_CASES {
        let tid = cancel_a_put(&server.url, pause.path(), point, who, label, true).await;
        let dir = data.path().to_owned();
        no_objects_of(&tid, || {
            let d = dir.clone();
            async move { stored_objects(&d).into_iter().collect() }
        })
        .await;
    }
    // The same from the command line: `nlds cancel`, then `nlds wait` says how it ended.
    let src = temp();
    std::fs::write(src.path().join("c0"), "by the cli").unwrap();
    control::arm(pause.path(), points::PUT_BEFORE_OPEN).unwrap();
    let (code, accepted) = Api::new(&server.url, ALICE)
        .post(
            "/api/v2/put",
            &json!({"paths": [src.path()], "label": "cli"}),
        )
        .await;
    assert_eq!(code, 202, "{accepted}");
    let tid = accepted["transaction_id"].as_str().unwrap().to_owned();
    reached(pause.path(), points::PUT_BEFORE_OPEN).await;
    let cli = Cli {
        url: server.url.clone(),
        token: ALICE.to_owned(),
        cwd: src.path().to_owned(),
    };
    let said = cli.ok(&["cancel", &tid]);
    assert!(said.contains(&format!("Cancelling put {tid}")), "{said}");
    control::release(pause.path(), points::PUT_BEFORE_OPEN).unwrap();
    let (code, said) = cli.fails(&["wait", &tid, "--poll", "100ms"]);
    assert_eq!(code, 13, "ended CANCELLED: {said}");
    assert!(said.contains("CANCELLED"), "{said}");
    let (code, said) = cli.fails(&["cancel", &tid]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("has already ended CANCELLED"), "{said}");
    let (code, said) = cli.fails(&["cancel", &uuid::Uuid::new_v4().to_string()]);
    assert_eq!(code, 5, "{said}");

    // Bad input: a malformed id names the value; an unknown one is the same 404.
    let alice = Api::new(&server.url, ALICE);
    let (code, body) = alice
        .post("/api/v2/transactions/not-a-uuid/cancel", &Value::Null)
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not-a-uuid"),
        "{body}"
    );
    let (code, _) = alice
        .post(
            &format!("/api/v2/transactions/{}/cancel", uuid::Uuid::new_v4()),
            &Value::Null,
        )
        .await;
    assert_eq!(code, 404);
    // A put that ran to its end is not cancelled: 409 naming its state, files kept.
    let src = temp();
    std::fs::write(src.path().join("kept"), "kept").unwrap();
    let done = alice
        .put_and_wait(json!({"paths": [src.path()], "label": "kept"}))
        .await;
    assert_eq!(done.state, State::Complete);
    let (code, body) = alice
        .post(
            &format!("/api/v2/transactions/{}/cancel", done.transaction_id),
            &Value::Null,
        )
        .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("COMPLETE"),
        "{body}"
    );
    let (_, files) = alice.get("/api/v2/files?label=kept").await;
    assert_eq!(files["files"].as_array().unwrap().len(), 2, "{files}");
}

/// A get that waits for its files' recall from tape (staging takes ten minutes here) is cancelled
/// at once: its batch ends, nothing waits for the recall any more, nothing is restored.
async fn cancel_a_recall(url: &str, operator: &str, target: &Path, db: &DatabaseConnection) {
    let alice = Api::new(url, ALICE);
    let root = Api::new(url, operator);
    let src = temp();
    for i in 0..3 {
        std::fs::write(src.path().join(format!("m{i}")), format!("member {i}")).unwrap();
    }
    let put = alice
        .put_and_wait(json!({"paths": [src.path()], "label": "taped"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    // The operator archives and evicts it with `nlds admin` (alice may not).
    let home = temp();
    let cwd = home.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let as_cli = |token: &str| Cli {
        url: url.to_owned(),
        token: token.to_owned(),
        cwd: cwd.clone(),
    };
    let holding = put.holding_id.unwrap().to_string();
    for args in [&["admin", "archive"][..], &["admin", "evict", &holding]] {
        let (code, said) = as_cli(ALICE).fails(args);
        assert!(
            code != 0 && said.contains("is not a service operator"),
            "{args:?}: {code} {said}"
        );
    }
    let operator = as_cli(operator);
    let said = operator.ok(&["admin", "archive"]);
    assert!(said.starts_with("archive round "), "{said}");
    let start = Instant::now();
    loop {
        let out = operator.ok(&["--json", "admin", "evict", &holding]);
        let evicted: nlds_core::api::Evicted = serde_json::from_str(&out).unwrap();
        if evicted.files == 3 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never archived: {out}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Evicted already: nothing more to drop, and it says so.
    let said = operator.ok(&["admin", "evict", &holding]);
    assert!(said.contains("no warm copy to drop"), "{said}");
    let (code, r) = alice
        .post(
            "/api/v2/get",
            &json!({"paths": [src.path()], "label": "taped", "target": target}),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    let tid = r["transaction_id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let (_, t) = alice.get(&format!("/api/v2/transactions/{tid}")).await;
        if t["state"] == "ARCHIVE_PREPARING" && waiting(db).await > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never waited for tape: {t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It says so: the aggregate it waits for, since when (docs/WAITING.md); so does the admin
    // view.
    let (t, reasons) = waiting::reasons(&alice, &tid).await;
    let tape: Vec<_> = reasons.iter().filter(|w| w["reason"] == "tape").collect();
    assert!(
        !tape.is_empty()
            && tape.iter().all(|w| {
                w["aggregate"].as_str().is_some_and(|a| !a.is_empty())
                    && w["since"].is_string()
                    && w["staging"].is_boolean()
            }),
        "{t:#}"
    );
    assert!(waiting::admin_waiting(&root, "tape").await.contains(&tid));
    assert!(
        !waiting::admin_waiting(&root, "retrying")
            .await
            .contains(&tid)
    );
    let (code, body) = alice
        .post(&format!("/api/v2/transactions/{tid}/cancel"), &Value::Null)
        .await;
    assert_eq!(code, 202, "{body}");
    // Not ended (the get's directory may still be restored beside the batch waiting for tape,
    // which then shows as the transaction's state), and its batch waiting for tape ended at once.
    let at: State = serde_json::from_value(body["state"].clone()).unwrap();
    assert!(!at.is_final(), "{body}");
    assert!(body["waiting_ended"].as_u64().unwrap() >= 1, "{body}");
    // Ends long before the stage would have.
    let t = ended(&alice, &tid).await;
    assert_eq!(t.state, State::Cancelled, "{t:#?}");
    assert_eq!(waiting(db).await, 0, "a batch still waits for the recall");
    assert!(
        t.failed_files()
            .all(|f| f.code == nlds_core::ErrorCode::Cancelled)
            && t.failed_files().count() == 3,
        "{t:#?}"
    );
    let restored: Vec<_> = walkdir::WalkDir::new(target)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .collect();
    assert!(
        restored.is_empty(),
        "restored after the cancel: {restored:?}"
    );
}

/// How many get batches wait for a recall (`recall_request` rows).
async fn waiting(db: &DatabaseConnection) -> i64 {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT COUNT(*) AS n FROM recall_request".to_owned(),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_get_waiting_for_a_recall_is_cancelled_at_once_embedded() {
    let (data, logs) = (temp(), temp());
    std::fs::create_dir_all(data.path()).unwrap();
    std::fs::write(data.path().join("tokens.toml"), tokens()).unwrap();
    let server = ServerProcess::start_with(
        data.path(),
        logs.path(),
        "warn",
        &[],
        &[
            "workers.archive.interval_secs=0",
            "workers.archive.recall_poll_secs=1",
            "workers.cold.dir.stage_delay_ms=600000",
            "policy.get_pin_secs=0",
        ],
    )
    .await;
    let db = sea_orm::Database::connect(format!(
        "sqlite://{}?mode=ro",
        data.path().join("nlds.db").display()
    ))
    .await
    .unwrap();
    let target = temp();
    cancel_a_recall(&server.url, ROOT, target.path(), &db).await;
}

/// Role processes, killed when the test ends, passed or not (before its services go).
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// The distributed services with every role in this process but `paused` (started as their
/// own processes, with the pause directory), and an API with this file's tokens.
async fn distributed(
    svc: &Services,
    paused: &[&str],
    pause: &Path,
    dir: &Path,
    stop: &CancellationToken,
) -> (String, nlds_server::ServerSettings, Children) {
    let mut settings = svc.settings();
    settings.workers.archive.interval_secs = 0;
    settings.workers.archive.recall_poll_secs = 1;
    settings.workers.cold.dir_mut().stage_delay_ms = 600_000;
    settings.policy.get_pin_secs = 0;
    let config = dir.join("workers.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
    let children = Children(
        paused
            .iter()
            .map(|role| spawn_role(&config, role, Some(pause)))
            .collect(),
    );
    let others: Vec<_> = nlds_workers::run::all_roles()
        .into_iter()
        .filter(|r| !paused.contains(&r.as_str()))
        .collect();
    start_roles(&settings, others, stop.clone());
    let url = serve_api(&settings, &tokens(), 30, stop.clone()).await;
    (url, settings, children)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_or_a_recall_is_cancelled_in_each_state_distributed() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let (pause, dir) = (temp(), temp());
    let stop = CancellationToken::new();
    let (url, settings, _children) = distributed(
        &svc,
        &["indexer", "transfer-put", "catalogue"],
        pause.path(),
        dir.path(),
        &stop,
    )
    .await;
    let os = settings.workers.object_store.clone();
    for (point, who, label) in PUT_CASES {
        // Whether transfer-put heard the announcement before its file was let go is a race
        // over the broker here: the catalogue's check stops the batch either way.
        let tid = cancel_a_put(&url, pause.path(), point, who, label, false).await;
        let os = os.clone();
        no_objects_of(&tid, || {
            let os = os.clone();
            async move { bucket_keys(&os, "tx/").await }
        })
        .await;
    }
    let db = sea_orm::Database::connect(&svc.database_url).await.unwrap();
    let target = temp();
    cancel_a_recall(&url, ROOT, target.path(), &db).await;
    // Nothing of any cancelled transaction is left in the bucket: every object there is a
    // catalogued one (only the taped put's files remain, cold, their warm copies evicted).
    wait_removed(&os, "tx/").await;
    stop.cancel();
}
