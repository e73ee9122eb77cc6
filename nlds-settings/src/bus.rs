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
    /// Deliveries each consumer handles at once.
    pub prefetch: u16,
    /// Back-off delays of transient-fault retries, in milliseconds (their count bounds the attempts).
    pub retry_delays_ms: Vec<u64>,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Rabbitmq,
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefetch: 8,
            retry_delays_ms: vec![2_000, 10_000, 60_000, 300_000],
        }
    }
}

impl BusConfig {
    /// The back-off delays of transient-fault retries.
    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_delays_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect()
    }
}
