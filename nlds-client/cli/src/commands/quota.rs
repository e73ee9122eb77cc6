//! `nlds quota` (your groups' usage, limits and what running puts reserved) and
//! `nlds admin quota set|show` (service operators: set limits, see every group).

use clap::{Args, Subcommand};
use nlds_client::client::Client;
use nlds_core::quota::{
    Amount, GroupQuota, QuotaReport, SetQuota, human_bytes, human_count, parse_limit,
};

use crate::ctx::{Ctx, Failure, Io, print, print_json};
use crate::exit;
use crate::plan::Plan;

/// `nlds quota`
#[derive(Debug, Clone, Args)]
pub struct QuotaArgs {
    /// Only this group (default: every group you are a member of).
    #[arg(value_name = "GROUP")]
    pub group: Option<String>,
}

/// `nlds admin quota ...`
#[derive(Debug, Clone, Subcommand)]
pub enum AdminQuotaCommand {
    /// Set a group's limits: `--warm 10TiB --cold 1PiB --files 5M`; `none` clears a limit;
    /// a limit not given is kept.
    Set(SetArgs),
    /// Every group's limits, usage and reservations (or GROUP's).
    Show(ShowArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// The group.
    #[arg(value_name = "GROUP")]
    pub group: String,
    /// Warm-tier bytes (object store): e.g. 10TiB, 500GB, none.
    #[arg(long, value_name = "SIZE")]
    pub warm: Option<String>,
    /// Cold-tier bytes (tape): e.g. 1PiB, none.
    #[arg(long, value_name = "SIZE")]
    pub cold: Option<String>,
    /// Live files (entries) on any tier: e.g. 5M, 200k, none.
    #[arg(long, value_name = "COUNT")]
    pub files: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// Only this group.
    #[arg(value_name = "GROUP")]
    pub group: Option<String>,
}

/// A quota command, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub enum QuotaPlan {
    /// `nlds quota`.
    Mine(Option<String>),
    /// `nlds admin quota show`.
    Show(Option<String>),
    /// `nlds admin quota set`.
    Set(String, SetQuota),
}

/// The request of `nlds quota`.
pub fn prepare(a: &QuotaArgs) -> Plan {
    Plan::Quota(QuotaPlan::Mine(a.group.clone()))
}

/// The request of `nlds admin quota ...`; a limit that does not parse is a usage error naming it.
pub fn prepare_admin(c: &AdminQuotaCommand) -> Result<Plan, Failure> {
    Ok(Plan::Quota(match c {
        AdminQuotaCommand::Show(a) => QuotaPlan::Show(a.group.clone()),
        AdminQuotaCommand::Set(a) => {
            let parse = |v: &Option<String>, flag: &str, bytes: bool| {
                v.as_deref()
                    .map(|t| {
                        parse_limit(t, bytes).map_err(|e| Failure::usage(format!("--{flag}: {e}")))
                    })
                    .transpose()
            };
            let change = SetQuota {
                warm_bytes: parse(&a.warm, "warm", true)?,
                cold_bytes: parse(&a.cold, "cold", true)?,
                files: parse(&a.files, "files", false)?,
            };
            if change.is_empty() {
                return Err(Failure::usage(
                    "give at least one limit to set: --warm, --cold or --files (none clears one)",
                ));
            }
            QuotaPlan::Set(a.group.clone(), change)
        }
    }))
}

/// Sends a quota request and shows the answer.
pub async fn execute(
    plan: QuotaPlan,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let report = match &plan {
        QuotaPlan::Mine(g) => client.quota(g.as_deref()).await?,
        QuotaPlan::Show(g) => client.admin_quota(g.as_deref()).await?,
        QuotaPlan::Set(g, change) => client.set_quota(g, change).await?,
    };
    if ctx.json {
        print_json(io, &report)?;
    } else {
        print(io, &quota_view(&report));
    }
    Ok(exit::OK)
}

fn limit_text(limit: Option<u64>, bytes: bool) -> String {
    match limit {
        None => "unlimited".to_owned(),
        Some(l) if bytes => human_bytes(l),
        Some(l) => human_count(l),
    }
}

fn free_text(limit: Option<u64>, used: u64, reserved: u64, bytes: bool) -> String {
    match limit {
        None => "-".to_owned(),
        Some(l) => {
            let taken = used.saturating_add(reserved);
            let (free, over) = (l.saturating_sub(taken), taken.saturating_sub(l));
            let show = |n| {
                if bytes {
                    human_bytes(n)
                } else {
                    human_count(n)
                }
            };
            if over > 0 {
                format!("{} over", show(over))
            } else {
                show(free)
            }
        }
    }
}

/// One row: what, used, reserved, limit, free.
fn row(
    o: &mut String,
    what: &str,
    used: u64,
    reserved: Option<u64>,
    limit: Option<u64>,
    bytes: bool,
) {
    let show = |n| {
        if bytes {
            human_bytes(n)
        } else {
            human_count(n)
        }
    };
    o.push_str(&format!(
        "  {what:<12} {:>12} {:>12} {:>12} {:>12}\n",
        show(used),
        reserved.map_or_else(|| "-".to_owned(), show),
        limit_text(limit, bytes),
        free_text(limit, used, reserved.unwrap_or(0), bytes),
    ));
}

fn group_view(o: &mut String, g: &GroupQuota) {
    o.push_str(&format!("group {}\n", g.group));
    o.push_str(&format!(
        "  {:<12} {:>12} {:>12} {:>12} {:>12}\n",
        "", "used", "reserved", "limit", "free"
    ));
    let Amount { bytes, files } = g.reserved;
    row(
        o,
        "warm bytes",
        g.usage.warm.bytes,
        Some(bytes),
        g.limits.warm_bytes,
        true,
    );
    row(
        o,
        "cold bytes",
        g.usage.cold.bytes,
        None,
        g.limits.cold_bytes,
        true,
    );
    row(
        o,
        "files",
        g.usage.all.files,
        Some(files),
        g.limits.files,
        false,
    );
}

/// `nlds quota` / `nlds admin quota show`: per group, used / reserved by running puts / limit /
/// free, in human units.
pub fn quota_view(r: &QuotaReport) -> String {
    if r.groups.is_empty() {
        return "no group has a quota or usage yet\n".to_owned();
    }
    let mut o = String::new();
    for (i, g) in r.groups.iter().enumerate() {
        if i > 0 {
            o.push('\n');
        }
        group_view(&mut o, g);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlds_core::quota::{QuotaLimits, Usage};

    #[test]
    fn quota_view_shows_used_reserved_limit_and_free_in_human_units() {
        let r = QuotaReport {
            groups: vec![GroupQuota {
                group: "climate".into(),
                limits: QuotaLimits {
                    warm_bytes: Some(10 << 40),
                    cold_bytes: None,
                    files: Some(5_000_000),
                },
                usage: Usage {
                    warm: Amount {
                        bytes: 7 << 40,
                        files: 1_200_000,
                    },
                    cold: Amount {
                        bytes: 3 << 40,
                        files: 1000,
                    },
                    all: Amount {
                        bytes: 8 << 40,
                        files: 1_500_000,
                    },
                },
                reserved: Amount {
                    bytes: 1 << 40,
                    files: 20_000,
                },
            }],
        };
        insta::assert_snapshot!(quota_view(&r));
    }

    #[test]
    fn admin_quota_set_parses_limits_and_none() {
        let a = SetArgs {
            group: "climate".into(),
            warm: Some("10TiB".into()),
            cold: Some("none".into()),
            files: None,
        };
        let Plan::Quota(QuotaPlan::Set(g, c)) = prepare_admin(&AdminQuotaCommand::Set(a)).unwrap()
        else {
            panic!()
        };
        assert_eq!(g, "climate");
        assert_eq!(c.warm_bytes, Some(Some(10 << 40)));
        assert_eq!(c.cold_bytes, Some(None));
        assert_eq!(c.files, None);
        let bad = SetArgs {
            group: "climate".into(),
            warm: Some("10 parsecs".into()),
            cold: None,
            files: None,
        };
        let e = prepare_admin(&AdminQuotaCommand::Set(bad)).unwrap_err();
        assert!(e.human().contains("--warm"), "{}", e.human());
        let empty = SetArgs {
            group: "climate".into(),
            warm: None,
            cold: None,
            files: None,
        };
        assert!(prepare_admin(&AdminQuotaCommand::Set(empty)).is_err());
    }
}
