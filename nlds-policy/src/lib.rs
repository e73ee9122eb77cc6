//! The tiering policy: ordered rules (conditions and one action) read from `[policy]` (or the
//! file it names), validated as a whole (an invalid policy never half-loads, and every error names
//! the rule, the key and the problem), and evaluated per file without I/O.
//!
//! The policy role scans the catalogue into [`FileFacts`] and asks [`Policy::evaluate`]; `nlds
//! explain` asks [`Policy::explain`]. docs/POLICY.md is the user-facing description of the
//! semantics.
//!
//! SKELETON: the signatures below are the contract between this crate and its users; the bodies
//! are being written.

use chrono::{DateTime, Utc};
use nlds_settings::PolicyConfig;

/// What the policy knows about one file (from the catalogue).
#[derive(Debug, Clone)]
pub struct FileFacts<'a> {
    pub path: &'a str,
    pub size: u64,
    /// When the file's transaction was ingested.
    pub ingested: DateTime<Utc>,
    /// The last get, recall or stage of the file; `None`: never accessed (age counts instead).
    pub last_access: Option<DateTime<Utc>>,
    pub label: &'a str,
    pub user: &'a str,
    pub group: &'a str,
    /// The object-store tenancy of the warm copy (`None`: the default store).
    pub tenancy: Option<&'a str>,
    /// The holding's tags.
    pub tags: &'a [(String, String)],
    /// Which tiers hold a copy.
    pub warm: bool,
    pub cold: bool,
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Make a verified cold copy.
    Archive,
    /// Drop the warm copy (only where a verified cold copy exists).
    Evict,
    /// Keep warm (never evicted, by rule or watermark) until the time.
    Pin { until: DateTime<Utc> },
    /// The exception: matching files stop evaluation, nothing happens to them.
    None,
}

/// The rule that decided a file, and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule's position (0-based) and name.
    pub rule: usize,
    pub name: String,
    pub action: Action,
}

/// Why a policy cannot be loaded: the rule (name or position), the key, the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub rule: String,
    pub key: String,
    pub problem: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule {}: {}: {}", self.rule, self.key, self.problem)
    }
}

impl std::error::Error for PolicyError {}

/// `nlds explain`: the rule that applies now, and when (if the file is not accessed meanwhile)
/// it will next move and by which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub now: Option<Decision>,
    pub next: Option<(DateTime<Utc>, Decision)>,
}

/// A validated, compiled policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {}

impl Policy {
    /// Loads the rules of `cfg` (from `cfg.file` when set), all or nothing.
    pub fn load(cfg: &PolicyConfig) -> Result<Self, Vec<PolicyError>> {
        let _ = cfg;
        Ok(Self {})
    }

    /// The first rule that matches `f` at `now` and applies to it (see docs/POLICY.md).
    pub fn evaluate(&self, f: &FileFacts<'_>, now: DateTime<Utc>) -> Option<Decision> {
        let _ = (f, now);
        None
    }

    /// What applies to `f` now and when it will next move.
    pub fn explain(&self, f: &FileFacts<'_>, now: DateTime<Utc>) -> Explanation {
        let _ = (f, now);
        Explanation {
            now: None,
            next: None,
        }
    }

    /// The rules' names and actions, in order (for dry-run and status reports).
    pub fn rules(&self) -> Vec<(String, Action)> {
        Vec::new()
    }
}
