//! The nlds-rs message bus.
//!
//! Workers implement [`Handler`]; a [`Bus`] delivers messages to them and publishes what they
//! return. Two implementations share the same routing semantics (topic bindings from
//! [`nlds_core::Role::bindings`]):
//!
//! * [`rabbit::RabbitBus`]: RabbitMQ via lapin, durable, with publisher confirms, mandatory
//!   publishing, dead-letter queues, TTL delay queues for retries and RPC over direct reply-to.
//! * [`memory::MemoryBus`]: in-process, for fast tests ([`memory::MemoryBus::new`]: in memory)
//!   and the embedded default ([`memory::MemoryBus::durable`]: its queues kept in the process's
//!   SQLite database, so a crash loses no message).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nlds_core::error::ErrorCode;
use nlds_core::heartbeat::Heartbeat;
use nlds_core::{Change, Envelope, Role, RoutingKey};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub mod health;
pub mod memory;
pub mod metrics;
pub mod notices;
pub mod rabbit;
mod rpc_deadline;
mod runtime;
pub mod shutdown;
mod store;

#[cfg(test)]
mod durable_tests;

pub use runtime::{RetryPolicy, failure_for, hostname, retries_scheduled};
pub use store::transactions_in_flight;

/// What a handler wants done after it handled a message. The bus publishes every message (and the
/// RPC reply) and only then acknowledges the delivery.
#[derive(Debug, Default)]
pub struct Outcome {
    pub publish: Vec<(RoutingKey, Envelope)>,
    /// The answer to an RPC request.
    pub reply: Option<Envelope>,
}

impl Outcome {
    pub fn none() -> Self {
        Self::default()
    }
    pub fn publish(key: RoutingKey, env: Envelope) -> Self {
        Self {
            publish: vec![(key, env)],
            reply: None,
        }
    }
    pub fn reply(env: Envelope) -> Self {
        Self {
            publish: Vec::new(),
            reply: Some(env),
        }
    }
    pub fn and(mut self, key: RoutingKey, env: Envelope) -> Self {
        self.publish.push((key, env));
        self
    }
}

/// A handler's failure: its code, a message naming what failed, and whether trying again later
/// may succeed (a storage outage) or not (bad input).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
}

impl HandlerError {
    /// A fault that will not go away by itself.
    pub fn permanent(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: false,
        }
    }
    /// A transient fault (a service down, a timeout): retried with back-off.
    pub fn transient(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: true,
        }
    }
}

/// One worker role's message handler. Handlers must be idempotent: a message may be delivered
/// more than once (after a crash, before its ack).
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError>;
}

/// Errors of the bus itself.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("message broker unavailable: {0}")]
    Unavailable(String),
    #[error("no queue is bound to routing key {0}")]
    Unroutable(String),
    #[error("the broker did not confirm the message to {0}")]
    NotConfirmed(String),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("malformed message: {0}")]
    Decode(String),
}

impl BusError {
    pub fn code(&self) -> ErrorCode {
        match self {
            BusError::Unavailable(_) | BusError::NotConfirmed(_) => ErrorCode::Unavailable,
            BusError::Unroutable(_) | BusError::Decode(_) => ErrorCode::Internal,
            BusError::Timeout(..) => ErrorCode::Timeout,
        }
    }
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Deliveries handled at once by this consumer.
    pub prefetch: u16,
    pub retry: RetryPolicy,
    /// Once `shutdown` is cancelled, how long the deliveries in hand may run on before they are
    /// abandoned (their handler's future dropped) and returned to the queue.
    pub grace: Duration,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        Self {
            prefetch: 4,
            retry: RetryPolicy::default(),
            grace: Duration::from_secs(20),
        }
    }
}

/// A queue's depth as read now ([`Bus::queue_depth`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages waiting (the in-process bus: waiting or being handled).
    pub messages: u64,
    pub consumers: u32,
    /// Messages in the dead-letter queue `nlds.<role>.dead`; `None`: this bus keeps its dead
    /// letters elsewhere (the in-process bus: in its store's table).
    pub dead: Option<u64>,
}

/// How long a stopping consumer waits, after the grace, for the deliveries it abandoned to be
/// returned and their clean-up ([`shutdown::spawn_cleanup`]) to end.
pub const ABANDON_LIMIT: Duration = Duration::from_secs(5);

/// An RPC's reply ([`Bus::rpc_answer`]).
#[derive(Debug)]
pub enum RpcAnswer {
    /// As a value (the in-process bus passes values).
    Decoded(Box<Envelope>),
    /// As the JSON received, not decoded yet ([`RpcAnswer::decode`]).
    Encoded(Vec<u8>),
}

impl RpcAnswer {
    /// The reply as a value.
    pub fn decode(self) -> Result<Envelope, BusError> {
        match self {
            RpcAnswer::Decoded(env) => Ok(*env),
            RpcAnswer::Encoded(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| BusError::Decode(e.to_string()))
            }
        }
    }
}

/// A message bus.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes a message; returns once it is stored by the bus (confirmed). A key no queue is
    /// bound to is an error, never a silent drop.
    async fn publish(&self, key: RoutingKey, env: &Envelope) -> Result<(), BusError>;

    /// Sends a request and waits for the reply, at most `timeout`.
    async fn rpc(
        &self,
        key: RoutingKey,
        env: &Envelope,
        timeout: Duration,
    ) -> Result<Envelope, BusError>;

    /// [`Bus::rpc`], the reply left as the bytes received where this bus received bytes (a
    /// broker's): the API forwards a large page without decoding it ([`nlds_core::raw_page`]).
    async fn rpc_answer(
        &self,
        key: RoutingKey,
        env: &Envelope,
        timeout: Duration,
    ) -> Result<RpcAnswer, BusError> {
        self.rpc(key, env, timeout)
            .await
            .map(|e| RpcAnswer::Decoded(Box::new(e)))
    }

    /// Consumes `role`'s queue with `handler` until `shutdown` is cancelled, then stops taking
    /// deliveries, lets those in hand finish for at most `options.grace`, abandons the rest
    /// (their handler's future is dropped, so its guards clean up) and returns them to the
    /// queue, and returns once they are settled (at most [`ABANDON_LIMIT`] more).
    async fn consume(
        &self,
        role: Role,
        handler: Arc<dyn Handler>,
        options: ConsumeOptions,
        shutdown: CancellationToken,
    ) -> Result<(), BusError>;

    /// Is the bus usable now (for `/readyz`)?
    async fn ready(&self) -> Result<(), BusError>;

    /// Publishes a message to be delivered after `delay`, durably (a broker restart keeps it):
    /// how a worker waits for something slow, such as a tape recall, without holding it in memory.
    async fn publish_delayed(
        &self,
        key: RoutingKey,
        env: &Envelope,
        delay: Duration,
    ) -> Result<(), BusError>;

    /// How many consumers `role`'s queue has now (for the system status page).
    async fn consumers(&self, role: Role) -> Result<u32, BusError>;

    /// How many messages wait in `role`'s queue (and its dead-letter queue) and how many
    /// consumers it has, now (for the metrics, [`metrics::export_queue_depths`]); `None`: this
    /// bus cannot tell.
    async fn queue_depth(&self, role: Role) -> Result<Option<QueueDepth>, BusError> {
        let _ = role;
        Ok(None)
    }

    /// How many messages wait in `role`'s dead-letter queue (`nlds.<role>.dead`), for the
    /// operators' alerts; `None`: this bus keeps its dead letters elsewhere (the in-process
    /// bus: in its store's table, which the alert check reads).
    async fn dead_letters(&self, role: Role) -> Result<Option<u64>, BusError> {
        let _ = role;
        Ok(None)
    }

    /// The bytes of messages this process holds queued for its own consumers (all but
    /// `except`'s role): the in-process bus keeps its queues in memory, so a producer that can
    /// run far ahead of them (the indexer, the outbox relay) waits while this is high
    /// ([`wait_for_room`]). `None`: the queues live in a broker (RabbitMQ), and a process holds
    /// only what it prefetched.
    fn backlog_bytes(&self, except: Option<Role>) -> Option<u64> {
        let _ = except;
        None
    }

    /// Tells every process watching this bus's changes ([`Bus::changes`]) that a transaction
    /// changed. Best effort and quick: nothing is stored or retried, and no watcher is waited
    /// for; a change nobody watches is dropped. The default (a bus that carries none) does
    /// nothing.
    async fn announce(&self, change: Change) -> Result<(), BusError> {
        let _ = change;
        Ok(())
    }

    /// The changes announced from now on by any process on this bus, or `None` if this bus
    /// carries none. A receiver that falls behind by more than [`CHANGES_CAPACITY`] changes
    /// gets [`broadcast::error::RecvError::Lagged`] and should then treat every transaction it
    /// follows as changed.
    async fn changes(&self) -> Result<Option<broadcast::Receiver<Change>>, BusError> {
        Ok(None)
    }

    /// Tells every process watching heartbeats ([`Bus::heartbeats`]) that this process is alive
    /// (transient, best effort, like [`Bus::announce`]). The default does nothing.
    async fn beat(&self, heartbeat: &Heartbeat) -> Result<(), BusError> {
        let _ = heartbeat;
        Ok(())
    }

    /// The heartbeats sent from now on by any process on this bus, or `None` if this bus
    /// carries none.
    async fn heartbeats(&self) -> Result<Option<broadcast::Receiver<Heartbeat>>, BusError> {
        Ok(None)
    }
}

/// How many announced changes a process keeps for its slowest watcher (see [`Bus::changes`]).
pub const CHANGES_CAPACITY: usize = 4096;

/// How many bytes of queued messages an in-process bus may hold before a producer that runs
/// ahead of its consumers waits ([`wait_for_room`]): enough for dozens of batches in flight.
pub const BACKLOG_LIMIT_BYTES: u64 = 16 << 20;

/// Waits while `bus` holds more than [`BACKLOG_LIMIT_BYTES`] queued for consumers other than
/// `except` (never with a broker). The caller must not be what drains that backlog: pass its
/// own role as `except`.
pub async fn wait_for_room(bus: &dyn Bus, except: Option<Role>) {
    while bus
        .backlog_bytes(except)
        .is_some_and(|b| b > BACKLOG_LIMIT_BYTES)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
