//! `[workers]` and its tables: what the worker roles need.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::cold::ColdConfig;

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
    pub cold: ColdConfig,
    /// How archive rounds pack files and how often they run.
    pub archive: ArchiveConfig,
    /// How long deleted files can be undeleted before they are purged.
    pub delete: DeleteConfig,
    /// Whose POSIX permissions the indexer and the transfer roles check: `"user"` (the
    /// requesting user's, looked up through NSS; restored files are given to them) or
    /// `"service"` (the process's own). Unset: `"user"`, except in embedded mode (`"service"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posix_checks: Option<PosixChecks>,
    /// With `posix_checks = "user"`, a requesting user with uid 0 bypasses the mode bits.
    #[serde(default)]
    pub posix_root_override: bool,
}

impl WorkerConfig {
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
            cold: Default::default(),
            archive: Default::default(),
            delete: Default::default(),
            posix_checks: None,
            posix_root_override: false,
        }
    }
}

/// The warm tier: one S3 endpoint and one bucket (see ARCHITECTURE.md, "Object layout").
///
/// Credentials live here, on the worker side, and nowhere else: never in a queue message, a URL
/// or a log line. Each may come from the file itself or from a file (`*_file`, for Kubernetes
/// secret mounts; env `NLDS_S3_ACCESS_KEY_FILE`, `NLDS_S3_SECRET_KEY_FILE`). `Debug` redacts both.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectStoreConfig {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    /// Read the access key from this file instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_file: Option<PathBuf>,
    /// Never logged: `Debug` prints it redacted. Serializing the settings writes it (as before:
    /// a settings file written for a worker process must carry its key).
    #[serde(serialize_with = "expose")]
    pub secret_key: SecretString,
    /// Read the secret key from this file (Kubernetes secret mounts) instead.
    pub secret_key_file: Option<PathBuf>,
    pub bucket: String,
    /// Named tenancies of the object store (`[workers.object_store.tenancies.<name>]`): each
    /// overrides any of the keys above and inherits the rest. The name is what legacy clients
    /// call their `tenancy`; a name only ever selects a configuration, it never carries a
    /// credential.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenancies: BTreeMap<String, TenancyConfig>,
}

/// One named tenancy: the keys of [`ObjectStoreConfig`] it overrides.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenancyConfig {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub access_key_file: Option<PathBuf>,
    #[serde(serialize_with = "expose_opt", skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretString>,
    pub secret_key_file: Option<PathBuf>,
    pub bucket: Option<String>,
}

impl std::fmt::Debug for TenancyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenancyConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key.as_ref().map(|_| REDACTED))
            .field("access_key_file", &self.access_key_file)
            .field("secret_key", &self.secret_key.as_ref().map(|_| REDACTED))
            .field("secret_key_file", &self.secret_key_file)
            .field("bucket", &self.bucket)
            .finish()
    }
}

/// Writes a secret out: only for settings files a program writes for another.
fn expose<S: serde::Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose_secret())
}

fn expose_opt<S: serde::Serializer>(s: &Option<SecretString>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(s.expose_secret()),
        None => ser.serialize_none(),
    }
}

/// What `Debug` prints instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A key given inline or in a file (the file wins; surrounding whitespace is dropped).
fn read_key(inline: &str, file: Option<&PathBuf>, what: &str) -> std::io::Result<String> {
    match file {
        Some(p) => std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot read the {what} file {}: {e}", p.display()),
                )
            }),
        None => Ok(inline.to_owned()),
    }
}

impl ObjectStoreConfig {
    /// The secret key, from `secret_key_file` if set.
    pub fn secret(&self) -> std::io::Result<String> {
        read_key(
            self.secret_key.expose_secret(),
            self.secret_key_file.as_ref(),
            "object-store secret key",
        )
    }

    /// The access key, from `access_key_file` if set.
    pub fn access(&self) -> std::io::Result<String> {
        read_key(
            &self.access_key,
            self.access_key_file.as_ref(),
            "object-store access key",
        )
    }

    /// The configuration of tenancy `name`: its overrides over this one's keys; `None` if no
    /// tenancy of that name is configured.
    pub fn tenancy(&self, name: &str) -> Option<ObjectStoreConfig> {
        let t = self.tenancies.get(name)?;
        let mut c = self.clone();
        c.tenancies = BTreeMap::new();
        if let Some(v) = &t.endpoint {
            c.endpoint = v.clone();
        }
        if let Some(v) = &t.region {
            c.region = v.clone();
        }
        if t.access_key.is_some() || t.access_key_file.is_some() {
            c.access_key = t.access_key.clone().unwrap_or_default();
            c.access_key_file = t.access_key_file.clone();
        }
        if t.secret_key.is_some() || t.secret_key_file.is_some() {
            c.secret_key = t.secret_key.clone().unwrap_or_default();
            c.secret_key_file = t.secret_key_file.clone();
        }
        if let Some(v) = &t.bucket {
            c.bucket = v.clone();
        }
        Some(c)
    }
}

impl std::fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &REDACTED)
            .field("access_key_file", &self.access_key_file)
            .field("secret_key", &REDACTED)
            .field("secret_key_file", &self.secret_key_file)
            .field("bucket", &self.bucket)
            .field("tenancies", &self.tenancies)
            .finish()
    }
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            access_key: "nlds".into(),
            access_key_file: None,
            secret_key: SecretString::default(),
            secret_key_file: None,
            bucket: "nlds".into(),
            tenancies: BTreeMap::new(),
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
    /// Where recalled members are spooled (and verified) before they are uploaded; the system's
    /// temporary directory by default.
    pub spool_dir: Option<PathBuf>,
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
    fn keys_come_from_files_and_tenancies_inherit_and_override() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        let access = dir.path().join("access");
        std::fs::write(&secret, "s3cr3t-from-file\n").unwrap();
        std::fs::write(&access, "  AKIA-FROM-FILE ").unwrap();
        let toml = format!(
            r#"
            endpoint = "http://s3.local"
            access_key = "inline-access"
            secret_key_file = "{}"
            bucket = "main"
            [tenancies."other.example.org"]
            access_key_file = "{}"
            secret_key = "tenancy-secret"
            bucket = "other"
            "#,
            secret.display(),
            access.display()
        );
        let cfg: ObjectStoreConfig = toml::from_str(&toml).unwrap();
        assert_eq!(cfg.secret().unwrap(), "s3cr3t-from-file");
        assert_eq!(cfg.access().unwrap(), "inline-access");
        let t = cfg.tenancy("other.example.org").unwrap();
        assert_eq!(t.endpoint, "http://s3.local", "inherited");
        assert_eq!(t.bucket, "other");
        assert_eq!(t.access().unwrap(), "AKIA-FROM-FILE");
        assert_eq!(t.secret().unwrap(), "tenancy-secret");
        assert!(cfg.tenancy("nope").is_none());
        // Debug never shows a key, inline or read.
        let shown = format!("{cfg:?} {t:?} {:?}", cfg.tenancies);
        for s in [
            "inline-access",
            "tenancy-secret",
            "s3cr3t-from-file",
            "AKIA-FROM-FILE",
        ] {
            assert!(!shown.contains(s), "{s} in {shown}");
        }
        // A missing file is named, its (absent) content is not invented.
        let missing = ObjectStoreConfig {
            secret_key_file: Some(dir.path().join("gone")),
            ..Default::default()
        };
        let e = missing.secret().unwrap_err().to_string();
        assert!(
            e.contains("object-store secret key file") && e.contains("gone"),
            "{e}"
        );
        // Unknown keys of a tenancy are refused (a typo must not silently inherit the default).
        assert!(toml::from_str::<ObjectStoreConfig>("[tenancies.x]\nsecretkey = \"a\"").is_err());
    }

    #[test]
    fn posix_checks_default_to_user_and_parse() {
        let cfg: WorkerConfig = toml::from_str("").unwrap();
        assert_eq!(cfg.posix_policy().checks, PosixChecks::User);
        let cfg: WorkerConfig = toml::from_str("posix_checks = \"service\"").unwrap();
        assert_eq!(cfg.posix_policy().checks, PosixChecks::Service);
        assert!(toml::from_str::<WorkerConfig>("posix_checks = \"root\"").is_err());
    }
}
