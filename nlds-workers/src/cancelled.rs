//! The transactions this process heard were cancelled, so that a transfer stops moving the
//! files of one mid-batch (docs/CANCEL.md).
//!
//! The API announces a cancel on the bus (`Bus::announce` with `cancelled`, the same
//! announcements live status follows); a process with a transfer role follows them here. An
//! announcement is not stored: a process that started after it, or missed it, moves the batch
//! to its end, and the catalogue, which checks the recorded cancel before every step it does,
//! stops the batch there (removing what was uploaded). So this only saves work; what is stored
//! never depends on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nlds_bus::Bus;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a cancel is remembered: longer than any batch takes to move.
const REMEMBER: Duration = Duration::from_secs(24 * 3600);

/// The cancelled transactions heard of (see the module documentation).
#[derive(Debug, Default)]
pub struct Cancelled {
    heard: Mutex<HashMap<Uuid, Instant>>,
}

impl Cancelled {
    /// Whether `tid` was announced cancelled.
    pub fn contains(&self, tid: Uuid) -> bool {
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&tid)
    }

    /// Remembers that `tid` was cancelled (and forgets cancels older than a day).
    pub fn insert(&self, tid: Uuid) {
        let now = Instant::now();
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.retain(|_, at| now.duration_since(*at) < REMEMBER);
        heard.insert(tid, now);
    }

    /// Follows the cancels announced on `bus` until `stop` (nothing on a bus that carries no
    /// announcements).
    pub async fn follow(self: Arc<Self>, bus: Arc<dyn Bus>, stop: CancellationToken) {
        let mut changes = match bus.changes().await {
            Ok(Some(rx)) => rx,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("cannot follow cancels: {e}; transfers finish their batches");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                change = changes.recv() => match change {
                    Ok(c) if c.cancelled => self.insert(c.transaction_id),
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlds_bus::memory::MemoryBus;
    use nlds_core::change::Change;

    #[tokio::test]
    async fn follows_the_announced_cancels_only() {
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
        let heard = Arc::new(Cancelled::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(heard.clone().follow(bus.clone(), stop.clone()));
        let (changed, cancelled) = (Uuid::new_v4(), Uuid::new_v4());
        // The follower subscribes when it starts: announce until it has heard.
        let start = Instant::now();
        while !heard.contains(cancelled) {
            assert!(start.elapsed() < Duration::from_secs(10), "never heard");
            bus.announce(Change::of(changed)).await.unwrap();
            bus.announce(Change::cancelled(cancelled)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!heard.contains(changed), "a change is no cancel");
        stop.cancel();
        task.await.unwrap();
    }
}
