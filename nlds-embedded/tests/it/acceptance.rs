//! Crashes while a request is being accepted, and between a committed change and the messages it
//! implies, in distributed mode over real RabbitMQ, PostgreSQL and S3 (moto).
//!
//! The API process (`nlds-server serve`) is paused at each point of accepting a put or get and
//! killed (-9) there: what is left is either nothing visible, or a transaction that runs to
//! completion; and a client retry with the same transaction id finds it and submits nothing
//! twice. The catalogue process (`nlds-workers catalogue-rpc`) is killed after committing a delete
//! and a purge but before its relay published the messages they imply: when it runs again, the
//! delete is on record and the purged objects are removed.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use nlds_core::api::ApiAction;
use nlds_core::message::{HoldingFilter, RpcReply};
use nlds_core::{AccessRole, Action, Envelope, Payload, Role, RoutingKey, State, Worker};
use nlds_hooks::{control, points};
use nlds_workers::run::Settings;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::distributed::{
    Services, TOKEN, bucket_keys, spawn_server, start_roles, start_server, wait_healthy,
    wait_removed, workers_binary,
};
use crate::helpers::{Api, make_tree, temp};

/// How long a process may take to reach a pause point.
const REACH: Duration = Duration::from_secs(60);

fn kill(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Puts (or gets) `body` through a fresh API process paused at `point`, and kills the process
/// there. The request never gets an answer.
async fn submit_and_kill(settings: &Settings, point: &str, path: &str, body: serde_json::Value) {
    let dir = temp();
    let pause = temp();
    control::arm(pause.path(), point).unwrap();
    let (child, url) = spawn_server(dir.path(), settings, Some(pause.path()));
    wait_healthy(&url).await;
    let request = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{url}{path}"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send(),
    );
    let reached = tokio::task::spawn_blocking({
        let dir = pause.path().to_owned();
        let point = point.to_owned();
        move || control::reached(&dir, &point, REACH)
    })
    .await
    .unwrap();
    assert!(reached.is_some(), "the API never paused at {point}");
    kill(child);
    let answer = request.await.unwrap();
    assert!(
        answer.is_err(),
        "the request was answered although the API died before: {answer:?}"
    );
}

/// The number of files a holding labelled `label` holds, as `alice` sees it (none when no such
/// holding is visible).
async fn files_in(api: &Api, label: &str) -> usize {
    let (s, r) = api
        .get(&format!("/api/v2/files?label={label}&limit=10000"))
        .await;
    if s == 404 {
        return 0;
    }
    assert_eq!(s, 200, "{r}");
    r["files"].as_array().map_or(0, Vec::len)
}

/// The number of holdings labelled `label` `alice` sees.
async fn holdings_labelled(api: &Api, label: &str) -> usize {
    let (s, r) = api.get(&format!("/api/v2/holdings?label={label}")).await;
    if s == 404 {
        return 0;
    }
    assert_eq!(s, 200, "{r}");
    r["holdings"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_killed_at_any_point_of_accepting_leaves_nothing_or_a_transaction_that_completes() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let settings = svc.settings();
    let stop = CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);
    let os = &settings.workers.object_store;
    let src = temp();
    let n = make_tree(src.path(), 12, 0);
    // Entries (files, directories, the link) a complete put of the tree lists, once known.
    let mut listed: Option<usize> = None;

    for (i, point) in [
        points::API_BEFORE_ACCEPT,
        points::API_BEFORE_RECORD,
        points::API_BEFORE_ANSWER,
    ]
    .into_iter()
    .enumerate()
    {
        let label = format!("accept-{i}");
        let tid = Uuid::new_v4();
        let body = json!({"paths": [src.path()], "label": label, "transaction_id": tid});
        submit_and_kill(&settings, point, "/api/v2/put", body.clone()).await;

        if point == points::API_BEFORE_ACCEPT {
            // Nothing was accepted: nothing is visible, not even an empty holding.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (s, r) = api.get(&format!("/api/v2/transactions/{tid}")).await;
            assert_eq!(s, 404, "{point}: {r}");
            assert_eq!(holdings_labelled(&api, &label).await, 0, "{point}");
        } else {
            // Accepted: the put runs to completion without the API that accepted it.
            let t = api.wait(&tid.to_string(), Duration::from_secs(300)).await;
            assert_eq!(t.state, State::Complete, "{point}: {t:#?}");
            assert_eq!(t.label.as_deref(), Some(label.as_str()), "{point}: {t:#?}");
            let entries = files_in(&api, &label).await;
            assert_eq!(*listed.get_or_insert(entries), entries, "{point}");
        }

        // The client retries with the same id: it finds the transaction (or starts it, the
        // first time it is accepted), and the files are stored once.
        let (s, r) = api.post("/api/v2/put", &body).await;
        assert_eq!(s, 202, "{point}: {r}");
        assert_eq!(r["transaction_id"], json!(tid), "{point}");
        let t = api.wait(&tid.to_string(), Duration::from_secs(300)).await;
        assert_eq!(t.state, State::Complete, "{point}: {t:#?}");
        assert_eq!(t.files_failed, 0, "{point}: {t:#?}");
        let entries = files_in(&api, &label).await;
        assert!(entries > n, "{point}: {entries} entries listed");
        assert_eq!(*listed.get_or_insert(entries), entries, "{point}");
        assert_eq!(holdings_labelled(&api, &label).await, 1, "{point}");
        assert_eq!(
            bucket_keys(os, &format!("tx/{tid}/")).await.len(),
            n,
            "{point}: every file stored once"
        );
    }

    // A get accepted by the catalogue runs to completion without the API.
    let target = temp();
    let tid = Uuid::new_v4();
    let body = json!({"paths": [src.path()], "label": "accept-1", "transaction_id": tid,
        "target": target.path()});
    submit_and_kill(&settings, points::API_BEFORE_RECORD, "/api/v2/get", body).await;
    let t = api.wait(&tid.to_string(), Duration::from_secs(300)).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let restored = walkdir::WalkDir::new(target.path())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count();
    assert_eq!(restored, n, "the get restored every file");
    stop.cancel();
}

fn spawn_catalogue(config: &Path, pause: &Path) -> Child {
    Command::new(workers_binary())
        .args(["--config", &config.to_string_lossy(), "catalogue-rpc"])
        .env("RUST_LOG", "warn")
        .env(nlds_hooks::ENV, pause)
        .spawn()
        .unwrap()
}

/// Sends `payload` to the catalogue as an RPC, as the API does.
async fn catalogue_rpc(
    settings: &Settings,
    action: Action,
    tid: Uuid,
    api_action: ApiAction,
    role: AccessRole,
    payload: Payload,
) -> RpcReply {
    let bus = nlds_workers::run::connect_bus(&settings.bus).await.unwrap();
    let env =
        Envelope::new(tid, "alice", "climate", api_action, "acceptance", payload).with_role(role);
    let reply = bus
        .rpc(
            RoutingKey::new(Worker::Catalog, action),
            &env,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let Payload::Reply(r) = reply.payload else {
        panic!("not a reply: {reply:?}")
    };
    r
}

/// Waits until the catalogue's relay pauses before publishing, then kills the catalogue.
async fn kill_at_relay(child: Child, pause: &Path) {
    let dir = pause.to_owned();
    let reached = tokio::task::spawn_blocking(move || {
        control::reached(&dir, points::OUTBOX_BEFORE_PUBLISH, REACH)
    })
    .await
    .unwrap();
    assert!(
        reached.is_some(),
        "the relay never paused before publishing"
    );
    kill(child);
    for f in ["arm", "taken", "reached", "go"] {
        let _ = std::fs::remove_file(pause.join(format!("{}.{f}", points::OUTBOX_BEFORE_PUBLISH)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_catalogue_killed_between_commit_and_publish_loses_no_record_and_orphans_nothing() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let settings = svc.settings();
    let os = &settings.workers.object_store;

    // A put, with every role in this process.
    let stop = CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);
    let src = temp();
    let n = make_tree(src.path(), 10, 0);
    let t = api
        .put_and_wait(json!({"paths": [src.path()], "label": "kept-apart"}))
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let put = t.transaction_id;
    assert_eq!(bucket_keys(os, &format!("tx/{put}/")).await.len(), n);
    stop.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // From now on the catalogue's RPCs and its relay run in their own process.
    let stop = CancellationToken::new();
    let others: Vec<Role> = nlds_workers::run::all_roles()
        .into_iter()
        .filter(|r| !matches!(r, Role::Catalogue | Role::CatalogueRpc))
        .collect();
    start_roles(&settings, others, stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);
    let dir = temp();
    let config = dir.path().join("workers.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
    let pause = temp();

    // The delete commits; the catalogue dies before its record is published.
    control::arm(pause.path(), points::OUTBOX_BEFORE_PUBLISH).unwrap();
    let child = spawn_catalogue(&config, pause.path());
    let del = Uuid::new_v4();
    let filter = HoldingFilter {
        label: Some("kept-apart".into()),
        descending: true,
        ..Default::default()
    };
    let payload = Payload::Delete {
        filter,
        paths: vec![],
        regex: false,
        dry_run: false,
    };
    let reply = catalogue_rpc(
        &settings,
        Action::Del,
        del,
        ApiAction::Del,
        AccessRole::User,
        payload,
    )
    .await;
    assert!(matches!(reply, RpcReply::Deleted(_)), "{reply:?}");
    kill_at_relay(child, pause.path()).await;
    let (s, r) = api.get(&format!("/api/v2/transactions/{del}")).await;
    assert_eq!(s, 404, "the record was not published before the crash: {r}");

    // The catalogue runs again: its relay publishes what the crash left staged.
    let child = spawn_catalogue(&config, pause.path());
    let t = api.wait(&del.to_string(), Duration::from_secs(60)).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    assert_eq!(files_in(&api, "kept-apart").await, 0);

    // The purge commits; the catalogue dies before the removals are published.
    control::arm(pause.path(), points::OUTBOX_BEFORE_PUBLISH).unwrap();
    let payload = Payload::Purge { holding_id: None };
    let reply = catalogue_rpc(
        &settings,
        Action::Purge,
        Uuid::new_v4(),
        ApiAction::Get,
        AccessRole::Admin,
        payload,
    )
    .await;
    let RpcReply::Purged { summary, .. } = reply else {
        panic!("catalog.purge did not answer with a summary: {reply:?}")
    };
    assert_eq!(summary.objects as usize, n, "{summary:?}");
    kill_at_relay(child, pause.path()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        bucket_keys(os, &format!("tx/{put}/")).await.len(),
        n,
        "the removals were not published before the crash"
    );

    // The catalogue runs again: every purged object is removed.
    let child = spawn_catalogue(&config, pause.path());
    wait_removed(os, &format!("tx/{put}/")).await;
    kill(child);
    stop.cancel();
}
