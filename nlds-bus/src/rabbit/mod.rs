//! The RabbitMQ bus (lapin).
//!
//! Topology, declared by code at startup (idempotent):
//!
//! * `nlds`: durable topic exchange every message is published to, `mandatory`, persistent,
//!   with publisher confirms: an unroutable message is an error, never a silent drop.
//! * `nlds.<role>`: one durable queue per role, bound by [`Role::bindings`], dead-lettering to
//!   `nlds.dlx` with routing key `nlds.<role>.dead`.
//! * `nlds.<role>.dead`: the role's dead-letter queue (poison messages, permanent failures).
//! * `nlds.retry.<ms>`: durable delay queues, one per back-off step, each fed by a fanout exchange
//!   of the same name; `x-message-ttl` expires the message back into `nlds` with its original
//!   routing key. The attempt count travels in the `x-nlds-attempt` header.
//! * `nlds.delay`: a durable queue (fed by a fanout exchange of the same name) holding delayed
//!   messages, each with its own `expiration`, dead-lettered back into `nlds` with its routing key
//!   when it expires ([`Bus::publish_delayed`]; callers use one delay per purpose, so FIFO
//!   expiry is exact).
//! * `nlds.changes`: a durable fanout exchange for transaction changes ([`changes`]), each
//!   watching process reading them from an exclusive queue of its own.
//! * RPC uses direct reply-to (`amq.rabbitmq.reply-to`) with a caller-side timeout; the request
//!   carries the time its caller gives up, and a consumer acks a request received after it
//!   unhandled ([`crate::rpc_deadline`]: an `expiration` would dead-letter it).
//!
//! Consumers ack a delivery only after every follow-up message is confirmed, and reconnect with
//! back-off when the broker goes away.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm,
};
use nlds_core::heartbeat::Heartbeat;
use nlds_core::routing::{EXCHANGE, roles_for};
use nlds_core::{Change, Envelope, Role, RoutingKey};
use tokio::sync::{RwLock, Semaphore, broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::runtime::{Disposition, process};

mod changes;
mod topology;
use crate::{Bus, BusError, ConsumeOptions, Handler, RetryPolicy, RpcAnswer};
pub use topology::declare_topology;
pub(crate) use topology::unavailable;
use topology::{ATTEMPT_HEADER, DELAY, REPLY_TO, message_properties, retry_exchange};

/// A connection plus a confirming publisher channel and the RPC reply channel.
pub(crate) struct Link {
    pub(crate) conn: Connection,
    pub(crate) publisher: Channel,
    rpc: Channel,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

/// The RabbitMQ bus. Cheap to clone.
#[derive(Clone)]
pub struct RabbitBus {
    url: Arc<str>,
    retry: RetryPolicy,
    link: Arc<RwLock<Option<Arc<Link>>>>,
    pending: Pending,
    /// Changes received for this process's watchers ([`changes`]).
    pub(crate) changes: broadcast::Sender<Change>,
    /// Heartbeats received for this process's status page ([`changes`]).
    pub(crate) heartbeats: broadcast::Sender<Heartbeat>,
    /// Whether the subscription that feeds `changes` and `heartbeats` runs.
    pub(crate) following_changes: Arc<AtomicBool>,
}

/// How long a publish waits for the broker's confirm. A healthy broker confirms within
/// milliseconds; a confirm that a broker restart swallowed never comes, and without a limit the
/// handler waiting for it held its deliveries (unacknowledged) for good.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The broker's confirm of the message published as `key`, or `Unavailable` if it does not come
/// within [`CONFIRM_TIMEOUT`] (the caller publishes again on a fresh link, or the delivery is
/// retried: handlers are idempotent).
async fn confirmed(key: &str, confirm: PublisherConfirm) -> Result<Confirmation, BusError> {
    match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
        Ok(c) => c.map_err(unavailable),
        Err(_) => Err(BusError::Unavailable(format!(
            "the broker did not confirm {key} within {} s",
            CONFIRM_TIMEOUT.as_secs()
        ))),
    }
}

impl RabbitBus {
    /// Connects and declares the topology. `retry` fixes the delay queues.
    pub async fn connect(url: &str, retry: RetryPolicy) -> Result<Self, BusError> {
        let bus = Self {
            url: url.into(),
            retry,
            link: Arc::new(RwLock::new(None)),
            pending: Arc::new(Mutex::new(HashMap::new())),
            changes: broadcast::channel(crate::CHANGES_CAPACITY).0,
            heartbeats: broadcast::channel(crate::CHANGES_CAPACITY).0,
            following_changes: Arc::new(AtomicBool::new(false)),
        };
        bus.link().await?;
        Ok(bus)
    }

    async fn open(&self) -> Result<Connection, BusError> {
        Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .map_err(unavailable)
    }

    /// The live link, reconnecting (and re-declaring) if the broker went away.
    pub(crate) async fn link(&self) -> Result<Arc<Link>, BusError> {
        if let Some(link) = self.link.read().await.as_ref()
            && link.conn.status().connected()
            && link.publisher.status().connected()
            && link.rpc.status().connected()
        {
            return Ok(link.clone());
        }
        let mut slot = self.link.write().await;
        if let Some(link) = slot.as_ref()
            && link.conn.status().connected()
            && link.publisher.status().connected()
            && link.rpc.status().connected()
        {
            return Ok(link.clone());
        }
        let conn = self.open().await?;
        let publisher = conn.create_channel().await.map_err(unavailable)?;
        declare_topology(&publisher, &self.retry).await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        let rpc = conn.create_channel().await.map_err(unavailable)?;
        rpc.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        let mut replies = rpc
            .basic_consume(
                REPLY_TO.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let pending = self.pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(d)) = replies.next().await {
                let id = d
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                let waiter = pending.lock().ok().and_then(|mut p| p.remove(&id));
                if let Some(tx) = waiter {
                    let _ = tx.send(d.data);
                }
            }
        });
        let link = Arc::new(Link {
            conn,
            publisher,
            rpc,
        });
        *slot = Some(link.clone());
        Ok(link)
    }

    pub(crate) async fn publish_raw(
        &self,
        ch: &Channel,
        exchange: &str,
        key: &str,
        data: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), BusError> {
        let confirm = ch
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..Default::default()
                },
                data,
                properties,
            )
            .await
            .map_err(unavailable)?;
        let confirm = confirmed(key, confirm).await?;
        if confirm.is_nack() {
            return Err(BusError::NotConfirmed(key.to_owned()));
        }
        if confirm.take_message().is_some() {
            return Err(BusError::Unroutable(key.to_owned()));
        }
        Ok(())
    }

    /// Publishes every message, then waits for all their confirms: one round of broker writes
    /// instead of one per message. AMQP keeps the order of a channel, so they are routed in the
    /// order given. One reconnect-and-retry if the link was broken (a repeated message is
    /// harmless: handlers are idempotent).
    pub async fn publish_all(&self, msgs: &[(RoutingKey, Envelope)]) -> Result<(), BusError> {
        if msgs.is_empty() {
            return Ok(());
        }
        let mut last = None;
        for _ in 0..2 {
            let link = self.link().await?;
            match Self::publish_batch(&link.publisher, msgs).await {
                Err(BusError::Unavailable(e)) => last = Some(BusError::Unavailable(e)),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| BusError::Unavailable("publish failed".into())))
    }

    async fn publish_batch(ch: &Channel, msgs: &[(RoutingKey, Envelope)]) -> Result<(), BusError> {
        let mut confirms = Vec::with_capacity(msgs.len());
        for (k, env) in msgs {
            let key = k.to_string();
            let confirm = ch
                .basic_publish(
                    EXCHANGE.into(),
                    key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &env.to_json(),
                    message_properties(1),
                )
                .await
                .map_err(unavailable)?;
            confirms.push((key, confirm));
        }
        for (key, confirm) in confirms {
            let confirm = confirmed(&key, confirm).await?;
            if confirm.is_nack() {
                return Err(BusError::NotConfirmed(key));
            }
            if confirm.take_message().is_some() {
                return Err(BusError::Unroutable(key));
            }
        }
        Ok(())
    }

    /// Publishes with one reconnect-and-retry if the link was broken.
    async fn publish_bytes(
        &self,
        exchange: &str,
        key: &str,
        data: &[u8],
        attempt: u32,
    ) -> Result<(), BusError> {
        let mut headers = FieldTable::default();
        headers.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(attempt as i64),
        );
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_headers(headers);
        let mut last = None;
        for _ in 0..2 {
            let link = self.link().await?;
            match self
                .publish_raw(&link.publisher, exchange, key, data, props.clone(), true)
                .await
            {
                Err(BusError::Unavailable(e)) => last = Some(BusError::Unavailable(e)),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| BusError::Unavailable("publish failed".into())))
    }

    /// One consumer session: returns when the channel breaks (to reconnect) or on shutdown.
    async fn consume_session(
        &self,
        role: Role,
        handler: &Arc<dyn Handler>,
        options: &ConsumeOptions,
        shutdown: &CancellationToken,
    ) -> Result<(), BusError> {
        let conn = self.open().await?;
        let ch = conn.create_channel().await.map_err(unavailable)?;
        declare_topology(&ch, &self.retry).await?;
        ch.basic_qos(options.prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let tag = format!("{role}-{}", Uuid::new_v4());
        let mut consumer = ch
            .basic_consume(
                role.queue().as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        tracing::info!(%role, queue = %role.queue(), prefetch = options.prefetch, "consuming");
        let slots = Arc::new(Semaphore::new(options.prefetch.max(1) as usize));
        let retry = Arc::new(options.retry.clone());
        // Cancelled when the grace after `shutdown` ran out: the deliveries still in hand are
        // abandoned and returned to the queue.
        let abandon = CancellationToken::new();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = consumer.next() => d,
            };
            let delivery = match next {
                Some(Ok(d)) => d,
                Some(Err(e)) => return Err(unavailable(e)),
                None => return Err(BusError::Unavailable("consumer cancelled".into())),
            };
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p,
                _ = shutdown.cancelled() => {
                    requeue(&delivery.acker).await;
                    break;
                }
            };
            let Ok(permit) = permit else {
                break;
            };
            let bus = self.clone();
            let handler = handler.clone();
            let retry = retry.clone();
            let rpc_channel = ch.clone();
            let abandon = abandon.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let acker = delivery.acker.clone();
                tokio::select! {
                    biased;
                    () = bus.handle_delivery(role, handler.as_ref(), &retry, delivery, &rpc_channel) => {}
                    // The handler's future is dropped here (its guards clean up); a delivery
                    // already settled is left as it is (the acker is used).
                    _ = abandon.cancelled() => requeue(&acker).await,
                }
            });
        }
        // Stop the broker sending more; what it sent and nobody took goes back to the queue
        // when the channel closes.
        if let Err(e) = ch
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await
        {
            tracing::warn!(%role, error = %e, "cannot cancel the consumer; closing its channel");
        }
        crate::shutdown::drain(role, &slots, options, &abandon).await;
        let _ = ch.close(200, "shutdown".into()).await;
        let _ = conn.close(200, "shutdown".into()).await;
        Ok(())
    }

    async fn handle_delivery(
        &self,
        role: Role,
        handler: &dyn Handler,
        retry: &RetryPolicy,
        delivery: Delivery,
        channel: &Channel,
    ) {
        let key = delivery.routing_key.to_string();
        if let Some(late) = crate::rpc_deadline::overdue(delivery.properties.headers().as_ref()) {
            tracing::info!(%key, late_ms = late.as_millis() as u64, queue = %role.queue(),
                "an RPC request whose caller gave up: dropped unhandled");
            if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                tracing::warn!(error = %e, "ack failed; the broker will redeliver");
            }
            return;
        }
        let attempt = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(ATTEMPT_HEADER).cloned())
            .and_then(|v| match v {
                AMQPValue::LongLongInt(n) => Some(n as u32),
                AMQPValue::LongInt(n) => Some(n as u32),
                _ => None,
            })
            .unwrap_or(1);
        let disposition = process(handler, role, &key, &delivery.data, attempt, retry).await;
        let result = match disposition {
            Disposition::Done(outcome) => {
                let outcome = *outcome;
                let ok = match self.publish_all(&outcome.publish).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, "follow-up publish failed; message will be redelivered");
                        false
                    }
                };
                if ok && let Some(reply) = outcome.reply {
                    let reply_to = delivery
                        .properties
                        .reply_to()
                        .as_ref()
                        .map(|r| r.to_string());
                    let corr = delivery.properties.correlation_id().clone();
                    if let Some(reply_to) = reply_to {
                        let mut props =
                            BasicProperties::default().with_content_type("application/json".into());
                        if let Some(c) = corr {
                            props = props.with_correlation_id(c);
                        }
                        // The caller may have given up: an unroutable reply is not an error.
                        let _ = channel
                            .basic_publish(
                                "".into(),
                                reply_to.as_str().into(),
                                BasicPublishOptions::default(),
                                &reply.to_json(),
                                props,
                            )
                            .await;
                    }
                }
                if ok {
                    delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map(|_| ())
                } else {
                    delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                }
            }
            Disposition::Retry(delay) if !role.is_rpc() => {
                match self
                    .publish_bytes(&retry_exchange(delay), &key, &delivery.data, attempt + 1)
                    .await
                {
                    Ok(()) => delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map(|_| ()),
                    Err(e) => {
                        tracing::error!(error = %e, "could not schedule retry; requeueing");
                        tokio::time::sleep(delay.min(Duration::from_secs(5))).await;
                        delivery
                            .acker
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..Default::default()
                            })
                            .await
                            .map(|_| ())
                    }
                }
            }
            Disposition::Retry(_) => delivery
                .acker
                .nack(BasicNackOptions::default())
                .await
                .map(|_| ()),
            Disposition::DeadLetter(publish, reason) => {
                tracing::error!(%key, %reason, queue = %role.queue(), "dead-lettering message");
                if let Err(e) = self.publish_all(&publish).await {
                    tracing::error!(error = %e, "could not publish failure report");
                }
                delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: false,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "ack/nack failed; the broker will redeliver");
        }
    }
}

/// Returns a delivery to its queue (for another consumer, or this one's next start).
async fn requeue(acker: &lapin::Acker) {
    let requeued = acker
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await;
    if let Err(e) = requeued {
        tracing::warn!(error = %e, "cannot return a delivery; the broker will when the channel closes");
    }
}

#[async_trait]
impl Bus for RabbitBus {
    async fn publish(&self, key: RoutingKey, env: &Envelope) -> Result<(), BusError> {
        self.publish_bytes(EXCHANGE, &key.to_string(), &env.to_json(), 1)
            .await
    }

    async fn rpc(
        &self,
        key: RoutingKey,
        env: &Envelope,
        timeout: Duration,
    ) -> Result<Envelope, BusError> {
        self.rpc_answer(key, env, timeout).await?.decode()
    }

    async fn rpc_answer(
        &self,
        key: RoutingKey,
        env: &Envelope,
        timeout: Duration,
    ) -> Result<RpcAnswer, BusError> {
        if roles_for(&key).len() != 1 {
            return Err(BusError::Unroutable(key.to_string()));
        }
        let link = self.link().await?;
        let id = Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id.clone(), tx);
        }
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_reply_to(REPLY_TO.into())
            .with_correlation_id(ShortString::from(id.as_str()))
            // A deadline, not an `expiration`: an expired request would be dead-lettered.
            .with_headers(crate::rpc_deadline::stamp(timeout));
        let sent = self
            .publish_raw(
                &link.rpc,
                EXCHANGE,
                &key.to_string(),
                &env.to_json(),
                props,
                true,
            )
            .await;
        let answer = match sent {
            Ok(()) => tokio::time::timeout(timeout, rx)
                .await
                .map_err(|_| BusError::Timeout(key.to_string(), timeout))
                .and_then(|r| r.map_err(|_| BusError::Unavailable("reply channel closed".into()))),
            Err(e) => Err(e),
        };
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&id);
        }
        answer.map(RpcAnswer::Encoded)
    }

    async fn consume(
        &self,
        role: Role,
        handler: Arc<dyn Handler>,
        options: ConsumeOptions,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self
                .consume_session(role, &handler, &options, &shutdown)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(%role, error = %e, ?backoff, "consumer lost the broker; reconnecting");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn ready(&self) -> Result<(), BusError> {
        self.link().await.map(|_| ())
    }

    async fn publish_delayed(
        &self,
        key: RoutingKey,
        env: &Envelope,
        delay: Duration,
    ) -> Result<(), BusError> {
        if roles_for(&key).is_empty() {
            return Err(BusError::Unroutable(key.to_string()));
        }
        let link = self.link().await?;
        let props = message_properties(1)
            .with_expiration(delay.as_millis().max(1).to_string().as_str().into());
        // The delay queue always takes the message; routing is checked above, since mandatory
        // cannot see through the dead-letter hop.
        self.publish_raw(
            &link.publisher,
            DELAY,
            &key.to_string(),
            &env.to_json(),
            props,
            true,
        )
        .await
    }

    async fn announce(&self, change: Change) -> Result<(), BusError> {
        self.announce_change(change).await
    }

    async fn changes(&self) -> Result<Option<broadcast::Receiver<Change>>, BusError> {
        Ok(Some(self.subscribe_changes()))
    }

    async fn beat(&self, heartbeat: &Heartbeat) -> Result<(), BusError> {
        self.announce_heartbeat(heartbeat).await
    }

    async fn heartbeats(&self) -> Result<Option<broadcast::Receiver<Heartbeat>>, BusError> {
        Ok(Some(self.subscribe_heartbeats()))
    }

    async fn consumers(&self, role: Role) -> Result<u32, BusError> {
        let link = self.link().await?;
        // A channel of its own: a failed passive declare closes the channel it runs on.
        let ch = link.conn.create_channel().await.map_err(unavailable)?;
        let q = ch
            .queue_declare(
                role.queue().as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let _ = ch.close(200, "done".into()).await;
        Ok(q.consumer_count())
    }

    async fn queue_depth(&self, role: Role) -> Result<Option<crate::QueueDepth>, BusError> {
        let link = self.link().await?;
        // A channel of its own, as above: passive declares answer the counts.
        let ch = link.conn.create_channel().await.map_err(unavailable)?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let q = ch
            .queue_declare(role.queue().as_str().into(), passive, FieldTable::default())
            .await
            .map_err(unavailable)?;
        let dead = ch
            .queue_declare(
                format!("{}.dead", role.queue()).as_str().into(),
                passive,
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let _ = ch.close(200, "done".into()).await;
        Ok(Some(crate::QueueDepth {
            messages: u64::from(q.message_count()),
            consumers: q.consumer_count(),
            dead: Some(u64::from(dead.message_count())),
        }))
    }

    async fn dead_letters(&self, role: Role) -> Result<Option<u64>, BusError> {
        let link = self.link().await?;
        // A channel of its own, as above; a passive declare answers the message count.
        let ch = link.conn.create_channel().await.map_err(unavailable)?;
        let q = ch
            .queue_declare(
                format!("{}.dead", role.queue()).as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let _ = ch.close(200, "done".into()).await;
        Ok(Some(u64::from(q.message_count())))
    }
}
