//! Every metric family of nlds-rs, registered once in the process's registry.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label set of `N` labels; the keys are fixed by the family, the values bounded.
pub type Labels<const N: usize> = [(&'static str, String); N];

/// A family of histograms with the buckets its constructor gives.
pub type Histograms<const N: usize> = Family<Labels<N>, Histogram, fn() -> Histogram>;

/// A gauge of seconds since the epoch (or any float).
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// The metric families (the names in the comments are as exported).
#[derive(Debug)]
pub struct Metrics {
    /// `nlds_deliveries_total{role,outcome}`: deliveries handled by the bus runtime, by the role
    /// consuming them and what became of them (`acked`, `retried`, `dead_lettered`).
    pub deliveries: Family<Labels<2>, Counter>,
    /// `nlds_step_duration_seconds{role}`: how long a role's handler took over one delivery.
    pub step_seconds: Histograms<1>,
    /// `nlds_queue_messages{queue}`: messages in a queue (`nlds.<role>`, and `nlds.<role>.dead`
    /// on RabbitMQ), read when scraped.
    pub queue_messages: Family<Labels<1>, Gauge>,
    /// `nlds_queue_consumers{queue}`: consumers of a role's queue, read when scraped.
    pub queue_consumers: Family<Labels<1>, Gauge>,
    /// `nlds_transactions_started_total{action}`: transactions the monitor recorded.
    pub transactions_started: Family<Labels<1>, Counter>,
    /// `nlds_transactions_ended_total{action,state}`: transactions the monitor saw end, by their
    /// final state (`COMPLETE`, `FAILED`, `COMPLETE_WITH_ERRORS`, ...).
    pub transactions_ended: Family<Labels<2>, Counter>,
    /// `nlds_files_moved_total{tier,operation}`: files written to (`put`) or read from (`get`)
    /// the warm tier (transfer-put, transfer-get) or the cold tier (archive-put, archive-get).
    pub files_moved: Family<Labels<2>, Counter>,
    /// `nlds_bytes_moved_total{tier,operation}`: their bytes.
    pub bytes_moved: Family<Labels<2>, Counter>,
    /// `nlds_last_success_timestamp_seconds{tier,operation}`: when this process last finished a
    /// transfer, archive or recall.
    pub last_success: Family<Labels<2>, FloatGauge>,
    /// `nlds_recall_wait_seconds`: from a recall's request to its files being warm again.
    pub recall_wait: Histogram,
    /// `nlds_policy_passes_total{outcome}`: tiering-policy passes that ended (`completed`,
    /// `failed`, `dry_run`, `breaker`, ... as the pass records them).
    pub policy_passes: Family<Labels<1>, Counter>,
    /// `nlds_usage_bytes{group,tier}`: bytes stored per group and tier (the largest groups by
    /// name, the rest as `group="(other)"`), read when scraped.
    pub usage_bytes: Family<Labels<2>, Gauge>,
    /// `nlds_usage_files{group,tier}`: files stored, likewise.
    pub usage_files: Family<Labels<2>, Gauge>,
    /// `nlds_quota_bytes{group,tier}`: the byte limit of a group exported by name in the usage,
    /// where it has one (docs/QUOTAS.md).
    pub quota_bytes: Family<Labels<2>, Gauge>,
    /// `nlds_http_requests_total{route,method,status}`: API requests by route template.
    pub http_requests: Family<Labels<3>, Counter>,
    /// `nlds_http_request_duration_seconds{route,method}`: their latency.
    pub http_seconds: Histograms<2>,
    /// `nlds_ready`: 1 when every readiness check of the process passes (`/readyz`), else 0.
    pub ready: Gauge,
    /// `nlds_backend_up{backend}`: 1 when a dependency answers its readiness check (`bus`,
    /// `database`, `object_store`), else 0.
    pub backend_up: Family<Labels<1>, Gauge>,
}

/// Every name a scrape can show (counters with their `_total`; histograms as their base name,
/// exported as `_bucket`, `_sum` and `_count`).
pub const NAMES: &[&str] = &[
    "nlds_deliveries_total",
    "nlds_step_duration_seconds",
    "nlds_queue_messages",
    "nlds_queue_consumers",
    "nlds_transactions_started_total",
    "nlds_transactions_ended_total",
    "nlds_files_moved_total",
    "nlds_bytes_moved_total",
    "nlds_last_success_timestamp_seconds",
    "nlds_recall_wait_seconds",
    "nlds_policy_passes_total",
    "nlds_usage_bytes",
    "nlds_usage_files",
    "nlds_quota_bytes",
    "nlds_http_requests_total",
    "nlds_http_request_duration_seconds",
    "nlds_ready",
    "nlds_backend_up",
];

fn step_histogram() -> Histogram {
    // 5 ms to about two minutes.
    Histogram::new(exponential_buckets(0.005, 2.5, 12))
}

fn http_histogram() -> Histogram {
    // 1 ms to about 20 s.
    Histogram::new(exponential_buckets(0.001, 3.0, 10))
}

static REGISTERED: LazyLock<(Registry, Metrics)> = LazyLock::new(|| {
    let m = Metrics {
        deliveries: Family::default(),
        step_seconds: Family::new_with_constructor(step_histogram),
        queue_messages: Family::default(),
        queue_consumers: Family::default(),
        transactions_started: Family::default(),
        transactions_ended: Family::default(),
        files_moved: Family::default(),
        bytes_moved: Family::default(),
        last_success: Family::default(),
        // One second to about two days.
        recall_wait: Histogram::new(exponential_buckets(1.0, 3.0, 12)),
        policy_passes: Family::default(),
        usage_bytes: Family::default(),
        usage_files: Family::default(),
        quota_bytes: Family::default(),
        http_requests: Family::default(),
        http_seconds: Family::new_with_constructor(http_histogram),
        ready: Gauge::default(),
        backend_up: Family::default(),
    };
    let mut r = Registry::default();
    // Counters are registered without their `_total`, which the encoder appends.
    r.register(
        "nlds_deliveries",
        "Deliveries handled, by consuming role and outcome (acked, retried, dead_lettered)",
        m.deliveries.clone(),
    );
    r.register(
        "nlds_step_duration_seconds",
        "Time a role's handler took over one delivery",
        m.step_seconds.clone(),
    );
    r.register(
        "nlds_queue_messages",
        "Messages in a queue when scraped",
        m.queue_messages.clone(),
    );
    r.register(
        "nlds_queue_consumers",
        "Consumers of a role's queue when scraped",
        m.queue_consumers.clone(),
    );
    r.register(
        "nlds_transactions_started",
        "Transactions recorded by the monitor, by API action",
        m.transactions_started.clone(),
    );
    r.register(
        "nlds_transactions_ended",
        "Transactions that ended, by API action and final state",
        m.transactions_ended.clone(),
    );
    r.register(
        "nlds_files_moved",
        "Files written to (put) or read from (get) a tier (warm, cold)",
        m.files_moved.clone(),
    );
    r.register(
        "nlds_bytes_moved",
        "Bytes written to (put) or read from (get) a tier (warm, cold)",
        m.bytes_moved.clone(),
    );
    r.register(
        "nlds_last_success_timestamp_seconds",
        "When this process last finished a transfer (warm), archive (cold put) or recall (cold get)",
        m.last_success.clone(),
    );
    r.register(
        "nlds_recall_wait_seconds",
        "Time from a recall's request to its files being warm again",
        m.recall_wait.clone(),
    );
    r.register(
        "nlds_policy_passes",
        "Tiering-policy passes that ended, by outcome",
        m.policy_passes.clone(),
    );
    r.register(
        "nlds_usage_bytes",
        "Bytes stored per group and tier when scraped (the largest groups; the rest as (other))",
        m.usage_bytes.clone(),
    );
    r.register(
        "nlds_usage_files",
        "Files stored per group and tier when scraped (the largest groups; the rest as (other))",
        m.usage_files.clone(),
    );
    r.register(
        "nlds_quota_bytes",
        "Byte limit per group and tier of the groups named in nlds_usage_bytes, where they have one",
        m.quota_bytes.clone(),
    );
    r.register(
        "nlds_http_requests",
        "API requests by route template, method and status",
        m.http_requests.clone(),
    );
    r.register(
        "nlds_http_request_duration_seconds",
        "API request latency by route template and method",
        m.http_seconds.clone(),
    );
    r.register(
        "nlds_ready",
        "1 when every readiness check of this process passes, else 0",
        m.ready.clone(),
    );
    r.register(
        "nlds_backend_up",
        "1 when a dependency (bus, database, object_store) answers its readiness check, else 0",
        m.backend_up.clone(),
    );
    (r, m)
});

/// The process's metric families.
pub fn metrics() -> &'static Metrics {
    &REGISTERED.1
}

/// The process's registry.
pub(crate) fn registry() -> &'static Registry {
    &REGISTERED.0
}
