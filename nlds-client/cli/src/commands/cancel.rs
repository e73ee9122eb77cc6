//! `nlds cancel TRANSACTION_ID`: stop a put or get that has not ended.

use clap::Args;
use uuid::Uuid;

use crate::args::WaitOpts;
use crate::ctx::{Ctx, Failure, Io, note, print, print_json, wait_for, wait_plan};
use crate::exit;
use crate::plan::{Plan, WaitPlan};
use nlds_client::client::Client;

#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    /// The put or get to cancel (its UUID).
    #[arg(value_name = "TRANSACTION_ID")]
    pub transaction_id: Uuid,

    #[command(flatten)]
    pub wait: WaitOpts,
}

/// The request of `nlds cancel`.
pub fn prepare(a: &CancelArgs) -> Plan {
    Plan::Cancel(a.transaction_id, wait_plan(&a.wait))
}

/// Asks for the cancel; with `--wait`, waits until the transaction has ended (CANCELLED, exit
/// 13, or how it ended if it finished first).
pub async fn execute(
    id: Uuid,
    wait: Option<WaitPlan>,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let answer = client.cancel(id).await.map_err(Failure::Client)?;
    if ctx.json && wait.is_none() {
        print_json(io, &answer)?;
        return Ok(exit::OK);
    }
    if !ctx.json {
        let again = if answer.first {
            ""
        } else {
            " (it had been cancelled already)"
        };
        print(
            io,
            &format!(
                "Cancelling {} {id}{again}: it was {}.",
                answer.api_action, answer.state
            ),
        );
        if answer.waiting_ended > 0 {
            print(
                io,
                &format!(
                    "{} batch(es) waiting for a recall from tape ended at once.",
                    answer.waiting_ended
                ),
            );
        }
    }
    match wait {
        Some(w) => wait_for(client, ctx, io, id, w).await,
        None => {
            note(
                io,
                ctx,
                &format!(
                    "It ends CANCELLED once the steps it has running stop; files already stored \
                     stay. Follow it with `nlds wait {id}`."
                ),
            );
            Ok(exit::OK)
        }
    }
}
