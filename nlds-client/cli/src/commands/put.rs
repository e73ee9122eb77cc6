//! `nlds put PATH` and `nlds putlist FILELIST`: store files.

use std::io::Read;

use clap::Args;
use nlds_core::api::PutRequest;
use uuid::Uuid;

use crate::args::{DryRun, HoldingSel, WaitOpts};
use crate::ctx::{Env, Failure, abs, all_tags, read_filelist, wait_plan};
use crate::plan::Plan;

#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// The file or directory to put. Made absolute; symlinks are not resolved.
    #[arg(value_name = "PATH")]
    pub path: String,

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
    pub dry_run: DryRun,

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
    pub dry_run: DryRun,

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
        },
        wait_plan(&a.wait),
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
        },
        wait_plan(&a.wait),
    ))
}
