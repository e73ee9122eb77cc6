//! Delete, undelete, evict, archive and purge of `/api/v2`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Tags;
use crate::files::FailedFile;

/// `POST /api/v2/delete`: delete files, or whole holdings (soft: they disappear at once and can
/// be undeleted until the retention period ends; then their copies are purged).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct DeleteRequest {
    /// Client-chosen id; retrying with the same id does not delete twice.
    #[serde(default)]
    pub transaction_id: Option<Uuid>,
    /// Original paths (a directory path deletes everything under it; regular expressions with
    /// `regex`). Empty: delete the selected holdings whole.
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub holding_id: Option<i64>,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub regex: bool,
    /// Look in the holdings of the whole group (deleting another user's files needs the DEPUTY
    /// or MANAGER role in the group).
    #[serde(default)]
    pub groupall: bool,
    #[serde(default)]
    pub job_label: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// Answer with a [`DeletePlan`] (HTTP 200) of what would be deleted, changing nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Delete every version of each path, not only the newest (docs/DELETE.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_versions: bool,
    /// Notify the caller's channels when this transaction ends, whatever `nlds notify set --on`
    /// says (docs/NOTIFY.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notify: bool,
    /// How many chunks of paths were sent before this request under its `transaction_id`
    /// (`POST /api/v2/paths` with `api_action: dellist`); its own `paths` are the last chunk
    /// (may be empty then). Not with `dry_run` or `regex` (docs/PROTOCOL.md, "Chunked requests").
    #[serde(default, skip_serializing_if = "crate::number::is_zero")]
    pub parts: u32,
}

/// `POST /api/v2/undelete`: bring back deleted files or holdings within the retention period.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UndeleteRequest {
    /// Original paths (a directory path undeletes everything under it; regular expressions with
    /// `regex`). Empty: undelete the selected holdings whole (with the files deleted with them).
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub holding_id: Option<i64>,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub regex: bool,
    #[serde(default)]
    pub groupall: bool,
    #[serde(default)]
    pub group: Option<String>,
    /// Answer with what would be undeleted, changing nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A holding deleted (or undeleted) whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeletedHolding {
    pub id: i64,
    pub label: String,
    pub user: String,
    pub group: String,
}

/// A file deleted (or undeleted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeletedFile {
    pub path: String,
    pub holding_id: i64,
    pub label: String,
    pub user: String,
    pub size: u64,
}

/// What a delete or undelete did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeletePlan {
    /// Holdings deleted (undeleted) whole.
    pub holdings: Vec<DeletedHolding>,
    /// The files deleted (undeleted): every one, except in the answer of a delete whose paths
    /// came in chunks (`parts`), which lists the first file deleted in each holding
    /// (`files_total` and `bytes_total` count them all; docs/PROTOCOL.md).
    pub files: Vec<DeletedFile>,
    pub files_total: u64,
    pub bytes_total: u64,
    /// Paths that match nothing, and files or holdings the caller may not delete (each with
    /// the holding and the reason).
    pub failed: Vec<FailedFile>,
    /// Until when deleted files can be undeleted (after that they are purged).
    #[serde(default)]
    pub undelete_until: Option<DateTime<Utc>>,
    /// True when nothing was changed because the request was a dry run.
    #[serde(default)]
    pub dry_run: bool,
}

impl DeletePlan {
    /// The holding (id and label) a delete transaction is recorded under: the one holding it
    /// acted on, else the one every file it deleted is in, else those the request named.
    pub fn transaction_holding(
        &self,
        holding_id: Option<i64>,
        label: Option<String>,
    ) -> (Option<i64>, Option<String>) {
        match (self.holdings.as_slice(), self.files.first()) {
            ([h], _) => (Some(h.id), Some(h.label.clone())),
            ([], Some(f)) if self.files.iter().all(|x| x.holding_id == f.holding_id) => {
                (Some(f.holding_id), Some(f.label.clone()))
            }
            _ => (holding_id, label),
        }
    }
}

/// `POST /api/v2/admin/evict`: drop the warm copies of a holding's files that have a verified
/// cold copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvictRequest {
    pub holding_id: i64,
}

/// What an eviction dropped: the warm copies of `files` files (`bytes` bytes) of the holding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Evicted {
    pub holding_id: i64,
    pub files: u64,
    pub bytes: u64,
}

/// `POST /api/v2/admin/archive` accepted: the archive round `round` (its workflow's transaction
/// id) was requested; the catalogue plans it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArchiveRequested {
    pub round: Uuid,
}

/// `POST /api/v2/admin/purge`: purge soft-deleted files now, whatever their retention.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PurgeRequest {
    /// Only this holding's deleted files (all holdings without it).
    #[serde(default)]
    pub holding_id: Option<i64>,
}

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PurgeResponse {
    /// Deleted files whose catalogue entries and copies were removed.
    pub files: u64,
    pub bytes: u64,
    /// Warm objects sent for deletion.
    pub objects: u64,
    /// Aggregates removed from the cold store (all their members were deleted).
    pub aggregates: Vec<String>,
    /// Deleted holdings removed (nothing of them was left).
    pub holdings: u64,
    /// Deleted files left for a later purge (a member of an aggregate being written, or of an
    /// aggregate that still has live members: its bytes stay on tape until they go too).
    pub deferred: u64,
    /// Copies the last-copy guard refused to remove, each with its reason.
    #[serde(default)]
    pub refused: Vec<String>,
}
