//! Holdings, their files and their metadata: list, find and meta of `/api/v2`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Tags, timestamp};
use crate::files::PathKind;

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
    #[serde(serialize_with = "timestamp::write")]
    pub mtime: DateTime<Utc>,
    pub holding_id: i64,
    pub label: String,
    pub user: String,
    pub group: String,
    pub transaction_id: Uuid,
    #[serde(serialize_with = "timestamp::write")]
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
    #[serde(default, serialize_with = "timestamp::write_option")]
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
