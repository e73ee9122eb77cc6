//! `nlds list`: the holdings.

pub mod view;

use crate::ctx::{Ctx, Io, more_note, note, print, print_json, selection};
use crate::exit;
use nlds_client::client::Client;

use clap::Args;
use nlds_core::api::{HoldingQuery, MAX_LIMIT};
use uuid::Uuid;

use crate::args::{HoldingSel, Order};
use crate::ctx::{Failure, query_tag};
use crate::plan::Plan;

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// List the holdings of the whole group, not only yours.
    #[arg(short = 'A', long)]
    pub groupall: bool,

    #[command(flatten)]
    pub holding: HoldingSel,

    /// The holding that holds this transaction.
    #[arg(
        short = 'n',
        long = "transaction-id",
        alias = "transaction_id",
        value_name = "UUID"
    )]
    pub transaction_id: Option<Uuid>,

    /// Treat the label as a regular expression.
    #[arg(short = 'x', long)]
    pub regex: bool,

    /// At most this many holdings.
    #[arg(short = 'L', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT))]
    pub limit: Option<u64>,

    #[command(flatten)]
    pub order: Order,
}

/// The request of `nlds list`.
pub fn prepare(a: &ListArgs) -> Result<Plan, Failure> {
    Ok(Plan::List(HoldingQuery {
        group: None,
        groupall: a.groupall,
        label: a.holding.label.clone(),
        holding_id: a.holding.holding_id,
        transaction_id: a.transaction_id.map(|t| t.to_string()),
        tag: query_tag(&a.holding)?,
        path: None,
        regex: a.regex,
        limit: a.limit,
        offset: None,
        descending: a.order.descending(),
        ..HoldingQuery::default()
    }))
}

/// Sends the request and shows the answer; returns the exit code.
pub async fn execute(
    q: HoldingQuery,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let page = client.list(&q).await?;
    let unmatched = (page.total == 0).then(|| selection(&q)).flatten();
    if ctx.json {
        print_json(io, &page)?;
        return Ok(if unmatched.is_some() {
            exit::NOT_FOUND
        } else {
            exit::OK
        });
    }
    match page.holdings.as_slice() {
        [] => {
            if let Some(id) = q.holding_id {
                return Err(Failure::not_found(format!("no holding with id {id} found")));
            }
            if let Some(t) = &q.transaction_id {
                return Err(Failure::not_found(format!(
                    "no holding holds transaction {t}"
                )));
            }
            if let Some(asked) = unmatched {
                return Err(Failure::not_found(format!("no holding matches {asked}")));
            }
            note(io, ctx, "No holdings found.");
        }
        [one] => print(io, &view::holding_view(one, ctx.zone)),
        many => print(io, &view::holdings_table(many, ctx.zone, ctx.width)),
    }
    more_note(io, ctx, page.holdings.len(), page.total, "holdings");
    Ok(exit::OK)
}
