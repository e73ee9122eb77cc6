//! The policy's API and CLI against distributed roles (PostgreSQL, RabbitMQ, moto S3): a dry run
//! lists rules and groups and changes nothing; a run is followed in the status; `nlds explain`
//! answers for the caller's own file and 404s another user's; a reload of invalid rules names the
//! errors and keeps the old rules; operators only on the admin routes; SIGHUP reloads a policy
//! process, and every other policy process follows.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nlds_core::State;
use nlds_workers::run::Settings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, TOKEN, serve_api, start_roles, workers_binary};
use crate::helpers::{Api, temp};

const BOB: &str = "policy-test-bob-token-0123456789";
const OPS: &str = "policy-test-operator-token-0123456789";

/// The test's rules: hot labels stay, `.dat` files are archived, idle files evicted.
const RULES: &str = r#"
[[rule]]
name = "keep-hot"
action = "none"
label = "*-hot"

[[rule]]
name = "archive-dat"
action = "archive"
path = "*.dat"

[[rule]]
name = "evict-idle"
action = "evict"
idle = "30d"
"#;

/// The API server with three callers: alice (user, climate), bob (user, ocean), an operator.
async fn start_server(settings: &Settings, stop: CancellationToken) -> String {
    let tokens = format!(
        "[[token]]\ntoken = \"{TOKEN}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\
         [[token]]\ntoken = \"{BOB}\"\nuser = \"bob\"\ngroups = [\"ocean\"]\n\
         [[token]]\ntoken = \"{OPS}\"\nuser = \"ops\"\ngroups = [\"climate\"]\nadmin = true\n"
    );
    serve_api(settings, &tokens, 30, stop).await
}

pub(crate) fn nlds_bin() -> PathBuf {
    let bin = workers_binary().with_file_name("nlds");
    assert!(
        bin.exists(),
        "{} not built: run the tests with --workspace",
        bin.display()
    );
    bin
}

/// Runs the real `nlds` as the holder of `token`.
pub(crate) fn nlds(url: &str, token: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(nlds_bin());
    for var in ["NLDS_GROUP", "NLDS_CONFIG", "XDG_CONFIG_HOME", "COLUMNS"] {
        cmd.env_remove(var);
    }
    cmd.args(args)
        .env("NLDS_URL", url)
        .env("NLDS_TOKEN", token)
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
pub(crate) fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn rule_names(status: &Value) -> Vec<String> {
    status["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect()
}

/// Settings with the policy on, its rules in `rules` (a file, read again by every reload), no
/// scheduled passes or archive rounds (the test starts them).
fn policy_settings(svc: &Services, rules: &Path, cold: &Path) -> Settings {
    let mut settings = svc.settings();
    settings.workers.archive.interval_secs = 0;
    settings.workers.cold.dir_mut().root = cold.to_owned();
    settings.policy.enabled = true;
    settings.policy.file = Some(rules.to_owned());
    settings.policy.interval_secs = 0;
    settings
}

/// The files of `label` (alice's), by name: their tiers.
async fn tiers(api: &Api, label: &str) -> Vec<(String, Vec<String>)> {
    let (s, page) = api.get(&format!("/api/v2/files?label={label}")).await;
    assert_eq!(s, 200, "{page}");
    let mut out: Vec<(String, Vec<String>)> = page["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "file")
        .map(|f| {
            let mut t: Vec<String> = f["locations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["tier"].as_str().unwrap().to_owned())
                .collect();
            t.sort();
            (f["path"].as_str().unwrap().to_owned(), t)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dry_run_run_status_explain_reload_and_who_may_use_them() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let dir = temp();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let settings = policy_settings(&svc, &rules, &dir.path().join("cold"));
    let stop = CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let (alice, bob, ops) = (
        Api::new(&url, TOKEN),
        Api::new(&url, BOB),
        Api::new(&url, OPS),
    );

    let src = temp();
    let run1 = src.path().join("run1");
    let hot = src.path().join("hot");
    std::fs::create_dir_all(&run1).unwrap();
    std::fs::create_dir_all(&hot).unwrap();
    for i in 0..4 {
        std::fs::write(run1.join(format!("a{i}.dat")), vec![b'a'; 1000]).unwrap();
    }
    std::fs::write(run1.join("notes.txt"), "notes").unwrap();
    for i in 0..2 {
        std::fs::write(hot.join(format!("b{i}.dat")), vec![b'b'; 500]).unwrap();
    }
    for (path, label) in [(&run1, "run1"), (&hot, "run1-hot")] {
        let put = alice
            .put_and_wait(json!({"paths": [path], "label": label}))
            .await;
        assert_eq!(put.state, State::Complete, "{put:#?}");
    }

    // Operators only: alice is refused on every admin route, and told why.
    for (method, path) in [
        ("POST", "/api/v2/admin/policy/dry-run"),
        ("POST", "/api/v2/admin/policy/run"),
        ("GET", "/api/v2/admin/policy"),
        ("POST", "/api/v2/admin/policy/reload"),
        ("POST", "/api/v2/admin/policy/reset"),
    ] {
        let (s, b) = if method == "GET" {
            alice.get(path).await
        } else {
            alice.post(path, &json!({})).await
        };
        assert_eq!(s, 403, "{method} {path}: {b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("alice is not a service operator"),
            "{b}"
        );
    }
    let out = nlds(&url, TOKEN, &["admin", "policy", "status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    // A dry run lists what each rule and group would do, and changes nothing.
    let before = tiers(&alice, "run1").await;
    assert!(before.iter().all(|(_, t)| t == &["warm"]), "{before:?}");
    let shown = ok(nlds(&url, OPS, &["admin", "policy", "dry-run"]));
    let line = shown
        .lines()
        .find(|l| l.starts_with("archive-dat"))
        .unwrap_or_else(|| panic!("no archive-dat line in:\n{shown}"));
    assert!(
        line.contains("archive") && line.contains(" 4 ") && line.contains("3.9 KiB"),
        "{line}"
    );
    assert!(shown.contains("Per group:"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("climate") && l.contains("archive")),
        "{shown}"
    );
    let report: Value = serde_json::from_str(&ok(nlds(
        &url,
        OPS,
        &["--json", "admin", "policy", "dry-run"],
    )))
    .unwrap();
    assert_eq!(report["kind"], "dry_run", "{report}");
    let archive = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "archive-dat")
        .unwrap();
    assert_eq!(
        (archive["files"].as_u64(), archive["bytes"].as_u64()),
        (Some(4), Some(4000))
    );
    assert_eq!(
        archive["examples"].as_array().unwrap().len(),
        4,
        "{archive}"
    );
    assert_eq!(
        tiers(&alice, "run1").await,
        before,
        "the dry run changed the catalogue"
    );
    assert_eq!(report["archived_files"], 0, "{report}");

    // explain: the caller's own file, in sentences and as JSON.
    let a0 = run1.join("a0.dat").to_string_lossy().into_owned();
    let said = ok(nlds(&url, TOKEN, &["explain", &a0, "-l", "run1"]));
    assert!(said.contains("is on disk (warm tier) only"), "{said}");
    assert!(
        said.contains("Rule \"archive-dat\" (archive) applies to it now"),
        "{said}"
    );
    let e: Value =
        serde_json::from_str(&ok(nlds(&url, TOKEN, &["--json", "explain", &a0]))).unwrap();
    assert_eq!(e["locality"], "DISK", "{e}");
    assert_eq!(e["now"]["rule"], "archive-dat", "{e}");
    assert_eq!(e["policy_enabled"], true, "{e}");
    let b0 = hot.join("b0.dat").to_string_lossy().into_owned();
    let e: Value =
        serde_json::from_str(&ok(nlds(&url, TOKEN, &["--json", "explain", &b0]))).unwrap();
    assert_eq!(
        (&e["now"]["rule"], &e["now"]["action"]),
        (&json!("keep-hot"), &json!("none"))
    );

    // Another user's file is not found, exactly like a file that does not exist.
    let theirs = nlds(&url, BOB, &["explain", &a0]);
    assert_eq!(theirs.status.code(), Some(5), "{}", text(&theirs));
    let (s, b) = bob.get(&format!("/api/v2/explain?path={a0}")).await;
    assert_eq!(s, 404, "{b}");
    let missing = format!("{a0}.missing");
    let (s2, b2) = bob.get(&format!("/api/v2/explain?path={missing}")).await;
    assert_eq!(s2, 404, "{b2}");
    assert_eq!(
        b["error"]["message"].as_str().unwrap().replace(&a0, "P"),
        b2["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&missing, "P"),
        "another user's file must look like no file"
    );
    for secret in ["alice", "climate", "run1"] {
        assert!(!b.to_string().replace(&a0, "").contains(secret), "{b}");
    }

    // A run is answered at once; the status follows it to its end.
    let started = ok(nlds(&url, OPS, &["admin", "policy", "run"]));
    let id: i64 = started
        .split_whitespace()
        .nth(2)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no pass id in {started:?}"));
    let t0 = Instant::now();
    let pass = loop {
        let (s, st) = ops.get("/api/v2/admin/policy?passes=5").await;
        assert_eq!(s, 200, "{st}");
        let p = st["passes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .cloned();
        if let Some(p) = p.filter(|p| p["outcome"] != "running") {
            break p;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "pass {id} never ended: {st}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(pass["kind"], "manual", "{pass}");
    assert_eq!(pass["outcome"], "completed", "{pass}");
    assert_eq!(
        (
            pass["archived_files"].as_u64(),
            pass["archived_bytes"].as_u64()
        ),
        (Some(4), Some(4000)),
        "{pass}"
    );
    let shown = ok(nlds(&url, OPS, &["admin", "policy", "status", "-N", "5"]));
    let row = shown
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("pass {id} not listed:\n{shown}"));
    assert!(
        row.contains("manual") && row.contains("completed") && row.contains("4 (3.9 KiB)"),
        "{row}"
    );
    assert!(shown.contains("breaker     : closed"), "{shown}");
    let after = tiers(&alice, "run1").await;
    for (path, t) in &after {
        let want: &[&str] = if path.ends_with(".dat") {
            &["cold", "warm"]
        } else {
            &["warm"]
        };
        assert_eq!(t, want, "{path}");
    }
    assert!(
        tiers(&alice, "run1-hot")
            .await
            .iter()
            .all(|(_, t)| t == &["warm"])
    );
    let e: Value =
        serde_json::from_str(&ok(nlds(&url, TOKEN, &["--json", "explain", &a0]))).unwrap();
    assert_eq!(e["locality"], "DISK_AND_TAPE", "{e}");
    assert_eq!(e["next"][1]["rule"], "evict-idle", "{e}");

    // An invalid reload is refused whole, naming the problem; the rules in use stay.
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"broken\"\naction = \"evict\"\nidel = \"3d\"\n",
    )
    .unwrap();
    let out = nlds(&url, OPS, &["admin", "policy", "reload"]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("refused") && said.contains("broken") && said.contains("idel"),
        "{said}"
    );
    let (_, st) = ops.get("/api/v2/admin/policy").await;
    assert_eq!(
        rule_names(&st),
        ["keep-hot", "archive-dat", "evict-idle"],
        "{st}"
    );
    // A valid one is used at once.
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"archive-all\"\naction = \"archive\"\n",
    )
    .unwrap();
    let said = ok(nlds(&url, OPS, &["admin", "policy", "reload"]));
    assert!(said.contains("Policy reloaded: 1 rules in use."), "{said}");
    let (_, st) = ops.get("/api/v2/admin/policy").await;
    assert_eq!(rule_names(&st), ["archive-all"], "{st}");

    let said = ok(nlds(&url, OPS, &["admin", "policy", "reset"]));
    assert!(said.contains("circuit breaker is closed"), "{said}");
    stop.cancel();
}

/// A child process, killed when dropped (also when the test fails).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `nlds-workers policy` process, its log in `log`.
fn spawn_policy(config: &Path, log: &Path) -> Killed {
    Killed(
        Command::new(workers_binary())
            .args(["--config", &config.to_string_lossy(), "policy"])
            .env("RUST_LOG", "info")
            .env_remove("NLDS_LOG_JSON")
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// Waits (at most a minute) until `log` has a line with `needle`.
async fn wait_log(log: &Path, needle: &str) {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{} never logged {needle:?}:\n{text}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn hup(child: &Killed) {
    let status = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The rules every policy process answers with: asked several times (the RPC reaches either
/// process), all must agree.
async fn rules_everywhere(ops: &Api) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (s, st) = ops.get("/api/v2/admin/policy").await;
        assert_eq!(s, 200, "{st}");
        seen.push(rule_names(&st));
    }
    seen.dedup();
    assert_eq!(seen.len(), 1, "the policy processes disagree: {seen:?}");
    seen.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_reloads_a_policy_process_and_the_others_follow() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let dir = temp();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let settings = policy_settings(&svc, &rules, &dir.path().join("cold"));
    let config = dir.path().join("workers.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
    let stop = CancellationToken::new();
    let others: Vec<_> = nlds_workers::run::all_roles()
        .into_iter()
        .filter(|r| *r != nlds_core::Role::Policy)
        .collect();
    start_roles(&settings, others, stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let ops = Api::new(&url, OPS);
    let (log1, log2) = (
        dir.path().join("policy1.log"),
        dir.path().join("policy2.log"),
    );
    let one = spawn_policy(&config, &log1);
    let two = spawn_policy(&config, &log2);
    // Both are up once each has answered a status (their roles start with it).
    let t0 = Instant::now();
    while ops.get("/api/v2/admin/policy").await.0 != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no policy process answers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_log(&log1, "role started").await;
    wait_log(&log2, "role started").await;
    assert_eq!(
        rules_everywhere(&ops).await,
        ["keep-hot", "archive-dat", "evict-idle"]
    );

    // SIGHUP to one process: it reloads, and the other follows it.
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"archive-all\"\naction = \"archive\"\n",
    )
    .unwrap();
    hup(&one);
    wait_log(&log1, "policy reloaded").await;
    wait_log(&log2, "a reload by").await;
    assert_eq!(rules_everywhere(&ops).await, ["archive-all"]);

    // Invalid rules: the process says why and keeps the rules in use (and nobody follows).
    std::fs::write(&rules, "[[rule]]\nname = \"broken\"\naction = \"shred\"\n").unwrap();
    hup(&two);
    wait_log(&log2, "policy reload refused").await;
    let refused = std::fs::read_to_string(&log2).unwrap();
    assert!(
        refused.contains("broken") && refused.contains("shred"),
        "{refused}"
    );
    assert_eq!(rules_everywhere(&ops).await, ["archive-all"]);

    drop((one, two));
    stop.cancel();
}

/// The cold store fails under a pass (its root is replaced by a plain file after the puts): every
/// archive write fails, the circuit breaker opens, the pass reports why, the status shows it open
/// until an operator resets it, and no file claims a cold copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_breaker_opens_when_the_cold_store_fails_under_a_pass() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let dir = temp();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let cold = dir.path().join("cold");
    let mut settings = policy_settings(&svc, &rules, &cold);
    // One file per aggregate, so each file is one archive action.
    settings.workers.archive.aggregate_members = 1;
    settings.policy.breaker_min_actions = 3;
    settings.policy.breaker_error_rate = 0.5;
    settings.policy.archive_wait_secs = 90;
    let stop = CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let (alice, ops) = (Api::new(&url, TOKEN), Api::new(&url, OPS));

    let src = temp();
    for i in 0..5 {
        std::fs::write(src.path().join(format!("c{i}.dat")), vec![b'c'; 700]).unwrap();
    }
    let put = alice
        .put_and_wait(json!({"paths": [src.path()], "label": "broken"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");

    // The tape goes away: its root becomes a plain file, so every aggregate write fails.
    if cold.exists() {
        std::fs::rename(&cold, dir.path().join("cold.gone")).unwrap();
    }
    std::fs::write(&cold, "not a directory").unwrap();

    let (s, b) = ops.post("/api/v2/admin/policy/run", &json!({})).await;
    assert_eq!(s, 202, "{b}");
    let t0 = Instant::now();
    let (pass, status) = loop {
        let (s, st) = ops.get("/api/v2/admin/policy?passes=1").await;
        assert_eq!(s, 200, "{st}");
        let p = st["passes"][0].clone();
        if p["outcome"] != "running" && !p.is_null() {
            break (p, st);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "the pass never ended: {st}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(pass["outcome"], "breaker_open", "{pass}");
    let why = pass["breaker"].as_str().unwrap_or_default();
    assert!(
        why.contains("archive actions failed"),
        "the pass says why: {pass}"
    );
    assert_eq!(pass["archived_files"].as_u64(), Some(0), "{pass}");
    assert!(pass["errors"].as_u64().unwrap_or(0) >= 3, "{pass}");
    assert!(
        status["breaker"].as_str().is_some(),
        "the breaker stays open: {status}"
    );
    // Nothing claims a cold copy.
    for (path, t) in tiers(&alice, "broken").await {
        assert_eq!(t, ["warm"], "{path}");
    }
    let shown = ok(nlds(&url, OPS, &["admin", "policy", "status"]));
    assert!(shown.contains("breaker     : OPEN"), "{shown}");

    // An operator closes it.
    let (s, b) = ops.post("/api/v2/admin/policy/reset", &json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (_, st) = ops.get("/api/v2/admin/policy").await;
    assert!(st["breaker"].is_null(), "{st}");
    stop.cancel();
}
