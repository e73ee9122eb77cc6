//! `nlds explain`: the decision now, and the next time (if nothing else changes: no access, no
//! copy made or dropped) a different archive or evict rule decides.

use chrono::{DateTime, Utc};

use crate::eval::decide;
use crate::rule::Rule;
use crate::{Action, FileFacts, Verdict};

/// The earliest time after `now` at which an archive or evict rule other than the one deciding
/// at `now` decides, and its verdict.
pub(crate) fn next(
    rules: &[Rule],
    f: &FileFacts<'_>,
    now: DateTime<Utc>,
    current: Option<Verdict>,
) -> Option<(DateTime<Utc>, Verdict)> {
    // Decisions change only where a time condition flips or a pin ends: try those instants in
    // order (each flips exactly at its instant: thresholds are "at least", pins "until").
    let mut times = Vec::new();
    for r in rules {
        r.when.thresholds(f, now, &mut times);
        if let Action::Pin { until } = r.action
            && until > now
        {
            times.push(until);
        }
    }
    times.sort_unstable();
    times.dedup();
    times.into_iter().find_map(|t| {
        let v = decide(rules, f, t)?;
        let moves = matches!(v.action, Action::Archive | Action::Evict);
        (moves && current.map(|c| c.rule) != Some(v.rule)).then_some((t, v))
    })
}
