//! `[workers.audit]`: the scheduled storage scrub (docs/ADMIN.md, "Storage audit").

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The scheduled scrub: one storage-audit process at a time (a lease in the database) runs an
/// audit of both tiers with a scrub every `scrub_every_secs`; its report is stored with the
/// operators' runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    /// Seconds between two scheduled scrubs (0: none; operators still run audits).
    #[serde(alias = "scrub_every")]
    pub scrub_every_secs: u64,
    /// Most MB (10^6 bytes) per second a scheduled scrub reads (0: no limit).
    pub scrub_rate_mb: u64,
    /// Warm copies and aggregates one scheduled scrub re-reads, picked at random (0: all).
    pub scrub_sample: u64,
    /// Seconds a repair waits for an aggregate to be staged.
    pub stage_wait_secs: u64,
    /// Where a member restored from an aggregate is verified before its upload: `audit-spool`
    /// under `[workers] work_dir` by default. Each audit process spools in a subdirectory it
    /// holds locked; one that starts removes the subdirectories of dead processes.
    pub spool_dir: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            scrub_every_secs: 0,
            scrub_rate_mb: 50,
            scrub_sample: 1000,
            stage_wait_secs: 600,
            spool_dir: None,
        }
    }
}
