//! Quotas over the distributed mode (RabbitMQ, PostgreSQL, moto): puts racing to a group's limit
//! never end above it, a refused put stores nothing (no object in the bucket), and a legacy put
//! past the limit is refused in upstream's error shape.

use std::time::{Duration, Instant};

use nlds_workers::run::Settings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, bucket_keys, serve_api};
use crate::helpers::temp;

const ALICE: &str = "quota-alice-token-0123456789";
const ADMIN: &str = "quota-admin-token-0123456789";
const GROUP: &str = "farmers";

async fn start(settings: &Settings, stop: CancellationToken) -> String {
    let tokens = format!(
        "[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"{GROUP}\"]\n\
         [[token]]\ntoken = \"{ADMIN}\"\nuser = \"nlds\"\ngroups = [\"nlds\"]\nadmin = true\n"
    );
    serve_api(settings, &tokens, 20, stop).await
}

async fn call(
    url: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .query(query)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_racing_puts_end_at_the_limit_and_refused_ones_store_nothing() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let settings = svc.settings();
    let stop = CancellationToken::new();
    crate::distributed::start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start(&settings, stop.clone()).await;
    use reqwest::Method;

    let (s, v) = call(
        &url,
        Method::PUT,
        &format!("/api/v2/admin/quota/{GROUP}"),
        ADMIN,
        &[],
        Some(json!({"warm_bytes": 1000})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["groups"][0]["limits"]["warm_bytes"], 1000);
    // Users may not set quotas.
    let (s, _) = call(
        &url,
        Method::PUT,
        &format!("/api/v2/admin/quota/{GROUP}"),
        ALICE,
        &[],
        Some(json!({"warm_bytes": null})),
    )
    .await;
    assert_eq!(s, 403);

    // Six puts of a quarter of the limit each, at once.
    let dir = temp();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let f = dir.path().join(format!("f{i}.bin"));
        std::fs::write(&f, vec![b'x'; 250]).unwrap();
        let tid = uuid::Uuid::new_v4();
        let body = json!({"transaction_id": tid, "paths": [f.to_str().unwrap()],
            "label": format!("race{i}"), "size_hint": {"bytes": 250, "files": 1}});
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let (s, v) = call(&url, Method::POST, "/api/v2/put", ALICE, &[], Some(body)).await;
            (tid, s, v)
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for t in tasks {
        let (tid, s, v) = t.await.unwrap();
        match s {
            202 => accepted.push(tid),
            403 => {
                assert_eq!(v["error"]["code"], "quota_exceeded", "{v}");
                let m = v["error"]["message"].as_str().unwrap();
                for part in ["group farmers", "needs 250 B", "1000 B limit"] {
                    assert!(m.contains(part), "{part:?} not in {m}");
                }
                refused.push(tid);
            }
            _ => panic!("{s}: {v}"),
        }
    }
    assert_eq!((accepted.len(), refused.len()), (4, 2));

    // The accepted ones run to completion: usage ends at the limit, nothing reserved.
    let start = Instant::now();
    let q = loop {
        let (s, v) = call(&url, Method::GET, "/api/v2/quota", ALICE, &[], None).await;
        assert_eq!(s, 200, "{v}");
        let g = v["groups"][0].clone();
        assert!(g["usage"]["warm"]["bytes"].as_u64().unwrap() <= 1000, "{g}");
        if g["usage"]["warm"]["bytes"] == 1000 && g["reserved"]["bytes"] == 0 {
            break g;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "puts did not settle: {g}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(q["group"], GROUP);
    assert_eq!(q["usage"]["warm"]["files"], 4);
    let os = &settings.workers.object_store;
    for tid in &accepted {
        assert_eq!(bucket_keys(os, &format!("tx/{tid}/")).await.len(), 1);
    }
    for tid in &refused {
        assert!(
            bucket_keys(os, &format!("tx/{tid}/")).await.is_empty(),
            "a refused put stores no object"
        );
    }

    // An operator sees every group.
    let (s, v) = call(&url, Method::GET, "/api/v2/admin/quota", ADMIN, &[], None).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == GROUP),
        "{v}"
    );

    // A legacy put at the limit: refused with upstream's error shape (400, detail JSON string).
    let f = dir.path().join("legacy.bin");
    std::fs::write(&f, b"legacy").unwrap();
    let (s, v) = call(
        &url,
        Method::PUT,
        "/api/1.0.0/files/",
        ALICE,
        &[
            ("transaction_id", &uuid::Uuid::new_v4().to_string()),
            ("user", "alice"),
            ("group", GROUP),
        ],
        Some(json!({"filelist": [f.to_str().unwrap()]})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let detail: Value = serde_json::from_str(v["detail"].as_str().expect("detail string")).unwrap();
    assert_eq!(detail["loc"], json!(["None"]));
    let msg = detail["msg"].as_str().unwrap();
    assert!(
        msg.contains("group farmers would exceed its warm quota"),
        "{msg}"
    );
    stop.cancel();
}
