//! `[bus]`: the message bus both the API and the workers connect to.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which bus to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    Rabbitmq,
    Memory,
}

/// `[bus]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BusConfig {
    pub kind: BusKind,
    pub amqp_url: String,
    /// Deliveries each consumer handles at once (RabbitMQ: one role per process, as a rule).
    pub prefetch: u16,
    /// Deliveries each consumer of the in-process bus handles at once (`kind = "memory"`: the
    /// embedded process, every role in one process). Each delivery in hand is a batch of up to
    /// `[workers.index] batch_files` records, decoded; with `prefetch` (8) for each of a dozen
    /// roles the embedded process held about 40 MiB more during a 200,000-file putlist than with
    /// 2, and one process gains nothing from more: its transfers are bounded by
    /// `[workers.transfer] files_in_flight` and its SQLite database has one writer.
    pub memory_prefetch: u16,
    /// Back-off delays of transient-fault retries, in milliseconds (their count bounds the attempts).
    pub retry_delays_ms: Vec<u64>,
    /// How long a process that is asked to stop (SIGTERM, SIGINT) lets the deliveries in hand
    /// finish, after it stopped taking new ones; those still running then are abandoned (their
    /// clean-up runs) and returned to their queue for another consumer. The API server gives
    /// its open requests the same time. Keep it below Kubernetes' `terminationGracePeriodSeconds`
    /// by at least [`SHUTDOWN_MARGIN_SECS`] (the chart refuses less).
    pub shutdown_grace_secs: u64,
}

/// What a stopping process may take beyond `[bus] shutdown_grace_secs`: returning abandoned
/// deliveries to their queues, their clean-up (aborting uploads) and closing its connections.
pub const SHUTDOWN_MARGIN_SECS: u64 = 10;

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Rabbitmq,
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefetch: 8,
            memory_prefetch: 2,
            retry_delays_ms: vec![2_000, 10_000, 60_000, 300_000],
            shutdown_grace_secs: 20,
        }
    }
}

impl BusConfig {
    /// Deliveries each consumer handles at once on this bus: `memory_prefetch` for the
    /// in-process bus, `prefetch` for RabbitMQ.
    pub fn consumer_prefetch(&self) -> u16 {
        match self.kind {
            BusKind::Memory => self.memory_prefetch,
            BusKind::Rabbitmq => self.prefetch,
        }
    }

    /// How long the deliveries in hand may run on once the process is asked to stop.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The back-off delays of transient-fault retries.
    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_delays_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect()
    }
}
