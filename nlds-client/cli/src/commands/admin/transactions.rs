//! `nlds admin transactions`: every user's transactions, filtered.

use clap::builder::PossibleValuesParser;
use clap::{ArgAction, Args};
use nlds_core::State;
use nlds_core::admin::AdminTransactionQuery;
use nlds_core::api::{ApiAction, TransactionPage};
use nlds_core::waiting::WaitingReason;

use super::options::{Paging, join, minutes, more};
use crate::args::{Order, parse_api_action, parse_state};
use crate::ctx::{Ctx, Failure, Io, note, print, print_json};
use crate::format::{Align, Fit, Zone, col, opt, state_name, table, time};
use crate::plan::AdminPlan;
use nlds_client::client::Client;
use nlds_client::config::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct TransactionsArgs {
    /// Only this user's transactions.
    #[arg(long = "by-user", value_name = "USER")]
    pub by_user: Option<String>,

    /// Only this group's transactions.
    #[arg(long = "in-group", value_name = "GROUP")]
    pub in_group: Option<String>,

    /// Only transactions in this state (a name like FAILED, or a number); repeatable.
    #[arg(short = 's', long, value_name = "STATE", value_parser = parse_state, action = ArgAction::Append, value_delimiter = ',')]
    pub state: Vec<State>,

    /// Only these actions (put, putlist, get, getlist, archive-put, archive-get, ...); repeatable.
    #[arg(short = 'a', long = "api-action", alias = "api_action", value_name = "ACTION", value_parser = parse_api_action, action = ArgAction::Append, value_delimiter = ',')]
    pub api_action: Vec<ApiAction>,

    /// Only transactions started longer ago than this (e.g. 2h, 3d as 72h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<std::time::Duration>,

    /// Only transactions started less long ago than this (e.g. 30m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub newer_than: Option<std::time::Duration>,

    /// Only unfinished transactions with no progress for this long (e.g. 30m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stalled: Option<std::time::Duration>,

    /// Only transactions with a batch waiting for this reason (queued, retrying, tape,
    /// cancelled); repeatable.
    #[arg(long, value_name = "REASON", value_parser = PossibleValuesParser::new(WaitingReason::ALL.map(<&'static str>::from)), action = ArgAction::Append, value_delimiter = ',')]
    pub waiting: Vec<String>,

    #[command(flatten)]
    pub paging: Paging,

    #[command(flatten)]
    pub order: Order,
}

pub(super) fn prepare(a: &TransactionsArgs) -> AdminPlan {
    AdminPlan::Transactions(AdminTransactionQuery {
        user: a.by_user.clone(),
        group: a.in_group.clone(),
        state: join(&a.state.iter().map(|s| s.name()).collect::<Vec<_>>()),
        api_action: join(&a.api_action),
        older_than_minutes: minutes(a.older_than),
        newer_than_minutes: minutes(a.newer_than),
        stalled_minutes: minutes(a.stalled),
        waiting: join(&a.waiting),
        limit: a.paging.limit,
        offset: a.paging.offset,
        descending: a.order.descending(),
    })
}

pub(super) async fn execute(
    q: AdminTransactionQuery,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let page = client.admin_transactions(&q).await?;
    if ctx.json {
        print_json(io, &page)?;
    } else if page.transactions.is_empty() {
        note(io, ctx, "No transactions found.");
    } else {
        print(io, &transactions_table(&page, ctx.zone, ctx.width));
        more(
            io,
            ctx,
            page.transactions.len(),
            page.offset,
            page.total,
            "transactions",
        );
    }
    Ok(())
}

/// Why the unfinished batches of `t` wait, the distinct reasons in order of first appearance
/// (`tape,retrying`); empty when none waits.
fn waiting_reasons(t: &nlds_core::api::TransactionStatus) -> String {
    let mut reasons: Vec<String> = Vec::new();
    for r in t
        .sub_records
        .iter()
        .filter_map(|s| s.waiting.as_ref())
        .map(|w| w.reason().to_string())
    {
        if !reasons.contains(&r) {
            reasons.push(r);
        }
    }
    reasons.join(",")
}

/// Every user's transactions: user, group, id, action, job label, label, done, state, started,
/// last update, why it waits, transaction id.
pub fn transactions_table(p: &TransactionPage, zone: Zone, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    let rows: Vec<Vec<String>> = p
        .transactions
        .iter()
        .map(|t| {
            vec![
                t.user.clone(),
                t.group.clone(),
                t.id.to_string(),
                t.api_action.to_string(),
                t.job_label.clone(),
                opt(t.label.as_deref()),
                format!("{}%", t.percent),
                state_name(t.state).to_owned(),
                time(&t.created, zone),
                time(&t.updated, zone),
                waiting_reasons(t),
                t.transaction_id.to_string(),
            ]
        })
        .collect();
    table(
        &[
            col("user", Left, End),
            col("group", Left, End),
            col("id", Right, Keep),
            col("action", Left, Keep),
            col("job label", Left, End),
            col("label", Left, End),
            col("done", Right, Keep),
            col("state", Left, Keep),
            col("started", Left, Keep),
            col("last update", Left, Keep),
            col("waiting", Left, End),
            col("transaction", Left, Keep),
        ],
        &rows,
        width,
    )
}
