//! How a consumer stops (both buses): it stops taking deliveries, lets those in hand finish
//! within a grace ([`crate::ConsumeOptions::grace`]), abandons the rest ([`drain`]), and waits
//! for the clean-up their handlers left running ([`spawn_cleanup`]).
//!
//! A handler's drop guard (aborting a multipart upload, say) cannot await, so it spawns its
//! clean-up with [`spawn_cleanup`]; a stopping consumer waits for those tasks
//! ([`cleanups_settled`]) before the process exits, so a handler abandoned at shutdown leaves
//! nothing behind.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use nlds_core::Role;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ConsumeOptions;

static CLEANUPS: LazyLock<TaskTracker> = LazyLock::new(TaskTracker::new);

/// Runs `task` on the current runtime, counted until it ends; without a runtime (a guard dropped
/// outside one) it is not run, and the role's start-up sweep (`nlds_workers::debris`) is left to
/// remove what it would have.
pub fn spawn_cleanup<F>(task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        CLEANUPS.spawn_on(task, &rt);
    }
}

/// How many clean-up tasks run now.
pub fn cleanups_running() -> usize {
    CLEANUPS.len()
}

/// Waits until no clean-up task runs, at most `limit`; returns whether none does.
pub async fn cleanups_settled(limit: Duration) -> bool {
    let start = Instant::now();
    while !CLEANUPS.is_empty() {
        if start.elapsed() >= limit {
            tracing::warn!(
                running = CLEANUPS.len(),
                "clean-up tasks still running at shutdown (the next start's sweep removes what they leave)"
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// A stopping consumer's last steps: waits for the deliveries in hand (all of `slots`' permits
/// back) for at most `options.grace`, then abandons the rest and waits, at most
/// [`crate::ABANDON_LIMIT`], for them to be returned and for their clean-up.
pub(crate) async fn drain(
    role: Role,
    slots: &Semaphore,
    options: &ConsumeOptions,
    abandon: &CancellationToken,
) {
    let all = u32::from(options.prefetch.max(1));
    let in_hand = all as usize - slots.available_permits();
    if in_hand > 0 {
        tracing::info!(%role, in_hand, grace = ?options.grace, "stopping: letting the deliveries in hand finish");
    }
    if tokio::time::timeout(options.grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            %role,
            abandoned = all as usize - slots.available_permits(),
            "stopping: deliveries still in hand after the grace are abandoned and returned to the queue"
        );
        abandon.cancel();
        let _ = tokio::time::timeout(crate::ABANDON_LIMIT, slots.acquire_many(all)).await;
    }
    cleanups_settled(crate::ABANDON_LIMIT).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settled_waits_for_the_clean_up_spawned_before() {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        spawn_cleanup(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        assert!(cleanups_settled(Duration::from_secs(30)).await);
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
