//! The storage audit: the catalogue compared with what the warm buckets and the cold store hold
//! (`nlds admin audit storage`, `POST /api/v2/admin/audit/storage`, RPC `storage-audit.run`).
//!
//! Findings are of four kinds: *dark* data (stored, not catalogued), *lost* copies (catalogued,
//! not stored), *size* mismatches and *corrupt* copies (a scrub re-read them and the checksum
//! differs). A repair restores a lost or corrupt copy from another verified one and quarantines
//! dark objects; what it did is written on each finding.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::Tier;

/// Most findings one report lists (the counts cover them all).
pub const FINDINGS_LISTED: usize = 1000;

/// The prefix quarantined objects and aggregates are moved under: `quarantine/<date>/<key>`.
pub const QUARANTINE_PREFIX: &str = "quarantine/";

/// What an audit run is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditRequest {
    /// Compare the warm buckets (every configured tenancy's).
    pub warm: bool,
    /// Compare the cold store.
    pub cold: bool,
    /// Re-read copies and verify their checksums.
    #[serde(default)]
    pub scrub: bool,
    /// Scrub this many warm copies picked at random (absent: every copy).
    #[serde(default)]
    pub sample: Option<u64>,
    /// Read at most this many MB (10^6 bytes) per second while scrubbing (absent: no limit).
    #[serde(default)]
    pub rate_mb: Option<u64>,
    /// Restore lost and corrupt copies from verified ones; quarantine dark objects.
    #[serde(default)]
    pub repair: bool,
}

impl Default for AuditRequest {
    fn default() -> Self {
        Self {
            warm: true,
            cold: true,
            scrub: false,
            sample: None,
            rate_mb: None,
            repair: false,
        }
    }
}

/// The kind of a finding.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
    strum::Display,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum FindingKind {
    /// Stored but not catalogued.
    Dark,
    /// Catalogued but not stored.
    Lost,
    /// Stored with another size than the catalogue's.
    SizeMismatch,
    /// Re-read, and its checksum is not the catalogue's.
    Corrupt,
}

/// One discrepancy between the catalogue and a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Finding {
    pub kind: FindingKind,
    pub tier: Tier,
    /// Where: `s3://<bucket>/<key>` (warm) or `cold:<aggregate name>`.
    pub object: String,
    /// The file concerned (warm copies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<i64>,
    /// Its original path (warm copies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What differs.
    pub detail: String,
    /// What the repair did, or why it could not (absent: no repair asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<String>,
    /// The repair fixed it.
    #[serde(default)]
    pub repaired: bool,
}

/// What a run looked at and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditCounts {
    /// Objects listed under `tx/` in the warm buckets.
    pub warm_objects: u64,
    /// Warm locations in the catalogue.
    pub warm_locations: u64,
    /// Aggregates listed in the cold store.
    pub aggregates: u64,
    /// Aggregations in the catalogue.
    pub aggregations: u64,
    /// Copies re-read by the scrub, and their bytes.
    pub scrubbed: u64,
    pub scrubbed_bytes: u64,
    pub dark: u64,
    pub lost: u64,
    pub size_mismatch: u64,
    pub corrupt: u64,
    /// Findings the repair fixed.
    pub repaired: u64,
}

impl AuditCounts {
    /// Findings of every kind.
    pub fn findings(&self) -> u64 {
        self.dark + self.lost + self.size_mismatch + self.corrupt
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditReport {
    /// The stored run's id (absent until it is stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// `operator` (asked for) or `schedule` (the scheduled scrub).
    pub trigger: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub request: AuditRequest,
    pub counts: AuditCounts,
    /// The first [`FINDINGS_LISTED`] findings.
    pub findings: Vec<Finding>,
    /// More findings than listed.
    pub truncated: bool,
    /// What the run could not check, and why (e.g. a store that cannot list).
    pub notes: Vec<String>,
}

/// Stored runs, newest first (`GET /api/v2/admin/audit/storage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditRuns {
    pub runs: Vec<AuditReport>,
}

/// What `storage-audit.purge` removed from the quarantine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuarantinePurged {
    /// Warm objects and cold aggregates deleted.
    pub objects: u64,
    pub bytes: u64,
}

/// `POST /api/v2/admin/audit/storage`: the run started in the background (follow it with
/// `GET /api/v2/admin/audit/storage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditStarted {
    pub run_id: i64,
}

/// Query string of `GET /api/v2/admin/audit/storage`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditRunsQuery {
    /// How many runs to show, newest first (default 10, at most 100).
    #[serde(default)]
    pub runs: Option<u32>,
}

/// Body of `POST /api/v2/admin/audit/quarantine/purge`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PurgeQuarantineRequest {
    /// Only what was quarantined before this day (`YYYY-MM-DD`); absent: everything.
    #[serde(default)]
    pub before: Option<chrono::NaiveDate>,
}
