//! `nlds admin ...`: the sysadmin's view (service operators only): transactions of every user,
//! the failed files of any transaction, the records the logger collected, the audit log,
//! archiving and evicting now, purging deleted files, and draining roles for maintenance. Tables are laid out like the other commands' (they fit the terminal);
//! `--json` prints the server's page.

mod audit;
pub mod drains;
mod failed;
mod logs;
mod options;
pub mod policy;
pub mod storage;
#[cfg(test)]
mod tests;
mod tiers;
mod transactions;

use chrono::{DateTime, Utc};
use clap::Subcommand;

use crate::ctx::{Ctx, Failure, Io};
use crate::exit;
pub use crate::plan::AdminPlan;
use crate::plan::Plan;
use nlds_client::client::Client;

pub use audit::{AuditArgs, audit_table};
pub use failed::{FailedArgs, failed_view};
pub use logs::{LogsArgs, logs_table};
pub use options::{Paging, TimeRange, When, parse_when};
pub use transactions::{TransactionsArgs, transactions_table};

/// `nlds admin ...`
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Transactions of every user, filtered by user, group, state, action and age, or those that
    /// made no progress for a while (`--stalled 30m`).
    Transactions(TransactionsArgs),
    /// The failed files of any transaction, with their reasons.
    Failed(FailedArgs),
    /// The warning and error records the logger collected from every service.
    Logs(LogsArgs),
    /// The audit log: who put, got, changed or deleted what, and every refused attempt;
    /// `nlds admin audit storage`: the catalogue against what the stores hold (scrub, repair).
    Audit(AuditArgs),
    /// Start an archive round now: files due for tape are aggregated and written to the cold
    /// store (the policy's passes do this on their own schedule).
    Archive,
    /// Drop a holding's warm copies that have a verified cold copy (the policy evicts by age
    /// and access on its own).
    Evict(tiers::EvictArgs),
    /// Purge deleted files now, whatever their retention period (of one holding, or all).
    Purge(crate::commands::del::PurgeArgs),
    /// Quotas per group: set limits, show every group's usage.
    #[command(subcommand)]
    Quota(crate::commands::quota::AdminQuotaCommand),
    /// The tiering policy: dry run, run a pass now, status, reload the rules, reset the breaker.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Notifications of every user and the operators' alerts in a state: dead letters (every
    /// try failed) by default, or pending or sent.
    Notifications(crate::commands::notify::AdminArgs),
    /// Stop a role taking new work, for maintenance: its processes finish what they have in
    /// hand, its messages wait in its queue (also across restarts) until `nlds admin resume`.
    Drain(drains::DrainArgs),
    /// Let a drained role take work again.
    Resume(drains::ResumeArgs),
    /// The roles drained now: since when, by whom and why.
    Drains,
}

/// The request of `nlds admin ...`.
pub fn prepare(c: &AdminCommand, now: DateTime<Utc>) -> Result<Plan, Failure> {
    Ok(Plan::Admin(match c {
        AdminCommand::Purge(a) => return Ok(crate::commands::del::prepare_purge(a)),
        AdminCommand::Quota(c) => return crate::commands::quota::prepare_admin(c),
        AdminCommand::Notifications(a) => return crate::commands::notify::prepare_admin(a),
        AdminCommand::Archive => AdminPlan::Archive,
        AdminCommand::Drain(a) => drains::prepare_drain(a)?,
        AdminCommand::Resume(a) => drains::prepare_resume(a)?,
        AdminCommand::Drains => AdminPlan::Drains(drains::DrainPlan::List),
        AdminCommand::Evict(a) => tiers::prepare_evict(a),
        AdminCommand::Transactions(a) => transactions::prepare(a),
        AdminCommand::Failed(a) => failed::prepare(a),
        AdminCommand::Logs(a) => logs::prepare(a, now)?,
        AdminCommand::Audit(a) => audit::prepare(a, now)?,
        AdminCommand::Policy(c) => policy::prepare(c),
    }))
}

/// Sends an admin query and prints the answer.
pub async fn execute(
    plan: AdminPlan,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    match plan {
        AdminPlan::Archive => tiers::archive(client, ctx, io).await?,
        AdminPlan::Drains(p) => drains::execute(p, client, ctx, io).await?,
        AdminPlan::Evict(holding_id) => tiers::evict(holding_id, client, ctx, io).await?,
        AdminPlan::Transactions(q) => transactions::execute(q, client, ctx, io).await?,
        AdminPlan::Failed(tid, q) => failed::execute(tid, q, client, ctx, io).await?,
        AdminPlan::Logs(q) => logs::execute(q, client, ctx, io).await?,
        AdminPlan::Audit(q) => audit::execute(q, client, ctx, io).await?,
        AdminPlan::Policy(p) => return policy::execute(p, client, ctx, io).await,
        AdminPlan::Storage(p) => return storage::execute(p, client, ctx, io).await,
    }
    Ok(exit::OK)
}
