//! The in-process bus: the same topic routing as RabbitMQ over tokio channels. Used by the
//! embedded single-process mode and by fast tests. Nothing survives the process; the embedded
//! mode recovers interrupted transactions at start instead (see ARCHITECTURE.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nlds_core::routing::roles_for;
use nlds_core::{Envelope, Role, RoutingKey};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::runtime::{Disposition, process};
use crate::{Bus, BusError, ConsumeOptions, Handler};

struct Delivery {
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
    dead: Mutex<Vec<DeadLetter>>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// A bus with every role's queue declared (messages wait until a consumer starts).
    pub fn new() -> Self {
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
                    },
                )
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                queues,
                dead: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Messages dead-lettered so far.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.inner
            .dead
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    fn route(&self, key: &str, data: Vec<u8>, attempt: u32) -> Result<(), BusError> {
        let parsed: RoutingKey = key
            .parse()
            .map_err(|_| BusError::Unroutable(key.to_owned()))?;
        let roles = roles_for(&parsed);
        if roles.is_empty() {
            return Err(BusError::Unroutable(key.to_owned()));
        }
        for role in roles {
            let q = &self.inner.queues[&role];
            q.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            q.tx.send(Delivery {
                key: key.to_owned(),
                data: data.clone(),
                attempt,
                reply_to: None,
            })
            .map_err(|_| BusError::Unavailable("in-process bus closed".into()))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, key: RoutingKey, env: &Envelope) -> Result<(), BusError> {
        self.route(&key.to_string(), env.to_json(), 1)
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
        let data = env.to_json();
        let queue = &self.inner.queues[role];
        queue.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        queue
            .tx
            .send(Delivery {
                key: key.to_string(),
                data,
                attempt: 1,
                reply_to: Some(tx),
            })
            .map_err(|_| BusError::Unavailable("in-process bus closed".into()))?;
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
        let retry = Arc::new(options.retry);
        let queue = &self.inner.queues[&role];
        queue
            .consumers
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _running = scopeguard(|| {
            queue
                .consumers
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = rx.recv() => match d { Some(d) => d, None => break },
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (bus, bus_task) = (self.clone(), self.clone());
            let handler = handler.clone();
            let retry = retry.clone();
            tokio::spawn(async move {
                let _permit = permit;
                // The delivery leaves the backlog when it has been handled (a retry is queued
                // again, and counted again).
                let size = delivery.data.len() as u64;
                let _handled = scopeguard(move || {
                    bus.inner.queues[&role]
                        .bytes
                        .fetch_sub(size, Ordering::Relaxed);
                });
                let bus = bus_task;
                let disposition = process(
                    handler.as_ref(),
                    &delivery.key,
                    &delivery.data,
                    delivery.attempt,
                    &retry,
                )
                .await;
                match disposition {
                    Disposition::Done(outcome) => {
                        let outcome = *outcome;
                        for (key, env) in outcome.publish {
                            if let Err(e) = bus.publish(key, &env).await {
                                tracing::error!(error = %e, %key, "in-process publish failed");
                            }
                        }
                        if let (Some(reply), Some(tx)) = (outcome.reply, delivery.reply_to) {
                            let _ = tx.send(reply.to_json());
                        }
                    }
                    Disposition::Retry(delay) => {
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = bus.route(&delivery.key, delivery.data, delivery.attempt + 1);
                        });
                    }
                    Disposition::DeadLetter(publish, reason) => {
                        for (key, env) in publish {
                            let _ = bus.publish(key, &env).await;
                        }
                        if let Ok(mut dead) = bus.inner.dead.lock() {
                            dead.push(DeadLetter {
                                queue: role.queue(),
                                key: delivery.key,
                                reason,
                                data: delivery.data,
                            });
                        }
                    }
                }
            });
        }
        Ok(())
    }

    async fn ready(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// In memory, so not durable: the embedded mode marks interrupted transactions failed at start.
    async fn publish_delayed(
        &self,
        key: RoutingKey,
        env: &Envelope,
        delay: Duration,
    ) -> Result<(), BusError> {
        let parsed = key.to_string();
        if roles_for(&key).is_empty() {
            return Err(BusError::Unroutable(parsed));
        }
        let (bus, data) = (self.clone(), env.to_json());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(e) = bus.route(&parsed, data, 1) {
                tracing::warn!(error = %e, key = %parsed, "delayed publish failed");
            }
        });
        Ok(())
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

    async fn consumers(&self, role: Role) -> Result<u32, BusError> {
        Ok(self.inner.queues[&role]
            .consumers
            .load(std::sync::atomic::Ordering::SeqCst))
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
        assert!(bus.dead_letters().is_empty());
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
