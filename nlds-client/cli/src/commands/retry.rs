//! `nlds retry TRANSACTION_ID`: put the files a finished put failed again.

use clap::Args;
use uuid::Uuid;

use crate::args::WaitOpts;
use crate::ctx::{Ctx, Failure, Io, after_submit, submit_failure, wait_plan};
use crate::plan::{Plan, WaitPlan};
use nlds_client::client::Client;

#[derive(Debug, Clone, Args)]
pub struct RetryArgs {
    /// The put whose failed files to put again (its UUID).
    #[arg(value_name = "TRANSACTION_ID")]
    pub transaction_id: Uuid,

    #[command(flatten)]
    pub wait: WaitOpts,
}

/// The request of `nlds retry`.
pub fn prepare(a: &RetryArgs) -> Plan {
    Plan::Retry(a.transaction_id, wait_plan(&a.wait))
}

/// Asks for the retry: a new put of the failed files, into the same holding, linked to the first
/// (`nlds stat -n ID` shows the link both ways).
pub async fn execute(
    id: Uuid,
    wait: Option<WaitPlan>,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let accepted = client
        .retry(id)
        .await
        .map_err(|e| submit_failure(e, None))?;
    after_submit(client, ctx, io, accepted, wait).await
}
