//! The distributed deployment under test, one process per role (`nlds-workers ROLE`) plus the API
//! server (`nlds-server serve`), each with its output in a file, so any of them can be killed with
//! SIGKILL and started again as a supervisor would, or stopped with SIGTERM as a rolling restart
//! does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nlds_core::Role;

use crate::distributed::workers_binary;

pub struct Fleet {
    config: PathBuf,
    logs: PathBuf,
    roles: BTreeMap<Role, Child>,
    server: Child,
    pub url: String,
    /// How many times each role was killed.
    pub kills: BTreeMap<Role, u32>,
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    cmd.env("RUST_LOG", "warn,nlds_workers=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn spawn_server(config: &Path, logs: &Path) -> Child {
    spawn(
        Command::new(env!("CARGO_BIN_EXE_nlds-server")).args([
            "serve",
            "--config",
            config.to_str().unwrap(),
        ]),
        &logs.join("server.log"),
    )
}

impl Fleet {
    /// Applies the migrations, then starts the API server on `port` and every role.
    pub async fn start(config: &Path, logs: &Path, port: u16) -> Self {
        std::fs::create_dir_all(logs).unwrap();
        let status = Command::new(workers_binary())
            .args(["--config", config.to_str().unwrap(), "migrate"])
            .status()
            .unwrap();
        assert!(status.success(), "nlds-workers migrate");
        let server = spawn_server(config, logs);
        let mut fleet = Self {
            config: config.to_owned(),
            logs: logs.to_owned(),
            roles: BTreeMap::new(),
            server,
            url: format!("http://127.0.0.1:{port}"),
            kills: BTreeMap::new(),
        };
        for role in Role::ALL {
            fleet.start_role(*role);
        }
        let http = reqwest::Client::new();
        let start = Instant::now();
        while http
            .get(format!("{}/readyz", fleet.url))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the API server is not ready: {}",
                fleet.log("server")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        fleet
    }

    /// SIGTERM to `role`'s process (`None`: the API server), as Kubernetes stops a pod; waits at
    /// most `limit` for it to exit (else panics), starts a new one and returns how it exited.
    pub fn stop_and_restart(&mut self, role: Option<Role>, limit: Duration) -> ExitStatus {
        let name = role.map_or("server", |r| r.as_str());
        let child = match role {
            Some(r) => self.roles.get_mut(&r).unwrap(),
            None => &mut self.server,
        };
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{name} had already exited ({status}) before it was stopped:\n{}",
                self.log(name)
            );
        }
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name} did not exit within {limit:?} of SIGTERM:\n{}",
                    self.log(name)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match role {
            Some(r) => self.start_role(r),
            None => self.server = spawn_server(&self.config, &self.logs),
        }
        status
    }

    fn start_role(&mut self, role: Role) {
        let child = spawn(
            Command::new(workers_binary()).args([
                "--config",
                self.config.to_str().unwrap(),
                role.as_str(),
            ]),
            &self.logs.join(format!("{}.log", role.as_str())),
        );
        self.roles.insert(role, child);
    }

    /// SIGKILL of `role`'s process, then a new one `after` later (as a supervisor restarts it).
    pub async fn kill_and_restart(&mut self, role: Role, after: Duration) {
        let mut child = self.roles.remove(&role).unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{role} had already exited ({status}) before it was killed:\n{}",
                self.log(role.as_str())
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
        *self.kills.entry(role).or_default() += 1;
        tokio::time::sleep(after).await;
        self.start_role(role);
    }

    /// Every role process still running (none exited on its own, e.g. on a lost connection).
    pub fn assert_all_running(&mut self) {
        for (role, child) in &mut self.roles {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{role} exited ({status}):\n{}",
                    std::fs::read_to_string(self.logs.join(format!("{}.log", role.as_str())))
                        .unwrap_or_default()
                );
            }
        }
    }

    /// The output of one process (`server` or a role name), for failure messages.
    pub fn log(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in self
            .roles
            .values_mut()
            .chain(std::iter::once(&mut self.server))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
