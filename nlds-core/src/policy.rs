//! The policy's API types: passes and their reports, the runner's status, and `explain`.
//!
//! Shared by the policy role (which produces them), the API (which carries them) and the CLI
//! (which shows them).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::Tier;

/// What started a pass.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::Display,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PassKind {
    /// The interval timer.
    Scheduled,
    /// An operator (`nlds admin policy run`).
    Manual,
    /// A warm tier above its high watermark.
    Watermark,
    /// `nlds admin policy dry-run`: evaluates and reports, changes nothing.
    DryRun,
}

/// How a pass ended.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::Display,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PassOutcome {
    Running,
    Completed,
    /// Stopped by a cap (files or bytes): the rest waits for the next pass.
    Capped,
    /// Stopped by the circuit breaker (see `breaker`).
    BreakerOpen,
    /// Failed before it could finish (the reason is in `breaker` or the logs).
    Failed,
}

/// Files and bytes (with a few example paths) under one rule or group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
    #[serde(default)]
    pub examples: Vec<String>,
}

/// What one rule decided in a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleTally {
    /// The rule's name (`watermark:<tenancy>` for watermark evictions).
    pub rule: String,
    /// `archive`, `evict`, `pin` or `none`.
    pub action: String,
    #[serde(flatten)]
    pub tally: Tally,
}

/// What a pass did (or, dry run, would do) for one group and action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupTally {
    pub group: String,
    pub action: String,
    #[serde(flatten)]
    pub tally: Tally,
}

/// One pass of the policy (`nlds admin policy status`, `run`, `dry-run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PassReport {
    pub id: i64,
    pub kind: PassKind,
    pub started: DateTime<Utc>,
    #[serde(default)]
    pub ended: Option<DateTime<Utc>>,
    pub outcome: PassOutcome,
    /// Files evaluated.
    pub evaluated: u64,
    pub archived_files: u64,
    pub archived_bytes: u64,
    pub evicted_files: u64,
    pub evicted_bytes: u64,
    pub errors: u64,
    /// Why the breaker opened (or the pass failed), if it did.
    #[serde(default)]
    pub breaker: Option<String>,
    #[serde(default)]
    pub rules: Vec<RuleTally>,
    #[serde(default)]
    pub groups: Vec<GroupTally>,
}

/// The policy runner's state (`GET /api/v2/admin/policy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyStatus {
    pub enabled: bool,
    /// The rules in use, in order: each `[name, action]`.
    #[schema(value_type = Vec<Vec<String>>)]
    pub rules: Vec<(String, String)>,
    /// Who holds the runner's lease, until when.
    #[serde(default)]
    pub runner: Option<String>,
    #[serde(default)]
    pub lease_until: Option<DateTime<Utc>>,
    /// Open circuit breaker: why and since when.
    #[serde(default)]
    pub breaker: Option<String>,
    #[serde(default)]
    pub breaker_since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub next_pass: Option<DateTime<Utc>>,
    /// The most recent passes first.
    pub passes: Vec<PassReport>,
}

/// `nlds admin policy reload`: the rules now in use, or why the new ones were refused (the old
/// ones stay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReloadReport {
    pub loaded: bool,
    /// The rules in use, in order: each `[name, action]`.
    #[schema(value_type = Vec<Vec<String>>)]
    pub rules: Vec<(String, String)>,
    #[serde(default)]
    pub errors: Vec<String>,
}

/// WLCG Tape REST locality of a file.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::Display,
    strum::EnumString,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum Locality {
    Disk,
    Tape,
    DiskAndTape,
    /// Catalogued with no copy (e.g. a directory or a link).
    None,
    /// Its only copies are gone or unverifiable.
    Lost,
}

/// A rule's decision about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleDecision {
    pub rule: String,
    pub action: String,
}

/// `nlds explain PATH`: where a file is, which rule applies, when it will move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    pub path: String,
    pub holding_id: i64,
    pub label: String,
    pub size: u64,
    pub tiers: Vec<Tier>,
    pub locality: Locality,
    pub ingest_time: DateTime<Utc>,
    #[serde(default)]
    pub last_access: Option<DateTime<Utc>>,
    pub access_count: u64,
    /// Pinned warm until (the latest of its pins), if pinned.
    #[serde(default)]
    pub pinned_until: Option<DateTime<Utc>>,
    pub policy_enabled: bool,
    /// The rule that applies now (none: the file stays where it is).
    #[serde(default)]
    pub now: Option<RuleDecision>,
    /// When it will next move, and by which rule, if nothing else changes.
    #[serde(default)]
    pub next: Option<(DateTime<Utc>, RuleDecision)>,
}

/// Query string of `GET /api/v2/explain`: the file, and (when its path is in several of the
/// caller's holdings) which holding.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExplainQuery {
    /// The file's path as stored.
    pub path: String,
    /// The holding's label ...
    #[serde(default)]
    pub label: Option<String>,
    /// ... or id.
    #[serde(default)]
    pub holding_id: Option<i64>,
    /// The group to act in (default: the caller's first).
    #[serde(default)]
    pub group: Option<String>,
}

/// Query string of `GET /api/v2/admin/policy`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PolicyStatusQuery {
    /// How many past passes to show (default 10, at most 1000).
    #[serde(default)]
    pub passes: Option<u32>,
}

/// `POST /api/v2/admin/policy/run`: the pass started in the background (follow it with
/// `GET /api/v2/admin/policy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PassStarted {
    pub pass_id: i64,
}
