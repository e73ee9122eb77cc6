//! Stage, release and locality: the API types of the WLCG Tape REST API's operations on the
//! native API (`/api/v2/stage`, `/api/v2/release`, `/api/v2/archiveinfo`), and the catalogue RPC
//! (`catalog.stage`) that carries them.
//!
//! "Disk" is the warm tier (the object store gets are served from), "tape" the cold tier. A stage
//! makes files warm and pins them there for the request's lifetime; a release drops that
//! request's pins only (pins are counted per requester). A leaf module: it imports nothing of
//! the other contract modules but the locality ([`crate::policy::Locality`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::policy::Locality;

/// `POST /api/v2/stage`: make files warm and keep them so for a lifetime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StageRequest {
    /// Paths of catalogued files (a directory stands for the files under it). Empty with a
    /// holding named: every file of the holding.
    #[serde(default)]
    pub files: Vec<String>,
    /// Only files of the holding with this label.
    #[serde(default)]
    pub label: Option<String>,
    /// Only files of this holding.
    #[serde(default)]
    pub holding_id: Option<i64>,
    /// Look in the group's holdings, not only the caller's.
    #[serde(default)]
    pub groupall: bool,
    /// The group to act in (default: the caller's first).
    #[serde(default)]
    pub group: Option<String>,
    /// How long the files stay warm once staged, in seconds (default `[policy]
    /// stage_lifetime_secs`, at most `stage_max_lifetime_secs`).
    #[serde(default)]
    pub lifetime_secs: Option<u64>,
}

/// The answer to a stage request (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageCreated {
    pub request_id: Uuid,
}

/// The state of one file of a stage request (WLCG: SUBMITTED → STARTED → COMPLETED, FAILED or
/// CANCELLED).
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
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum StageState {
    /// Waiting for its recall to be taken up.
    Submitted,
    /// Its recall is running.
    Started,
    /// Warm, and pinned for the request's lifetime.
    Completed,
    /// Cannot be staged (see the error).
    Failed,
    /// Cancelled before it was staged.
    Cancelled,
}

impl StageState {
    /// Final: nothing changes it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StageState::Completed | StageState::Failed | StageState::Cancelled
        )
    }
}

/// One file of a stage request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageFileStatus {
    pub path: String,
    pub state: StageState,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it last changed state.
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/v2/stage/{id}`: the request and each of its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageStatus {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// When the first file left SUBMITTED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the last file reached a final state (all files are final).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// How long staged files stay pinned warm.
    pub lifetime_secs: u64,
    /// The request was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
    pub files: Vec<StageFileStatus>,
}

/// `POST /api/v2/stage/{id}/cancel`: cancel the request's files not yet staged (all, or these).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CancelRequest {
    /// Paths of the request (each must be one of its files; else nothing changes).
    #[serde(default)]
    pub paths: Option<Vec<String>>,
}

/// `POST /api/v2/release`: the files of a stage request may leave the warm tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseRequest {
    pub request_id: Uuid,
    /// Paths of the request (each must be one of its files); absent: all of them.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
}

/// What a cancel, delete or release changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageChange {
    /// Files cancelled.
    pub cancelled: u64,
    /// Pins of the request dropped (another requester's pins stay).
    pub unpinned: u64,
}

/// `POST /api/v2/archiveinfo`: where copies of files are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArchiveInfoRequest {
    pub paths: Vec<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub holding_id: Option<i64>,
    #[serde(default)]
    pub groupall: bool,
    #[serde(default)]
    pub group: Option<String>,
}

/// The locality of one file, or why there is none (WLCG: `{path, locality}` or `{path, error}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileLocality {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which holdings a stage or locality query looks in (resolved by the catalogue like a get's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub label: Option<String>,
    pub holding_id: Option<i64>,
    pub groupall: bool,
}

/// RPC `catalog.stage` (API → catalogue): one operation on stage requests, for the envelope's
/// user (a request is visible to its owner and to operators only; another's is not found).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageQuery {
    Create {
        selection: Selection,
        paths: Vec<String>,
        lifetime_secs: Option<u64>,
    },
    Status {
        request_id: Uuid,
    },
    Cancel {
        request_id: Uuid,
        paths: Option<Vec<String>>,
    },
    /// Cancel every file and forget the request.
    Delete {
        request_id: Uuid,
    },
    Release {
        request_id: Uuid,
        paths: Option<Vec<String>>,
    },
    Locality {
        selection: Selection,
        paths: Vec<String>,
    },
}

/// The answer to `catalog.stage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageAnswer {
    Created(StageCreated),
    Status(StageStatus),
    Changed(StageChange),
    Localities(Vec<FileLocality>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_spelled_as_wlcg_does() {
        for (s, w) in [
            (StageState::Submitted, "SUBMITTED"),
            (StageState::Started, "STARTED"),
            (StageState::Completed, "COMPLETED"),
            (StageState::Failed, "FAILED"),
            (StageState::Cancelled, "CANCELLED"),
        ] {
            assert_eq!(s.to_string(), w);
            assert_eq!(serde_json::to_value(s).unwrap(), w);
            assert_eq!(w.parse::<StageState>().unwrap(), s);
        }
        assert!("started".parse::<StageState>().is_err());
        assert!(!StageState::Started.is_final());
        assert!(StageState::Cancelled.is_final());
    }

    #[test]
    fn locality_answers_carry_a_locality_or_an_error() {
        let ok = FileLocality {
            path: "/a".into(),
            locality: Some(Locality::DiskAndTape),
            error: None,
        };
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            serde_json::json!({"path": "/a", "locality": "DISK_AND_TAPE"})
        );
        let err = FileLocality {
            path: "/b".into(),
            locality: None,
            error: Some("no such file".into()),
        };
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            serde_json::json!({"path": "/b", "error": "no such file"})
        );
    }
}
