//! `nlds del`, `nlds dellist`, `nlds undelete` and `nlds admin purge`: deleting (soft, with a
//! retention period), bringing back, and purging.

use std::io::Read;

use clap::Args;
use nlds_core::api::{DeletePlan, DeleteRequest, PurgeRequest, UndeleteRequest};
use uuid::Uuid;

use crate::args::{DryRun, HoldingSel, WaitOpts};
use crate::ctx::{
    Ctx, Env, Failure, Io, abs, after_submit, all_tags, note, print, print_json, submit_failure,
    wait_plan,
};
use crate::exit;
use crate::format::printable;
use crate::plan::Plan;
use nlds_client::client::Client;

/// `nlds del [PATH]`.
#[derive(Debug, Clone, Args)]
pub struct DelArgs {
    /// The original path of the file or directory to delete (everything under a directory; a
    /// regular expression with -x). Without it, the holding selected by -l/-i/-t is deleted
    /// whole.
    #[arg(value_name = "PATH")]
    pub path: Option<String>,

    /// Look in the holdings of the whole group (deleting another user's files needs the deputy
    /// or manager role in the group).
    #[arg(short = 'A', long)]
    pub groupall: bool,

    #[command(flatten)]
    pub holding: HoldingSel,

    /// Label for the job, shown by `stat`.
    #[arg(
        short = 'b',
        long = "job-label",
        alias = "job_label",
        value_name = "JOB_LABEL"
    )]
    pub job_label: Option<String>,

    /// Treat PATH as a regular expression (needs a holding: -l, -i or -t).
    #[arg(short = 'x', long, requires = "path")]
    pub regex: bool,

    /// Delete every version of each path, not only the newest (without it, the version before
    /// the newest becomes the newest).
    #[arg(long)]
    pub all_versions: bool,

    #[command(flatten)]
    pub dry_run: DryRun,

    /// Notify your channels when this transaction ends, even if `nlds notify set --on failure`
    /// says only failures (docs/NOTIFY.md).
    #[arg(long)]
    pub notify: bool,

    #[command(flatten)]
    pub wait: WaitOpts,
}

/// `nlds dellist FILELIST`.
#[derive(Debug, Clone, Args)]
pub struct DellistArgs {
    /// A file with one original path per line (`-` for standard input).
    #[arg(value_name = "FILELIST")]
    pub filelist: String,

    /// Look in the holdings of the whole group.
    #[arg(short = 'A', long)]
    pub groupall: bool,

    #[command(flatten)]
    pub holding: HoldingSel,

    /// Label for the job, shown by `stat`.
    #[arg(
        short = 'b',
        long = "job-label",
        alias = "job_label",
        value_name = "JOB_LABEL"
    )]
    pub job_label: Option<String>,

    /// Delete every version of each path, not only the newest (without it, the version before
    /// the newest becomes the newest).
    #[arg(long)]
    pub all_versions: bool,

    #[command(flatten)]
    pub dry_run: DryRun,

    /// Notify your channels when this transaction ends, even if `nlds notify set --on failure`
    /// says only failures (docs/NOTIFY.md).
    #[arg(long)]
    pub notify: bool,

    #[command(flatten)]
    pub wait: WaitOpts,
}

/// `nlds undelete [PATH]`.
#[derive(Debug, Clone, Args)]
pub struct UndeleteArgs {
    /// The original path of the deleted file or directory (a regular expression with -x).
    /// Without it, the deleted holding selected by -l/-i/-t comes back whole, with the files
    /// deleted with it.
    #[arg(value_name = "PATH")]
    pub path: Option<String>,

    /// Look in the holdings of the whole group.
    #[arg(short = 'A', long)]
    pub groupall: bool,

    #[command(flatten)]
    pub holding: HoldingSel,

    /// Treat PATH as a regular expression (needs a holding: -l, -i or -t).
    #[arg(short = 'x', long, requires = "path")]
    pub regex: bool,

    /// Show what would come back, and change nothing. Exits 5 when nothing would.
    #[arg(long)]
    pub dry_run: bool,
}

/// `nlds admin purge`.
#[derive(Debug, Clone, Args)]
pub struct PurgeArgs {
    /// Purge only this holding's deleted files (all deleted files without it).
    #[arg(
        short = 'i',
        long = "holding-id",
        alias = "holding_id",
        value_name = "ID"
    )]
    pub holding_id: Option<i64>,
}

fn needs_selector(sel: &HoldingSel) -> Result<(), Failure> {
    if sel.label.is_none() && sel.holding_id.is_none() && sel.tag.is_empty() {
        return Err(Failure::usage(
            "give a PATH, or the holding to delete with -l/--label, -i/--holding-id or -t/--tag",
        ));
    }
    Ok(())
}

/// The request of `nlds del`.
pub fn prepare_del(a: &DelArgs, env: &Env) -> Result<Plan, Failure> {
    let paths = match &a.path {
        None => {
            needs_selector(&a.holding)?;
            Vec::new()
        }
        Some(p) if a.regex => vec![p.clone()],
        Some(p) => vec![abs(p, env)?],
    };
    Ok(Plan::Delete(
        DeleteRequest {
            transaction_id: Some(Uuid::new_v4()),
            paths,
            label: a.holding.label.clone(),
            holding_id: a.holding.holding_id,
            tags: all_tags(&a.holding),
            regex: a.regex,
            groupall: a.groupall,
            job_label: a.job_label.clone(),
            group: None,
            dry_run: a.dry_run.dry_run,
            all_versions: a.all_versions,
            notify: a.notify,
        },
        wait_plan(&a.wait),
    ))
}

/// The request of `nlds dellist`.
pub fn prepare_dellist(a: &DellistArgs, env: &Env, stdin: &mut dyn Read) -> Result<Plan, Failure> {
    Ok(Plan::Delete(
        DeleteRequest {
            transaction_id: Some(Uuid::new_v4()),
            paths: crate::filelist::read_whole(&a.filelist, env, stdin)?,
            label: a.holding.label.clone(),
            holding_id: a.holding.holding_id,
            tags: all_tags(&a.holding),
            regex: false,
            groupall: a.groupall,
            job_label: a.job_label.clone(),
            group: None,
            dry_run: a.dry_run.dry_run,
            all_versions: a.all_versions,
            notify: a.notify,
        },
        wait_plan(&a.wait),
    ))
}

/// The request of `nlds undelete`.
pub fn prepare_undelete(a: &UndeleteArgs, env: &Env) -> Result<Plan, Failure> {
    let paths = match &a.path {
        None => {
            needs_selector(&a.holding)?;
            Vec::new()
        }
        Some(p) if a.regex => vec![p.clone()],
        Some(p) => vec![abs(p, env)?],
    };
    Ok(Plan::Undelete(UndeleteRequest {
        paths,
        label: a.holding.label.clone(),
        holding_id: a.holding.holding_id,
        tags: all_tags(&a.holding),
        regex: a.regex,
        groupall: a.groupall,
        group: None,
        dry_run: a.dry_run,
    }))
}

/// The request of `nlds admin purge`.
pub fn prepare_purge(a: &PurgeArgs) -> Plan {
    Plan::Purge(PurgeRequest {
        holding_id: a.holding_id,
    })
}

/// A delete or undelete plan as text: the holdings, every file, what failed and why.
pub fn plan_view(plan: &DeletePlan, verb: &str) -> String {
    let mut out = String::new();
    let would = if plan.dry_run { "would be " } else { "" };
    for h in &plan.holdings {
        out.push_str(&format!(
            "holding {} ({}) of {} in {} {would}{verb} whole\n",
            h.id, h.label, h.user, h.group
        ));
    }
    for f in &plan.files {
        out.push_str(&format!(
            "{would}{verb}: {} (holding {}, {} bytes)\n",
            printable(&f.path),
            f.holding_id,
            f.size
        ));
    }
    for f in &plan.failed {
        out.push_str(&format!(
            "not {verb}: {} ({})\n",
            printable(&f.path),
            printable(&f.reason)
        ));
    }
    out.push_str(&format!(
        "{} file(s), {} bytes {would}{verb}",
        plan.files_total, plan.bytes_total
    ));
    if let Some(t) = plan.undelete_until {
        out.push_str(&format!(
            "; `nlds undelete` can bring them back until {}",
            t.to_rfc3339()
        ));
    }
    out.push('\n');
    out
}

/// Runs `del`/`dellist` (or its dry run).
pub async fn execute_delete(
    req: DeleteRequest,
    wait: Option<crate::plan::WaitPlan>,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    if req.dry_run {
        let plan = client.delete_plan(&req).await?;
        if ctx.json {
            print_json(
                io,
                &serde_json::json!({"dry_run": true, "request": req, "plan": plan}),
            )?;
        } else {
            print(io, &plan_view(&plan, "deleted"));
        }
        if plan.files.is_empty() && plan.holdings.is_empty() {
            note(io, ctx, "error: nothing would be deleted");
            return Ok(exit::NOT_FOUND);
        }
        return Ok(exit::OK);
    }
    let id = req.transaction_id;
    let accepted = client
        .delete(&req)
        .await
        .map_err(|e| submit_failure(e, id))?;
    after_submit(client, ctx, io, accepted, wait).await
}

/// Runs `undelete`.
pub async fn execute_undelete(
    req: UndeleteRequest,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let plan = client.undelete(&req).await?;
    if ctx.json {
        print_json(io, &plan)?;
    } else {
        print(io, &plan_view(&plan, "undeleted"));
    }
    if plan.files.is_empty() && plan.holdings.is_empty() {
        note(io, ctx, "error: nothing was undeleted");
        return Ok(exit::NOT_FOUND);
    }
    Ok(exit::OK)
}

/// Runs `admin purge`.
pub async fn execute_purge(
    req: PurgeRequest,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let r = client.purge(&req).await?;
    if ctx.json {
        print_json(io, &r)?;
    } else {
        let mut out = format!(
            "purged {} file(s) ({} bytes): {} warm object(s) and {} aggregate(s) sent for removal; \
             {} holding(s) removed; {} file(s) left for later\n",
            r.files,
            r.bytes,
            r.objects,
            r.aggregates.len(),
            r.holdings,
            r.deferred
        );
        for a in &r.aggregates {
            out.push_str(&format!("aggregate removed: {a}\n"));
        }
        for x in &r.refused {
            out.push_str(&format!("kept: {x}\n"));
        }
        print(io, &out);
    }
    Ok(exit::OK)
}
