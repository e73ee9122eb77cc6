//! `nlds get PATH` and `nlds getlist FILELIST`: restore files.

pub mod view;

use crate::ctx::{Ctx, Io, after_submit, chunk_failure, note, print, print_json, submit_failure};
use crate::exit;
use nlds_client::client::Client;
use nlds_client::error::Error;
use nlds_client::local;

use std::io::Read;

use clap::Args;
use nlds_core::api::{ApiAction, GetRequest};
use uuid::Uuid;

use crate::args::{Clobber, DryRun, HoldingSel, VersionArgs, WaitOpts};
use crate::ctx::{Env, Failure, abs, all_tags, target_dir, wait_plan};
use crate::filelist::{FilelistRest, chunk_paths, read_first};
use crate::plan::{Plan, WaitPlan};

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// The original path of the file (a regular expression with -x).
    #[arg(value_name = "PATH")]
    pub path: std::ffi::OsString,

    /// Get from the holdings of the whole group, not only yours.
    #[arg(short = 'A', long)]
    pub groupall: bool,

    /// Directory to restore under (it must exist); without it files go back to their original paths.
    #[arg(short = 'r', long, value_name = "DIR")]
    pub target: Option<std::ffi::OsString>,

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

    /// Treat PATH as a regular expression.
    #[arg(short = 'x', long)]
    pub regex: bool,

    #[command(flatten)]
    pub clobber: Clobber,

    #[command(flatten)]
    pub versions: VersionArgs,

    #[command(flatten)]
    pub dry_run: DryRun,

    /// Notify your channels when this transaction ends, even if `nlds notify set --on failure`
    /// says only failures (docs/NOTIFY.md).
    #[arg(long)]
    pub notify: bool,

    #[command(flatten)]
    pub wait: WaitOpts,
}

#[derive(Debug, Clone, Args)]
pub struct GetlistArgs {
    /// A file with one original path per line (`-` for standard input).
    #[arg(value_name = "FILELIST")]
    pub filelist: String,

    /// Get from the holdings of the whole group, not only yours.
    #[arg(short = 'A', long)]
    pub groupall: bool,

    /// Directory to restore under (it must exist); without it files go back to their original paths.
    #[arg(short = 'r', long, value_name = "DIR")]
    pub target: Option<std::ffi::OsString>,

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

    #[command(flatten)]
    pub clobber: Clobber,

    #[command(flatten)]
    pub versions: VersionArgs,

    #[command(flatten)]
    pub dry_run: DryRun,

    /// Notify your channels when this transaction ends, even if `nlds notify set --on failure`
    /// says only failures (docs/NOTIFY.md).
    #[arg(long)]
    pub notify: bool,

    #[command(flatten)]
    pub wait: WaitOpts,
}

/// The request of `nlds get`.
pub fn prepare_get(a: &GetArgs, env: &Env) -> Result<Plan, Failure> {
    Ok(Plan::Get(
        GetRequest {
            transaction_id: Some(Uuid::new_v4()),
            paths: vec![if a.regex {
                a.path.to_str().map(str::to_owned).ok_or_else(|| {
                    Failure::usage("a regular expression (-x) must be valid UTF-8")
                })?
            } else {
                abs(&a.path, env)?
            }],
            label: a.holding.label.clone(),
            holding_id: a.holding.holding_id,
            tags: all_tags(&a.holding),
            regex: a.regex,
            target: target_dir(&a.target, env)?,
            overwrite: a.clobber.overwrite,
            groupall: a.groupall,
            job_label: a.job_label.clone(),
            group: None,
            dry_run: a.dry_run.dry_run,
            keep_owner: false,
            parts: 0,
            version: a.versions.version,
            at: a.versions.at.clone(),
            notify: a.notify,
        },
        wait_plan(&a.wait),
        None,
    ))
}

/// The request of `nlds getlist`: its paths are the FILELIST's first chunk, the rest is read as
/// it is sent.
pub fn prepare_getlist(a: &GetlistArgs, env: &Env, stdin: &mut dyn Read) -> Result<Plan, Failure> {
    let (paths, rest) = read_first(&a.filelist, env, stdin, chunk_paths(env))?;
    Ok(Plan::Get(
        GetRequest {
            transaction_id: Some(Uuid::new_v4()),
            paths,
            label: a.holding.label.clone(),
            holding_id: a.holding.holding_id,
            tags: all_tags(&a.holding),
            regex: false,
            target: target_dir(&a.target, env)?,
            overwrite: a.clobber.overwrite,
            groupall: a.groupall,
            job_label: a.job_label.clone(),
            group: None,
            dry_run: a.dry_run.dry_run,
            keep_owner: false,
            parts: 0,
            version: a.versions.version,
            at: a.versions.at.clone(),
            notify: a.notify,
        },
        wait_plan(&a.wait),
        rest,
    ))
}

/// Sends the request and shows the answer; returns the exit code. The `rest` of a long FILELIST
/// is read and sent a chunk at a time before the request, which carries the last chunk.
pub async fn execute(
    mut req: GetRequest,
    wait: Option<WaitPlan>,
    rest: Option<FilelistRest>,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let tid = *req.transaction_id.get_or_insert_with(Uuid::new_v4);
    let accepted = match rest {
        None => client.get(&req).await,
        Some(rest) => {
            let mut stream = client.path_stream(tid, ApiAction::Getlist, req.group.clone());
            let mut reader = rest.open(io.stdin);
            stream
                .push(std::mem::take(&mut req.paths))
                .await
                .map_err(|e| chunk_failure(e, tid, 0))?;
            while let Some(chunk) = rest.next(&mut reader)? {
                let part = stream.parts();
                stream
                    .push(chunk)
                    .await
                    .map_err(|e| chunk_failure(e, tid, part))?;
            }
            stream.get(req).await
        }
    };
    let accepted = accepted.map_err(|e| submit_failure(e, Some(tid)))?;
    after_submit(client, ctx, io, accepted, wait).await
}

/// `nlds get --dry-run`: what the get would restore, and where.
/// `get --dry-run` / `getlist --dry-run`: asks the server what would be restored and looks at
/// each destination. Exits [`exit::NOT_FOUND`] when nothing would be restored.
///
/// The `rest` of a FILELIST longer than one chunk is asked about a chunk at a time (each a dry run
/// of its own, so no request carries more than one chunk), and the answers are joined: every
/// file and missing path in order, the totals added up (a path listed in two chunks counts in
/// each), the first answer's target.
pub async fn dry_run(
    mut req: GetRequest,
    rest: Option<FilelistRest>,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let mut plan = client.get_plan(&req).await?;
    if let Some(rest) = rest {
        let mut reader = rest.open(io.stdin);
        while let Some(chunk) = rest.next(&mut reader)? {
            let ask = GetRequest {
                paths: chunk,
                ..req.clone()
            };
            let more = client.get_plan(&ask).await?;
            req.paths.extend(ask.paths);
            plan.files.extend(more.files);
            plan.missing.extend(more.missing);
            plan.files_total += more.files_total;
            plan.bytes_total += more.bytes_total;
            plan.target = plan.target.or(more.target);
        }
    }
    let (files, target, overwrite) = (
        plan.files.clone(),
        plan.target.clone().or_else(|| req.target.clone()),
        req.overwrite,
    );
    let dests = tokio::task::spawn_blocking(move || {
        local::destinations(&files, target.as_deref(), overwrite)
    })
    .await
    .map_err(|e| Error::Decode(format!("the destination check failed: {e}")))?;
    if ctx.json {
        print_json(
            io,
            &serde_json::json!({"dry_run": true, "request": req, "plan": plan, "destinations": dests}),
        )?;
    } else {
        print(io, &view::get_plan_view(&req, &plan, &dests, ctx.width));
    }
    if plan.files.is_empty() {
        note(
            io,
            ctx,
            "error: nothing would be restored: no stored file matches",
        );
        return Ok(exit::NOT_FOUND);
    }
    Ok(exit::OK)
}
