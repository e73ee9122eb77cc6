//! `nlds admin ...`: the sysadmin's view (service operators only): transactions of every user,
//! the failed files of any transaction, the records the logger collected, the audit log, and
//! purging deleted files. Tables are laid out like the other commands' (they fit the terminal);
//! `--json` prints the server's page.

use chrono::{DateTime, Utc};
use clap::{ArgAction, Args, Subcommand};
use nlds_core::State;
use nlds_core::admin::{
    AdminTransactionQuery, AuditAction, AuditPage, AuditQuery, FailedFilePage, LogLevel, LogPage,
    LogQuery, PageQuery,
};
use nlds_core::api::{ApiAction, MAX_LIMIT, TransactionPage};
use uuid::Uuid;

use crate::args::{Order, parse_api_action, parse_state};
use crate::ctx::{Ctx, Failure, Io, note, print, print_json};
use crate::exit;
use crate::format::{Align, Fit, Zone, col, state_name, table, time};
pub use crate::plan::AdminPlan;
use crate::plan::Plan;
use nlds_client::client::Client;
use nlds_client::config::parse_duration;

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
    /// The audit log: who put, got, changed or deleted what, and every refused attempt.
    Audit(AuditArgs),
    /// Purge deleted files now, whatever their retention period (of one holding, or all).
    Purge(crate::commands::del::PurgeArgs),
}

/// Paging options shared by the admin commands.
#[derive(Debug, Clone, Default, Args)]
pub struct Paging {
    /// At most this many rows.
    #[arg(short = 'L', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT))]
    pub limit: Option<u64>,

    /// Skip this many rows first (the next page: --offset of the last plus its rows).
    #[arg(long, value_name = "N")]
    pub offset: Option<u64>,
}

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

    #[command(flatten)]
    pub paging: Paging,

    #[command(flatten)]
    pub order: Order,
}

#[derive(Debug, Clone, Args)]
pub struct FailedArgs {
    /// The transaction's UUID.
    #[arg(value_name = "TRANSACTION_ID")]
    pub transaction_id: Uuid,

    #[command(flatten)]
    pub paging: Paging,
}

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

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
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

/// `--since` / `--until`: a time (RFC 3339, e.g. 2026-11-25T08:00:00Z) or a duration ago (2h).
#[derive(Debug, Clone, Default, Args)]
pub struct TimeRange {
    /// From this time on: RFC 3339 (2026-11-25T08:00:00Z) or a duration ago (e.g. 2h).
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    pub since: Option<When>,

    /// Before this time: RFC 3339 or a duration ago.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    pub until: Option<When>,
}

/// A point in time given on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    At(DateTime<Utc>),
    Ago(std::time::Duration),
}

impl When {
    fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            When::At(t) => t,
            When::Ago(d) => now - chrono::Duration::from_std(d).unwrap_or_default(),
        }
    }
}

/// An RFC 3339 time, or a duration meaning that long ago.
pub fn parse_when(s: &str) -> Result<When, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(When::At(t.with_timezone(&Utc)));
    }
    parse_duration(s).map(When::Ago).map_err(|_| {
        format!("{s:?} is neither a time (RFC 3339, e.g. 2026-11-25T08:00:00Z) nor a duration ago (e.g. 2h)")
    })
}

fn parse_level(s: &str) -> Result<LogLevel, String> {
    LogLevel::parse(s)
        .ok_or_else(|| format!("{s:?} is not a level: use debug, info, warning, error or critical"))
}

fn parse_audit_action(s: &str) -> Result<AuditAction, String> {
    AuditAction::parse(s).ok_or_else(|| {
        format!(
            "{s:?} is not an audited action: use put, get, meta, delete, undelete, purge, list, find, stat or admin"
        )
    })
}

/// Whole minutes, rounded up (a duration under a minute is one minute).
fn minutes(d: Option<std::time::Duration>) -> Option<u64> {
    d.map(|d| d.as_secs().div_ceil(60).max(1))
}

fn join<T: ToString>(v: &[T]) -> Option<String> {
    (!v.is_empty()).then(|| v.iter().map(T::to_string).collect::<Vec<_>>().join(","))
}

/// The request of `nlds admin ...`.
pub fn prepare(c: &AdminCommand, now: DateTime<Utc>) -> Result<Plan, Failure> {
    Ok(Plan::Admin(match c {
        AdminCommand::Purge(a) => return Ok(crate::commands::del::prepare_purge(a)),
        AdminCommand::Transactions(a) => AdminPlan::Transactions(AdminTransactionQuery {
            user: a.by_user.clone(),
            group: a.in_group.clone(),
            state: join(&a.state.iter().map(|s| s.name()).collect::<Vec<_>>()),
            api_action: join(&a.api_action),
            older_than_minutes: minutes(a.older_than),
            newer_than_minutes: minutes(a.newer_than),
            stalled_minutes: minutes(a.stalled),
            limit: a.paging.limit,
            offset: a.paging.offset,
            descending: a.order.descending(),
        }),
        AdminCommand::Failed(a) => AdminPlan::Failed(
            a.transaction_id,
            PageQuery {
                limit: a.paging.limit,
                offset: a.paging.offset,
            },
        ),
        AdminCommand::Logs(a) => {
            let (since, until) = range(&a.range, now)?;
            AdminPlan::Logs(LogQuery {
                service: join(&a.service),
                level: join(&a.level),
                since,
                until,
                transaction_id: a.transaction_id.map(|t| t.to_string()),
                limit: a.paging.limit,
                offset: a.paging.offset,
                descending: a.order.descending(),
            })
        }
        AdminCommand::Audit(a) => {
            let (since, until) = range(&a.range, now)?;
            AdminPlan::Audit(AuditQuery {
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
            })
        }
    }))
}

type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn range(r: &TimeRange, now: DateTime<Utc>) -> Result<Range, Failure> {
    let since = r.since.map(|w| w.resolve(now));
    let until = r.until.map(|w| w.resolve(now));
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(Failure::usage(format!(
            "--since ({s}) must be before --until ({u})"
        )));
    }
    Ok((since, until))
}

fn more(io: &mut Io<'_>, ctx: &Ctx, shown: usize, offset: u64, total: u64, what: &str) {
    let end = offset + shown as u64;
    if total > end {
        note(
            io,
            ctx,
            &format!(
                "note: showing {what} {}-{end} of {total}; the next page: --offset {end}",
                offset + 1
            ),
        );
    }
}

/// Sends an admin query and prints the answer.
pub async fn execute(
    plan: AdminPlan,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    match plan {
        AdminPlan::Transactions(q) => {
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
        }
        AdminPlan::Failed(tid, q) => {
            let page = client.admin_failed_files(tid, &q).await?;
            if ctx.json {
                print_json(io, &page)?;
            } else {
                print(io, &failed_view(&page, ctx.width));
                more(io, ctx, page.files.len(), page.offset, page.total, "files");
            }
        }
        AdminPlan::Logs(q) => {
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
        }
        AdminPlan::Audit(q) => {
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
        }
    }
    Ok(exit::OK)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Every user's transactions: user, group, id, action, job label, label, done, state, started,
/// last update, transaction id.
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
            col("transaction", Left, Keep),
        ],
        &rows,
        width,
    )
}

/// A transaction's failed files: whose it is, then path, code and reason.
pub fn failed_view(p: &FailedFilePage, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    let mut out = format!(
        "transaction {} of {} ({}): {} failed file(s)\n",
        p.transaction_id, p.user, p.group, p.total
    );
    if p.files.is_empty() {
        return out;
    }
    let rows: Vec<Vec<String>> = p
        .files
        .iter()
        .map(|f| vec![f.path.clone(), f.code.to_string(), f.reason.clone()])
        .collect();
    out.push_str(&table(
        &[
            col("path", Left, Start),
            col("code", Left, Keep),
            col("reason", Left, End),
        ],
        &rows,
        width,
    ));
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use nlds_core::AccessRole;
    use nlds_core::ErrorCode;
    use nlds_core::admin::{AuditEvent, AuditOutcome, FailedFileRow, LogEntry};

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn times_and_durations_on_the_command_line() {
        assert_eq!(parse_when("2026-11-25T08:00:00Z").unwrap(), When::At(t0()));
        assert_eq!(
            parse_when("2h").unwrap().resolve(t0()),
            t0() - chrono::Duration::hours(2)
        );
        assert!(parse_when("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(minutes(Some(std::time::Duration::from_secs(61))), Some(2));
        assert_eq!(minutes(Some(std::time::Duration::from_secs(5))), Some(1));
        let r = TimeRange {
            since: Some(When::Ago(std::time::Duration::from_secs(60))),
            until: Some(When::Ago(std::time::Duration::from_secs(120))),
        };
        assert!(range(&r, t0()).is_err());
    }

    #[test]
    fn queries_from_options() {
        let a = TransactionsArgs {
            by_user: Some("alice".into()),
            in_group: None,
            state: vec![State::Failed, State::Complete],
            api_action: vec![ApiAction::Put],
            older_than: None,
            newer_than: Some(std::time::Duration::from_secs(1800)),
            stalled: Some(std::time::Duration::from_secs(600)),
            paging: Paging {
                limit: Some(5),
                offset: Some(10),
            },
            order: Order {
                descending: false,
                ascending: true,
            },
        };
        let Plan::Admin(AdminPlan::Transactions(q)) =
            prepare(&AdminCommand::Transactions(a), t0()).unwrap()
        else {
            panic!()
        };
        assert_eq!(q.user.as_deref(), Some("alice"));
        assert_eq!(q.state.as_deref(), Some("FAILED,COMPLETE"));
        assert_eq!(q.api_action.as_deref(), Some("put"));
        assert_eq!(
            (q.newer_than_minutes, q.stalled_minutes),
            (Some(30), Some(10))
        );
        assert_eq!(
            (q.limit, q.offset, q.descending),
            (Some(5), Some(10), Some(false))
        );
    }

    #[test]
    fn tables() {
        let page = AuditPage {
            records: vec![AuditEvent {
                id: Uuid::nil(),
                time: t0(),
                user: "bob".into(),
                group: "climate".into(),
                role: AccessRole::User,
                action: AuditAction::Meta,
                outcome: AuditOutcome::Refused,
                endpoint: "POST /api/v2/meta".into(),
                holding_id: Some(4),
                label: None,
                transaction_id: None,
                target_user: Some("alice".into()),
                code: Some(ErrorCode::Forbidden),
                detail: "holding 4 belongs to another user".into(),
            }],
            total: 1,
            limit: 1000,
            offset: 0,
        };
        let t = audit_table(&page, Zone::Utc, None);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("time"));
        assert!(lines[1].starts_with("2026-11-25T08:00:00+00:00  bob (as alice)  climate"));
        assert!(lines[1].contains("refused") && lines[1].ends_with("another user"));
        let narrow = audit_table(&page, Zone::Utc, Some(120));
        assert!(
            narrow.lines().all(|l| crate::format::text_width(l) <= 120),
            "{narrow}"
        );
        assert!(narrow.contains("holding 4 …"), "{narrow}");

        let logs = LogPage {
            entries: vec![LogEntry {
                id: 1,
                time: t0(),
                level: LogLevel::Warning,
                service: "catalog-get".into(),
                transaction_id: None,
                sub_id: None,
                user: Some("bob".into()),
                message: "1 file(s) failed\nat catalog-get".into(),
            }],
            total: 1,
            limit: 1,
            offset: 0,
        };
        let t = logs_table(&logs, Zone::Utc, None);
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .ends_with("1 file(s) failed at catalog-get"),
            "{t}"
        );

        let failed = FailedFilePage {
            transaction_id: Uuid::nil(),
            user: "bob".into(),
            group: "climate".into(),
            files: vec![FailedFileRow {
                sub_id: Uuid::nil(),
                path: "/a/x".into(),
                code: ErrorCode::NotFound,
                reason: "not yours".into(),
            }],
            total: 1,
            limit: 10,
            offset: 0,
        };
        let t = failed_view(&failed, None);
        assert!(t.starts_with(&format!(
            "transaction {} of bob (climate): 1 failed file(s)\n",
            Uuid::nil()
        )));
        assert!(t.contains("/a/x  not_found  not yours"), "{t}");
    }
}
