//! The cold tier: a tape-like store of aggregates (tar files), behind one trait.
//!
//! An aggregate is written once as a stream, verified, and then only read, staged, evicted or
//! removed. Like tape, a store may keep an aggregate *offline*: it must be staged (recalled)
//! before it can be read, and reading an offline aggregate fails with [`ColdError::Offline`].
//!
//! Backends, selected by [`ColdConfig::backend`]:
//! - [`dir::DirStore`] (`dir`): a tape-library emulator on a local directory, the embedded default;
//! - [`xrootd::XrootdStore`] (`xrootd`): an XRootD server (an HSM / CERN CTA front end) driven
//!   through the `xrdcp` and `xrdfs` commands;
//! - [`glacier::GlacierStore`] (`s3-glacier`): an S3 bucket written with a cold storage class and
//!   recalled with RestoreObject.
//!
//! Names are relative paths made of `[0-9a-z._/-]` (e.g. `h000123/5f0c...e1.tar`); a backend
//! maps them under its own root.

use std::pin::Pin;

use async_trait::async_trait;
use nlds_core::ErrorCode;
use tokio::io::AsyncRead;

/// A byte stream in or out of a store.
pub type ByteReader = Pin<Box<dyn AsyncRead + Send>>;

/// What a store reports about an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateStat {
    pub size: u64,
    /// Readable now (on disk / staged / restored), as opposed to only on tape.
    pub online: bool,
}

/// A checksum the store computed itself over an aggregate's bytes, for verification after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredChecksum {
    /// adler32, as tape front ends (XRootD, CTA) report it.
    Adler32(u32),
    /// CRC32C, as S3 stores it with a flexible checksum.
    Crc32c(u32),
}

/// Why a cold-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    /// The aggregate is not online: stage it first.
    #[error("aggregate {0} is offline (on tape): it must be staged before it can be read")]
    Offline(String),
    #[error("aggregate {0} does not exist in the cold store")]
    NotFound(String),
    /// The store cannot be reached or failed in a way worth retrying.
    #[error("cold store unavailable: {0}")]
    Unavailable(String),
    /// The bytes read back do not match what was recorded (the message names the aggregate).
    #[error("{0}")]
    Corrupt(String),
    /// The store stopped reading an aggregate being written (its own error says why).
    #[error("the cold store stopped reading the aggregate: {0}")]
    ReaderGone(String),
    /// Any other failure (bad name, refused write, short stream, ...).
    #[error("cold store error: {0}")]
    Failed(String),
}

impl ColdError {
    /// Worth retrying later?
    pub fn is_transient(&self) -> bool {
        matches!(self, ColdError::Unavailable(_))
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ColdError::Offline(_) | ColdError::Unavailable(_) => ErrorCode::Unavailable,
            ColdError::NotFound(_) => ErrorCode::NotFound,
            ColdError::Corrupt(_) => ErrorCode::ChecksumMismatch,
            ColdError::Failed(_) | ColdError::ReaderGone(_) => ErrorCode::StorageError,
        }
    }
}

pub type ColdResult<T> = Result<T, ColdError>;

/// An S3 failure as a cold-store error: transient ones are [`ColdError::Unavailable`].
pub fn from_s3(e: crate::s3::S3Error) -> ColdError {
    if e.transient {
        ColdError::Unavailable(e.message)
    } else {
        ColdError::Failed(e.message)
    }
}

/// A tape-like store of aggregates.
#[async_trait]
pub trait ColdStore: Send + Sync + 'static {
    /// `dir`, `xrootd` or `s3-glacier`.
    fn kind(&self) -> &'static str;

    /// Writes aggregate `name` from exactly `size` bytes of `body`. Idempotent: an existing
    /// aggregate of that name is replaced. On failure nothing is left under `name` (a partial
    /// write is removed or was never visible).
    async fn write(&self, name: &str, size: u64, body: ByteReader) -> ColdResult<()>;

    /// Size and online state, or `None` if there is no such aggregate.
    async fn stat(&self, name: &str) -> ColdResult<Option<AggregateStat>>;

    /// The store's own checksum of the aggregate, computed by the store over the bytes it holds
    /// (never a value we handed it), for verifying a write against the checksums the writer
    /// computed over the stream. `None` only from a store whose `write` verified the bytes itself
    /// (e.g. S3 validating a checksum sent with every part).
    async fn checksum(&self, name: &str) -> ColdResult<Option<StoredChecksum>>;

    /// Whether [`ColdStore::write`] itself verifies the bytes it stores (S3 validating the
    /// checksum sent with every part), so that [`ColdStore::checksum`] answering `None` still
    /// means a verified copy. A store that does not (the default) and reports no checksum leaves
    /// a write unverified, which archive-put refuses unless told otherwise.
    fn verifies_writes(&self) -> bool {
        false
    }

    /// Every aggregate the store holds, sorted by name, with its size (for the storage audit:
    /// an aggregate no aggregation row names is dark data). `None`: this store cannot list.
    async fn list(&self) -> ColdResult<Option<Vec<(String, u64)>>> {
        Ok(None)
    }

    /// Asks for the aggregates to be brought online. Idempotent and asynchronous: poll
    /// [`ColdStore::stat`] until `online`.
    async fn stage(&self, names: &[String]) -> ColdResult<()>;

    /// Reads a whole online aggregate. [`ColdError::Offline`] if it is not online.
    async fn read(&self, name: &str) -> ColdResult<ByteReader>;

    /// Releases the online copy of a staged aggregate (the cold copy stays).
    async fn evict(&self, name: &str) -> ColdResult<()>;

    /// Deletes the aggregate. Removing a missing one is not an error.
    async fn remove(&self, name: &str) -> ColdResult<()>;

    /// Removes the partial aggregates that writes which never finished left behind (a writer
    /// killed mid-write) and that were not written to for `idle`; returns what was removed.
    /// `idle` protects the writes of other live processes. A store whose partial writes cannot
    /// outlive their writer (XRootD's persist-on-successful-close) has nothing to do.
    async fn sweep_partials(&self, idle: std::time::Duration) -> ColdResult<Vec<String>> {
        let _ = idle;
        Ok(Vec::new())
    }
}

/// Checks an aggregate name: relative, `[0-9a-z._/-]`, no empty, `.` or `..` component.
pub fn check_name(name: &str) -> ColdResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && !name.starts_with('/')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._/-".contains(&b))
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(ColdError::Failed(format!(
            "invalid aggregate name {name:?}: a relative path of [0-9a-z._/-]"
        )))
    }
}

pub use nlds_settings::ColdConfig;

/// Opens the configured cold store.
pub async fn open(cfg: &ColdConfig) -> anyhow::Result<std::sync::Arc<dyn ColdStore>> {
    Ok(match cfg {
        ColdConfig::Dir(c) => std::sync::Arc::new(dir::DirStore::new(c.clone())?),
        ColdConfig::Xrootd(c) => std::sync::Arc::new(xrootd::XrootdStore::new(c.clone())?),
        ColdConfig::S3Glacier(c) => {
            let store = glacier::GlacierStore::new(c).await?;
            // An unreachable store must not stop the role: writes retry with back-off.
            if let Err(e) = store.ensure_bucket().await {
                tracing::warn!(error = %e, bucket = %c.store.bucket,
                    "cannot check the cold bucket now; writes will retry");
            }
            std::sync::Arc::new(store)
        }
    })
}

pub mod aggregate;
pub mod dir;
pub mod glacier;
#[cfg(test)]
pub(crate) mod testing;
pub mod xrootd;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("h000001/0123abcd.tar").is_ok());
        for bad in [
            "",
            "/abs.tar",
            "a/../b",
            "a//b",
            "UPPER.tar",
            "sp ace",
            "./x",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
