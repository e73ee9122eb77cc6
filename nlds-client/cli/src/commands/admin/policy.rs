//! `nlds admin policy dry-run|run|status|reload|reset`: the tiering policy's runner (service
//! operators only). `--json` prints the server's answer.

use clap::{Args, Subcommand};
use nlds_core::policy::{PassReport, PolicyStatus, ReloadReport, Tally};

use crate::ctx::{Ctx, Failure, Io, note, print, print_json};
use crate::exit;
use crate::format::{Align, Fit, Zone, col, human_size, table, time};
use crate::plan::AdminPlan;
use nlds_client::client::Client;

/// `nlds admin policy ...`
#[derive(Debug, Clone, Subcommand)]
pub enum PolicyCommand {
    /// What a pass would do now, per rule and per group (files, bytes, examples); changes
    /// nothing. It evaluates the whole catalogue (about a minute for ten million files).
    DryRun,
    /// Start a pass now (in the background; follow it with `nlds admin policy status`).
    Run,
    /// The rules in use, the runner's lease, the circuit breaker and the last passes.
    Status(StatusArgs),
    /// Read the rules again from the settings file (every policy process follows); invalid
    /// rules are refused whole, naming rule, key and problem, and the rules in use stay.
    Reload,
    /// Close the circuit breaker (after fixing what made the actions fail).
    Reset,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// How many past passes to show.
    #[arg(short = 'N', long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub passes: u32,
}

/// A policy request, ready to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyPlan {
    DryRun,
    Run,
    Status(u32),
    Reload,
    Reset,
}

pub(super) fn prepare(c: &PolicyCommand) -> AdminPlan {
    AdminPlan::Policy(match c {
        PolicyCommand::DryRun => PolicyPlan::DryRun,
        PolicyCommand::Run => PolicyPlan::Run,
        PolicyCommand::Status(a) => PolicyPlan::Status(a.passes),
        PolicyCommand::Reload => PolicyPlan::Reload,
        PolicyCommand::Reset => PolicyPlan::Reset,
    })
}

/// Sends the request and prints the answer; returns the exit code (a refused reload is a
/// failure).
pub(super) async fn execute(
    p: PolicyPlan,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    match p {
        PolicyPlan::DryRun => {
            note(io, ctx, "Evaluating every file against the policy ...");
            let r = client.policy_dry_run().await?;
            if ctx.json {
                print_json(io, &r)?;
            } else {
                print(io, &pass_view(&r, ctx.zone, ctx.width));
            }
        }
        PolicyPlan::Run => {
            let started = client.policy_run().await?;
            if ctx.json {
                print_json(io, &started)?;
            } else {
                print(
                    io,
                    &format!(
                        "Policy pass {} started; follow it with `nlds admin policy status`.\n",
                        started.pass_id
                    ),
                );
            }
        }
        PolicyPlan::Status(n) => {
            let st = client.policy_status(Some(n)).await?;
            if ctx.json {
                print_json(io, &st)?;
            } else {
                print(io, &status_view(&st, ctx.zone, ctx.width));
            }
        }
        PolicyPlan::Reload => {
            let r = client.policy_reload().await?;
            if ctx.json {
                print_json(io, &r)?;
            } else {
                print(io, &reload_view(&r));
            }
            if !r.loaded {
                return Ok(exit::FAILED);
            }
        }
        PolicyPlan::Reset => {
            let st = client.policy_reset().await?;
            if ctx.json {
                print_json(io, &st)?;
            } else {
                print(io, "The policy's circuit breaker is closed.\n");
                print(io, &status_view(&st, ctx.zone, ctx.width));
            }
        }
    }
    Ok(exit::OK)
}

fn examples(t: &Tally) -> String {
    t.examples.join(", ")
}

/// A pass (a dry run's or a past one): its summary line, then per rule and per group what it
/// did (or would do): files, bytes, examples.
pub fn pass_view(r: &PassReport, zone: Zone, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    let mut out = format!(
        "Pass {} ({}), started {}: {} files evaluated, outcome {}.\n",
        r.id,
        r.kind,
        time(&r.started, zone),
        r.evaluated,
        r.outcome
    );
    if r.archived_files + r.evicted_files + r.errors > 0 {
        out.push_str(&format!(
            "Archived {} files ({}), evicted {} files ({}), {} errors.\n",
            r.archived_files,
            human_size(r.archived_bytes),
            r.evicted_files,
            human_size(r.evicted_bytes),
            r.errors
        ));
    }
    if let Some(b) = &r.breaker {
        out.push_str(&format!("Stopped: {b}\n"));
    }
    if r.rules.is_empty() {
        out.push_str("\nNo rule matched any file: nothing would move.\n");
        return out;
    }
    let rules: Vec<Vec<String>> = r
        .rules
        .iter()
        .map(|t| {
            vec![
                t.rule.clone(),
                t.action.clone(),
                t.tally.files.to_string(),
                human_size(t.tally.bytes),
                examples(&t.tally),
            ]
        })
        .collect();
    out.push_str("\nPer rule:\n");
    out.push_str(&table(
        &[
            col("rule", Left, End),
            col("action", Left, Keep),
            col("files", Right, Keep),
            col("bytes", Right, Keep),
            col("examples", Left, End),
        ],
        &rules,
        width,
    ));
    let groups: Vec<Vec<String>> = r
        .groups
        .iter()
        .map(|t| {
            vec![
                t.group.clone(),
                t.action.clone(),
                t.tally.files.to_string(),
                human_size(t.tally.bytes),
                examples(&t.tally),
            ]
        })
        .collect();
    if !groups.is_empty() {
        out.push_str("\nPer group:\n");
        out.push_str(&table(
            &[
                col("group", Left, End),
                col("action", Left, Keep),
                col("files", Right, Keep),
                col("bytes", Right, Keep),
                col("examples", Left, End),
            ],
            &groups,
            width,
        ));
    }
    out
}

/// The runner's state as `key : value` lines, then its past passes as a table.
pub fn status_view(st: &PolicyStatus, zone: Zone, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<12}: {v}\n"));
    line(
        &mut out,
        "policy",
        if st.enabled { "enabled" } else { "disabled" }.into(),
    );
    let rules = if st.rules.is_empty() {
        "none".to_owned()
    } else {
        st.rules
            .iter()
            .map(|(n, a)| format!("{n} ({a})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    line(&mut out, "rules", rules);
    line(
        &mut out,
        "runner",
        match (&st.runner, &st.lease_until) {
            (Some(h), Some(u)) => format!("{h} (lease until {})", time(u, zone)),
            (Some(h), None) => h.clone(),
            _ => "none active".into(),
        },
    );
    line(
        &mut out,
        "breaker",
        match (&st.breaker, &st.breaker_since) {
            (Some(why), Some(since)) => format!("OPEN since {}: {why}", time(since, zone)),
            (Some(why), None) => format!("OPEN: {why}"),
            _ => "closed".into(),
        },
    );
    if let Some(t) = &st.next_pass {
        line(&mut out, "next pass", time(t, zone));
    }
    if st.passes.is_empty() {
        out.push_str("\nNo passes yet.\n");
        return out;
    }
    let rows: Vec<Vec<String>> = st
        .passes
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                p.kind.to_string(),
                time(&p.started, zone),
                p.ended
                    .map(|e| time(&e, zone))
                    .unwrap_or_else(|| "-".into()),
                p.outcome.to_string(),
                p.evaluated.to_string(),
                format!("{} ({})", p.archived_files, human_size(p.archived_bytes)),
                format!("{} ({})", p.evicted_files, human_size(p.evicted_bytes)),
                p.errors.to_string(),
                p.breaker.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str("\nPasses (most recent first):\n");
    out.push_str(&table(
        &[
            col("id", Right, Keep),
            col("kind", Left, Keep),
            col("started", Left, Keep),
            col("ended", Left, Keep),
            col("outcome", Left, Keep),
            col("evaluated", Right, Keep),
            col("archived", Right, Keep),
            col("evicted", Right, Keep),
            col("errors", Right, Keep),
            col("breaker", Left, End),
        ],
        &rows,
        width,
    ));
    out
}

/// The rules now in use, or why the new ones were refused.
pub fn reload_view(r: &ReloadReport) -> String {
    let rules = r
        .rules
        .iter()
        .map(|(n, a)| format!("  {n} ({a})\n"))
        .collect::<String>();
    if r.loaded {
        format!("Policy reloaded: {} rules in use.\n{rules}", r.rules.len())
    } else {
        let errors = r
            .errors
            .iter()
            .map(|e| format!("  {e}\n"))
            .collect::<String>();
        format!(
            "The new policy was refused ({} errors); the {} rules in use stay:\n{rules}Errors:\n{errors}",
            r.errors.len(),
            r.rules.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use nlds_core::policy::{GroupTally, PassKind, PassOutcome, RuleTally};

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn tally(files: u64, bytes: u64, ex: &[&str]) -> Tally {
        Tally {
            files,
            bytes,
            examples: ex.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn report() -> PassReport {
        PassReport {
            id: 4,
            kind: PassKind::DryRun,
            started: at("2026-12-05T10:00:00Z"),
            ended: Some(at("2026-12-05T10:01:00Z")),
            outcome: PassOutcome::Completed,
            evaluated: 1000,
            archived_files: 0,
            archived_bytes: 0,
            evicted_files: 0,
            evicted_bytes: 0,
            errors: 0,
            breaker: None,
            rules: vec![RuleTally {
                rule: "archive-30d".into(),
                action: "archive".into(),
                tally: tally(12, 5 << 20, &["/a/1", "/a/2"]),
            }],
            groups: vec![GroupTally {
                group: "climate".into(),
                action: "archive".into(),
                tally: tally(12, 5 << 20, &["/a/1"]),
            }],
        }
    }

    #[test]
    fn a_dry_run_lists_rules_and_groups_with_files_bytes_and_examples() {
        let text = pass_view(&report(), Zone::Utc, None);
        assert!(text.starts_with("Pass 4 (dry_run), started 2026-12-05T10:00:00+00:00: 1000 files evaluated, outcome completed.\n"), "{text}");
        let rule = text.lines().find(|l| l.starts_with("archive-30d")).unwrap();
        for part in ["archive", "12", "5.0 MiB", "/a/1, /a/2"] {
            assert!(rule.contains(part), "{rule}");
        }
        let group = text.lines().find(|l| l.starts_with("climate")).unwrap();
        assert!(group.contains("12") && group.contains("5.0 MiB"), "{group}");
        // Nothing moved: no "Archived" line.
        assert!(!text.contains("Archived"), "{text}");
    }

    #[test]
    fn status_shows_breaker_rules_and_passes() {
        let mut pass = report();
        pass.kind = PassKind::Manual;
        pass.outcome = PassOutcome::BreakerOpen;
        pass.archived_files = 3;
        pass.archived_bytes = 3072;
        pass.errors = 9;
        pass.breaker = Some("9 of 12 archive actions failed".into());
        let st = PolicyStatus {
            enabled: true,
            rules: vec![("archive-30d".into(), "archive".into())],
            runner: Some("host:1:abc".into()),
            lease_until: Some(at("2026-12-05T10:02:00Z")),
            breaker: Some("9 of 12 archive actions failed".into()),
            breaker_since: Some(at("2026-12-05T10:01:00Z")),
            next_pass: None,
            passes: vec![pass],
        };
        let text = status_view(&st, Zone::Utc, None);
        assert!(
            text.contains("rules       : archive-30d (archive)"),
            "{text}"
        );
        assert!(
            text.contains("breaker     : OPEN since 2026-12-05T10:01:00+00:00: 9 of 12"),
            "{text}"
        );
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with("4 "))
            .unwrap();
        for part in ["manual", "breaker_open", "3 (3.0 KiB)", "9"] {
            assert!(row.contains(part), "{row}");
        }
    }

    #[test]
    fn a_refused_reload_names_the_errors_and_the_rules_kept() {
        let r = ReloadReport {
            loaded: false,
            rules: vec![("old".into(), "evict".into())],
            errors: vec!["rule bad: older_than: not a duration".into()],
        };
        let text = reload_view(&r);
        assert!(
            text.contains("refused (1 errors); the 1 rules in use stay"),
            "{text}"
        );
        assert!(text.contains("  old (evict)\n"), "{text}");
        assert!(
            text.contains("  rule bad: older_than: not a duration\n"),
            "{text}"
        );
    }
}
