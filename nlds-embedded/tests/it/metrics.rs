//! Metrics (docs/METRICS.md) as an operator sees them: a real Prometheus (Debian's `prometheus`,
//! on loopback, its storage in a temporary directory) scrapes an embedded server, or a
//! distributed worker process and the process running the other roles, during a put, and its
//! HTTP API must show the counters moved as the put did. And every metric the chart's alert
//! rules and dashboard name is one the processes export.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nlds_core::State;
use nlds_embedded::{Embedded, EmbeddedOptions};
use nlds_server::ServerSettings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, TOKEN, start_roles, start_server, workers_binary};
use crate::helpers::{Api, temp};

/// The `prometheus` binary, or `None` when the test may be skipped without it (never under CI).
fn prometheus_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    });
    if found.is_none()
        && nlds_hooks::skip::missing(
            "",
            "the prometheus binary",
            "Debian package prometheus: run scripts/services.sh, which installs it",
        )
    {
        return None;
    }
    found
}

/// A process killed when the test ends, passed or not (before its services go).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A Prometheus server on loopback scraping `targets` (`component` label, `host:port`) every
/// second at `/metrics`, with `job="nlds"` as the chart's ServiceMonitor gives; killed on drop.
struct Prometheus {
    url: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    async fn start(bin: &Path, targets: &[(&str, String)]) -> Self {
        let dir = temp();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: nlds\n    metrics_path: /metrics\n    static_configs:\n",
        );
        for (component, target) in targets {
            config.push_str(&format!(
                "      - targets: ['{target}']\n        labels: {{component: '{component}'}}\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let p = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            log,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            let ready = reqwest::get(format!("{}/-/ready", p.url)).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "prometheus did not start: {}",
                std::fs::read_to_string(&p.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        p
    }

    /// The value of `query` now (instant query, `/api/v1/query`): the sum of the series it
    /// returns, `None` when it returns none.
    async fn value(&self, query: &str) -> Option<f64> {
        let body: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{query}: {body}");
        let result = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if result.is_empty() {
            return None;
        }
        Some(
            result
                .iter()
                .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
                .sum(),
        )
    }

    /// Waits until `query` has the value `want` (Prometheus scrapes every second; a scrape may
    /// not have happened yet), and fails naming the last value if it never does.
    async fn expect(&self, query: &str, want: f64) {
        let start = Instant::now();
        loop {
            let got = self.value(query).await;
            if got == Some(want) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{query}: {got:?}, expected {want}\nprometheus: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// `files` regular files in a fresh directory, of known sizes: the directory and their bytes.
fn files(n: usize) -> (tempfile::TempDir, u64) {
    let src = temp();
    let mut bytes = 0;
    for i in 0..n {
        let data = vec![b'x'; 100 + i * 10];
        bytes += data.len() as u64;
        std::fs::write(src.path().join(format!("f{i}.dat")), data).unwrap();
    }
    (src, bytes)
}

async fn put(api: &Api, dir: &Path) {
    let put = api
        .put_and_wait(json!({"paths": [dir.to_string_lossy()]}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
}

fn host_port(metrics_url: &str) -> String {
    metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned()
}

async fn start_embedded(data: &Path) -> Embedded {
    let mut settings = ServerSettings::default();
    settings.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    Embedded::start(EmbeddedOptions {
        data_dir: data.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_sees_a_put_on_the_embedded_server() {
    let Some(bin) = prometheus_binary() else {
        return;
    };
    let data = temp();
    let e = start_embedded(data.path()).await;
    let target = host_port(e.metrics_url.as_deref().expect("[metrics] listen is set"));
    let prom = Prometheus::start(&bin, &[("embedded", target)]).await;
    prom.expect(r#"up{job="nlds",component="embedded"}"#, 1.0)
        .await;
    // Before: no transaction ended (the series appears with the first one).
    let ended = r#"nlds_transactions_ended_total{job="nlds",action="put",state="COMPLETE"}"#;
    assert_eq!(prom.value(ended).await, None);

    let (src, bytes) = files(12);
    put(&Api::new(&e.url, &e.token), src.path()).await;

    prom.expect(ended, 1.0).await;
    prom.expect(
        r#"nlds_transactions_started_total{job="nlds",action="put"}"#,
        1.0,
    )
    .await;
    let moved = r#"{job="nlds",tier="warm",operation="put"}"#;
    prom.expect(&format!("nlds_files_moved_total{moved}"), 12.0)
        .await;
    prom.expect(&format!("nlds_bytes_moved_total{moved}"), bytes as f64)
        .await;
    // The last success is a time since the epoch, as of this put.
    let before_put = chrono::Utc::now().timestamp() as f64 - 600.0;
    prom.expect(
        &format!("count(nlds_last_success_timestamp_seconds{moved} > {before_put})"),
        1.0,
    )
    .await;
    // The put request, by its route template; the put's files were never a label.
    prom.expect(
        r#"nlds_http_requests_total{job="nlds",route="/api/v2/put",method="POST",status="202"}"#,
        1.0,
    )
    .await;
    prom.expect(
        r#"count(nlds_http_requests_total{job="nlds",route=~".*f0\\.dat.*"}) or vector(0)"#,
        0.0,
    )
    .await;
    // The in-process bus's queues: every role consumes its own, and nothing is left waiting.
    prom.expect(
        r#"nlds_queue_consumers{job="nlds",queue="nlds.transfer-put"}"#,
        1.0,
    )
    .await;
    prom.expect(r#"sum(nlds_queue_messages{job="nlds"})"#, 0.0)
        .await;
    prom.expect(
        r#"sum(nlds_deliveries_total{job="nlds",role="transfer-put",outcome="dead_lettered"})"#,
        0.0,
    )
    .await;
    assert!(
        prom.value(r#"nlds_deliveries_total{job="nlds",role="transfer-put",outcome="acked"}"#)
            .await
            .is_some_and(|v| v >= 1.0)
    );
    prom.expect(r#"nlds_backend_up{job="nlds",backend="object_store"}"#, 1.0)
        .await;
    prom.expect(r#"nlds_ready{job="nlds"}"#, 1.0).await;
    // The put's group (the embedded user's) and its bytes in the warm tier.
    prom.expect(r#"sum(nlds_usage_files{job="nlds",tier="warm"})"#, 12.0)
        .await;
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_sees_a_put_moved_by_a_distributed_worker_process() {
    let Some(bin) = prometheus_binary() else {
        return;
    };
    let Some(svc) = Services::new().await else {
        return;
    };
    let dir = temp();
    let stop = CancellationToken::new();
    let settings = svc.settings();
    // transfer-put in a process of its own, /metrics on its operations listener.
    let ops_port = free_port();
    let mut worker = settings.clone();
    worker.workers.ops_listen = Some(format!("127.0.0.1:{ops_port}").parse().unwrap());
    let config = dir.path().join("transfer-put.toml");
    std::fs::write(&config, toml::to_string(&worker).unwrap()).unwrap();
    let log = std::fs::File::create(dir.path().join("transfer-put.log")).unwrap();
    let _worker = Killed(
        Command::new(workers_binary())
            .args(["--config", &config.to_string_lossy(), "transfer-put"])
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    // Every other role and the API in this process, which serves its own /metrics.
    let others: Vec<_> = nlds_workers::run::all_roles()
        .into_iter()
        .filter(|r| *r != nlds_core::Role::TransferPut)
        .collect();
    start_roles(&settings, others, stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let (bound, serve) =
        nlds_workers::ops::serve_metrics("127.0.0.1:0".parse().unwrap(), stop.clone())
            .await
            .unwrap();
    tokio::spawn(serve);
    let prom = Prometheus::start(
        &bin,
        &[
            ("transfer-put", format!("127.0.0.1:{ops_port}")),
            ("others", bound.to_string()),
        ],
    )
    .await;
    prom.expect(r#"sum(up{job="nlds"})"#, 2.0).await;
    // The worker consumes its queue (RabbitMQ's count, through a passive declare).
    prom.expect(
        r#"nlds_queue_consumers{component="transfer-put",queue="nlds.transfer-put"}"#,
        1.0,
    )
    .await;

    let (src, bytes) = files(9);
    put(&Api::new(&url, TOKEN), src.path()).await;

    // Every file went through the worker process, and only there.
    prom.expect(
        r#"nlds_files_moved_total{component="transfer-put",tier="warm",operation="put"}"#,
        9.0,
    )
    .await;
    prom.expect(
        r#"nlds_bytes_moved_total{component="transfer-put",tier="warm",operation="put"}"#,
        bytes as f64,
    )
    .await;
    prom.expect(
        r#"sum(nlds_files_moved_total{component="others"}) or vector(0)"#,
        0.0,
    )
    .await;
    assert!(
        prom.value(
            r#"nlds_deliveries_total{component="transfer-put",role="transfer-put",outcome="acked"}"#
        )
        .await
        .is_some_and(|v| v >= 1.0)
    );
    prom.expect(
        r#"nlds_backend_up{component="transfer-put",backend="object_store"}"#,
        1.0,
    )
    .await;
    // The monitor, in the other process, saw the transaction start and end.
    prom.expect(
        r#"nlds_transactions_started_total{component="others",action="put"}"#,
        1.0,
    )
    .await;
    prom.expect(
        r#"nlds_transactions_ended_total{component="others",action="put",state="COMPLETE"}"#,
        1.0,
    )
    .await;
    stop.cancel();
}

/// The `nlds_*` names in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("nlds_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        // `nlds_*` in prose is no name.
        if end > "nlds_".len() {
            out.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// A histogram's series names its base (`_bucket`, `_sum`, `_count`).
fn base(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(b) = name.strip_suffix(suffix)
            && nlds_metrics::NAMES.contains(&b)
        {
            return b;
        }
    }
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_alerts_and_the_dashboard_name_is_exported() {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/nlds/files");
    let alerts = std::fs::read_to_string(chart.join("alerts.yaml")).unwrap();
    let dashboard = std::fs::read_to_string(chart.join("dashboard.json")).unwrap();
    let dash: Value = serde_json::from_str(&dashboard).unwrap();
    let mut used = names_in(&alerts);
    let queries: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(queries.len() >= 15, "{queries:?}");
    for q in &queries {
        let names = names_in(q);
        assert!(
            !names.is_empty(),
            "a dashboard query names no nlds metric: {q}"
        );
        used.extend(names);
    }

    // What an embedded server exports after a put.
    let data = temp();
    let e = start_embedded(data.path()).await;
    let (src, _) = files(3);
    let api = Api::new(&e.url, &e.token);
    put(&api, src.path()).await;
    // A quota for the put's group (the embedded user's), so that its limit is exported too.
    let (s, me) = api.get("/api/v2/whoami").await;
    assert_eq!(s, 200, "{me}");
    let group = me["groups"][0].as_str().unwrap().to_owned();
    let set = reqwest::Client::new()
        .put(format!("{}/api/v2/admin/quota/{group}", e.url))
        .bearer_auth(&e.token)
        .json(&json!({"warm_bytes": 1_000_000}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success(), "{:?}", set.text().await);
    let scrape = reqwest::get(e.metrics_url.clone().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported: BTreeSet<String> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let end = l.find(['{', ' ']).unwrap_or(l.len());
            base(&l[..end]).to_owned()
        })
        .collect();
    // Only a policy pass makes this one (its code path: policy/pass.rs).
    let not_after_a_put = ["nlds_policy_passes_total"];
    for name in nlds_metrics::NAMES {
        assert!(
            exported.contains(*name) || not_after_a_put.contains(name),
            "{name} is declared but not exported after a put:\n{scrape}"
        );
    }
    for name in &used {
        let b = base(name);
        assert!(
            nlds_metrics::NAMES.contains(&b),
            "{name} (alerts or dashboard) is not a metric nlds exports: {:?}",
            nlds_metrics::NAMES
        );
    }
    assert!(
        scrape.contains(&format!(
            "nlds_quota_bytes{{group=\"{group}\",tier=\"warm\"}} 1000000"
        )),
        "{scrape}"
    );
    // Nothing of the put's paths or tokens is in a label.
    assert!(!scrape.contains(&*src.path().to_string_lossy()), "{scrape}");
    assert!(!scrape.contains(&e.token));
    e.stop().await.unwrap();
}

/// The value of the series `series` (name and labels, as exported) in a scrape of `url`.
async fn scraped(url: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls the scrape of `url` until `series` has the value `want`.
async fn expect_scraped(url: &str, series: &str, want: f64) {
    let start = Instant::now();
    loop {
        let got = scraped(url, series).await;
        if got == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{series}: {got:?}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_archive_and_a_recall_count_in_the_cold_tier_metrics() {
    let data = temp();
    let mut settings = ServerSettings::default();
    settings.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    settings.workers.archive.interval_secs = 0;
    settings.workers.archive.aggregate_bytes = 1 << 20;
    settings.workers.archive.recall_poll_secs = 1;
    settings.workers.cold.dir_mut().stage_delay_ms = 500;
    settings.policy.get_pin_secs = 0;
    let e = Embedded::start(EmbeddedOptions {
        data_dir: data.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap();
    let metrics = e.metrics_url.clone().unwrap();
    let api = Api::new(&e.url, &e.token);
    let (src, bytes) = files(6);
    let put = api
        .put_and_wait(json!({"paths": [src.path()], "label": "cold"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    assert_eq!(
        scraped(
            &metrics,
            r#"nlds_files_moved_total{tier="cold",operation="put"}"#
        )
        .await,
        None,
        "nothing archived yet"
    );

    // A round writes the six files into one aggregate.
    let (s, b) = api.post("/api/v2/admin/archive", &json!({})).await;
    assert_eq!(s, 202, "{b}");
    expect_scraped(
        &metrics,
        r#"nlds_files_moved_total{tier="cold",operation="put"}"#,
        6.0,
    )
    .await;
    let aggregate = scraped(
        &metrics,
        r#"nlds_bytes_moved_total{tier="cold",operation="put"}"#,
    )
    .await
    .expect("the aggregate's bytes");
    assert!(aggregate > bytes as f64, "a tar holds its members and more");

    // Evicted from the warm tier, then got: recalled from the cold tier and restored.
    let (s, b) = api
        .post(
            "/api/v2/admin/evict",
            &json!({"holding_id": put.holding_id.unwrap()}),
        )
        .await;
    assert_eq!((s, b["files"].as_u64()), (200, Some(6)), "{b}");
    let target = temp();
    let got = api
        .get_and_wait(json!({"paths": [src.path()], "label": "cold", "target": target.path()}))
        .await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    for (series, want) in [
        (
            r#"nlds_files_moved_total{tier="cold",operation="get"}"#,
            6.0,
        ),
        (
            r#"nlds_bytes_moved_total{tier="cold",operation="get"}"#,
            bytes as f64,
        ),
        (
            r#"nlds_files_moved_total{tier="warm",operation="get"}"#,
            6.0,
        ),
        (r#"nlds_recall_wait_seconds_count"#, 1.0),
    ] {
        expect_scraped(&metrics, series, want).await;
    }
    assert!(
        scraped(
            &metrics,
            r#"nlds_last_success_timestamp_seconds{tier="cold",operation="get"}"#
        )
        .await
        .is_some_and(|t| t > 1.0e9)
    );
    e.stop().await.unwrap();
}
