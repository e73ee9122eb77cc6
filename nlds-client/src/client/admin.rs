//! Service operators' methods (`/admin/...`: drains, quotas, logs, audits, policy).

use nlds_core::api::TransactionPage;
use reqwest::Method;
use uuid::Uuid;

use super::Client;
use crate::error::Result;

impl Client {
    /// Purges deleted files now (service operators).
    pub async fn purge(
        &self,
        req: &nlds_core::api::PurgeRequest,
    ) -> Result<nlds_core::api::PurgeResponse> {
        self.send(Method::POST, "/admin/purge", None::<&()>, Some(req))
            .await
    }

    /// Starts an archive round now (service operators only); answers the round's id.
    pub async fn admin_archive(&self) -> Result<nlds_core::api::ArchiveRequested> {
        self.send(
            Method::POST,
            "/admin/archive",
            None::<&()>,
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// Drops the warm copies of holding `holding_id`'s files that have a verified cold copy
    /// (service operators only).
    pub async fn admin_evict(&self, holding_id: i64) -> Result<nlds_core::api::Evicted> {
        let req = nlds_core::api::EvictRequest { holding_id };
        self.send(Method::POST, "/admin/evict", None::<&()>, Some(&req))
            .await
    }

    /// The roles drained for maintenance now (service operators only).
    pub async fn admin_drains(&self) -> Result<nlds_core::drain::Drains> {
        self.send(Method::GET, "/admin/drains", None::<&()>, None::<&()>)
            .await
    }

    /// Drains `role`: its processes finish what they have in hand and take no new work until
    /// [`Client::admin_resume`] (service operators only); answers the roles drained now.
    pub async fn admin_drain(
        &self,
        role: nlds_core::Role,
        reason: Option<&str>,
    ) -> Result<nlds_core::drain::Drains> {
        let body = nlds_core::drain::DrainBody {
            reason: reason.map(str::to_owned),
        };
        let path = format!("/admin/drains/{}", role.as_str());
        self.send(Method::POST, &path, None::<&()>, Some(&body))
            .await
    }

    /// Lets a drained `role` take work again (service operators only); answers the roles
    /// drained now.
    pub async fn admin_resume(&self, role: nlds_core::Role) -> Result<nlds_core::drain::Drains> {
        let path = format!("/admin/drains/{}", role.as_str());
        self.send(Method::DELETE, &path, None::<&()>, None::<&()>)
            .await
    }

    /// Every notification in `state` (dead letters by default), newest first (service
    /// operators only).
    pub async fn admin_notifications(
        &self,
        state: Option<nlds_core::notify::Delivery>,
        limit: Option<u64>,
    ) -> Result<Vec<nlds_core::notify::NotificationSummary>> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(s) = state {
            query.push(("state", s.to_string()));
        }
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        self.send(
            Method::GET,
            "/admin/notifications",
            Some(&query),
            None::<&()>,
        )
        .await
    }

    /// Every group's quota, or `group`'s (service operators only).
    pub async fn admin_quota(&self, group: Option<&str>) -> Result<nlds_core::quota::QuotaReport> {
        let query = group.map(|g| [("group", g)]);
        self.send(Method::GET, "/admin/quota", query.as_ref(), None::<&()>)
            .await
    }

    /// Changes `group`'s limits (service operators only); answers the group's quota after it.
    pub async fn set_quota(
        &self,
        group: &str,
        change: &nlds_core::quota::SetQuota,
    ) -> Result<nlds_core::quota::QuotaReport> {
        let path = format!("/admin/quota/{}", path_segment(group));
        self.send(Method::PUT, &path, None::<&()>, Some(change))
            .await
    }

    /// Transactions of every user (service operators only).
    pub async fn admin_transactions(
        &self,
        query: &nlds_core::admin::AdminTransactionQuery,
    ) -> Result<TransactionPage> {
        self.send(Method::GET, "/admin/transactions", Some(query), None::<&()>)
            .await
    }

    /// A page of any transaction's failed files (service operators only).
    pub async fn admin_failed_files(
        &self,
        transaction_id: Uuid,
        query: &nlds_core::admin::PageQuery,
    ) -> Result<nlds_core::admin::FailedFilePage> {
        let path = format!("/admin/transactions/{transaction_id}/failed");
        self.send(Method::GET, &path, Some(query), None::<&()>)
            .await
    }

    /// The records the logger collected (service operators only).
    pub async fn admin_logs(
        &self,
        query: &nlds_core::admin::LogQuery,
    ) -> Result<nlds_core::admin::LogPage> {
        self.send(Method::GET, "/admin/logs", Some(query), None::<&()>)
            .await
    }

    /// The audit log (service operators only).
    pub async fn admin_audit(
        &self,
        query: &nlds_core::admin::AuditQuery,
    ) -> Result<nlds_core::admin::AuditPage> {
        self.send(Method::GET, "/admin/audit", Some(query), None::<&()>)
            .await
    }

    /// What a policy pass would do now, per rule and per group (service operators); changes
    /// nothing. It evaluates the whole catalogue: give the client a long enough
    /// `request_timeout`.
    pub async fn policy_dry_run(&self) -> Result<nlds_core::policy::PassReport> {
        self.send(
            Method::POST,
            "/admin/policy/dry-run",
            None::<&()>,
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// Starts a storage audit in the background (service operators): the catalogue against the
    /// warm buckets and the cold store, with a scrub and a repair if asked.
    pub async fn storage_audit_run(
        &self,
        req: &nlds_core::storage_audit::AuditRequest,
    ) -> Result<nlds_core::storage_audit::AuditStarted> {
        self.send(Method::POST, "/admin/audit/storage", None::<&()>, Some(req))
            .await
    }

    /// The latest `runs` storage audits, newest first (service operators).
    pub async fn storage_audit_runs(
        &self,
        runs: Option<u32>,
    ) -> Result<nlds_core::storage_audit::AuditRuns> {
        let q = nlds_core::storage_audit::AuditRunsQuery { runs };
        self.send(Method::GET, "/admin/audit/storage", Some(&q), None::<&()>)
            .await
    }

    /// Deletes what storage audits quarantined (service operators).
    pub async fn purge_quarantine(
        &self,
        req: &nlds_core::storage_audit::PurgeQuarantineRequest,
    ) -> Result<nlds_core::storage_audit::QuarantinePurged> {
        self.send(
            Method::POST,
            "/admin/audit/quarantine/purge",
            None::<&()>,
            Some(req),
        )
        .await
    }

    /// Starts a policy pass now, in the background (service operators).
    pub async fn policy_run(&self) -> Result<nlds_core::policy::PassStarted> {
        self.send(
            Method::POST,
            "/admin/policy/run",
            None::<&()>,
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// The policy runner's state and its last `passes` passes (service operators).
    pub async fn policy_status(
        &self,
        passes: Option<u32>,
    ) -> Result<nlds_core::policy::PolicyStatus> {
        let q = nlds_core::policy::PolicyStatusQuery { passes };
        self.send(Method::GET, "/admin/policy", Some(&q), None::<&()>)
            .await
    }

    /// Reads the policy's rules again (service operators); `loaded` is false, with the errors,
    /// when the new rules were refused (the old ones stay).
    pub async fn policy_reload(&self) -> Result<nlds_core::policy::ReloadReport> {
        self.send(
            Method::POST,
            "/admin/policy/reload",
            None::<&()>,
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// Closes the policy's circuit breaker (service operators).
    pub async fn policy_reset(&self) -> Result<nlds_core::policy::PolicyStatus> {
        self.send(
            Method::POST,
            "/admin/policy/reset",
            None::<&()>,
            Some(&serde_json::json!({})),
        )
        .await
    }
}

/// `s` percent-encoded as one path segment.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
