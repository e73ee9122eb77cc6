//! `[workers]` and its tables: what the worker roles need.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cold::ColdConfig;
use crate::object_store::ObjectStoreConfig;

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
    /// The workers' own scratch space on local disk: the recall spool (unless
    /// `[workers.archive] spool_dir` says otherwise) and the journals of the temporary files
    /// transfer-get creates in restore targets. Each process works in a subdirectory it holds
    /// locked; a process that starts removes what dead processes left there. Relative paths are
    /// relative to the working directory (`work`); embedded mode puts it under its data
    /// directory. Never the system's temporary directory, which other programs share and clean.
    pub work_dir: PathBuf,
    /// The cold tier's store.
    pub cold: ColdConfig,
    /// How archive rounds pack files and how often they run.
    pub archive: ArchiveConfig,
    /// How long deleted files can be undeleted before they are purged.
    pub delete: DeleteConfig,
    /// How many versions of each path the catalogue keeps.
    pub versions: VersionsConfig,
    /// The scheduled storage scrub.
    pub audit: crate::audit::AuditConfig,
    /// Whose POSIX permissions the indexer and the transfer roles check: `"user"` (the
    /// requesting user's, looked up through NSS; restored files are given to them) or
    /// `"service"` (the process's own). Unset: `"user"`, except in embedded mode (`"service"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posix_checks: Option<PosixChecks>,
    /// With `posix_checks = "user"`, a requesting user with uid 0 bypasses the mode bits.
    #[serde(default)]
    pub posix_root_override: bool,
    /// The operations listener of each worker process (`/healthz`, `/readyz`; the place for
    /// `/metrics` too), e.g. `"0.0.0.0:9187"`; port 0 picks a free one (logged at start). Unset:
    /// none (the default: a port per process is the operator's choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_listen: Option<std::net::SocketAddr>,
    /// Seconds between two heartbeats of each worker process (its roles, host, pid and checks,
    /// for the status page `/status`); a process is shown gone after 3 without one.
    pub heartbeat_secs: u64,
}

impl WorkerConfig {
    /// Where recalled members are spooled: `[workers.archive] spool_dir`, or `spool` under
    /// `work_dir`.
    pub fn spool_dir(&self) -> PathBuf {
        self.archive
            .spool_dir
            .clone()
            .unwrap_or_else(|| self.work_dir.join("spool"))
    }

    /// Where the storage audit spools a member restored from an aggregate before it verifies and
    /// uploads it: `[workers.audit] spool_dir`, or `audit-spool` under `work_dir`.
    pub fn audit_spool_dir(&self) -> PathBuf {
        self.audit
            .spool_dir
            .clone()
            .unwrap_or_else(|| self.work_dir.join("audit-spool"))
    }

    /// The POSIX checks in force (`posix_checks`, default `"user"`).
    pub fn posix_policy(&self) -> PosixPolicy {
        PosixPolicy {
            checks: self.posix_checks.unwrap_or(PosixChecks::User),
            root_override: self.posix_root_override,
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            database_url: "sqlite://nlds.db?mode=rwc".into(),
            object_store: ObjectStoreConfig::default(),
            index: IndexConfig::default(),
            transfer: TransferConfig::default(),
            log_dir: PathBuf::from("logs"),
            work_dir: PathBuf::from("work"),
            cold: Default::default(),
            archive: Default::default(),
            delete: Default::default(),
            versions: Default::default(),
            audit: Default::default(),
            posix_checks: None,
            posix_root_override: false,
            ops_listen: None,
            heartbeat_secs: 10,
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
    /// The chunks of paths of a put or get that has not started this long after its last
    /// chunk came are deleted (the client gave up on it).
    pub unfinished_request_secs: u64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            batch_files: 1000,
            batch_bytes: 4 << 30,
            unfinished_request_secs: 24 * 3600,
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
    /// Files each transfer role moves at once, over all the batches it handles at once (the bus
    /// hands it up to `[bus] prefetch` batches): every file in flight holds a connection, a
    /// blocking thread and buffers, so this, not the prefetch, bounds the role's memory.
    pub files_in_flight: usize,
    /// Parts in flight per multipart file, at most: fewer when the file's buffers would not fit
    /// in `memory_budget`.
    pub parts_in_flight: usize,
    /// Most bytes of upload buffers one process holds at once (small files are read whole; a
    /// multipart file holds `(parts + 2) * part_size`, with as many parts in flight as fit, at
    /// least one). Bounds memory whatever the batch.
    pub memory_budget: u64,
    /// At start, transfer-put aborts the multipart uploads under its prefix (`tx/`) that were
    /// initiated longer ago than this (a process killed mid-upload leaves them, and S3 keeps
    /// and bills their parts until they are aborted). Other transfer-put processes may be
    /// uploading at that moment, so this must exceed the longest upload of one file (its size
    /// divided by the slowest throughput expected); 1 hour by default. 0 aborts every
    /// unfinished upload (only when no other transfer-put process runs).
    pub stale_upload_secs: u64,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
            files_in_flight: 64,
            parts_in_flight: 4,
            // One multipart file at a time, two 8 MiB parts in flight (four buffers): keeps a
            // transfer process under 100 MiB resident (BENCHMARKS.md, "Memory").
            memory_budget: 32 << 20,
            stale_upload_secs: 3600,
        }
    }
}

/// `[workers.archive]`: what one archive round may take on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ArchiveConfig {
    /// Seconds between two scheduled rounds (0: only when an admin asks).
    pub interval_secs: u64,
    /// Target size of an aggregate; a file at least this large is archived alone.
    pub aggregate_bytes: u64,
    /// Most files in one aggregate.
    pub aggregate_members: usize,
    /// Holdings served per round.
    pub holdings_per_round: u64,
    /// Aggregates per holding per round.
    pub aggregates_per_holding: usize,
    /// How long a worker may take to write an aggregate before it is given up.
    pub lease_secs: u64,
    /// Seconds between two checks of a staging aggregate (a durable delayed message each).
    pub recall_poll_secs: u64,
    /// Give a recall up when staging takes longer than this.
    pub recall_timeout_secs: u64,
    /// Where recalled members are spooled (and verified) before they are uploaded; `spool`
    /// under `[workers] work_dir` by default. Each archive-get process spools in a subdirectory
    /// it holds locked; one that starts removes the subdirectories of dead processes.
    pub spool_dir: Option<PathBuf>,
    /// At start, archive-put removes the partial aggregates (temporary files of the cold store)
    /// not written to for this long: a process killed mid-write leaves them. Other archive-put
    /// processes may be writing at that moment (a write touches its file with every chunk), so
    /// this must exceed the longest pause of a write (the slowest S3 read of one chunk); 1 hour
    /// by default.
    pub stale_partial_secs: u64,
    /// Accept an aggregate the cold store reports no checksum for although its writes are not
    /// verified by the store itself (refused by default: nothing would show the copy is whole).
    pub accept_unverified: bool,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            interval_secs: 600,
            aggregate_bytes: 4 << 30,
            aggregate_members: 10_000,
            holdings_per_round: 16,
            aggregates_per_holding: 4,
            lease_secs: 6 * 3600,
            recall_poll_secs: 60,
            recall_timeout_secs: 7 * 24 * 3600,
            spool_dir: None,
            stale_partial_secs: 3600,
            accept_unverified: false,
        }
    }
}

/// `[workers.delete]`: how long deleted files can be undeleted, and how much one purge takes on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DeleteConfig {
    /// Seconds a deleted file or holding can be undeleted; then it is purged (7 days).
    pub retention_secs: u64,
    /// Most deleted files one purge handles (the next sweep takes the rest).
    pub purge_batch: u64,
}

impl Default for DeleteConfig {
    fn default() -> Self {
        Self {
            retention_secs: 7 * 24 * 3600,
            purge_batch: 10_000,
        }
    }
}

/// `[workers.versions]`: how many versions of each path a holding keeps (docs/VERSIONS.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionsConfig {
    /// Keep the newest `keep` versions of a path: when a put stores a new version, older ones
    /// are deleted (soft, like `nlds del`: undeletable until the purge removes them after
    /// `[workers.delete] retention_secs`). 0 keeps every version.
    pub keep: u32,
}

/// Whose permissions the workers check.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase", const_into_str)]
pub enum PosixChecks {
    /// The requesting user's (looked up through NSS); files restored by a get are given to them.
    User,
    /// The process's own access only; restored files belong to the process.
    Service,
}

impl PosixChecks {
    pub const ALL: &'static [PosixChecks] = <PosixChecks as strum::VariantArray>::VARIANTS;

    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }
}

/// What the checks need from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosixPolicy {
    pub checks: PosixChecks,
    /// A requesting user with uid 0 bypasses the mode bits (as root does) only when set.
    pub root_override: bool,
}

impl Default for PosixPolicy {
    fn default() -> Self {
        Self {
            checks: PosixChecks::User,
            root_override: false,
        }
    }
}

impl PosixPolicy {
    /// The process's own access decides (no checks on behalf of a user): what a role starts with
    /// until `with_posix` says otherwise.
    pub const SERVICE: Self = Self {
        checks: PosixChecks::Service,
        root_override: false,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_checks_default_to_user_and_parse() {
        let cfg: WorkerConfig = toml::from_str("").unwrap();
        assert_eq!(cfg.posix_policy().checks, PosixChecks::User);
        let cfg: WorkerConfig = toml::from_str("posix_checks = \"service\"").unwrap();
        assert_eq!(cfg.posix_policy().checks, PosixChecks::Service);
        assert!(toml::from_str::<WorkerConfig>("posix_checks = \"root\"").is_err());
    }
}
