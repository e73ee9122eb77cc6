//! `[metrics]`: each process's Prometheus endpoint (docs/METRICS.md).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[metrics]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Where this process answers `GET /metrics` (the API server, a worker process, the embedded
    /// process), on a listener of its own and without a token: keep it off the public network.
    /// None (the default): no such listener; a worker process still answers `/metrics` on its
    /// operations listener (`[workers] ops_listen`), and the API server never on its API
    /// listener (what it exports is for operators).
    pub listen: Option<SocketAddr>,
    /// Most groups whose usage (`nlds_usage_bytes`, `nlds_usage_files`) is exported by name, the
    /// largest by bytes; the others are summed as `group="(other)"`. Groups come from the
    /// identity provider, so their number is the site's: this bounds the series. 0: only the
    /// sum.
    pub usage_groups: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            usage_groups: 20,
        }
    }
}
