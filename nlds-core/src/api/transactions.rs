//! Transactions and their progress: stat of `/api/v2`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ApiAction;
use crate::files::FailedFile;
use crate::state::State;

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
