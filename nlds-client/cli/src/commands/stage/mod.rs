//! `nlds stage`, `nlds release` and `nlds locality`: the WLCG Tape REST operations (make files
//! warm for a lifetime, let them go again, see where their copies are).

pub mod view;

use std::time::Duration;

use clap::{ArgGroup, Args};
use nlds_client::client::Client;
use nlds_client::config::parse_duration;
use nlds_core::stage::{ArchiveInfoRequest, ReleaseRequest, StageRequest, StageState};
use uuid::Uuid;

use crate::args::HoldingRef;
use crate::ctx::{Ctx, Env, Failure, Io, abs, note, print, print_json};
use crate::exit;
use crate::plan::Plan;

/// How often `nlds stage --wait` asks for progress.
const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("op").args(["status", "cancel", "delete"])))]
pub struct StageArgs {
    /// Paths of stored files (a directory stands for the files under it); with no PATH, the
    /// holding -l/-i names is staged whole. With --cancel, only these files of the request.
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,

    #[command(flatten)]
    pub holding: HoldingRef,

    /// Look in the group's holdings, not only yours.
    #[arg(short = 'A', long)]
    pub groupall: bool,

    /// How long the files stay warm once staged (e.g. 12h, 2d) [default: the server's].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lifetime: Option<Duration>,

    /// Wait until every file is staged, failed or cancelled; exits 12 unless all are staged.
    #[arg(long)]
    pub wait: bool,

    /// Show a stage request's progress instead.
    #[arg(long, value_name = "ID")]
    pub status: Option<Uuid>,

    /// Cancel a stage request (its files not yet staged; all, or the PATHs given).
    #[arg(long, value_name = "ID")]
    pub cancel: Option<Uuid>,

    /// Cancel a stage request and forget it.
    #[arg(long, value_name = "ID")]
    pub delete: Option<Uuid>,
}

#[derive(Debug, Clone, Args)]
pub struct ReleaseArgs {
    /// The stage request whose files may leave the warm tier.
    #[arg(value_name = "ID")]
    pub request_id: Uuid,

    /// Only these files of the request.
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct LocalityArgs {
    /// Paths of stored files.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,

    #[command(flatten)]
    pub holding: HoldingRef,

    /// Look in the group's holdings, not only yours.
    #[arg(short = 'A', long)]
    pub groupall: bool,
}

/// One stage operation, ready to send.
#[derive(Debug, Clone)]
pub enum StagePlan {
    Create { req: StageRequest, wait: bool },
    Status(Uuid),
    Cancel(Uuid, Option<Vec<String>>),
    Delete(Uuid),
    Release(ReleaseRequest),
    Locality(ArchiveInfoRequest),
}

impl StagePlan {
    pub fn set_group(&mut self, group: Option<String>) {
        match self {
            StagePlan::Create { req, .. } => req.group = group,
            StagePlan::Locality(r) => r.group = group,
            _ => {}
        }
    }
}

fn absolute(paths: &[String], env: &Env) -> Result<Vec<String>, Failure> {
    paths.iter().map(|p| abs(p, env)).collect()
}

/// The request of `nlds stage`.
pub fn prepare_stage(a: &StageArgs, env: &Env) -> Result<Plan, Failure> {
    let paths = absolute(&a.paths, env)?;
    let op = if let Some(id) = a.status {
        StagePlan::Status(id)
    } else if let Some(id) = a.cancel {
        StagePlan::Cancel(id, (!paths.is_empty()).then_some(paths))
    } else if let Some(id) = a.delete {
        StagePlan::Delete(id)
    } else {
        if paths.is_empty() && a.holding.label.is_none() && a.holding.holding_id.is_none() {
            return Err(Failure::usage(
                "stage needs PATHs, or a holding (-l/--label or -i/--holding-id) to stage whole",
            ));
        }
        StagePlan::Create {
            req: StageRequest {
                files: paths,
                label: a.holding.label.clone(),
                holding_id: a.holding.holding_id,
                groupall: a.groupall,
                group: None,
                lifetime_secs: a.lifetime.map(|d| d.as_secs().max(1)),
            },
            wait: a.wait,
        }
    };
    Ok(Plan::Stage(op))
}

/// The request of `nlds release`.
pub fn prepare_release(a: &ReleaseArgs, env: &Env) -> Result<Plan, Failure> {
    let paths = absolute(&a.paths, env)?;
    Ok(Plan::Stage(StagePlan::Release(ReleaseRequest {
        request_id: a.request_id,
        paths: (!paths.is_empty()).then_some(paths),
    })))
}

/// The request of `nlds locality`.
pub fn prepare_locality(a: &LocalityArgs, env: &Env) -> Result<Plan, Failure> {
    Ok(Plan::Stage(StagePlan::Locality(ArchiveInfoRequest {
        paths: absolute(&a.paths, env)?,
        label: a.holding.label.clone(),
        holding_id: a.holding.holding_id,
        groupall: a.groupall,
        group: None,
    })))
}

/// Sends the request and shows the answer; returns the exit code.
pub async fn execute(
    plan: StagePlan,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    match plan {
        StagePlan::Create { req, wait } => {
            let created = client.stage(&req).await?;
            if !wait {
                if ctx.json {
                    print_json(io, &created)?;
                } else {
                    print(io, &format!("{}\n", created.request_id));
                    note(
                        io,
                        ctx,
                        &format!("follow it with: nlds stage --status {}", created.request_id),
                    );
                }
                return Ok(exit::OK);
            }
            loop {
                let st = client.stage_status(created.request_id).await?;
                if st.files.iter().all(|f| f.state.is_final()) {
                    return show_status(&st, ctx, io);
                }
                tokio::time::sleep(POLL).await;
            }
        }
        StagePlan::Status(id) => {
            let st = client.stage_status(id).await?;
            show_status(&st, ctx, io)?;
            Ok(exit::OK)
        }
        StagePlan::Cancel(id, paths) => {
            let c = client.stage_cancel(id, paths).await?;
            show_change(&c, ctx, io)
        }
        StagePlan::Delete(id) => {
            let c = client.stage_delete(id).await?;
            show_change(&c, ctx, io)
        }
        StagePlan::Release(req) => {
            let c = client.release(&req).await?;
            show_change(&c, ctx, io)
        }
        StagePlan::Locality(req) => {
            let l = client.archiveinfo(&req).await?;
            if ctx.json {
                print_json(io, &l)?;
            } else {
                print(io, &view::locality_table(&l));
            }
            Ok(if l.iter().any(|f| f.locality.is_none()) {
                exit::NOT_FOUND
            } else {
                exit::OK
            })
        }
    }
}

/// Shows a request's progress; the exit code is 0 unless a file failed or was cancelled (12).
fn show_status(
    st: &nlds_core::stage::StageStatus,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    if ctx.json {
        print_json(io, st)?;
    } else {
        print(io, &view::status_view(st, ctx.zone));
    }
    let bad = st
        .files
        .iter()
        .any(|f| matches!(f.state, StageState::Failed | StageState::Cancelled));
    Ok(if bad { exit::FAILED } else { exit::OK })
}

fn show_change(
    c: &nlds_core::stage::StageChange,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    if ctx.json {
        print_json(io, c)?;
    } else {
        print(io, &view::change_view(c));
    }
    Ok(exit::OK)
}
