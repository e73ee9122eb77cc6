//! One rule: its name, its action and its conditions, read and checked.

use figment::value::Dict;

use crate::condition::{BOTH, Condition, RULE_KEYS, WARM_ONLY, tiers_text};
use crate::value::{Errors, string, suggestion};
use crate::{Action, units};

/// The action words.
const ACTIONS: &[&str] = &["archive", "evict", "pin", "none"];

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) when: Condition,
}

impl Rule {
    /// Reads rule number `index` (0-based). Problems go to `errs`, which names the rule by
    /// `name`, or by `#position` when it has none.
    pub(crate) fn parse(table: &Dict, index: usize, errs: &mut Errors) -> Option<Rule> {
        let before = errs.out.len();
        errs.rule = format!("#{}", index + 1);
        let name = match table.get("name") {
            None => {
                errs.push(
                    "name",
                    "is missing: every rule needs a unique name, such as name = \"archive-old\"",
                );
                None
            }
            Some(v) => match string(v, "name", "a string", errs) {
                Some("") => {
                    errs.push("name", "is empty: every rule needs a unique name");
                    None
                }
                Some(n) => {
                    errs.rule = n.to_owned();
                    Some(n.to_owned())
                }
                None => None,
            },
        };
        let word = match table.get("action") {
            None => {
                errs.push(
                    "action",
                    "is missing: say what the rule does, one of \"archive\", \"evict\", \"pin\", \"none\"",
                );
                None
            }
            Some(v) => match string(
                v,
                "action",
                "one of \"archive\", \"evict\", \"pin\", \"none\"",
                errs,
            ) {
                Some(w) if ACTIONS.contains(&w) => Some(w),
                Some(w) => {
                    let hint = suggestion(w, ACTIONS)
                        .map(|s| format!(" (did you mean \"{s}\"?)"))
                        .unwrap_or_default();
                    errs.push(
                        "action",
                        format!("{w:?} is not an action{hint}: use \"archive\", \"evict\", \"pin\" or \"none\""),
                    );
                    None
                }
                None => None,
            },
        };
        let until = table
            .get("until")
            .map(|v| (v, units::time(v, "until", errs)));
        if let Some(v) = table.get("description") {
            string(v, "description", "a string", errs);
        }
        let when = Condition::parse(table, RULE_KEYS, "", errs);

        let action = match (word, until) {
            (Some("pin"), Some((_, Some(t)))) => Some(Action::Pin { until: t }),
            (Some("pin"), Some((_, None))) => None,
            (Some("pin"), None) => {
                errs.push(
                    "until",
                    "is missing: a pin keeps files warm until a time, such as until = \"2027-06-30T00:00:00Z\"",
                );
                None
            }
            (Some(w), Some(_)) => {
                errs.push(
                    "until",
                    format!("only a pin rule has an end time, and this rule's action is {w:?}: remove `until` or make the action \"pin\""),
                );
                None
            }
            (Some("archive"), None) => Some(Action::Archive),
            (Some("evict"), None) => Some(Action::Evict),
            (Some(_), None) => Some(Action::None),
            (None, _) => None,
        };

        // A rule that can never apply is a mistake, not a policy.
        let feasible = when.feasible_tiers();
        let (needs, what) = match action {
            Some(Action::Archive) => (
                WARM_ONLY,
                "an archive rule applies only to files with a warm copy and no cold copy (warm-only)",
            ),
            Some(Action::Evict) => (
                BOTH,
                "an evict rule applies only to files with both a warm and a cold copy",
            ),
            Some(Action::Pin { .. }) => (
                WARM_ONLY | BOTH,
                "a pin keeps warm copies, so it applies only to files with a warm copy",
            ),
            _ => (feasible, ""),
        };
        if feasible == 0 {
            errs.push(
                "tiers",
                "the rule can never apply: its `tiers` conditions contradict each other",
            );
        } else if feasible & needs == 0 {
            errs.push(
                "tiers",
                format!(
                    "the rule can never apply: {what}, but its conditions match only files with {} copies",
                    tiers_text(feasible)
                ),
            );
        }

        if errs.out.len() > before {
            return None;
        }
        Some(Rule {
            name: name?,
            action: action?,
            when,
        })
    }
}
