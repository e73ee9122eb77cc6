//! `GET /api/v2/status` (and the page `/status`): the health of the deployment as the API server
//! sees it. Roles are alive from the processes' heartbeats ([`crate::heartbeat`]), the broker is
//! asked by the server, and the database, object store and cold store are what the live
//! processes' own readiness checks last said.
//!
//! Who sees what: anyone (no token needed) sees whether each role and each component is up;
//! a service operator (`admin`) also sees the processes (host, pid, start, last heartbeat), the
//! queues (depth, consumers, dead letters), the checks' messages, recent failed transactions,
//! the tiers' usage and the policy runner's state. Nothing secret is ever in it (no URL, key or token).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Up, down, or not known yet (the server has not been watching long enough to tell).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
    Unknown,
}

impl Health {
    /// The page's colour.
    pub fn colour(self) -> &'static str {
        match self {
            Health::Up => "green",
            Health::Down => "red",
            Health::Unknown => "grey",
        }
    }
}

/// The answer of `GET /api/v2/status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SystemStatus {
    pub generated: DateTime<Utc>,
    /// Up when every role has a live process and every component answers.
    pub overall: Health,
    /// Seconds without a heartbeat after which a process counts as gone.
    pub heartbeat_timeout_secs: u64,
    /// Every role, in `Role::ALL` order.
    pub roles: Vec<RoleStatus>,
    /// `broker`, `database`, `object_store`, `cold_store`.
    pub components: Vec<ComponentStatus>,
    /// The caller is a service operator: the fields below and the details above are filled.
    pub detailed: bool,
    /// Failed transactions created in the last 24 hours (operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_failures: Option<RecentFailures>,
    /// Live files and bytes with a copy on each tier, over every group (operators; absent when
    /// the catalogue did not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_usage: Option<crate::quota::Usage>,
    /// The tiering policy's runner (operators; absent when no policy process answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySummary>,
}

/// One role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleStatus {
    pub role: String,
    pub health: Health,
    /// An operator drained it for maintenance: its live processes take no new work
    /// (`nlds admin drain ROLE`; its messages wait in its queue).
    #[serde(default)]
    pub drained: bool,
    /// Live processes running it (operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<ProcessStatus>>,
    /// Messages waiting in its queue (operators; absent where the bus cannot tell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u64>,
    /// Consumers the broker counts on its queue (operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<u32>,
    /// Messages in its dead-letter queue (operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<u64>,
}

/// A process, from its last heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProcessStatus {
    pub instance: Uuid,
    pub host: String,
    pub pid: u32,
    pub started: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// A backend.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ComponentStatus {
    pub name: String,
    pub health: Health,
    /// What failed, or who last checked it (operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Failed transactions of the last 24 hours.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecentFailures {
    pub total: u64,
    /// The most recent first (at most 10).
    pub transactions: Vec<FailedTransaction>,
}

/// One failed transaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FailedTransaction {
    pub transaction_id: Uuid,
    pub user: String,
    pub api_action: String,
    pub created: DateTime<Utc>,
    pub files_failed: u64,
}

/// The policy runner's state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicySummary {
    pub enabled: bool,
    /// Why its circuit breaker is open, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_pass: Option<DateTime<Utc>>,
    /// The last pass: its outcome, when it ended, and what it moved between the tiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass: Option<LastPass>,
}

/// What the last policy pass did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LastPass {
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<DateTime<Utc>>,
    pub archived_bytes: u64,
    pub evicted_bytes: u64,
}
