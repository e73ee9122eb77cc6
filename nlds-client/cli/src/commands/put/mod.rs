//! `nlds put PATH` and `nlds putlist FILELIST`: store files.

pub mod view;

use crate::ctx::{Ctx, Io, after_submit, chunk_failure, note, print, print_json, submit_failure};
use crate::exit;
use nlds_client::client::Client;
use nlds_client::error::Error;
use nlds_client::local;

use std::io::Read;

use clap::Args;
use nlds_core::api::{ApiAction, HoldingQuery, PutRequest};
use nlds_core::quota::SizeHint;
use nlds_core::versions::{SyncLevel, Verdict};
use uuid::Uuid;

use crate::args::{DryRun, HoldingSel, SyncArg, WaitOpts};
use crate::ctx::{Env, Failure, abs, all_tags, wait_plan};
use crate::filelist::{FilelistRest, chunk_paths, read_first};
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
    /// paths are made absolute against the current directory, duplicates are dropped (within each
    /// chunk of a long list: the server records a path once).
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
        None,
    ))
}

/// The request of `nlds putlist`: its paths are the FILELIST's first chunk, the rest is read as
/// it is sent.
pub fn prepare_putlist(a: &PutlistArgs, env: &Env, stdin: &mut dyn Read) -> Result<Plan, Failure> {
    let (paths, rest) = read_first(&a.filelist, env, stdin, chunk_paths(env))?;
    Ok(Plan::Put(
        PutRequest {
            transaction_id: Some(Uuid::new_v4()),
            paths,
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
        rest,
    ))
}

/// Sends the request and shows the answer; returns the exit code. The request carries what the
/// put will store, measured here first ([`scan`]), so a put past the group's quota is refused
/// before anything is stored. The `rest` of a long FILELIST is read, checked and sent a chunk at
/// a time ([`execute_streamed`]).
pub async fn execute(
    mut req: PutRequest,
    wait: Option<WaitPlan>,
    check: bool,
    rest: Option<FilelistRest>,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    if let Some(rest) = rest {
        return execute_streamed(req, wait, check, rest, client, ctx, io).await;
    }
    if check && req.size_hint.is_none() {
        let mut local = LocalCheck::default();
        local.add(&scan(&req.paths).await?);
        local.verdict(0, ctx, io)?;
        req.size_hint = Some(local.size_hint());
    }
    let id = req.transaction_id;
    let accepted = client.put(&req).await.map_err(|e| submit_failure(e, id))?;
    after_submit(client, ctx, io, accepted, wait).await
}

/// A putlist of a FILELIST longer than one chunk: each chunk is checked here (unless
/// `--no-check`) and sent in turn (`nlds_client::PathStream`), never the whole list in memory;
/// the put itself, with the last chunk and the size hint of them all, is sent only when the
/// list has been read, so a list none of whose paths exists here still starts nothing (the
/// parts already sent are deleted by the server unused: docs/PROTOCOL.md, "Chunked requests").
async fn execute_streamed(
    mut req: PutRequest,
    wait: Option<WaitPlan>,
    check: bool,
    rest: FilelistRest,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let tid = *req.transaction_id.get_or_insert_with(Uuid::new_v4);
    let mut local = LocalCheck::default();
    let mut stream = client.path_stream(tid, ApiAction::Putlist, req.group.clone());
    {
        let mut reader = rest.open(io.stdin);
        let mut chunk = std::mem::take(&mut req.paths);
        loop {
            if check {
                local.add(&scan(&chunk).await?);
            }
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
    if check && req.size_hint.is_none() {
        local.verdict(stream.parts(), ctx, io)?;
        req.size_hint = Some(local.size_hint());
    }
    let accepted = stream
        .put(req)
        .await
        .map_err(|e| submit_failure(e, Some(tid)))?;
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

/// The local check of a put, added up scan by scan (a chunk of a FILELIST at a time): how many
/// paths, which are missing (the first [`NAMED`] by name, the rest counted), and what would be
/// stored. An entry reached from paths in two chunks is counted in each (the size hint is a
/// hint: the server's quota check allows for it).
#[derive(Debug, Default)]
pub struct LocalCheck {
    paths: u64,
    missing: u64,
    named: Vec<String>,
    bytes: u64,
    files: u64,
}

impl LocalCheck {
    /// Adds the scan of some of the put's paths.
    pub fn add(&mut self, scan: &local::LocalScan) {
        self.paths += scan.paths.len() as u64;
        for p in &scan.paths {
            if p.kind == local::ScanKind::Missing {
                self.missing += 1;
                if self.named.len() < NAMED {
                    self.named.push(p.path.clone());
                }
            }
        }
        self.bytes += scan.total.bytes;
        self.files += scan.total.entries();
    }

    /// What the put will store, as its request says it.
    pub fn size_hint(&self) -> SizeHint {
        SizeHint {
            bytes: self.bytes,
            files: self.files,
        }
    }

    /// Refused (exit code 5, the put not sent) when none of the paths exists here, so no empty
    /// holding is made for a typo; a note names the missing ones when only some are (the server
    /// then fails those files, each with its reason). `parts`: chunks of the list already sent.
    pub fn verdict(&self, parts: u32, ctx: &Ctx, io: &mut Io<'_>) -> Result<(), Failure> {
        if self.missing == 0 {
            return Ok(());
        }
        let named = self
            .named
            .iter()
            .map(|p| printable(p))
            .collect::<Vec<_>>()
            .join(", ");
        let more = self.missing.saturating_sub(self.named.len() as u64);
        let named = if more > 0 {
            format!("{named} and {more} more")
        } else {
            named
        };
        if self.missing == self.paths {
            let sent = if parts > 0 {
                format!(
                    " (the {parts} part(s) of the list already sent start nothing and are \
                     deleted by the server)"
                )
            } else {
                String::new()
            };
            return Err(Failure::not_found(format!(
                "nothing to put: {named} {} not exist here; check the path, or add --no-check if \
                 it is a path only the server sees{sent}",
                if self.missing == 1 { "does" } else { "do" }
            )));
        }
        note(
            io,
            ctx,
            &format!(
                "{} of {} paths do not exist here and will fail: {named}",
                self.missing, self.paths
            ),
        );
        Ok(())
    }
}

/// What the local disk says of the paths of `req` (one chunk), and what the server says the put
/// would do with each entry (new, changed, unchanged) by the same classification as the put's
/// check.
async fn plan_chunk(
    req: &PutRequest,
    client: &Client,
) -> Result<(local::LocalScan, nlds_core::api::PutPlan), Failure> {
    let paths = req.paths.clone();
    let hash = req.sync == Some(SyncLevel::Checksum);
    let (scan, entries) =
        tokio::task::spawn_blocking(move || (local::scan(&paths), local::entries(&paths, hash)))
            .await
            .map_err(|e| Error::Decode(format!("the local scan failed: {e}")))?;
    let ask = PutRequest {
        entries,
        ..req.clone()
    };
    Ok((scan, client.put_plan(&ask).await?))
}

/// `nlds put --dry-run`: what the put would store, and what the local disk says.
/// `put --dry-run` / `putlist --dry-run`: walks the local paths, asks the server which holding
/// would be used, and prints both. Exits [`exit::NOT_FOUND`] when nothing would be put.
///
/// The `rest` of a FILELIST longer than one chunk is walked and asked about a chunk at a time
/// (each a dry run of its own under the same transaction id, so a new holding's label is the
/// same), and the answers joined: the first chunk's holding, every path, verdict and problem in
/// order, the local totals added up (an entry reached from paths in two chunks counts in each).
pub async fn dry_run(
    mut req: PutRequest,
    rest: Option<FilelistRest>,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    req.transaction_id.get_or_insert_with(Uuid::new_v4);
    let (mut scan, mut plan) = plan_chunk(&req, client).await?;
    if let Some(rest) = rest {
        let mut reader = rest.open(io.stdin);
        while let Some(chunk) = rest.next(&mut reader)? {
            let ask = PutRequest {
                paths: chunk,
                ..req.clone()
            };
            let (more_scan, more) = plan_chunk(&ask, client).await?;
            req.paths.extend(ask.paths);
            scan.join(more_scan);
            plan.verdicts.extend(more.verdicts);
        }
    }
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
