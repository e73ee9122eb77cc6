//! The in-process bus: the same topic routing as RabbitMQ over tokio channels, for the embedded
//! single-process mode and fast tests.
//!
//! [`MemoryBus::new`] keeps its queues in memory only (tests). [`MemoryBus::durable`] (the
//! embedded mode) also keeps every message in the process's SQLite database (`bus_message`, see
//! `store.rs`) until its delivery is acknowledged: a publish is stored before it returns, an
//! acknowledgement and the messages its handler published are one database transaction, and
//! retries (with their delay) and dead letters are stored too, so a process killed at any point
//! redelivers, when it starts again, every message it had not finished (at least once: handlers
//! are idempotent). RPC requests and replies are never stored: the caller waiting for the reply
//! is gone with the process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use nlds_core::heartbeat::Heartbeat;
use nlds_core::routing::roles_for;
use nlds_core::{Change, Envelope, Role, RoutingKey};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::runtime::{Disposition, process};
use crate::store::{NewRow, Settle, Store};
use crate::{Bus, BusError, ConsumeOptions, Handler};

/// How long a delivery whose settlement could not be stored waits before it is handled again.
const STORE_RETRY: Duration = Duration::from_secs(5);

struct Delivery {
    /// Its row in the store (`None`: not stored, an RPC request or a bus without a store).
    id: Option<i64>,
    key: String,
    data: Vec<u8>,
    attempt: u32,
    reply_to: Option<oneshot::Sender<Vec<u8>>>,
}

struct Queue {
    tx: mpsc::UnboundedSender<Delivery>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Delivery>>>,
    /// Consumers running now (0 or 1: an in-process queue has one consumer).
    consumers: std::sync::atomic::AtomicU32,
    /// Bytes of the messages queued or being handled ([`Bus::backlog_bytes`]).
    bytes: AtomicU64,
    /// Messages queued or being handled ([`Bus::queue_depth`]).
    messages: AtomicU64,
}

/// A message that was dead-lettered, kept for inspection.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub queue: String,
    pub key: String,
    pub reason: String,
    pub data: Vec<u8>,
}

/// The in-process bus. Cheap to clone.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

struct Inner {
    queues: HashMap<Role, Queue>,
    /// Dead letters of a bus without a store.
    dead: Mutex<Vec<DeadLetter>>,
    store: Option<Store>,
    /// Announced changes, for this process's watchers ([`Bus::changes`]).
    changes: broadcast::Sender<Change>,
    /// Heartbeats, for this process's status page ([`Bus::heartbeats`]).
    heartbeats: broadcast::Sender<Heartbeat>,
}

/// A message to publish: its key, body, transaction and the queues it goes to.
struct Outgoing {
    key: String,
    data: Vec<u8>,
    transaction: uuid::Uuid,
    roles: Vec<Role>,
}

impl Outgoing {
    fn new(key: RoutingKey, env: &Envelope) -> Result<Self, BusError> {
        let roles = roles_for(&key);
        if roles.is_empty() {
            return Err(BusError::Unroutable(key.to_string()));
        }
        Ok(Self {
            key: key.to_string(),
            data: env.to_json(),
            transaction: env.transaction_id,
            roles,
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("the in-process bus cannot store its queue: {e}"))
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// A bus with every role's queue declared (messages wait until a consumer starts), in
    /// memory only: nothing survives the process.
    pub fn new() -> Self {
        Self::with_store(None)
    }

    /// A bus whose queues are kept in `db` (SQLite, migrated; the process's one connection), with
    /// every message a previous run left unacknowledged queued again (a delayed one at its
    /// time), in the order it was published.
    pub async fn durable(db: sea_orm::DatabaseConnection) -> Result<Self, BusError> {
        let store = Store::new(db).map_err(BusError::Unavailable)?;
        let pending = store.pending().await.map_err(unavailable)?;
        let bus = Self::with_store(Some(store));
        let (now, count) = (now_ms(), pending.len());
        for p in pending {
            let Some(&role) = Role::ALL.iter().find(|r| r.queue() == p.queue) else {
                tracing::error!(queue = %p.queue, id = p.id, "stored message for an unknown queue left in place");
                continue;
            };
            let delivery = Delivery {
                id: Some(p.id),
                key: p.key,
                data: p.body,
                attempt: p.attempt,
                reply_to: None,
            };
            let wait = Duration::from_millis(p.not_before.saturating_sub(now).max(0) as u64);
            bus.enqueue_after(role, delivery, wait);
        }
        if count > 0 {
            tracing::info!(
                messages = count,
                "in-process bus: redelivering the messages the last run left unfinished"
            );
        }
        Ok(bus)
    }

    fn with_store(store: Option<Store>) -> Self {
        let queues = Role::ALL
            .iter()
            .map(|&r| {
                let (tx, rx) = mpsc::unbounded_channel();
                (
                    r,
                    Queue {
                        tx,
                        rx: Mutex::new(Some(rx)),
                        consumers: std::sync::atomic::AtomicU32::new(0),
                        bytes: AtomicU64::new(0),
                        messages: AtomicU64::new(0),
                    },
                )
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                queues,
                dead: Mutex::new(Vec::new()),
                store,
                changes: broadcast::channel(crate::CHANGES_CAPACITY).0,
                heartbeats: broadcast::channel(crate::CHANGES_CAPACITY).0,
            }),
        }
    }

    /// Messages dead-lettered so far (with a store: by every run, as stored).
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BusError> {
        match &self.inner.store {
            Some(store) => store.dead_letters().await.map_err(unavailable),
            None => Ok(self
                .inner
                .dead
                .lock()
                .map(|d| d.clone())
                .unwrap_or_default()),
        }
    }

    /// Queues `delivery` for `role` now.
    fn enqueue(&self, role: Role, delivery: Delivery) -> Result<(), BusError> {
        let q = &self.inner.queues[&role];
        q.bytes
            .fetch_add(delivery.data.len() as u64, Ordering::Relaxed);
        q.messages.fetch_add(1, Ordering::Relaxed);
        q.tx.send(delivery)
            .map_err(|_| BusError::Unavailable("in-process bus closed".into()))
    }

    /// Queues `delivery` for `role` after `wait`.
    fn enqueue_after(&self, role: Role, delivery: Delivery, wait: Duration) {
        if wait.is_zero() {
            let _ = self.enqueue(role, delivery);
            return;
        }
        let bus = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = bus.enqueue(role, delivery);
        });
    }

    /// Stores `out` (if the bus has a store) and settles the delivery being handled in one
    /// database transaction, then queues `out`, after `delay` if given.
    async fn send(
        &self,
        out: Vec<Outgoing>,
        settle: Settle,
        delay: Option<Duration>,
    ) -> Result<(), BusError> {
        let not_before = delay.map_or(0, |d| now_ms().saturating_add(d.as_millis() as i64));
        let ids: Vec<Option<i64>> = match &self.inner.store {
            Some(store) => {
                let rows: Vec<NewRow<'_>> = out
                    .iter()
                    .flat_map(|o| {
                        o.roles.iter().map(move |r| NewRow {
                            queue: r.queue(),
                            key: &o.key,
                            body: &o.data,
                            not_before,
                            transaction: Some(o.transaction),
                        })
                    })
                    .collect();
                if rows.is_empty() && matches!(settle, Settle::Nothing) {
                    return Ok(());
                }
                store
                    .write(&rows, &settle)
                    .await
                    .map_err(unavailable)?
                    .into_iter()
                    .map(Some)
                    .collect()
            }
            None => Vec::new(),
        };
        let mut ids = ids.into_iter();
        for o in out {
            for role in o.roles {
                let delivery = Delivery {
                    id: ids.next().flatten(),
                    key: o.key.clone(),
                    data: o.data.clone(),
                    attempt: 1,
                    reply_to: None,
                };
                self.enqueue_after(role, delivery, delay.unwrap_or_default());
            }
        }
        Ok(())
    }

    /// The messages a handler published, without those no queue is bound to (logged).
    fn outgoing(publish: Vec<(RoutingKey, Envelope)>) -> Vec<Outgoing> {
        publish
            .into_iter()
            .filter_map(|(key, env)| match Outgoing::new(key, &env) {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::error!(error = %e, %key, "in-process publish failed");
                    None
                }
            })
            .collect()
    }

    /// Settles a handled delivery of `role`'s queue as `disposition` says.
    async fn settle(&self, role: Role, delivery: Delivery, disposition: Disposition) {
        match disposition {
            Disposition::Done(outcome) => {
                let outcome = *outcome;
                let out = Self::outgoing(outcome.publish);
                let settle = delivery.id.map_or(Settle::Nothing, Settle::Ack);
                if let Err(e) = self.send(out, settle, None).await {
                    self.handle_again(role, delivery, &e);
                    return;
                }
                if let (Some(reply), Some(tx)) = (outcome.reply, delivery.reply_to) {
                    let _ = tx.send(reply.to_json());
                }
            }
            Disposition::Retry(delay) => {
                let attempt = delivery.attempt + 1;
                if let (Some(store), Some(id)) = (&self.inner.store, delivery.id) {
                    let at = now_ms().saturating_add(delay.as_millis() as i64);
                    if let Err(e) = store.retry(id, attempt, at).await {
                        // Still stored: at worst a restart retries it sooner, as attempt - 1.
                        tracing::warn!(error = %e, key = %delivery.key, "cannot store a retry");
                    }
                }
                let delivery = Delivery {
                    attempt,
                    ..delivery
                };
                self.enqueue_after(role, delivery, delay);
            }
            Disposition::DeadLetter(publish, reason) => {
                let out = Self::outgoing(publish);
                let settle = match delivery.id {
                    Some(id) => Settle::Dead(id, reason.clone()),
                    None => Settle::Nothing,
                };
                if let Err(e) = self.send(out, settle, None).await {
                    self.handle_again(role, delivery, &e);
                    return;
                }
                if self.inner.store.is_none()
                    && let Ok(mut dead) = self.inner.dead.lock()
                {
                    dead.push(DeadLetter {
                        queue: role.queue(),
                        key: delivery.key,
                        reason,
                        data: delivery.data,
                    });
                }
            }
        }
    }

    /// A delivery whose settlement could not be stored is still stored as it was: it is handled
    /// again (an RPC request is answered by its caller's timeout).
    fn handle_again(&self, role: Role, delivery: Delivery, e: &BusError) {
        tracing::error!(error = %e, key = %delivery.key, retry_in = ?STORE_RETRY,
            "cannot store what a delivery's handler published; it is handled again");
        if delivery.id.is_some() {
            self.enqueue_after(role, delivery, STORE_RETRY);
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, key: RoutingKey, env: &Envelope) -> Result<(), BusError> {
        self.send(vec![Outgoing::new(key, env)?], Settle::Nothing, None)
            .await
    }

    async fn rpc(
        &self,
        key: RoutingKey,
        env: &Envelope,
        timeout: Duration,
    ) -> Result<Envelope, BusError> {
        let roles = roles_for(&key);
        let [role] = roles.as_slice() else {
            return Err(BusError::Unroutable(key.to_string()));
        };
        let (tx, rx) = oneshot::channel();
        // Never stored: the caller waiting for the reply does not survive the process either.
        self.enqueue(
            *role,
            Delivery {
                id: None,
                key: key.to_string(),
                data: env.to_json(),
                attempt: 1,
                reply_to: Some(tx),
            },
        )?;
        let data = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| BusError::Timeout(key.to_string(), timeout))?
            .map_err(|_| BusError::Unavailable(format!("{role} dropped the request")))?;
        serde_json::from_slice(&data).map_err(|e| BusError::Decode(e.to_string()))
    }

    async fn consume(
        &self,
        role: Role,
        handler: Arc<dyn Handler>,
        options: ConsumeOptions,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let mut rx = self.inner.queues[&role]
            .rx
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .ok_or_else(|| BusError::Unavailable(format!("{role} is already consumed")))?;
        let slots = Arc::new(Semaphore::new(options.prefetch.max(1) as usize));
        let retry = Arc::new(options.retry.clone());
        let queue = &self.inner.queues[&role];
        queue
            .consumers
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _running = scopeguard(|| {
            queue
                .consumers
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
        // Cancelled when the grace after `shutdown` ran out: the deliveries still in hand are
        // abandoned; a stored one stays stored (unacknowledged), so it is delivered again when
        // the process starts again, and an RPC's caller hears that its request was dropped.
        let abandon = CancellationToken::new();
        loop {
            // A slot first, then a delivery: a stopping consumer never holds one it cannot take.
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p,
                _ = shutdown.cancelled() => break,
            };
            let Ok(permit) = permit else {
                break;
            };
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = rx.recv() => match d { Some(d) => d, None => break },
            };
            let bus = self.clone();
            let handler = handler.clone();
            let retry = retry.clone();
            let abandon = abandon.clone();
            tokio::spawn(async move {
                let _permit = permit;
                // The delivery leaves the backlog when it has been handled (a retry is queued
                // again, and counted again).
                let size = delivery.data.len() as u64;
                let counted = bus.clone();
                let _handled = scopeguard(move || {
                    let q = &counted.inner.queues[&role];
                    q.bytes.fetch_sub(size, Ordering::Relaxed);
                    q.messages.fetch_sub(1, Ordering::Relaxed);
                });
                // What queues a stored delivery again if it is abandoned: it is still stored
                // (unacknowledged), and a consumer of this process (this one started again
                // after a drain) takes it; at process exit the next start does.
                let again = delivery.id.map(|id| Delivery {
                    id: Some(id),
                    key: delivery.key.clone(),
                    data: delivery.data.clone(),
                    attempt: delivery.attempt,
                    reply_to: None,
                });
                let handled = async {
                    let disposition = process(
                        handler.as_ref(),
                        role,
                        &delivery.key,
                        &delivery.data,
                        delivery.attempt,
                        &retry,
                    )
                    .await;
                    bus.settle(role, delivery, disposition).await;
                };
                tokio::select! {
                    biased;
                    () = handled => {}
                    _ = abandon.cancelled() => {
                        if let Some(again) = again {
                            let _ = bus.enqueue(role, again);
                        }
                    }
                }
            });
        }
        crate::shutdown::drain(role, &slots, &options, &abandon).await;
        // The queue can be consumed again (a drained role resumed).
        if let Ok(mut slot) = self.inner.queues[&role].rx.lock() {
            *slot = Some(rx);
        }
        Ok(())
    }

    async fn ready(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// With a store, the message is stored (with its time) before this returns.
    async fn publish_delayed(
        &self,
        key: RoutingKey,
        env: &Envelope,
        delay: Duration,
    ) -> Result<(), BusError> {
        self.send(vec![Outgoing::new(key, env)?], Settle::Nothing, Some(delay))
            .await
    }

    /// The bytes of the messages queued for (or being handled by) the consumers running in this
    /// process, but `except`'s; queues nobody consumes are not counted (nothing here drains
    /// them, so nothing should wait for them).
    fn backlog_bytes(&self, except: Option<Role>) -> Option<u64> {
        Some(
            self.inner
                .queues
                .iter()
                .filter(|(r, q)| Some(**r) != except && q.consumers.load(Ordering::SeqCst) > 0)
                .map(|(_, q)| q.bytes.load(Ordering::Relaxed))
                .sum(),
        )
    }

    async fn announce(&self, change: Change) -> Result<(), BusError> {
        // No receiver is no error: nobody watches.
        let _ = self.inner.changes.send(change);
        Ok(())
    }

    async fn changes(&self) -> Result<Option<broadcast::Receiver<Change>>, BusError> {
        Ok(Some(self.inner.changes.subscribe()))
    }

    async fn beat(&self, heartbeat: &Heartbeat) -> Result<(), BusError> {
        let _ = self.inner.heartbeats.send(heartbeat.clone());
        Ok(())
    }

    async fn heartbeats(&self) -> Result<Option<broadcast::Receiver<Heartbeat>>, BusError> {
        Ok(Some(self.inner.heartbeats.subscribe()))
    }

    async fn consumers(&self, role: Role) -> Result<u32, BusError> {
        Ok(self.inner.queues[&role]
            .consumers
            .load(std::sync::atomic::Ordering::SeqCst))
    }

    async fn queue_depth(&self, role: Role) -> Result<Option<crate::QueueDepth>, BusError> {
        let q = &self.inner.queues[&role];
        Ok(Some(crate::QueueDepth {
            messages: q.messages.load(Ordering::Relaxed),
            consumers: q.consumers.load(Ordering::SeqCst),
            dead: None,
        }))
    }
}

/// Runs `f` when dropped (also when the consuming future is dropped mid-way).
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HandlerError, Outcome};
    use nlds_core::api::ApiAction;
    use nlds_core::error::ErrorCode;
    use nlds_core::{Action, Payload, Worker};
    use std::sync::atomic::{AtomicU32, Ordering};
    use uuid::Uuid;

    fn env() -> Envelope {
        Envelope::new(
            Uuid::new_v4(),
            "u",
            "g",
            ApiAction::Put,
            "j",
            Payload::PutRequest {
                holding_id: 1,
                paths: vec!["/a".into()],
            },
        )
    }

    /// Forwards `route.put` to `index.start`; counts `index.start` deliveries.
    struct Relay;
    #[async_trait]
    impl Handler for Relay {
        async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
            if key.worker == Worker::Route {
                return Ok(Outcome::publish(
                    RoutingKey::new(Worker::Index, Action::Start),
                    env,
                ));
            }
            Ok(Outcome::none())
        }
    }
    struct Count(Arc<AtomicU32>, u32);
    #[async_trait]
    impl Handler for Count {
        async fn handle(&self, _: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= self.1 {
                return Err(HandlerError::transient(ErrorCode::Unavailable, "later"));
            }
            Ok(Outcome::reply(env))
        }
    }

    async fn wait_for(counter: &AtomicU32, n: u32) {
        for _ in 0..200 {
            if counter.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("counter stuck at {}", counter.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn routes_by_binding_and_retries_transient_faults() {
        let bus = MemoryBus::new();
        let stop = CancellationToken::new();
        let hits = Arc::new(AtomicU32::new(0));
        let opts = ConsumeOptions {
            prefetch: 2,
            retry: crate::RetryPolicy {
                delays: vec![Duration::from_millis(5); 3],
            },
            ..Default::default()
        };
        for (role, h) in [
            (Role::Router, Arc::new(Relay) as Arc<dyn Handler>),
            (Role::Indexer, Arc::new(Count(hits.clone(), 2))),
        ] {
            let (bus, stop, opts) = (bus.clone(), stop.clone(), opts.clone());
            tokio::spawn(async move { bus.consume(role, h, opts, stop).await });
        }
        bus.publish(RoutingKey::new(Worker::Route, Action::Put), &env())
            .await
            .unwrap();
        wait_for(&hits, 3).await; // two transient failures, then success
        assert!(bus.dead_letters().await.unwrap().is_empty());
        stop.cancel();
    }

    #[tokio::test]
    async fn unroutable_keys_are_errors() {
        let bus = MemoryBus::new();
        let err = bus
            .publish(RoutingKey::new(Worker::Route, Action::Complete), &env())
            .await;
        assert!(err.is_ok(), "route.complete reaches the router");
        let err = bus
            .publish(RoutingKey::new(Worker::ArchiveGet, Action::Next), &env())
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::Unroutable(k) if k == "nlds-api.archive-get.next"));
    }

    #[tokio::test]
    async fn rpc_answers_and_times_out() {
        let bus = MemoryBus::new();
        let key = RoutingKey::new(Worker::Catalog, Action::List);
        let err = bus
            .rpc(key, &env(), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::Timeout(..)));
        let stop = CancellationToken::new();
        let hits = Arc::new(AtomicU32::new(0));
        let b = bus.clone();
        let s = stop.clone();
        tokio::spawn(async move {
            b.consume(
                Role::CatalogueRpc,
                Arc::new(Count(hits, 0)),
                ConsumeOptions::default(),
                s,
            )
            .await
        });
        let e = env();
        let reply = bus.rpc(key, &e, Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.transaction_id, e.transaction_id);
        stop.cancel();
    }
}
