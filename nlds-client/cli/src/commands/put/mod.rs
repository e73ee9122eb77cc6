//! `nlds put PATH` and `nlds putlist FILELIST`: store files.

pub mod view;

use crate::ctx::{Ctx, Io, after_submit, note, print, print_json, submit_failure};
use crate::exit;
use nlds_client::client::Client;
use nlds_client::error::Error;
use nlds_client::local;

use std::io::Read;

use clap::Args;
use nlds_core::api::{HoldingQuery, PutRequest};
use nlds_core::quota::SizeHint;
use nlds_core::versions::{SyncLevel, Verdict};
use uuid::Uuid;

use crate::args::{DryRun, HoldingSel, SyncArg, WaitOpts};
use crate::ctx::{Env, Failure, abs, all_tags, read_filelist, wait_plan};
use crate::format::printable;
use crate::plan::{Plan, WaitPlan};

#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// The file or directory to put. Made absolute; symlinks are not resolved.
    #[arg(value_name = "PATH")]
    pub path: std::ffi::OsString,

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

    /// The object-store tenancy to put into, by name, as configured on the workers (default:
    /// theirs). Only the name is sent; the credentials stay on the server side.
    #[arg(long, value_name = "NAME")]
    pub tenancy: Option<String>,

    #[command(flatten)]
    pub sync: SyncArg,

    #[command(flatten)]
    pub dry_run: DryRun,

    /// Notify your channels when this transaction ends, even if `nlds notify set --on failure`
    /// says only failures (docs/NOTIFY.md).
    #[arg(long)]
    pub notify: bool,

    /// Do not check the paths here before submitting: they are paths only the server sees
    /// (without it, a put of paths none of which exists here is refused before anything is
    /// sent).
    #[arg(long)]
    pub no_check: bool,

    #[command(flatten)]
    pub wait: WaitOpts,
}

#[derive(Debug, Clone, Args)]
pub struct PutlistArgs {
    /// A file with one path per line (`-` for standard input). Blank lines are skipped, relative
    /// paths are made absolute against the current directory, duplicates are dropped.
    #[arg(value_name = "FILELIST")]
    pub filelist: String,

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

    /// The object-store tenancy to put into, by name, as configured on the workers (default:
    /// theirs). Only the name is sent; the credentials stay on the server side.
    #[arg(long, value_name = "NAME")]
    pub tenancy: Option<String>,

    #[command(flatten)]
    pub sync: SyncArg,

    #[command(flatten)]
    pub dry_run: DryRun,

    /// Notify your channels when this transaction ends, even if `nlds notify set --on failure`
    /// says only failures (docs/NOTIFY.md).
    #[arg(long)]
    pub notify: bool,

    /// Do not check the paths here before submitting: they are paths only the server sees
    /// (without it, a put of paths none of which exists here is refused before anything is
    /// sent).
    #[arg(long)]
    pub no_check: bool,

    #[command(flatten)]
    pub wait: WaitOpts,
}

/// The request of `nlds put`.
pub fn prepare_put(a: &PutArgs, env: &Env) -> Result<Plan, Failure> {
    Ok(Plan::Put(
        PutRequest {
            transaction_id: Some(Uuid::new_v4()),
            paths: vec![abs(&a.path, env)?],
            label: a.holding.label.clone(),
            holding_id: a.holding.holding_id,
            tags: all_tags(&a.holding),
            job_label: a.job_label.clone(),
            group: None,
            dry_run: a.dry_run.dry_run,
            tenancy: a.tenancy.clone(),
            size_hint: None,
            parts: 0,
            sync: a.sync.sync,
            entries: Vec::new(),
            notify: a.notify,
        },
        wait_plan(&a.wait),
        !a.no_check,
    ))
}

/// The request of `nlds putlist`.
pub fn prepare_putlist(a: &PutlistArgs, env: &Env, stdin: &mut dyn Read) -> Result<Plan, Failure> {
    Ok(Plan::Put(
        PutRequest {
            transaction_id: Some(Uuid::new_v4()),
            paths: read_filelist(&a.filelist, env, stdin)?,
            label: a.holding.label.clone(),
            holding_id: a.holding.holding_id,
            tags: all_tags(&a.holding),
            job_label: a.job_label.clone(),
            group: None,
            dry_run: a.dry_run.dry_run,
            tenancy: a.tenancy.clone(),
            size_hint: None,
            parts: 0,
            sync: a.sync.sync,
            entries: Vec::new(),
            notify: a.notify,
        },
        wait_plan(&a.wait),
        !a.no_check,
    ))
}

/// Sends the request and shows the answer; returns the exit code. The request carries what the
/// put will store, measured here first ([`size_hint`]), so a put past the group's quota is
/// refused before anything is stored.
pub async fn execute(
    mut req: PutRequest,
    wait: Option<WaitPlan>,
    check: bool,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    if check && req.size_hint.is_none() {
        let scan = scan(&req.paths).await?;
        check_local(&scan, ctx, io)?;
        req.size_hint = Some(SizeHint {
            bytes: scan.total.bytes,
            files: scan.total.entries(),
        });
    }
    let id = req.transaction_id;
    let accepted = client.put(&req).await.map_err(|e| submit_failure(e, id))?;
    after_submit(client, ctx, io, accepted, wait).await
}

/// What a put of `paths` will store, walked locally like the indexer walks them (lstat,
/// symlinks not followed): the size hint it carries, and the paths that are not here.
pub async fn scan(paths: &[String]) -> Result<local::LocalScan, Failure> {
    let paths = paths.to_vec();
    Ok(tokio::task::spawn_blocking(move || local::scan(&paths))
        .await
        .map_err(|e| Error::Decode(format!("the local scan failed: {e}")))?)
}

/// How many missing paths a refusal or a note names.
const NAMED: usize = 5;

/// The local check of a put: refused (exit code 5, nothing sent) when none of its paths exists
/// here, so no empty holding is made for a typo; a note names the missing ones when only some
/// are (the server then fails those files, each with its reason).
pub fn check_local(scan: &local::LocalScan, ctx: &Ctx, io: &mut Io<'_>) -> Result<(), Failure> {
    let missing: Vec<&str> = scan
        .paths
        .iter()
        .filter(|p| p.kind == local::ScanKind::Missing)
        .map(|p| p.path.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let named = missing
        .iter()
        .take(NAMED)
        .map(|p| printable(p))
        .collect::<Vec<_>>()
        .join(", ");
    let more = missing.len().saturating_sub(NAMED);
    let named = if more > 0 {
        format!("{named} and {more} more")
    } else {
        named
    };
    if missing.len() == scan.paths.len() {
        return Err(Failure::not_found(format!(
            "nothing to put: {named} {} not exist here; check the path, or add --no-check if it \
             is a path only the server sees",
            if missing.len() == 1 { "does" } else { "do" }
        )));
    }
    note(
        io,
        ctx,
        &format!(
            "{} of {} paths do not exist here and will fail: {named}",
            missing.len(),
            scan.paths.len()
        ),
    );
    Ok(())
}

/// `nlds put --dry-run`: what the put would store, and what the local disk says.
/// `put --dry-run` / `putlist --dry-run`: walks the local paths, asks the server which holding
/// would be used, and prints both. Exits [`exit::NOT_FOUND`] when nothing would be put.
pub async fn dry_run(
    req: PutRequest,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let paths = req.paths.clone();
    let hash = req.sync == Some(SyncLevel::Checksum);
    let (scan, entries) =
        tokio::task::spawn_blocking(move || (local::scan(&paths), local::entries(&paths, hash)))
            .await
            .map_err(|e| Error::Decode(format!("the local scan failed: {e}")))?;
    // The server says what the put would do with each entry (new, changed, unchanged), by the
    // same classification as the put's check.
    let ask = PutRequest {
        entries,
        ..req.clone()
    };
    let plan = client.put_plan(&ask).await?;
    // A server that does not classify (an older one): an existing holding's entries would fail.
    let already = match (&plan.holding, local::stored_paths_regex(&scan)) {
        (Some(h), Some(re)) if plan.verdicts.is_empty() => {
            let page = client
                .find(&HoldingQuery {
                    group: req.group.clone(),
                    holding_id: Some(h.id),
                    path: Some(re),
                    regex: true,
                    limit: Some(10),
                    ..HoldingQuery::default()
                })
                .await?;
            Some(local::AlreadyStored {
                holding_id: h.id,
                total: page.total,
                examples: page.files.into_iter().map(|f| f.path).collect(),
            })
        }
        _ => None,
    };
    if ctx.json {
        print_json(
            io,
            &serde_json::json!({
                "dry_run": true,
                "request": req,
                "plan": plan,
                "local": scan,
                "already_stored": already,
            }),
        )?;
    } else {
        print(
            io,
            &view::put_plan_view(&req, &plan, &scan, already.as_ref(), ctx.width),
        );
    }
    if scan.found() == 0 {
        note(
            io,
            ctx,
            "error: nothing would be put: none of the paths exists or can be read",
        );
        return Ok(exit::NOT_FOUND);
    }
    if !plan.verdicts.is_empty()
        && plan
            .verdicts
            .iter()
            .all(|v| v.verdict == Verdict::Unchanged)
    {
        note(
            io,
            ctx,
            "error: nothing would be put: the holding has every entry unchanged",
        );
        return Ok(exit::NOT_FOUND);
    }
    if let Some(a) = &already
        && a.total >= scan.total.entries()
    {
        note(
            io,
            ctx,
            &format!(
                "error: nothing would be put: holding {} already has every entry",
                a.holding_id
            ),
        );
        return Ok(exit::NOT_FOUND);
    }
    Ok(exit::OK)
}
