//! `nlds wait TRANSACTION_ID`: wait for a transaction to finish.

use std::time::Duration;

use clap::Args;
use uuid::Uuid;

use crate::ctx::Failure;
use crate::plan::{Plan, WaitPlan};
use nlds_client::config::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// The transaction's UUID.
    #[arg(value_name = "TRANSACTION_ID")]
    pub transaction_id: Uuid,

    /// Time between two polls (e.g. 5, 5s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub poll: Duration,

    /// Give up after this long (e.g. 30m, 2h); no limit by default.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// The request of `nlds wait`.
pub fn prepare(a: &WaitArgs) -> Result<Plan, Failure> {
    Ok(Plan::Wait(
        a.transaction_id,
        WaitPlan {
            poll: a.poll,
            timeout: a.timeout,
        },
    ))
}
