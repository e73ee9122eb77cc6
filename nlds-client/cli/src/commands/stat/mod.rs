//! `nlds stat`: transactions and their state.

pub mod view;

use crate::ctx::{Ctx, Io, more_note, note, print, print_json, print_raw};
use crate::exit;
use nlds_client::client::Client;

use clap::{ArgAction, Args};
use nlds_core::State;
use nlds_core::api::{ApiAction, MAX_LIMIT, StatQuery};
use uuid::Uuid;

use crate::args::{Order, parse_api_action, parse_state};
use crate::ctx::Failure;
use crate::plan::Plan;

#[derive(Debug, Clone, Args)]
pub struct StatArgs {
    /// Transactions of the whole group, not only yours.
    #[arg(short = 'A', long)]
    pub groupall: bool,

    /// The numeric id of a transaction record.
    #[arg(short = 'i', long, value_name = "ID")]
    pub id: Option<i64>,

    /// The transaction's UUID.
    #[arg(
        short = 'n',
        long = "transaction-id",
        alias = "transaction_id",
        value_name = "UUID"
    )]
    pub transaction_id: Option<Uuid>,

    /// The job label (a regular expression with -x).
    #[arg(
        short = 'b',
        long = "job-label",
        alias = "job_label",
        value_name = "JOB_LABEL"
    )]
    pub job_label: Option<String>,

    /// Only these actions (put, putlist, get, getlist, archive-put, archive-get); repeatable.
    #[arg(short = 'a', long = "api-action", alias = "api_action", value_name = "ACTION", value_parser = parse_api_action, action = ArgAction::Append, value_delimiter = ',')]
    pub api_action: Vec<ApiAction>,

    /// Not these actions; repeatable.
    #[arg(short = 'c', long = "exclude-api-action", alias = "exclude_api_action", value_name = "ACTION", value_parser = parse_api_action, action = ArgAction::Append, value_delimiter = ',')]
    pub exclude_api_action: Vec<ApiAction>,

    /// Only transactions in this state (a name like COMPLETE or QUEUED, or a number); repeatable.
    #[arg(short = 's', long, value_name = "STATE", value_parser = parse_state, action = ArgAction::Append, value_delimiter = ',')]
    pub state: Vec<State>,

    /// Treat the job label as a regular expression.
    #[arg(short = 'x', long)]
    pub regex: bool,

    /// Show the sub-records of a transaction.
    #[arg(short = 'S', long = "sub-records", alias = "sub_records")]
    pub sub_records: bool,

    /// Show the failed files and why they failed.
    #[arg(short = 'E', long)]
    pub errors: bool,

    /// Print only the paths of the failed files, one per line (e.g. for putlist).
    #[arg(short = 'F', long = "failed-files", alias = "failed_files")]
    pub failed_files: bool,

    /// At most this many transactions.
    #[arg(short = 'L', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT))]
    pub limit: Option<u64>,

    #[command(flatten)]
    pub order: Order,
}

/// The request of `nlds stat`.
pub fn prepare(a: &StatArgs) -> Result<Plan, Failure> {
    let join = |v: Vec<String>| (!v.is_empty()).then(|| v.join(","));
    Ok(Plan::Stat {
        query: StatQuery {
            group: None,
            groupall: a.groupall,
            id: a.id,
            transaction_id: a.transaction_id.map(|t| t.to_string()),
            job_label: a.job_label.clone(),
            api_action: join(a.api_action.iter().map(|x| x.to_string()).collect()),
            exclude_api_action: join(a.exclude_api_action.iter().map(|x| x.to_string()).collect()),
            state: join(a.state.iter().map(|s| s.name().to_owned()).collect()),
            regex: a.regex,
            limit: a.limit,
            offset: None,
            descending: a.order.descending(),
        },
        sub_records: a.sub_records,
        errors: a.errors,
        failed_files: a.failed_files,
    })
}

/// Sends the request and shows the answer; returns the exit code.
pub async fn execute(
    query: StatQuery,
    sub_records: bool,
    errors: bool,
    failed_files: bool,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let page = client.stat(&query).await?;
    if ctx.json {
        print_json(io, &page)?;
        return Ok(exit::OK);
    }
    if failed_files {
        print_raw(io, &view::failed_paths(&page.transactions));
        return Ok(exit::OK);
    }
    match page.transactions.as_slice() {
        [] => {
            if let Some(id) = query.id {
                return Err(Failure::not_found(format!(
                    "no transaction with id {id} found"
                )));
            }
            if let Some(t) = &query.transaction_id {
                return Err(Failure::not_found(format!("no transaction {t} found")));
            }
            note(io, ctx, "No transactions found.");
        }
        [one] => print(
            io,
            &crate::transaction::transaction_view(one, sub_records, errors, ctx.zone),
        ),
        many => print(io, &view::stat_table(many, ctx.zone, ctx.width)),
    }
    more_note(io, ctx, page.transactions.len(), page.total, "transactions");
    Ok(exit::OK)
}
