//! The tiering policy: ordered rules (conditions and one action) read from `[policy]` (or the
//! file it names), validated as a whole (an invalid policy never half-loads, and every error names
//! the rule, the key and the problem), and evaluated per file without I/O.
//!
//! The policy role scans the catalogue into [`FileFacts`] and asks [`Policy::evaluate`]; `nlds
//! explain` asks [`Policy::explain`]. docs/POLICY.md is the user-facing description of the
//! semantics.
//!
//! In a loop over many files, [`Policy::decide`] answers without allocating (a [`Verdict`]: the
//! rule's position and action; [`Policy::rule_name`] names it); [`Policy::evaluate`] is the same
//! answer with the rule's name.
//!
//! The modules: `value` (reading rules as written, the error collector), `units` (durations,
//! sizes, times), `condition` (condition tables, compiled and matched), `rule` (one rule),
//! `load` (a whole policy, inline or from its file), `eval` (first match), `explain` (the next
//! move).

mod condition;
mod eval;
mod explain;
mod load;
mod rule;
mod units;
mod value;

use std::path::{Path, PathBuf};

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

impl Action {
    /// The action's word in the rules: `archive`, `evict`, `pin`, `none`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Archive => "archive",
            Action::Evict => "evict",
            Action::Pin { .. } => "pin",
            Action::None => "none",
        }
    }

    /// Whether the action moves data (archive or evict).
    pub fn moves(&self) -> bool {
        matches!(self, Action::Archive | Action::Evict)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Pin { until } => write!(f, "pin until {}", until.to_rfc3339()),
            other => f.write_str(other.as_str()),
        }
    }
}

/// [`Decision`] without the name: what [`Policy::decide`] answers, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The rule's position (0-based).
    pub rule: usize,
    pub action: Action,
}

/// The rule that decided a file, and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule's position (0-based) and name.
    pub rule: usize,
    pub name: String,
    pub action: Action,
}

/// Why a policy cannot be loaded: the rule (its name, or `#3` for the third rule when it has
/// none, followed by `in FILE` for rules read from `[policy] file`; empty for a problem of the
/// whole policy), the key (`any[1].group` inside a combinator), the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub rule: String,
    pub key: String,
    pub problem: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rule.is_empty() {
            write!(f, "{}: {}", self.key, self.problem)
        } else if let Some(file) = self.rule.strip_prefix("in ") {
            write!(f, "{file}: {}: {}", self.key, self.problem)
        } else {
            write!(f, "rule {}: {}: {}", self.rule, self.key, self.problem)
        }
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

/// A validated, compiled policy. The default is the empty policy (no rules: nothing moves by
/// rule), the same as loading no rules.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<rule::Rule>,
    fingerprint: u64,
    source: Option<PathBuf>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            fingerprint: load::fingerprint(&[]),
            source: None,
        }
    }
}

// The runner shares one policy between tasks.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Policy>();
};

impl Policy {
    /// Loads the rules of `cfg` (from `cfg.file` when set), all or nothing: every problem is
    /// reported, and no policy comes out of a set of rules with one.
    pub fn load(cfg: &PolicyConfig) -> Result<Self, Vec<PolicyError>> {
        load::load(cfg)
    }

    /// The first rule that matches `f` at `now` and applies to it (see docs/POLICY.md).
    pub fn evaluate(&self, f: &FileFacts<'_>, now: DateTime<Utc>) -> Option<Decision> {
        self.decide(f, now).map(|v| self.decision(v))
    }

    /// [`Policy::evaluate`] without the rule's name, allocating nothing: for loops over many
    /// files.
    #[inline]
    pub fn decide(&self, f: &FileFacts<'_>, now: DateTime<Utc>) -> Option<Verdict> {
        eval::decide(&self.rules, f, now)
    }

    /// The name of rule `rule` (0-based; as in [`Verdict::rule`]).
    pub fn rule_name(&self, rule: usize) -> &str {
        self.rules.get(rule).map_or("", |r| r.name.as_str())
    }

    /// A verdict with its rule's name.
    pub fn decision(&self, v: Verdict) -> Decision {
        Decision {
            rule: v.rule,
            name: self.rule_name(v.rule).to_owned(),
            action: v.action,
        }
    }

    /// What applies to `f` now and when it will next move: the earliest later time at which an
    /// archive or evict rule other than the one deciding now would decide, if nothing else
    /// changes (no access, no copy made or dropped).
    pub fn explain(&self, f: &FileFacts<'_>, now: DateTime<Utc>) -> Explanation {
        let current = self.decide(f, now);
        Explanation {
            now: current.map(|v| self.decision(v)),
            next: explain::next(&self.rules, f, now, current).map(|(t, v)| (t, self.decision(v))),
        }
    }

    /// Whether the warm-tier watermark may evict `f` at `now`: it has a warm and a cold copy,
    /// and neither a pin rule in force nor a `none` rule stops it before an evict rule takes
    /// it. (The runner also requires the cold copy to be verified and no pin or waiting get or
    /// stage in the catalogue.)
    pub fn watermark_eligible(&self, f: &FileFacts<'_>, now: DateTime<Utc>) -> bool {
        eval::watermark_eligible(&self.rules, f, now)
    }

    /// The rules' names and actions, in order (for dry-run and status reports).
    pub fn rules(&self) -> Vec<(String, Action)> {
        self.rules
            .iter()
            .map(|r| (r.name.clone(), r.action))
            .collect()
    }

    /// How many rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// No rules: nothing ever moves by rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// A fingerprint of the rules as written (16 hex digits), the same in every process that
    /// loaded the same rules: to tell which policy a pass ran under.
    pub fn fingerprint(&self) -> String {
        format!("{:016x}", self.fingerprint)
    }

    /// The file the rules came from (`[policy] file`), if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }
}
