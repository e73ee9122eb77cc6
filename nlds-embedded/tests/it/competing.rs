//! Competing consumers in distributed mode (RabbitMQ, PostgreSQL, moto S3, the dir tape store):
//! two processes each of transfer-put, catalogue and archive-put consume one queue set during a
//! put of a few hundred files and two simultaneous archive rounds. Every file is catalogued once,
//! with one object in the bucket and one cold copy; both processes of each role took work (their
//! logs say so); and the rounds' leases keep any aggregate from being packed or written twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nlds_core::api::{FilePage, Tier};
use nlds_core::{PathKind, Role, State};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, TOKEN, bucket_keys, start_roles, start_server, workers_binary};
use crate::helpers::{Api, restored, shape, temp};

/// The roles run twice, as separate processes.
const TWICE: [Role; 3] = [Role::TransferPut, Role::Catalogue, Role::ArchivePut];

/// One `nlds-workers ROLE` process, logging at info to a file; killed on drop.
struct Worker {
    role: Role,
    log: PathBuf,
    child: Child,
}

impl Worker {
    fn spawn(config: &Path, role: Role, log: PathBuf) -> Self {
        let child = Command::new(workers_binary())
            .args(["--config", &config.to_string_lossy(), role.as_str()])
            .env(
                "RUST_LOG",
                "info,sqlx=warn,sea_orm=warn,aws=warn,lapin=warn",
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        Self { role, log, child }
    }

    /// Everything it logged so far.
    fn output(&self) -> String {
        let mut s = std::fs::read_to_string(&self.log).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default());
        s
    }

    /// The lines it logged containing `what`.
    fn lines(&self, what: &str) -> Vec<String> {
        self.output()
            .lines()
            .filter(|l| l.contains(what))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `field=` in a log line (`field=12` or `field=name`).
fn field<'a>(line: &'a str, field: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {field}="))? + field.len() + 2;
    line[at..].split_whitespace().next()
}

async fn files(api: &Api, label: &str) -> FilePage {
    let (s, b) = api
        .get(&format!("/api/v2/files?label={label}&limit=10000"))
        .await;
    assert_eq!(s, 200, "{b}");
    serde_json::from_value(b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_of_each_role_share_the_work_and_do_nothing_twice() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let mut settings = svc.settings();
    // Many small batches and aggregates, so that both processes of each role get some.
    settings.workers.index.batch_files = 10;
    settings.bus.prefetch = 1;
    settings.workers.archive.interval_secs = 0;
    settings.workers.archive.aggregate_bytes = 64 << 10;
    settings.workers.archive.aggregate_members = 20;
    settings.workers.archive.aggregates_per_holding = 1000;
    let dir = temp();
    let config = dir.path().join("workers.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();

    let workers: Vec<Worker> = TWICE
        .iter()
        .flat_map(|r| [(*r, 0), (*r, 1)])
        .map(|(r, i)| Worker::spawn(&config, r, dir.path().join(format!("{r}-{i}.log"))))
        .collect();
    let stop = CancellationToken::new();
    let others: Vec<_> = nlds_workers::run::all_roles()
        .into_iter()
        .filter(|r| !TWICE.contains(r))
        .collect();
    start_roles(&settings, others, stop.clone());
    // Both processes of each role consume before the put starts.
    let start = Instant::now();
    while !workers.iter().all(|w| !w.lines("consuming").is_empty()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not every worker started: {:?}",
            workers.iter().map(Worker::output).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);

    let src = temp();
    let n = crate::helpers::make_tree(src.path(), 300, 0);
    let t = api
        .put_and_wait(json!({"paths": [src.path()], "label": "shared"}))
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");

    // Every file catalogued once ...
    let page = files(&api, "shared").await;
    let plain: Vec<_> = page
        .files
        .iter()
        .filter(|f| f.kind == PathKind::File)
        .collect();
    let paths: BTreeSet<&str> = plain.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths.len(), plain.len(), "a path catalogued twice");
    assert_eq!(plain.len(), n, "every regular file catalogued");
    // ... with one object each, and nothing else in the bucket.
    let os = &settings.workers.object_store;
    let keys = bucket_keys(os, "").await;
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len());
    assert_eq!(keys.len(), n, "one object per file, no orphans: {keys:?}");
    let referenced: BTreeSet<String> = plain
        .iter()
        .map(|f| {
            let warm: Vec<_> = f
                .locations
                .iter()
                .filter(|l| l.tier == Tier::Warm)
                .collect();
            assert_eq!(warm.len(), 1, "{f:?}");
            warm[0].key.clone()
        })
        .collect();
    assert_eq!(referenced, keys.iter().cloned().collect::<BTreeSet<_>>());

    // Two archive rounds at once: the catalogue processes race for the same files.
    let bus = nlds_workers::run::connect_bus(&settings.bus).await.unwrap();
    nlds_workers::archive_put::request_round(bus.as_ref())
        .await
        .unwrap();
    nlds_workers::archive_put::request_round(bus.as_ref())
        .await
        .unwrap();
    let start = Instant::now();
    let page = loop {
        let page = files(&api, "shared").await;
        if page
            .files
            .iter()
            .filter(|f| f.kind == PathKind::File)
            .all(|f| f.locations.iter().any(|l| l.tier == Tier::Cold))
        {
            break page;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "not archived: {page:#?}"
        );
        // A round packs at most what it leased: ask again until every file is packed.
        nlds_workers::archive_put::request_round(bus.as_ref())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // Each file in exactly one aggregate; each aggregate written once, and on tape once.
    let mut members: BTreeMap<String, usize> = BTreeMap::new();
    for f in page.files.iter().filter(|f| f.kind == PathKind::File) {
        let cold: Vec<_> = f
            .locations
            .iter()
            .filter(|l| l.tier == Tier::Cold)
            .collect();
        assert_eq!(cold.len(), 1, "{f:?}");
        *members.entry(cold[0].key.clone()).or_default() += 1;
    }
    assert!(members.len() > 4, "{members:?}");
    let tape = settings.workers.cold.dir_mut().root.join("tape");
    let on_tape: BTreeSet<String> = walkdir::WalkDir::new(&tape)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(&tape)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        on_tape,
        members.keys().cloned().collect::<BTreeSet<_>>(),
        "the tape holds exactly the catalogued aggregates"
    );
    let leased: Vec<String> = workers
        .iter()
        .filter(|w| w.role == Role::Catalogue)
        .flat_map(|w| w.lines("aggregate leased for writing"))
        .filter_map(|l| field(&l, "aggregation").map(str::to_owned))
        .collect();
    let written: Vec<String> = workers
        .iter()
        .filter(|w| w.role == Role::ArchivePut)
        .flat_map(|w| w.lines("aggregate written and verified"))
        .filter_map(|l| field(&l, "aggregation").map(str::to_owned))
        .collect();
    for (what, names) in [("leased", &leased), ("written", &written)] {
        let set: BTreeSet<&String> = names.iter().collect();
        assert_eq!(
            set.len(),
            names.len(),
            "an aggregate {what} twice: {names:?}"
        );
        assert_eq!(
            set.into_iter().cloned().collect::<BTreeSet<_>>(),
            members.keys().cloned().collect(),
            "aggregates {what} vs catalogued"
        );
    }

    // Both processes of each role took work.
    for w in &workers {
        let took = match w.role {
            Role::TransferPut => w
                .lines("transfer-put batch done")
                .iter()
                .filter_map(|l| field(l, "done")?.parse::<usize>().ok())
                .sum::<usize>(),
            Role::Catalogue => {
                w.lines("catalogue put batch stored").len()
                    + w.lines("aggregate leased for writing").len()
            }
            _ => w.lines("aggregate written and verified").len(),
        };
        assert!(
            took > 0,
            "{} ({}) took no work:\n{}",
            w.role,
            w.log.display(),
            w.output()
        );
    }
    let put_done: usize = workers
        .iter()
        .filter(|w| w.role == Role::TransferPut)
        .flat_map(|w| w.lines("transfer-put batch done"))
        .filter_map(|l| field(&l, "done")?.parse::<usize>().ok())
        .sum();
    assert!(put_done >= n, "transfer-put stored {put_done} of {n}");

    // And it all comes back.
    let target = temp();
    let got = api
        .get_and_wait(json!({"paths": [src.path()], "label": "shared", "target": target.path()}))
        .await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    assert_eq!(
        shape(&restored(target.path(), src.path())),
        shape(src.path())
    );
    stop.cancel();
    drop(workers);
}
