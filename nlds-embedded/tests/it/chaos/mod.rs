//! The fault-injection suite (issue "Proof", item 1), CI-sized: the distributed deployment, one
//! process per role over a RabbitMQ node, a PostgreSQL cluster and an S3 endpoint of the test's
//! own, takes a stream of puts while every role is killed with SIGKILL and restarted, the broker
//! is stopped and started, the database is down for a while and S3 is unreachable; then an
//! archive round and the recall of evicted files while archive-put, archive-get and transfer-get
//! are killed. Afterwards every transaction is COMPLETE, each file is catalogued once with one
//! object and no object is unreferenced, every get is byte-identical, and nothing is left behind
//! (no unfinished multipart upload, no temporary file in a restore target, no partial aggregate,
//! no spool directory, no message in any queue), and the storage audit finds nothing.
//!
//! Sizes and durations come from the environment, so `scripts/chaos.sh` runs the long variant
//! (thousands of files, random kills) with the same code: `NLDS_CHAOS_FILES_PER_PUT` (20),
//! `NLDS_CHAOS_OUTAGE_SECS` (8), `NLDS_CHAOS_ROUNDS` (1: how many times the whole kill sequence
//! runs), `NLDS_CHAOS_SEED` (random kill order when set).

pub mod fleet;
pub mod services;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nlds_core::{Role, State};
use nlds_workers::run::{BusConfig, BusKind, Settings};
use serde_json::{Value, json};

use crate::distributed::bucket_keys;
use crate::helpers::{Api, restored, service, shape, temp};
use fleet::Fleet;
use services::{Postgres, Proxy, Rabbit, free_port};

const TOKEN: &str = "chaos-user-token-0123456789abcdef";
const ADMIN_TOKEN: &str = "chaos-operator-token-0123456789ab";

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A put source: `n` small files in a few directories, and in the first tree a file larger than
/// two multipart parts, so that a killed transfer-put can leave a multipart upload behind.
fn make_source(root: &Path, i: usize, n: usize, big: bool) -> usize {
    use rand::RngCore;
    let mut rng = rand::rng();
    for j in 0..n {
        let dir = root.join(format!("d{}", j % 4));
        std::fs::create_dir_all(&dir).unwrap();
        let mut data = vec![0u8; 200 + (j * 131 + i * 17) % 6000];
        rng.fill_bytes(&mut data);
        std::fs::write(dir.join(format!("f{i:03}-{j:04}.dat")), &data).unwrap();
    }
    if big {
        let mut data = vec![0u8; 12 << 20];
        rng.fill_bytes(&mut data);
        std::fs::write(root.join("big.bin"), &data).unwrap();
        return n + 1;
    }
    n
}

struct Put {
    label: String,
    root: PathBuf,
    files: usize,
    tid: String,
}

/// Submits a request, retrying while the deployment cannot accept it (broker or database down):
/// what a client does, under one transaction id of its choosing, so that a retry after an answer
/// lost on its way (the catalogue accepted the put, then the broker went down) finds the
/// transaction instead of starting a second one. Returns the transaction id.
async fn submit(api: &Api, path: &str, body: &Value) -> String {
    let tid = uuid::Uuid::new_v4().to_string();
    let mut body = body.clone();
    body["transaction_id"] = json!(tid);
    let start = Instant::now();
    loop {
        let (s, r) = api.post(path, &body).await;
        if s == 202 {
            assert_eq!(r["transaction_id"], json!(tid), "{r}");
            return tid;
        }
        assert!(
            s >= 500 || s == 0,
            "{path} refused for a reason other than an outage: {s} {r}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "{path} not accepted within 180 s: {s} {r}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits for a transaction to end, tolerating API errors while the deployment recovers.
async fn wait_final(api: &Api, tid: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (s, t) = api.get(&format!("/api/v2/transactions/{tid}")).await;
        if s == 200 {
            let state: State = serde_json::from_value(t["state"].clone()).unwrap();
            if state.is_final() || state.is_failed() {
                return t;
            }
        }
        assert!(
            start.elapsed() < limit,
            "transaction {tid} not final after {limit:?}: {s} {t}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn find(api: &Api, label: &str) -> Vec<Value> {
    let (s, page) = api
        .get(&format!("/api/v2/files?label={label}&limit=10000"))
        .await;
    assert_eq!(s, 200, "{page}");
    page["files"].as_array().unwrap().clone()
}

fn settings(rabbit: &Rabbit, pg: &Postgres, s3: &Proxy, dir: &Path, port: u16) -> Settings {
    let mut s = Settings {
        bus: BusConfig {
            kind: BusKind::Rabbitmq,
            amqp_url: rabbit.url(),
            prefetch: 4,
            retry_delays_ms: vec![500, 2_000, 5_000, 10_000, 20_000],
            ..Default::default()
        },
        ..Default::default()
    };
    s.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    s.server.tokens_file = dir.join("tokens.toml");
    std::fs::write(
        &s.server.tokens_file,
        format!(
            "[[token]]\ntoken = \"{TOKEN}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\n\
             [[token]]\ntoken = \"{ADMIN_TOKEN}\"\nuser = \"op\"\ngroups = [\"climate\"]\nadmin = true\n"
        ),
    )
    .unwrap();
    let w = &mut s.workers;
    w.database_url = pg.url();
    w.log_dir = dir.join("worker-logs");
    w.object_store.endpoint = s3.url();
    w.object_store.access_key = "testing".into();
    w.object_store.secret_key = "testing".into();
    w.object_store.bucket = format!("nlds-chaos-{port}");
    w.posix_checks = Some(nlds_workers::posix::PosixChecks::Service);
    w.work_dir = dir.join("work");
    // One transfer-put process at a time: a new one may abort every unfinished upload.
    w.transfer.stale_upload_secs = 0;
    w.index.batch_files = 10;
    w.transfer.multipart_threshold = 5 << 20;
    w.transfer.part_size = 5 << 20;
    w.cold.dir_mut().root = dir.join("cold");
    w.archive.interval_secs = 0; // rounds when the operator asks
    // The one round asked for archives every holding (the long variant has 50 and more; the
    // default of 16 a round left the rest for rounds that never came).
    w.archive.holdings_per_round = 100_000;
    w.archive.aggregate_bytes = 256 << 10;
    w.archive.recall_poll_secs = 1;
    w.archive.spool_dir = Some(dir.join("spool"));
    // One archive-put process at a time: a new one may remove every partial aggregate.
    w.archive.stale_partial_secs = 0;
    s.policy.get_pin_secs = 0;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_lose_nothing_and_leave_nothing_behind() {
    let Some(s3) = service("NLDS_TEST_S3_ENDPOINT") else {
        return;
    };
    let upstream = s3
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("NLDS_TEST_S3_ENDPOINT is http://HOST:PORT");
    let per_put = knob("NLDS_CHAOS_FILES_PER_PUT", 20) as usize;
    let outage = Duration::from_secs(knob("NLDS_CHAOS_OUTAGE_SECS", 8));
    let rounds = knob("NLDS_CHAOS_ROUNDS", 1);
    let t0 = Instant::now();

    let dir = temp();
    let rabbit = Rabbit::start(&dir.path().join("rabbit"));
    let pg = Postgres::start(&dir.path().join("pg"));
    let proxy = Proxy::start(upstream).await;
    let port = free_port();
    let settings = settings(&rabbit, &pg, &proxy, dir.path(), port);
    let config = dir.path().join("nlds.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
    let mut fleet = Fleet::start(&config, &dir.path().join("logs"), port).await;
    let api = Arc::new(Api::new(&fleet.url, TOKEN));
    let admin = Api::new(&fleet.url, ADMIN_TOKEN);

    // Puts keep arriving, one every two seconds, for as long as the faults go on.
    let sources = temp();
    let faulting = Arc::new(AtomicBool::new(true));
    let submitter = {
        let (api, faulting, root) = (api.clone(), faulting.clone(), sources.path().to_owned());
        tokio::spawn(async move {
            let mut puts = Vec::new();
            let mut i = 0;
            while faulting.load(Ordering::SeqCst) || i < 4 {
                let tree = root.join(format!("put{i:03}"));
                let files = make_source(&tree, i, per_put, i == 0);
                let label = format!("chaos{i:03}");
                let tid = submit(
                    &api,
                    "/api/v2/put",
                    &json!({"paths": [tree], "label": label}),
                )
                .await;
                puts.push(Put {
                    label,
                    root: tree,
                    files,
                    tid,
                });
                i += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            puts
        })
    };

    // The faults: every role killed and restarted, the broker stopped and started, the database
    // down, S3 unreachable.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut order: Vec<Role> = Role::ALL.to_vec();
    for round in 0..rounds {
        if let Ok(seed) = std::env::var("NLDS_CHAOS_SEED") {
            use rand::SeedableRng;
            use rand::seq::SliceRandom;
            let seed: u64 = seed.parse::<u64>().unwrap_or(0) + round;
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        }
        for role in &order {
            fleet
                .kill_and_restart(*role, Duration::from_millis(300))
                .await;
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        rabbit.stop();
        tokio::time::sleep(Duration::from_secs(2)).await;
        rabbit.start_again();
        tokio::time::sleep(Duration::from_secs(3)).await;
        pg.stop();
        tokio::time::sleep(outage).await;
        pg.start_again();
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.down();
        tokio::time::sleep(outage).await;
        proxy.up();
    }
    faulting.store(false, Ordering::SeqCst);
    let puts = submitter.await.unwrap();
    let faults_took = t0.elapsed();

    for p in &puts {
        let t = wait_final(&api, &p.tid, Duration::from_secs(900)).await;
        assert_eq!(
            t["state"],
            "COMPLETE",
            "{} ended {}: {t:#}\n{}",
            p.label,
            t["state"],
            fleet.log("monitor")
        );
    }
    fleet.assert_all_running();

    // Each file catalogued once, with one object, and no object that the catalogue does not know.
    let mut catalogued_keys = BTreeSet::new();
    let mut holdings = BTreeMap::new();
    let mut total = 0;
    for p in &puts {
        let files = find(&api, &p.label).await;
        let plain: Vec<&Value> = files.iter().filter(|f| f["kind"] == "file").collect();
        let paths: BTreeSet<&str> = plain.iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(
            paths.len(),
            plain.len(),
            "{}: a path catalogued twice",
            p.label
        );
        assert_eq!(plain.len(), p.files, "{}: every file catalogued", p.label);
        for f in &plain {
            let warm: Vec<&Value> = f["locations"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["tier"] == "warm")
                .collect();
            assert_eq!(warm.len(), 1, "one warm copy: {f:#}");
            catalogued_keys.insert(warm[0]["key"].as_str().unwrap().to_owned());
        }
        holdings.insert(p.label.clone(), plain[0]["holding_id"].as_i64().unwrap());
        total += p.files;
    }
    let os = &settings.workers.object_store;
    let s3c = nlds_storage::s3::client(os).await.unwrap();
    let stored: BTreeSet<String> = bucket_keys(os, "").await.into_iter().collect();
    let orphans: Vec<&String> = stored.difference(&catalogued_keys).collect();
    let missing: Vec<&String> = catalogued_keys.difference(&stored).collect();
    // Which transactions the strays belong to (a key is `<prefix>/<transaction>/<hash>`).
    let mut strays = BTreeMap::new();
    for key in orphans.iter().chain(&missing) {
        let tid = key.split('/').nth(1).unwrap_or_default().to_owned();
        if let std::collections::btree_map::Entry::Vacant(e) = strays.entry(tid) {
            let (_, t) = api.get(&format!("/api/v2/transactions/{}", e.key())).await;
            e.insert(format!("{} {}", t["state"], t["label"]));
        }
    }
    assert!(
        orphans.is_empty() && missing.is_empty(),
        "objects in the bucket = objects the catalogue references: {} orphan(s) {orphans:?}, \
         {} catalogued but not stored {missing:?}; their transactions {strays:?}; the puts: {:?}\n{}",
        orphans.len(),
        missing.len(),
        puts.iter().map(|p| (&p.label, &p.tid)).collect::<Vec<_>>(),
        fleet.log("catalogue")
    );
    assert_eq!(stored.len(), total);

    // An archive round while archive-put is killed, then the warm copies evicted and everything
    // recalled by gets while archive-get and transfer-get are killed.
    submit_admin(&admin, "/api/v2/admin/archive", &json!({})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    fleet
        .kill_and_restart(Role::ArchivePut, Duration::from_millis(300))
        .await;
    wait_archived(&api, &puts, Duration::from_secs(600)).await;
    for id in holdings.values() {
        let (s, b) = admin
            .post("/api/v2/admin/evict", &json!({"holding_id": id}))
            .await;
        assert_eq!(s, 200, "evict {id}: {b}");
    }
    // The evicted copies are deleted after the answer: once they are gone, the bucket holds only
    // what the gets' recalls restore (to keys of their own), which the end checks against the
    // catalogue.
    let start = Instant::now();
    while !bucket_keys(os, "").await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "evicted objects not deleted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let targets = temp();
    let mut gets = Vec::new();
    for p in &puts {
        let target = targets.path().join(&p.label);
        std::fs::create_dir_all(&target).unwrap();
        let tid = submit(
            &api,
            "/api/v2/get",
            &json!({"paths": [p.root], "label": p.label, "target": target}),
        )
        .await;
        gets.push((p, target, tid));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet
        .kill_and_restart(Role::ArchiveGet, Duration::from_millis(300))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fleet
        .kill_and_restart(Role::TransferGet, Duration::from_millis(300))
        .await;
    for (p, target, tid) in &gets {
        let t = wait_final(&api, tid, Duration::from_secs(900)).await;
        assert_eq!(t["state"], "COMPLETE", "get of {}: {t:#}", p.label);
        assert_eq!(
            shape(&restored(target, &p.root)),
            shape(&p.root),
            "{}: the restored tree differs",
            p.label
        );
    }
    fleet.assert_all_running();

    // Nothing left behind.
    let uploads = s3c
        .list_multipart_uploads()
        .bucket(&os.bucket)
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "unfinished multipart uploads: {:?}",
        uploads.uploads()
    );
    let leftovers: Vec<PathBuf> = walkdir::WalkDir::new(targets.path())
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().to_owned())
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files in restore targets: {leftovers:?}"
    );
    let cold_tmp: Vec<PathBuf> = walkdir::WalkDir::new(dir.path().join("cold"))
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().to_owned())
        .filter(|p| p.to_string_lossy().contains("~tmp"))
        .collect();
    assert!(cold_tmp.is_empty(), "partial aggregates: {cold_tmp:?}");
    // The spool holds one (empty) directory per live archive-get process, nothing else.
    let spooled: Vec<PathBuf> = walkdir::WalkDir::new(dir.path().join("spool"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().to_owned())
        .collect();
    assert!(spooled.is_empty(), "recall spool left behind: {spooled:?}");
    let start = Instant::now();
    loop {
        let busy = rabbit.busy_queues();
        if busy.is_empty() {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let dead = rabbit.dead_letters(&busy).await;
            panic!("messages left in queues (dead letters included): {busy:?}\n{dead:#?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The storage audit agrees: every catalogued copy is in storage, whole, and nothing else is.
    let (s, b) = admin
        .post(
            "/api/v2/admin/audit/storage",
            &json!({"warm": true, "cold": true, "scrub": true}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let run = b["run_id"].as_i64().unwrap();
    let report = wait_audit(&admin, run).await;
    let counts = &report["counts"];
    let findings: u64 = ["dark", "lost", "size_mismatch", "corrupt"]
        .iter()
        .map(|k| counts[*k].as_u64().unwrap())
        .sum();
    assert_eq!(findings, 0, "the audit found: {report:#}");
    assert_eq!(
        counts["warm_objects"].as_u64(),
        Some(total as u64),
        "{report:#}"
    );
    for role in Role::ALL {
        assert!(
            fleet.kills.get(role).copied().unwrap_or(0) >= 1,
            "{role} never killed"
        );
    }
    eprintln!(
        "chaos: {} puts, {total} files, {} kills, {rounds} broker restart(s), database and S3 \
         down {outage:?} each; faults over {faults_took:.0?}, all verified after {:.0?}; \
         lost 0, duplicated 0, debris 0, audit clean",
        puts.len(),
        fleet.kills.values().sum::<u32>(),
        t0.elapsed()
    );
}

/// Waits for the storage audit run `id` to finish (a run still going is listed with the note
/// `running` and no counts); returns its report.
async fn wait_audit(admin: &Api, id: i64) -> Value {
    let start = Instant::now();
    loop {
        let (s, b) = admin.get("/api/v2/admin/audit/storage?runs=20").await;
        assert_eq!(s, 200, "{b}");
        if let Some(r) = b["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"].as_i64() == Some(id))
            && r["notes"] != json!(["running"])
        {
            return r.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "audit {id} not finished: {b}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn submit_admin(admin: &Api, path: &str, body: &Value) {
    let (s, b) = admin.post(path, body).await;
    assert!(s == 200 || s == 202, "{path}: {s} {b}");
}

/// Waits until every file of every put has a cold copy.
async fn wait_archived(api: &Api, puts: &[Put], limit: Duration) {
    let start = Instant::now();
    'again: loop {
        assert!(start.elapsed() < limit, "not archived within {limit:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        for p in puts {
            let files = find(api, &p.label).await;
            if !files.iter().filter(|f| f["kind"] == "file").all(|f| {
                f["locations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l["tier"] == "cold")
            }) {
                continue 'again;
            }
        }
        return;
    }
}
