//! Archiving to the cold tier in embedded mode (the `dir` tape emulator): an admin-triggered round
//! packs every warm-only file into verified tar aggregates, and only then does `find` show cold
//! copies.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use nlds_core::State;
use nlds_core::api::{FilePage, Tier};
use nlds_embedded::{Embedded, EmbeddedOptions};
use nlds_server::ServerSettings;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::json;

use crate::helpers::{Api, temp};

async fn start(data: &std::path::Path) -> Embedded {
    let mut settings = ServerSettings::default();
    settings.workers.archive.interval_secs = 0; // rounds only when asked
    settings.workers.archive.aggregate_bytes = 64 * 1024;
    settings.workers.archive.aggregate_members = 40;
    settings.workers.archive.aggregates_per_holding = 1000;
    Embedded::start(EmbeddedOptions {
        data_dir: data.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap()
}

/// The embedded instance's catalogue, read-only.
async fn catalogue_db(data: &std::path::Path) -> sea_orm::DatabaseConnection {
    Database::connect(format!(
        "sqlite://{}?mode=ro",
        data.join("nlds.db").display()
    ))
    .await
    .unwrap()
}

/// The `n` column of a one-row query.
async fn scalar(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

async fn files(api: &Api, label: &str) -> FilePage {
    let (s, b) = api
        .get(&format!("/api/v2/files?label={label}&limit=10000"))
        .await;
    assert_eq!(s, 200, "{b}");
    serde_json::from_value(b).unwrap()
}

/// Polls holding `label` until it has at least `min_files` plain files and every one of them has
/// a cold copy; fails after `limit`. Returns the last page.
pub(crate) async fn wait_archived(
    api: &Api,
    label: &str,
    min_files: usize,
    limit: Duration,
    poll: Duration,
) -> FilePage {
    let start = Instant::now();
    loop {
        let page = files(api, label).await;
        let plain: Vec<_> = page
            .files
            .iter()
            .filter(|f| f.kind == nlds_core::PathKind::File)
            .collect();
        if plain.len() >= min_files
            && plain
                .iter()
                .all(|f| f.locations.iter().any(|l| l.tier == Tier::Cold))
        {
            return page;
        }
        assert!(start.elapsed() < limit, "{label}: not archived: {page:#?}");
        tokio::time::sleep(poll).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_round_packs_warm_files_into_verified_aggregates() {
    let data = temp();
    let e = start(data.path()).await;
    let api = Api::new(&e.url, &e.token);
    let src = temp();
    let root = src.path().join("campaign");
    std::fs::create_dir_all(root.join("small")).unwrap();
    let mut originals: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..120 {
        let p = root.join(format!("small/f{i:03}.dat"));
        let body: Vec<u8> = (0..(i * 37 % 3000)).map(|j| (i + j) as u8).collect();
        std::fs::write(&p, &body).unwrap();
        originals.insert(p.to_string_lossy().into_owned(), body);
    }
    let big = root.join("big.bin");
    let body: Vec<u8> = (0..300_000u32).map(|j| (j % 251) as u8).collect();
    std::fs::write(&big, &body).unwrap();
    originals.insert(big.to_string_lossy().into_owned(), body);
    let put = api
        .put_and_wait(json!({"paths": [root], "label": "campaign"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");

    // Before a round: warm copies only.
    let before = files(&api, "campaign").await;
    assert!(
        before
            .files
            .iter()
            .all(|f| f.locations.iter().all(|l| l.tier == Tier::Warm))
    );

    // Only an operator may start a round.
    let (s, b) = api.post("/api/v2/admin/archive", &json!({})).await;
    assert_eq!(s, 202, "{b}");

    let page = wait_archived(
        &api,
        "campaign",
        0,
        Duration::from_secs(60),
        Duration::from_millis(200),
    )
    .await;

    // Every file keeps its warm copy and has exactly one cold one, in a named aggregate.
    let mut by_aggregate: HashMap<String, Vec<String>> = HashMap::new();
    for f in page
        .files
        .iter()
        .filter(|f| f.kind == nlds_core::PathKind::File)
    {
        assert!(f.locations.iter().any(|l| l.tier == Tier::Warm), "{f:?}");
        let cold: Vec<_> = f
            .locations
            .iter()
            .filter(|l| l.tier == Tier::Cold)
            .collect();
        assert_eq!(cold.len(), 1, "{f:?}");
        assert_eq!(cold[0].bucket, "dir");
        by_aggregate
            .entry(cold[0].key.clone())
            .or_default()
            .push(f.path.clone());
    }
    // The big file (over the 64 KiB target) is alone; the small ones share aggregates of at most
    // 40 members.
    let big_s = big.to_string_lossy().into_owned();
    let alone: Vec<_> = by_aggregate
        .values()
        .filter(|v| v.contains(&big_s))
        .collect();
    assert_eq!(alone.len(), 1);
    assert_eq!(alone[0].len(), 1, "a large file is archived alone");
    assert!(by_aggregate.values().all(|v| v.len() <= 40));
    assert!(by_aggregate.len() >= 4, "{:?}", by_aggregate.keys());

    // Each aggregate on the tape emulator is a tar holding exactly its members' bytes, and the
    // checksums the catalogue recorded are those of the file on tape.
    let db = catalogue_db(data.path()).await;
    for (name, paths) in &by_aggregate {
        let tar_path = data.path().join("cold/tape").join(name);
        let bytes = std::fs::read(&tar_path).unwrap();
        let mut ar = tar::Archive::new(std::io::Cursor::new(&bytes));
        let mut seen = Vec::new();
        for entry in ar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = format!("/{}", entry.path().unwrap().display());
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
            assert_eq!(&content, originals.get(&path).unwrap(), "{path} in {name}");
            seen.push(path);
        }
        let mut want = paths.clone();
        want.sort();
        seen.sort();
        assert_eq!(seen, want, "{name}");
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!(
                    "SELECT state, size, adler32, blake3 FROM aggregation WHERE name = '{name}'"
                ),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<String>("", "state").unwrap(), "stored");
        assert_eq!(row.try_get::<i64>("", "size").unwrap(), bytes.len() as i64);
        let mut a = adler2::Adler32::new();
        a.write_slice(&bytes);
        assert_eq!(
            row.try_get::<i64>("", "adler32").unwrap(),
            i64::from(a.checksum())
        );
        assert_eq!(
            row.try_get::<String>("", "blake3").unwrap(),
            blake3::hash(&bytes).to_hex().to_string()
        );
    }

    // A second round finds nothing left to archive.
    let (s, _) = api.post("/api/v2/admin/archive", &json!({})).await;
    assert_eq!(s, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = scalar(&db, "SELECT COUNT(*) AS n FROM aggregation").await;
    assert_eq!(count as usize, by_aggregate.len());
    e.stop().await.unwrap();
}

/// The same over RabbitMQ, PostgreSQL and moto: the round runs through the real broker and the
/// catalogue's leases live in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_archive_round_over_the_distributed_services() {
    use crate::distributed::{Services, TOKEN, start_roles, start_server};
    let Some(svc) = Services::new().await else {
        return;
    };
    let mut settings = svc.settings();
    settings.workers.archive.interval_secs = 0;
    settings.workers.archive.aggregate_bytes = 4096;
    settings.workers.archive.aggregate_members = 10;
    settings.workers.archive.aggregates_per_holding = 100;
    let cold = temp();
    settings.workers.cold.dir_mut().root = cold.path().to_owned();
    let stop = tokio_util::sync::CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);
    let src = temp();
    for i in 0..25 {
        std::fs::write(src.path().join(format!("f{i}")), vec![i as u8; 1000]).unwrap();
    }
    let put = api
        .put_and_wait(json!({"paths": [src.path()], "label": "dist-archive"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    // The API's archive and evict endpoints are for operators only.
    for (path, body) in [
        ("/api/v2/admin/archive", json!({})),
        ("/api/v2/admin/evict", json!({"holding_id": put.holding_id})),
    ] {
        let (s, b) = api.post(path, &body).await;
        assert_eq!(s, 403, "{path}: {b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is not a service operator"),
            "{b}"
        );
    }
    let bus = nlds_workers::run::connect_bus(&settings.bus).await.unwrap();
    nlds_workers::archive_put::request_round(bus.as_ref())
        .await
        .unwrap();
    let page = wait_archived(
        &api,
        "dist-archive",
        25,
        Duration::from_secs(60),
        Duration::from_millis(300),
    )
    .await;
    let aggregates: std::collections::BTreeSet<String> = page
        .files
        .iter()
        .flat_map(|f| f.locations.iter())
        .filter(|l| l.tier == Tier::Cold)
        .map(|l| l.key.clone())
        .collect();
    // 25 files of 1000 bytes, at most 4 KiB (so 4 files) per aggregate: 7 aggregates on "tape".
    assert_eq!(aggregates.len(), 7, "{aggregates:?}");
    for a in &aggregates {
        assert!(cold.path().join("tape").join(a).is_file(), "{a}");
    }
    stop.cancel();
}

/// Recall in embedded mode: a get of files whose only copy is cold stages their aggregate once
/// (two concurrent gets share the recall), restores them to the warm tier and completes like any
/// get; a corrupt aggregate fails the get with its name and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_of_cold_only_files_recall_their_aggregate_once_and_detect_corruption() {
    let data = temp();
    let mut settings = ServerSettings::default();
    settings.workers.archive.interval_secs = 0;
    settings.workers.archive.aggregate_bytes = 1 << 20;
    settings.workers.archive.recall_poll_secs = 1;
    settings.workers.cold.dir_mut().stage_delay_ms = 1500;
    // The corruption check evicts again right after the gets: their files must not stay pinned.
    settings.policy.get_pin_secs = 0;
    let e = Embedded::start(EmbeddedOptions {
        data_dir: data.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap();
    let api = Api::new(&e.url, &e.token);
    let src = temp();
    let root = src.path().join("cold");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..6 {
        std::fs::write(
            root.join(format!("m{i}")),
            format!("member {i} ").repeat(100 + i),
        )
        .unwrap();
    }
    let put = api
        .put_and_wait(json!({"paths": [root], "label": "recall"}))
        .await;
    assert_eq!(put.state, State::Complete);
    let holding_id = put.holding_id.unwrap();
    api.post("/api/v2/admin/archive", &json!({})).await;
    let start = Instant::now();
    let name = loop {
        let page = files(&api, "recall").await;
        let colds: Vec<String> = page
            .files
            .iter()
            .filter(|f| f.kind == nlds_core::PathKind::File)
            .filter_map(|f| {
                f.locations
                    .iter()
                    .find(|l| l.tier == Tier::Cold)
                    .map(|l| l.key.clone())
            })
            .collect();
        if colds.len() == 6 {
            assert!(colds.iter().all(|c| *c == colds[0]), "one aggregate");
            break colds[0].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Bad evict requests are refused with their reason, and change nothing.
    let (s, b) = api.post("/api/v2/admin/evict", &json!({})).await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("holding_id"),
        "{b}"
    );
    let (s, b) = api
        .post("/api/v2/admin/evict", &json!({"holding_id": 999_999}))
        .await;
    assert_eq!(s, 404, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("holding 999999 does not exist"),
        "{b}"
    );
    // Evict the warm copies: find then shows cold copies only.
    let (s, b) = api
        .post("/api/v2/admin/evict", &json!({"holding_id": holding_id}))
        .await;
    assert_eq!((s, b["files"].as_u64()), (200, Some(6)), "{b}");
    let page = files(&api, "recall").await;
    assert!(
        page.files
            .iter()
            .filter(|f| f.kind == nlds_core::PathKind::File)
            .all(|f| f.locations.len() == 1 && f.locations[0].tier == Tier::Cold)
    );

    // Two concurrent gets of members of the same aggregate share one recall.
    let db = catalogue_db(data.path()).await;
    let t1 = temp();
    let t2 = temp();
    let m0 = root.join("m0").to_string_lossy().into_owned();
    let m1 = root.join("m1").to_string_lossy().into_owned();
    let m2 = root.join("m2").to_string_lossy().into_owned();
    let (s1, r1) = api
        .post(
            "/api/v2/get",
            &json!({"paths": [m0, m1], "target": t1.path()}),
        )
        .await;
    let (s2, r2) = api
        .post("/api/v2/get", &json!({"paths": [m2], "target": t2.path()}))
        .await;
    assert_eq!((s1, s2), (202, 202), "{r1} {r2}");
    let start = Instant::now();
    while scalar(&db, "SELECT COUNT(*) AS n FROM recall_request").await < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "requests not registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) AS n FROM recall").await,
        1,
        "one recall for both gets"
    );
    // While the aggregate is staged, the get shows ARCHIVE_PREPARING.
    let start = Instant::now();
    loop {
        let (_, t) = api
            .get(&format!(
                "/api/v2/transactions/{}",
                r1["transaction_id"].as_str().unwrap()
            ))
            .await;
        if t["state"] == "ARCHIVE_PREPARING" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{t}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // find and list show which files are being recalled, and the tiers.
    let page = files(&api, "recall").await;
    let recalling: Vec<&str> = page
        .files
        .iter()
        .filter(|f| f.recalling)
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(recalling.len(), 3, "{recalling:?}");
    assert!(recalling.contains(&m0.as_str()) && recalling.contains(&m2.as_str()));
    let (_, l) = api.get("/api/v2/holdings?label=recall").await;
    let h = &l["holdings"][0];
    assert_eq!(
        (
            h["warm_files"].as_u64(),
            h["cold_files"].as_u64(),
            h["recalling_files"].as_u64()
        ),
        (Some(0), Some(6), Some(3)),
        "{l}"
    );
    let g1 = api
        .wait(
            r1["transaction_id"].as_str().unwrap(),
            Duration::from_secs(60),
        )
        .await;
    let g2 = api
        .wait(
            r2["transaction_id"].as_str().unwrap(),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        (g1.state, g2.state),
        (State::Complete, State::Complete),
        "{g1:#?} {g2:#?}"
    );
    for (t, p) in [(&t1, &m0), (&t1, &m1), (&t2, &m2)] {
        let restored = t.path().join(p.trim_start_matches('/'));
        assert_eq!(
            std::fs::read(&restored).unwrap(),
            std::fs::read(p).unwrap(),
            "{p}"
        );
    }
    assert_eq!(scalar(&db, "SELECT COUNT(*) AS n FROM recall").await, 0);
    // Every member is warm again (the recall restores the whole aggregate).
    let page = files(&api, "recall").await;
    assert!(
        page.files
            .iter()
            .filter(|f| f.kind == nlds_core::PathKind::File)
            .all(|f| f.locations.iter().any(|l| l.tier == Tier::Warm))
    );

    // Corruption: evict again, flip a byte of the aggregate on "tape", get: the get fails
    // naming the aggregate, and no warm copy appears.
    let (s, _) = api
        .post("/api/v2/admin/evict", &json!({"holding_id": holding_id}))
        .await;
    assert_eq!(s, 200);
    let tape = data.path().join("cold/tape").join(&name);
    let mut bytes = std::fs::read(&tape).unwrap();
    let at = 512 + 10; // inside the first member's data
    bytes[at] ^= 0x55;
    std::fs::write(&tape, &bytes).unwrap();
    let t3 = temp();
    let got = api
        .get_and_wait(json!({"paths": [m0], "target": t3.path()}))
        .await;
    assert_eq!(got.state, State::Failed, "{got:#?}");
    let reasons: Vec<&str> = got.failed_files().map(|f| f.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains(&format!("aggregate {name} is corrupt"))),
        "{reasons:?}"
    );
    assert!(!t3.path().join(m0.trim_start_matches('/')).exists());
    let page = files(&api, "recall").await;
    assert!(
        page.files
            .iter()
            .filter(|f| f.kind == nlds_core::PathKind::File)
            .all(|f| f.locations.len() == 1 && f.locations[0].tier == Tier::Cold)
    );
    assert_eq!(scalar(&db, "SELECT COUNT(*) AS n FROM recall").await, 0);
    e.stop().await.unwrap();
}

/// The round trip for one cold backend: 2,000 small files and 3 files of 64 MiB are put,
/// archived (small files packed together, each large one alone), checked, evicted from the warm
/// tier, and got back byte-identical from the cold tier alone.
async fn backend_round_trip(cold: nlds_storage::cold::ColdConfig) {
    let data = temp();
    let mut settings = ServerSettings::default();
    settings.workers.archive.interval_secs = 0;
    settings.workers.archive.aggregate_bytes = 32 << 20;
    settings.workers.archive.recall_poll_secs = 1;
    settings.workers.cold = cold;
    let backend = settings.workers.cold.backend().to_owned();
    let e = Embedded::start(EmbeddedOptions {
        data_dir: data.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap();
    let api = Api::new(&e.url, &e.token);
    let src = temp();
    let root = src.path().join("round trip");
    std::fs::create_dir_all(&root).unwrap();
    crate::helpers::make_tree(&root, 2000, 0);
    for i in 0..3 {
        use std::io::Write;
        let mut f = std::fs::File::create(root.join(format!("big{i}.bin"))).unwrap();
        let chunk: Vec<u8> = (0..(1u32 << 20))
            .map(|j| (j.wrapping_mul(2654435761) >> (i + 3)) as u8)
            .collect();
        for _ in 0..64 {
            f.write_all(&chunk).unwrap();
        }
    }
    let put = api
        .put_and_wait(json!({"paths": [root], "label": "rt"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    let (s, _) = api.post("/api/v2/admin/archive", &json!({})).await;
    assert_eq!(s, 202);
    let page = wait_archived(
        &api,
        "rt",
        2004,
        Duration::from_secs(240),
        Duration::from_millis(500),
    )
    .await;
    let mut members: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    for f in page
        .files
        .iter()
        .filter(|f| f.kind == nlds_core::PathKind::File)
    {
        let c = f.locations.iter().find(|l| l.tier == Tier::Cold).unwrap();
        assert_eq!(c.bucket, backend);
        members
            .entry(c.key.clone())
            .or_default()
            .push((f.path.clone(), f.size));
    }
    // Each 64 MiB file alone; the 2,001 small ones (with the empty file) together.
    assert_eq!(members.len(), 4, "{backend}: {:?}", members.keys());
    assert_eq!(
        members
            .values()
            .filter(|m| m.len() == 1 && m[0].1 == 64 << 20)
            .count(),
        3
    );
    let db = catalogue_db(data.path()).await;
    for (name, m) in &members {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT state, size, adler32, blake3, members FROM aggregation WHERE name = '{name}'"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<String>("", "state").unwrap(), "stored");
        assert_eq!(row.try_get::<i64>("", "members").unwrap() as usize, m.len());
        assert_eq!(row.try_get::<String>("", "blake3").unwrap().len(), 64);
        let payload: u64 = m.iter().map(|(_, s)| *s).sum();
        assert!(row.try_get::<i64>("", "size").unwrap() as u64 > payload);
    }

    let holding = put.holding_id.unwrap();
    let (s, b) = api
        .post("/api/v2/admin/evict", &json!({"holding_id": holding}))
        .await;
    assert_eq!((s, b["files"].as_u64()), (200, Some(2004)), "{b}");
    // The evicted copies are deleted after the answer (through the outbox), possibly while this
    // get recalls them: a recall restores to keys of its own (it/evict_race.rs holds the
    // deletion back to prove it).

    let tgt = temp();
    let got = api
        .get_and_wait(json!({"paths": [root], "label": "rt", "target": tgt.path()}))
        .await;
    assert_eq!(got.state, State::Complete, "{backend}: {got:#?}");
    assert_eq!(
        crate::helpers::shape(&crate::helpers::restored(tgt.path(), &root)),
        crate::helpers::shape(&root),
        "{backend}: restored tree differs"
    );
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_the_dir_tape_emulator() {
    let mut cold = nlds_storage::cold::ColdConfig::default();
    cold.dir_mut().stage_delay_ms = 1000;
    backend_round_trip(cold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_s3_glacier_on_moto() {
    let Some(endpoint) = crate::helpers::service("NLDS_TEST_S3_ENDPOINT") else {
        return;
    };
    let mut cold = nlds_storage::cold::ColdConfig::S3Glacier(Default::default());
    cold.glacier_mut().store.endpoint = endpoint;
    cold.glacier_mut().store.access_key = "testing".into();
    cold.glacier_mut().store.secret_key = "testing".into();
    cold.glacier_mut().store.bucket = format!(
        "nlds-cold-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    // moto computes multipart composite checksums with CRC32 instead of CRC32C; every part's
    // CRC32C is still sent (see cold::glacier).
    cold.glacier_mut().verify_multipart_checksum = false;
    cold.glacier_mut().part_size = 16 << 20;
    backend_round_trip(cold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_xrootd() {
    let Some(url) = crate::helpers::service("NLDS_TEST_XROOTD_URL") else {
        return;
    };
    let mut cold = nlds_storage::cold::ColdConfig::Xrootd(Default::default());
    // Each test writes under its own directory of the server's export.
    cold.xrootd_mut().url = format!(
        "{}/rt-{}",
        url.trim_end_matches('/'),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    backend_round_trip(cold).await;
}

/// An unreachable cold store: the write is retried with back-off, then given up; nothing is
/// marked archived and the files stay eligible (the next round leases them again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cold_store_is_retried_then_leaves_the_holding_eligible() {
    let data = temp();
    let mut settings = ServerSettings::default();
    settings.workers.archive.interval_secs = 0;
    settings.bus.retry_delays_ms = vec![200, 400];
    // xrootd_mut() selects the xrootd backend.
    // A port nothing listens on: every operation is "unavailable" (transient).
    settings.workers.cold.xrootd_mut().url = "root://127.0.0.1:1//tape".into();
    settings.workers.cold.xrootd_mut().timeout_secs = 2;
    let e = Embedded::start(EmbeddedOptions {
        data_dir: data.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap();
    if which("xrdcp").is_none()
        && nlds_hooks::skip::missing(
            "",
            "xrdcp is not installed",
            "scripts/services.sh installs it",
        )
    {
        return;
    }
    let api = Api::new(&e.url, &e.token);
    let src = temp();
    for i in 0..5 {
        std::fs::write(src.path().join(format!("f{i}")), vec![b'x'; 100]).unwrap();
    }
    let put = api
        .put_and_wait(json!({"paths": [src.path()], "label": "down"}))
        .await;
    assert_eq!(put.state, State::Complete);
    let db = catalogue_db(data.path()).await;
    let log = data.path().join("logs/archive-put.log");
    for round in 1..=2 {
        api.post("/api/v2/admin/archive", &json!({})).await;
        // Leased, retried (3 attempts), given up, released.
        let start = Instant::now();
        loop {
            let gave_up = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("gave up after 3 attempts")
                .count();
            if gave_up >= round && scalar(&db, "SELECT COUNT(*) AS n FROM aggregation").await == 0 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "round {round}: aggregations {}, logs {:?}: {}",
                scalar(&db, "SELECT COUNT(*) AS n FROM aggregation").await,
                std::fs::read_dir(data.path().join("logs"))
                    .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                    .unwrap_or_default(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("cold store unavailable"), "{text}");
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) AS n FROM location WHERE tier = 'cold'"
            )
            .await,
            0,
            "nothing is marked archived"
        );
    }
    e.stop().await.unwrap();
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(cmd))
        .find(|p| p.is_file())
}

/// kill -9 of the archive-get worker while a recall waits for staging: the wait is a durable
/// delayed message in RabbitMQ, so a restarted worker picks the recall up and the get completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_archive_get_while_a_recall_waits_loses_nothing() {
    use crate::distributed::{Services, TOKEN, start_roles, start_server, workers_binary};
    let Some(svc) = Services::new().await else {
        return;
    };
    let mut settings = svc.settings();
    settings.workers.archive.interval_secs = 0;
    settings.workers.archive.recall_poll_secs = 1;
    let cold = temp();
    settings.workers.cold.dir_mut().root = cold.path().to_owned();
    settings.workers.cold.dir_mut().stage_delay_ms = 4000;
    let cfg_dir = temp();
    let config = cfg_dir.path().join("workers.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
    let spawn = || {
        std::process::Command::new(workers_binary())
            .args(["--config", &config.to_string_lossy(), "archive-get"])
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let others: Vec<_> = nlds_workers::run::all_roles()
        .into_iter()
        .filter(|r| *r != nlds_core::Role::ArchiveGet)
        .collect();
    start_roles(&settings, others, stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);
    let src = temp();
    for i in 0..4 {
        std::fs::write(
            src.path().join(format!("k{i}")),
            format!("kill {i}").repeat(500),
        )
        .unwrap();
    }
    let put = api
        .put_and_wait(json!({"paths": [src.path()], "label": "kill"}))
        .await;
    assert_eq!(put.state, State::Complete);
    let bus = nlds_workers::run::connect_bus(&settings.bus).await.unwrap();
    nlds_workers::archive_put::request_round(bus.as_ref())
        .await
        .unwrap();
    wait_archived(
        &api,
        "kill",
        0,
        Duration::from_secs(60),
        Duration::from_millis(200),
    )
    .await;
    // Drop the warm copies through the catalogue (what the admin endpoint does).
    let evict = nlds_core::Envelope::new(
        uuid::Uuid::new_v4(),
        "alice",
        "climate",
        nlds_core::api::ApiAction::Get,
        "evict",
        nlds_core::Payload::Evict {
            holding_id: put.holding_id.unwrap(),
        },
    );
    bus.rpc(
        nlds_core::RoutingKey::new(nlds_core::Worker::Catalog, nlds_core::Action::Evict),
        &evict,
        Duration::from_secs(20),
    )
    .await
    .unwrap();

    let mut child = spawn();
    let tgt = temp();
    let (s, r) = api
        .post(
            "/api/v2/get",
            &json!({"paths": [src.path()], "label": "kill", "target": tgt.path()}),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    let tid = r["transaction_id"].as_str().unwrap().to_owned();
    // Wait until the worker has asked for the stage (the emulator records the request).
    let requests = cold.path().join("requests");
    let start = Instant::now();
    while walkdir::WalkDir::new(&requests)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .count()
        == 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no stage request"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, t) = api.get(&format!("/api/v2/transactions/{tid}")).await;
    // The recall was waiting for its stage when the worker died. (The warm file's own
    // sub-record may still be transferring on a loaded machine, so the overall state is not
    // asserted, only that it is not final.)
    let subs = t["sub_records"].as_array().expect("sub_records");
    assert!(
        subs.iter().any(|s| s["state"] == "ARCHIVE_PREPARING"),
        "no recall waiting for its stage: {t}"
    );
    assert!(
        !matches!(
            t["state"].as_str(),
            Some("COMPLETE" | "FAILED" | "COMPLETE_WITH_ERRORS")
        ),
        "{t}"
    );
    // Nobody consumes the delayed checks for a while; then a new worker takes over.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut child = spawn();
    let got = api.wait(&tid, Duration::from_secs(60)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(got.state, State::Complete, "{got:#?}");
    for i in 0..4 {
        let p = src.path().join(format!("k{i}"));
        assert_eq!(
            std::fs::read(crate::helpers::restored(tgt.path(), &p)).unwrap(),
            std::fs::read(&p).unwrap()
        );
    }
    stop.cancel();
}
