//! `[policy]`: the tiering policy (its rules, or the file that holds them) and how the policy
//! role runs it. The rules are kept here as written (`[[policy.rule]]` tables); `nlds-policy`
//! validates and compiles them, naming the rule, the key and the problem.

use std::collections::BTreeMap;
use std::path::PathBuf;

use figment::value::Dict;
use serde::{Deserialize, Serialize};

/// `[policy]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyConfig {
    /// Whether the policy decides what is archived and evicted. Off: archive rounds archive every
    /// warm-only file (the behaviour before policies) and nothing is evicted unless asked.
    pub enabled: bool,
    /// A TOML file of `[[rule]]` tables, read at start and at every reload (instead of `rule`).
    pub file: Option<PathBuf>,
    /// The rules, in order (`[[policy.rule]]`), when no `file` is named.
    #[serde(rename = "rule")]
    pub rules: Vec<Dict>,
    /// Seconds between two scheduled passes (0: only when an operator asks).
    pub interval_secs: u64,
    /// How long the active runner's lease lasts without renewal.
    pub lease_secs: u64,
    /// Most files one pass may move (archive plus evict); 0 is no limit.
    pub max_files: u64,
    /// Most bytes one pass may move; 0 is no limit.
    pub max_bytes: u64,
    /// The circuit breaker opens when more than this share of a pass's actions failed ...
    pub breaker_error_rate: f64,
    /// ... once at least this many actions were tried.
    pub breaker_min_actions: u64,
    /// How long files a get resolved stay pinned warm (seconds).
    pub get_pin_secs: u64,
    /// The disk lifetime of a stage request that names none, and the longest one allowed.
    pub stage_lifetime_secs: u64,
    pub stage_max_lifetime_secs: u64,
    /// Seconds between two checks of the warm tiers against their watermarks.
    pub watermark_check_secs: u64,
    /// How long a pass waits for the aggregates it started to be written and verified before
    /// it counts the rest as failed (they may still be stored later).
    pub archive_wait_secs: u64,
    /// Warm-tier watermarks per tenancy (`default` for the default object store).
    pub watermarks: BTreeMap<String, Watermark>,
}

/// Above `high_bytes` of warm copies, a pass evicts eligible files (least recently accessed
/// first) until the tenancy is below `low_bytes`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Watermark {
    pub high_bytes: u64,
    pub low_bytes: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            file: None,
            rules: Vec::new(),
            interval_secs: 3600,
            lease_secs: 120,
            max_files: 100_000,
            max_bytes: 0,
            breaker_error_rate: 0.5,
            breaker_min_actions: 10,
            get_pin_secs: 3600,
            stage_lifetime_secs: 24 * 3600,
            stage_max_lifetime_secs: 30 * 24 * 3600,
            watermark_check_secs: 60,
            archive_wait_secs: 3600,
            watermarks: BTreeMap::new(),
        }
    }
}
