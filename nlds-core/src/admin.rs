//! The sysadmin's view: admin-only queries (transactions of every user, failed files of any
//! transaction, the collected logs, the audit log) and the audit record.
//!
//! The server answers these under `/api/v2/admin/...` for service operators only; it resolves the
//! query strings (`*Query`) into filters (`*Filter`) and asks the monitor (`monitor.admin`, payload
//! [`AdminQuery`]) which answers an [`AdminAnswer`]. Audit events travel from the server to the
//! logger on `log.audit` (payload [`AuditEvent`]); the monitor also writes refusals it records
//! itself (files a get or put was refused) in the same database transaction as the update.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::access::AccessRole;
use crate::api::{ApiAction, TransactionPage};
use crate::error::ErrorCode;

/// Longest `detail` an audit record keeps (longer texts are cut, marked with `…`).
pub const AUDIT_DETAIL_MAX: usize = 2000;

// -------------------------------------------------------------------------------------------
// Query strings

/// Query string of `GET /api/v2/admin/transactions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminTransactionQuery {
    /// Only this user's transactions.
    pub user: Option<String>,
    /// Only this group's transactions.
    pub group: Option<String>,
    /// Comma-separated state names or numbers (of the derived transaction state).
    pub state: Option<String>,
    /// Comma-separated api actions.
    pub api_action: Option<String>,
    /// Only transactions created more than this many minutes ago.
    pub older_than_minutes: Option<u64>,
    /// Only transactions created less than this many minutes ago.
    pub newer_than_minutes: Option<u64>,
    /// "No progress for N minutes": not in a final state, and not updated for this long.
    pub stalled_minutes: Option<u64>,
    /// Comma-separated reasons an unfinished batch waits: queued, retrying, tape, cancelled
    /// (docs/WAITING.md).
    pub waiting: Option<String>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    /// Newest first (the default).
    pub descending: Option<bool>,
}

/// Query string of `GET /api/v2/admin/transactions/{transaction_id}/failed`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// Query string of `GET /api/v2/admin/logs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Comma-separated service names (e.g. `transfer-put,catalog`).
    pub service: Option<String>,
    /// Comma-separated levels (`debug`, `info`, `warning`, `error`, `critical`).
    pub level: Option<String>,
    /// Records at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Records before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    pub transaction_id: Option<String>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    /// Newest first (the default).
    pub descending: Option<bool>,
}

/// Query string of `GET /api/v2/admin/audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Who acted.
    pub user: Option<String>,
    /// Comma-separated actions (`put`, `get`, `meta`, `delete`, `list`, `find`, `stat`, ...).
    pub action: Option<String>,
    /// `allowed` or `refused`.
    pub outcome: Option<String>,
    pub holding_id: Option<i64>,
    pub transaction_id: Option<String>,
    /// Records at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Records before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    /// Newest first (the default).
    pub descending: Option<bool>,
}

// -------------------------------------------------------------------------------------------
// Filters (resolved by the server, sent to the monitor)

/// Selects transactions of every user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminTransactionFilter {
    pub user: Option<String>,
    pub group: Option<String>,
    pub states: Vec<crate::State>,
    pub api_actions: Vec<ApiAction>,
    pub created_before: Option<DateTime<Utc>>,
    pub created_after: Option<DateTime<Utc>>,
    /// Not in a final state and last updated before this time.
    pub stalled_since: Option<DateTime<Utc>>,
    /// With an unfinished batch waiting for one of these reasons.
    #[serde(default)]
    pub waiting: Vec<crate::waiting::WaitingReason>,
    /// This one transaction only.
    #[serde(default)]
    pub transaction_id: Option<Uuid>,
    pub limit: u64,
    pub offset: u64,
    pub descending: bool,
}

/// Selects log records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogFilter {
    pub services: Vec<String>,
    pub levels: Vec<LogLevel>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub transaction_id: Option<Uuid>,
    pub limit: u64,
    pub offset: u64,
    pub descending: bool,
}

/// Selects audit records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub user: Option<String>,
    pub actions: Vec<AuditAction>,
    pub outcome: Option<AuditOutcome>,
    pub holding_id: Option<i64>,
    pub transaction_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: u64,
    pub offset: u64,
    pub descending: bool,
}

/// RPC `monitor.admin`: one admin query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminQuery {
    Transactions(AdminTransactionFilter),
    FailedFiles {
        transaction_id: Uuid,
        limit: u64,
        offset: u64,
    },
    Logs(LogFilter),
    Audit(AuditFilter),
    /// The drained roles: list, drain, resume ([`crate::drain`]).
    Drains(crate::drain::DrainRequest),
}

/// The answer to an [`AdminQuery`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminAnswer {
    Transactions(TransactionPage),
    FailedFiles(FailedFilePage),
    Logs(LogPage),
    Audit(AuditPage),
    Drains(crate::drain::Drains),
}

// -------------------------------------------------------------------------------------------
// Answers

/// One failed file of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FailedFileRow {
    /// The batch (sub-record) it failed in.
    pub sub_id: Uuid,
    pub path: String,
    pub code: ErrorCode,
    pub reason: String,
}

/// A page of a transaction's failed files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FailedFilePage {
    pub transaction_id: Uuid,
    pub user: String,
    pub group: String,
    pub files: Vec<FailedFileRow>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// The level of a log record.
#[cfg_attr(
    feature = "db",
    derive(sea_orm::DeriveValueType),
    sea_orm(value_type = "String", from_str = "crate::db::parse")
)]
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase", ascii_case_insensitive, const_into_str)]
pub enum LogLevel {
    Debug,
    Info,
    /// Also parsed from `warn`.
    #[strum(to_string = "warning", serialize = "warn")]
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    pub const ALL: [LogLevel; 5] = crate::variants();

    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }

    /// Case-insensitive; `warn` is `warning`.
    pub fn parse(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }
}

/// One record the logger collected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogEntry {
    pub id: i64,
    pub time: DateTime<Utc>,
    pub level: LogLevel,
    pub service: String,
    #[serde(default)]
    pub transaction_id: Option<Uuid>,
    #[serde(default)]
    pub sub_id: Option<Uuid>,
    #[serde(default)]
    pub user: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// What an audited request did (or tried to do).
#[cfg_attr(
    feature = "db",
    derive(sea_orm::DeriveValueType),
    sea_orm(value_type = "String", from_str = "crate::db::parse")
)]
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", ascii_case_insensitive, const_into_str)]
pub enum AuditAction {
    Put,
    Get,
    /// Changed a holding's label or tags.
    Meta,
    Delete,
    Undelete,
    Purge,
    List,
    Find,
    Stat,
    /// An admin-only endpoint.
    Admin,
    /// Created, cancelled or deleted a stage request.
    Stage,
    /// Released a stage request's pins.
    Release,
    /// Asked where copies of files are (archiveinfo).
    Locality,
    /// Cancelled a put or get.
    Cancel,
    /// Read or changed the caller's notification channels.
    Notify,
}

impl AuditAction {
    pub const ALL: [AuditAction; 15] = crate::variants();

    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }

    /// Case-insensitive.
    pub fn parse(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }

    /// Changes something (an allowed one is always audited; reads only when refused).
    pub fn is_change(self) -> bool {
        matches!(
            self,
            AuditAction::Put
                | AuditAction::Get
                | AuditAction::Meta
                | AuditAction::Delete
                | AuditAction::Undelete
                | AuditAction::Purge
                | AuditAction::Stage
                | AuditAction::Release
                | AuditAction::Cancel
                | AuditAction::Notify
        )
    }
}

/// Whether the audited request was carried out.
#[cfg_attr(
    feature = "db",
    derive(sea_orm::DeriveValueType),
    sea_orm(value_type = "String", from_str = "crate::db::parse")
)]
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", ascii_case_insensitive, const_into_str)]
pub enum AuditOutcome {
    Allowed,
    /// Refused, or (for reads) answered with nothing of what it named.
    Refused,
}

impl AuditOutcome {
    pub const ALL: &'static [AuditOutcome] = <AuditOutcome as strum::VariantArray>::VARIANTS;

    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }

    /// Case-insensitive.
    pub fn parse(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }
}

/// One audit record: who did (or tried) what, to which holding or transaction, and how it ended.
/// Never holds a secret: no token, no object-store key, no query string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    /// Unique: a redelivered event is stored once.
    pub id: Uuid,
    pub time: DateTime<Utc>,
    /// Who acted (the authenticated user).
    pub user: String,
    /// The group the request acted in (or asked for).
    pub group: String,
    /// The caller's role in that group.
    pub role: AccessRole,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    /// `METHOD /path` of the request, or the worker that recorded the event.
    pub endpoint: String,
    #[serde(default)]
    pub holding_id: Option<i64>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub transaction_id: Option<Uuid>,
    /// Whose holdings the request named, when that is another user (legacy `user=`).
    #[serde(default)]
    pub target_user: Option<String>,
    /// Why it was refused.
    #[serde(default)]
    pub code: Option<ErrorCode>,
    /// What was done or why it was refused, in words (at most [`AUDIT_DETAIL_MAX`] characters).
    pub detail: String,
}

/// Cuts `s` to at most `max` characters, marking a cut with `…`.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub records: Vec<AuditEvent>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(&a.as_str().to_uppercase()), Some(a));
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        }
        for l in LogLevel::ALL {
            assert_eq!(LogLevel::parse(l.as_str()), Some(l));
            assert_eq!(serde_json::to_string(&l).unwrap(), format!("\"{l}\""));
        }
        assert_eq!(LogLevel::parse("WARN"), Some(LogLevel::Warning));
        assert_eq!(AuditOutcome::parse("Refused"), Some(AuditOutcome::Refused));
        assert!(AuditAction::parse("dance").is_none());
        assert!(AuditAction::Meta.is_change() && !AuditAction::Find.is_change());
    }

    #[test]
    fn details_are_clipped() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("üüüü", 2), "ü…");
    }
}
