//! `nlds admin logs`: the warning and error records the logger collected.

use chrono::{DateTime, Utc};
use clap::{ArgAction, Args};
use nlds_core::admin::{LogLevel, LogPage, LogQuery};
use uuid::Uuid;

use super::options::{Paging, TimeRange, join, more, range};
use crate::args::Order;
use crate::ctx::{Ctx, Failure, Io, note, print, print_json};
use crate::format::{Align, Fit, Zone, col, opt, table, time};
use crate::plan::AdminPlan;
use nlds_client::client::Client;

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Only these services (e.g. transfer-put, catalog-get); repeatable.
    #[arg(long, value_name = "SERVICE", action = ArgAction::Append, value_delimiter = ',')]
    pub service: Vec<String>,

    /// Only these levels (debug, info, warning, error, critical); repeatable.
    #[arg(long, value_name = "LEVEL", value_parser = parse_level, action = ArgAction::Append, value_delimiter = ',')]
    pub level: Vec<LogLevel>,

    /// Only records of this transaction.
    #[arg(
        short = 'n',
        long = "transaction-id",
        alias = "transaction_id",
        value_name = "UUID"
    )]
    pub transaction_id: Option<Uuid>,

    #[command(flatten)]
    pub range: TimeRange,

    #[command(flatten)]
    pub paging: Paging,

    #[command(flatten)]
    pub order: Order,
}

fn parse_level(s: &str) -> Result<LogLevel, String> {
    LogLevel::parse(s)
        .ok_or_else(|| format!("{s:?} is not a level: use debug, info, warning, error or critical"))
}

pub(super) fn prepare(a: &LogsArgs, now: DateTime<Utc>) -> Result<AdminPlan, Failure> {
    let (since, until) = range(&a.range, now)?;
    Ok(AdminPlan::Logs(LogQuery {
        service: join(&a.service),
        level: join(&a.level),
        since,
        until,
        transaction_id: a.transaction_id.map(|t| t.to_string()),
        limit: a.paging.limit,
        offset: a.paging.offset,
        descending: a.order.descending(),
    }))
}

pub(super) async fn execute(
    q: LogQuery,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let page = client.admin_logs(&q).await?;
    if ctx.json {
        print_json(io, &page)?;
    } else if page.entries.is_empty() {
        note(io, ctx, "No log records found.");
    } else {
        print(io, &logs_table(&page, ctx.zone, ctx.width));
        more(
            io,
            ctx,
            page.entries.len(),
            page.offset,
            page.total,
            "records",
        );
    }
    Ok(())
}

/// Log records: time, level, service, user, transaction, message (one line).
pub fn logs_table(p: &LogPage, zone: Zone, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    let rows: Vec<Vec<String>> = p
        .entries
        .iter()
        .map(|e| {
            vec![
                time(&e.time, zone),
                e.level.to_string(),
                e.service.clone(),
                opt(e.user.as_deref()),
                opt(e.transaction_id),
                e.message.replace('\n', " "),
            ]
        })
        .collect();
    table(
        &[
            col("time", Left, Keep),
            col("level", Left, Keep),
            col("service", Left, Keep),
            col("user", Left, End),
            col("transaction", Left, Keep),
            col("message", Left, End),
        ],
        &rows,
        width,
    )
}
