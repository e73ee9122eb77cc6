//! This process's heartbeat (`nlds_core::heartbeat`): every `[workers] heartbeat_secs` it tells
//! the processes watching the bus (the API servers' status page) which roles it runs, where, since
//! when, and what its readiness checks say (the broker, and the database, the object store and
//! the cold store where its roles use them), so the status page knows a role is alive without
//! pinging it and learns whether the backends answer from the processes that use them.

use std::sync::Arc;
use std::time::Duration;

use nlds_bus::Bus;
use nlds_bus::health::Readiness;
use nlds_core::Role;
use nlds_core::heartbeat::Heartbeat;
use tokio_util::sync::CancellationToken;

/// Sends this process's heartbeat every `every` until `stop`, with the report of `checks`.
pub async fn run(
    bus: Arc<dyn Bus>,
    roles: &[Role],
    every: Duration,
    checks: Readiness,
    drained: Arc<crate::drain::Drained>,
    stop: CancellationToken,
) {
    let mut hb = Heartbeat {
        instance: uuid::Uuid::new_v4(),
        roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
        host: nlds_bus::hostname(),
        pid: std::process::id(),
        started: chrono::Utc::now(),
        sent: chrono::Utc::now(),
        interval_secs: every.as_secs().max(1),
        checks: Default::default(),
        drained: Vec::new(),
    };
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        hb.checks = checks.report().await.checks;
        hb.drained = drained
            .of(roles)
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect();
        hb.sent = chrono::Utc::now();
        if let Err(e) = bus.beat(&hb).await {
            tracing::debug!(error = %e, "cannot send this process's heartbeat");
        }
    }
}

/// The `cold_store` check of a process running an archive role: the store answers a lookup of
/// a name it never holds.
pub fn cold_store_check(
    cold: Arc<dyn nlds_storage::cold::ColdStore>,
) -> impl Fn() -> crate::ops::Probe + Send + Sync {
    move || {
        let cold = cold.clone();
        Box::pin(async move {
            cold.stat(PROBE_NAME)
                .await
                .map(|_| ())
                .map_err(|e| format!("the cold store does not answer: {e}"))
        })
    }
}

/// The aggregate name the cold-store check looks up (never written).
const PROBE_NAME: &str = "nlds-heartbeat-probe";
