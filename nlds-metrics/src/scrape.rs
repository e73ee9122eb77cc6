//! Rendering the registry for `GET /metrics`, after the refreshers of the process ran.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;

/// The `Content-Type` of the answer (the Prometheus text format, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How long a scrape waits for one refresher; one that takes longer leaves its gauges as they
/// were (a broker or database that does not answer shows in `nlds_backend_up`).
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);

type Refresh = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

static REFRESHERS: Mutex<BTreeMap<u64, Refresh>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A refresher's registration: dropping it removes the refresher (a stopped part of the
/// process, an embedded instance of a test, must not be asked again).
#[must_use = "the refresher is removed when this is dropped"]
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        REFRESHERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// Runs `refresh` before every scrape, to set gauges from figures that live elsewhere (queue
/// depths in the broker, usage in the database), until the registration is dropped.
pub fn on_scrape<F, Fut>(refresh: F) -> Registration
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let f: Refresh = Arc::new(move || Box::pin(refresh()));
    REFRESHERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, f);
    Registration(id)
}

/// Runs every refresher (at once, each at most [`REFRESH_TIMEOUT`]), then renders.
pub async fn scrape() -> String {
    let all: Vec<Refresh> = REFRESHERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .cloned()
        .collect();
    futures::future::join_all(
        all.iter()
            .map(|f| async move { tokio::time::timeout(REFRESH_TIMEOUT, f()).await }),
    )
    .await;
    render()
}

/// The registry in the Prometheus text format, as it is now.
pub fn render() -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, and every family encodes.
    if prometheus_client::encoding::prometheus_text::encode(&mut out, crate::registry::registry())
        .is_err()
    {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NAMES, metrics};

    #[tokio::test]
    async fn every_name_is_declared_and_refreshers_run_until_dropped() {
        use crate::record::{self, Operation, Tier};
        let reg = on_scrape(|| async {
            record::queue("nlds.test", 7, Some(1));
        });
        // A family shows once it has a series: one of each.
        record::delivery(
            "router",
            record::Delivery::Acked,
            Some(Duration::from_millis(3)),
        );
        record::transaction_started("put");
        record::transaction_ended("put", "COMPLETE");
        record::moved(Tier::Warm, Operation::Put, 1, 10);
        record::recall_waited(Duration::from_secs(60));
        record::policy_pass("completed");
        record::usage(
            &[("g".into(), "warm".into(), 10, 1)],
            &[("g".into(), vec![("warm", 100)])],
            5,
        );
        record::http("/x", "GET", 200, Duration::from_millis(1));
        record::readiness([("bus", true)]);
        let text = scrape().await;
        for name in NAMES {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} is not declared:\n{text}"
            );
        }
        assert!(
            text.contains("nlds_queue_messages{queue=\"nlds.test\"} 7"),
            "{text}"
        );
        // Nothing else is exported than what NAMES lists.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap_or_default();
            assert!(NAMES.contains(&name), "{name} is not in NAMES");
        }
        drop(reg);
        metrics()
            .queue_messages
            .get_or_create(&[("queue", "nlds.test".to_owned())])
            .set(0);
        let text = scrape().await;
        assert!(
            text.contains("nlds_queue_messages{queue=\"nlds.test\"} 0"),
            "a dropped refresher ran again:\n{text}"
        );
    }
}
