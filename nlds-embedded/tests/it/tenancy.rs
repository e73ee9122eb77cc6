//! Object-store tenancies over the distributed mode (RabbitMQ, PostgreSQL, and an S3 server that
//! checks signatures: `signing_s3`, where each tenancy's keys are the only ones that open it): a
//! put naming a tenancy (legacy `tenancy=` or native `"tenancy"`) lands in that tenancy's bucket
//! with its credentials, is read back from there byte for byte, an unknown tenancy fails every
//! file with a reason naming the file and the tenancy, a tenancy configured with a wrong secret
//! keeps a worker from starting with an error naming the tenancy, its bucket and endpoint (and no
//! secret), and the
//! tenancies' secret keys appear in no answer, failure, catalogue row or collected log.

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
        live: Default::default(),
        webhook_key: None,
    };
    tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    format!("http://{addr}")
}

/// The objects of `cfg`'s bucket as its endpoint lists them to its keys (straight from the S3
/// server, not through nlds); none when the bucket does not exist.
async fn keys(cfg: &nlds_workers::config::ObjectStoreConfig) -> Vec<String> {
    let client = nlds_storage::s3::client(cfg).await.unwrap();
    match client.list_objects_v2().bucket(&cfg.bucket).send().await {
        Ok(out) => out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect(),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_bucket()) => Vec::new(),
        Err(e) => panic!("listing {}: {e:?}", cfg.bucket),
    }
}

/// Every row of every table of the catalogue database, as text (to look for a secret in).
async fn catalogue_text(database_url: &str) -> String {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let db = Database::connect(database_url).await.unwrap();
    let backend = db.get_database_backend();
    let tables = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
        ))
        .await
        .unwrap();
    assert!(tables.len() > 5, "no catalogue tables in {database_url}");
    let mut text = String::new();
    for t in tables {
        let table: String = t.try_get("", "tablename").unwrap();
        let rows = db
            .query_all_raw(Statement::from_string(
                backend,
                format!("SELECT t::text AS row FROM \"{table}\" t"),
            ))
            .await
            .unwrap();
        for r in rows {
            text.push_str(&table);
            text.push(' ');
            text.push_str(&r.try_get::<String>("", "row").unwrap());
            text.push('\n');
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_land_in_the_named_tenancy_and_come_back() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let mut settings = svc.settings();
    let dir = temp();
    let stop = CancellationToken::new();
    // Each store's keys: the default one's, tenancy b's, and tenancy c's (whose workers are
    // given a wrong secret below). The server knows these pairs and no others.
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let default_secret = format!("default-secret-{unique}");
    let secret = format!("tenancy-b-secret-{unique}");
    let c_secret = format!("tenancy-c-secret-{unique}");
    let c_wrong = format!("tenancy-c-wrong-{unique}");
    let endpoint = crate::signing_s3::start(
        &dir.path().join("s3"),
        &[
            ("nlds-default-access", &default_secret),
            ("tenancy-b-access", &secret),
            ("tenancy-c-access", &c_secret),
        ],
        stop.clone(),
    )
    .await;
    settings.workers.object_store.endpoint = endpoint.clone();
    settings.workers.object_store.access_key = "nlds-default-access".into();
    settings.workers.object_store.secret_key = default_secret.clone().into();
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
    // The signatures are checked: tenancy b's bucket does not open to the default keys, nor to
    // b's access key with another secret.
    let mut wrong = store_b.clone();
    wrong.secret_key_file = None;
    wrong.access_key = "nlds-default-access".into();
    wrong.secret_key = default_secret.clone().into();
    let refused = nlds_storage::s3::client(&wrong)
        .await
        .unwrap()
        .list_objects_v2()
        .bucket(&bucket_b)
        .send()
        .await;
    assert!(refused.is_err(), "the S3 server accepted a foreign key");
    wrong.access_key = "tenancy-b-access".into();
    wrong.secret_key = c_wrong.clone().into();
    let refused = nlds_storage::s3::client(&wrong)
        .await
        .unwrap()
        .list_objects_v2()
        .bucket(&bucket_b)
        .send()
        .await;
    let refused = format!("{:?}", refused.expect_err("a wrong secret was accepted"));
    assert!(refused.contains("SignatureDoesNotMatch"), "{refused}");
    let log_dir = settings.workers.log_dir.clone();
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

    // A tenancy configured with a wrong secret: the S3 server refuses its requests, and a
    // worker given that configuration refuses to start, naming the tenancy, its bucket and
    // endpoint, and no secret.
    let mut with_c = settings.workers.object_store.clone();
    let c_file = dir.path().join("c-secret");
    std::fs::write(&c_file, format!("{c_wrong}\n")).unwrap();
    with_c.tenancies.insert(
        "c".into(),
        TenancyConfig {
            access_key: Some("tenancy-c-access".into()),
            secret_key_file: Some(c_file),
            bucket: Some(format!("{}-c", svc.bucket)),
            ..Default::default()
        },
    );
    let err = match nlds_storage::s3::S3Clients::build(&with_c).await {
        Ok(_) => panic!("a tenancy with a wrong secret was accepted"),
        Err(e) => e.message,
    };
    assert!(
        err.contains("object-store tenancy c")
            && err.contains(&format!("{}-c", svc.bucket))
            && err.contains(&endpoint),
        "{err}"
    );
    for sec in [&c_wrong, &c_secret, &secret, &default_secret] {
        assert!(!err.contains(sec.as_str()), "{err}");
    }
    answers.push(err);
    assert_eq!(keys(&store_b).await.len(), 2);

    // The secrets are in no answer, no failure reason, no listing, no catalogue row, no
    // collected log.
    let (status, list) = api.get("/api/v2/files?label=legacy-b").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["files"].as_array().map(Vec::len), Some(1), "{list}");
    answers.push(list.to_string());
    let catalogue = catalogue_text(&svc.database_url).await;
    assert!(
        catalogue.contains(&bucket_b),
        "the catalogue does not record tenancy b's bucket:\n{catalogue}"
    );
    for sec in [&secret, &c_wrong, &c_secret, &default_secret] {
        for a in &answers {
            assert!(!a.contains(sec.as_str()), "{a}");
        }
        let rows: Vec<_> = catalogue
            .lines()
            .filter(|l| l.contains(sec.as_str()))
            .collect();
        assert!(rows.is_empty(), "a secret is in catalogue rows {rows:?}");
        let logged = files_containing(&log_dir, sec);
        assert!(logged.is_empty(), "a secret is in {logged:?}");
    }
    stop.cancel();
}
