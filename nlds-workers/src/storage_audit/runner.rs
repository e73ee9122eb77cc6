//! Runs audits one at a time across every storage-audit process (the `policy_lease` row named
//! `storage-audit`, renewed while a run goes on), records them (`storage_audit`), and runs the
//! scheduled scrub (`[workers.audit] scrub_every_secs`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use nlds_bus::Bus;
use nlds_core::ErrorCode;
use nlds_core::api::Tier;
use nlds_core::error::ApiError;
use nlds_core::storage_audit::{AuditReport, AuditRequest, FindingKind};
use nlds_settings::AuditConfig;
use tokio_util::sync::CancellationToken;

use super::{StorageAudit, store};
use crate::policy::lease;

/// The lease row of the storage audit.
pub const LEASE: &str = "storage-audit";
/// How long the lease lasts unless renewed (a quarter of it between renewals).
const LEASE_SECS: u64 = 120;
/// The trigger of scheduled runs.
pub const SCHEDULE: &str = "schedule";
/// The trigger of runs an operator asked for.
pub const OPERATOR: &str = "operator";

/// Starts and records audits; one per deployment at a time.
pub struct AuditRunner {
    pub(super) audit: Arc<StorageAudit>,
    holder: String,
    /// Asks for an archive round after a repair forgot aggregations (their files are archived
    /// again).
    bus: Option<Arc<dyn Bus>>,
    cfg: AuditConfig,
}

impl AuditRunner {
    pub fn new(audit: StorageAudit, cfg: AuditConfig, bus: Option<Arc<dyn Bus>>) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        Self {
            audit: Arc::new(audit),
            holder: format!(
                "{host}:{}:{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            bus,
            cfg,
        }
    }

    /// Takes the lease and starts `req` in the background; the run's id. With `only_if_due`,
    /// nothing (`None`) unless the last scheduled run started `scrub_every_secs` ago.
    pub async fn start(
        self: &Arc<Self>,
        trigger: &'static str,
        req: AuditRequest,
        only_if_due: bool,
    ) -> Result<Option<i64>, ApiError> {
        let db = &self.audit.db;
        if lease::take(db, LEASE, &self.holder, LEASE_SECS)
            .await
            .map_err(db_api)?
            .is_none()
        {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "a storage audit is running: follow it with `nlds admin audit storage --status` \
                 and start another when it has ended",
            ));
        }
        if only_if_due && !self.due().await.map_err(db_api)? {
            lease::give_up(db, LEASE, &self.holder)
                .await
                .map_err(db_api)?;
            return Ok(None);
        }
        let id = store::started(db, trigger, &req).await.map_err(db_api)?;
        tracing::info!(run = id, trigger, "storage audit started");
        let me = self.clone();
        tokio::spawn(async move { me.finish(id, trigger, req).await });
        Ok(Some(id))
    }

    /// Runs, renewing the lease meanwhile; records the outcome and gives the lease up.
    async fn finish(&self, id: i64, trigger: &'static str, req: AuditRequest) {
        let db = &self.audit.db;
        let renew = async {
            loop {
                tokio::time::sleep(Duration::from_secs(LEASE_SECS / 4)).await;
                if let Err(e) = lease::take(db, LEASE, &self.holder, LEASE_SECS).await {
                    tracing::warn!(error = %e, "could not renew the storage audit's lease");
                }
            }
        };
        let outcome = tokio::select! {
            r = self.audit.run(&req, trigger) => r,
            () = renew => unreachable!("the renewal never ends"),
        };
        let recorded = match &outcome {
            Ok(report) => {
                let mut report = report.clone();
                report.id = Some(id);
                store::finished(db, id, Ok(&report)).await
            }
            Err(e) => {
                tracing::warn!(run = id, error = %e, "storage audit stopped");
                store::finished(db, id, Err(&e.to_string())).await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(run = id, error = %e, "could not record the storage audit's outcome");
        }
        if let Ok(report) = &outcome
            && forgot_aggregations(report)
            && let Some(bus) = &self.bus
        {
            let (key, env) = nlds_core::workflow::archive_round();
            if let Err(e) = bus.publish(key, &env).await {
                tracing::warn!(error = %e, "could not ask for an archive round after a repair");
            }
        }
        if let Err(e) = lease::give_up(db, LEASE, &self.holder).await {
            tracing::warn!(error = %e, "could not give the storage audit's lease up");
        }
    }

    /// Has `scrub_every_secs` passed since the last scheduled run started?
    async fn due(&self) -> Result<bool, sea_orm::DbErr> {
        let every = chrono::Duration::seconds(
            i64::try_from(self.cfg.scrub_every_secs).unwrap_or(i64::MAX / 2),
        );
        Ok(match store::last_started(&self.audit.db, SCHEDULE).await? {
            None => true,
            Some(at) => at + every <= Utc::now(),
        })
    }

    /// The scheduled scrub's request: both tiers, a sample (or all) at the configured rate.
    pub fn scheduled_request(&self) -> AuditRequest {
        AuditRequest {
            warm: true,
            cold: true,
            scrub: true,
            sample: (self.cfg.scrub_sample > 0).then_some(self.cfg.scrub_sample),
            rate_mb: (self.cfg.scrub_rate_mb > 0).then_some(self.cfg.scrub_rate_mb),
            repair: false,
        }
    }

    /// Starts the scheduled scrub when it is due, checking every minute (at most), until
    /// `shutdown`. Nothing when `scrub_every_secs` is 0.
    pub async fn run_schedule(self: Arc<Self>, shutdown: CancellationToken) {
        if self.cfg.scrub_every_secs == 0 {
            return;
        }
        let check = Duration::from_secs(self.cfg.scrub_every_secs.clamp(1, 60));
        let mut tick = tokio::time::interval(check);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    match self.start(SCHEDULE, self.scheduled_request(), true).await {
                        Ok(_) => {}
                        // Another process runs one: it is not due here.
                        Err(e) if e.code == ErrorCode::Conflict => {}
                        Err(e) => tracing::warn!(error = %e.message, "could not start the scheduled scrub"),
                    }
                }
            }
        }
    }
}

/// Did a repair forget aggregations (so their files wait for an archive round)?
fn forgot_aggregations(r: &AuditReport) -> bool {
    r.findings
        .iter()
        .any(|f| f.tier == Tier::Cold && f.kind != FindingKind::Dark && f.repaired)
}

fn db_api(e: sea_orm::DbErr) -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        format!("storage audit: the catalogue: {e}"),
    )
}
