//! Transaction changes over RabbitMQ ([`Bus::announce`], [`Bus::changes`]), and processes'
//! heartbeats ([`Bus::beat`], [`Bus::heartbeats`]) on the same exchange, told apart by their
//! routing key ([`HEARTBEAT_KEY`]; fanout ignores it for routing).
//!
//! A change is published to the fanout exchange `nlds.changes`, transient and not mandatory: a
//! change matters only to a process watching now. Each watching process receives them on a
//! queue of its own (server-named, exclusive, deleted with its connection) that holds at most
//! [`QUEUE_MAX`] changes for at most [`QUEUE_TTL_MS`], so a stalled watcher never makes the
//! broker hoard them. When its connection breaks, the process declares a new queue once the
//! broker is back; changes announced in between are missed, which is why watchers also look
//! again at what they follow now and then (`nlds-server`'s `live` module).
//!
//! [`Bus::announce`]: crate::Bus::announce
//! [`Bus::changes`]: crate::Bus::changes
//! [`Bus::beat`]: crate::Bus::beat
//! [`Bus::heartbeats`]: crate::Bus::heartbeats

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use nlds_core::Change;
use nlds_core::heartbeat::Heartbeat;
use tokio::sync::broadcast;

use super::{RabbitBus, unavailable};
use crate::BusError;

/// The fanout exchange changes are announced on.
pub(crate) const CHANGES: &str = "nlds.changes";
/// The routing key heartbeats are published with.
const HEARTBEAT_KEY: &str = "heartbeat";
/// Most changes a watching process's queue holds (the oldest are dropped beyond).
const QUEUE_MAX: i64 = 10_000;
/// How long a change waits in a watching process's queue at most.
const QUEUE_TTL_MS: i64 = 60_000;

impl RabbitBus {
    pub(crate) async fn announce_change(&self, change: Change) -> Result<(), BusError> {
        let link = self.link().await?;
        let data = serde_json::to_vec(&change).map_err(|e| BusError::Decode(e.to_string()))?;
        let props = BasicProperties::default()
            .with_delivery_mode(1)
            .with_content_type("application/json".into());
        self.publish_raw(&link.publisher, CHANGES, "", &data, props, false)
            .await
    }

    pub(crate) async fn announce_heartbeat(&self, hb: &Heartbeat) -> Result<(), BusError> {
        let link = self.link().await?;
        let data = serde_json::to_vec(hb).map_err(|e| BusError::Decode(e.to_string()))?;
        let props = BasicProperties::default()
            .with_delivery_mode(1)
            .with_content_type("application/json".into());
        self.publish_raw(&link.publisher, CHANGES, HEARTBEAT_KEY, &data, props, false)
            .await
    }

    /// A receiver of the changes; the first call starts the process's one subscription.
    pub(crate) fn subscribe_changes(&self) -> broadcast::Receiver<Change> {
        let rx = self.changes.subscribe();
        self.follow();
        rx
    }

    /// A receiver of the heartbeats (through the same subscription as the changes).
    pub(crate) fn subscribe_heartbeats(&self) -> broadcast::Receiver<Heartbeat> {
        let rx = self.heartbeats.subscribe();
        self.follow();
        rx
    }

    /// Starts the process's one subscription, the first time.
    fn follow(&self) {
        if !self.following_changes.swap(true, Ordering::SeqCst) {
            let bus = self.clone();
            tokio::spawn(async move { bus.follow_changes().await });
        }
    }

    /// Receives changes for this process for as long as it runs, through broker outages.
    async fn follow_changes(self) {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.changes_session().await {
                Ok(()) => backoff = Duration::from_millis(250),
                Err(e) => {
                    tracing::warn!(error = %e, ?backoff, "live status: lost the broker's changes; reconnecting");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// One subscription: returns when the channel breaks.
    async fn changes_session(&self) -> Result<(), BusError> {
        let link = self.link().await?;
        let ch = link.conn.create_channel().await.map_err(unavailable)?;
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongLongInt(QUEUE_MAX));
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(QUEUE_TTL_MS));
        let queue = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .map_err(unavailable)?;
        let name = queue.name().as_str().to_owned();
        ch.queue_bind(
            name.as_str().into(),
            CHANGES.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
        let mut deliveries = ch
            .basic_consume(
                name.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        tracing::debug!(queue = %name, "live status: receiving changes");
        while let Some(d) = deliveries.next().await {
            let d = d.map_err(unavailable)?;
            if d.routing_key.as_str() == HEARTBEAT_KEY {
                if let Ok(hb) = serde_json::from_slice::<Heartbeat>(&d.data) {
                    // No receiver is no error: no status page is watched here.
                    drop(self.heartbeats.send(hb));
                }
                continue;
            }
            match serde_json::from_slice::<Change>(&d.data) {
                // No receiver is no error: nobody watches now.
                Ok(c) => drop(self.changes.send(c)),
                Err(e) => tracing::debug!(error = %e, "live status: ignored a malformed change"),
            }
        }
        Err(BusError::Unavailable(
            "the broker ended the changes subscription".into(),
        ))
    }
}
