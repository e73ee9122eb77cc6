//! nlds-policy's tests: one binary, a module per concern. Everything goes through the public
//! API: rules written as TOML, loaded as the service loads them.

mod actions;
mod conditions;
mod examples;
mod explain;
mod files;
mod validation;

use chrono::{DateTime, Duration, TimeZone, Utc};
use figment::Figment;
use figment::providers::{Format as _, Toml};
use nlds_policy::{Action, FileFacts, Policy, PolicyError};
use nlds_settings::PolicyConfig;

/// `[policy]` as written in a settings file (`[[rule]]` stands for `[[policy.rule]]`).
pub fn config(toml: &str) -> PolicyConfig {
    Figment::from(Toml::string(toml))
        .extract()
        .unwrap_or_else(|e| panic!("test TOML does not read as [policy]: {e}"))
}

/// Loads rules that must be valid.
pub fn policy(toml: &str) -> Policy {
    Policy::load(&config(toml)).unwrap_or_else(|e| panic!("policy should load: {e:?}"))
}

/// Loads rules that must be refused, and returns the errors.
pub fn errors(toml: &str) -> Vec<PolicyError> {
    match Policy::load(&config(toml)) {
        Ok(p) => panic!("policy should be refused, loaded {:?}", p.rules()),
        Err(e) => e,
    }
}

/// The one error a policy has; fails if it has another number.
pub fn the_error(toml: &str) -> PolicyError {
    let mut e = errors(toml);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.remove(0)
}

/// A fixed "now" for the tests.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

pub fn days(n: i64) -> Duration {
    Duration::days(n)
}

/// A file's facts, owned; `facts()` borrows them as the policy takes them.
#[derive(Debug, Clone)]
pub struct File {
    pub path: String,
    pub size: u64,
    pub ingested: DateTime<Utc>,
    pub last_access: Option<DateTime<Utc>>,
    pub label: String,
    pub user: String,
    pub group: String,
    pub tenancy: Option<String>,
    pub tags: Vec<(String, String)>,
    pub warm: bool,
    pub cold: bool,
}

impl Default for File {
    /// A 1 MiB warm-only file ingested a day before `now()`, never accessed.
    fn default() -> Self {
        Self {
            path: "/gws/proj/data/file.nc".into(),
            size: 1 << 20,
            ingested: now() - days(1),
            last_access: None,
            label: "run-1".into(),
            user: "alice".into(),
            group: "gws-a".into(),
            tenancy: None,
            tags: vec![("project".into(), "x".into())],
            warm: true,
            cold: false,
        }
    }
}

impl File {
    pub fn facts(&self) -> FileFacts<'_> {
        FileFacts {
            path: &self.path,
            size: self.size,
            ingested: self.ingested,
            last_access: self.last_access,
            label: &self.label,
            user: &self.user,
            group: &self.group,
            tenancy: self.tenancy.as_deref(),
            tags: &self.tags,
            warm: self.warm,
            cold: self.cold,
        }
    }

    /// Ingested `n` days before `now()`.
    pub fn aged(mut self, n: i64) -> Self {
        self.ingested = now() - days(n);
        self
    }

    /// Last accessed `n` days before `now()`.
    pub fn idle(mut self, n: i64) -> Self {
        self.last_access = Some(now() - days(n));
        self
    }

    /// Warm and cold copies.
    pub fn both(mut self) -> Self {
        self.warm = true;
        self.cold = true;
        self
    }

    pub fn cold_only(mut self) -> Self {
        self.warm = false;
        self.cold = true;
        self
    }
}

/// The action `p` takes on `f` at `now()`, and the deciding rule's name.
pub fn decide(p: &Policy, f: &File) -> Option<(String, Action)> {
    p.evaluate(&f.facts(), now()).map(|d| (d.name, d.action))
}

/// The deciding rule's name only.
pub fn rule(p: &Policy, f: &File) -> Option<String> {
    decide(p, f).map(|(n, _)| n)
}
