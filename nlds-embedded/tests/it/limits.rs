//! Request limits and the smaller hardening decisions (docs/SECURITY.md): regular-expression
//! count, length and cost; numbers the database cannot hold; the embedded data directory's
//! permissions; the banner; the status page; the identity provider's 503.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nlds_bus::{Bus, BusError, ConsumeOptions, Handler};
use nlds_core::message::RpcReply;
use nlds_core::{Envelope, Payload, Role, RoutingKey, State};
use nlds_server::auth::StaticTokens;
use nlds_server::config::ServerConfig;
use nlds_server::{AppState, router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::embedded::{start_embedded, urlencode};
use crate::helpers::{Api, ServerProcess, temp};

const ALICE: &str = "alice-token-limits-0123456789";

fn alice_tokens(data: &std::path::Path) {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        data.join("tokens.toml"),
        format!("[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n"),
    )
    .unwrap();
}

fn assert_400(status: u16, body: &Value, needle: &str) {
    assert_eq!(status, 400, "{body}");
    let msg = body["error"]["message"]
        .as_str()
        .or_else(|| body["detail"]["msg"].as_str())
        .or_else(|| body["detail"][0]["msg"].as_str())
        .unwrap_or_default();
    assert!(
        msg.contains(needle) || body.to_string().contains(needle),
        "{body} should mention {needle:?}"
    );
}

/// Puts one file labelled `label`; returns its holding id.
async fn one_holding(api: &Api, label: &str) -> i64 {
    let src = temp();
    let f = src.path().join("data.nc");
    std::fs::write(&f, b"bytes").unwrap();
    let t = api
        .put_and_wait(json!({"paths": [f], "label": label}))
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let (_, list) = api.get(&format!("/api/v2/holdings?label={label}")).await;
    list["holdings"][0]["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_regex_count_and_length_are_refused_fast_with_400() {
    let data = temp();
    alice_tokens(data.path());
    let e = start_embedded(data.path()).await;
    let api = Api::new(&e.url, ALICE);
    one_holding(&api, "rx").await;

    // 1,000 crafted patterns: refused at once, naming the limit.
    let many: Vec<String> = (0..1000).map(|i| format!(r"\w{{100}}{i}")).collect();
    for path in ["/api/v2/get", "/api/v2/delete"] {
        let t = Instant::now();
        let (status, body) = api
            .post(
                path,
                &json!({"paths": many, "regex": true, "label": "rx", "dry_run": true}),
            )
            .await;
        assert_400(status, &body, "at most 100");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{path}: {:?}",
            t.elapsed()
        );
    }
    // A pattern longer than 1,024 bytes: refused, naming its index and the limit.
    let long = vec!["^/a".to_owned(), format!("^/{}", "a".repeat(1100))];
    let (status, body) = api
        .post(
            "/api/v2/get",
            &json!({"paths": long, "regex": true, "label": "rx", "dry_run": true}),
        )
        .await;
    assert_400(status, &body, "regular expression 1 is 1102 bytes long");
    assert_400(status, &body, "1024");
    let long1 = "a".repeat(1100);
    let (status, body) = api
        .get(&format!("/api/v2/files?regex=true&path={long1}"))
        .await;
    assert_400(status, &body, "1024");
    let (status, body) = api
        .get(&format!("/api/v2/holdings?regex=true&label={long1}"))
        .await;
    assert_400(status, &body, "1024");
    let (status, body) = api
        .get(&format!(
            "/api/v2/transactions?regex=true&job_label={long1}"
        ))
        .await;
    assert_400(status, &body, "1024");
    // The legacy API too.
    let (status, body) = api
        .get(&format!(
            "/api/1.0.0/catalog/find/?user=alice&group=climate&regex=True&path={long1}"
        ))
        .await;
    assert_400(status, &body, "1024");

    // Regular expressions within the limits work as before.
    let (status, body) = api
        .post(
            "/api/v2/get",
            &json!({"paths": [r"data\.nc$", "^/nothing"], "regex": true, "label": "rx", "dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["files_total"], 1, "{body}");
    assert_eq!(body["missing"].as_array().unwrap().len(), 1, "{body}");
    let (status, body) = api
        .get(&format!(
            "/api/v2/files?regex=true&path={}",
            urlencode(r"\.nc$")
        ))
        .await;
    assert_eq!((status, body["total"].as_u64()), (200, Some(1)), "{body}");
}

/// Legal but expensive patterns within the caps must not block the process: `/healthz` answers
/// well within a second while they are handled (a correctness bound, not a benchmark).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_expensive_patterns_do_not_block_healthz() {
    let data = temp();
    alice_tokens(data.path());
    let e = start_embedded(data.path()).await;
    let api = Api::new(&e.url, ALICE);
    one_holding(&api, "rx").await;

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut requests = tokio::task::JoinSet::new();
    for r in 0..6 {
        let api = Api::new(&e.url, ALICE);
        // Each compiles (with the default size limit) in ~100 ms; 100 of them per request.
        let paths: Vec<String> = (0..100).map(|i| format!(r"(?i)\w{{100}}{r}x{i}")).collect();
        requests.spawn(async move {
            api.post(
                "/api/v2/get",
                &json!({"paths": paths, "regex": true, "label": "rx", "dry_run": true}),
            )
            .await
        });
    }
    let healthz = {
        let (url, done) = (e.url.clone(), done.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut worst = Duration::ZERO;
            while !done.load(Ordering::SeqCst) {
                let t = Instant::now();
                let r = http.get(format!("{url}/healthz")).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
                worst = worst.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            worst
        })
    };
    while let Some(r) = requests.join_next().await {
        let (status, body) = r.unwrap();
        // Too expensive for the size limit: a clear 400 from the catalogue.
        assert!(status == 400 || status == 200, "{status} {body}");
    }
    done.store(true, Ordering::SeqCst);
    let worst = healthz.await.unwrap();
    assert!(
        worst < Duration::from_millis(500),
        "/healthz took {worst:?} while regular expressions were compiled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_numbers_out_of_the_database_range_are_400_naming_the_parameter() {
    let data = temp();
    alice_tokens(data.path());
    let e = start_embedded(data.path()).await;
    let api = Api::new(&e.url, ALICE);
    one_holding(&api, "n").await;

    let huge = "offset 18446744073709551615 is out of range (0..=9223372036854775807)";
    for route in ["holdings", "files", "transactions"] {
        let (status, body) = api
            .get(&format!("/api/v2/{route}?offset=18446744073709551615"))
            .await;
        assert_400(status, &body, huge);
        let (status, body) = api
            .get(&format!("/api/v2/{route}?offset=9223372036854775808"))
            .await;
        assert_400(status, &body, "offset 9223372036854775808 is out of range");
        // The largest offset the database holds is fine: an empty page.
        let (status, body) = api
            .get(&format!("/api/v2/{route}?offset=9223372036854775807"))
            .await;
        assert_eq!(status, 200, "{route}: {body}");
    }
    for route in ["holdings", "files"] {
        let (status, body) = api.get(&format!("/api/v2/{route}?holding_id=-1")).await;
        assert_400(status, &body, "holding_id -1 is out of range");
        let (status, body) = api
            .get(&format!("/api/v2/{route}?holding_id=18446744073709551615"))
            .await;
        assert_400(status, &body, "holding_id");
    }
    let (status, body) = api.get("/api/v2/transactions?id=-5").await;
    assert_400(status, &body, "id -5 is out of range");
    let (status, body) = api
        .post(
            "/api/v2/get",
            &json!({"paths": ["/a"], "holding_id": -7, "dry_run": true}),
        )
        .await;
    assert_400(status, &body, "holding_id -7 is out of range");

    // The legacy API: holding_id, id and limit.
    let q = "/api/1.0.0/catalog/list/?user=alice&group=climate";
    let (status, body) = api
        .get(&format!("{q}&holding_id=18446744073709551615"))
        .await;
    assert_400(
        status,
        &body,
        "holding_id 18446744073709551615 is out of range",
    );
    let (status, body) = api.get(&format!("{q}&holding_id=-1")).await;
    assert_400(status, &body, "holding_id -1 is out of range");
    let (status, body) = api.get(&format!("{q}&limit=99999999999999999999")).await;
    assert_400(status, &body, "limit 99999999999999999999 is out of range");
    let (status, body) = api
        .get("/api/1.0.0/catalog/find/?user=alice&group=climate&holding_id=9223372036854775808")
        .await;
    assert_400(
        status,
        &body,
        "holding_id 9223372036854775808 is out of range",
    );
    let (status, body) = api
        .get("/api/1.0.0/status/?user=alice&group=climate&id=18446744073709551615")
        .await;
    assert_400(status, &body, "id 18446744073709551615 is out of range");
    // Nothing panicked: the process still answers.
    let (status, _) = api.get("/api/v2/holdings").await;
    assert_eq!(status, 200);
}

/// Every directory and file under `root`, with its permission bits (links skipped).
fn modes(root: &std::path::Path) -> Vec<(std::path::PathBuf, bool, u32)> {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_symlink())
        .map(|e| {
            let m = e.metadata().unwrap();
            (
                e.path().to_owned(),
                m.is_dir(),
                m.permissions().mode() & 0o7777,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_embedded_data_directory_is_private_whatever_the_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o000));
    let data = temp();
    let dir = data.path().join("nlds");
    alice_tokens(&dir);
    // An existing, world-readable directory and file are made private at start.
    std::fs::create_dir_all(dir.join("old")).unwrap();
    std::fs::write(dir.join("old/stale.txt"), b"x").unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("old"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("old/stale.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let e = start_embedded(&dir).await;
    let api = Api::new(&e.url, ALICE);
    one_holding(&api, "private").await;
    let all = modes(&e.data_dir);
    assert!(
        all.iter()
            .any(|(p, d, _)| !d && p.starts_with(e.data_dir.join("objects"))),
        "an object was stored: {all:#?}"
    );
    let wrong: Vec<_> = all
        .iter()
        .filter(|(_, d, m)| *m != if *d { 0o700 } else { 0o600 })
        .collect();
    assert!(wrong.is_empty(), "not private: {wrong:#?}");
    e.stop().await.unwrap();
}

#[tokio::test]
async fn limits_embedded_banner_names_the_token_file_never_the_token() {
    let data = temp();
    let logs = temp();
    let p = ServerProcess::start(data.path(), logs.path(), None, "info").await;
    let tokens = std::fs::read_to_string(data.path().join("tokens.toml")).unwrap();
    let token = tokens
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .and_then(|t| t.strip_suffix('"'))
        .unwrap()
        .to_owned();
    let out = p.output();
    assert!(!out.contains(&token), "the banner prints the token:\n{out}");
    assert!(out.contains("client.toml (mode 0600"), "{out}");
    p.stop();
}

// ---------------------------------------------------------------------------------- status page

/// A bus whose every role has two consumers that answer pings slowly; counts the pings.
struct PingBus {
    pings: AtomicUsize,
}

#[async_trait]
impl Bus for PingBus {
    async fn publish(&self, _: RoutingKey, _: &Envelope) -> Result<(), BusError> {
        Ok(())
    }
    async fn rpc(&self, _: RoutingKey, env: &Envelope, _: Duration) -> Result<Envelope, BusError> {
        self.pings.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(env.reply(Payload::Reply(RpcReply::Alive {
            role: "r".into(),
            pid: 4242,
            hostname: "secret-host".into(),
        })))
    }
    async fn consume(
        &self,
        _: Role,
        _: Arc<dyn Handler>,
        _: ConsumeOptions,
        _: CancellationToken,
    ) -> Result<(), BusError> {
        Ok(())
    }
    async fn ready(&self) -> Result<(), BusError> {
        Ok(())
    }
    async fn publish_delayed(
        &self,
        _: RoutingKey,
        _: &Envelope,
        _: Duration,
    ) -> Result<(), BusError> {
        Ok(())
    }
    async fn consumers(&self, _: Role) -> Result<u32, BusError> {
        Ok(2)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_status_page_hides_hosts_from_anonymous_callers_and_caches_pings() {
    let bus = Arc::new(PingBus {
        pings: AtomicUsize::new(0),
    });
    let auth = StaticTokens::from_toml(
        "[[token]]\ntoken = \"op-token-0123456789abcdef\"\nuser = \"nlds\"\ngroups = [\"nlds\"]\nadmin = true\n\
         [[token]]\ntoken = \"user-token-0123456789abcdef\"\nuser = \"u\"\ngroups = [\"g\"]\n",
    )
    .unwrap();
    let state = AppState {
        bus: bus.clone(),
        auth: Arc::new(auth),
        cfg: Arc::new(ServerConfig::default()),
        live: Default::default(),
        webhook_key: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let http = reqwest::Client::new();

    // 20 concurrent anonymous requests: one fan-out (catalog: two roles, two consumers each).
    let gets = (0..20).map(|_| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let r = http
                .get(format!("{url}/system/status/catalog"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 202);
            r.json::<Value>().await.unwrap()
        }
    });
    let answers = futures::future::join_all(gets).await;
    let one_fan_out = bus.pings.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&one_fan_out),
        "{one_fan_out} pings for 20 requests"
    );
    for v in &answers {
        assert_eq!(v, &json!({"microservice_name": "catalog", "status": "up"}));
    }
    let page = http
        .get(format!("{url}/system/status/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("consumers"), "{page}");
    assert!(!page.contains("secret-host") && !page.contains("4242"));
    let after_page = bus.pings.load(Ordering::SeqCst);
    // A plain user is no operator; an operator sees the detail (from the cache).
    let user = http
        .get(format!("{url}/system/status/catalog"))
        .bearer_auth("user-token-0123456789abcdef")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(user.get("pid").is_none(), "{user}");
    let op = http
        .get(format!("{url}/system/status/catalog"))
        .bearer_auth("op-token-0123456789abcdef")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(op["pid"][0], 4242, "{op}");
    assert_eq!(op["hostname"][0], "secret-host", "{op}");
    assert_eq!(op["num_success"], 4, "{op}");
    assert_eq!(bus.pings.load(Ordering::SeqCst), after_page, "cached");
}

/// A provider that cannot be reached is a 503 that does not name it (the log does).
#[tokio::test]
async fn limits_provider_unavailable_does_not_name_the_provider() {
    use base64::Engine;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let auth =
        nlds_server::auth::oidc::OidcAuthenticator::new(nlds_server::auth::oidc::OidcConfig {
            issuer,
            ..Default::default()
        })
        .unwrap();
    let state = AppState {
        bus: Arc::new(nlds_bus::memory::MemoryBus::new()),
        auth: Arc::new(auth),
        cfg: Arc::new(ServerConfig::default()),
        live: Default::default(),
        webhook_key: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let b64 = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let jwt = format!(
        "{}.{}.c2ln",
        b64(json!({"alg": "RS256", "kid": "k"})),
        b64(json!({"sub": "x"}))
    );
    let r = reqwest::Client::new()
        .get(format!("{url}/api/v2/whoami"))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "the identity provider is unavailable; try again later"
    );
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
}
