//! REST API types of the native API (`/api/v2`), shared by the server and the client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::files::FailedFile;

mod delete;
mod holdings;
mod timestamp;
mod transactions;
pub use delete::*;
pub use holdings::*;
pub use transactions::*;

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
