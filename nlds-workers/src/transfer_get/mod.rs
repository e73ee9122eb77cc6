//! transfer-get: restores files from the warm tier to POSIX disk.
//!
//! With `posix_checks = "user"` the requesting user must be able to write where each file lands
//! (the target directory, or the nearest existing directory above the destination) and search
//! every directory above it ([`crate::posix`]); what is created (files, links, directories,
//! missing parents) is given to the user's uid and primary gid. An entry recorded as someone
//! else's is restored only if its recorded owner, group and mode would have let the user read it
//! (so `groupall` does not turn another member's private file into the requester's). A service
//! operator's get with `keep_owner` gives them the owner and group recorded when they were put
//! instead; anyone else asking for that is refused.
//!
//! All of it is done through directory handles ([`crate::userfs::restore`]), never by path: a
//! directory swapped for a symbolic link during the restore redirects nothing.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::{
    Action, Envelope, ErrorCode, FailedFile, FileRecord, PathKind, Payload, RoutingKey, Worker,
};
use nlds_storage::s3::{S3Clients, S3Error};

use crate::config::TransferConfig;
use crate::posix::{Ownership, PosixPolicy};
use crate::userfs::UserFs;
use crate::userfs::journal::Journal;
use crate::userfs::restore::{self, Existing, Restorer};
use crate::userfs::temp_file::TempFile;
use crate::warm::{
    Batch, Moving, SharedStore, Step, Store, bad_payload, blocking, io_failed, system_time,
};
use nlds_hooks::points;

mod entries;
mod sparse;
use entries::{Destination, Shared, Warnings, finish_directory, hard_link, lock, make_link, warn};
use sparse::SparseWriter;

/// Permission bits restored on files: never setuid/setgid (a restored file may be given to
/// another owner than the one it was put by).
const FILE_MODE_MASK: u32 = 0o1777;

/// The transfer-get role: handles `transfer-get.start`.
pub struct TransferGet {
    store: SharedStore,
    posix: PosixPolicy,
    /// Where each batch journals the temporary files it creates (none: not journalled).
    work: Option<Arc<crate::workdir::ProcessDir>>,
    /// The cancels this process heard of: their files are not restored.
    cancelled: Arc<crate::cancelled::Cancelled>,
}

impl TransferGet {
    /// Objects are read from the bucket each file's object reference names; `bucket` is the
    /// default of this deployment (kept for symmetry with [`crate::transfer_put::TransferPut`]). Files are
    /// written with the process's own access and left to it (see [`TransferGet::with_posix`]).
    pub fn new(client: Client, bucket: String, cfg: TransferConfig) -> Self {
        Self::with_clients(S3Clients::single(client, bucket), cfg)
    }

    /// Objects are read with the client of the tenancy each object reference names.
    pub fn with_clients(clients: S3Clients, cfg: TransferConfig) -> Self {
        Self {
            store: Arc::new(Store::new(clients, cfg)),
            posix: PosixPolicy::SERVICE,
            work: None,
            cancelled: Default::default(),
        }
    }

    /// Stops restoring the files of a transaction once `cancelled` heard it was cancelled.
    pub fn with_cancelled(mut self, cancelled: Arc<crate::cancelled::Cancelled>) -> Self {
        self.cancelled = cancelled;
        self
    }

    /// Journals the temporary files of each batch in `work` (this process's work directory), so
    /// that those a killed process leaves are removed at the next start
    /// ([`crate::userfs::journal`]).
    pub fn with_work_dir(mut self, work: crate::workdir::ProcessDir) -> Self {
        self.work = Some(Arc::new(work));
        self
    }

    /// Checks the requesting user's permissions and gives them what is restored, when `posix`
    /// says so.
    pub fn with_posix(mut self, posix: PosixPolicy) -> Self {
        self.posix = posix;
        self
    }
}

#[async_trait]
impl Handler for TransferGet {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        match (key.worker, key.action) {
            (Worker::TransferGet, Action::Start) => self.get_batch(key, env).await,
            _ => Err(HandlerError::permanent(
                ErrorCode::Internal,
                format!("the transfer-get role does not handle {key}"),
            )),
        }
    }
}

/// Files at most this large are downloaded into memory and written by one file operation;
/// larger ones stream to a writing thread of their own, chunk by chunk.
const INLINE_MAX: u64 = 256 << 10;

impl TransferGet {
    async fn get_batch(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let Payload::Files {
            holding_id,
            files,
            target,
            overwrite,
            context,
            ..
        } = &env.payload
        else {
            return Err(bad_payload(key, &env));
        };
        let started = Instant::now();
        let mut batch = Batch::default();
        let mut fs = UserFs::new(self.posix, &env.user);
        let refuse_all = |mut batch: Batch, code: ErrorCode, reason: &str| {
            for (i, f) in files.iter().enumerate() {
                batch.add(i, Step::Failed(FailedFile::new(&f.path, code, reason)));
            }
            tracing::warn!(transaction_id = %env.transaction_id, "{reason}");
            Ok(batch.outcome(
                &env,
                Worker::TransferGet,
                *holding_id,
                target.clone(),
                *overwrite,
            ))
        };
        let owner = if env.keep_owner {
            if !env.role.is_admin() {
                let reason = format!(
                    "keep_owner is for service operators (admin); user {} is {} in group {}: \
                     nothing restored",
                    env.user, env.role, env.group
                );
                return refuse_all(batch, ErrorCode::PermissionDenied, &reason);
            }
            Ownership::Recorded
        } else if fs.enabled() {
            match blocking(move || fs.checker().account().map(|a| (a, fs))).await {
                Ok((a, f)) => {
                    fs = f;
                    Ownership::Requester {
                        uid: a.uid,
                        gid: a.gid,
                    }
                }
                Err(reason) => return refuse_all(batch, ErrorCode::PermissionDenied, &reason),
            }
        } else {
            Ownership::Process
        };
        let t = target.clone();
        let restorer = match blocking(move || Restorer::new(fs, owner, t.as_deref())).await {
            Ok(r) => r,
            Err((code, reason)) => return refuse_all(batch, code, &reason),
        };
        let journal = match &self.work {
            None => None,
            Some(w) => match Journal::create(w.path(), &env.user) {
                Ok(j) => Some(Arc::new(j)),
                Err(e) => {
                    return Err(HandlerError::transient(
                        ErrorCode::StorageError,
                        format!(
                            "cannot journal the temporary files of a restore in {}: {e}",
                            w.path().display()
                        ),
                    ));
                }
            },
        };
        let dest = Destination {
            root: restorer.target().map(|t| Arc::new(t.to_path_buf())),
            overwrite: *overwrite,
            owner,
            journal,
            syncs: Arc::default(),
            moving: Moving::start(&env),
        };
        let restorer: Shared = Arc::new(Mutex::new(restorer));

        let mut wanted = Vec::new();
        for (i, rec) in files.iter().cloned().enumerate() {
            match dest.of(&rec.path) {
                Err(f) => batch.add(i, Step::Failed(f)),
                Ok(to) => wanted.push((i, rec, to)),
            }
        }
        // Someone else's entries only to those their recorded mode lets read them (not for an
        // operator's keep_owner).
        if let Ownership::Requester { .. } = owner {
            let r = restorer.clone();
            let (ok, refused) = blocking(move || {
                let mut r = lock(&r);
                let checker = r.fs().checker();
                let (mut ok, mut refused) = (Vec::new(), Vec::new());
                for (i, rec, to) in wanted {
                    match checker.may_restore(&rec) {
                        Ok(()) => ok.push((i, rec, to)),
                        Err(f) => refused.push((i, f)),
                    }
                }
                (ok, refused)
            })
            .await;
            for (i, f) in refused {
                batch.add(i, Step::Failed(f));
            }
            wanted = ok;
        }
        // The restore's directories that entries of this batch are in but another batch
        // restores: given their recorded mode and time again after this batch wrote into them.
        let mut context_dirs = Vec::new();
        for rec in context.iter().filter(|r| r.kind == PathKind::Directory) {
            if let Ok(to) = dest.of(&rec.path) {
                context_dirs.push((rec.clone(), to));
            }
        }
        if let Ownership::Requester { .. } = owner {
            let r = restorer.clone();
            context_dirs = blocking(move || {
                let mut r = lock(&r);
                let checker = r.fs().checker();
                context_dirs.retain(|(rec, _)| checker.may_restore(rec).is_ok());
                context_dirs
            })
            .await;
        }
        let mut dirs = Vec::new();
        let mut links = Vec::new();
        let mut regular = Vec::new();
        for (i, rec, to) in wanted {
            match rec.kind {
                PathKind::Directory => dirs.push((i, rec, to)),
                PathKind::Link => links.push((i, rec, to)),
                PathKind::File => regular.push((i, rec, to)),
            }
        }

        // 1. Directories first, so files land in them; their modes and times come last. Those
        // of other batches first (in path order, parents first), as this batch's own are in them.
        let r = restorer.clone();
        let (dirs, failed_dirs, context_dirs) = blocking(move || {
            let mut ok = Vec::new();
            let mut failed = Vec::new();
            let mut r = lock(&r);
            let mut adopted = Vec::new();
            for (rec, to) in context_dirs {
                // A failure here is not this batch's: its entries in that directory fail with
                // their own reasons, and the batch that restores it reports it.
                match r.adopt_directory(&rec.path, &to, (rec.uid, rec.gid)) {
                    Ok(existed) => adopted.push((rec, to, existed)),
                    Err(f) => tracing::debug!(path = %f.path, "{}", f.reason),
                }
            }
            for (i, rec, to) in dirs {
                match r.adopt_directory(&rec.path, &to, (rec.uid, rec.gid)) {
                    Ok(existed) => ok.push((i, rec, to, existed)),
                    Err(f) => failed.push((i, f)),
                }
            }
            (ok, failed, adopted)
        })
        .await;
        for (i, f) in failed_dirs {
            batch.add(i, Step::Failed(f));
        }

        let warnings: Warnings = Arc::default();
        // 2. Regular files, concurrently; the later paths of a hard-linked inode whose first
        // path is in this batch after it (linked to it, not downloaded again).
        let in_batch: std::collections::HashMap<String, PathBuf> = regular
            .iter()
            .filter(|(_, r, _)| r.link_target.is_none())
            .map(|(_, r, to)| (r.path.clone(), to.clone()))
            .collect();
        let (hard_links, regular): (Vec<_>, Vec<_>) = regular.into_iter().partition(|(_, r, _)| {
            r.link_target
                .as_ref()
                .is_some_and(|t| in_batch.contains_key(t))
        });
        let outage = AtomicBool::new(false);
        let tid = env.transaction_id;
        let mut steps = self
            .store
            .in_turn(regular)
            .map(|((i, rec, to), slot)| {
                let (outage, dest, r, w) = (&outage, &dest, restorer.clone(), warnings.clone());
                async move {
                    let _slot = slot;
                    (i, self.get_file(tid, dest, r, rec, to, outage, w).await)
                }
                .boxed()
            })
            .buffer_unordered(self.store.files_in_flight());
        while let Some((i, step)) = steps.next().await {
            batch.add(i, step);
        }
        drop(steps);
        if let Some(err) = batch.outage_error(&env, "download") {
            return Err(err);
        }
        let restored: std::collections::HashSet<String> =
            batch.done.iter().map(|(_, r)| r.path.clone()).collect();
        let mut downloads = Vec::new();
        for (i, rec, to) in hard_links {
            let first = rec.link_target.clone().unwrap_or_default();
            let first_to = in_batch.get(&first).cloned();
            match first_to.filter(|_| restored.contains(&first)) {
                Some(first_to) => {
                    let (r, d) = (restorer.clone(), dest.clone());
                    let (linked, rec, to) = blocking(move || {
                        let linked = hard_link(&d, &r, &rec, &to, &first, &first_to);
                        (linked, rec, to)
                    })
                    .await;
                    match linked {
                        Ok(true) => batch.add(i, Step::Done(rec)),
                        Ok(false) => downloads.push((i, rec, to)),
                        Err(f) => batch.add(i, Step::Failed(f)),
                    }
                }
                None => downloads.push((i, rec, to)),
            }
        }
        let mut steps = self
            .store
            .in_turn(downloads)
            .map(|((i, rec, to), slot)| {
                let (outage, dest, r, w) = (&outage, &dest, restorer.clone(), warnings.clone());
                async move {
                    let _slot = slot;
                    (i, self.get_file(tid, dest, r, rec, to, outage, w).await)
                }
                .boxed()
            })
            .buffer_unordered(self.store.files_in_flight());
        while let Some((i, step)) = steps.next().await {
            batch.add(i, step);
        }
        drop(steps);
        if let Some(err) = batch.outage_error(&env, "download") {
            return Err(err);
        }

        // The names of the files moved into place reach the disk: each directory once.
        let syncs = dest.syncs.clone();
        blocking(move || syncs.sync()).await;

        // 3. Links after the files, so a restored link never redirects a file of this batch.
        let (d, r) = (dest.clone(), restorer.clone());
        let link_steps = blocking(move || {
            links
                .into_iter()
                .map(|(i, rec, to)| match make_link(&d, &r, &rec, &to) {
                    Ok(()) => (i, Step::Done(rec)),
                    Err(f) => (i, Step::Failed(f)),
                })
                .collect::<Vec<_>>()
        })
        .await;
        for (i, step) in link_steps {
            batch.add(i, step);
        }

        // 4. Directory modes and times, now that nothing more is written into them: those of
        // other batches again (deepest first: a parent may be made read-only), then its own.
        let (d, r, w) = (dest.clone(), restorer.clone(), warnings.clone());
        let dir_steps = blocking(move || {
            for (rec, to, existed) in context_dirs.into_iter().rev() {
                if let Err(f) = finish_directory(&d, &r, &rec, &to, existed, &w) {
                    tracing::debug!(path = %f.path, "{}", f.reason);
                }
            }
            dirs.into_iter()
                .map(|(i, rec, to, existed)| {
                    match finish_directory(&d, &r, &rec, &to, existed, &w) {
                        Ok(()) => (i, Step::Done(rec)),
                        Err(f) => (i, Step::Failed(f)),
                    }
                })
                .collect::<Vec<_>>()
        })
        .await;
        for (i, step) in dir_steps {
            batch.add(i, step);
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
            "transfer-get batch done"
        );
        for (_, f) in &batch.failed {
            tracing::warn!(transaction_id = %env.transaction_id, path = %f.path, code = %f.code, "{}", f.reason);
        }
        let out = batch.outcome(
            &env,
            Worker::TransferGet,
            *holding_id,
            target.clone(),
            *overwrite,
        );
        let warnings = std::mem::take(&mut *warnings.lock().unwrap_or_else(|e| e.into_inner()));
        if warnings.is_empty() {
            return Ok(out);
        }
        for w in &warnings {
            tracing::warn!(transaction_id = %env.transaction_id, sub_id = %env.sub_id, "{w}");
        }
        // The attributes that could not be set: warnings of the transaction (the files are
        // restored).
        Ok(out.and(
            RoutingKey::new(Worker::MonitorPut, Action::Start),
            env.reply(Payload::MonitorUpdate {
                state: nlds_core::State::TransferGetting,
                files: 0,
                bytes: 0,
                failed: Vec::new(),
                warnings,
                versions: 0,
            }),
        ))
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one file of a batch, with the batch's shared state"
    )]
    async fn get_file(
        &self,
        tid: uuid::Uuid,
        dest: &Destination,
        restorer: Shared,
        rec: FileRecord,
        to: PathBuf,
        outage: &AtomicBool,
        warnings: Warnings,
    ) -> Step {
        let path = rec.path.clone();
        let (Some(object), Some(expected)) = (
            rec.object.clone(),
            rec.blake3.as_ref().map(|h| h.to_ascii_lowercase()),
        ) else {
            return Step::Failed(FailedFile::new(
                &path,
                ErrorCode::Internal,
                format!("{path} has no object reference or checksum in the catalogue"),
            ));
        };
        if outage.load(Ordering::Relaxed) {
            return Step::NotStarted;
        }
        if self.cancelled.contains(tid) {
            return Step::Failed(FailedFile::new(
                &path,
                ErrorCode::Cancelled,
                format!("cancelled: {path} was not restored (its transaction was cancelled)"),
            ));
        }
        let shown = to.display().to_string();

        // Where it goes (its directory made if missing), and what is there now.
        let (r, t, e, overwrite) = (rec.clone(), to.clone(), expected.clone(), dest.overwrite);
        let prepared = blocking(move || {
            let (dir, name) = lock(&restorer).parent(&r.path, &t, (r.uid, r.gid))?;
            let existing = restore::existing(&r.path, &dir, &name, &t, r.size, &e, overwrite)?;
            Ok::<_, FailedFile>((existing, dir, name))
        })
        .await;
        let (dir, name) = match prepared {
            Ok((Existing::Identical, _, _)) => return Step::Done(rec),
            Ok((Existing::Download, dir, name)) => (dir, name),
            Err(f) => return Step::Failed(f),
        };

        let what = format!("downloading {path} from {}/{}", object.bucket, object.key);
        let client = match self.store.clients.for_tenancy(object.tenancy.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                let reason = format!("cannot restore {path}: {}", e.message);
                return Step::Failed(FailedFile::new(&path, e.code, reason));
            }
        };
        let response = match client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let e = S3Error::from_sdk(&what, &e);
                return if e.transient {
                    outage.store(true, Ordering::Relaxed);
                    Step::Outage(e)
                } else if e.code == ErrorCode::NotFound {
                    Step::Failed(FailedFile::new(
                        &path,
                        ErrorCode::NotFound,
                        format!(
                            "the object {}/{} of {path} is missing from the object store",
                            object.bucket, object.key
                        ),
                    ))
                } else {
                    Step::Failed(FailedFile::new(&path, e.code, e.message))
                };
            }
        };

        // Download into a file next to the destination, hashing what is written: unnamed until
        // it is linked into place, unless it may replace a file there (userfs/temp_file.rs).
        let (d, n, t, j) = (dir.clone(), name.clone(), to.clone(), dest.journal.clone());
        let overwrite = dest.overwrite;
        let created = blocking(move || {
            if overwrite {
                TempFile::create_recorded(&d, &n, &t, "part", j.as_deref())
            } else {
                TempFile::create_unnamed(&d, &n, &t, "part", j.as_deref())
            }
        });
        let (temp, file) = match created.await {
            Ok(x) => x,
            Err(e) => {
                return Step::Failed(io_failed(&path, "cannot create a file next to", &shown, &e));
            }
        };
        let temp_path = temp.path().to_path_buf();
        let mut body = response.body;
        let mut stream_error = None;
        let written = if rec.size <= INLINE_MAX {
            // A small file: its body in memory, then written by one file operation (no thread
            // of its own waiting for chunks: a get of many small files ran one per file in
            // flight, each with its stack and allocator pages).
            let mut data = Vec::with_capacity(rec.size as usize);
            loop {
                match body.try_next().await {
                    Ok(Some(chunk)) if data.len() + chunk.len() <= INLINE_MAX as usize => {
                        dest.moving.add(chunk.len() as u64);
                        data.extend_from_slice(&chunk);
                    }
                    // Larger than catalogued: it cannot match its checksum; the hash of what
                    // came so far says so below.
                    Ok(Some(_)) | Ok(None) => break,
                    Err(e) => {
                        stream_error = Some(e);
                        break;
                    }
                }
            }
            if stream_error.is_some() {
                Err(io::Error::other("the download broke off"))
            } else {
                blocking(move || -> io::Result<(File, String)> {
                    nlds_hooks::pause(points::GET_TEMP_WRITING, &temp_path);
                    let hash = blake3::hash(&data).to_hex().to_string();
                    let mut out = SparseWriter::new(file);
                    out.write_all(&data)?;
                    Ok((out.finish()?, hash))
                })
                .await
            }
        } else {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
            let writer = tokio::task::spawn_blocking(move || -> io::Result<(File, String)> {
                nlds_hooks::pause(points::GET_TEMP_WRITING, &temp_path);
                let mut hasher = blake3::Hasher::new();
                let mut out = SparseWriter::new(file);
                while let Some(chunk) = rx.blocking_recv() {
                    hasher.update(&chunk);
                    out.write_all(&chunk)?;
                }
                let file = out.finish()?;
                Ok((file, hasher.finalize().to_hex().to_string()))
            });
            loop {
                match body.try_next().await {
                    Ok(Some(chunk)) => {
                        let len = chunk.len() as u64;
                        if tx.send(chunk).await.is_err() {
                            break; // the writer failed; its error is reported below
                        }
                        dest.moving.add(len);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        stream_error = Some(e);
                        break;
                    }
                }
            }
            drop(tx);
            writer
                .await
                .unwrap_or_else(|e| Err(io::Error::other(format!("the writing task failed: {e}"))))
        };
        if let Some(e) = stream_error {
            // The connection broke mid-body: the store (or the network to it) is in trouble.
            outage.store(true, Ordering::Relaxed);
            blocking(move || temp.discard()).await;
            return Step::Outage(S3Error::transient(
                ErrorCode::Unavailable,
                format!("{what}: the download broke off: {e}"),
            ));
        }
        let (file, actual) = match written {
            Ok(x) => x,
            Err(e) => {
                let f = io_failed(
                    &path,
                    "cannot write",
                    &temp.path().display().to_string(),
                    &e,
                );
                blocking(move || temp.discard()).await;
                return Step::Failed(f);
            }
        };
        if actual != expected {
            drop(file);
            blocking(move || temp.discard()).await;
            return Step::Failed(FailedFile::new(
                &path,
                ErrorCode::ChecksumMismatch,
                format!(
                    "checksum mismatch for {path}: the object {}/{} has blake3 {actual}, the catalogue \
                     recorded {expected}; not restored",
                    object.bucket, object.key
                ),
            ));
        }

        // Owner, mtime, mode, fsync (on the file's descriptor), then into place (relative to
        // the directory's handle).
        let (mode, mtime, overwrite) = (rec.mode, rec.mtime_ns, dest.overwrite);
        let syncs = dest.syncs.clone();
        let ids = dest.owner.ids(rec.uid, rec.gid);
        let p = path.clone();
        let attrs = rec.xattrs.clone();
        let size = rec.size;
        blocking(move || {
            let mut temp = temp;
            let finished = temp
                .finish(
                    &file,
                    ids,
                    mode & FILE_MODE_MASK,
                    system_time(mtime),
                    (&p, &attrs),
                )
                .map(|w| warn(warnings, w))
                .map_err(|d| FailedFile::new(&p, d.code, d.reason));
            drop(file);
            let mut persisted = false;
            let placed = finished.and_then(|()| {
                match temp.persist_deferred(&name, &to, overwrite, &syncs) {
                    Ok(()) => {
                        persisted = true;
                        Ok(())
                    }
                    // Something appeared there since it was looked at. The same content (another
                    // get of the same file into the same place got there first: a get resumed
                    // after a restart and run again, say) is as good as this copy.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let differs = || {
                            FailedFile::new(
                                &p,
                                ErrorCode::Conflict,
                                format!("{} exists and differs; use --overwrite", to.display()),
                            )
                        };
                        match restore::existing(&p, &dir, &name, &to, size, &expected, false) {
                            Ok(Existing::Identical) => Ok(()),
                            Ok(Existing::Download) | Err(_) => Err(differs()),
                        }
                    }
                    Err(e) => Err(io_failed(
                        &p,
                        "cannot move into place",
                        &to.display().to_string(),
                        &e,
                    )),
                }
            });
            if !persisted {
                temp.discard();
            }
            placed
        })
        .await
        .map_or_else(Step::Failed, |()| Step::Done(rec))
    }
}
