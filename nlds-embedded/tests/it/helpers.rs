//! Shared fixtures: a test tree, an HTTP client for the native API, waiting for transactions,
//! comparing trees, and the external services (with CI set, a missing service fails the test).

#![allow(
    dead_code,
    reason = "fixtures shared by many test modules; which of them a given build uses varies"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nlds_core::api::TransactionStatus;
use rand::RngCore;
use serde_json::Value;

/// An external service's address from the environment. When it is not configured the test fails,
/// unless skipping was asked for (`NLDS_TEST_ALLOW_SKIP=1`, never under `CI`; see
/// [`nlds_hooks::skip`]): then `None`, and the skip is reported.
pub fn service(var: &str) -> Option<String> {
    nlds_hooks::skip::service(
        "",
        var,
        "run scripts/services.sh, then scripts/test.sh, which exports it",
    )
}

pub struct Api {
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(url: &str, token: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn raw_post(&self, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls a transaction until it reaches a final state.
    pub async fn wait(&self, tid: &str, limit: Duration) -> TransactionStatus {
        let start = Instant::now();
        loop {
            let (status, body) = self.get(&format!("/api/v2/transactions/{tid}")).await;
            if status == 200 {
                let t: TransactionStatus = serde_json::from_value(body).unwrap();
                if t.state.is_final() || t.state.is_failed() {
                    return t;
                }
                if start.elapsed() > limit {
                    panic!(
                        "transaction {tid} still {} after {limit:?}: {t:#?}",
                        t.state
                    );
                }
            } else {
                assert_eq!(status, 404, "{body}");
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "transaction {tid} never appeared"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts a put and waits for it.
    pub async fn put_and_wait(&self, body: Value) -> TransactionStatus {
        let (status, r) = self.post("/api/v2/put", &body).await;
        assert_eq!(status, 202, "{r}");
        self.wait(
            r["transaction_id"].as_str().unwrap(),
            Duration::from_secs(600),
        )
        .await
    }

    pub async fn get_and_wait(&self, body: Value) -> TransactionStatus {
        let (status, r) = self.post("/api/v2/get", &body).await;
        assert_eq!(status, 202, "{r}");
        self.wait(
            r["transaction_id"].as_str().unwrap(),
            Duration::from_secs(600),
        )
        .await
    }
}

/// What a tree looks like: relative path -> (kind, mode, content hash or link target).
pub type Shape = BTreeMap<String, (char, u32, String)>;

/// How many entries under `root` count as files in a transaction's progress: all but
/// directories (kept to restore empty directories and modes, not counted as files).
pub fn file_entries(root: &Path) -> u64 {
    shape(root)
        .values()
        .filter(|(kind, _, _)| *kind != 'd')
        .count() as u64
}

pub fn shape(root: &Path) -> Shape {
    let mut out = Shape::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        let entry = if md.file_type().is_symlink() {
            (
                'l',
                0,
                std::fs::read_link(e.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            )
        } else if md.is_dir() {
            ('d', md.mode() & 0o7777, String::new())
        } else {
            let hash = blake3::hash(&std::fs::read(e.path()).unwrap())
                .to_hex()
                .to_string();
            ('f', md.mode() & 0o7777, hash)
        };
        out.insert(rel, entry);
    }
    out
}

/// The test tree: `files` small files in nested directories, plus an empty file, names with
/// spaces and non-ASCII characters, a symlink, unusual modes and one large file of `big_mib` MiB.
pub fn make_tree(root: &Path, files: usize, big_mib: usize) -> usize {
    let mut rng = rand::rng();
    let mut n = 0;
    for i in 0..files {
        let dir = root.join(format!("d{:02}/sub {}/ü-{}", i % 10, i % 7, i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let mut data = vec![0u8; 100 + (i * 37) % 4000];
        rng.fill_bytes(&mut data);
        let p = dir.join(format!("file {i} é.dat"));
        std::fs::write(&p, &data).unwrap();
        if i % 5 == 0 {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        n += 1;
    }
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("d00/sub 0/ü-0/file 0 é.dat", root.join("link to first")).unwrap();
    if big_mib > 0 {
        use std::io::Write;
        let mut f = std::fs::File::create(root.join("big.bin")).unwrap();
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..big_mib {
            rng.fill_bytes(&mut chunk);
            f.write_all(&chunk).unwrap();
        }
        n += 1;
    }
    n + 1 // the empty file
}

/// The peak resident memory of process `pid` so far (`VmHWM` of `/proc/PID/status`), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"))
}

/// Every object key the embedded S3 endpoint holds in the bucket `nlds` of data directory `data`
/// (s3s-fs keeps an object as the file `objects/<bucket>/<key>`; names starting with a dot would
/// be its metadata).
pub fn stored_objects(data: &Path) -> BTreeSet<String> {
    let bucket = data.join("objects/nlds");
    walkdir::WalkDir::new(&bucket)
        .follow_links(false)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file() && !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            e.path()
                .strip_prefix(&bucket)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

pub fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nlds-it-")
        .tempdir()
        .unwrap()
}

pub fn restored(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").unwrap())
}

/// The published Python client's `nlds` script (nlds-client from PyPI, installed by
/// scripts/services.sh) from `NLDS_TEST_PYCLIENT`; `None` when not configured and skipping is
/// allowed (see [`service`]), a panic when the variable names a missing file.
pub fn python_client() -> Option<PathBuf> {
    let bin = PathBuf::from(service("NLDS_TEST_PYCLIENT")?);
    assert!(
        bin.is_file(),
        "NLDS_TEST_PYCLIENT={} does not exist: run scripts/services.sh",
        bin.display()
    );
    Some(bin)
}

/// `nlds-server embedded` as a child process, its stdout and stderr written to files (so every
/// line it logs can be inspected afterwards and a full pipe never stalls it). Killed on drop.
pub struct ServerProcess {
    pub url: String,
    pub data_dir: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    child: std::process::Child,
}

impl ServerProcess {
    /// Starts the server on a free loopback port with `data_dir` (which may already hold a
    /// `tokens.toml`), an optional settings file and the given `RUST_LOG`; returns once it
    /// printed its URL.
    pub async fn start(
        data_dir: &Path,
        log_dir: &Path,
        config: Option<&Path>,
        rust_log: &str,
    ) -> Self {
        Self::start_with_env(data_dir, log_dir, config, rust_log, &[]).await
    }

    /// [`ServerProcess::start`] with extra environment variables (e.g. a pause directory).
    pub async fn start_with_env(
        data_dir: &Path,
        log_dir: &Path,
        config: Option<&Path>,
        rust_log: &str,
        envs: &[(&str, &std::ffi::OsStr)],
    ) -> Self {
        Self::launch(data_dir, log_dir, config, rust_log, envs, &[]).await
    }

    /// [`ServerProcess::start`] with settings given as `--set KEY=VALUE` (no settings file).
    pub async fn start_with_sets(
        data_dir: &Path,
        log_dir: &Path,
        rust_log: &str,
        sets: &[&str],
    ) -> Self {
        Self::launch(data_dir, log_dir, None, rust_log, &[], sets).await
    }

    /// [`ServerProcess::start`] with both extra environment variables and `--set` settings.
    pub async fn start_with(
        data_dir: &Path,
        log_dir: &Path,
        rust_log: &str,
        envs: &[(&str, &std::ffi::OsStr)],
        sets: &[&str],
    ) -> Self {
        Self::start_at("127.0.0.1:0", data_dir, log_dir, rust_log, envs, sets).await
    }

    /// [`ServerProcess::start_with`] listening on `listen` (e.g. the address of a server started
    /// before on the same data directory, to restart it where its clients look for it).
    pub async fn start_at(
        listen: &str,
        data_dir: &Path,
        log_dir: &Path,
        rust_log: &str,
        envs: &[(&str, &std::ffi::OsStr)],
        sets: &[&str],
    ) -> Self {
        let mut with_listen = vec!["--listen", listen];
        with_listen.extend_from_slice(sets);
        Self::launch(data_dir, log_dir, None, rust_log, envs, &with_listen).await
    }

    async fn launch(
        data_dir: &Path,
        log_dir: &Path,
        config: Option<&Path>,
        rust_log: &str,
        envs: &[(&str, &std::ffi::OsStr)],
        sets: &[&str],
    ) -> Self {
        std::fs::create_dir_all(log_dir).unwrap();
        let stdout = log_dir.join("server.stdout");
        let stderr = log_dir.join("server.stderr");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nlds-server"));
        // `--listen ADDR` given among the settings replaces the free port.
        let listen = sets
            .iter()
            .position(|s| *s == "--listen")
            .and_then(|i| sets.get(i + 1))
            .copied()
            .unwrap_or("127.0.0.1:0");
        cmd.arg("embedded")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(data_dir);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let mut sets = sets.iter();
        while let Some(set) = sets.next() {
            if *set == "--listen" {
                sets.next();
            } else {
                cmd.args(["--set", set]);
            }
        }
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
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start nlds-server embedded");
        let start = Instant::now();
        let url = loop {
            let text = std::fs::read_to_string(&stdout).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("server running at ")) {
                break line.rsplit(' ').next().unwrap().trim().to_owned();
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "nlds-server embedded exited ({status}) before serving:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "nlds-server embedded printed no URL within 60 s:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Self {
            url,
            data_dir: data_dir.to_owned(),
            stdout,
            stderr,
            child,
        }
    }

    /// The server's process id (for reading its `/proc` entries).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The token the embedded server made for its operator (`client.toml` of its data
    /// directory, written when no `tokens.toml` was there).
    pub fn operator_token(&self) -> String {
        let path = self.data_dir.join("client.toml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let client: toml::Value = toml::from_str(&text).unwrap();
        client["token"].as_str().unwrap().to_owned()
    }

    /// The process's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.child.id())
    }

    /// Everything the server printed so far (stdout, then stderr).
    pub fn output(&self) -> String {
        let mut s = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(&self.stderr).unwrap_or_default());
        s
    }

    /// SIGTERM, then waits at most `limit` for the server to exit (panics if it does not, after
    /// killing it); returns how it exited.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > limit {
                self.kill();
                panic!(
                    "nlds-server embedded did not exit within {limit:?} of SIGTERM:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server as an operator would (SIGTERM, so it flushes its logs), killing it if
    /// it has not exited within 10 s.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let start = Instant::now();
        while self.child.try_wait().ok().flatten().is_none()
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// Kills the server at once (SIGKILL), as a crash would: no shutdown, nothing flushed.
    pub fn crash(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every regular file under `root` whose bytes contain `needle` (a scan for leaked secrets).
pub fn files_containing(root: &Path, needle: &str) -> Vec<PathBuf> {
    let needle = needle.as_bytes();
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path())
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .map(|e| e.path().to_owned())
        .collect()
}
