//! Notices: messages a process publishes on the side, best effort, without making anyone wait:
//! the warning and error records its tracing layer collects (`log.<level>`, for the logger) and
//! the warnings the runtime attaches to a transaction while a step is being retried
//! (`monitor-put.start` with [`nlds_core::Payload::Warning`]).
//!
//! Whoever notices something calls [`send`], which only puts the message into a bounded queue
//! (never blocks, never awaits): when the queue is full, or no publisher is installed, the
//! message is dropped and counted ([`dropped`]). One [`Publisher`] per process, installed by the
//! binary once its bus is connected ([`install`]), takes them from the queue and publishes them
//! on that bus. The publisher runs inside the [`SPAN`] span: events logged while it publishes
//! (the broker being down, say) are never turned into notices again, so a failing publication
//! cannot feed itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nlds_core::{Envelope, RoutingKey};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Bus;

/// The name of the span the publisher runs in (the tracing layer skips events inside it).
pub const SPAN: &str = "nlds_notices";

/// How many notices wait at most before new ones are dropped.
pub const CAPACITY: usize = 4096;

type Notice = (RoutingKey, Envelope);

static QUEUE: Mutex<Option<mpsc::Sender<Notice>>> = Mutex::new(None);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

/// Queues a notice for publication; never blocks. Dropped (and counted) when the queue is full or
/// no publisher is installed.
pub fn send(key: RoutingKey, env: Envelope) {
    let queued = match QUEUE.lock() {
        Ok(q) => q.as_ref().is_some_and(|tx| tx.try_send((key, env)).is_ok()),
        Err(_) => false,
    };
    if !queued {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Notices dropped in this process: the queue was full or no publisher was installed.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Notices the bus refused to take (the broker was down): lost, not retried.
pub fn failed() -> u64 {
    FAILED.load(Ordering::Relaxed)
}

/// The publisher of this process's notices (see the module documentation).
pub struct Publisher {
    rx: mpsc::Receiver<Notice>,
    bus: Arc<dyn Bus>,
    /// Lost notices (dropped and failed) already reported.
    reported: u64,
}

/// Installs the queue of this process's notices (replacing any earlier one, whose publisher then
/// ends) and returns its publisher: run it with [`Publisher::run`].
pub fn install(bus: Arc<dyn Bus>) -> Publisher {
    Publisher {
        rx: queue(),
        bus,
        reported: 0,
    }
}

/// Installs the queue of this process's notices (as [`install`]) and returns its receiving end,
/// for a caller that takes the notices itself (tests).
pub fn queue() -> mpsc::Receiver<(RoutingKey, Envelope)> {
    let (tx, rx) = mpsc::channel(CAPACITY);
    if let Ok(mut q) = QUEUE.lock() {
        *q = Some(tx);
    }
    rx
}

impl Publisher {
    /// Publishes notices until `stop` is cancelled (then what is already queued, briefly).
    pub async fn run(mut self, stop: CancellationToken) {
        let span = tracing::info_span!(SPAN);
        async move {
            loop {
                let next = tokio::select! {
                    n = self.rx.recv() => n,
                    _ = stop.cancelled() => break,
                };
                let Some((key, env)) = next else { return };
                self.publish(key, env).await;
            }
            // Shutting down: what was noticed last is often why.
            let drain = async {
                while let Ok((key, env)) = self.rx.try_recv() {
                    self.publish(key, env).await;
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
            let lost = dropped() + failed();
            if lost > self.reported {
                // On standard error only: the bus is going away.
                tracing::warn!(
                    lost = lost - self.reported,
                    "warning or error records of this process were lost and never reported to \
                     the logger: the bus was unreachable or the notice queue full"
                );
            }
        }
        .instrument(span)
        .await
    }

    async fn publish(&mut self, key: RoutingKey, env: Envelope) {
        match self.bus.publish(key, &env).await {
            Ok(()) => self.report_losses(),
            Err(e) => {
                FAILED.fetch_add(1, Ordering::Relaxed);
                // Debug only, and inside SPAN: never a notice itself.
                tracing::debug!(%key, error = %e, "notice not published");
            }
        }
    }

    /// Once the bus takes notices again: says how many were lost since the last report, as a
    /// warning of its own. It is logged outside [`SPAN`] (from a task of its own), so it becomes
    /// a notice too, and the logger's records (`nlds admin logs`) show where they have a gap.
    fn report_losses(&mut self) {
        let (dropped, failed) = (dropped(), failed());
        let lost = dropped + failed;
        if lost <= self.reported {
            return;
        }
        let since = lost - self.reported;
        self.reported = lost;
        tokio::spawn(async move {
            tracing::warn!(
                lost = since,
                dropped,
                failed,
                "{since} warning or error record(s) of this process were lost: the bus was \
                 unreachable or the notice queue full (totals since the process started: \
                 {dropped} dropped, {failed} refused by the bus); its standard error has them"
            );
        });
    }
}
