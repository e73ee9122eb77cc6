//! A command, ready to send: what `prepare` makes of the command line and `execute` sends.

use std::time::Duration;

use nlds_core::admin::{AdminTransactionQuery, AuditQuery, LogQuery, PageQuery};
use nlds_core::api::{
    DeleteRequest, GetRequest, HoldingQuery, MetaRequest, PurgeRequest, PutRequest, StatQuery,
    UndeleteRequest,
};
use uuid::Uuid;

use crate::filelist::FilelistRest;

/// How long and how often to wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitPlan {
    pub poll: Duration,
    pub timeout: Option<Duration>,
}

/// A command, ready to send.
#[derive(Debug, Clone)]
pub enum Plan {
    Stage(crate::commands::stage::StagePlan),
    /// `put`, `putlist`; the flag: check the local paths before submitting (not `--no-check`);
    /// the rest of a FILELIST longer than one chunk, read as it is sent (the request holds the
    /// first chunk).
    Put(PutRequest, Option<WaitPlan>, bool, Option<FilelistRest>),
    /// `get`, `getlist`; the rest of the FILELIST as for `Put`.
    Get(GetRequest, Option<WaitPlan>, Option<FilelistRest>),
    List(HoldingQuery),
    Find {
        query: HoldingQuery,
        simple: bool,
        url: bool,
    },
    Meta(MetaRequest),
    Stat {
        query: StatQuery,
        sub_records: bool,
        errors: bool,
        failed_files: bool,
    },
    Wait(Uuid, WaitPlan),
    /// `retry ID`: a put of the failed files of put ID.
    Retry(Uuid, Option<WaitPlan>),
    /// `cancel ID`.
    Cancel(Uuid, Option<WaitPlan>),
    Whoami,
    /// `del`, `dellist` (see `crate::commands::del`); the rest of the FILELIST as for `Put`.
    Delete(DeleteRequest, Option<WaitPlan>, Option<FilelistRest>),
    Undelete(UndeleteRequest),
    Purge(PurgeRequest),
    Admin(AdminPlan),
    /// `quota`, `admin quota ...`.
    Quota(crate::commands::quota::QuotaPlan),
    /// `notify set|show|clear`.
    Notify(crate::commands::notify::NotifyPlan),
    Explain(nlds_core::policy::ExplainQuery),
}

impl Plan {
    /// Sets the group of every request that has one.
    pub fn set_group(&mut self, group: Option<String>) {
        match self {
            Plan::Put(r, ..) => r.group = group,
            Plan::Get(r, ..) => r.group = group,
            Plan::List(q) | Plan::Find { query: q, .. } => q.group = group,
            Plan::Meta(r) => r.group = group,
            Plan::Stat { query, .. } => query.group = group,
            Plan::Delete(r, ..) => r.group = group,
            Plan::Undelete(r) => r.group = group,
            Plan::Stage(p) => p.set_group(group),
            Plan::Explain(q) => q.group = group,
            Plan::Wait(..)
            | Plan::Retry(..)
            | Plan::Cancel(..)
            | Plan::Whoami
            | Plan::Purge(_)
            | Plan::Admin(_)
            | Plan::Quota(_)
            | Plan::Notify(_) => {}
        }
    }
}

/// One admin query, ready to send.
#[derive(Debug, Clone)]
pub enum AdminPlan {
    /// `admin archive`.
    Archive,
    /// `admin evict HOLDING_ID`.
    Evict(i64),
    Transactions(AdminTransactionQuery),
    Failed(Uuid, PageQuery),
    Logs(LogQuery),
    Audit(AuditQuery),
    Policy(crate::commands::admin::policy::PolicyPlan),
    Storage(crate::commands::admin::storage::StoragePlan),
    /// `admin drain|resume|drains`.
    Drains(crate::commands::admin::drains::DrainPlan),
}
