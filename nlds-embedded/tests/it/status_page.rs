//! The status page (`/status`, `/api/v2/status`) in a real browser: headless Chromium loads the
//! page of a distributed deployment (RabbitMQ, PostgreSQL, S3), which shows every role up from
//! the processes' heartbeats; the indexer's process is killed, and once its heartbeat timeout has
//! passed the reloaded page shows the indexer down (red) and every other role up. Screenshots of
//! both are saved under the target directory (paths printed). Without Chromium the test fails
//! under CI (`scripts/services.sh` installs it), and skips only when skipping is allowed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nlds_core::Role;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, spawn_role, start_roles};
use crate::helpers::temp;

const OPERATOR: &str = "status-operator-token-0123456789ab";

/// Chromium's program, if installed.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=...`); returns its
/// standard output.
fn browse(chromium: &Path, profile: &Path, url: &str, args: &[&str]) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1200,1100",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium {args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Loads the page, saves its screenshot as `name` and returns its DOM.
fn load(chromium: &Path, profile: &Path, url: &str, name: &str) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join(name);
    let _ = std::fs::remove_file(&shot);
    browse(
        chromium,
        profile,
        url,
        &[&format!("--screenshot={}", shot.display())],
    );
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
    println!("status page screenshot: {}", shot.display());
    browse(chromium, profile, url, &["--dump-dom"])
}

/// The JSON status, as an operator when `token` is given.
async fn json(url: &str, token: Option<&str>) -> Value {
    let mut req = reqwest::Client::new().get(format!("{url}/api/v2/status"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

fn health_of(status: &Value, role: Role) -> String {
    status["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == role.as_str())
        .unwrap_or_else(|| panic!("{role} missing: {status:#}"))["health"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Polls the JSON status until `ok` holds (at most a minute).
async fn until(url: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let st = json(url, None).await;
        if ok(&st) {
            return st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} never came: {st:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_page_shows_every_role_and_turns_a_stopped_one_red_in_a_browser() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let Some(chromium) = chromium() else {
        let _ = nlds_hooks::skip::missing(
            "",
            "chromium is not installed",
            "scripts/services.sh installs the Debian packages chromium and chromium-driver",
        );
        return;
    };
    let mut settings = svc.settings();
    settings.workers.heartbeat_secs = 1;
    settings.workers.archive.interval_secs = 0;
    let dir = temp();
    let config = dir.path().join("workers.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
    // The indexer in a process of its own (to be killed), every other role in this one.
    let mut indexer = spawn_role(&config, "indexer", None);
    let stop = CancellationToken::new();
    let others: Vec<Role> = Role::ALL
        .iter()
        .copied()
        .filter(|r| *r != Role::Indexer)
        .collect();
    start_roles(&settings, others, stop.clone());
    let tokens = format!(
        "[[token]]\ntoken = \"{OPERATOR}\"\nuser = \"op\"\ngroups = [\"ops\"]\nadmin = true\n"
    );
    let url = crate::distributed::serve_api(&settings, &tokens, 30, stop.clone()).await;

    let up = until(&url, "every role up", |st| {
        Role::ALL.iter().all(|r| health_of(st, *r) == "up")
    })
    .await;
    assert_eq!(up["detailed"], false);
    assert!(up["roles"][0].get("processes").is_none(), "{up:#}");
    // An operator sees the processes: the indexer's is the child's.
    let detail = json(&url, Some(OPERATOR)).await;
    assert_eq!(detail["detailed"], true);
    let indexer_row = detail["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "indexer")
        .unwrap()
        .clone();
    assert_eq!(
        indexer_row["processes"][0]["pid"],
        indexer.id(),
        "{indexer_row:#}"
    );
    let broker = &detail["components"][0];
    assert_eq!(
        (broker["name"].as_str(), broker["health"].as_str()),
        (Some("broker"), Some("up"))
    );

    let profile = temp();
    let page = format!("{url}/status");
    let dom = load(&chromium, profile.path(), &page, "status-all-up.png");
    for role in Role::ALL {
        assert!(
            dom.contains(&format!(
                "data-role=\"{role}\" data-health=\"up\"><td>{role}</td><td class=\"green\">up</td>"
            )),
            "{role} is not shown up:\n{dom}"
        );
    }
    // Anonymous: no host or process id on the page.
    let host = nlds_bus::hostname();
    assert!(
        !dom.contains(&format!("{host} pid")) && !dom.contains(&format!("pid {}", indexer.id())),
        "the anonymous page shows processes:\n{dom}"
    );

    indexer.kill().unwrap();
    indexer.wait().unwrap();
    until(&url, "the indexer down", |st| {
        health_of(st, Role::Indexer) == "down"
    })
    .await;
    let dom = load(&chromium, profile.path(), &page, "status-indexer-down.png");
    assert!(
        dom.contains(
            "data-role=\"indexer\" data-health=\"down\"><td>indexer</td><td class=\"red\">down</td>"
        ),
        "the indexer is not shown down:\n{dom}"
    );
    for role in Role::ALL.iter().filter(|r| **r != Role::Indexer) {
        assert!(
            dom.contains(&format!("data-role=\"{role}\" data-health=\"up\"")),
            "{role} is not shown up:\n{dom}"
        );
    }
    assert!(dom.contains("id=\"overall\" class=\"red\""), "{dom}");
    stop.cancel();
}
