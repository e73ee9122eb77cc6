//! Issue 11: no user can turn the service's root privileges against the file system.
//!
//! Distributed mode: RabbitMQ, PostgreSQL and moto, the API in this process and every worker
//! role in a separate `nlds-workers all` process running as root with `posix_checks = "user"`,
//! as in production. A real unprivileged account, alice (made with useradd), attacks her own
//! gets and puts with real symbolic link swaps, each run as her with setpriv (what any user of
//! the host can do). The races are made deterministic by the workers' test pause points
//! ([`nlds_hooks`], armed through `NLDS_TEST_PAUSE_DIR`): the worker stops at the exact
//! point where it touches alice's path, alice does her worst, the worker carries on. Her victims
//! are root-owned 0600 files in a root-only (0700) directory, the vault. Gets are alice's (into
//! a target of hers, or to the original paths in her home) or an operator's with keep_owner
//! (the admin token's user is alice too) into a target of hers.
//!
//! What is asserted is the security property, whatever becomes of the attacked file (the
//! service may fail it, or write it harmlessly into the directory alice moved away): the vault
//! keeps its owner, mode and entries, and its files their owner, mode and content; no byte of a
//! root-only file is stored in alice's holding; every transaction reaches a final state; a file
//! that failed names itself (its path or its destination) in its reason. A pause point that is
//! never reached fails its scenario: the race was not tested. An attack the kernel refuses
//! alice (the service left her no way to make the swap) is a defence, printed as a NOTE.
//!
//! Each test runs one deployment and its scenarios one after the other; a failed scenario is
//! reported and the next one still runs; the test fails at the end if any scenario failed.
//! Needs root (useradd, chown) and the services; under CI neither is ever skipped.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::future::Future;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nlds_core::State;
use nlds_core::api::TransactionStatus;
use nlds_hooks::{control, points};
use nlds_server::auth::StaticTokens;
use nlds_server::{AppState, ServerConfig, router};
use nlds_workers::posix::PosixChecks;
use nlds_workers::run::Settings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, workers_binary};
use crate::helpers::{Api, restored, temp};
use crate::posix::{SystemUser, root_or_skip};

const ALICE_TOKEN: &str = "hostile-alice-token-0123456789";
const ADMIN_TOKEN: &str = "hostile-admin-token-0123456789";
/// What every root-only victim file holds.
const SECRET: &str = "ROOT-ONLY SECRET 7d3f9a61: must never leave the vault";
/// What alice's own files hold.
const ALICE_DATA: &str = "alice's own data, nothing secret";
/// How long a scenario waits for the worker to pause at the armed point.
const REACH: Duration = Duration::from_secs(30);
/// How long a transaction may take once the worker is released.
const FINISH: Duration = Duration::from_secs(120);

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Gives `p` (not following a symbolic link) to `user` with `mode` (ignored for links).
fn give(p: &Path, user: &SystemUser, mode: u32) {
    std::os::unix::fs::lchown(p, Some(user.uid), Some(user.gid)).unwrap();
    if !std::fs::symlink_metadata(p).unwrap().is_symlink() {
        chmod(p, mode);
    }
}

/// A holding of alice's: the directory it was put from, and its label.
#[derive(Clone)]
struct Holding {
    label: String,
    src: PathBuf,
}

/// One deployment, shared by the scenarios of a test (one after the other).
struct Deployment {
    settings: Settings,
    pause: tempfile::TempDir,
    alice: SystemUser,
    alice_api: Api,
    admin_api: Api,
    /// root's, 0755: alice's home `alice/` (hers, 0755) and the vaults (root's, 0700).
    root: tempfile::TempDir,
    home: PathBuf,
    log: PathBuf,
    transactions: Mutex<Vec<String>>,
    stop: CancellationToken,
    worker: Mutex<Child>,
    _work: tempfile::TempDir,
    _svc: Services,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.stop.cancel();
        let w = self.worker.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = w.kill();
        let _ = w.wait();
        let _ = std::fs::remove_dir_all(&self.settings.workers.log_dir);
        let _ = std::fs::remove_dir_all(&self.settings.workers.cold.dir_mut().root);
    }
}

async fn start_api(settings: &Settings, tokens: &str, stop: CancellationToken) -> String {
    let bus = nlds_workers::run::connect_bus(&settings.bus).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState {
        bus,
        auth: Arc::new(StaticTokens::from_toml(tokens).unwrap()),
        cfg: Arc::new(ServerConfig {
            listen: addr,
            ..Default::default()
        }),
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

impl Deployment {
    /// None when skipped (not root, or a service missing, outside CI only).
    async fn start(test: &str) -> Option<Arc<Self>> {
        if !root_or_skip(test) {
            return None;
        }
        let svc = Services::new().await?;
        let mut settings = svc.settings();
        settings.workers.posix_checks = Some(PosixChecks::User);
        let alice = SystemUser::create("h");
        let work = temp();
        // root's, 0700: only the test arms and releases pause points.
        let pause = temp();
        let config = work.path().join("workers.toml");
        std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
        let log = work.path().join("workers.log");
        let out = File::create(&log).unwrap();
        let mut cmd = Command::new(workers_binary());
        for var in [
            "NLDS_AMQP_URL",
            "NLDS_DATABASE_URL",
            "NLDS_S3_ENDPOINT",
            "NLDS_S3_ACCESS_KEY",
            "NLDS_S3_SECRET_KEY_FILE",
            "NLDS_S3_BUCKET",
            "NLDS_SETTINGS",
            "NLDS_LOG_JSON",
        ] {
            cmd.env_remove(var);
        }
        let worker = cmd
            .arg("--config")
            .arg(&config)
            .arg("all")
            .env(nlds_hooks::ENV, pause.path())
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start nlds-workers all");
        let stop = CancellationToken::new();
        let tokens = format!(
            "[[token]]\ntoken = \"{ALICE_TOKEN}\"\nuser = \"{a}\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{ADMIN_TOKEN}\"\nuser = \"{a}\"\ngroups = [\"climate\"]\n\
             admin = true\n",
            a = alice.name
        );
        let url = start_api(&settings, &tokens, stop.clone()).await;
        let root = temp();
        chmod(root.path(), 0o755);
        let home = root.path().join("alice");
        std::fs::create_dir(&home).unwrap();
        give(&home, &alice, 0o755);
        let d = Deployment {
            settings,
            pause,
            alice_api: Api::new(&url, ALICE_TOKEN),
            admin_api: Api::new(&url, ADMIN_TOKEN),
            alice,
            root,
            home,
            log,
            transactions: Mutex::new(Vec::new()),
            stop,
            worker: Mutex::new(worker),
            _work: work,
            _svc: svc,
        };
        d.wait_ready().await;
        Some(Arc::new(d))
    }

    fn worker_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The workers start in the background: wait until the catalogue answers.
    async fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.worker.lock().unwrap().try_wait().unwrap() {
                panic!("nlds-workers exited ({status}):\n{}", self.worker_log());
            }
            if self.alice_api.get("/api/v2/holdings").await.0 == 200 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the workers did not answer within 90 s:\n{}",
                self.worker_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `script` with `sh -c` as alice (her uid and primary gid, no other group), `$1`,
    /// `$2`... being `args`; on failure, what the shell said.
    fn as_alice(&self, script: &str, args: &[&Path]) -> Result<(), String> {
        let out = Command::new("setpriv")
            .arg(format!("--reuid={}", self.alice.uid))
            .arg(format!("--regid={}", self.alice.gid))
            .args(["--clear-groups", "--", "sh", "-c", script, "sh"])
            .args(args)
            .output()
            .expect("setpriv runs (util-linux)");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{script}` {args:?} as alice: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// A directory of alice's (0755) under her home.
    fn alice_dir(&self, name: &str) -> PathBuf {
        let p = self.home.join(name);
        std::fs::create_dir_all(&p).unwrap();
        give(&p, &self.alice, 0o755);
        p
    }

    /// alice's tree at `src`: `d1/` (0750) holding `f.txt` (0644) and `ln -> f.txt`.
    fn make_tree(&self, src: &Path) {
        std::fs::create_dir_all(src.join("d1")).unwrap();
        give(src, &self.alice, 0o755);
        give(&src.join("d1"), &self.alice, 0o750);
        let f = src.join("d1/f.txt");
        std::fs::write(&f, ALICE_DATA).unwrap();
        give(&f, &self.alice, 0o644);
        let ln = src.join("d1/ln");
        std::os::unix::fs::symlink("f.txt", &ln).unwrap();
        give(&ln, &self.alice, 0);
    }

    /// Starts a transaction (remembered, so that [`Self::settle`] waits for it); its id.
    async fn begin(&self, api: &Api, what: &str, body: Value) -> String {
        let (status, r) = api.post(&format!("/api/v2/{what}"), &body).await;
        assert_eq!(status, 202, "{what} {body}: {r}");
        let tid = r["transaction_id"].as_str().unwrap().to_owned();
        self.transactions.lock().unwrap().push(tid.clone());
        tid
    }

    async fn finish(&self, api: &Api, tid: &str) -> TransactionStatus {
        api.wait(tid, FINISH).await
    }

    /// Puts alice's tree at `src` as `label` (nothing attacked); the put's transaction id.
    async fn put_tree(&self, label: &str, src: &Path) -> (Holding, String) {
        self.make_tree(src);
        let tid = self
            .begin(
                &self.alice_api,
                "put",
                json!({"paths": [s(src)], "label": label}),
            )
            .await;
        let t = self.finish(&self.alice_api, &tid).await;
        assert_eq!(t.state, State::Complete, "{t:#?}");
        let h = Holding {
            label: label.to_owned(),
            src: src.to_owned(),
        };
        (h, tid)
    }

    /// Puts alice's tree, then overwrites the stored object of its file with other bytes, so a
    /// get of it fails its checksum and removes its temporary file.
    async fn put_corrupted_tree(&self, label: &str, src: &Path) -> Holding {
        let (h, tid) = self.put_tree(label, src).await;
        let os = &self.settings.workers.object_store;
        let client = nlds_storage::s3::client(os).await.unwrap();
        let keys = self.object_keys(&tid).await;
        assert_eq!(keys.len(), 1, "one file, one object: {keys:?}");
        client
            .put_object()
            .bucket(&os.bucket)
            .key(&keys[0])
            .body(b"not what alice put: corrupted".to_vec().into())
            .send()
            .await
            .unwrap();
        h
    }

    /// The keys of the objects a put stored.
    async fn object_keys(&self, tid: &str) -> Vec<String> {
        let os = &self.settings.workers.object_store;
        let client = nlds_storage::s3::client(os).await.unwrap();
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = client
                .list_objects_v2()
                .bucket(&os.bucket)
                .prefix(format!("{}/{tid}/", nlds_storage::s3::KEY_PREFIX))
                .set_continuation_token(token.clone())
                .send()
                .await
                .unwrap();
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return keys;
            }
        }
    }

    /// The objects of a put that hold the secret.
    async fn stored_secrets(&self, tid: &str) -> Vec<String> {
        let os = &self.settings.workers.object_store;
        let client = nlds_storage::s3::client(os).await.unwrap();
        let mut found = Vec::new();
        for key in self.object_keys(tid).await {
            let body = client
                .get_object()
                .bucket(&os.bucket)
                .key(&key)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes();
            if body.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()) {
                found.push(format!(
                    "the object {key} of alice's put holds the root-only secret"
                ));
            }
        }
        found
    }

    /// Waits for the worker to pause at `point`; the path it is working on there.
    fn reached(&self, point: &str) -> PathBuf {
        control::reached(self.pause.path(), point, REACH).unwrap_or_else(|| {
            panic!(
                "the workers never paused at {point} within {REACH:?}: the race was not tested \
                 (is the pause point missing from the code?)"
            )
        })
    }

    /// Between scenarios: nothing armed, nothing paused, every transaction finished.
    async fn settle(&self) {
        let dir = self.pause.path();
        for p in points::ALL {
            let _ = std::fs::remove_file(dir.join(format!("{p}.arm")));
        }
        let tids: Vec<String> = std::mem::take(&mut *self.transactions.lock().unwrap());
        let start = Instant::now();
        'tids: for tid in tids {
            loop {
                for p in points::ALL {
                    if dir.join(format!("{p}.reached")).exists()
                        && !dir.join(format!("{p}.go")).exists()
                    {
                        let _ = control::release(dir, p);
                    }
                }
                let (status, body) = self
                    .alice_api
                    .get(&format!("/api/v2/transactions/{tid}"))
                    .await;
                if status == 200
                    && let Ok(t) = serde_json::from_value::<TransactionStatus>(body)
                    && (t.state.is_final() || t.state.is_failed())
                {
                    continue 'tids;
                }
                if start.elapsed() > FINISH {
                    eprintln!("settle: transaction {tid} still running after {FINISH:?}");
                    continue 'tids;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A root-only directory (root's, 0700) of root-only files (root's, 0600, holding [`SECRET`]),
/// and what it looked like before the attack.
struct Vault {
    dir: PathBuf,
    before: VaultState,
}

#[derive(Debug, Clone, PartialEq)]
struct VaultState {
    /// uid, gid, mode of the vault itself
    dir: (u32, u32, u32),
    /// name -> (kind, uid, gid, mode, content hash or link target)
    entries: BTreeMap<String, (char, u32, u32, u32, String)>,
}

impl Vault {
    fn new(dir: &Path, files: &[&str]) -> Self {
        std::fs::create_dir(dir).unwrap();
        std::os::unix::fs::chown(dir, Some(0), Some(0)).unwrap();
        chmod(dir, 0o700);
        let mut v = Vault {
            dir: dir.to_owned(),
            before: VaultState {
                dir: (0, 0, 0),
                entries: BTreeMap::new(),
            },
        };
        for f in files {
            v.add(OsStr::new(f));
        }
        v
    }

    /// Adds a victim file named `name` (a no-op if there is one).
    fn add(&mut self, name: &OsStr) {
        let p = self.dir.join(name);
        if std::fs::symlink_metadata(&p).is_err() {
            std::fs::write(&p, SECRET).unwrap();
            std::os::unix::fs::chown(&p, Some(0), Some(0)).unwrap();
            chmod(&p, 0o600);
        }
        self.before = self.state();
    }

    fn state(&self) -> VaultState {
        let md = std::fs::symlink_metadata(&self.dir).unwrap();
        let mut entries = BTreeMap::new();
        for e in std::fs::read_dir(&self.dir).unwrap() {
            let e = e.unwrap();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let (kind, content) = if md.is_symlink() {
                ('l', s(&std::fs::read_link(e.path()).unwrap()))
            } else if md.is_dir() {
                ('d', String::new())
            } else {
                let bytes = std::fs::read(e.path()).unwrap();
                let content = if bytes == SECRET.as_bytes() {
                    "the secret".to_owned()
                } else {
                    format!("{:?}", String::from_utf8_lossy(&bytes))
                };
                ('f', content)
            };
            entries.insert(
                e.file_name().to_string_lossy().into_owned(),
                (kind, md.uid(), md.gid(), md.mode() & 0o7777, content),
            );
        }
        VaultState {
            dir: (md.uid(), md.gid(), md.mode() & 0o7777),
            entries,
        }
    }

    /// Everything that changed in the vault since [`Vault::new`] / [`Vault::add`].
    fn violations(&self) -> Vec<String> {
        let now = self.state();
        let mut v = Vec::new();
        let (b, n) = (&self.before, &now);
        if b.dir != n.dir {
            v.push(format!(
                "the vault {} changed from (uid, gid, mode) {:?} to {:?}",
                self.dir.display(),
                (b.dir.0, b.dir.1, format!("{:04o}", b.dir.2)),
                (n.dir.0, n.dir.1, format!("{:04o}", n.dir.2)),
            ));
        }
        let show = |e: &(char, u32, u32, u32, String)| {
            format!("{} uid {} gid {} mode {:04o} {}", e.0, e.1, e.2, e.3, e.4)
        };
        for (name, was) in &b.entries {
            match n.entries.get(name) {
                None => v.push(format!("the vault's {name} was removed")),
                Some(is) if is != was => v.push(format!(
                    "the vault's {name} changed from [{}] to [{}]",
                    show(was),
                    show(is)
                )),
                Some(_) => {}
            }
        }
        for (name, is) in &n.entries {
            if !b.entries.contains_key(name) {
                v.push(format!("{name} appeared in the vault [{}]", show(is)));
            }
        }
        v
    }
}

/// The failures of `t` whose reason names neither the file's path nor its destination.
fn unnamed_failures(t: &TransactionStatus, target: Option<&Path>) -> Vec<String> {
    t.failed_files()
        .filter(|f| {
            let dest = target.map(|t| s(&restored(t, Path::new(&f.path))));
            !(f.reason.contains(&f.path) || dest.is_some_and(|d| f.reason.contains(&d)))
        })
        .map(|f| {
            format!(
                "the failure of {} does not name it: {} ({})",
                f.path, f.reason, f.code
            )
        })
        .collect()
}

fn summary(t: &TransactionStatus) -> String {
    let failed: Vec<String> = t
        .failed_files()
        .map(|f| format!("{} [{}]: {}", f.path, f.code, f.reason))
        .collect();
    format!("{} ({} failed: {failed:#?})", t.state, t.files_failed)
}

/// What alice does once the worker has paused at the point.
#[derive(Debug, Clone, Copy)]
enum Attack {
    /// Moves the directory holding the point's path away and puts a symbolic link to the vault
    /// in its place.
    SwapParent,
    /// Moves the point's path (a directory) away and puts a symbolic link to the vault there.
    SwapItself,
    /// Replaces the point's path (the temporary file of a get, the file a put is about to
    /// read) by a symbolic link to the victim file.
    FileToVictim,
}

impl Deployment {
    /// alice's attack at `at`; a note on what happened (a refusal by the kernel is a defence,
    /// not a failure of the test).
    fn attack(&self, attack: Attack, at: &Path, vault: &Vault) -> String {
        const SWAP: &str = "mv -- \"$1\" \"$1.moved-away\" && ln -s -- \"$2\" \"$1\"";
        let r = match attack {
            Attack::SwapParent => self.as_alice(SWAP, &[at.parent().unwrap(), &vault.dir]),
            Attack::SwapItself => self.as_alice(SWAP, &[at, &vault.dir]),
            Attack::FileToVictim => self.as_alice(
                "rm -f -- \"$1\" && ln -s -- \"$2\" \"$1\"",
                &[at, &vault.dir.join("f.txt")],
            ),
        };
        match r {
            Ok(()) => format!("alice's {attack:?} at {} done", at.display()),
            Err(e) => {
                eprintln!("NOTE: alice's {attack:?} was refused: {e}");
                format!("alice's {attack:?} refused: {e}")
            }
        }
    }
}

/// Where a get restores to, and who asks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// alice, into a target directory of hers.
    Target,
    /// alice, to the original paths (in her home).
    Original,
    /// an operator (admin token) with keep_owner, into a target directory of alice's.
    KeepOwner,
}

impl Deployment {
    /// The target (None: original paths), the API and the body of a get of `h` in `mode`.
    fn get_request(&self, mode: Mode, h: &Holding, n: usize) -> (Option<PathBuf>, &Api, Value) {
        match mode {
            Mode::Original => (
                None,
                &self.alice_api,
                json!({"paths": [s(&h.src)], "label": h.label}),
            ),
            Mode::Target | Mode::KeepOwner => {
                let t = self.alice_dir(&format!("target-{n}"));
                let body = json!({
                    "paths": [s(&h.src)], "label": h.label, "target": s(&t),
                    "keep_owner": mode == Mode::KeepOwner,
                });
                let api = if mode == Mode::KeepOwner {
                    &self.admin_api
                } else {
                    &self.alice_api
                };
                (Some(t), api, body)
            }
        }
    }

    /// Removes what a get to the original paths restored under `parent` (alice's), so the
    /// next one creates it again.
    fn clear(&self, parent: &Path) {
        for e in std::fs::read_dir(parent).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
}

/// One race of a get: where the worker pauses, what alice does there, and whether the get
/// overwrites a restore of the tree that is already there (its file changed by alice since).
#[derive(Debug, Clone, Copy)]
struct Race {
    point: &'static str,
    attack: Attack,
    overwrite: bool,
}

const fn race(point: &'static str, attack: Attack) -> Race {
    Race {
        point,
        attack,
        overwrite: false,
    }
}

/// A get of `h` in `mode`, alice attacking at `point` with `attack`.
async fn get_race(d: Arc<Deployment>, n: usize, mode: Mode, h: Holding, race: Race) {
    let Race {
        point,
        attack,
        overwrite,
    } = race;
    let mut vault = Vault::new(&d.root.path().join(format!("vault-{n}")), &["f.txt"]);
    if mode == Mode::Original {
        d.clear(h.src.parent().unwrap());
    }
    let (target, api, mut body) = d.get_request(mode, &h, n);
    if overwrite {
        let tid = d.begin(api, "get", body.clone()).await;
        let t = d.finish(api, &tid).await;
        assert_eq!(
            t.state,
            State::Complete,
            "the first restore: {}",
            summary(&t)
        );
        let dest = match &target {
            Some(t) => restored(t, &h.src),
            None => h.src.clone(),
        };
        d.as_alice("echo older > \"$1\"", &[&dest.join("d1/f.txt")])
            .unwrap();
        body["overwrite"] = json!(true);
    }
    control::arm(d.pause.path(), point).unwrap();
    let tid = d.begin(api, "get", body).await;
    let at = d.reached(point);
    // Where a file is written, renamed or removed, the vault holds a victim of that name.
    if matches!(
        point,
        points::GET_TEMP_WRITING
            | points::GET_BEFORE_OWNER
            | points::GET_BEFORE_RENAME
            | points::GET_BEFORE_UNLINK
    ) && let Some(name) = at.file_name()
    {
        vault.add(name);
    }
    let note = d.attack(attack, &at, &vault);
    control::release(d.pause.path(), point).unwrap();
    let t = d.finish(api, &tid).await;
    let mut problems = vault.violations();
    problems.extend(unnamed_failures(&t, target.as_deref()));
    assert!(
        problems.is_empty(),
        "{mode:?} get, {race:?}: {problems:#?}\n{note}; the get ended {}",
        summary(&t)
    );
    eprintln!("{note}; the get ended {}", summary(&t));
}

/// Where alice plants a symbolic link to the vault before a get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plant {
    /// Where the holding's top directory is restored.
    Top,
    /// Where its subdirectory `d1` is restored.
    Sub,
    /// Under the target, where the first directory of the restored paths goes (`target/tmp`).
    TargetTop,
}

/// A get of `h` in `mode` where alice planted, beforehand, a symbolic link to the vault where
/// a directory of the restore goes.
async fn get_planted(d: Arc<Deployment>, n: usize, mode: Mode, h: Holding, plant: Plant) {
    let vault = Vault::new(&d.root.path().join(format!("vault-{n}")), &["f.txt"]);
    if mode == Mode::Original {
        d.clear(h.src.parent().unwrap());
    }
    let (target, api, body) = d.get_request(mode, &h, n);
    let src = match &target {
        Some(t) => restored(t, &h.src),
        None => h.src.clone(),
    };
    let link = match (plant, &target) {
        (Plant::Top, _) => src,
        (Plant::Sub, _) => src.join("d1"),
        (Plant::TargetTop, Some(t)) => t.join(h.src.iter().nth(1).unwrap()),
        (Plant::TargetTop, None) => unreachable!("no target"),
    };
    d.as_alice(
        "mkdir -p -- \"$1\" && ln -s -- \"$2\" \"$3\"",
        &[link.parent().unwrap(), &vault.dir, &link],
    )
    .unwrap();
    let tid = d.begin(api, "get", body).await;
    let t = d.finish(api, &tid).await;
    let mut problems = vault.violations();
    problems.extend(unnamed_failures(&t, target.as_deref()));
    assert!(
        problems.is_empty(),
        "{mode:?} get through a link planted at {}: {problems:#?}\nthe get ended {}",
        link.display(),
        summary(&t)
    );
    eprintln!("the get ended {}", summary(&t));
}

/// A put of alice's tree, alice attacking at `point` with `attack`.
async fn put_race(d: Arc<Deployment>, n: usize, point: &'static str, attack: Attack) {
    let vault = Vault::new(&d.root.path().join(format!("vault-{n}")), &["f.txt"]);
    let src = d.alice_dir(&format!("put-{n}")).join("src");
    d.make_tree(&src);
    control::arm(d.pause.path(), point).unwrap();
    let tid = d
        .begin(
            &d.alice_api,
            "put",
            json!({"paths": [s(&src)], "label": format!("put-{n}")}),
        )
        .await;
    let at = d.reached(point);
    let note = d.attack(attack, &at, &vault);
    control::release(d.pause.path(), point).unwrap();
    let t = d.finish(&d.alice_api, &tid).await;
    let mut problems = d.stored_secrets(&tid).await;
    problems.extend(vault.violations());
    problems.extend(unnamed_failures(&t, None));
    assert!(
        problems.is_empty(),
        "put, {attack:?} at {point}: {problems:#?}\n{note}; the put ended {}",
        summary(&t)
    );
    eprintln!("{note}; the put ended {}", summary(&t));
}

/// A put of paths through symbolic links alice planted beforehand to the vault: a file under a
/// link to it, the link with a trailing slash, and a tree holding a link to it.
async fn put_planted(d: Arc<Deployment>, n: usize) {
    let vault = Vault::new(&d.root.path().join(format!("vault-{n}")), &["f.txt"]);
    let mine = d.alice_dir(&format!("put-{n}"));
    let tree = mine.join("tree");
    d.make_tree(&tree);
    d.as_alice(
        "ln -s -- \"$2\" \"$1/link\" && ln -s -- \"$2\" \"$1/tree/escape\"",
        &[&mine, &vault.dir],
    )
    .unwrap();
    let paths = [
        format!("{}/link/f.txt", s(&mine)),
        format!("{}/link/", s(&mine)),
        s(&tree),
    ];
    let tid = d
        .begin(
            &d.alice_api,
            "put",
            json!({"paths": paths, "label": format!("put-{n}")}),
        )
        .await;
    let t = d.finish(&d.alice_api, &tid).await;
    let mut problems = d.stored_secrets(&tid).await;
    problems.extend(vault.violations());
    problems.extend(unnamed_failures(&t, None));
    assert!(
        problems.is_empty(),
        "put through planted links: {problems:#?}\nthe put ended {}",
        summary(&t)
    );
    eprintln!("the put ended {}", summary(&t));
}

type Scenario = (String, Pin<Box<dyn Future<Output = ()> + Send>>);

/// Runs the scenarios one after the other, each in a task of its own (a panic fails that
/// scenario only), settling the deployment after each; fails if any failed.
async fn run(d: Arc<Deployment>, scenarios: Vec<Scenario>) {
    let mut failed = Vec::new();
    let total = scenarios.len();
    for (name, scenario) in scenarios {
        let start = Instant::now();
        let r = tokio::spawn(scenario).await;
        d.settle().await;
        match r {
            Ok(()) => eprintln!("PASSED {name} ({:.1?})", start.elapsed()),
            Err(e) => {
                let msg = match e.try_into_panic() {
                    Ok(p) => p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "panicked".into()),
                    Err(e) => e.to_string(),
                };
                eprintln!("FAILED {name} ({:.1?}): {msg}", start.elapsed());
                failed.push(format!("{name}: {msg}"));
            }
        }
    }
    if !failed.is_empty() {
        panic!(
            "{} of {total} hostile scenarios failed:\n{}\n--- workers' log ---\n{}",
            failed.len(),
            failed.join("\n\n"),
            d.worker_log()
        );
    }
}

/// Every point at which a get touches a user's path, with alice's attack there.
const GET_RACES: &[Race] = &[
    race(points::GET_DIR_CREATED, Attack::SwapItself),
    race(points::GET_TEMP_WRITING, Attack::SwapParent),
    race(points::GET_TEMP_WRITING, Attack::FileToVictim),
    race(points::GET_BEFORE_OWNER, Attack::SwapParent),
    race(points::GET_BEFORE_OWNER, Attack::FileToVictim),
    race(points::GET_BEFORE_RENAME, Attack::SwapParent),
    Race {
        overwrite: true,
        ..race(points::GET_TEMP_WRITING, Attack::SwapParent)
    },
    Race {
        overwrite: true,
        ..race(points::GET_BEFORE_RENAME, Attack::SwapParent)
    },
    race(points::GET_BEFORE_LINK, Attack::SwapParent),
    race(points::GET_BEFORE_DIR_FINISH, Attack::SwapItself),
    race(points::GET_BEFORE_UNLINK, Attack::SwapParent),
];

/// Every get race and the planted link, in `mode`, on one deployment.
async fn get_scenarios(test: &str, mode: Mode, races: &[Race]) {
    let Some(d) = Deployment::start(test).await else {
        return;
    };
    // To original paths, the trees are put from (and restored to) a directory of their own.
    let base = if mode == Mode::Original {
        d.alice_dir("orig")
    } else {
        d.home.clone()
    };
    let (tree, _) = d.put_tree("tree", &base.join("src")).await;
    let corrupt = d.put_corrupted_tree("corrupt", &base.join("csrc")).await;
    let mut scenarios: Vec<Scenario> = Vec::new();
    for (n, &race) in races.iter().enumerate() {
        let h = if race.point == points::GET_BEFORE_UNLINK {
            corrupt.clone()
        } else {
            tree.clone()
        };
        scenarios.push((
            format!(
                "{mode:?} get, {:?} at {}{}",
                race.attack,
                race.point,
                if race.overwrite { " (overwrite)" } else { "" }
            ),
            Box::pin(get_race(d.clone(), n, mode, h, race)),
        ));
    }
    let mut plants = vec![Plant::Top, Plant::Sub];
    if mode != Mode::Original {
        plants.push(Plant::TargetTop);
    }
    for (i, plant) in plants.into_iter().enumerate() {
        scenarios.push((
            format!("{mode:?} get through a link planted at {plant:?}"),
            Box::pin(get_planted(
                d.clone(),
                races.len() + i,
                mode,
                tree.clone(),
                plant,
            )),
        ));
    }
    run(d, scenarios).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_user_cannot_turn_a_get_into_a_target_against_root() {
    get_scenarios(
        "hostile_user_cannot_turn_a_get_into_a_target_against_root",
        Mode::Target,
        GET_RACES,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_user_cannot_turn_a_get_to_original_paths_against_root() {
    get_scenarios(
        "hostile_user_cannot_turn_a_get_to_original_paths_against_root",
        Mode::Original,
        GET_RACES,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_user_cannot_turn_an_operators_keep_owner_get_against_root() {
    get_scenarios(
        "hostile_user_cannot_turn_an_operators_keep_owner_get_against_root",
        Mode::KeepOwner,
        &[
            race(points::GET_DIR_CREATED, Attack::SwapItself),
            race(points::GET_TEMP_WRITING, Attack::SwapParent),
            race(points::GET_BEFORE_LINK, Attack::SwapParent),
            race(points::GET_BEFORE_DIR_FINISH, Attack::SwapItself),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_user_cannot_put_root_only_files() {
    let Some(d) = Deployment::start("hostile_user_cannot_put_root_only_files").await else {
        return;
    };
    let scenarios: Vec<Scenario> = vec![
        (
            "put, SwapItself at index.before-walk".into(),
            Box::pin(put_race(
                d.clone(),
                0,
                points::INDEX_BEFORE_WALK,
                Attack::SwapItself,
            )),
        ),
        (
            "put, SwapParent at put.before-open".into(),
            Box::pin(put_race(
                d.clone(),
                1,
                points::PUT_BEFORE_OPEN,
                Attack::SwapParent,
            )),
        ),
        (
            "put, FileToVictim at put.before-open".into(),
            Box::pin(put_race(
                d.clone(),
                2,
                points::PUT_BEFORE_OPEN,
                Attack::FileToVictim,
            )),
        ),
        (
            "put through planted links".into(),
            Box::pin(put_planted(d.clone(), 3)),
        ),
    ];
    run(d, scenarios).await;
}
