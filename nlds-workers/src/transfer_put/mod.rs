//! transfer-put: uploads regular files to the warm tier, and deletes objects (`transfer-del`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use aws_sdk_s3::Client;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::{FutureExt, StreamExt, stream};
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::message::ObjectRef;
use nlds_core::{
    Action, Envelope, ErrorCode, FailedFile, FileRecord, PathKind, Payload, RoutingKey, Worker,
    pathname,
};
use nlds_storage::s3::{PATH_METADATA, S3Clients, S3Error, Tenant, object_key, path_metadata};
use uuid::Uuid;

use crate::config::TransferConfig;
use crate::posix::PosixPolicy;
use crate::userfs::read::{self, OpenError, Opened};
use crate::userfs::{Denial, Dir, Links, Meta, UserFs, components};
use crate::warm::{Batch, Moving, SharedStore, Step, Store, bad_payload, blocking, io_failed};
use nlds_hooks::points;

mod multipart;
pub mod sweep;

/// S3's smallest part (all parts but the last).
const MIN_PART: u64 = 5 << 20;
/// S3's largest part.
const MAX_PART: u64 = 5 << 30;
/// S3's largest part number.
const MAX_PARTS: u64 = 10_000;

/// The transfer-put role: handles `transfer-put.start` and `transfer-del.start`.
pub struct TransferPut {
    store: SharedStore,
    posix: PosixPolicy,
    /// The cancels this process heard of: their files are not uploaded.
    cancelled: Arc<crate::cancelled::Cancelled>,
}

impl TransferPut {
    /// Uploads go to `bucket`, under [`object_key`]s. Files are read with the process's own
    /// access (see [`TransferPut::with_posix`]).
    pub fn new(client: Client, bucket: String, cfg: TransferConfig) -> Self {
        Self::with_clients(S3Clients::single(client, bucket), cfg)
    }

    /// Uploads go to the tenancy each request names (the default object store if none);
    /// deletions use the tenancy each object reference names.
    pub fn with_clients(clients: S3Clients, cfg: TransferConfig) -> Self {
        Self {
            store: Arc::new(Store::new(clients, cfg)),
            posix: PosixPolicy::SERVICE,
            cancelled: Default::default(),
        }
    }

    /// Stops uploading the files of a transaction once `cancelled` heard it was cancelled (the
    /// rest of the batch goes on to the catalogue, which removes what was uploaded).
    pub fn with_cancelled(mut self, cancelled: Arc<crate::cancelled::Cancelled>) -> Self {
        self.cancelled = cancelled;
        self
    }

    /// Checks that the requesting user may read each file (and search its parents) when it is
    /// opened, when `posix` says so: permissions may have changed since the indexer looked.
    pub fn with_posix(mut self, posix: PosixPolicy) -> Self {
        self.posix = posix;
        self
    }
}

#[async_trait]
impl Handler for TransferPut {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        match (key.worker, key.action) {
            (Worker::TransferPut, Action::Start) => self.put_batch(key, env).await,
            (Worker::TransferDel, Action::Start) => self.delete_batch(key, env).await,
            _ => Err(HandlerError::permanent(
                ErrorCode::Internal,
                format!("the transfer-put role does not handle {key}"),
            )),
        }
    }
}

/// Why an upload failed: the file (a FailedFile), or the object store.
enum UploadError {
    File(FailedFile),
    Store(S3Error),
}

impl From<FailedFile> for UploadError {
    fn from(f: FailedFile) -> Self {
        UploadError::File(f)
    }
}

impl From<S3Error> for UploadError {
    fn from(e: S3Error) -> Self {
        UploadError::Store(e)
    }
}

/// What identifies a version of a file's content, for "did it change while we read it".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Version {
    fn of(meta: &Meta) -> Self {
        Self {
            size: meta.size,
            mtime_ns: meta.mtime_ns,
            ctime_ns: meta.ctime_ns,
        }
    }

    /// Of the open file `file` now.
    fn now(file: &File) -> io::Result<Self> {
        Ok(Self::of(&Meta::of(&rustix::fs::fstat(file)?)))
    }
}

/// An opened source file and what it was when opened.
struct Source {
    file: File,
    meta: Meta,
}

/// What was read from a file: its blake3, its length, and its version after the read.
struct ReadResult {
    blake3: String,
    len: u64,
    after: Version,
}

impl TransferPut {
    async fn put_batch(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let Payload::Files {
            holding_id,
            files,
            target,
            overwrite,
            ..
        } = &env.payload
        else {
            return Err(bad_payload(key, &env));
        };
        let started = Instant::now();
        let outage = AtomicBool::new(false);
        let tid = env.transaction_id;
        let mut batch = Batch::default();
        let t = match self.store.clients.tenant(env.tenancy.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                // Nothing is stored: every file fails, naming itself and the tenancy.
                for (i, f) in files.iter().enumerate() {
                    let reason = format!("cannot store {}: {}", f.path, e.message);
                    batch.add(i, Step::Failed(FailedFile::new(&f.path, e.code, reason)));
                }
                tracing::warn!(transaction_id = %env.transaction_id, sub_id = %env.sub_id, files = files.len(), "{}", e.message);
                return Ok(batch.outcome(
                    &env,
                    Worker::TransferPut,
                    *holding_id,
                    target.clone(),
                    *overwrite,
                ));
            }
        };
        // The bytes stored so far, reported while the batch is in flight.
        let moving = Moving::start(&env);
        let fs = Arc::new(Mutex::new(PutFs {
            fs: UserFs::new(self.posix, &env.user),
            parents: HashMap::new(),
        }));
        // Later paths of a hard-linked inode wait for the first one (see put_hard_link).
        let (links, primaries): (Vec<_>, Vec<_>) = files
            .iter()
            .cloned()
            .enumerate()
            .partition(|(_, r)| is_hard_link(r));
        let mut steps = self
            .store
            .in_turn(primaries)
            .map(|((i, rec), slot)| {
                let (outage, fs, moving) = (&outage, fs.clone(), &moving);
                async move {
                    let _slot = slot;
                    (i, self.put_one(t, tid, rec, fs, outage, moving).await)
                }
                .boxed()
            })
            .buffer_unordered(self.store.files_in_flight());
        while let Some((i, step)) = steps.next().await {
            batch.add(i, step);
        }
        drop(steps);
        let stored: HashMap<String, FileRecord> = batch
            .done
            .iter()
            .filter(|(_, r)| r.kind == PathKind::File && r.object.is_some())
            .map(|(_, r)| (r.path.clone(), r.clone()))
            .collect();
        let stored = &stored;
        let mut steps = self
            .store
            .in_turn(links)
            .map(|((i, rec), slot)| {
                let (outage, fs, moving) = (&outage, fs.clone(), &moving);
                async move {
                    let _slot = slot;
                    let shared = match rec.link_target.as_ref().and_then(|t| stored.get(t)) {
                        Some(first) => put_hard_link(&fs, &rec, first).await,
                        None => None,
                    };
                    let step = match shared {
                        Some(step) => step,
                        None => self.put_one(t, tid, rec, fs, outage, moving).await,
                    };
                    (i, step)
                }
                .boxed()
            })
            .buffer_unordered(self.store.files_in_flight());
        while let Some((i, step)) = steps.next().await {
            batch.add(i, step);
        }
        drop(steps);
        if let Some(err) = batch.outage_error(&env, "upload") {
            return Err(err);
        }
        let bytes: u64 = batch
            .done
            .iter()
            .filter(|(_, r)| r.kind == PathKind::File)
            .map(|(_, r)| r.size)
            .sum();
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            transaction_id = %env.transaction_id,
            sub_id = %env.sub_id,
            done = batch.done.len(),
            failed = batch.failed.len(),
            bytes,
            seconds = secs,
            mib_per_s = bytes as f64 / (1 << 20) as f64 / secs.max(1e-9),
            "transfer-put batch done"
        );
        for (_, f) in &batch.failed {
            tracing::warn!(transaction_id = %env.transaction_id, path = %f.path, code = %f.code, "{}", f.reason);
        }
        Ok(batch.outcome(
            &env,
            Worker::TransferPut,
            *holding_id,
            target.clone(),
            *overwrite,
        ))
    }

    async fn put_one(
        &self,
        t: &Tenant,
        tid: Uuid,
        mut rec: FileRecord,
        fs: Arc<Mutex<PutFs>>,
        outage: &AtomicBool,
        moving: &Moving,
    ) -> Step {
        if rec.kind != PathKind::File {
            return Step::Done(rec);
        }
        if outage.load(Ordering::Relaxed) {
            return Step::NotStarted;
        }
        let r = rec.clone();
        let mut source = match blocking(move || open_source(&fs, &r)).await {
            Ok(s) => s,
            Err(f) => return Step::Failed(f),
        };
        if self.cancelled.contains(tid) {
            return Step::Failed(FailedFile::new(
                &rec.path,
                ErrorCode::Cancelled,
                format!(
                    "cancelled: {} was not uploaded (its transaction was cancelled)",
                    rec.path
                ),
            ));
        }
        // The `checksum` sync level: a new version whose size matched arrives with the stored
        // blake3; the same content is skipped before anything is uploaded.
        if let Some(stored) = rec.blake3.take().filter(|_| rec.new_version) {
            let (back, hashed) = blocking(move || {
                let h = hash_at(&source.file);
                (source, h)
            })
            .await;
            source = back;
            match hashed {
                Ok(local) if local == stored => {
                    return Step::Failed(FailedFile::new(
                        &rec.path,
                        ErrorCode::Unchanged,
                        format!(
                            "{} is unchanged (sync level checksum): same size and blake3 as \
                             the stored version",
                            rec.path
                        ),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Step::Failed(io_failed(&rec.path, "cannot read", &rec.path, &e)),
            }
        }
        let key = object_key(tid, &rec.path);
        let size = source.meta.size;
        let single = size == 0 || size < self.store.cfg.multipart_threshold;
        // Hold the buffer memory this upload needs for its whole duration.
        let need = if single {
            size
        } else {
            let part = part_size(self.store.cfg.part_size, size);
            (self.store.parts_in_flight(part) as u64 + 2) * part as u64
        };
        let _buffers = self.store.reserve(need).await;
        let result = if single {
            self.put_single(t, source.file, &source.meta, &key, &rec.path, moving)
                .await
        } else {
            self.put_multipart(t, source.file, &source.meta, &key, &rec.path, moving)
                .await
        };
        match result {
            Ok(read) => {
                let meta = &source.meta;
                rec.size = read.len;
                rec.mtime_ns = read.after.mtime_ns;
                rec.mode = meta.mode & 0o7777;
                rec.uid = meta.uid;
                rec.gid = meta.gid;
                rec.blake3 = Some(read.blake3);
                rec.object = Some(ObjectRef {
                    bucket: t.bucket.clone(),
                    key,
                    tenancy: t.name.clone(),
                });
                Step::Done(rec)
            }
            Err(UploadError::File(f)) => Step::Failed(f),
            Err(UploadError::Store(e)) if e.transient => {
                outage.store(true, Ordering::Relaxed);
                Step::Outage(e)
            }
            Err(UploadError::Store(e)) => {
                Step::Failed(FailedFile::new(&rec.path, e.code, e.message))
            }
        }
    }

    /// One PutObject with a body read (and hashed) in chunks of at most the part size.
    async fn put_single(
        &self,
        t: &Tenant,
        file: File,
        meta: &Meta,
        key: &str,
        path: &str,
        moving: &Moving,
    ) -> Result<ReadResult, UploadError> {
        let before = Version::of(meta);
        let chunk = chunk_size(self.store.cfg.part_size);
        let (data, read) = blocking(move || read_small(file, before.size, chunk))
            .await
            .map_err(|e| io_failed(path, "cannot read", path, &e))?;
        check_unchanged(path, before, &read)?;
        let mut req = t
            .client
            .put_object()
            .bucket(&t.bucket)
            .key(key)
            .content_length(data.len() as i64)
            .body(ByteStream::from(data));
        if let Some(m) = path_metadata(path) {
            req = req.metadata(PATH_METADATA, m);
        }
        req.send().await.map_err(|e| {
            S3Error::from_sdk(format!("uploading {path} to {}/{key}", t.bucket), &e)
        })?;
        moving.add(read.len);
        Ok(read)
    }

    /// `transfer-del.start`: deletes the objects of the files; missing objects are fine.
    async fn delete_batch(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let Payload::Files { files, .. } = &env.payload else {
            return Err(bad_payload(key, &env));
        };
        let store = &self.store;
        let objects: Vec<ObjectRef> = files.iter().filter_map(|f| f.object.clone()).collect();
        if let Some(first) = objects.first() {
            nlds_hooks::pause_async(
                nlds_hooks::points::DEL_BEFORE_DELETE,
                std::path::Path::new(&first.key),
            )
            .await;
        }
        let total = objects.len();
        let deletions: Vec<_> = objects
            .into_iter()
            .map(|o| async move {
                let client = store
                    .clients
                    .for_tenancy(o.tenancy.as_deref())
                    .map_err(|e| S3Error {
                        message: format!("deleting {}/{}: {}", o.bucket, o.key, e.message),
                        ..e
                    })?;
                match client
                    .delete_object()
                    .bucket(&o.bucket)
                    .key(&o.key)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                        Ok(())
                    }
                    Err(e) => Err(S3Error::from_sdk(
                        format!("deleting {}/{}", o.bucket, o.key),
                        &e,
                    )),
                }
            })
            .collect();
        let results: Vec<Result<(), S3Error>> = stream::iter(deletions)
            .buffer_unordered(store.files_in_flight())
            .collect()
            .await;
        let errors: Vec<S3Error> = results.into_iter().filter_map(Result::err).collect();
        let deleted = total - errors.len();
        tracing::info!(transaction_id = %env.transaction_id, sub_id = %env.sub_id, deleted, failed = errors.len(), "transfer-del batch done");
        match errors.iter().find(|e| e.transient).or(errors.first()) {
            None => Ok(Outcome::none()),
            Some(e) => {
                let message = format!(
                    "{} of {} object(s) could not be deleted: {}",
                    errors.len(),
                    errors.len() + deleted,
                    e.message
                );
                Err(if e.transient {
                    HandlerError::transient(e.code, message)
                } else {
                    HandlerError::permanent(e.code, message)
                })
            }
        }
    }
}

/// A regular file the indexer recorded as a later hard link of another path of the request.
fn is_hard_link(rec: &FileRecord) -> bool {
    rec.kind == PathKind::File && rec.link_target.is_some()
}

/// The later path `rec` of a hard-linked inode whose first path `first` was stored by this
/// batch: if both still name the same inode (each opened through its parent's handle), `rec`
/// shares the first one's object (stored once). None: upload it on its own (the link is still
/// restored as one, from the catalogue's record).
async fn put_hard_link(
    fs: &Arc<Mutex<PutFs>>,
    rec: &FileRecord,
    first: &FileRecord,
) -> Option<Step> {
    let (fs, r, f) = (fs.clone(), rec.clone(), first.clone());
    let same = blocking(move || {
        let a = open_source(&fs, &f).ok()?;
        let b = open_source(&fs, &r).ok()?;
        Some(a.meta.same(&b.meta).then_some(b.meta))
    })
    .await
    .flatten()?;
    let mut done = rec.clone();
    done.size = first.size;
    done.mtime_ns = first.mtime_ns;
    done.mode = same.mode & 0o7777;
    done.uid = same.uid;
    done.gid = same.gid;
    done.blake3 = first.blake3.clone();
    done.object = first.object.clone();
    Some(Step::Done(done))
}

/// The file-system access of one transfer-put batch: the user's, and the handles of the
/// directories its files are in.
struct PutFs {
    fs: UserFs,
    parents: HashMap<PathBuf, Result<Dir, Denial>>,
}

/// Opens a source that the indexer saw as a regular file, through the handle of its parent
/// directory (resolved as the user): `openat(O_NOFOLLOW|O_NONBLOCK)`, then on that descriptor's
/// `fstat`: still a regular file, readable by the user, the size and modification time the
/// indexer recorded.
fn open_source(fs: &Mutex<PutFs>, rec: &FileRecord) -> Result<Source, FailedFile> {
    let path = rec.path.as_str();
    let raw = pathname::decode(path);
    let p = Path::new(&raw);
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return Err(FailedFile::new(
            path,
            ErrorCode::BadRequest,
            format!("{path} is not a file path"),
        ));
    };
    let mut guard = fs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let PutFs { fs: user, parents } = &mut *guard;
    let dir = parents
        .entry(parent.to_path_buf())
        .or_insert_with(|| {
            let mut links = 0;
            components(parent).and_then(|comps| {
                let root = user.root()?;
                user.walk(root, &comps, Links::Follow, &mut links)
            })
        })
        .clone()
        .map_err(|d| d.failed(path))?;
    nlds_hooks::pause(points::PUT_BEFORE_OPEN, p);
    let opened = read::open_file(user, &dir, name, p);
    drop(guard);
    let Opened { file, meta } = opened.map_err(|e| match e {
        OpenError::Denied(d) => d.failed(path),
        OpenError::Io(e) => io_failed(path, "cannot open", path, &e),
        OpenError::NotAFile(m) => FailedFile::new(
            path,
            ErrorCode::Conflict,
            format!(
                "{path} was a regular file when indexed but is now {}",
                if m.is_file() {
                    "another file"
                } else {
                    m.kind_name()
                }
            ),
        ),
    })?;
    if (meta.size, meta.mtime_ns) != (rec.size, rec.mtime_ns) {
        return Err(FailedFile::new(
            path,
            ErrorCode::Conflict,
            format!(
                "{path} changed since it was indexed ({} bytes modified at {} ns then, {} bytes \
                 modified at {} ns now); put it again",
                rec.size, rec.mtime_ns, meta.size, meta.mtime_ns
            ),
        ));
    }
    Ok(Source { file, meta })
}

fn check_unchanged(path: &str, before: Version, read: &ReadResult) -> Result<(), FailedFile> {
    if read.after == before && read.len == before.size {
        Ok(())
    } else {
        Err(FailedFile::new(
            path,
            ErrorCode::Conflict,
            format!(
                "{path} changed while it was being uploaded ({} bytes when opened, {} read); put it again",
                before.size, read.len
            ),
        ))
    }
}

/// The read chunk of small files: the part size, within sane bounds.
fn chunk_size(part_size: u64) -> usize {
    part_size.clamp(64 << 10, MAX_PART) as usize
}

/// The part size for a file of `size` bytes: the configured one, raised to S3's minimum and as
/// far as needed to stay within S3's 10 000 parts.
fn part_size(configured: u64, size: u64) -> usize {
    let mut part = configured.max(MIN_PART);
    let needed = size.div_ceil(MAX_PARTS);
    if needed > part {
        part = needed.next_multiple_of(1 << 20);
    }
    part.min(MAX_PART) as usize
}

/// Appends up to `want` bytes of `file` to `buf` (fewer only at end of file).
fn fill(file: &mut File, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + want, 0);
    let mut n = 0;
    while n < want {
        match file.read(&mut buf[start + n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(start + n);
                return Err(e);
            }
        }
    }
    buf.truncate(start + n);
    Ok(n)
}

/// The blake3 of `file`'s content, read with positioned reads (the file offset stays at the
/// start for the upload that may follow).
fn hash_at(file: &File) -> io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        match file.read_at(&mut buf, offset) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Reads a small file whole (at most `size + 1` bytes, so growth is noticed), hashing as it goes.
fn read_small(mut file: File, size: u64, chunk: usize) -> io::Result<(Bytes, ReadResult)> {
    let limit = size.saturating_add(1);
    // `size` is below the multipart threshold: the whole (small) file is held in memory.
    let mut buf = Vec::with_capacity(usize::try_from(limit).unwrap_or(usize::MAX));
    let mut hasher = blake3::Hasher::new();
    loop {
        let left = limit - buf.len() as u64;
        if left == 0 {
            break;
        }
        let start = buf.len();
        let n = fill(&mut file, &mut buf, (chunk as u64).min(left) as usize)?;
        hasher.update(&buf[start..]);
        if n == 0 {
            break;
        }
    }
    let after = Version::now(&file)?;
    let len = buf.len() as u64;
    let read = ReadResult {
        blake3: hasher.finalize().to_hex().to_string(),
        len,
        after,
    };
    Ok((Bytes::from(buf), read))
}

/// Reads `file` once in parts of `part_size`, hashing each part and sending it to the uploader.
/// Stops early (reporting what was read so far) if the uploader went away or the file grew past
/// S3's part limit.
fn read_parts(
    mut file: File,
    part_size: usize,
    tx: tokio::sync::mpsc::Sender<(i32, Bytes)>,
    pool: &Arc<crate::warm::BufferPool>,
) -> io::Result<ReadResult> {
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    let mut number = 0u64;
    loop {
        if number == MAX_PARTS {
            // More than S3 allows: the file grew a lot; check_unchanged reports it.
            len += 1;
            break;
        }
        let mut buf = pool.take(part_size);
        let n = fill(&mut file, &mut buf, part_size)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf);
        len += n as u64;
        number += 1;
        if tx.blocking_send((number as i32, pool.share(buf))).is_err() {
            break;
        }
        if n < part_size {
            break;
        }
    }
    Ok(ReadResult {
        blake3: hasher.finalize().to_hex().to_string(),
        len,
        after: Version::now(&file)?,
    })
}

#[cfg(test)]
mod tests;
