//! `nlds admin audit`: who put, got, changed or deleted what, and every refused attempt (the
//! audit log). `nlds admin audit storage` and `purge-quarantine` are the storage audit's
//! (`super::storage`).

use chrono::{DateTime, Utc};
use clap::{ArgAction, Args};
use nlds_core::admin::{AuditAction, AuditPage, AuditQuery};
use uuid::Uuid;

use super::options::{Paging, TimeRange, join, more, range};
use crate::args::Order;
use crate::ctx::{Ctx, Failure, Io, note, print, print_json};
use crate::format::{Align, Fit, Zone, col, opt, table, time};
use crate::plan::AdminPlan;
use nlds_client::client::Client;

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    /// The storage audit, or the purge of its quarantine (without one: the audit log).
    #[command(subcommand)]
    pub storage: Option<super::storage::AuditSubcommand>,

    /// Only what this user did.
    #[arg(long = "by-user", value_name = "USER")]
    pub by_user: Option<String>,

    /// Only these actions (put, get, meta, delete, undelete, purge, list, find, stat, admin);
    /// repeatable.
    #[arg(long, value_name = "ACTION", value_parser = parse_audit_action, action = ArgAction::Append, value_delimiter = ',')]
    pub action: Vec<AuditAction>,

    /// Only refused attempts.
    #[arg(long, conflicts_with = "allowed")]
    pub refused: bool,

    /// Only what was carried out.
    #[arg(long)]
    pub allowed: bool,

    /// Only records about this holding.
    #[arg(
        short = 'i',
        long = "holding-id",
        alias = "holding_id",
        value_name = "ID"
    )]
    pub holding_id: Option<i64>,

    /// Only records about this transaction.
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

fn parse_audit_action(s: &str) -> Result<AuditAction, String> {
    AuditAction::parse(s).ok_or_else(|| {
        format!(
            "{s:?} is not an audited action: use put, get, meta, delete, undelete, purge, list, find, stat or admin"
        )
    })
}

pub(super) fn prepare(a: &AuditArgs, now: DateTime<Utc>) -> Result<AdminPlan, Failure> {
    if let Some(c) = &a.storage {
        return Ok(super::storage::prepare(c));
    }
    let (since, until) = range(&a.range, now)?;
    Ok(AdminPlan::Audit(AuditQuery {
        user: a.by_user.clone(),
        action: join(&a.action),
        outcome: if a.refused {
            Some("refused".into())
        } else if a.allowed {
            Some("allowed".into())
        } else {
            None
        },
        holding_id: a.holding_id,
        transaction_id: a.transaction_id.map(|t| t.to_string()),
        since,
        until,
        limit: a.paging.limit,
        offset: a.paging.offset,
        descending: a.order.descending(),
    }))
}

pub(super) async fn execute(
    q: AuditQuery,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let page = client.admin_audit(&q).await?;
    if ctx.json {
        print_json(io, &page)?;
    } else if page.records.is_empty() {
        note(io, ctx, "No audit records found.");
    } else {
        print(io, &audit_table(&page, ctx.zone, ctx.width));
        more(
            io,
            ctx,
            page.records.len(),
            page.offset,
            page.total,
            "records",
        );
    }
    Ok(())
}

/// Audit records: time, user, group, role, action, outcome, holding, transaction, endpoint,
/// detail.
pub fn audit_table(p: &AuditPage, zone: Zone, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    let rows: Vec<Vec<String>> = p
        .records
        .iter()
        .map(|r| {
            let who = match &r.target_user {
                Some(t) => format!("{} (as {t})", r.user),
                None => r.user.clone(),
            };
            vec![
                time(&r.time, zone),
                who,
                r.group.clone(),
                r.role.to_string(),
                r.action.to_string(),
                r.outcome.to_string(),
                opt(r.holding_id),
                opt(r.transaction_id),
                r.endpoint.clone(),
                r.detail.replace('\n', " "),
            ]
        })
        .collect();
    table(
        &[
            col("time", Left, Keep),
            col("user", Left, End),
            col("group", Left, End),
            col("role", Left, Keep),
            col("action", Left, Keep),
            col("outcome", Left, Keep),
            col("holding", Right, Keep),
            col("transaction", Left, Keep),
            col("endpoint", Left, End),
            col("detail", Left, End),
        ],
        &rows,
        width,
    )
}
