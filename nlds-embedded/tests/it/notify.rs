//! Notifications (docs/NOTIFY.md) end to end, over `nlds-server embedded`: a webhook receiver
//! in the test (axum on a free port) checks the signature with its own HMAC, fails on purpose
//! to prove the retries and the dead letter; an SMTP sink (aiosmtpd, installed by
//! scripts/services.sh) receives the e-mail; a receiver that accepts and never answers does not
//! hold up a put.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use nlds_hooks::{control, points};

use crate::helpers::{Api, ServerProcess, make_tree, temp};

/// What the receiver got: the signature and timestamp headers and the body.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub signature: String,
    pub timestamp: String,
    pub body: String,
}

/// A webhook receiver on a free loopback port that answers 500 to its first `failures`
/// deliveries (all of them with `usize::MAX`) and 200 after.
pub(crate) struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub calls: Arc<AtomicUsize>,
}

pub(crate) async fn receiver(failures: usize) -> Receiver {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let calls: Arc<AtomicUsize> = Arc::default();
    let (g, c) = (got.clone(), calls.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (g, c) = (g.clone(), c.clone());
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst);
                if n < failures {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let h = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                g.lock().unwrap().push(Received {
                    signature: h("x-nlds-signature"),
                    timestamp: h("x-nlds-timestamp"),
                    body,
                });
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, got, calls }
}

/// A receiver that accepts connections and never answers (held open until the test ends).
async fn blackhole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    url
}

/// The test's own check of a delivery: `sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.
pub(crate) fn verify(secret: &str, r: &Received) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.{}", r.timestamp, r.body).as_bytes());
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    expected == r.signature
}

/// The embedded server with fast notification settings plus `extra`.
async fn server(data: &Path, extra: &[String]) -> ServerProcess {
    server_with(data, &[], extra).await
}

/// [`server`] with extra environment variables (the pause directory).
pub(crate) async fn server_with(
    data: &Path,
    envs: &[(&str, &std::ffi::OsStr)],
    extra: &[String],
) -> ServerProcess {
    let mut sets: Vec<String> = [
        "notify.poll_ms=100",
        "notify.backoff_ms=200",
        "notify.backoff_max_ms=400",
        "notify.attempts=3",
        "notify.webhook_timeout_secs=2",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    sets.extend_from_slice(extra);
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    ServerProcess::start_with(&data.join("data"), &data.join("logs"), "info", envs, &sets).await
}

async fn put_of(api: &Api, root: &Path) -> String {
    make_tree(root, 3, 0);
    let t = api
        .put_and_wait(json!({"paths": [root], "label": "notified"}))
        .await;
    assert!(t.state.is_final(), "{t:?}");
    t.transaction_id.to_string()
}

async fn put_notify(api: &Api, body: Value) -> (u16, Value) {
    let r = api
        .http
        .put(format!("{}/api/v2/notify", api.url))
        .bearer_auth(&api.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `check` every 100 ms for at most `limit`.
pub(crate) async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The notifications of `tid` in `state` (operators' list).
async fn listed(api: &Api, state: &str, tid: &str) -> Vec<Value> {
    let (s, v) = api
        .get(&format!(
            "/api/v2/admin/notifications?state={state}&limit=1000"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .filter(|n| n["subject"] == format!("transaction:{tid}"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_webhook_is_signed_and_retried_until_delivered() {
    let dir = temp();
    // The first two deliveries fail: the third (the last allowed) gets through.
    let rx = receiver(2).await;
    let srv = server(dir.path(), &[]).await;
    let api = Api::new(&srv.url, &srv.operator_token());

    // URLs are checked: a clear 400 naming the problem.
    for (bad, why) in [
        ("http://example.org/hook", "https"),
        ("https://user:pw@example.org/hook", "credentials"),
        ("ftp://example.org/", "https://"),
    ] {
        let (s, v) = put_notify(&api, json!({"webhook": bad})).await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(v.to_string().contains(why), "{bad}: {v}");
    }

    let (s, v) = put_notify(&api, json!({"webhook": rx.url, "on": "always"})).await;
    assert_eq!(s, 200, "{v}");
    let secret = v["webhook_secret"]
        .as_str()
        .expect("a new webhook's secret")
        .to_owned();
    assert_eq!(secret.len(), 64);
    // Shown once: a plain show leaves it out, `secret=true` shows it again.
    let (_, shown) = api.get("/api/v2/notify").await;
    assert!(shown.get("webhook_secret").is_none(), "{shown}");
    assert_eq!(shown["on"], "always");
    let (_, again) = api.get("/api/v2/notify?secret=true").await;
    assert_eq!(again["webhook_secret"], secret.as_str());

    let src = temp();
    let tid = put_of(&api, src.path()).await;
    let got = eventually(Duration::from_secs(30), "webhook delivery", async || {
        let g = rx.got.lock().unwrap().clone();
        (!g.is_empty()).then_some(g)
    })
    .await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        rx.calls.load(Ordering::SeqCst),
        3,
        "two failures, then the delivery"
    );
    let r = &got[0];
    assert!(verify(&secret, r), "the signature does not verify: {r:?}");
    assert!(!verify("another secret", r));
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["event"], "transaction.ended");
    assert_eq!(body["transaction_id"], tid.as_str());
    assert_eq!(body["state"], "COMPLETE");
    assert_eq!(body["files_failed"], 0);
    // Names and counts only: no secret, no path.
    assert!(!r.body.contains(&secret));
    assert!(!r.body.contains(&src.path().display().to_string()));
    let sent = eventually(Duration::from_secs(10), "sent recorded", async || {
        let l = listed(&api, "sent", &tid).await;
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(sent[0]["attempts"], 3, "{sent:?}");
    // The secret never reaches the logs.
    assert!(!srv.output().contains(&secret));
    srv.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_webhook_becomes_a_dead_letter_after_the_last_try() {
    let dir = temp();
    let rx = receiver(usize::MAX).await;
    let srv = server(dir.path(), &[]).await;
    let api = Api::new(&srv.url, &srv.operator_token());
    let (s, v) = put_notify(&api, json!({"webhook": rx.url, "on": "always"})).await;
    assert_eq!(s, 200, "{v}");

    let src = temp();
    let tid = put_of(&api, src.path()).await;
    let dead = eventually(Duration::from_secs(30), "dead letter", async || {
        let l = listed(&api, "dead", &tid).await;
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["channel"], "webhook");
    assert!(
        dead[0]["last_error"].as_str().unwrap().contains("500"),
        "{dead:?}"
    );
    assert_eq!(rx.calls.load(Ordering::SeqCst), 3, "no try after the last");
    // Its owner sees it too.
    let (_, mine) = api.get("/api/v2/notify").await;
    assert!(
        mine["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["subject"] == format!("transaction:{tid}")),
        "{mine}"
    );
    srv.stop();
}

/// The SMTP sink's Python (aiosmtpd), from `NLDS_TEST_SMTP_PYTHON`.
pub(crate) fn smtp_python() -> Option<PathBuf> {
    let python = PathBuf::from(crate::helpers::service("NLDS_TEST_SMTP_PYTHON")?);
    assert!(
        python.is_file(),
        "NLDS_TEST_SMTP_PYTHON={} does not exist: run scripts/services.sh",
        python.display()
    );
    Some(python)
}

/// aiosmtpd on a free port, storing each message in the Maildir `maildir`; killed on drop.
pub(crate) struct SmtpSink {
    pub port: u16,
    child: std::process::Child,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn smtp_sink(python: &Path, maildir: &Path) -> SmtpSink {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    let sink = SmtpSink { port, child };
    eventually(Duration::from_secs(30), "aiosmtpd listening", async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;
    sink
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_email_reaches_the_smtp_sink() {
    let Some(python) = smtp_python() else {
        return;
    };
    let dir = temp();
    let maildir = dir.path().join("maildir");
    let sink = smtp_sink(&python, &maildir).await;
    let srv = server(
        dir.path(),
        &[
            "notify.smtp_host=127.0.0.1".into(),
            format!("notify.smtp_port={}", sink.port),
            "notify.smtp_tls=none".into(),
            "notify.from=nlds@test.example.org".into(),
        ],
    )
    .await;
    let api = Api::new(&srv.url, &srv.operator_token());
    let (s, v) = put_notify(&api, json!({"email": "alice@example.org", "on": "always"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["email"], "alice@example.org");
    let (s, v) = put_notify(&api, json!({"email": "not an address"})).await;
    assert_eq!(s, 400, "{v}");

    let src = temp();
    let tid = put_of(&api, src.path()).await;
    let mail = eventually(Duration::from_secs(30), "e-mail in the sink", async || {
        let new = std::fs::read_dir(maildir.join("new")).ok()?;
        new.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .find(|m| m.contains(&tid))
    })
    .await;
    assert!(mail.contains("From: nlds@test.example.org"), "{mail}");
    assert!(mail.contains("To: alice@example.org"), "{mail}");
    assert!(
        mail.contains(&format!("Subject: [nlds] put {tid} ended COMPLETE")),
        "{mail}"
    );
    assert!(mail.contains(", 0 failed"), "{mail}");
    srv.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_unreachable_receiver_never_slows_a_put() {
    let dir = temp();
    let hole = blackhole().await;
    // Each try waits the whole timeout: far longer than the puts take.
    let srv = server(dir.path(), &["notify.webhook_timeout_secs=600".into()]).await;
    let api = Api::new(&srv.url, &srv.operator_token());
    let (s, v) = put_notify(&api, json!({"webhook": hole, "on": "always"})).await;
    assert_eq!(s, 200, "{v}");

    let first = temp();
    let tid = put_of(&api, first.path()).await;
    // The put ended (its final state is recorded) and its notification is decided ...
    let pending = eventually(
        Duration::from_secs(30),
        "notification decided",
        async || {
            let l = listed(&api, "pending", &tid).await;
            (!l.is_empty()).then_some(l)
        },
    )
    .await;
    assert_eq!(pending[0]["attempts"], 0, "{pending:?}");
    // ... and while its delivery hangs on the receiver, another put runs to its end.
    let second = temp();
    let tid2 = put_of(&api, second.path()).await;
    let still = listed(&api, "pending", &tid).await;
    assert_eq!(
        still.len(),
        1,
        "the first delivery is still pending: {still:?}"
    );
    assert_eq!(still[0]["attempts"], 0, "{still:?}");
    assert!(listed(&api, "sent", &tid).await.is_empty());
    assert_ne!(tid, tid2);
    srv.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_per_request_overrides_failure_only() {
    let dir = temp();
    let rx = receiver(0).await;
    let srv = server(dir.path(), &[]).await;
    let api = Api::new(&srv.url, &srv.operator_token());
    // Failures only (the default).
    let (s, v) = put_notify(&api, json!({"webhook": rx.url})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["on"], "failure");

    // A put that succeeds notifies nothing: its end is recorded with its notifications (none)
    // in one database transaction, so nothing can come later.
    let quiet = temp();
    let tid = put_of(&api, quiet.path()).await;
    for state in ["pending", "sent", "dead"] {
        assert!(listed(&api, state, &tid).await.is_empty(), "{state}");
    }
    // The same with `notify` asks for it.
    let loud = temp();
    make_tree(loud.path(), 2, 0);
    let t = api
        .put_and_wait(json!({"paths": [loud.path()], "label": "loud", "notify": true}))
        .await;
    let tid2 = t.transaction_id.to_string();
    let got = eventually(Duration::from_secs(30), "webhook delivery", async || {
        let g = rx.got.lock().unwrap().clone();
        (!g.is_empty()).then_some(g)
    })
    .await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].body.contains(&tid2), "{got:?}");
    srv.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_stage_request_end_and_a_missing_file_fails_it() {
    let dir = temp();
    let rx = receiver(0).await;
    let srv = server(dir.path(), &[]).await;
    let api = Api::new(&srv.url, &srv.operator_token());
    let (s, v) = put_notify(&api, json!({"webhook": rx.url})).await;
    assert_eq!(s, 200, "{v}");
    let src = temp();
    put_of(&api, src.path()).await;
    // Every file is warm, but one path was never stored: the request ends (at once) with a
    // FAILED file, which a failures-only account hears about.
    let missing = src.path().join("never-stored");
    let (s, v) = api
        .post(
            "/api/v2/stage",
            &json!({"files": [src.path().join("d00/sub 0/ü-0/file 0 é.dat"), missing], "label": "notified"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let request_id = v["request_id"].as_str().unwrap().to_owned();
    let got = eventually(Duration::from_secs(30), "webhook delivery", async || {
        let g = rx.got.lock().unwrap().clone();
        (!g.is_empty()).then_some(g)
    })
    .await;
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["event"], "stage.ended", "{body}");
    assert_eq!(body["request_id"], request_id.as_str());
    assert_eq!(body["files_failed"], 1, "{body}");
    assert_eq!(body["files_completed"], 1, "{body}");
    srv.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_operators_hear_a_policy_pass_end_signed_with_their_secret() {
    let dir = temp();
    let rx = receiver(0).await;
    let secret_file = dir.path().join("ops-webhook-secret");
    std::fs::write(&secret_file, "operators-own-secret\n").unwrap();
    let srv = server(
        dir.path(),
        &[
            format!("notify.operator_webhook={}", rx.url),
            format!(
                "notify.operator_webhook_secret_file={}",
                secret_file.display()
            ),
            "policy.enabled=true".into(),
            "policy.interval_secs=0".into(),
        ],
    )
    .await;
    let ops = Api::new(&srv.url, &srv.operator_token());
    let (s, v) = ops.post("/api/v2/admin/policy/run", &json!({})).await;
    assert_eq!(s, 202, "{v}");
    let got = eventually(Duration::from_secs(60), "operator webhook", async || {
        let g = rx.got.lock().unwrap().clone();
        g.into_iter().find(|r| r.body.contains("policy_pass.ended"))
    })
    .await;
    assert!(verify("operators-own-secret", &got), "{got:?}");
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["kind"], "manual", "{body}");
    assert_eq!(body["outcome"], "completed", "{body}");
    assert!(!srv.output().contains("operators-own-secret"));
    srv.stop();
}

/// Operators are alerted when a transaction stalls (here: held at transfer-put longer than
/// `stalled_after_secs`), on their webhook, signed with their secret, once per episode however
/// many checks see it; another stalled transaction is an alert of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_operators_are_alerted_once_per_stalled_transaction() {
    let (dir, pause) = (temp(), temp());
    let rx = receiver(0).await;
    let secret_file = dir.path().join("ops-webhook-secret");
    std::fs::write(&secret_file, "operators-own-secret\n").unwrap();
    let srv = server_with(
        dir.path(),
        &[(nlds_hooks::ENV, pause.path().as_os_str())],
        &[
            format!("notify.operator_webhook={}", rx.url),
            format!(
                "notify.operator_webhook_secret_file={}",
                secret_file.display()
            ),
            "notify.stalled_after_secs=1".into(),
            "notify.alert_check_secs=1".into(),
        ],
    )
    .await;
    let api = Api::new(&srv.url, &srv.operator_token());
    let alerts_for = |tid: &str| -> Vec<Received> {
        rx.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                let b: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                b["kind"] == "stalled_transaction" && b["subject"] == tid
            })
            .cloned()
            .collect()
    };
    let mut tids = Vec::new();
    for n in 0..2 {
        let root = dir.path().join(format!("stalls-{n}"));
        make_tree(&root, 2, 0);
        control::arm(pause.path(), points::PUT_BEFORE_OPEN).unwrap();
        let (s, r) = api
            .post(
                "/api/v2/put",
                &json!({"paths": [root], "label": format!("stalls-{n}")}),
            )
            .await;
        assert_eq!(s, 202, "{r}");
        let tid = r["transaction_id"].as_str().unwrap().to_owned();
        let dir_ = pause.path().to_owned();
        tokio::task::spawn_blocking(move || {
            control::reached(&dir_, points::PUT_BEFORE_OPEN, Duration::from_secs(60))
        })
        .await
        .unwrap()
        .expect("the put reaches transfer-put");
        let got = eventually(Duration::from_secs(60), "the stalled alert", async || {
            alerts_for(&tid).into_iter().next()
        })
        .await;
        assert!(verify("operators-own-secret", &got), "{got:?}");
        let body: Value = serde_json::from_str(&got.body).unwrap();
        assert_eq!(body["event"], "alert.opened", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains(&tid),
            "the message names the transaction: {body}"
        );
        // Seen by several more checks while it stays stalled: still one alert.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(alerts_for(&tid).len(), 1, "one alert per episode");
        control::release(pause.path(), points::PUT_BEFORE_OPEN).unwrap();
        let t = api.wait(&tid, Duration::from_secs(60)).await;
        assert_eq!(t.state, nlds_core::State::Complete, "{t:?}");
        tids.push(tid);
    }
    // Each stalled transaction was told once; nothing else was alerted about them.
    for tid in &tids {
        assert_eq!(alerts_for(tid).len(), 1, "{tid}");
    }
    assert!(!srv.output().contains("operators-own-secret"));
    srv.stop();
}

/// `nlds` (built beside the test binary by `--workspace`), configured by the environment only.
fn nlds(srv: &ServerProcess, args: &[&str]) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("nlds");
    assert!(
        bin.exists(),
        "{} not built: run with --workspace",
        bin.display()
    );
    std::process::Command::new(bin)
        .args(args)
        .env_remove("NLDS_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env("NLDS_URL", &srv.url)
        .env("NLDS_TOKEN", srv.operator_token())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_cli_sets_shows_and_clears() {
    let dir = temp();
    let rx = receiver(0).await;
    let srv = server(dir.path(), &[]).await;
    let text = |o: &std::process::Output| {
        format!(
            "exit {:?}\n{}{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let o = nlds(
        &srv,
        &[
            "notify",
            "set",
            "--webhook",
            &rx.url,
            "--on",
            "always",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let set: Value = serde_json::from_slice(&o.stdout).unwrap();
    let secret = set["webhook_secret"].as_str().unwrap().to_owned();
    let o = nlds(&srv, &["notify", "show"]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = text(&o);
    assert!(shown.contains("on:      always"), "{shown}");
    assert!(shown.contains(&rx.url), "{shown}");
    assert!(!shown.contains(&secret), "{shown}");
    let o = nlds(&srv, &["notify", "show", "--secret"]);
    assert!(text(&o).contains(&secret), "{}", text(&o));
    // A rotation: a new secret, shown at once and by `show --secret`; the old one is gone.
    let o = nlds(&srv, &["notify", "set", "--rotate-secret", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let rotated: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rotated = rotated["webhook_secret"].as_str().unwrap().to_owned();
    assert_ne!(rotated, secret);
    let o = nlds(&srv, &["notify", "show", "--secret"]);
    assert!(text(&o).contains(&rotated), "{}", text(&o));
    assert!(!text(&o).contains(&secret), "{}", text(&o));
    let o = nlds(
        &srv,
        &["notify", "set", "--webhook", "http://example.org/x"],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("https://"), "{}", text(&o));
    let o = nlds(&srv, &["notify", "clear"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("no notification channels"),
        "{}",
        text(&o)
    );
    let o = nlds(
        &srv,
        &["admin", "notifications", "--state", "dead", "--json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    srv.stop();
}

/// Secrets stored by earlier versions (before secrets were derived): the delivery task still
/// signs with the stored secret, so a receiver that verifies loses nothing; it is never shown
/// again (the answer says so); `rotate_secret` replaces it with a derived secret, shown, which
/// signs from then on. The embedded key file is private (0600).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_a_legacy_stored_secret_signs_until_its_owner_rotates() {
    use sea_orm::{ConnectionTrait, Database, Statement};
    use std::os::unix::fs::PermissionsExt;

    let dir = temp();
    let rx = receiver(0).await;
    let srv = server(dir.path(), &[]).await;
    let key = dir.path().join("data").join("webhook.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    let api = Api::new(&srv.url, &srv.operator_token());
    let (s, v) = put_notify(&api, json!({"webhook": rx.url, "on": "always"})).await;
    assert_eq!(s, 200, "{v}");
    let derived = v["webhook_secret"].as_str().unwrap().to_owned();
    srv.stop();

    // What an earlier version left: a stored secret and no nonce.
    let legacy = format!("{}", uuid::Uuid::new_v4().simple());
    let db = Database::connect(format!(
        "sqlite://{}?mode=rw",
        dir.path().join("data").join("nlds.db").display()
    ))
    .await
    .unwrap();
    let changed = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE notify_pref SET webhook_secret = ?, webhook_nonce = NULL",
            [legacy.clone().into()],
        ))
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    db.close().await.unwrap();

    let srv = server(dir.path(), &[]).await;
    let api = Api::new(&srv.url, &srv.operator_token());
    let (_, shown) = api.get("/api/v2/notify?secret=true").await;
    assert!(
        shown.get("webhook_secret").is_none(),
        "never shown: {shown}"
    );
    assert_eq!(shown["webhook_secret_legacy"], true, "{shown}");
    let first = temp();
    let tid = put_of(&api, first.path()).await;
    let got = eventually(Duration::from_secs(30), "a delivery", async || {
        rx.got
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.body.contains(&tid))
            .cloned()
    })
    .await;
    assert!(
        verify(&legacy, &got),
        "signed with the stored secret: {got:?}"
    );
    assert!(!verify(&derived, &got));

    let (s, v) = put_notify(&api, json!({"rotate_secret": true})).await;
    assert_eq!(s, 200, "{v}");
    let rotated = v["webhook_secret"]
        .as_str()
        .expect("the new secret")
        .to_owned();
    assert_eq!(rotated.len(), 64);
    assert_ne!(rotated, legacy);
    assert_ne!(rotated, derived, "a new nonce: a new secret");
    assert!(v.get("webhook_secret_legacy").is_none(), "{v}");
    let (_, shown) = api.get("/api/v2/notify?secret=true").await;
    assert_eq!(shown["webhook_secret"], rotated.as_str(), "{shown}");
    let second = temp();
    let tid2 = put_of(&api, second.path()).await;
    let got = eventually(Duration::from_secs(30), "a delivery", async || {
        rx.got
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.body.contains(&tid2))
            .cloned()
    })
    .await;
    assert!(
        verify(&rotated, &got),
        "signed with the rotated secret: {got:?}"
    );
    assert!(!verify(&legacy, &got));
    // Nothing to rotate without a webhook.
    let (s, v) = put_notify(&api, json!({"webhook": "", "rotate_secret": true})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("no webhook"), "{v}");
    assert!(!srv.output().contains(&legacy));
    assert!(!srv.output().contains(&rotated));
    srv.stop();
}
