//! The policy role: runs the tiering policy (`nlds-policy`) over the catalogue.
//!
//! Exactly one runner is active at a time, whoever holds the `policy_lease` row ([`lease`]). A
//! pass ([`pass`]) scans every live file in keyset pages ([`scan`]), asks [`Policy::evaluate`],
//! tallies the decisions per rule and per group, and (unless it is a dry run) plans the archive
//! and evict actions within the caps, fairly across groups, and has the catalogue carry them out
//! ([`actions`]: `catalog-archive-next.start` with [`Payload::ArchiveSelect`], `catalog.evict`
//! with [`Payload::EvictFiles`]). The watermark check ([`watermark`]) evicts the least recently
//! accessed eligible files of a warm tier above its high watermark until it is below the low one.
//! A circuit breaker stops a pass whose actions fail too often and keeps watermark passes off
//! until the next scheduled or manual pass (or an operator) closes it (docs/POLICY-RUNNER.md).
//!
//! The RPCs (`policy.run`, `policy.dry-run`, `policy.status`, `policy.reload`, `policy.reset`,
//! `policy.explain`) are dispatched by [`rpc`] onto a [`PolicyRunner`].
//!
//! [`Payload::ArchiveSelect`]: nlds_core::Payload::ArchiveSelect
//! [`Payload::EvictFiles`]: nlds_core::Payload::EvictFiles

use std::sync::{Arc, RwLock};
use std::time::Duration;

use nlds_bus::Bus;
use nlds_core::policy::{PassKind, PassReport, PolicyStatus};
use nlds_policy::Policy;
use nlds_settings::PolicyConfig;
use sea_orm::DatabaseConnection;

pub mod actions;
pub mod error;
pub mod explain;
pub mod lease;
pub mod pass;
pub mod reload;
pub mod rpc;
pub mod scan;
pub mod status;
pub mod watermark;

#[cfg(test)]
mod tests;

pub use error::RunnerError;
pub use scan::{ScanRow, facts_of};

/// The policy runner of one process: its database, bus, settings, the policy in use and its
/// lease holder id.
pub struct PolicyRunner {
    pub(crate) db: DatabaseConnection,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) cfg: PolicyConfig,
    policy: RwLock<Arc<Policy>>,
    /// `host:pid:<random>`: who holds the lease.
    pub(crate) holder: String,
    /// How long one catalogue RPC (an eviction, an archive selection) may take.
    pub(crate) rpc_timeout: Duration,
    /// How long a pass waits for the aggregations it started to be stored.
    pub(crate) archive_wait: Duration,
    /// One pass at a time in this process (the lease keeps other processes out).
    pub(crate) running: tokio::sync::Mutex<()>,
    /// Who hears that a pass ended (`[notify]` operator channels).
    pub(crate) operators: crate::notify::decide::Operators,
    /// Unit tests decide with a function instead of the policy.
    #[cfg(test)]
    pub(crate) decider: Option<tests::Decider>,
}

impl PolicyRunner {
    pub fn new(
        db: DatabaseConnection,
        bus: Arc<dyn Bus>,
        cfg: PolicyConfig,
        policy: Policy,
    ) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        let holder = format!(
            "{host}:{}:{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let archive_wait = Duration::from_secs(cfg.archive_wait_secs);
        Self {
            db,
            bus,
            cfg,
            policy: RwLock::new(Arc::new(policy)),
            holder,
            rpc_timeout: Duration::from_secs(120),
            archive_wait,
            running: tokio::sync::Mutex::new(()),
            operators: Default::default(),
            #[cfg(test)]
            decider: None,
        }
    }

    /// A runner with the rules of `cfg` loaded, all or nothing: an invalid policy is an error
    /// naming each rule, key and problem.
    pub fn from_config(
        db: DatabaseConnection,
        bus: Arc<dyn Bus>,
        cfg: PolicyConfig,
    ) -> Result<Self, String> {
        let policy = Policy::load(&cfg).map_err(|errors| {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            format!("the policy is invalid ([policy]): {}", list.join("; "))
        })?;
        Ok(Self::new(db, bus, cfg, policy))
    }

    /// The same runner, telling `operators` when a pass ends (not a dry run).
    pub fn with_operators(mut self, operators: crate::notify::decide::Operators) -> Self {
        self.operators = operators;
        self
    }

    /// The same runner, answering to `holder` (tests run two in one process).
    pub fn with_holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// Who this runner is, as the lease names it.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The settings it runs with.
    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    /// The policy in use.
    pub fn current(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Uses `policy` from the next file evaluated on (a pass in progress finishes its page with
    /// the old one).
    pub fn replace(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// Runs one pass of `kind` now. A dry run changes nothing (and needs no lease); any other
    /// pass needs the lease (see [`RunnerError::LeaseHeld`]).
    pub async fn pass(&self, kind: PassKind) -> Result<PassReport, RunnerError> {
        pass::run(self, kind).await
    }

    /// The runner's state and its `last` most recent passes.
    pub async fn status(&self, last: usize) -> Result<PolicyStatus, RunnerError> {
        status::status(self, last).await
    }

    /// Closes the circuit breaker.
    pub async fn reset_breaker(&self) -> Result<(), RunnerError> {
        lease::close_breaker(&self.db).await?;
        Ok(())
    }

    /// The interval loop: every `interval_secs` a scheduled pass, every `watermark_check_secs`
    /// a watermark check (each only where this runner holds, or can take, the lease). Never
    /// returns; the caller drops it at shutdown.
    pub async fn run_timer(self: Arc<Self>) {
        let every = Duration::from_secs(self.cfg.interval_secs);
        let check = Duration::from_secs(self.cfg.watermark_check_secs.max(1));
        let mut next_pass = (!every.is_zero()).then(|| tokio::time::Instant::now() + every);
        let mut next_check = tokio::time::Instant::now() + check;
        loop {
            let wake = next_pass.map_or(next_check, |p| p.min(next_check));
            tokio::time::sleep_until(wake).await;
            let now = tokio::time::Instant::now();
            if next_pass.is_some_and(|p| p <= now) {
                next_pass = Some(now + every);
                match self.pass(PassKind::Scheduled).await {
                    Ok(r) => {
                        tracing::info!(id = r.id, outcome = %r.outcome, evaluated = r.evaluated,
                        archived = r.archived_files, evicted = r.evicted_files, "policy pass")
                    }
                    Err(RunnerError::LeaseHeld { holder, .. }) => {
                        tracing::debug!(%holder, "policy pass skipped: another runner is active")
                    }
                    Err(e) => tracing::warn!("scheduled policy pass: {e}"),
                }
            }
            if next_check <= now {
                next_check = now + check;
                match watermark::check(&self).await {
                    Ok(Some(r)) => tracing::info!(id = r.id, outcome = %r.outcome,
                        evicted = r.evicted_files, bytes = r.evicted_bytes, "watermark pass"),
                    Ok(None) => {}
                    Err(RunnerError::LeaseHeld { .. }) => {}
                    Err(e) => tracing::warn!("watermark check: {e}"),
                }
            }
        }
    }
}
