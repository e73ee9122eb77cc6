//! The embedded default: the API server and every worker role in one process, with SQLite, the
//! in-process bus, an embedded S3 endpoint (s3s-fs) on loopback and everything under one data
//! directory:
//!
//! ```text
//! DATA/nlds.db        catalogue and monitor (SQLite)
//! DATA/objects/       the warm tier (s3s-fs root; bucket `nlds`)
//! DATA/logs/          the logger role's files
//! DATA/tokens.toml    bearer tokens (generated on first start, mode 0600)
//! DATA/client.toml    url + token for the CLI (NLDS_CONFIG=DATA/client.toml)
//! DATA/s3.secret      the embedded S3 endpoint's secret key (mode 0600)
//! DATA/webhook.key    the key users' webhook secrets are derived from, unless `[notify]
//!                     webhook_key_file` names one (made on first start, mode 0600)
//! ```
//!
//! The data directory holds everyone's stored bytes: it is private to the account that runs the
//! server. At start the process umask becomes 0077 (so the database, the objects the embedded S3
//! endpoint writes and the logs are created 0600, their directories 0700) and the existing tree is
//! made private too (directories 0700, files 0600), whatever it was.
//!
//! The in-process bus keeps its queues in `nlds.db` too (`MemoryBus::durable`, on the process's one
//! SQLite connection), so a transaction in progress when the process stopped (even killed)
//! resumes when it starts again: every unacknowledged message is delivered again. Only a
//! transaction of which no message is left (a request cut off between its RPCs, which are never
//! stored) is marked FAILED with the reason "interrupted" at start
//! (`nlds_workers::recovery::fail_stranded`), never left in progress.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use nlds_bus::memory::MemoryBus;
use nlds_workers::run::{self, BusKind};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use nlds_server::AppState;
use nlds_server::ServerSettings;
use nlds_server::app::nodelay;

/// Serves the API on `listener` until `stop`, then stops accepting connections and lets the
/// open requests finish for at most `grace` (`[bus] shutdown_grace_secs`): live status streams
/// never finish by themselves, so whatever is still open then is closed (clients reconnect).
pub async fn serve_api(
    listener: TcpListener,
    app: axum::Router,
    stop: CancellationToken,
    grace: std::time::Duration,
) -> anyhow::Result<()> {
    let stopped = stop.clone();
    let serve = axum::serve(listener.tap_io(nodelay), app)
        .with_graceful_shutdown(async move { stopped.cancelled().await })
        .into_future();
    tokio::select! {
        r = serve => r.context("API server failed"),
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "stopping: requests still open after the grace are closed");
            Ok(())
        }
    }
}

/// What an embedded instance needs to start.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Use this settings' `[workers.object_store]` instead of the embedded S3 endpoint.
    pub external_object_store: Option<nlds_settings::ObjectStoreConfig>,
    /// Overrides of `[workers.index]` / `[workers.transfer]` and the server limits.
    pub settings: ServerSettings,
}

/// A running embedded instance.
pub struct Embedded {
    pub url: String,
    /// `http://<addr>/metrics` when `[metrics] listen` is set (docs/METRICS.md).
    pub metrics_url: Option<String>,
    pub token: String,
    pub s3_endpoint: String,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Makes the data directory private: every directory 0700, every file 0600 (symbolic links are
/// not followed). Returns how many entries were changed.
fn make_private(root: &Path) -> anyhow::Result<usize> {
    let mut changed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let ft = entry.file_type()?;
            let path = entry.path();
            if ft.is_dir() {
                stack.push(path.clone());
            } else if !ft.is_file() {
                continue;
            }
            changed += set_mode(&path, if ft.is_dir() { 0o700 } else { 0o600 })?;
        }
    }
    changed += set_mode(root, 0o700)?;
    Ok(changed)
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::symlink_metadata(path)?;
    if md.permissions().mode() & 0o7777 == mode {
        return Ok(0);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok(1)
}

fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The key users' webhook secrets are derived from (`[notify] webhook_key_file`), if set.
pub use nlds_workers::notify::webhook_key;

/// Reads the first token of the tokens file, creating the file with a new token if missing.
fn ensure_token(data: &Path) -> anyhow::Result<(PathBuf, String)> {
    let path = data.join("tokens.toml");
    if !path.exists() {
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "researcher".into());
        let token = random_secret();
        write_private(
            &path,
            &format!(
                "# bearer tokens of this embedded nlds-rs\n[[token]]\ntoken = \"{token}\"\nuser = \"{user}\"\ngroups = [\"{user}\"]\n# the operator of this instance: may trigger archive rounds\nadmin = true\n"
            ),
        )?;
    }
    let text = std::fs::read_to_string(&path)?;
    let v: toml::Value =
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    let token = v
        .get("token")
        .and_then(|t| t.as_array())
        .and_then(|a| a.first())
        .and_then(|t| t.get("token"))
        .and_then(|t| t.as_str())
        .context("tokens.toml has no [[token]]")?
        .to_owned();
    Ok((path, token))
}

/// Serves the data directory's objects over S3 on loopback; returns the endpoint URL.
///
/// The endpoint runs on a runtime of its own (two worker threads, at most `file_threads`
/// blocking threads for its file operations) on a thread of its own, until `shutdown`. s3s-fs
/// does every file operation on its runtime's blocking pool; sharing the workers' pool, a
/// transfer's blocking reader or writer could wait for a chunk the endpoint had no thread left to
/// read or write, and the pool could not be bounded (docs/MEMORY.md).
fn start_s3(
    root: &Path,
    access: &str,
    secret: &str,
    file_threads: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(root)?;
    let fs = s3s_fs::FileSystem::new(root)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e:?}", root.display()))?;
    let mut b = S3ServiceBuilder::new(fs);
    b.set_auth(SimpleAuth::from_single(access, secret));
    let service = b.build();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(file_threads.max(1))
        .thread_name("s3-endpoint")
        .enable_all()
        .build()
        .context("cannot start the embedded S3 endpoint's runtime")?;
    std::thread::Builder::new()
        .name("s3-endpoint".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "the embedded S3 endpoint cannot listen");
                        return;
                    }
                };
                let http = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                loop {
                    let (socket, _) = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                    };
                    // Without TCP_NODELAY a small object's response waits for the client's
                    // delayed ACK (40 ms on Linux): GETs of small objects were capped at ~750/s
                    // by that alone.
                    let _ = socket.set_nodelay(true);
                    let conn = http
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                        .into_owned();
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            });
        })
        .context("cannot start the embedded S3 endpoint's thread")?;
    Ok(format!("http://{addr}"))
}

impl Embedded {
    /// Starts everything; returns once the API is listening.
    pub async fn start(opts: EmbeddedOptions) -> anyhow::Result<Self> {
        let data = &opts.data_dir;
        // Everything this process creates from now on (the database, the objects s3s-fs writes,
        // logs) is private to its account, whatever the umask it was started with.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create data directory {}", data.display()))?;
        let data = data.canonicalize()?;
        let changed = make_private(&data)?;
        if changed > 0 {
            tracing::warn!(
                data_dir = %data.display(),
                changed,
                "made the data directory private (directories 0700, files 0600): it was readable by others"
            );
        }
        let shutdown = CancellationToken::new();
        let mut settings = opts.settings.clone();
        let (tokens_path, token) = ensure_token(&data)?;
        settings.server.tokens_file = tokens_path;

        let s3_endpoint = match &opts.external_object_store {
            Some(os) => {
                settings.workers.object_store = os.clone();
                os.endpoint.clone()
            }
            None => {
                let secret_path = data.join("s3.secret");
                if !secret_path.exists() {
                    write_private(&secret_path, &random_secret())?;
                }
                let secret = std::fs::read_to_string(&secret_path)?.trim().to_owned();
                let endpoint = start_s3(
                    &data.join("objects"),
                    "nlds-embedded",
                    &secret,
                    settings.memory.file_threads,
                    shutdown.clone(),
                )?;
                let os = &mut settings.workers.object_store;
                os.endpoint = endpoint.clone();
                os.access_key = "nlds-embedded".into();
                os.secret_key = Default::default();
                os.secret_key_file = Some(secret_path);
                os.bucket = "nlds".into();
                endpoint
            }
        };
        // Users' webhook secrets are derived from this key, by the API and by the monitor's
        // delivery task alike (docs/NOTIFY.md).
        if settings.notify.webhook_key_file.is_none() {
            let key_path = data.join("webhook.key");
            if !key_path.exists() {
                write_private(&key_path, &random_secret())?;
            }
            settings.notify.webhook_key_file = Some(key_path);
        }
        let webhook_key = webhook_key(&settings.notify)?;
        settings.workers.database_url =
            format!("sqlite://{}?mode=rwc", data.join("nlds.db").display());
        settings.workers.log_dir = data.join("logs");
        // Scratch space (recall spool, restore journals): under the data directory unless an
        // absolute path is configured.
        if settings.workers.work_dir.is_relative() {
            settings.workers.work_dir = data.join(&settings.workers.work_dir);
        }
        // The cold tier: the tape-library emulator under the data directory, unless configured.
        if let nlds_settings::ColdConfig::Dir(dir) = &mut settings.workers.cold
            && dir.root.is_relative()
        {
            dir.root = data.join(&dir.root);
        }
        settings.bus.kind = BusKind::Memory;
        // One user on one machine, whose embedded user name is usually not a system account:
        // the process's own access decides, unless `[workers] posix_checks` says otherwise.
        settings
            .workers
            .posix_checks
            .get_or_insert(nlds_workers::posix::PosixChecks::Service);

        // One connection for the roles and the bus's queues (see nlds_workers::db::connect).
        let db = nlds_workers::db::connect(&settings.workers.database_url).await?;
        let interrupted = nlds_workers::recovery::fail_stranded(
            &db,
            "interrupted: nlds-server stopped and left nothing to resume this transaction; run it again",
        )
        .await
        .context("cannot mark interrupted transactions")?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "marked transactions the last stop left with nothing to resume them as FAILED"
            );
        }
        let bus = Arc::new(
            MemoryBus::durable(db.clone())
                .await
                .context("cannot open the in-process bus's queues in nlds.db")?,
        );
        let mut tasks = tokio::task::JoinSet::new();
        {
            let (bus, s, stop) = (bus.clone(), settings.clone(), shutdown.clone());
            let res = run::Resources::with_db(db);
            tasks.spawn(
                async move { run::run_roles_with(bus, &run::all_roles(), &s, res, stop).await },
            );
        }

        let listener = TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("cannot listen on {}", opts.listen))?;
        let addr = listener.local_addr()?;
        settings.server.listen = addr;
        let url = settings.server.base_url();
        // /readyz: the bus, the database (through the monitor) and the object store.
        let ready =
            nlds_server::routes::default_readiness(&(bus.clone() as Arc<dyn nlds_bus::Bus>)).with(
                "object_store",
                nlds_workers::ops::object_store_check_of(settings.workers.object_store.clone()),
            );
        let state = AppState {
            bus,
            auth: nlds_server::auth::build(&settings)?,
            cfg: Arc::new(settings.server.clone()),
            live: Default::default(),
            webhook_key,
        };
        write_private(
            &data.join("client.toml"),
            &format!("url = \"{url}\"\ntoken = \"{token}\"\n"),
        )?;
        let app = nlds_server::router_with(state, ready);
        // Everything the process exports (the API's and every role's metrics), on a listener
        // of its own.
        let metrics_url = match settings.metrics.listen {
            Some(addr) => {
                let (bound, serve) =
                    nlds_workers::ops::serve_metrics(addr, shutdown.clone()).await?;
                tasks.spawn(serve);
                Some(format!("http://{bound}/metrics"))
            }
            None => None,
        };
        let (stop, grace) = (shutdown.clone(), settings.bus.shutdown_grace());
        tasks.spawn(serve_api(listener, app, stop, grace));
        Ok(Self {
            url,
            metrics_url,
            token,
            s3_endpoint,
            data_dir: data,
            shutdown,
            tasks,
        })
    }

    /// Runs until `stop` is cancelled or a part fails.
    pub async fn run_until(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        let result = tokio::select! {
            _ = stop.cancelled() => Ok(()),
            r = self.tasks.join_next() => match r {
                Some(Ok(Err(e))) => Err(e),
                Some(Err(e)) => Err(e.into()),
                _ => Ok(()),
            },
        };
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        // Zero in a healthy run; `bench/run.sh` reports these from the log.
        tracing::info!(
            database_contention = nlds_workers::db::contention_count(),
            bus_retries = nlds_bus::retries_scheduled(),
            "stopped (database_contention: operations that met a database lock; bus_retries: deliveries redelivered after a transient fault)"
        );
        result
    }

    /// Stops everything.
    pub async fn stop(self) -> anyhow::Result<()> {
        let t = CancellationToken::new();
        t.cancel();
        self.run_until(t).await
    }
}
