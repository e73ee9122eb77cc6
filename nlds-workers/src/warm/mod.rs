//! What the two warm-tier transfer roles share: [`crate::transfer_put`] (POSIX -> S3, and deleting
//! objects) and [`crate::transfer_get`] (S3 -> POSIX) hold their tenancy clients and tuning in a
//! [`Store`], take part buffers from one [`BufferPool`], sum a batch up with [`Batch`] and report
//! the bytes of a batch in flight with [`Moving`].
//!
//! * Files are streamed: a file is read once, in chunks of at most the part size, and its blake3
//!   is computed from the same bytes that are uploaded. Small files (below
//!   `multipart_threshold`) go in one PutObject, larger ones in a multipart upload with up to
//!   `parts_in_flight` parts in flight (as many as `memory_budget` holds with the part waiting
//!   and the one being read); a failed multipart upload is aborted.
//! * Downloads go to a temporary file next to the destination, are verified against the
//!   catalogue's blake3, get their mode and mtime, are fsynced and only then renamed into place,
//!   all through handles ([`crate::userfs`]); uploads open each file through its parent's handle.
//! * Up to `files_in_flight` files are transferred at once by each role, over all the batches it
//!   handles at once (the bus hands a role up to `prefetch` of them): each file takes a slot of
//!   the role's [`Store`]. Every file in flight holds a connection, a blocking thread and its
//!   buffers, so this bounds the role's memory whatever the prefetch. The batches take the slots
//!   in turn, in the order they started (`warm/turn.rs`), so they finish one after another.
//! * Per-file problems (a vanished source, a permission, a checksum mismatch, a conflict) become
//!   [`FailedFile`]s; an object store that is down or overloaded (connection failures, timeouts,
//!   5xx, throttling) makes the whole batch a transient [`HandlerError`], so the bus retries it
//!   later. Both directions are idempotent: an upload overwrites the same key, a download finds
//!   identical files already in place.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nlds_bus::{HandlerError, Outcome};
use nlds_core::{Action, Envelope, ErrorCode, FailedFile, FileRecord, Payload, RoutingKey, Worker};
use nlds_storage::s3::{S3Clients, S3Error};

use crate::config::TransferConfig;

pub mod progress;
pub use progress::Moving;
mod turn;

#[cfg(test)]
mod tests;

/// What both roles share: the clients of each tenancy (and the bucket new objects go to in
/// each), the tuning.
pub(crate) struct Store {
    pub(crate) clients: S3Clients,
    pub(crate) cfg: TransferConfig,
    /// Upload buffers of this process, in KiB (see [`TransferConfig::memory_budget`]).
    pub(crate) budget: tokio::sync::Semaphore,
    /// Part buffers, reused.
    pub(crate) parts: Arc<BufferPool>,
    /// Files in flight over all the batches this role handles ([`TransferConfig::files_in_flight`]).
    slots: Arc<tokio::sync::Semaphore>,
    /// Whose turn it is to take slots: one batch at a time, in the order they started (`turn`).
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// Part buffers kept for reuse. Allocating and freeing a multi-MiB buffer per part makes the
/// allocator keep ever more of them in its per-thread arenas; reusing a fixed set keeps the
/// process's memory at its budget.
pub(crate) struct BufferPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl BufferPool {
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            free: std::sync::Mutex::new(Vec::new()),
            keep,
        }
    }

    /// An empty buffer with room for `size` bytes.
    pub(crate) fn take(&self, size: usize) -> Vec<u8> {
        let reused = self.free.lock().ok().and_then(|mut f| {
            let i = f.iter().position(|b| b.capacity() >= size)?;
            Some(f.swap_remove(i))
        });
        reused.unwrap_or_else(|| Vec::with_capacity(size))
    }

    /// `buf` as `Bytes` that come back to the pool when the last reference is dropped.
    pub(crate) fn share(self: &Arc<Self>, buf: Vec<u8>) -> bytes::Bytes {
        bytes::Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut f) = self.free.lock()
            && f.len() < self.keep
        {
            f.push(buf);
        }
    }
}

pub(crate) struct Pooled {
    pub(crate) buf: Vec<u8>,
    pub(crate) pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

impl Store {
    pub(crate) fn new(clients: S3Clients, cfg: TransferConfig) -> Self {
        let kib = (cfg.memory_budget / 1024).clamp(1, u32::MAX as u64 / 2) as usize;
        let keep = (cfg.memory_budget / cfg.part_size.max(1 << 20)).clamp(1, 1024) as usize;
        let slots = cfg.files_in_flight.max(1);
        Self {
            clients,
            cfg,
            budget: tokio::sync::Semaphore::new(kib),
            parts: Arc::new(BufferPool::new(keep)),
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            turn: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Waits until `bytes` of buffer may be held (a request above the whole budget takes it all).
    pub(crate) async fn reserve(&self, bytes: u64) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let total = (self.cfg.memory_budget / 1024).clamp(1, u32::MAX as u64 / 2);
        let kib = bytes.div_ceil(1024).clamp(1, total) as u32;
        self.budget.acquire_many(kib).await.ok()
    }

    pub(crate) fn files_in_flight(&self) -> usize {
        self.cfg.files_in_flight.max(1)
    }
    /// Parts in flight for a multipart file of `part_size` parts: `parts_in_flight`, fewer if
    /// its buffers (those in flight, the one waiting and the one being read) would not fit in
    /// `memory_budget`, never fewer than one.
    pub(crate) fn parts_in_flight(&self, part_size: usize) -> usize {
        parts_within(self.cfg.memory_budget, part_size, self.cfg.parts_in_flight)
    }
}

/// Parts in flight (at most `configured`, at least one) whose buffers, with the part waiting
/// and the one being read, fit in `budget` bytes.
fn parts_within(budget: u64, part_size: usize, configured: usize) -> usize {
    let buffers = budget / (part_size.max(1) as u64);
    let fit = usize::try_from(buffers.saturating_sub(2)).unwrap_or(usize::MAX);
    configured.max(1).min(fit.max(1))
}

/// The outcome of one path of a batch.
pub(crate) enum Step {
    Done(FileRecord),
    Failed(FailedFile),
    /// The object store is unavailable: the whole batch is retried later.
    Outage(S3Error),
    /// Not attempted, because an outage was already seen in this batch.
    NotStarted,
}

/// The results of a batch, by index in the incoming list.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) done: Vec<(usize, FileRecord)>,
    pub(crate) failed: Vec<(usize, FailedFile)>,
    pub(crate) outage: Option<S3Error>,
    pub(crate) outages: usize,
    pub(crate) not_started: usize,
}

impl Batch {
    pub(crate) fn add(&mut self, index: usize, step: Step) {
        match step {
            Step::Done(r) => self.done.push((index, r)),
            Step::Failed(f) => self.failed.push((index, f)),
            Step::Outage(e) => {
                self.outages += 1;
                self.outage.get_or_insert(e);
            }
            Step::NotStarted => self.not_started += 1,
        }
    }

    /// A transient error for the whole batch if the object store was unavailable.
    pub(crate) fn outage_error(&self, env: &Envelope, what: &str) -> Option<HandlerError> {
        let e = self.outage.as_ref()?;
        let message = format!(
            "object store unavailable during {what} of batch {} of transaction {} ({} file(s) hit it, \
             {} not started); the batch will be retried: {}",
            env.sub_id, env.transaction_id, self.outages, self.not_started, e.message
        );
        tracing::warn!(transaction_id = %env.transaction_id, sub_id = %env.sub_id, "{message}");
        Some(HandlerError::transient(e.code, message))
    }

    /// `<worker>.complete` with the files that made it (always, possibly empty) and, in the same
    /// message, those that did not, each in the incoming order.
    pub(crate) fn outcome(
        mut self,
        env: &Envelope,
        worker: Worker,
        holding_id: Option<i64>,
        target: Option<String>,
        overwrite: bool,
    ) -> Outcome {
        self.done.sort_by_key(|(i, _)| *i);
        self.failed.sort_by_key(|(i, _)| *i);
        let files = self.done.into_iter().map(|(_, r)| r).collect();
        let failed = self.failed.into_iter().map(|(_, f)| f).collect();
        let complete = env.reply(Payload::Files {
            context: Vec::new(),
            holding_id,
            files,
            target,
            overwrite,
            failed,
        });
        Outcome::publish(RoutingKey::new(worker, Action::Complete), complete)
    }
}

/// A failed file for an I/O error on `subject` (the path, or the destination it was written to).
pub(crate) fn io_failed(path: &str, what: &str, subject: &str, err: &io::Error) -> FailedFile {
    let code = match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => ErrorCode::PathMissing,
        io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
        io::ErrorKind::AlreadyExists | io::ErrorKind::IsADirectory => ErrorCode::Conflict,
        _ => ErrorCode::StorageError,
    };
    FailedFile::new(path, code, format!("{what} {subject}: {err}"))
}

/// The payload was not what `key` carries.
pub(crate) fn bad_payload(key: RoutingKey, env: &Envelope) -> HandlerError {
    let kind = serde_json::to_value(&env.payload)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str().map(str::to_owned)))
        .unwrap_or_default();
    HandlerError::permanent(
        ErrorCode::BadRequest,
        format!("{key} expects a files payload, got {kind:?}"),
    )
}

/// Runs blocking file-system work off the async threads, at most `[memory] file_threads`
/// operations at once (`f` must not wait for another task: a closure that did could hold every
/// permit while waiting).
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let _permit = crate::memory::file_threads()
        .acquire()
        .await
        .expect("the file-thread semaphore is never closed");
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking file-system task cancelled: {e}"),
    }
}

/// Nanoseconds since the epoch as a `SystemTime`.
pub(crate) fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// Shared handle type of both roles.
pub(crate) type SharedStore = Arc<Store>;

#[cfg(test)]
mod pool_tests {
    use super::*;

    #[test]
    fn a_multipart_file_keeps_its_buffers_within_the_budget() {
        const MIB: usize = 1 << 20;
        // The defaults: 32 MiB, 8 MiB parts: four buffers, two parts in flight.
        assert_eq!(parts_within(32 << 20, 8 * MIB, 4), 2);
        // A budget with room for all of them.
        assert_eq!(parts_within(48 << 20, 8 * MIB, 4), 4);
        assert_eq!(parts_within(1 << 30, 8 * MIB, 4), 4);
        // Small parts: as configured.
        assert_eq!(parts_within(32 << 20, 5 * MIB, 3), 3);
        // Parts grown for a huge file (S3's 10,000 parts): one, never none.
        assert_eq!(parts_within(32 << 20, 16 * MIB, 4), 1);
        assert_eq!(parts_within(32 << 20, 64 * MIB, 4), 1);
        assert_eq!(parts_within(32 << 20, 8 * MIB, 0), 1);
    }

    #[test]
    fn part_buffers_return_to_the_pool_when_the_last_reference_drops() {
        let pool = Arc::new(BufferPool::new(2));
        let mut buf = pool.take(1 << 20);
        buf.extend_from_slice(b"part one");
        let ptr = buf.as_ptr();
        let bytes = pool.share(buf);
        let clone = bytes.clone();
        assert_eq!(&clone[..], b"part one");
        drop(bytes);
        assert!(
            pool.free.lock().unwrap().is_empty(),
            "still referenced by the clone"
        );
        drop(clone);
        let again = pool.take(1 << 20);
        assert_eq!(again.as_ptr(), ptr, "the same allocation is reused");
        assert!(again.is_empty() && again.capacity() >= 1 << 20);
        // At most `keep` buffers are kept.
        for _ in 0..4 {
            let b = pool.take(16);
            drop(pool.share(b));
        }
        assert!(pool.free.lock().unwrap().len() <= 2);
    }
}
