//! `nlds del`, `nlds dellist`, `nlds undelete` and `nlds admin purge`: deleting (soft, with a
//! retention period), bringing back, and purging.

use std::io::Read;

use clap::Args;
use nlds_core::api::{ApiAction, DeletePlan, DeleteRequest, PurgeRequest, UndeleteRequest};
use uuid::Uuid;

use crate::args::{DryRun, HoldingSel, WaitOpts};
use crate::ctx::{
    Ctx, Env, Failure, Io, abs, after_submit, all_tags, chunk_failure, note, print, print_json,
    submit_failure, wait_plan,
};
use crate::exit;
use crate::filelist::{FilelistRest, chunk_paths, read_first};
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
            parts: 0,
        },
        wait_plan(&a.wait),
        None,
    ))
}

/// The request of `nlds dellist`: its paths are the FILELIST's first chunk, the rest is read as
/// it is sent (or, for a dry run, asked about a chunk at a time).
pub fn prepare_dellist(a: &DellistArgs, env: &Env, stdin: &mut dyn Read) -> Result<Plan, Failure> {
    let (paths, rest) = read_first(&a.filelist, env, stdin, chunk_paths(env))?;
    Ok(Plan::Delete(
        DeleteRequest {
            transaction_id: Some(Uuid::new_v4()),
            paths,
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
            parts: 0,
        },
        wait_plan(&a.wait),
        rest,
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
    let mut out = plan_lines(plan, verb);
    out.push_str(&plan_total(
        plan.files_total,
        plan.bytes_total,
        plan.dry_run,
        plan.undelete_until,
        verb,
    ));
    out
}

/// The lines of [`plan_view`] before its total: the holdings, every file, what failed and why
/// (one chunk's, of a dry run asked chunk by chunk).
fn plan_lines(plan: &DeletePlan, verb: &str) -> String {
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
    out
}

/// The last line of [`plan_view`]: how many files and bytes, and until when they can come back.
fn plan_total(
    files_total: u64,
    bytes_total: u64,
    dry_run: bool,
    undelete_until: Option<chrono::DateTime<chrono::Utc>>,
    verb: &str,
) -> String {
    let would = if dry_run { "would be " } else { "" };
    let mut out = format!("{files_total} file(s), {bytes_total} bytes {would}{verb}");
    if let Some(t) = undelete_until {
        out.push_str(&format!(
            "; `nlds undelete` can bring them back until {}",
            t.to_rfc3339()
        ));
    }
    out.push('\n');
    out
}

/// Runs `del`/`dellist` (or its dry run). The `rest` of a FILELIST longer than one chunk is read
/// a chunk at a time: the chunks are sent first and the delete names them
/// ([`execute_streamed`]), or a dry run is asked chunk by chunk ([`dry_run_streamed`]).
pub async fn execute_delete(
    req: DeleteRequest,
    wait: Option<crate::plan::WaitPlan>,
    rest: Option<FilelistRest>,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    if let Some(rest) = rest {
        if req.dry_run {
            return dry_run_streamed(req, rest, client, ctx, io).await;
        }
        return execute_streamed(req, wait, rest, client, ctx, io).await;
    }
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

/// A dellist of a FILELIST longer than one chunk: each chunk is sent in turn
/// (`nlds_client::PathStream`), never the whole list in memory, and the delete naming them is
/// sent once the list has been read, so a bad line anywhere in it deletes nothing (the chunks
/// already sent are deleted by the server unused: docs/PROTOCOL.md, "Chunked requests").
async fn execute_streamed(
    mut req: DeleteRequest,
    wait: Option<crate::plan::WaitPlan>,
    rest: FilelistRest,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let tid = *req.transaction_id.get_or_insert_with(Uuid::new_v4);
    let mut stream = client.path_stream(tid, ApiAction::Dellist, req.group.clone());
    {
        let mut reader = rest.open(io.stdin);
        let mut chunk = std::mem::take(&mut req.paths);
        loop {
            let part = stream.parts();
            stream
                .push(chunk)
                .await
                .map_err(|e| chunk_failure(e, tid, part))?;
            match rest.next(&mut reader)? {
                Some(next) => chunk = next,
                None => break,
            }
        }
    }
    let accepted = stream
        .delete(req)
        .await
        .map_err(|e| submit_failure(e, Some(tid)))?;
    after_submit(client, ctx, io, accepted, wait).await
}

/// The dry run of a dellist longer than one chunk, asked chunk by chunk (each a dry run of its
/// own, under the same transaction id): the text is printed as the answers come (each chunk's
/// holdings, files and failures, then the total of them all), so nothing but the sums is held;
/// `--json` prints one document, the answers joined. A path listed in two chunks is counted in
/// each.
async fn dry_run_streamed(
    mut req: DeleteRequest,
    rest: FilelistRest,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let first = std::mem::take(&mut req.paths);
    let mut joined = DeletePlan {
        holdings: Vec::new(),
        files: Vec::new(),
        files_total: 0,
        bytes_total: 0,
        failed: Vec::new(),
        undelete_until: None,
        dry_run: true,
    };
    // Only the joined answer's counts (text), or all of it (JSON).
    let mut all_paths = Vec::new();
    let (mut any_files, mut any_holdings) = (false, false);
    {
        let mut reader = rest.open(io.stdin);
        let mut chunk = first;
        loop {
            let ask = DeleteRequest {
                paths: chunk,
                ..req.clone()
            };
            let plan = client.delete_plan(&ask).await?;
            any_files |= !plan.files.is_empty();
            any_holdings |= !plan.holdings.is_empty();
            joined.files_total += plan.files_total;
            joined.bytes_total += plan.bytes_total;
            joined.undelete_until = joined.undelete_until.or(plan.undelete_until);
            joined.dry_run = plan.dry_run;
            if ctx.json {
                all_paths.extend(ask.paths);
                joined.holdings.extend(plan.holdings);
                joined.files.extend(plan.files);
                joined.failed.extend(plan.failed);
            } else {
                let _ = io.out.write_all(plan_lines(&plan, "deleted").as_bytes());
            }
            match rest.next(&mut reader)? {
                Some(next) => chunk = next,
                None => break,
            }
        }
    }
    if ctx.json {
        req.paths = all_paths;
        print_json(
            io,
            &serde_json::json!({"dry_run": true, "request": req, "plan": joined}),
        )?;
    } else {
        print(
            io,
            &plan_total(
                joined.files_total,
                joined.bytes_total,
                joined.dry_run,
                joined.undelete_until,
                "deleted",
            ),
        );
    }
    if !any_files && !any_holdings {
        note(io, ctx, "error: nothing would be deleted");
        return Ok(exit::NOT_FOUND);
    }
    Ok(exit::OK)
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
