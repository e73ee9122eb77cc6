//! Object-store tenancies over the distributed mode (RabbitMQ, PostgreSQL, moto): a put naming a
//! tenancy (legacy `tenancy=` or native `"tenancy"`) lands in that tenancy's bucket with its
//! credentials, is read back from there byte for byte, an unknown tenancy fails every file with
//! a reason naming the file and the tenancy, and the tenancy's secret key appears in no answer,
//! failure, catalogue row or collected log.

use std::time::Duration;

use nlds_core::State;
use nlds_workers::config::TenancyConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, TOKEN, start_roles};
use crate::helpers::{Api, files_containing, temp};

/// The API server on the bus, with legacy tenancy selection on; returns its URL.
async fn start_server(settings: &nlds_workers::run::Settings, stop: CancellationToken) -> String {
    use nlds_server::{AppState, ServerConfig, router};
    let bus = nlds_workers::run::connect_bus(&settings.bus).await.unwrap();
    let auth = nlds_server::auth::StaticTokens::from_toml(&format!(
        "[[token]]\ntoken = \"{TOKEN}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n"
    ))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = ServerConfig {
        listen: addr,
        rpc_timeout_secs: 30,
        ..Default::default()
    };
    cfg.legacy_init.tenancy = "advertised.example".into();
    cfg.legacy_init.select_tenancy = true;
    let state = AppState {
        bus,
        auth: std::sync::Arc::new(auth),
        cfg: std::sync::Arc::new(cfg),
    };
    tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    format!("http://{addr}")
}

/// The objects of `bucket` as `endpoint` lists them (straight from moto, not through nlds).
async fn keys(cfg: &nlds_workers::config::ObjectStoreConfig) -> Vec<String> {
    let client = nlds_storage::s3::client(cfg).await.unwrap();
    let out = client
        .list_objects_v2()
        .bucket(&cfg.bucket)
        .send()
        .await
        .unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_land_in_the_named_tenancy_and_come_back() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let mut settings = svc.settings();
    let dir = temp();
    let secret = format!("tenancy-b-secret-{}", uuid::Uuid::new_v4().simple());
    let secret_file = dir.path().join("b-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let bucket_b = format!("{}-b", svc.bucket);
    settings.workers.object_store.tenancies.insert(
        "b".into(),
        TenancyConfig {
            access_key: Some("tenancy-b-access".into()),
            secret_key_file: Some(secret_file.clone()),
            bucket: Some(bucket_b.clone()),
            ..Default::default()
        },
    );
    let store_b = settings.workers.object_store.tenancy("b").unwrap();
    let log_dir = settings.workers.log_dir.clone();
    let stop = CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);

    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let legacy_file = src.join("legacy.nc");
    let native_file = src.join("native.nc");
    let unknown_file = src.join("unknown.nc");
    std::fs::write(&legacy_file, b"legacy bytes for tenancy b\n".repeat(300)).unwrap();
    std::fs::write(&native_file, b"native bytes for tenancy b\n".repeat(500)).unwrap();
    std::fs::write(&unknown_file, b"never stored").unwrap();
    let s = |p: &std::path::Path| p.display().to_string();
    let mut answers = Vec::new();

    // Legacy: the tenancy in the query, as the Python client sends it (with its own keys,
    // which are dropped).
    let tid = uuid::Uuid::new_v4().to_string();
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{url}/api/1.0.0/files/"))
        .query(&[
            ("transaction_id", tid.as_str()),
            ("user", "alice"),
            ("group", "climate"),
            ("access_key", "client-access"),
            ("secret_key", "client-secret"),
            ("tenancy", "b"),
        ])
        .bearer_auth(TOKEN)
        .json(&json!({"filelist": [s(&legacy_file)], "label": "legacy-b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    answers.push(r.text().await.unwrap());
    let t = api.wait(&tid, Duration::from_secs(120)).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");

    // Native: "tenancy" in the body.
    let t = api
        .put_and_wait(json!({"paths": [s(&native_file)], "label": "native-b", "tenancy": "b"}))
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");

    // Both objects are in bucket b, none in the default bucket.
    let in_b = keys(&store_b).await;
    assert_eq!(in_b.len(), 2, "{in_b:?}");
    assert!(in_b.iter().all(|k| k.starts_with("tx/")), "{in_b:?}");
    let in_default = keys(&settings.workers.object_store).await;
    assert!(in_default.is_empty(), "{in_default:?}");

    // They come back byte for byte (read with tenancy b's client: the catalogue recorded it).
    let target = dir.path().join("restore");
    std::fs::create_dir_all(&target).unwrap();
    for (label, file) in [("legacy-b", &legacy_file), ("native-b", &native_file)] {
        let t = api
            .get_and_wait(json!({"paths": [s(file)], "label": label, "target": s(&target)}))
            .await;
        assert_eq!(t.state, State::Complete, "{t:#?}");
        let back = crate::helpers::restored(&target, file);
        assert_eq!(
            std::fs::read(&back).unwrap(),
            std::fs::read(file).unwrap(),
            "{}",
            back.display()
        );
    }

    // An unknown tenancy: every file fails, naming the file and the tenancy; nothing stored.
    let t = api
        .put_and_wait(json!({"paths": [s(&unknown_file)], "label": "nowhere", "tenancy": "nope"}))
        .await;
    assert_eq!(t.state, State::Failed, "{t:#?}");
    let failed: Vec<_> = t.failed_files().collect();
    assert_eq!(failed.len(), 1, "{t:#?}");
    assert_eq!(failed[0].path, s(&unknown_file));
    assert!(
        failed[0]
            .reason
            .contains(&format!("cannot store {}", s(&unknown_file)))
            && failed[0]
                .reason
                .contains("tenancy \"nope\" is not configured on this worker"),
        "{}",
        failed[0].reason
    );
    answers.push(serde_json::to_string(&t).unwrap());
    assert_eq!(keys(&store_b).await.len(), 2);
    assert!(keys(&settings.workers.object_store).await.is_empty());

    // The tenancy's secret is in no answer, no failure reason, no collected log.
    for a in &answers {
        assert!(!a.contains(&secret), "{a}");
    }
    let (_, list) = api.get("/api/v2/list?label=legacy-b").await;
    assert!(!list.to_string().contains(&secret));
    let logged = files_containing(&log_dir, &secret);
    assert!(logged.is_empty(), "the secret is in {logged:?}");
    stop.cancel();
}
