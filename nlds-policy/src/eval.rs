//! Evaluation: the first rule whose conditions match and whose action applies decides
//! (docs/POLICY.md, "How rules are read").

use chrono::{DateTime, Utc};

use crate::rule::Rule;
use crate::{Action, FileFacts, Verdict};

/// Whether `action` can apply to `f` at `now`, before its conditions are looked at. `pinned`:
/// an earlier pin rule matched.
#[inline]
fn applies(action: Action, f: &FileFacts<'_>, now: DateTime<Utc>, pinned: bool) -> bool {
    match action {
        Action::Archive => f.warm && !f.cold,
        Action::Evict => f.warm && f.cold && !pinned,
        Action::Pin { until } => f.warm && until > now && !pinned,
        Action::None => true,
    }
}

/// The decision for `f` at `now`: an archive or evict rule that applies, else the pin that
/// protects the file, else the `none` rule that stopped evaluation, else nothing.
#[inline]
pub(crate) fn decide(rules: &[Rule], f: &FileFacts<'_>, now: DateTime<Utc>) -> Option<Verdict> {
    let mut pin: Option<Verdict> = None;
    for (i, r) in rules.iter().enumerate() {
        if !applies(r.action, f, now, pin.is_some()) || !r.when.matches(f, now) {
            continue;
        }
        let v = Verdict {
            rule: i,
            action: r.action,
        };
        match r.action {
            // Protects from eviction; archive rules further down still apply.
            Action::Pin { .. } => pin = Some(v),
            // The exception: stops evaluation (a pin found before it still stands).
            Action::None => return pin.or(Some(v)),
            Action::Archive | Action::Evict => return Some(v),
        }
    }
    pin
}

/// Whether the watermark may evict `f`: it has a warm and a cold copy, and no pin rule in force
/// nor `none` rule stops it before an evict rule would take it.
pub(crate) fn watermark_eligible(rules: &[Rule], f: &FileFacts<'_>, now: DateTime<Utc>) -> bool {
    if !(f.warm && f.cold) {
        return false;
    }
    for r in rules {
        if !applies(r.action, f, now, false) || !r.when.matches(f, now) {
            continue;
        }
        match r.action {
            Action::Evict => return true,
            Action::Pin { .. } | Action::None => return false,
            Action::Archive => {}
        }
    }
    true
}
