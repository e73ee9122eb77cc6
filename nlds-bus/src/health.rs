//! Readiness: the checks of what a process depends on (the broker, the database, the object
//! store), each cheap (a `SELECT 1`, a `HeadBucket`), run together and cached for a few seconds
//! so that probes never load the services they check. The API server's `/readyz` and each
//! worker process's operations listener answer from a [`Readiness`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nlds_core::api::Readiness as Report;
use tokio::sync::Mutex;

use crate::Bus;

/// How long a check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a report is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(3);

/// One named check: `Ok` when the dependency answers, else why not.
pub type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The checks of one process, with their last report.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(String, Check)>,
    last: Arc<Mutex<Option<(Instant, Report)>>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the check `name` (`bus`, `database`, `object_store`).
    pub fn with<F, Fut>(mut self, name: &str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name.to_owned(), Arc::new(move || Box::pin(check()))));
        self
    }

    /// Adds the check of the bus (`bus`).
    pub fn with_bus(self, bus: Arc<dyn Bus>) -> Self {
        self.with("bus", move || {
            let bus = bus.clone();
            async move { bus.ready().await.map_err(|e| e.to_string()) }
        })
    }

    /// The report: every check `ok` or why not, `ready` when all are ok. Reused for
    /// [`CACHE_FOR`]; concurrent callers wait for one run of the checks.
    pub async fn report(&self) -> Report {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return report.clone();
        }
        let runs = self.checks.iter().map(|(name, check)| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(e)) => e,
                Err(_) => format!("no answer within {}s", CHECK_TIMEOUT.as_secs()),
            };
            (name.clone(), outcome)
        });
        let checks: BTreeMap<String, String> =
            futures::future::join_all(runs).await.into_iter().collect();
        let report = Report {
            ready: checks.values().all(|v| v == "ok"),
            checks,
        };
        *last = Some((Instant::now(), report.clone()));
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_failing_check_is_named_and_reports_are_cached() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let r = Readiness::new()
            .with("database", move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Err("connection refused".to_owned())
                    } else {
                        Ok(())
                    }
                }
            })
            .with("object_store", || async { Ok(()) });
        let first = r.report().await;
        assert!(!first.ready);
        assert_eq!(first.checks["database"], "connection refused");
        assert_eq!(first.checks["object_store"], "ok");
        // Cached: the check is not run again within CACHE_FOR.
        assert_eq!(r.report().await.checks, first.checks);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
