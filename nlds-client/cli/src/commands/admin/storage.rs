//! `nlds admin audit storage` and `nlds admin audit purge-quarantine`: the storage audit (the
//! catalogue against the warm buckets and the cold store; scrub; repair) and the deletion of
//! what it quarantined (service operators only). `--json` prints the server's answers.

use std::time::Duration;

use chrono::NaiveDate;
use clap::{Args, Subcommand, ValueEnum};
use nlds_core::storage_audit::{AuditReport, AuditRequest, PurgeQuarantineRequest};

use crate::ctx::{Ctx, Failure, Io, note, print, print_json};
use crate::exit;
use crate::format::{Align, Fit, Zone, col, human_size, table, time};
use crate::plan::AdminPlan;
use nlds_client::client::Client;

/// `nlds admin audit <subcommand>` (without one, `nlds admin audit` shows the audit log).
#[derive(Debug, Clone, Subcommand)]
pub enum AuditSubcommand {
    /// Compare the catalogue with the warm buckets and the cold store: dark data (stored, not
    /// catalogued), lost copies (catalogued, not stored), size mismatches; `--scrub` re-reads
    /// copies (blake3), `--repair` restores and quarantines. Waits for the run and prints its
    /// report (exit 11 when findings are left unrepaired).
    Storage(StorageArgs),
    /// Delete what storage audits quarantined (dark objects and aggregates): nothing else ever
    /// deletes it.
    PurgeQuarantine(PurgeArgs),
}

/// Which tiers to audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TierArg {
    Warm,
    Cold,
    All,
}

#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// The tiers to compare with the catalogue.
    #[arg(long, value_enum, default_value_t = TierArg::All)]
    pub tier: TierArg,
    /// Re-read copies and verify their checksums (warm: blake3; cold: the store's own).
    #[arg(long)]
    pub scrub: bool,
    /// Scrub this many copies of each tier, picked at random.
    #[arg(long, value_name = "N", requires = "scrub", conflicts_with = "all", value_parser = clap::value_parser!(u64).range(1..))]
    pub sample: Option<u64>,
    /// Scrub every copy (the default with --scrub).
    #[arg(long, requires = "scrub")]
    pub all: bool,
    /// Read at most this many MB (10^6 bytes) per second while scrubbing.
    #[arg(long, value_name = "MB/s", requires = "scrub", value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Restore lost and corrupt copies from verified ones; quarantine dark objects.
    #[arg(long)]
    pub repair: bool,
    /// Start the run and return at once (follow it with --status).
    #[arg(long, conflicts_with = "status")]
    pub no_wait: bool,
    /// Show the latest runs (operators' and scheduled scrubs') instead of starting one.
    #[arg(long, conflicts_with_all = ["scrub", "repair"])]
    pub status: bool,
    /// With --status: how many runs.
    #[arg(short = 'N', long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
}

#[derive(Debug, Clone, Args)]
pub struct PurgeArgs {
    /// Only what was quarantined before this day (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub before: Option<NaiveDate>,
}

/// A storage-audit request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoragePlan {
    Run { req: AuditRequest, wait: bool },
    Status { runs: u32 },
    Purge(PurgeQuarantineRequest),
}

pub(super) fn prepare(c: &AuditSubcommand) -> AdminPlan {
    AdminPlan::Storage(match c {
        AuditSubcommand::Storage(a) if a.status => StoragePlan::Status { runs: a.runs },
        AuditSubcommand::Storage(a) => StoragePlan::Run {
            req: AuditRequest {
                warm: a.tier != TierArg::Cold,
                cold: a.tier != TierArg::Warm,
                scrub: a.scrub,
                sample: a.sample,
                rate_mb: a.rate,
                repair: a.repair,
            },
            wait: !a.no_wait,
        },
        AuditSubcommand::PurgeQuarantine(a) => {
            StoragePlan::Purge(PurgeQuarantineRequest { before: a.before })
        }
    })
}

/// How often a waiting `nlds admin audit storage` asks whether the run has ended.
const POLL: Duration = Duration::from_millis(500);

pub(super) async fn execute(
    p: StoragePlan,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    match p {
        StoragePlan::Run { req, wait } => {
            let started = client.storage_audit_run(&req).await?;
            if !wait {
                if ctx.json {
                    print_json(io, &started)?;
                } else {
                    print(
                        io,
                        &format!(
                            "Storage audit {} started; follow it with `nlds admin audit storage --status`.\n",
                            started.run_id
                        ),
                    );
                }
                return Ok(exit::OK);
            }
            note(
                io,
                ctx,
                &format!("Storage audit {} running ...", started.run_id),
            );
            let report = loop {
                let runs = client.storage_audit_runs(Some(20)).await?;
                let done = runs
                    .runs
                    .into_iter()
                    .find(|r| r.id == Some(started.run_id) && !is_running(r));
                if let Some(r) = done {
                    break r;
                }
                tokio::time::sleep(POLL).await;
            };
            if ctx.json {
                print_json(io, &report)?;
            } else {
                print(io, &report_view(&report, ctx.zone, ctx.width));
            }
            let unrepaired = report.counts.findings() - report.counts.repaired;
            let stopped = report.notes.iter().any(|n| n.starts_with("stopped:"));
            Ok(if stopped {
                exit::GENERIC
            } else if unrepaired > 0 {
                exit::COMPLETE_WITH_ERRORS
            } else {
                exit::OK
            })
        }
        StoragePlan::Status { runs } => {
            let r = client.storage_audit_runs(Some(runs)).await?;
            if ctx.json {
                print_json(io, &r)?;
            } else if r.runs.is_empty() {
                note(io, ctx, "No storage audit has run.");
            } else {
                for run in &r.runs {
                    print(io, &report_view(run, ctx.zone, ctx.width));
                }
            }
            Ok(exit::OK)
        }
        StoragePlan::Purge(req) => {
            let p = client.purge_quarantine(&req).await?;
            if ctx.json {
                print_json(io, &p)?;
            } else {
                print(
                    io,
                    &format!(
                        "Purged {} quarantined object(s), {}.\n",
                        p.objects,
                        human_size(p.bytes)
                    ),
                );
            }
            Ok(exit::OK)
        }
    }
}

fn is_running(r: &AuditReport) -> bool {
    r.notes.iter().any(|n| n == "running")
}

/// A run: what was asked, the counts, then one line per finding.
pub fn report_view(r: &AuditReport, zone: Zone, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    let q = &r.request;
    let tiers = match (q.warm, q.cold) {
        (true, true) => "warm+cold",
        (true, false) => "warm",
        _ => "cold",
    };
    let mut asked = vec![tiers.to_owned()];
    if q.scrub {
        asked.push(match q.sample {
            Some(n) => format!("scrub sample {n}"),
            None => "scrub all".into(),
        });
        if let Some(rate) = q.rate_mb {
            asked.push(format!("at {rate} MB/s"));
        }
    }
    if q.repair {
        asked.push("repair".into());
    }
    let c = &r.counts;
    let mut out = format!(
        "storage audit {} ({}, {}) started {}\n\
         looked at    : {} warm object(s), {} warm location(s), {} aggregate(s), {} aggregation(s)\n\
         scrubbed     : {} copies, {}\n\
         found        : {} dark, {} lost, {} size mismatch, {} corrupt; {} repaired\n",
        r.id.map(|i| i.to_string()).unwrap_or_default(),
        r.trigger,
        asked.join(", "),
        time(&r.started, zone),
        c.warm_objects,
        c.warm_locations,
        c.aggregates,
        c.aggregations,
        c.scrubbed,
        human_size(c.scrubbed_bytes),
        c.dark,
        c.lost,
        c.size_mismatch,
        c.corrupt,
        c.repaired,
    );
    for n in &r.notes {
        out.push_str(&format!("note         : {n}\n"));
    }
    if !r.findings.is_empty() {
        let rows: Vec<Vec<String>> = r
            .findings
            .iter()
            .map(|f| {
                vec![
                    f.kind.to_string(),
                    f.tier.to_string(),
                    f.object.clone(),
                    f.path.clone().unwrap_or_default(),
                    f.detail.clone(),
                    f.repair.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                col("finding", Left, Keep),
                col("tier", Left, Keep),
                col("object", Left, Start),
                col("path", Left, Start),
                col("detail", Left, End),
                col("repair", Left, End),
            ],
            &rows,
            width,
        ));
        if r.truncated {
            out.push_str("(more findings than listed: see the counts)\n");
        }
    }
    out
}
