//! Live status: what `GET /api/v2/transactions/{id}/events` streams.
//!
//! The monitor announces every transaction whose status it changed ([`nlds_bus::Bus::announce`]).
//! This process follows each transaction somebody watches through it once, however many clients
//! watch it: one *follower* per transaction reads its status (`monitor.stat`, with the rights of
//! the client that started watching it) when a change is announced, at most once per
//! [`COALESCE`] for a burst of changes, and hands it to every watcher. So 200 clients watching
//! one transaction cost the monitor one read per change, not 200, and nobody polls the database
//! per client. A follower also reads again without an announcement, soon after it starts and
//! then every `[server] events_refresh_secs` (for changes announced while the broker was away),
//! and stops once the transaction is final or nobody watches it any more.
//!
//! Each event's id is the time of the status's last update in microseconds ([`version`]); a
//! client that reconnects with `Last-Event-ID` gets the current status only if it is newer than
//! what it saw.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::Event;
use futures::Stream;
use nlds_core::message::StatusFilter;
use nlds_core::{AccessRole, api::TransactionStatus};
use tokio::sync::{Notify, broadcast, watch};
use uuid::Uuid;

use crate::error::Result;
use crate::routes::stat_rpc;
use crate::state::AppState;

/// How long a follower waits after an announced change before it reads the status, so that a
/// burst of changes (the updates of a batch's steps) costs one read.
pub const COALESCE: Duration = Duration::from_millis(20);

/// Who reads a followed transaction's status: the client that started watching it.
#[derive(Debug, Clone)]
pub struct Reader {
    pub user: String,
    pub group: String,
    pub role: AccessRole,
}

impl Reader {
    /// The caller, acting in `group` with their role there.
    pub fn of(caller: &crate::extract::Caller, group: &str) -> Self {
        Self {
            user: caller.0.user.clone(),
            group: group.to_owned(),
            role: caller.0.role_in(group),
        }
    }
}

/// The transactions this process follows (see the module documentation). One per server
/// process, in [`AppState`].
#[derive(Default)]
pub struct Live {
    followed: Mutex<HashMap<Uuid, Arc<Followed>>>,
    /// Whether this process listens to the bus's changes yet (from the first watcher on).
    listening: AtomicBool,
}

struct Followed {
    status: watch::Sender<Arc<TransactionStatus>>,
    changed: Notify,
}

/// Whether a transaction in `status` moves no more (what `nlds wait` waits for).
pub fn settled(status: &TransactionStatus) -> bool {
    status.state.is_final() || status.state.is_failed()
}

/// The event id of `status`: the time of its last update, in microseconds since 1970.
pub fn version(status: &TransactionStatus) -> i64 {
    status.updated.timestamp_micros()
}

/// One transaction's status as `who` may see it; `None` if it is not visible to them.
pub async fn fetch(s: &AppState, who: &Reader, tid: Uuid) -> Result<Option<TransactionStatus>> {
    let filter = StatusFilter {
        transaction_id: Some(tid),
        limit: 1,
        descending: true,
        ..Default::default()
    };
    Ok(stat_rpc(s, &who.user, &who.group, who.role, filter)
        .await?
        .transactions
        .into_iter()
        .next())
}

impl Live {
    /// The status of `initial`'s transaction from `initial` on, as it changes; follows it if
    /// nobody in this process does yet. `initial` was read with `who`'s rights.
    pub fn watch(
        self: &Arc<Self>,
        s: &AppState,
        who: Reader,
        initial: TransactionStatus,
    ) -> watch::Receiver<Arc<TransactionStatus>> {
        self.listen(s);
        let tid = initial.transaction_id;
        let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = followed.get(&tid) {
            return f.status.subscribe();
        }
        let (status, rx) = watch::channel(Arc::new(initial));
        let f = Arc::new(Followed {
            status,
            changed: Notify::new(),
        });
        followed.insert(tid, f.clone());
        tokio::spawn(self.clone().follow(s.clone(), who, tid, f));
        rx
    }

    /// How many transactions this process follows now.
    pub fn followed(&self) -> usize {
        self.followed.lock().map_or(0, |m| m.len())
    }

    fn listen(self: &Arc<Self>, s: &AppState) {
        if self.listening.swap(true, Ordering::SeqCst) {
            return;
        }
        let (live, bus) = (self.clone(), s.bus.clone());
        tokio::spawn(async move {
            let mut changes = loop {
                match bus.changes().await {
                    Ok(Some(rx)) => break rx,
                    Ok(None) => {
                        tracing::warn!(
                            "live status: this bus announces no changes; followed transactions \
                             are read every events_refresh_secs only"
                        );
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "live status: cannot receive changes yet; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            loop {
                match changes.recv().await {
                    Ok(c) => live.changed(Some(c.transaction_id)),
                    // Fell behind: any followed transaction may have changed.
                    Err(broadcast::error::RecvError::Lagged(_)) => live.changed(None),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Wakes the follower of `tid` (of every followed transaction with `None`).
    fn changed(&self, tid: Option<Uuid>) {
        let followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        match tid {
            Some(tid) => {
                if let Some(f) = followed.get(&tid) {
                    f.changed.notify_one();
                }
            }
            None => followed.values().for_each(|f| f.changed.notify_one()),
        }
    }

    /// Reads `tid`'s status whenever it changed, until it is final or nobody watches it.
    async fn follow(self: Arc<Self>, s: AppState, who: Reader, tid: Uuid, f: Arc<Followed>) {
        let refresh = Duration::from_secs(s.cfg.events_refresh_secs.max(1));
        // The first reads come soon, then ever less often up to `refresh`: a change stored
        // between the watcher's first read and this follower's registration (or before this
        // process's subscription to the changes was in place) is seen within moments.
        let mut next_look = Duration::from_millis(250).min(refresh);
        loop {
            if settled(&f.status.borrow()) || f.status.is_closed() {
                // Leave only if nobody subscribed meanwhile (`watch` subscribes under the lock).
                let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
                if settled(&f.status.borrow()) || f.status.receiver_count() == 0 {
                    followed.remove(&tid);
                    return;
                }
            }
            tokio::select! {
                _ = f.changed.notified() => tokio::time::sleep(COALESCE).await,
                _ = tokio::time::sleep(next_look) => next_look = (next_look * 2).min(refresh),
                _ = f.status.closed() => continue,
            }
            match fetch(&s, &who, tid).await {
                Ok(Some(status)) => {
                    f.status.send_if_modified(|current| {
                        let newer =
                            version(&status) > version(current) || status.state != current.state;
                        if newer {
                            *current = Arc::new(status);
                        }
                        newer
                    });
                }
                Ok(None) => {
                    // Gone (deleted with its holding): the watchers' streams end.
                    tracing::debug!(%tid, "live status: a followed transaction is no longer visible");
                    self.followed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&tid);
                    return;
                }
                Err(e) => {
                    tracing::debug!(%tid, error = %e.0.message, "live status: cannot read a followed transaction; trying again");
                }
            }
        }
    }
}

/// The events of one watcher: the status whenever it changed (event `status`, its [`version`]
/// as id, the status as JSON data), skipping what a reconnecting client saw (`last_seen`), and
/// the end of the stream after the final state.
pub fn events(
    rx: watch::Receiver<Arc<TransactionStatus>>,
    last_seen: Option<i64>,
) -> impl Stream<Item = std::result::Result<Event, Infallible>> {
    futures::stream::unfold(
        (rx, last_seen, false),
        |(mut rx, mut last, done)| async move {
            if done {
                return None;
            }
            loop {
                let status = rx.borrow_and_update().clone();
                let id = version(&status);
                let end = settled(&status);
                if last.is_none_or(|l| id > l) {
                    let event = Event::default()
                        .event("status")
                        .id(id.to_string())
                        .json_data(&*status)
                        .unwrap_or_else(|_| Event::default().comment("unencodable status"));
                    last = Some(id);
                    return Some((Ok(event), (rx, last, end)));
                }
                if end || rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    )
}
