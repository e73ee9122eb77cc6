//! `dir`: a tape-library emulator on a local directory, the embedded default.
//!
//! It behaves like a tape library: an aggregate goes "to tape" when it is written and is then
//! *offline*. It must be staged (recalled) before it can be read, staging takes
//! [`DirConfig::stage_delay_ms`], and reading an unstaged aggregate fails with
//! [`ColdError::Offline`], as a read from tape that was not recalled does.
//!
//! Layout under [`DirConfig::root`] (a name `h1/a.tar` maps to the same relative path in each):
//! - `tape/<name>`: the cold copy. Written atomically: a temporary file in the same directory,
//!   fsync, rename, fsync of the directory. A failed, short or over-long stream never leaves a
//!   file under the final name (the temporary is removed, also when the write is cancelled).
//! - `staged/<name>`: the online copy, a hard link to the cold copy (or a copy where hard links
//!   are not supported).
//! - `requests/<name>`: a durable stage request, JSON `{"requested_at_ms": <unix ms>}`, written
//!   atomically. Requests are the only staging state, so a request made before a restart still
//!   completes after the delay: there is no background task, the staged copy is materialised by
//!   the first [`ColdStore::stat`] or [`ColdStore::read`] that finds the request old enough.
//!
//! Temporary files are named `<file>.~tmp.<uuid>`; `~` is not allowed in names, so a temporary
//! can never collide with an aggregate. Temporaries orphaned by a crash (never visible under a
//! name, but taking space) are removed by [`ColdStore::sweep_partials`], which archive-put runs
//! at start.
//!
//! Semantics worth knowing:
//! - a freshly written (or rewritten) aggregate is **offline**: any earlier staged copy and stage
//!   request of that name are dropped, as a new copy went to tape;
//! - [`ColdStore::checksum`] hashes `tape/<name>` itself (adler32), the emulator's equivalent of
//!   a tape front end's checksum query; it does not need the aggregate to be staged;
//! - [`ColdStore::stage`] keeps the time of the first request (re-staging does not restart the
//!   delay) and answers [`ColdError::NotFound`] (naming the first missing one) if any name has no
//!   aggregate, after recording requests for the others;
//! - a failed rewrite leaves the previous aggregate of that name intact (the rename never
//!   happened).

use std::fmt::Display;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    AggregateStat, ByteReader, ColdError, ColdResult, ColdStore, StoredChecksum, check_name,
};

/// Bytes read from a write's stream at a time.
const CHUNK: usize = 1 << 20;

pub use nlds_settings::DirConfig;

/// A stage request as stored under `requests/`.
#[derive(Debug, Serialize, Deserialize)]
struct StageRequest {
    requested_at_ms: u64,
}

/// The `dir` cold store. Cheap to clone; `Send + Sync`, so it can be shared in an `Arc`.
#[derive(Debug, Clone)]
pub struct DirStore {
    tape: PathBuf,
    staged: PathBuf,
    requests: PathBuf,
    stage_delay_ms: u64,
}

impl DirStore {
    /// Opens (creating if needed) the library under `cfg.root`. Existing aggregates, staged
    /// copies and stage requests are kept.
    pub fn new(cfg: DirConfig) -> ColdResult<Self> {
        let store = Self {
            tape: cfg.root.join("tape"),
            staged: cfg.root.join("staged"),
            requests: cfg.root.join("requests"),
            stage_delay_ms: cfg.stage_delay_ms,
        };
        for dir in [&store.tape, &store.staged, &store.requests] {
            std::fs::create_dir_all(dir)
                .map_err(|e| io_error(format_args!("creating {}", dir.display()), e))?;
        }
        Ok(store)
    }

    /// Where the cold copy of `name` lives, for tests that tamper with an aggregate (e.g. flip
    /// a byte to check that verification catches it). `name` must be valid ([`check_name`]).
    pub fn tape_path(&self, name: &str) -> PathBuf {
        self.tape.join(name)
    }

    fn staged_path(&self, name: &str) -> PathBuf {
        self.staged.join(name)
    }

    fn request_path(&self, name: &str) -> PathBuf {
        self.requests.join(name)
    }

    /// The size of the cold copy, or `None` if there is no aggregate `name`. A store whose tape
    /// directory is gone (unmounted, removed, replaced by a file) is unavailable, not empty: the
    /// operators' `backend_unreachable` alert and the archive's retries rely on that.
    async fn tape_size(&self, name: &str) -> ColdResult<Option<u64>> {
        let path = self.tape_path(name);
        match fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None), // a directory of aggregates, not an aggregate
            Err(e) if is_missing(&e) => match fs::metadata(&self.tape).await {
                Ok(m) if m.is_dir() => Ok(None),
                Ok(_) => Err(ColdError::Unavailable(format!(
                    "the cold store's directory {} is not a directory",
                    self.tape.display()
                ))),
                Err(e) => Err(ColdError::Unavailable(format!(
                    "the cold store's directory {} cannot be read (unmounted or removed?): {e}",
                    self.tape.display()
                ))),
            },
            Err(e) => Err(io_error(format_args!("stat {}", path.display()), e)),
        }
    }

    /// When `name` was asked to be staged, if it was.
    async fn request_time(&self, name: &str) -> ColdResult<Option<u64>> {
        let path = self.request_path(name);
        let text = match fs::read(&path).await {
            Ok(t) => t,
            Err(e) if is_missing(&e) || e.kind() == ErrorKind::IsADirectory => return Ok(None),
            Err(e) => return Err(io_error(format_args!("reading {}", path.display()), e)),
        };
        if let Ok(req) = serde_json::from_slice::<StageRequest>(&text) {
            return Ok(Some(req.requested_at_ms));
        }
        // Unreadable record (written by hand?): it is still a request; date it by its mtime.
        let mtime = fs::metadata(&path)
            .await
            .and_then(|m| m.modified())
            .ok()
            .map_or(0, unix_ms);
        Ok(Some(mtime))
    }

    /// Records a stage request for `name` made at `at_ms`, durably.
    async fn write_request(&self, name: &str, at_ms: u64) -> ColdResult<()> {
        let path = self.request_path(name);
        let body = serde_json::to_vec(&StageRequest {
            requested_at_ms: at_ms,
        })
        .map_err(|e| ColdError::Failed(format!("encoding the stage request for {name}: {e}")))?;
        blocking(
            format!("recording the stage request for {name}"),
            move || {
                let dir = parent(&path);
                std::fs::create_dir_all(dir)?;
                let tmp = TempFile::new(temp_path(&path));
                {
                    let mut f = std::fs::File::create(tmp.path())?;
                    io::Write::write_all(&mut f, &body)?;
                    f.sync_all()?;
                }
                std::fs::rename(tmp.path(), &path)?;
                tmp.disarm();
                sync_dir(dir)
            },
        )
        .await
    }

    /// Is `name` online? Materialises the staged copy of a request older than the delay.
    async fn ensure_online(&self, name: &str) -> ColdResult<bool> {
        if is_file(&self.staged_path(name)).await? {
            return Ok(true);
        }
        let Some(at) = self.request_time(name).await? else {
            return Ok(false);
        };
        if now_ms().saturating_sub(at) < self.stage_delay_ms {
            return Ok(false);
        }
        self.materialise(name).await
    }

    /// Creates `staged/<name>` from `tape/<name>`; `false` if the cold copy has gone.
    async fn materialise(&self, name: &str) -> ColdResult<bool> {
        let src = self.tape_path(name);
        let dst = self.staged_path(name);
        blocking(format!("staging {name}"), move || {
            let dir = parent(&dst);
            std::fs::create_dir_all(dir)?;
            let tmp = TempFile::new(temp_path(&dst));
            match std::fs::hard_link(&src, tmp.path()) {
                Ok(()) => {}
                Err(e) if is_missing(&e) => return Ok(false),
                Err(_) => {
                    // No hard links here (or across these directories): copy instead.
                    match std::fs::copy(&src, tmp.path()) {
                        Ok(_) => {}
                        Err(e) if is_missing(&e) => return Ok(false),
                        Err(e) => return Err(e),
                    }
                    std::fs::File::open(tmp.path())?.sync_all()?;
                }
            }
            std::fs::rename(tmp.path(), &dst)?;
            tmp.disarm();
            sync_dir(dir)?;
            Ok(true)
        })
        .await
    }

    /// Drops the online state of `name`: its staged copy and its stage request.
    async fn clear_online(&self, name: &str) -> ColdResult<()> {
        remove_if_present(&self.request_path(name)).await?;
        remove_if_present(&self.staged_path(name)).await
    }

    /// Streams exactly `size` bytes of `body` into the temporary `tmp` and syncs it.
    async fn write_temp(
        &self,
        name: &str,
        tmp: &Path,
        size: u64,
        body: &mut ByteReader,
    ) -> ColdResult<()> {
        let mut file = fs::File::create(tmp)
            .await
            .map_err(|e| io_error(format_args!("creating {}", tmp.display()), e))?;
        let werr = |e| io_error(format_args!("writing {}", tmp.display()), e);
        let mut buf = vec![0u8; CHUNK];
        let mut total: u64 = 0;
        loop {
            let n = body.read(&mut buf).await.map_err(|e| {
                ColdError::Failed(format!(
                    "reading the stream for {name} after {total} bytes: {e}"
                ))
            })?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > size {
                return Err(ColdError::Failed(format!(
                    "the stream for {name} is longer than the declared {size} bytes"
                )));
            }
            file.write_all(&buf[..n]).await.map_err(werr)?;
        }
        if total < size {
            return Err(ColdError::Failed(format!(
                "the stream for {name} ended after {total} of {size} bytes"
            )));
        }
        file.flush().await.map_err(werr)?;
        file.sync_all().await.map_err(werr)?;
        Ok(())
    }
}

#[async_trait]
impl ColdStore for DirStore {
    fn kind(&self) -> &'static str {
        "dir"
    }

    async fn write(&self, name: &str, size: u64, mut body: ByteReader) -> ColdResult<()> {
        check_name(name)?;
        let dest = self.tape_path(name);
        let dir = parent(&dest).to_path_buf();
        fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error(format_args!("creating {}", dir.display()), e))?;
        // Removed on every early return and on cancellation.
        let tmp = TempFile::new(temp_path(&dest));
        self.write_temp(name, tmp.path(), size, &mut body).await?;
        // A new copy went to tape: whatever was online is stale. Cleared before the rename (so
        // no stale copy can outlive it) and after (a stat racing the write could have
        // materialised the old copy in between).
        self.clear_online(name).await?;
        fs::rename(tmp.path(), &dest)
            .await
            .map_err(|e| io_error(format_args!("renaming into {}", dest.display()), e))?;
        tmp.disarm();
        blocking(format!("syncing {}", dir.display()), move || sync_dir(&dir)).await?;
        self.clear_online(name).await
    }

    async fn sweep_partials(&self, idle: std::time::Duration) -> ColdResult<Vec<String>> {
        let roots = [
            self.tape.clone(),
            self.staged.clone(),
            self.requests.clone(),
        ];
        blocking("sweeping partial aggregates".to_owned(), move || {
            let mut removed = Vec::new();
            for root in &roots {
                for entry in walkdir::WalkDir::new(root).follow_links(false) {
                    // Entries may go while we look (another process's write finishing).
                    let entry = match entry {
                        Ok(e) => e,
                        Err(e) if e.io_error().is_some_and(is_missing) => continue,
                        Err(e) => return Err(e.into()),
                    };
                    if !entry.file_type().is_file()
                        || !entry.file_name().to_string_lossy().contains(".~tmp.")
                    {
                        continue;
                    }
                    let m = match entry.metadata() {
                        Ok(m) => m,
                        Err(e) if e.io_error().is_some_and(is_missing) => continue,
                        Err(e) => return Err(e.into()),
                    };
                    let quiet = m
                        .modified()
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age >= idle);
                    if !quiet {
                        continue;
                    }
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => removed.push(entry.path().display().to_string()),
                        Err(e) if is_missing(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(removed)
        })
        .await
    }

    async fn stat(&self, name: &str) -> ColdResult<Option<AggregateStat>> {
        check_name(name)?;
        let Some(size) = self.tape_size(name).await? else {
            return Ok(None);
        };
        let online = self.ensure_online(name).await?;
        Ok(Some(AggregateStat { size, online }))
    }

    async fn checksum(&self, name: &str) -> ColdResult<Option<StoredChecksum>> {
        check_name(name)?;
        let path = self.tape_path(name);
        let missing = ColdError::NotFound(name.to_string());
        let sum = tokio::task::spawn_blocking(move || -> io::Result<Option<u32>> {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
            if !file.metadata()?.is_file() {
                return Ok(None);
            }
            let mut file = file;
            let mut sum = simd_adler32::Adler32::new();
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match io::Read::read(&mut file, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                sum.write(&buf[..n]);
            }
            Ok(Some(sum.finish()))
        })
        .await
        .map_err(|e| ColdError::Failed(format!("checksumming {name}: {e}")))?
        .map_err(|e| io_error(format_args!("checksumming {name}"), e))?;
        match sum {
            Some(sum) => Ok(Some(StoredChecksum::Adler32(sum))),
            None => Err(missing),
        }
    }

    /// Walks `tape/` (symbolic links are not followed): every regular file whose relative path
    /// is a valid name; temporaries (`~` in their name) are not aggregates.
    async fn list(&self) -> ColdResult<Option<Vec<(String, u64)>>> {
        let root = self.tape.clone();
        let listed = tokio::task::spawn_blocking(move || -> io::Result<Vec<(String, u64)>> {
            let mut out = Vec::new();
            for entry in walkdir::WalkDir::new(&root).follow_links(false) {
                let entry = entry.map_err(io::Error::from)?;
                if !entry.file_type().is_file() {
                    continue;
                }
                let Ok(rel) = entry.path().strip_prefix(&root) else {
                    continue;
                };
                let Some(name) = rel.to_str() else { continue };
                if check_name(name).is_err() {
                    continue;
                }
                out.push((
                    name.to_owned(),
                    entry.metadata().map_err(io::Error::from)?.len(),
                ));
            }
            out.sort();
            Ok(out)
        })
        .await
        .map_err(|e| ColdError::Failed(format!("listing {}: {e}", self.tape.display())))?
        .map_err(|e| io_error(format_args!("listing {}", self.tape.display()), e))?;
        Ok(Some(listed))
    }

    async fn stage(&self, names: &[String]) -> ColdResult<()> {
        for name in names {
            check_name(name)?;
        }
        let mut missing = None;
        for name in names {
            if self.tape_size(name).await?.is_none() {
                missing.get_or_insert_with(|| name.clone());
                continue;
            }
            if is_file(&self.staged_path(name)).await? || self.request_time(name).await?.is_some() {
                continue; // online already, or on its way: keep the first request's time
            }
            self.write_request(name, now_ms()).await?;
        }
        match missing {
            Some(name) => Err(ColdError::NotFound(name)),
            None => Ok(()),
        }
    }

    async fn read(&self, name: &str) -> ColdResult<ByteReader> {
        check_name(name)?;
        if self.tape_size(name).await?.is_none() {
            return Err(ColdError::NotFound(name.to_string()));
        }
        if !self.ensure_online(name).await? {
            return Err(ColdError::Offline(name.to_string()));
        }
        let path = self.staged_path(name);
        match fs::File::open(&path).await {
            Ok(f) => Ok(Box::pin(f)),
            // Evicted between the check and the open.
            Err(e) if is_missing(&e) => Err(ColdError::Offline(name.to_string())),
            Err(e) => Err(io_error(format_args!("opening {}", path.display()), e)),
        }
    }

    async fn evict(&self, name: &str) -> ColdResult<()> {
        check_name(name)?;
        self.clear_online(name).await
    }

    async fn remove(&self, name: &str) -> ColdResult<()> {
        check_name(name)?;
        // The request first, so nothing re-stages it while the copies go.
        remove_if_present(&self.request_path(name)).await?;
        remove_if_present(&self.tape_path(name)).await?;
        remove_if_present(&self.staged_path(name)).await
    }
}

/// A temporary file removed on drop unless disarmed.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn new(path: PathBuf) -> Self {
        Self(Some(path))
    }

    fn path(&self) -> &Path {
        self.0
            .as_deref()
            .expect("a TempFile has a path until disarmed")
    }

    /// It was renamed into place: keep it.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `<dir>/<file>.~tmp.<uuid>`: beside `path`, and never a valid aggregate name.
fn temp_path(path: &Path) -> PathBuf {
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{file}.~tmp.{}", uuid::Uuid::new_v4().simple()))
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// No such file, or a path component that is a file rather than a directory.
fn is_missing(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

async fn is_file(path: &Path) -> ColdResult<bool> {
    match fs::metadata(path).await {
        Ok(m) => Ok(m.is_file()),
        Err(e) if is_missing(&e) => Ok(false),
        Err(e) => Err(io_error(format_args!("stat {}", path.display()), e)),
    }
}

/// Removes the file at `path`; a missing file (or a directory, which is not an aggregate) is fine.
async fn remove_if_present(path: &Path) -> ColdResult<()> {
    match fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if is_missing(&e) || e.kind() == ErrorKind::IsADirectory => Ok(()),
        Err(e) => Err(io_error(format_args!("removing {}", path.display()), e)),
    }
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    what: String,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> ColdResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(io_error(what, e)),
        Err(e) => Err(ColdError::Failed(format!("{what}: {e}"))),
    }
}

/// A full disk or a timeout is worth retrying; anything else is a failure.
fn io_error(what: impl Display, e: io::Error) -> ColdError {
    let msg = format!("{what}: {e}");
    match e.kind() {
        ErrorKind::StorageFull
        | ErrorKind::QuotaExceeded
        | ErrorKind::TimedOut
        | ErrorKind::Interrupted
        | ErrorKind::WouldBlock => ColdError::Unavailable(msg),
        _ => ColdError::Failed(msg),
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests;
