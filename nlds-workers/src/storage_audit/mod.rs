//! The storage audit: compares the catalogue with what the warm buckets and the cold store hold,
//! optionally re-reads copies (scrub) and repairs what it found (docs/ADMIN.md, "Storage audit").
//!
//! * Warm ([`warm`]): for each configured tenancy, the bucket's listing under `tx/` (sorted by
//!   S3) is merged with the catalogue's warm locations of that bucket read in keyset pages in the
//!   same order: a key only S3 has is *dark*, a location S3 lacks is *lost*, a size that differs
//!   from the file's is a *size mismatch*. Memory stays at a page on each side.
//! * Cold ([`cold`]): the store's aggregates against the `aggregation` rows (by id, in pages):
//!   an aggregate no row names is dark; a stored aggregation the store lacks is lost (with every
//!   cold copy in it); sizes are compared. The store's listing is held while the rows are read
//!   (aggregates are few: each holds up to `aggregate_members` files).
//! * Scrub ([`scrub`]): warm copies are read again and hashed (blake3, against the catalogue's);
//!   cold aggregates are checksummed by the store itself (adler32 or CRC32C against the ones
//!   recorded when written); a sample or everything, at most `rate_mb` MB/s.
//! * Repair ([`repair`]): a lost or corrupt warm copy is restored from its aggregate (staged,
//!   the member read at its offset, verified against the catalogue's blake3, uploaded); a lost
//!   or corrupt aggregate whose members all have a whole warm copy is forgotten (its cold
//!   locations and its row, and its remains removed from the store), so the next archive round
//!   writes them again; a dark object is moved to `quarantine/<date>/<key>` (and a dark
//!   aggregate to the cold store's `quarantine/<date>/<name>`), deleted only by
//!   [`StorageAudit::purge_quarantine`].

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use nlds_core::api::Tier;
use nlds_core::storage_audit::{
    AuditCounts, AuditReport, AuditRequest, FINDINGS_LISTED, Finding, FindingKind,
};
use nlds_storage::cold::ColdStore;
use nlds_storage::s3::S3Clients;
use sea_orm::{DatabaseConnection, DbErr};

mod cold;
mod pages;
pub mod quarantine;
mod repair;
pub mod rpc;
pub mod runner;
mod scrub;
pub mod store;
mod warm;

#[cfg(test)]
mod tests;

/// Why a run stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("storage audit: the catalogue: {0}")]
    Db(#[from] DbErr),
    #[error("storage audit: {0}")]
    Store(String),
}

/// Runs audits against one catalogue, the configured warm tenancies and the cold store.
pub struct StorageAudit {
    db: DatabaseConnection,
    s3: S3Clients,
    cold: Option<Arc<dyn ColdStore>>,
    /// How long a repair waits for an aggregate to come online after asking to stage it.
    stage_wait: Duration,
    /// Where a member restored from an aggregate is spooled and verified before its upload (this
    /// process's locked directory; see [`crate::workdir`]).
    spool: Option<Arc<crate::workdir::ProcessDir>>,
}

impl StorageAudit {
    pub fn new(db: DatabaseConnection, s3: S3Clients, cold: Option<Arc<dyn ColdStore>>) -> Self {
        Self {
            db,
            s3,
            cold,
            stage_wait: Duration::from_secs(600),
            spool: None,
        }
    }

    /// How long a repair waits for an aggregate to be staged (10 minutes by default).
    pub fn with_stage_wait(mut self, wait: Duration) -> Self {
        self.stage_wait = wait;
        self
    }

    /// Where restored members are spooled (without one, the system's temporary directory: for
    /// tests only; the workers give `[workers.audit] spool_dir`).
    pub fn with_spool(mut self, dir: crate::workdir::ProcessDir) -> Self {
        self.spool = Some(Arc::new(dir));
        self
    }

    /// One run: the tiers asked for, in order warm then cold (so a repaired warm copy can serve
    /// a cold repair), with the scrub and repair asked for.
    pub async fn run(&self, req: &AuditRequest, trigger: &str) -> Result<AuditReport, AuditError> {
        let started = Utc::now();
        let mut tally = Tally::default();
        let mut pace = scrub::Pace::new(req.rate_mb);
        if req.warm {
            self.audit_warm(req, &mut tally, &mut pace).await?;
        }
        if req.cold {
            match &self.cold {
                Some(store) => self.audit_cold(store, req, &mut tally, &mut pace).await?,
                None => tally
                    .notes
                    .push("no cold store is configured: the cold tier was not audited".into()),
            }
        }
        tally.counts.scrubbed_bytes = pace.bytes();
        tracing::info!(
            trigger,
            dark = tally.counts.dark,
            lost = tally.counts.lost,
            size_mismatch = tally.counts.size_mismatch,
            corrupt = tally.counts.corrupt,
            repaired = tally.counts.repaired,
            "storage audit finished"
        );
        Ok(AuditReport {
            id: None,
            trigger: trigger.to_owned(),
            started,
            finished: Utc::now(),
            request: req.clone(),
            counts: tally.counts,
            findings: tally.findings,
            truncated: tally.truncated,
            notes: tally.notes,
        })
    }
}

/// What a run found so far: every finding counted, the first [`FINDINGS_LISTED`] kept.
#[derive(Default)]
struct Tally {
    counts: AuditCounts,
    findings: Vec<Finding>,
    truncated: bool,
    notes: Vec<String>,
}

impl Tally {
    fn add(&mut self, f: Finding) {
        let c = &mut self.counts;
        match f.kind {
            FindingKind::Dark => c.dark += 1,
            FindingKind::Lost => c.lost += 1,
            FindingKind::SizeMismatch => c.size_mismatch += 1,
            FindingKind::Corrupt => c.corrupt += 1,
        }
        if f.repaired {
            c.repaired += 1;
        }
        match f.kind {
            FindingKind::Dark => {
                tracing::warn!(object = %f.object, detail = %f.detail, "storage audit: dark data")
            }
            _ => {
                tracing::warn!(object = %f.object, kind = %f.kind, path = f.path.as_deref().unwrap_or(""),
                detail = %f.detail, "storage audit: a catalogued copy is not as recorded")
            }
        }
        if self.findings.len() < FINDINGS_LISTED {
            self.findings.push(f);
        } else {
            self.truncated = true;
        }
    }
}

/// A finding before any repair.
fn finding(kind: FindingKind, tier: Tier, object: String, detail: String) -> Finding {
    Finding {
        kind,
        tier,
        object,
        file_id: None,
        path: None,
        detail,
        repair: None,
        repaired: false,
    }
}

/// How a warm object is named in findings.
fn s3_url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// How an aggregate is named in findings.
fn cold_name(name: &str) -> String {
    format!("cold:{name}")
}
