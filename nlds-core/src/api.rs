//! REST API types of the native API (`/api/v2`), shared by the server and the client.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::files::{FailedFile, PathKind};
use crate::state::State;

/// Holding tags, `key -> value`.
pub type Tags = BTreeMap<String, String>;

/// The prefix of the native API.
pub const API_PREFIX: &str = "/api/v2";
/// Default and maximum page sizes of list, find and stat.
pub const DEFAULT_LIMIT: u64 = 1000;
pub const MAX_LIMIT: u64 = 10_000;

/// What a transaction does.
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
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case", const_into_str)]
pub enum ApiAction {
    Put,
    Putlist,
    Get,
    Getlist,
    ArchivePut,
    ArchiveGet,
    /// Delete one path, or whole holdings.
    Del,
    /// Delete a list of paths.
    Dellist,
}

impl ApiAction {
    /// Every action, in declaration order.
    pub const ALL: &'static [ApiAction] = <ApiAction as strum::VariantArray>::VARIANTS;

    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }
    pub fn is_put(self) -> bool {
        matches!(self, ApiAction::Put | ApiAction::Putlist)
    }
    /// The exact wire spelling only.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// Parses `k1:v1,k2:v2` (the NLDS client's tag syntax). Braces are ignored, as upstream does.
pub fn parse_tags(s: &str) -> Result<Tags, ApiError> {
    let mut tags = Tags::new();
    let cleaned: String = s.chars().filter(|c| *c != '{' && *c != '}').collect();
    for item in cleaned.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once(':') else {
            return Err(ApiError::bad_request(format!(
                "tag {item:?} is not key:value"
            )));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(ApiError::bad_request(format!(
                "tag {item:?} has an empty key"
            )));
        }
        tags.insert(k.to_owned(), v.trim().to_owned());
    }
    Ok(tags)
}

/// `POST /api/v2/put`: copy files from POSIX disk into the store.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PutRequest {
    /// Client-chosen id; retrying with the same id does not start a second transaction.
    #[serde(default)]
    pub transaction_id: Option<Uuid>,
    /// Absolute paths of files or directories (directories are copied recursively).
    pub paths: Vec<String>,
    /// Holding to add to, created if the user has none with this label.
    #[serde(default)]
    pub label: Option<String>,
    /// Existing holding to add to.
    #[serde(default)]
    pub holding_id: Option<i64>,
    /// Tags to add to the holding.
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub job_label: Option<String>,
    /// Group to act in; defaults to the caller's first group.
    #[serde(default)]
    pub group: Option<String>,
    /// Answer with a [`PutPlan`] (HTTP 200) instead of starting a transaction.
    #[serde(default)]
    pub dry_run: bool,
    /// The object-store tenancy to write to: a name the service's configuration resolves to an
    /// endpoint, bucket and credentials (never a credential itself). Absent: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenancy: Option<String>,
    /// What the put will store, as the client measured it: reserved against the group's quota
    /// when the put is accepted (see docs/QUOTAS.md). Absent: batches are checked as they come.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_hint: Option<crate::quota::SizeHint>,
    /// How many chunks of paths were sent before this request under its `transaction_id`
    /// (`POST /api/v2/paths`); its own `paths` are the last chunk (may be empty then).
    #[serde(default, skip_serializing_if = "crate::number::is_zero")]
    pub parts: u32,
    /// How a path the holding already has is compared (docs/VERSIONS.md): unchanged ones are
    /// skipped, changed ones stored as a new version. Absent: `mtime` (size and mtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::versions::SyncLevel>,
    /// With `dry_run`: the entries the client found under `paths`, for the server to say what
    /// the put would do with each (`PutPlan::verdicts`). Ignored by a put that runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<crate::versions::LocalEntry>,
    /// Notify the caller's channels when this transaction ends, whatever `nlds notify set --on`
    /// says (docs/NOTIFY.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notify: bool,
}

/// `POST /api/v2/get`: copy files back to POSIX disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct GetRequest {
    #[serde(default)]
    pub transaction_id: Option<Uuid>,
    /// Original paths (or regular expressions with `regex`).
    pub paths: Vec<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub holding_id: Option<i64>,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub regex: bool,
    /// Directory to restore under; files go back to their original paths without it.
    #[serde(default)]
    pub target: Option<String>,
    /// Replace existing files whose content differs.
    #[serde(default)]
    pub overwrite: bool,
    #[serde(default)]
    pub groupall: bool,
    #[serde(default)]
    pub job_label: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// Answer with a [`GetPlan`] (HTTP 200) instead of starting a transaction.
    #[serde(default)]
    pub dry_run: bool,
    /// Restore files with the owner and group they had when put, instead of giving them to the
    /// requesting user (service operators only; 403 for anyone else).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_owner: bool,
    /// Restore version N of each path instead of the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Restore the newest version ingested at or before this time (RFC 3339 or a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// How many chunks of paths were sent before this request (see [`PutRequest::parts`]).
    #[serde(default, skip_serializing_if = "crate::number::is_zero")]
    pub parts: u32,
    /// Notify the caller's channels when this transaction ends, whatever `nlds notify set --on`
    /// says (docs/NOTIFY.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notify: bool,
}

/// `POST /api/v2/paths`: one chunk of the paths of a put, get or delete too long for one request.
/// The chunks `0, 1, ...` are sent under the request's `transaction_id` first; the put, get or
/// delete itself follows with `parts` (how many were sent) and the last chunk. Sending a chunk again replaces
/// it. Chunks of a request that never starts are deleted after a while (docs/PROTOCOL.md).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PathChunk {
    pub transaction_id: Uuid,
    /// `putlist`, `getlist` or `dellist`: the request the chunk belongs to.
    pub api_action: ApiAction,
    /// The chunk's number, from 0.
    pub part: u32,
    pub paths: Vec<String>,
    /// Group to act in, as the request will name it.
    #[serde(default)]
    pub group: Option<String>,
}

/// The refusal of a put or get listing `total` paths, more than the server's cap `max`.
pub fn too_many_paths(total: u64, max: u64) -> ApiError {
    ApiError::new(
        crate::error::ErrorCode::PayloadTooLarge,
        format!(
            "the request lists {total} paths; at most {max} are accepted in one put or get \
             (the server's safety cap, [server] max_request_paths): split it into several \
             requests, or ask the operator to raise the cap"
        ),
    )
}

/// The answer to a [`PathChunk`]: what the server holds for the request so far.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChunkStored {
    pub transaction_id: Uuid,
    /// Chunks stored.
    pub parts: u32,
    /// Paths in them.
    pub paths: u64,
}

/// The answer to a put with `dry_run` (HTTP 200): which holding the files would go to. Nothing
/// is created or changed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PutPlan {
    /// The existing holding the files would be added to, if there is one.
    #[serde(default)]
    pub holding: Option<HoldingSummary>,
    /// The label a new holding would get, when no existing one matches.
    #[serde(default)]
    pub new_label: Option<String>,
    /// The group the put would act in.
    pub group: String,
    /// The paths as the server would receive them.
    pub paths: Vec<String>,
    /// What the put would do with each entry the client found (when it sent them and the
    /// holding exists): new, changed (a new version) or unchanged (skipped); docs/VERSIONS.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::versions::EntryVerdict>,
}

/// The answer to a get with `dry_run` (HTTP 200): the files that would be restored, and the
/// requested paths that match nothing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GetPlan {
    pub files: Vec<FileEntry>,
    pub missing: Vec<FailedFile>,
    pub files_total: u64,
    pub bytes_total: u64,
    /// Where the files would be written: the target directory, or their original paths.
    #[serde(default)]
    pub target: Option<String>,
}

/// The answer to an accepted put or get (HTTP 202).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub transaction_id: Uuid,
    pub api_action: ApiAction,
    pub status_url: String,
    pub job_label: String,
    #[serde(default)]
    pub holding_id: Option<i64>,
    #[serde(default)]
    pub label: Option<String>,
}

/// The answer to `POST /api/v2/transactions/{id}/cancel` (HTTP 202): the cancel is recorded;
/// the transaction ends CANCELLED once the work it had in flight has stopped (follow it with
/// `status_url` or its events).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CancelAccepted {
    pub transaction_id: Uuid,
    pub api_action: ApiAction,
    /// Its state when the cancel was recorded.
    pub state: crate::State,
    /// `false` when an earlier cancel had been recorded already.
    pub first: bool,
    /// Batches that waited for a recall from tape, ended at once.
    pub waiting_ended: u64,
    pub status_url: String,
}

/// Query string of `GET /api/v2/holdings` and `GET /api/v2/files`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HoldingQuery {
    pub group: Option<String>,
    #[serde(default)]
    pub groupall: bool,
    pub label: Option<String>,
    pub holding_id: Option<i64>,
    pub transaction_id: Option<String>,
    /// `k1:v1,k2:v2`
    pub tag: Option<String>,
    /// Exact path (find only).
    pub path: Option<String>,
    /// Treat `path` and `label` as regular expressions.
    #[serde(default)]
    pub regex: bool,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub descending: Option<bool>,
    /// Version N of each path instead of the newest (find only).
    pub version: Option<u32>,
    /// The newest version ingested at or before this time, RFC 3339 or a date (find only).
    pub at: Option<String>,
    /// Every version of each path (find only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub versions: bool,
}

/// One holding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HoldingSummary {
    pub id: i64,
    pub label: String,
    pub user: String,
    pub group: String,
    pub tags: Tags,
    pub transactions: Vec<Uuid>,
    pub created: DateTime<Utc>,
    pub files: u64,
    pub bytes: u64,
    /// Files with a copy on the warm tier (object store).
    #[serde(default)]
    pub warm_files: u64,
    /// Files with a copy on the cold tier (tape).
    #[serde(default)]
    pub cold_files: u64,
    /// Files being recalled from the cold tier now.
    #[serde(default)]
    pub recalling_files: u64,
    /// When a get, recall or stage last resolved any of its files (`None`: never).
    #[serde(default)]
    pub last_access: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HoldingPage {
    pub holdings: Vec<HoldingSummary>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// Where a copy of a file is kept.
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
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum Tier {
    /// S3 object storage.
    Warm,
    /// Tape (aggregates).
    Cold,
}

impl Tier {
    /// Every tier, warm first.
    pub const ALL: &'static [Tier] = <Tier as strum::VariantArray>::VARIANTS;

    /// The wire (and catalogue) spelling.
    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }
}

/// One stored copy of a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileLocation {
    pub tier: Tier,
    pub bucket: String,
    pub key: String,
}

/// One catalogued file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileEntry {
    pub path: String,
    pub kind: PathKind,
    #[serde(default)]
    pub link_target: Option<String>,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: DateTime<Utc>,
    pub holding_id: i64,
    pub label: String,
    pub user: String,
    pub group: String,
    pub transaction_id: Uuid,
    pub ingest_time: DateTime<Utc>,
    /// The version of its path (1 for the first put of it).
    #[serde(default = "first_version")]
    pub version: u32,
    #[serde(default)]
    pub blake3: Option<String>,
    pub locations: Vec<FileLocation>,
    /// Being recalled from the cold tier now (a get is waiting for it).
    #[serde(default)]
    pub recalling: bool,
    /// When a get, recall or stage last resolved it (`None`: never).
    #[serde(default)]
    pub last_access: Option<DateTime<Utc>>,
    /// How many gets and stages resolved it.
    #[serde(default)]
    pub access_count: u64,
    /// Its extended attributes (POSIX ACLs among them), as stored; absent when it has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<FileXattr>,
}

/// An extended attribute of a catalogued file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileXattr {
    /// The name (`user.comment`), encoded as paths are ([`crate::pathname`]).
    pub name: String,
    /// The value for humans: printable ASCII as it is, other bytes escaped (`\xNN`, `\n`,
    /// `\\`, as Rust's `escape_ascii`).
    pub value: String,
    /// The value's bytes, base64 (standard alphabet, padded).
    pub base64: String,
}

impl FileXattr {
    /// The attribute `name` with the value `bytes` (`base64`: the same bytes in base64).
    pub fn new(name: String, bytes: &[u8], base64: String) -> Self {
        Self {
            name,
            value: bytes.escape_ascii().to_string(),
            base64,
        }
    }
}

fn first_version() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FilePage {
    pub files: Vec<FileEntry>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// `POST /api/v2/meta`: relabel a holding, add or delete tags.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct MetaRequest {
    #[serde(default)]
    pub group: Option<String>,
    /// Select by label ...
    #[serde(default)]
    pub label: Option<String>,
    /// ... or id ...
    #[serde(default)]
    pub holding_id: Option<i64>,
    /// ... or tags (every one must match).
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub new_label: Option<String>,
    #[serde(default)]
    pub new_tags: Tags,
    /// Tags to delete: a key with an empty value deletes whatever its value; otherwise the value must match.
    #[serde(default)]
    pub del_tags: Tags,
    /// Show the changes without making them.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HoldingMeta {
    pub label: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetaChange {
    pub id: i64,
    pub user: String,
    pub group: String,
    pub old: HoldingMeta,
    pub new: HoldingMeta,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetaResponse {
    pub holdings: Vec<MetaChange>,
    /// True when nothing was changed because the request was a dry run.
    #[serde(default)]
    pub dry_run: bool,
}

/// Query string of `GET /api/v2/transactions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatQuery {
    pub group: Option<String>,
    #[serde(default)]
    pub groupall: bool,
    /// Numeric transaction record id.
    pub id: Option<i64>,
    pub transaction_id: Option<String>,
    pub job_label: Option<String>,
    /// Comma-separated api actions to include.
    pub api_action: Option<String>,
    /// Comma-separated api actions to exclude.
    pub exclude_api_action: Option<String>,
    /// Comma-separated state names or numbers (of the derived transaction state).
    pub state: Option<String>,
    #[serde(default)]
    pub regex: bool,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub descending: Option<bool>,
}

/// A sub-record: one batch of a transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubRecordStatus {
    pub id: i64,
    pub sub_id: Uuid,
    pub state: State,
    pub last_updated: DateTime<Utc>,
    pub files: u64,
    pub bytes: u64,
    pub failed_files: Vec<FailedFile>,
    /// Files a put skipped because the holding has them unchanged (code `unchanged`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_files: Vec<FailedFile>,
    /// Of `files`, how many a put stored as new versions of paths the holding had.
    #[serde(default)]
    pub new_versions: u64,
    /// Why it has not moved yet, if it is not final (docs/WAITING.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<crate::waiting::Waiting>,
    /// Of `bytes`, how many its transfer reported moved while it is still in flight (counted in
    /// the transaction's `bytes_done`; 0 once it is final). docs/LIVE.md.
    #[serde(default, skip_serializing_if = "crate::number::is_zero")]
    pub bytes_moving: u64,
}

/// The state of one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TransactionStatus {
    pub id: i64,
    pub transaction_id: Uuid,
    pub user: String,
    pub group: String,
    pub api_action: ApiAction,
    pub job_label: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub holding_id: Option<i64>,
    pub state: State,
    /// How far it is: bytes done of `bytes_total` when it has bytes to move, otherwise files
    /// done of `files_total` (rounded down), the share of complete batches while nothing is
    /// counted yet (docs/LIVE.md, "Progress").
    pub percent: u8,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// Files (and symbolic links) of the transaction; the directories a put records are not
    /// counted.
    pub files_total: u64,
    pub files_done: u64,
    pub files_failed: u64,
    /// Files a put skipped as unchanged (not failed; not in `files_total`).
    #[serde(default)]
    pub files_skipped: u64,
    /// Of `files_done`, how many are new versions of paths the holding had.
    #[serde(default)]
    pub files_new_versions: u64,
    pub bytes_total: u64,
    /// The bytes of complete batches, and those the transfer of each batch still in flight
    /// reported moved so far (docs/LIVE.md).
    pub bytes_done: u64,
    pub warnings: Vec<String>,
    pub sub_records: Vec<SubRecordStatus>,
    /// The transaction whose failed files this one retries (`nlds retry`), if it is a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<Uuid>,
    /// The transactions that retried this one's failed files, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried_by: Vec<Uuid>,
}

impl TransactionStatus {
    /// Every failed file of every sub-record.
    pub fn failed_files(&self) -> impl Iterator<Item = &FailedFile> {
        self.sub_records.iter().flat_map(|s| s.failed_files.iter())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransactionPage {
    pub transactions: Vec<TransactionStatus>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

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

/// `GET /readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub checks: BTreeMap<String, String>,
}

/// `GET /api/v2/whoami`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub user: String,
    pub groups: Vec<String>,
    /// A service operator (ADMIN in every group).
    #[serde(default)]
    pub admin: bool,
    /// The caller's role in each of their groups.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, crate::access::AccessRole>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_like_the_nlds_client_sends_them() {
        let t = parse_tags("{a:1, b : two,c:x:y}").unwrap();
        assert_eq!(t.get("a").unwrap(), "1");
        assert_eq!(t.get("b").unwrap(), "two");
        assert_eq!(t.get("c").unwrap(), "x:y");
        assert!(parse_tags("").unwrap().is_empty());
        let e = parse_tags("novalue").unwrap_err();
        assert!(e.message.contains("novalue"), "{e}");
        assert!(parse_tags(":v").is_err());
    }

    #[test]
    fn actions_round_trip() {
        for a in [
            "put",
            "putlist",
            "get",
            "getlist",
            "archive-put",
            "archive-get",
            "del",
            "dellist",
        ] {
            let act = ApiAction::parse(a).unwrap();
            assert_eq!(act.as_str(), a);
            assert_eq!(serde_json::to_string(&act).unwrap(), format!("\"{a}\""));
        }
        assert!(ApiAction::parse("dance").is_none());
    }
}
