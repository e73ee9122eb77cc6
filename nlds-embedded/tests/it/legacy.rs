//! `/api/1.0.0` over the distributed mode (RabbitMQ, PostgreSQL, moto): the legacy adapter drives
//! the same pipeline as the native API, its error shapes are the ones the Python client parses,
//! and the system status pages ping the real consumers. (The published Python client itself is
//! driven in `python_client.rs`.)

use std::time::{Duration, Instant};

use nlds_workers::run::Settings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, serve_api};
use crate::helpers::temp;

const ALICE: &str = "legacy-alice-token-0123456789";
const BOB: &str = "legacy-bob-token-0123456789ab";
const ADMIN: &str = "legacy-admin-token-0123456789";
const SECRET: &str = "S3cr3t-Never-Logged-7f3a9";

async fn start(settings: &Settings, stop: CancellationToken) -> String {
    let tokens = format!(
        "[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"farmers\"]\n\
         [[token]]\ntoken = \"{BOB}\"\nuser = \"bob\"\ngroups = [\"farmers\", \"fishers\"]\n\
         [[token]]\ntoken = \"{ADMIN}\"\nuser = \"nlds\"\ngroups = [\"nlds\"]\nadmin = true\n"
    );
    serve_api(settings, &tokens, 20, stop).await
}

struct Legacy {
    url: String,
    http: reqwest::Client,
}

impl Legacy {
    /// Sends like the Python client: JSON body on every method, Python booleans in the query.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
        body: Value,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .query(query)
            .header("cache-control", "no-cache")
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        // Success bodies are a JSON string holding JSON, as upstream answers.
        let v = match (status, v) {
            (200 | 202, Value::String(s)) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
            (_, v) => v,
        };
        (status, v)
    }

    /// The `msg` of an error answer (`detail` is itself a JSON string).
    fn msg(v: &Value) -> String {
        let d: Value = serde_json::from_str(v["detail"].as_str().expect("detail string")).unwrap();
        d["msg"].as_str().unwrap().to_owned()
    }

    async fn wait(&self, token: &str, user: &str, tid: &str) -> Value {
        let start = Instant::now();
        loop {
            let (s, v) = self
                .call(
                    reqwest::Method::GET,
                    "/api/1.0.0/status/",
                    Some(token),
                    &[
                        ("user", user),
                        ("group", "farmers"),
                        ("groupall", "False"),
                        ("transaction_id", tid),
                    ],
                    json!({"api_action": null, "exclude_api_action": null, "state": null}),
                )
                .await;
            assert_eq!(s, 202, "{v}");
            if let Some(r) = v["data"]["records"].get(0) {
                let states: Vec<&str> = r["sub_records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["state"].as_str().unwrap())
                    .filter(|s| *s != "SPLIT")
                    .collect();
                if !states.is_empty() && states.iter().all(|s| ["COMPLETE", "FAILED"].contains(s)) {
                    return r.clone();
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{tid} not finished: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn legacy_api_drives_the_distributed_pipeline_with_upstream_shapes() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let settings = svc.settings();
    let stop = CancellationToken::new();
    crate::distributed::start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start(&settings, stop.clone()).await;
    let api = Legacy {
        url,
        http: reqwest::Client::new(),
    };
    let dir = temp();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("sub/b.nc"), b"beta").unwrap();
    let src_s = src.to_str().unwrap().to_owned();
    let missing = format!("{src_s}/missing.nc");
    use reqwest::Method;

    // put: a JSON string holding FileResponse; a blank line the client made absolute is dropped.
    let tid = uuid::Uuid::new_v4().to_string();
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/1.0.0/files/",
            Some(ALICE),
            &[
                ("transaction_id", &tid),
                ("user", "alice"),
                ("group", "farmers"),
                ("access_key", "AKIA-LEGACY"),
                ("secret_key", SECRET),
                ("tenancy", "tenancy.example"),
                ("job_label", "legacy-job"),
            ],
            json!({"filelist": [format!("{src_s}\n"), format!("{}/\n", dir.path().display()), missing.clone()],
                   "label": "legacy-run", "tag": {"site": "ral"}}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["msg"], "putlist transaction accepted for processing.");
    assert_eq!(v["transaction_id"], tid.as_str());
    assert_eq!(v["api_action"], "putlist");
    assert_eq!(v["job_label"], "legacy-job");
    assert_eq!(v["tenancy"], "tenancy.example");
    assert_eq!(v["label"], "legacy-run");
    assert!(v["holding_id"].as_i64().unwrap() > 0, "{v}");
    assert_eq!(v["tag"], json!({"site": "ral"}));
    assert!(!v.to_string().contains(SECRET));

    // stat: records with sub-records and failed_files; the missing path is COMPLETE + FAILED.
    let rec = api.wait(ALICE, "alice", &tid).await;
    assert_eq!(rec["api_action"], "putlist");
    assert_eq!(rec["label"], "legacy-run");
    assert!(
        !rec["creation_time"].as_str().unwrap().contains('+'),
        "naive ISO times: {rec}"
    );
    let subs = rec["sub_records"].as_array().unwrap();
    assert!(subs.iter().any(|s| s["state"] == "COMPLETE"), "{rec}");
    let failed: Vec<&Value> = subs
        .iter()
        .flat_map(|s| s["failed_files"].as_array().unwrap())
        .collect();
    assert_eq!(failed.len(), 1, "{rec}");
    assert_eq!(failed[0]["filepath"], missing.as_str());
    assert!(
        subs.iter()
            .any(|s| s["state"] == "FAILED" && !s["failed_files"].as_array().unwrap().is_empty()),
        "the failed file sits in a FAILED sub-record so the client derives COMPLETE_WITH_ERRORS: {rec}"
    );
    // The state filter uses the derived state.
    let q = [("user", "alice"), ("group", "farmers")];
    let (_, v) = api
        .call(
            Method::GET,
            "/api/1.0.0/status/",
            Some(ALICE),
            &q,
            json!({"state": ["COMPLETE_WITH_ERRORS"]}),
        )
        .await;
    assert_eq!(v["data"]["records"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = api
        .call(
            Method::GET,
            "/api/1.0.0/status/",
            Some(ALICE),
            &q,
            json!({"state": ["FAILED"]}),
        )
        .await;
    assert!(
        v["details"]["failure"]
            .as_str()
            .unwrap()
            .contains("no transaction records found"),
        "{v}"
    );
    let (s, v) = api
        .call(
            Method::GET,
            "/api/1.0.0/status/",
            Some(ALICE),
            &q,
            json!({"state": ["complete"]}),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(Legacy::msg(&v), "Given State: complete is not valid.");

    // find: keyed by label, the blank line did not put the parent directory.
    let (s, v) = api
        .call(
            Method::GET,
            "/api/1.0.0/catalog/find/",
            Some(ALICE),
            &[
                ("user", "alice"),
                ("group", "farmers"),
                ("groupall", "False"),
                ("label", "legacy-run"),
            ],
            json!({}),
        )
        .await;
    assert_eq!(s, 202);
    let h = &v["data"]["holdings"]["legacy-run"];
    let files: Vec<String> = h["transactions"][&tid]["filelist"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path_type"] == "FILE")
        .map(|f| f["original_path"].as_str().unwrap().to_owned())
        .collect();
    let mut files = files;
    files.sort();
    assert_eq!(
        files,
        [format!("{src_s}/a.txt"), format!("{src_s}/sub/b.nc")],
        "{v}"
    );
    let loc = h["transactions"][&tid]["filelist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path_type"] == "FILE")
        .map(|f| f["locations"][0].clone())
        .unwrap();
    assert_eq!(loc["storage_type"], "OBJECT_STORAGE", "{v}");
    assert_ne!(loc["root"], "");

    // bob sees alice's holding only with groupall; list failures are 202 + details.failure.
    let bq = |all: &'static str| vec![("user", "bob"), ("group", "farmers"), ("groupall", all)];
    let (s, v) = api
        .call(
            Method::GET,
            "/api/1.0.0/catalog/list/",
            Some(BOB),
            &bq("False"),
            json!({}),
        )
        .await;
    assert_eq!(s, 202);
    assert!(v["details"]["failure"].is_string(), "{v}");
    let (_, v) = api
        .call(
            Method::GET,
            "/api/1.0.0/catalog/list/",
            Some(BOB),
            &bq("True"),
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["holdings"][0]["label"], "legacy-run", "{v}");
    assert_eq!(v["data"]["holdings"][0]["tags"], json!({"site": "ral"}));
    // bob cannot change alice's holding.
    let (_, v) = api
        .call(
            Method::POST,
            "/api/1.0.0/catalog/meta/",
            Some(BOB),
            &[
                ("user", "bob"),
                ("group", "farmers"),
                ("label", "legacy-run"),
            ],
            json!({"new_label": "stolen"}),
        )
        .await;
    assert!(v["details"]["failure"].is_string(), "{v}");

    // Identity: user and group must be the caller's; the admin may act for anyone.
    let refusals: [(Option<&str>, &str, &str, u16, &str); 4] = [
        (
            Some(BOB),
            "alice",
            "farmers",
            404,
            "User alice could not be found.",
        ),
        (
            Some(ALICE),
            "alice",
            "fishers",
            404,
            "User is not a member of the group fishers.",
        ),
        (None, "alice", "farmers", 403, "OAuth token not supplied."),
        (
            Some("wrong-token-0123456789"),
            "alice",
            "farmers",
            401,
            "OAuth token invalid or could not be found.",
        ),
    ];
    for (token, user, group, status, msg) in refusals {
        let (s, v) = api
            .call(
                Method::GET,
                "/api/1.0.0/catalog/list/",
                token,
                &[("user", user), ("group", group)],
                json!({}),
            )
            .await;
        assert_eq!(
            (s, Legacy::msg(&v)),
            (status, msg.to_owned()),
            "{token:?} {user} {group}"
        );
    }
    let (s, v) = api
        .call(
            Method::GET,
            "/api/1.0.0/catalog/list/",
            Some(ADMIN),
            &[("user", "alice"), ("group", "farmers")],
            json!({}),
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(v["data"]["holdings"][0]["user"], "alice", "{v}");
    let (s, v) = api
        .call(
            Method::GET,
            "/api/1.0.0/catalog/list/",
            Some(ALICE),
            &[("group", "farmers")],
            json!({}),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(v["detail"][0]["loc"], json!(["query", "user"]));

    // get: one file to a target, restored byte-identical; bad input is a 400 with its reason.
    let target = dir.path().join("restore");
    std::fs::create_dir_all(&target).unwrap();
    let gtid = uuid::Uuid::new_v4().to_string();
    let a_txt = format!("{src_s}/a.txt");
    let (s, v) = api
        .call(
            Method::GET,
            "/api/1.0.0/files/",
            Some(ALICE),
            &[
                ("transaction_id", gtid.as_str()),
                ("user", "alice"),
                ("group", "farmers"),
                ("groupall", "False"),
                ("access_key", "AKIA-LEGACY"),
                ("secret_key", SECRET),
                ("filepath", a_txt.as_str()),
                ("target", target.to_str().unwrap()),
                ("tag", "site:ral"),
            ],
            json!({}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["msg"], "GET transaction accepted for processing.");
    let rec = api.wait(ALICE, "alice", &gtid).await;
    assert!(
        rec["sub_records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["failed_files"].as_array().unwrap().is_empty()),
        "{rec}"
    );
    let restored = target.join(a_txt.trim_start_matches('/'));
    assert_eq!(std::fs::read(&restored).unwrap(), b"alpha");
    // A second get replaces a changed file, as upstream does (the Python client cannot ask).
    std::fs::write(&restored, b"changed locally").unwrap();
    let gtid2 = uuid::Uuid::new_v4().to_string();
    let (s, v) = api
        .call(
            Method::GET,
            "/api/1.0.0/files/",
            Some(ALICE),
            &[
                ("transaction_id", gtid2.as_str()),
                ("user", "alice"),
                ("group", "farmers"),
                ("filepath", a_txt.as_str()),
                ("target", target.to_str().unwrap()),
            ],
            json!({}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let rec = api.wait(ALICE, "alice", &gtid2).await;
    assert!(
        rec["sub_records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] != "FAILED"),
        "{rec}"
    );
    assert_eq!(std::fs::read(&restored).unwrap(), b"alpha");
    let (s, v) = api
        .call(
            Method::GET,
            "/api/1.0.0/files/",
            Some(ALICE),
            &[
                ("transaction_id", gtid.as_str()),
                ("user", "alice"),
                ("group", "farmers"),
            ],
            json!({}),
        )
        .await;
    assert_eq!((s, Legacy::msg(&v)), (400, "filepath not supplied.".into()));
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/1.0.0/files/getlist/",
            Some(ALICE),
            &[
                ("transaction_id", uuid::Uuid::new_v4().to_string().as_str()),
                ("user", "alice"),
                ("group", "farmers"),
                ("target", "relative/dir"),
            ],
            json!({"filelist": [a_txt]}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        Legacy::msg(&v).contains("target \"relative/dir\" is not an absolute path"),
        "{v}"
    );

    // Nothing secret reached the broker's messages or the worker logs.
    let logs = settings.workers.log_dir.clone();
    for e in walkdir::WalkDir::new(&logs).into_iter().flatten() {
        if e.file_type().is_file() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            assert!(
                !text.contains(SECRET),
                "{} holds the secret",
                e.path().display()
            );
        }
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_status_pings_the_consumers_over_rabbitmq() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let settings = svc.settings();
    let stop = CancellationToken::new();
    // Everything but transfer-get runs.
    let roles: Vec<nlds_core::Role> = nlds_workers::run::all_roles()
        .into_iter()
        .filter(|r| *r != nlds_core::Role::TransferGet)
        .collect();
    crate::distributed::start_roles(&settings, roles, stop.clone());
    let url = start(&settings, stop.clone()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Consumers attach asynchronously: wait until the catalogue's two queues have theirs.
    let start_t = Instant::now();
    let v: Value = loop {
        let r = http
            .get(format!("{url}/system/status/catalog?time-limit=3"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let v: Value = r.json().await.unwrap();
        if v["total_num"] == 2 || start_t.elapsed() > Duration::from_secs(30) {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(v["microservice_name"], "catalog");
    assert_eq!(v["total_num"], 2, "{v}");
    assert_eq!(v["num_success"], 2, "{v}");
    assert_eq!(v["num_failed"], 0, "{v}");
    assert_eq!(v["pid"][0], std::process::id(), "{v}");
    let v: Value = http
        .get(format!("{url}/system/status/get_transfer"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["total_num"].as_u64(), v["num_success"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    let page = http
        .get(format!(
            "{url}/system/status/?microservice=PUT_TRANSFER&microservice=get_transfer"
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<td>put_transfer</td><td class=\"green\">GREEN</td>"),
        "{page}"
    );
    assert!(
        page.contains(
            "<td>get_transfer</td><td class=\"red\">RED</td><td>No consumers running</td>"
        ),
        "{page}"
    );
    // The cold tier's services are answered by their roles (they showed RED while running).
    let page = http
        .get(format!(
            "{url}/system/status/?microservice=archive_put&microservice=archive_get"
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for service in ["archive_put", "archive_get"] {
        assert!(
            page.contains(&format!(
                "<td>{service}</td><td class=\"green\">GREEN</td><td>All 1 consumers online</td>"
            )),
            "{page}"
        );
    }
    let r = http
        .get(format!("{url}/system/status/bogus?time-limit=9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 307);
    assert_eq!(
        r.headers()["location"],
        "/system/status/?time-limit=9&microservice=all"
    );
    let r = http
        .get(format!("{url}/probe/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!(["status", "healthy"])
    );
    stop.cancel();
}
