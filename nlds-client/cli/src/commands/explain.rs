//! `nlds explain PATH`: where one of your files is (tiers), which policy rule applies to it, and
//! when it will move, in sentences (`--json`: the server's answer).

use chrono::{DateTime, Utc};
use clap::Args;
use nlds_core::api::Tier;
use nlds_core::policy::{ExplainQuery, Explanation, Locality, RuleDecision};

use crate::args::HoldingRef;
use crate::ctx::{Ctx, Env, Failure, Io, abs, print, print_json};
use crate::exit;
use crate::format::{Zone, human_size, time};
use crate::plan::Plan;
use nlds_client::client::Client;

#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The file's path, as it was put (relative paths are made absolute).
    #[arg(value_name = "PATH")]
    pub path: String,

    #[command(flatten)]
    pub holding: HoldingRef,
}

/// The request of `nlds explain`.
pub fn prepare(a: &ExplainArgs, env: &Env) -> Result<Plan, Failure> {
    Ok(Plan::Explain(ExplainQuery {
        path: abs(&a.path, env)?,
        label: a.holding.label.clone(),
        holding_id: a.holding.holding_id,
        group: None,
    }))
}

pub async fn execute(
    q: ExplainQuery,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let e = client.explain(&q).await?;
    if ctx.json {
        print_json(io, &e)?;
    } else {
        print(io, &explain_view(&e, ctx.zone, Utc::now()));
    }
    Ok(exit::OK)
}

fn where_it_is(e: &Explanation) -> String {
    let warm = e.tiers.contains(&Tier::Warm);
    let cold = e.tiers.contains(&Tier::Cold);
    match (e.locality, warm, cold) {
        (Locality::DiskAndTape, ..) | (_, true, true) => {
            "on disk (warm tier) and on tape (cold tier)".into()
        }
        (Locality::Disk, ..) | (_, true, false) => "on disk (warm tier) only".into(),
        (Locality::Tape, ..) | (_, false, true) => {
            "on tape (cold tier) only: a get recalls it first".into()
        }
        (Locality::Lost, ..) => "LOST: none of its copies can be read".into(),
        (Locality::None, ..) => "nowhere: it has no stored copy (a directory or a link)".into(),
    }
}

/// What a rule's action does to a file, as a verb phrase.
fn verb(d: &RuleDecision) -> String {
    match d.action.as_str() {
        "archive" => "make a cold (tape) copy of it".into(),
        "evict" => "drop its warm copy (the tape copy stays)".into(),
        "pin" => "keep it warm".into(),
        "none" => "leave it where it is (an exception)".into(),
        other => format!("{other} it"),
    }
}

/// "in 3 days", "in 5 hours", "now".
fn from_now(t: &DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = *t - now;
    if d.num_minutes() < 1 {
        "now".into()
    } else if d.num_hours() < 1 {
        format!("in {} minutes", d.num_minutes())
    } else if d.num_days() < 2 {
        format!("in {} hours", d.num_hours())
    } else {
        format!("in {} days", d.num_days())
    }
}

/// The answer in sentences: where the file is, which rule applies, when it will move.
pub fn explain_view(e: &Explanation, zone: Zone, now: DateTime<Utc>) -> String {
    let mut out = format!(
        "{} (holding {} \"{}\", {}) is {}.\n",
        crate::format::printable(&e.path),
        e.holding_id,
        e.label,
        human_size(e.size),
        where_it_is(e)
    );
    out.push_str(&format!("It was put on {}", time(&e.ingest_time, zone)));
    match &e.last_access {
        Some(t) => out.push_str(&format!(
            " and last read on {} ({} reads).\n",
            time(t, zone),
            e.access_count
        )),
        None => out.push_str(" and has not been read since.\n"),
    }
    if let Some(t) = &e.pinned_until {
        out.push_str(&format!(
            "It is pinned warm until {} (a get or stage asked for it): it is not evicted before.\n",
            time(t, zone)
        ));
    }
    if !e.policy_enabled {
        out.push_str(
            "The tiering policy is off: the file moves only when an operator asks (an archive round or an eviction).\n",
        );
        return out;
    }
    match &e.now {
        Some(d) if d.action == "none" => out.push_str(&format!(
            "Rule \"{}\" applies to it now and exempts it: the policy leaves it where it is.\n",
            d.rule
        )),
        Some(d) => out.push_str(&format!(
            "Rule \"{}\" ({}) applies to it now: the next policy pass will {}.\n",
            d.rule,
            d.action,
            verb(d)
        )),
        None => out.push_str("No rule applies to it now.\n"),
    }
    match &e.next {
        Some((t, d)) => out.push_str(&format!(
            "If it is not read meanwhile, rule \"{}\" ({}) will {} from {} ({}).\n",
            d.rule,
            d.action,
            verb(d),
            time(t, zone),
            from_now(t, now)
        )),
        None if e.now.is_none() => {
            out.push_str("No rule will move it unless it or the rules change.\n")
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sample() -> Explanation {
        Explanation {
            path: "/data/run42/tas.nc".into(),
            holding_id: 7,
            label: "run42".into(),
            size: 3 << 20,
            tiers: vec![Tier::Warm],
            locality: Locality::Disk,
            ingest_time: at("2026-10-01T00:00:00Z"),
            last_access: None,
            access_count: 0,
            pinned_until: None,
            policy_enabled: true,
            now: None,
            next: Some((
                at("2026-10-31T00:00:00Z"),
                RuleDecision {
                    rule: "archive-30d".into(),
                    action: "archive".into(),
                },
            )),
        }
    }

    #[test]
    fn explains_where_which_rule_and_when() {
        let text = explain_view(&sample(), Zone::Utc, at("2026-10-21T00:00:00Z"));
        assert_eq!(
            text,
            "/data/run42/tas.nc (holding 7 \"run42\", 3.0 MiB) is on disk (warm tier) only.\n\
             It was put on 2026-10-01T00:00:00+00:00 and has not been read since.\n\
             No rule applies to it now.\n\
             If it is not read meanwhile, rule \"archive-30d\" (archive) will make a cold (tape) copy of it from 2026-10-31T00:00:00+00:00 (in 10 days).\n"
        );
    }

    #[test]
    fn a_rule_that_applies_now_and_a_pin_are_named() {
        let mut e = sample();
        e.tiers = vec![Tier::Warm, Tier::Cold];
        e.locality = Locality::DiskAndTape;
        e.pinned_until = Some(at("2026-10-22T00:00:00Z"));
        e.last_access = Some(at("2026-10-20T00:00:00Z"));
        e.access_count = 3;
        e.now = Some(RuleDecision {
            rule: "evict-idle".into(),
            action: "evict".into(),
        });
        e.next = None;
        let text = explain_view(&e, Zone::Utc, at("2026-10-21T00:00:00Z"));
        assert!(
            text.contains("on disk (warm tier) and on tape (cold tier)"),
            "{text}"
        );
        assert!(
            text.contains("last read on 2026-10-20T00:00:00+00:00 (3 reads)"),
            "{text}"
        );
        assert!(text.contains("pinned warm until 2026-10-22"), "{text}");
        assert!(
            text.contains("Rule \"evict-idle\" (evict) applies to it now: the next policy pass will drop its warm copy"),
            "{text}"
        );
        assert!(!text.contains("No rule will move it"), "{text}");
    }

    #[test]
    fn with_the_policy_off_nothing_moves_by_itself() {
        let mut e = sample();
        e.policy_enabled = false;
        let text = explain_view(&e, Zone::Utc, at("2026-10-21T00:00:00Z"));
        assert!(text.contains("The tiering policy is off"), "{text}");
        assert!(!text.contains("archive-30d"), "{text}");
    }
}
