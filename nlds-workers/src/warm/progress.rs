//! The bytes a transfer role moved of a batch while it is still uploading or restoring it,
//! reported to the monitor (`monitor-put.progress`, docs/LIVE.md) so that a transaction's
//! status moves before the batch completes.
//!
//! The transfer adds to a [`Moving`] counter as bytes move (a part or a small file stored, a
//! chunk downloaded); a task of the batch reports the total at most every [`REPORT_EVERY`], and
//! only when it grew: a batch done sooner reports nothing (its completion says it all). Reports
//! are notices ([`nlds_bus::notices::send`]): queued without waiting, dropped when the queue is
//! full, never retried, so a report lost or late costs nothing but a less lively bar.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nlds_core::{Action, Envelope, Payload, RoutingKey, Worker};
use tokio::task::JoinHandle;

/// How often a batch's progress is reported at most (and when first: a batch done sooner
/// reports nothing).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The key of progress reports.
pub const PROGRESS: RoutingKey = RoutingKey::new(Worker::MonitorPut, Action::Progress);

/// The bytes moved of one batch so far, and the task that reports them; cheap to clone (the
/// clones share both). The reporting stops when the last clone is dropped.
#[derive(Clone)]
pub struct Moving {
    bytes: Arc<AtomicU64>,
    _reporter: Option<Arc<Reporter>>,
}

struct Reporter(JoinHandle<()>);

impl Drop for Reporter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Moving {
    /// Starts counting the batch `env` (and reporting it every [`REPORT_EVERY`]).
    pub fn start(env: &Envelope) -> Self {
        Self::reporting(env, REPORT_EVERY, nlds_bus::notices::send)
    }

    /// Counts the batch `env`, handing each report to `send` every `every`.
    pub fn reporting(
        env: &Envelope,
        every: Duration,
        send: impl Fn(RoutingKey, Envelope) + Send + 'static,
    ) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        // The batch's identity only (what the monitor needs), not its list of files.
        let mut report = Envelope::new(
            env.transaction_id,
            env.user.clone(),
            env.group.clone(),
            env.action,
            env.job_label.clone(),
            Payload::Progress { bytes: 0 },
        );
        report.sub_id = env.sub_id;
        let counted = bytes.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut sent = 0;
            loop {
                tick.tick().await;
                let now = counted.load(Ordering::Relaxed);
                if now > sent {
                    sent = now;
                    send(
                        PROGRESS,
                        Envelope {
                            payload: Payload::Progress { bytes: now },
                            ..report.clone()
                        },
                    );
                }
            }
        });
        Self {
            bytes,
            _reporter: Some(Arc::new(Reporter(task))),
        }
    }

    /// Counts, reporting nothing (a batch nobody watches, tests).
    pub fn quiet() -> Self {
        Self {
            bytes: Arc::default(),
            _reporter: None,
        }
    }

    /// `n` more bytes moved.
    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// The bytes moved so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlds_core::api::ApiAction;
    use tokio::sync::mpsc;

    fn env() -> Envelope {
        let mut e = Envelope::new(
            uuid::Uuid::new_v4(),
            "alice",
            "climate",
            ApiAction::Put,
            "j",
            Payload::Cancel,
        );
        e.sub_id = uuid::Uuid::new_v4();
        e
    }

    /// The next report, waiting at most 10 s (`None`: the reporter stopped).
    async fn next(rx: &mut mpsc::UnboundedReceiver<(RoutingKey, Envelope)>) -> Option<Envelope> {
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("a report, or the reporter's end, within 10 s")
            .map(|(key, env)| {
                assert_eq!(key.to_string(), "nlds-api.monitor-put.progress");
                env
            })
    }

    /// Nothing is reported before the first period: a batch done sooner says nothing.
    #[tokio::test]
    async fn a_batch_done_within_the_first_period_reports_nothing() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let moving = Moving::reporting(&env(), Duration::from_secs(3600), move |k, e| {
            let _ = tx.send((k, e));
        });
        moving.add(10);
        tokio::task::yield_now().await;
        drop(moving);
        assert!(next(&mut rx).await.is_none(), "no report");
    }

    /// Reports carry the batch's identity (not its files) and its total so far, only when it
    /// grew, and stop with the batch.
    #[tokio::test]
    async fn reports_carry_the_growing_total_and_stop_with_the_batch() {
        let env = env();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let moving = Moving::reporting(&env, Duration::from_millis(10), move |k, e| {
            let _ = tx.send((k, e));
        });
        moving.add(10);
        let report = next(&mut rx).await.expect("a report");
        assert_eq!(
            (report.transaction_id, report.sub_id, report.user.as_str()),
            (env.transaction_id, env.sub_id, "alice")
        );
        assert_eq!(report.payload, Payload::Progress { bytes: 10 });
        // The same total is not reported again: the next report is the grown one.
        moving.clone().add(5);
        let report = next(&mut rx).await.expect("a report");
        assert_eq!(report.payload, Payload::Progress { bytes: 15 });
        assert_eq!(moving.bytes(), 15);
        moving.add(1);
        drop(moving);
        while let Some(late) = next(&mut rx).await {
            assert_eq!(late.payload, Payload::Progress { bytes: 16 });
        }
    }
}
