//! Worker configuration: typed, with defaults, loaded from TOML and `NLDS_*` environment variables.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the worker roles need.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// sea-orm URL of the catalogue and monitor database (`postgres://...` or `sqlite://...?mode=rwc`).
    pub database_url: String,
    pub object_store: ObjectStoreConfig,
    pub index: IndexConfig,
    pub transfer: TransferConfig,
    /// Where the logger role writes one file per service.
    pub log_dir: PathBuf,
    /// The cold tier's store.
    pub cold: crate::cold::ColdConfig,
    /// How archive rounds pack files and how often they run.
    pub archive: crate::catalogue::ArchiveConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            database_url: "sqlite://nlds.db?mode=rwc".into(),
            object_store: ObjectStoreConfig::default(),
            index: IndexConfig::default(),
            transfer: TransferConfig::default(),
            log_dir: PathBuf::from("logs"),
            cold: Default::default(),
            archive: Default::default(),
        }
    }
}

/// The warm tier: one S3 endpoint and one bucket (see ARCHITECTURE.md, "Object layout").
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectStoreConfig {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    /// Never logged: `Debug` prints it redacted.
    pub secret_key: String,
    /// Read the secret key from this file (Kubernetes secret mounts) instead.
    pub secret_key_file: Option<PathBuf>,
    pub bucket: String,
}

impl ObjectStoreConfig {
    /// The secret key, from `secret_key_file` if set.
    pub fn secret(&self) -> std::io::Result<String> {
        match &self.secret_key_file {
            Some(p) => Ok(std::fs::read_to_string(p)?.trim().to_owned()),
            None => Ok(self.secret_key.clone()),
        }
    }
}

impl std::fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("bucket", &self.bucket)
            .finish()
    }
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            access_key: "nlds".into(),
            secret_key: String::new(),
            secret_key_file: None,
            bucket: "nlds".into(),
        }
    }
}

/// How the indexer (and the catalogue, for gets) batch files into sub-jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexConfig {
    /// At most this many files per batch.
    pub batch_files: usize,
    /// At most this many bytes per batch (a single larger file gets a batch of its own).
    pub batch_bytes: u64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            batch_files: 1000,
            batch_bytes: 4 << 30,
        }
    }
}

/// Transfer tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TransferConfig {
    /// Files at least this large are uploaded in parts.
    pub multipart_threshold: u64,
    /// Size of each part.
    pub part_size: u64,
    /// Files in flight per batch.
    pub files_in_flight: usize,
    /// Parts in flight per multipart file.
    pub parts_in_flight: usize,
    /// Most bytes of upload buffers one process holds at once (small files are read whole; a
    /// multipart file holds `(parts_in_flight + 2) * part_size`). Bounds memory whatever the batch.
    pub memory_budget: u64,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
            files_in_flight: 16,
            parts_in_flight: 4,
            memory_budget: 96 << 20,
        }
    }
}
