//! Private instances of the services the fault-injection suite stops and starts: a RabbitMQ node
//! and a PostgreSQL cluster of its own (own ports, own data directories), and a TCP proxy in front
//! of the shared S3 server that can refuse and cut connections. The shared services that other
//! tests use are never touched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A free loopback port (bound and released; the service binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what} not ready within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A RabbitMQ node of this test's own (`rabbitmq-server` with its own node name, ports and
/// database directory; the Debian scripts run it as the `rabbitmq` user, so its directory
/// belongs to that user). Its durable queues survive [`Rabbit::restart`].
pub struct Rabbit {
    dir: PathBuf,
    node: String,
    pub port: u16,
}

impl Rabbit {
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let node = format!("nlds-chaos-{port}@localhost");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("rabbit.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"),
        )
        .unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        run(Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(dir));
        let r = Self {
            dir: dir.to_owned(),
            node,
            port,
        };
        r.launch();
        r
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn launch(&self) {
        let d = |p: &str| self.dir.join(p);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d("server.out"))
            .unwrap();
        let mut child = Command::new("rabbitmq-server")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", d("mnesia"))
            .env("RABBITMQ_LOG_BASE", d("log"))
            .env("RABBITMQ_CONFIG_FILE", d("rabbit.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d("pid"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("rabbitmq-server starts (Debian package rabbitmq-server)");
        // Reaped when the node stops (`rabbitmqctl shutdown`), so no zombie is left.
        std::thread::spawn(move || child.wait());
        let port = self.port;
        wait_until("private RabbitMQ", Duration::from_secs(90), || {
            listening(port)
        });
    }

    /// Stops the node as an outage would (its clients' connections drop).
    pub fn stop(&self) {
        run(Command::new("rabbitmqctl").args(["-n", &self.node, "shutdown"]));
        let port = self.port;
        wait_until("private RabbitMQ to stop", Duration::from_secs(60), || {
            !listening(port)
        });
    }

    pub fn start_again(&self) {
        self.launch();
    }

    /// Messages ready or unacknowledged per queue, for the queues that have any.
    pub fn busy_queues(&self) -> Vec<String> {
        run(Command::new("rabbitmqctl").args([
            "-n",
            &self.node,
            "-q",
            "list_queues",
            "name",
            "messages",
            "--no-table-headers",
        ]))
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|n| n.parse::<u64>().map(|n| n > 0).unwrap_or(true))
        })
        .map(str::to_owned)
        .collect()
    }
}

impl Rabbit {
    /// What the dead-letter queues among `busy` (lines of [`Rabbit::busy_queues`]) hold: each
    /// message's routing key, its properties (the `x-death` header says why and from where it
    /// was dead-lettered) and the start of its body; the messages are put back.
    pub async fn dead_letters(&self, busy: &[String]) -> Vec<String> {
        use lapin::options::{BasicGetOptions, BasicNackOptions};
        let conn = lapin::Connection::connect(&self.url(), Default::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let mut out = Vec::new();
        for queue in busy.iter().filter_map(|l| l.split_whitespace().next()) {
            if !queue.ends_with(".dead") {
                continue;
            }
            let mut got = Vec::new();
            while let Some(m) = ch
                .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                .await
                .unwrap()
            {
                let body = String::from_utf8_lossy(&m.delivery.data);
                out.push(format!(
                    "{queue}: {} {:?} {}",
                    m.delivery.routing_key,
                    m.delivery.properties,
                    body.chars().take(300).collect::<String>()
                ));
                got.push(m.delivery.delivery_tag);
            }
            for tag in got {
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                };
                ch.basic_nack(tag, requeue).await.unwrap();
            }
        }
        out
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "shutdown"])
            .output();
    }
}

/// A PostgreSQL cluster of this test's own (initdb as the `postgres` user, trust, fsync off).
pub struct Postgres {
    data: PathBuf,
    pub port: u16,
}

fn pg_bin(name: &str) -> PathBuf {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<_> = std::fs::read_dir(base)
        .expect("PostgreSQL server binaries in /usr/lib/postgresql")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    versions.sort();
    versions.pop().unwrap().join("bin").join(name)
}

impl Postgres {
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir));
        let data = dir.join("data");
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data));
        let pg = Self {
            data,
            port: free_port(),
        };
        pg.start_again();
        run(Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(pg.port.to_string())
            .args(["-qc", "CREATE DATABASE nlds"]));
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/nlds", self.port)
    }

    fn ctl(&self, args: &[&str]) {
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(args));
    }

    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        self.ctl(&["-w", "-o", &opts, "-l", log.to_str().unwrap(), "start"]);
    }

    /// Stops the cluster at once (`-m immediate`: a crash as far as its clients can tell).
    pub fn stop(&self) {
        self.ctl(&["-m", "immediate", "stop"]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// A TCP proxy in front of the shared S3 server: while down it cuts every open connection and
/// refuses new ones, as an unreachable endpoint does.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (u, c) = (up.clone(), cut.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        if !u.load(Ordering::SeqCst) {
                            drop(inbound); // refused: closed at once
                            continue;
                        }
                        conns.spawn(async move {
                            if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                    _ = c.notified() => conns.abort_all(),
                    Some(_) = conns.join_next() => {}
                }
            }
        });
        Self {
            addr,
            up,
            cut,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_one();
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
