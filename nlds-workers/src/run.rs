//! Running roles: settings, the bus, the resources each role needs, and the consume loops.

use std::sync::Arc;

use anyhow::Context;
use nlds_bus::memory::MemoryBus;
use nlds_bus::rabbit::RabbitBus;
use nlds_bus::{Bus, ConsumeOptions, Handler, RetryPolicy};
use nlds_core::Role;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::outbox::Outbox;

pub use nlds_settings::{BusConfig, BusKind};

/// The settings file shared by `nlds-server` and `nlds-workers`: one type, defined in
/// `nlds-settings` (the workers read `[bus]` and `[workers]`).
pub use nlds_settings::Settings;

/// The bus's retry policy of `[bus] retry_delays_ms`.
pub fn retry_policy(cfg: &BusConfig) -> RetryPolicy {
    RetryPolicy {
        delays: cfg.retry_delays(),
    }
}

/// Connects the configured bus.
pub async fn connect_bus(cfg: &BusConfig) -> anyhow::Result<Arc<dyn Bus>> {
    Ok(match cfg.kind {
        BusKind::Memory => Arc::new(MemoryBus::new()),
        BusKind::Rabbitmq => Arc::new(
            RabbitBus::connect(&cfg.amqp_url, retry_policy(cfg))
                .await
                .with_context(|| "cannot connect to RabbitMQ (bus.amqp_url)")?,
        ),
    })
}

/// Connections shared by the roles of one process, opened on first use.
#[derive(Default)]
pub struct Resources {
    db: OnceCell<sea_orm::DatabaseConnection>,
    s3: OnceCell<nlds_storage::s3::S3Clients>,
    cold: OnceCell<Arc<dyn nlds_storage::cold::ColdStore>>,
    /// The outbox the catalogue stages into; its one relay runs beside the catalogue roles.
    outbox: Outbox,
    /// The policy runner (the policy role's RPCs and its timer share it).
    policy: OnceCell<Arc<crate::policy::PolicyRunner>>,
    /// The storage audit's runner (its RPCs and the scheduled scrub share it).
    audit: OnceCell<Arc<crate::storage_audit::runner::AuditRunner>>,
    /// The cancels this process heard of (its transfer roles stop moving their files).
    cancelled: Arc<crate::cancelled::Cancelled>,
    /// The roles drained for maintenance, as this process knows them (its consumers honour it).
    drained: Arc<crate::drain::Drained>,
}

impl Resources {
    /// Resources whose database is `db`, already open: the embedded process shares its one
    /// SQLite connection between the roles and its bus's queues.
    pub fn with_db(db: sea_orm::DatabaseConnection) -> Self {
        Self {
            db: OnceCell::new_with(Some(db)),
            ..Default::default()
        }
    }

    pub async fn db(&self, cfg: &WorkerConfig) -> anyhow::Result<sea_orm::DatabaseConnection> {
        self.db
            .get_or_try_init(|| async {
                crate::db::connect(&cfg.database_url)
                    .await
                    .context("cannot open the catalogue database (workers.database_url)")
            })
            .await
            .cloned()
    }

    /// The clients of the default object store and of every configured tenancy (built, and
    /// their buckets checked, on first use).
    pub async fn s3(&self, cfg: &WorkerConfig) -> anyhow::Result<nlds_storage::s3::S3Clients> {
        self.s3
            .get_or_try_init(|| async {
                nlds_storage::s3::S3Clients::build(&cfg.object_store)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot configure the object store: {e}"))
            })
            .await
            .cloned()
    }
}

impl Resources {
    /// The policy runner, with the rules of `[policy]` loaded (all or nothing: an invalid
    /// policy stops the role from starting, naming each rule, key and problem).
    pub async fn policy(
        &self,
        cfg: &WorkerConfig,
        settings: &Settings,
        bus: &Arc<dyn Bus>,
    ) -> anyhow::Result<Arc<crate::policy::PolicyRunner>> {
        let db = self.db(cfg).await?;
        self.policy
            .get_or_try_init(|| async {
                crate::policy::PolicyRunner::from_config(db, bus.clone(), settings.policy.clone())
                    .map(|r| {
                        Arc::new(
                            r.with_operators(crate::notify::decide::Operators::of(
                                &settings.notify,
                            )),
                        )
                    })
                    .map_err(anyhow::Error::msg)
            })
            .await
            .cloned()
    }

    /// The storage audit's runner, over the catalogue, every tenancy's bucket and the cold store.
    pub async fn audit(
        &self,
        cfg: &WorkerConfig,
        bus: &Arc<dyn Bus>,
    ) -> anyhow::Result<Arc<crate::storage_audit::runner::AuditRunner>> {
        let (db, s3, cold) = (
            self.db(cfg).await?,
            self.s3(cfg).await?,
            self.cold(cfg).await?,
        );
        self.audit
            .get_or_try_init(|| async {
                let spool = crate::debris::storage_audit(&cfg.audit_spool_dir()).await?;
                let audit = crate::storage_audit::StorageAudit::new(db, s3, Some(cold))
                    .with_stage_wait(std::time::Duration::from_secs(cfg.audit.stage_wait_secs))
                    .with_spool(spool);
                Ok::<_, anyhow::Error>(Arc::new(crate::storage_audit::runner::AuditRunner::new(
                    audit,
                    cfg.audit.clone(),
                    Some(bus.clone()),
                )))
            })
            .await
            .cloned()
    }

    pub async fn cold(
        &self,
        cfg: &WorkerConfig,
    ) -> anyhow::Result<Arc<dyn nlds_storage::cold::ColdStore>> {
        self.cold
            .get_or_try_init(|| async {
                nlds_storage::cold::open(&cfg.cold).await.with_context(|| {
                    format!(
                        "cannot open the {} cold store (workers.cold)",
                        cfg.cold.backend()
                    )
                })
            })
            .await
            .cloned()
    }
}

/// Builds the handler of a role.
pub async fn handler(
    role: Role,
    settings: &Settings,
    res: &Resources,
    bus: &Arc<dyn Bus>,
) -> anyhow::Result<Arc<dyn Handler>> {
    let cfg = &settings.workers;
    Ok(match role {
        Role::Router => Arc::new(crate::router::Router),
        Role::Indexer => Arc::new(
            crate::indexer::Indexer::new(cfg.index.clone())
                .with_posix(cfg.posix_policy())
                .with_bus(bus.clone()),
        ),
        Role::Logger => {
            Arc::new(crate::logger::Logger::new(cfg.log_dir.clone()).with_db(res.db(cfg).await?))
        }
        Role::TransferPut => {
            let clients = res.s3(cfg).await?;
            crate::debris::transfer_put(&clients, cfg.transfer.stale_upload_secs).await;
            Arc::new(
                crate::transfer_put::TransferPut::with_clients(clients, cfg.transfer.clone())
                    .with_posix(cfg.posix_policy())
                    .with_cancelled(res.cancelled.clone()),
            )
        }
        Role::TransferGet => {
            let work = crate::debris::transfer_get(&cfg.work_dir, cfg.posix_policy()).await?;
            Arc::new(
                crate::transfer_get::TransferGet::with_clients(
                    res.s3(cfg).await?,
                    cfg.transfer.clone(),
                )
                .with_posix(cfg.posix_policy())
                .with_work_dir(work)
                .with_cancelled(res.cancelled.clone()),
            )
        }
        Role::Catalogue | Role::CatalogueRpc => Arc::new(
            crate::catalogue::Catalogue::new(
                res.db(cfg).await?,
                cfg.index.batch_files,
                cfg.index.batch_bytes,
            )
            .with_archive(cfg.archive.clone(), cfg.cold.backend())
            .with_delete(cfg.delete.clone())
            .with_versions(cfg.versions.clone())
            .with_policy(settings.policy.clone())
            .with_outbox(res.outbox.clone())
            .with_unfinished_request_secs(cfg.index.unfinished_request_secs)
            .with_backpressure(bus.clone()),
        ),
        Role::ArchivePut => {
            let cold = res.cold(cfg).await?;
            crate::debris::archive_put(cold.as_ref(), cfg.archive.stale_partial_secs).await;
            Arc::new(
                crate::archive_put::ArchivePut::with_clients(res.s3(cfg).await?, cold)
                    .accept_unverified(cfg.archive.accept_unverified),
            )
        }
        // Recalled files are restored to the default object store (recorded as such).
        Role::ArchiveGet => Arc::new(crate::archive_get::ArchiveGet::new(
            res.s3(cfg).await?.default_tenant().client.clone(),
            cfg.object_store.bucket.clone(),
            res.cold(cfg).await?,
            bus.clone(),
            &cfg.archive,
            crate::debris::archive_get(&cfg.spool_dir()).await?,
        )),
        Role::Monitor | Role::MonitorRpc => Arc::new(
            crate::monitor::Monitor::new(res.db(cfg).await?)
                .with_changes(bus.clone())
                .with_allow_http(settings.notify.allow_http),
        ),
        Role::Policy => Arc::new(
            crate::policy::rpc::PolicyRpc::new(res.policy(cfg, settings, bus).await?)
                .with_settings(settings.clone()),
        ),
        Role::StorageAudit => Arc::new(crate::storage_audit::rpc::StorageAuditRpc::new(
            res.audit(cfg, bus).await?,
        )),
    })
}

/// Runs `roles` on `bus` until `shutdown` with `settings` (`[workers]`, `[bus]`, `[policy]`);
/// returns the first consumer error.
pub async fn run_roles(
    bus: Arc<dyn Bus>,
    roles: &[Role],
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_roles_with(bus, roles, settings, Resources::default(), shutdown).await
}

/// [`run_roles`] with the connections of `res` (e.g. [`Resources::with_db`]).
pub async fn run_roles_with(
    bus: Arc<dyn Bus>,
    roles: &[Role],
    settings: &Settings,
    res: Resources,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (cfg, bus_cfg) = (&settings.workers, &settings.bus);
    let mut tasks = tokio::task::JoinSet::new();
    {
        // Warnings, errors and retry notes of this process, published on its bus.
        let publisher = nlds_bus::notices::install(bus.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            publisher.run(stop).await;
            Ok(())
        });
    }
    // What this process exports when scraped (docs/METRICS.md), until it stops: its roles'
    // queues, and the usage per group where the catalogue runs.
    let mut exported = vec![nlds_bus::metrics::export_queue_depths(bus.clone(), roles)];
    if roles.contains(&Role::Catalogue) {
        exported.push(crate::metrics::export_usage(
            res.db(cfg).await?,
            settings.metrics.usage_groups,
        ));
    }
    for &role in roles {
        let h = handler(role, settings, &res, &bus)
            .await
            .with_context(|| format!("cannot start role {role}"))?;
        let h = crate::metrics::Counted::wrap(role, h);
        nlds_metrics::record::consuming(role.as_str());
        let opts = ConsumeOptions {
            // The monitor applies updates in queue order, so a state never overtakes the
            // updates causally before it (run one monitor consumer: it is the single writer).
            prefetch: if role == Role::Monitor {
                1
            } else {
                bus_cfg.consumer_prefetch()
            },
            retry: retry_policy(bus_cfg),
            grace: bus_cfg.shutdown_grace(),
        };
        let (bus, stop, drained) = (bus.clone(), shutdown.clone(), res.drained.clone());
        tasks.spawn(async move {
            drained
                .consume(bus, role, h, opts, stop)
                .await
                .with_context(|| format!("role {role} stopped"))
        });
        tracing::info!(%role, "role started");
    }
    {
        // The drained roles: asked of the monitor at start, on every announcement of a change,
        // and every heartbeat interval (crate::drain).
        let (bus, stop, drained) = (bus.clone(), shutdown.clone(), res.drained.clone());
        let every = std::time::Duration::from_secs(cfg.heartbeat_secs);
        tasks.spawn(async move {
            drained.follow(bus, every, stop).await;
            Ok(())
        });
    }
    if let Some(addr) = cfg.ops_listen {
        let ready = crate::ops::readiness(roles, bus.clone(), cfg, &res).await?;
        let (bound, serve) = crate::ops::serve(addr, ready, shutdown.clone()).await?;
        tracing::info!(addr = %bound, "operations listener: /healthz, /readyz, /metrics");
        tasks.spawn(serve);
    }
    {
        // This process's heartbeat, for the status page: its roles and its checks, the cold
        // store's too where it runs an archive role.
        let mut checks = crate::ops::readiness(roles, bus.clone(), cfg, &res).await?;
        if roles.contains(&Role::ArchivePut) || roles.contains(&Role::ArchiveGet) {
            let cold = res.cold(cfg).await?;
            checks = checks.with("cold_store", crate::heartbeat::cold_store_check(cold));
        }
        let (bus, roles, stop) = (bus.clone(), roles.to_vec(), shutdown.clone());
        let every = std::time::Duration::from_secs(cfg.heartbeat_secs);
        let drained = res.drained.clone();
        tasks.spawn(async move {
            crate::heartbeat::run(bus, &roles, every, checks, drained, stop).await;
            Ok(())
        });
    }
    if roles.contains(&Role::Catalogue) || roles.contains(&Role::CatalogueRpc) {
        // One relay per process publishes what the catalogue staged (and, at start, what a
        // crash left staged).
        let relay = res.outbox.relay(res.db(cfg).await?, bus.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            relay.run(stop).await;
            Ok(())
        });
    }
    if roles.contains(&Role::TransferPut) || roles.contains(&Role::TransferGet) {
        // Cancels announced from now on: the transfers stop moving those files.
        let follow = res.cancelled.clone().follow(bus.clone(), shutdown.clone());
        tasks.spawn(async move {
            follow.await;
            Ok(())
        });
    }
    if roles.contains(&Role::Monitor) {
        // Notifications: delivered apart from the monitor's handler, so a slow receiver never
        // holds up a state update (docs/NOTIFY.md).
        let mut notifier =
            crate::notify::Notifier::new(res.db(cfg).await?, settings.notify.clone())
                .context("cannot start notification delivery ([notify])")?
                .with_bus(bus.clone());
        // Backends probed for operator alerts: the object store (a HeadBucket; its settings are
        // every process's), the cold store only where this process runs an archive role (it
        // alone has the store mounted or reachable).
        let head_bucket = crate::ops::object_store_check_of(cfg.object_store.clone());
        notifier = notifier.with_probe("object store", Arc::new(head_bucket));
        if roles.contains(&Role::ArchivePut) || roles.contains(&Role::ArchiveGet) {
            let cold = res.cold(cfg).await?;
            notifier = notifier.with_probe(
                "cold store",
                Arc::new(move || {
                    let cold = cold.clone();
                    Box::pin(async move {
                        cold.stat(PROBE_NAME)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
                }),
            );
        }
        let stop = shutdown.clone();
        tasks.spawn(async move {
            notifier.run(stop).await;
            Ok(())
        });
    }
    if roles.contains(&Role::ArchivePut) {
        let (bus, stop) = (bus.clone(), shutdown.clone());
        let every = std::time::Duration::from_secs(cfg.archive.interval_secs);
        // With the policy on, only the policy archives: scheduled rounds do their upkeep only.
        let upkeep_only = settings.policy.enabled;
        tasks.spawn(async move {
            crate::archive_put::run_scheduler(bus, every, upkeep_only, stop).await;
            Ok(())
        });
    }
    if roles.contains(&Role::Policy) && settings.policy.enabled {
        // Passes and watermark checks: every policy process runs the timer, the lease lets one
        // of them act.
        let runner = res.policy(cfg, settings, &bus).await?;
        let stop = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = runner.run_timer() => {}
                _ = stop.cancelled() => {}
            }
            Ok(())
        });
    }
    if roles.contains(&Role::StorageAudit) {
        // The scheduled scrub: every storage-audit process checks, the lease lets one run it.
        let runner = res.audit(cfg, &bus).await?;
        let stop = shutdown.clone();
        tasks.spawn(async move {
            runner.run_schedule(stop).await;
            Ok(())
        });
    }
    if roles.contains(&Role::Policy) {
        // Reloads: on SIGHUP, and when another policy process reloaded (policy::reload).
        let runner = res.policy(cfg, settings, &bus).await?;
        let reloader = Arc::new(crate::policy::reload::Reloader::new(settings.clone()));
        let stop = shutdown.clone();
        tasks.spawn(async move {
            crate::policy::reload::follow(runner, reloader, stop).await;
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("role task crashed")??;
    }
    drop(exported);
    Ok(())
}

/// The aggregate name the cold-store probe looks up (never written: a reachable store answers
/// that it does not exist).
const PROBE_NAME: &str = "nlds-notify-probe";

/// Every role.
pub fn all_roles() -> Vec<Role> {
    Role::ALL.to_vec()
}

/// How long a stopping process waits, once its roles have stopped, for threads still busy with
/// work it abandoned, before it exits.
pub const EXIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A token cancelled on SIGINT or SIGTERM: the process stops taking deliveries, lets those in
/// hand finish within `[bus] shutdown_grace_secs`, returns the rest to their queues and exits
/// (0, unless something failed).
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install SIGTERM handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}
