//! transfer-get: restores files from the warm tier to POSIX disk.
//!
//! With `posix_checks = "user"` the requesting user must be able to write where each file lands
//! (the target directory, or the nearest existing directory above the destination) and search
//! every directory above it ([`crate::posix`]); what is created (files, links, directories,
//! missing parents) is given to the user's uid and primary gid. A service operator's get with
//! `keep_owner` gives them the owner and group recorded when they were put instead; anyone
//! else asking for that is refused.

use std::fs::{File, FileTimes, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::{FutureExt, StreamExt, stream};
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::{
    Action, Envelope, ErrorCode, FailedFile, FileRecord, PathKind, Payload, RoutingKey, Worker,
};
use uuid::Uuid;

use super::{Batch, SharedStore, Step, Store, bad_payload, blocking, io_failed, system_time};
use crate::config::TransferConfig;
use crate::posix::{Checker, Ownership, PosixPolicy};
use crate::s3::{S3Clients, S3Error};

/// Permission bits restored on files: never setuid/setgid (a restored file may be given to
/// another owner than the one it was put by).
const FILE_MODE_MASK: u32 = 0o1777;
/// Permission bits restored on directories (setgid and sticky keep their meaning there).
const DIR_MODE_MASK: u32 = 0o3777;
/// Buffer of the writer of a download.
const WRITE_BUFFER: usize = 1 << 20;

/// The transfer-get role: handles `transfer-get.start`.
pub struct TransferGet {
    store: SharedStore,
    posix: PosixPolicy,
}

impl TransferGet {
    /// Objects are read from the bucket each file's object reference names; `bucket` is the
    /// default of this deployment (kept for symmetry with [`super::TransferPut`]). Files are
    /// written with the process's own access and left to it (see [`TransferGet::with_posix`]).
    pub fn new(client: Client, bucket: String, cfg: TransferConfig) -> Self {
        Self::with_clients(S3Clients::single(client, bucket), cfg)
    }

    /// Objects are read with the client of the tenancy each object reference names.
    pub fn with_clients(clients: S3Clients, cfg: TransferConfig) -> Self {
        Self {
            store: Arc::new(Store::new(clients, cfg)),
            posix: PosixPolicy::SERVICE,
        }
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

/// Where the files of a batch go.
#[derive(Clone)]
struct Destination {
    /// The target directory, canonical (None: restore to the original paths).
    root: Option<Arc<PathBuf>>,
    overwrite: bool,
    /// Who what is created belongs to.
    owner: Ownership,
}

impl Destination {
    /// The destination of `path`: `target/<path without leading '/'>`, or the path itself.
    fn of(&self, path: &str) -> Result<PathBuf, FailedFile> {
        match &self.root {
            Some(root) => {
                let rel = path.trim_start_matches('/');
                if Path::new(rel)
                    .components()
                    .any(|c| matches!(c, Component::ParentDir))
                {
                    return Err(FailedFile::new(
                        path,
                        ErrorCode::BadRequest,
                        format!("{path} contains '..' and cannot be restored under a target"),
                    ));
                }
                Ok(root.join(rel))
            }
            None if path.starts_with('/') => Ok(PathBuf::from(path)),
            None => Err(FailedFile::new(
                path,
                ErrorCode::BadRequest,
                format!("{path} is not absolute; give a target directory to restore it"),
            )),
        }
    }

    /// Creates `dir` (and its parents) for the file recorded as `rec`, giving each directory it
    /// creates to the owner of this get. Under a target, refuses to go outside it through a
    /// symbolic link, checked on the deepest directory that already exists.
    fn make_dirs(&self, rec: &FileRecord, dir: &Path) -> Result<(), FailedFile> {
        let path = rec.path.as_str();
        let shown = dir.display().to_string();
        if let Some(root) = &self.root {
            let mut existing = dir.to_path_buf();
            loop {
                match std::fs::symlink_metadata(&existing) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        if !existing.pop() {
                            break;
                        }
                    }
                    Err(e) => return Err(io_failed(path, "cannot look at", &shown, &e)),
                }
            }
            let real = std::fs::canonicalize(&existing).map_err(|e| {
                io_failed(path, "cannot resolve", &existing.display().to_string(), &e)
            })?;
            if !real.starts_with(root.as_path()) {
                return Err(FailedFile::new(
                    path,
                    ErrorCode::Forbidden,
                    format!(
                        "{shown} would be outside the target directory {} (through {})",
                        root.display(),
                        real.display()
                    ),
                ));
            }
        }
        let Some(ids) = self.owner.ids(rec.uid, rec.gid) else {
            return std::fs::create_dir_all(dir)
                .map_err(|e| io_failed(path, "cannot create directory", &shown, &e));
        };
        // One level at a time, so every directory created here is given away.
        let mut missing = Vec::new();
        let mut at = dir.to_path_buf();
        while std::fs::symlink_metadata(&at).is_err() {
            missing.push(at.clone());
            if !at.pop() {
                break;
            }
        }
        for d in missing.into_iter().rev() {
            let shown = d.display().to_string();
            match std::fs::create_dir(&d) {
                Ok(()) => give(path, &d, ids, false)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(io_failed(path, "cannot create directory", &shown, &e)),
            }
        }
        Ok(())
    }
}

/// Gives `at` to `ids` (uid, gid); `link`: the symbolic link itself.
fn give(path: &str, at: &Path, (uid, gid): (u32, u32), link: bool) -> Result<(), FailedFile> {
    let r = if link {
        std::os::unix::fs::lchown(at, Some(uid), Some(gid))
    } else {
        std::os::unix::fs::chown(at, Some(uid), Some(gid))
    };
    r.map_err(|e| ownership_failed(path, at, uid, gid, &e))
}

fn ownership_failed(path: &str, at: &Path, uid: u32, gid: u32, e: &io::Error) -> FailedFile {
    let hint = if e.kind() == io::ErrorKind::PermissionDenied {
        " (the transfer-get workers must run as root to restore files for other users, or set \
         [workers] posix_checks = \"service\")"
    } else {
        ""
    };
    FailedFile::new(
        path,
        ErrorCode::PermissionDenied,
        format!(
            "cannot give {} to uid {uid} gid {gid}: {e}{hint}",
            at.display()
        ),
    )
}

/// What is at a file's destination before the download.
enum Existing {
    /// Nothing (or something `--overwrite` replaces): download.
    Download,
    /// The same content is already there: nothing to do.
    Identical,
}

impl TransferGet {
    async fn get_batch(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
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
        let mut batch = Batch::default();
        let mut checker = Checker::new(self.posix, &env.user);
        let refuse_all = |batch: &mut Batch, code: ErrorCode, reason: &str| {
            for (i, f) in files.iter().enumerate() {
                batch.add(i, Step::Failed(FailedFile::new(&f.path, code, reason)));
            }
            tracing::warn!(transaction = %env.transaction_id, "{reason}");
        };
        let owner = if env.keep_owner {
            if !env.role.is_admin() {
                let reason = format!(
                    "keep_owner is for service operators (admin); user {} is {} in group {}: \
                     nothing restored",
                    env.user, env.role, env.group
                );
                refuse_all(&mut batch, ErrorCode::PermissionDenied, &reason);
                return Ok(batch.outcome(
                    &env,
                    Worker::TransferGet,
                    *holding_id,
                    target.clone(),
                    *overwrite,
                ));
            }
            Ownership::Recorded
        } else if checker.enabled() {
            match blocking(move || checker.account().map(|a| (a, checker))).await {
                Ok((a, c)) => {
                    checker = c;
                    Ownership::Requester {
                        uid: a.uid,
                        gid: a.gid,
                    }
                }
                Err(reason) => {
                    refuse_all(&mut batch, ErrorCode::PermissionDenied, &reason);
                    return Ok(batch.outcome(
                        &env,
                        Worker::TransferGet,
                        *holding_id,
                        target.clone(),
                        *overwrite,
                    ));
                }
            }
        } else {
            Ownership::Process
        };
        let root = match target {
            None => None,
            Some(t) => {
                let t = t.clone();
                let checked = blocking(move || {
                    let root = check_target(&t)?;
                    checker
                        .may_write_dir(&t, &root)
                        .map_err(|f| (f.code, format!("the target directory {}", f.reason)))?;
                    Ok((root, checker))
                })
                .await;
                match checked {
                    Ok((root, c)) => {
                        checker = c;
                        Some(Arc::new(root))
                    }
                    Err((code, reason)) => {
                        refuse_all(&mut batch, code, &reason);
                        return Ok(batch.outcome(
                            &env,
                            Worker::TransferGet,
                            *holding_id,
                            target.clone(),
                            *overwrite,
                        ));
                    }
                }
            }
        };
        let dest = Destination {
            root,
            overwrite: *overwrite,
            owner,
        };

        let mut wanted = Vec::new();
        for (i, rec) in files.iter().cloned().enumerate() {
            match dest.of(&rec.path) {
                Err(f) => batch.add(i, Step::Failed(f)),
                Ok(to) => wanted.push((i, rec, to)),
            }
        }
        // May the user create each of them? (Asked before anything is created, so a directory
        // this batch makes never counts as the user's own doing.)
        let (wanted, refused) = blocking(move || {
            let mut ok = Vec::new();
            let mut refused = Vec::new();
            for (i, rec, to) in wanted {
                match checker.may_create(&rec.path, &to) {
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

        // 1. Directories first, so files land in them; their modes and times come last.
        let d = dest.clone();
        let (dirs, failed_dirs) = blocking(move || {
            let mut ok = Vec::new();
            let mut failed = Vec::new();
            for (i, rec, to) in dirs {
                match make_directory(&d, &rec, &to) {
                    Ok(existed) => ok.push((i, rec, to, existed)),
                    Err(f) => failed.push((i, f)),
                }
            }
            (ok, failed)
        })
        .await;
        for (i, f) in failed_dirs {
            batch.add(i, Step::Failed(f));
        }

        // 2. Regular files, concurrently.
        let outage = AtomicBool::new(false);
        let mut steps = stream::iter(regular)
            .map(|(i, rec, to)| {
                let (outage, dest) = (&outage, &dest);
                async move { (i, self.get_file(dest, rec, to, outage).await) }.boxed()
            })
            .buffer_unordered(self.store.files_in_flight());
        while let Some((i, step)) = steps.next().await {
            batch.add(i, step);
        }
        drop(steps);
        if let Some(err) = batch.outage_error(&env, "download") {
            return Err(err);
        }

        // 3. Links after the files, so a restored link never redirects a file of this batch.
        let d = dest.clone();
        let link_steps = blocking(move || {
            links
                .into_iter()
                .map(|(i, rec, to)| match make_link(&d, &rec, &to) {
                    Ok(()) => (i, Step::Done(rec)),
                    Err(f) => (i, Step::Failed(f)),
                })
                .collect::<Vec<_>>()
        })
        .await;
        for (i, step) in link_steps {
            batch.add(i, step);
        }

        // 4. Directory modes and times, now that nothing more is written into them.
        let d = dest.clone();
        let dir_steps = blocking(move || {
            dirs.into_iter()
                .map(
                    |(i, rec, to, existed)| match finish_directory(&d, &rec, &to, existed) {
                        Ok(()) => (i, Step::Done(rec)),
                        Err(f) => (i, Step::Failed(f)),
                    },
                )
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
            transaction = %env.transaction_id,
            sub = %env.sub_id,
            done = batch.done.len(),
            failed = batch.failed.len(),
            bytes,
            seconds = secs,
            mib_per_s = bytes as f64 / (1 << 20) as f64 / secs.max(1e-9),
            "transfer-get batch done"
        );
        for (_, f) in &batch.failed {
            tracing::warn!(transaction = %env.transaction_id, path = %f.path, code = %f.code, "{}", f.reason);
        }
        Ok(batch.outcome(
            &env,
            Worker::TransferGet,
            *holding_id,
            target.clone(),
            *overwrite,
        ))
    }

    async fn get_file(
        &self,
        dest: &Destination,
        rec: FileRecord,
        to: PathBuf,
        outage: &AtomicBool,
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
        let shown = to.display().to_string();

        // What is there now?
        let (d, r, t, e, size) = (
            dest.clone(),
            rec.clone(),
            to.clone(),
            expected.clone(),
            rec.size,
        );
        match blocking(move || prepare(&d, &r, &t, size, &e)).await {
            Ok(Existing::Identical) => return Step::Done(rec),
            Ok(Existing::Download) => {}
            Err(f) => return Step::Failed(f),
        }

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

        // Download into a temporary file next to the destination, hashing what is written.
        let t = to.clone();
        let (temp, file) = match blocking(move || TempFile::create(&t, "part")).await {
            Ok(x) => x,
            Err(e) => {
                return Step::Failed(io_failed(&path, "cannot create a file next to", &shown, &e));
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let writer = tokio::task::spawn_blocking(move || -> io::Result<(File, String)> {
            let mut hasher = blake3::Hasher::new();
            let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
                out.write_all(&chunk)?;
            }
            let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
            Ok((file, hasher.finalize().to_hex().to_string()))
        });
        let mut body = response.body;
        let mut stream_error = None;
        loop {
            match body.try_next().await {
                Ok(Some(chunk)) => {
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    stream_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer.await;
        if let Some(e) = stream_error {
            // The connection broke mid-body: the store (or the network to it) is in trouble.
            outage.store(true, Ordering::Relaxed);
            return Step::Outage(S3Error::transient(
                ErrorCode::Unavailable,
                format!("{what}: the download broke off: {e}"),
            ));
        }
        let (file, actual) = match written {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                return Step::Failed(io_failed(
                    &path,
                    "cannot write",
                    &temp.path.display().to_string(),
                    &e,
                ));
            }
            Err(e) => {
                return Step::Failed(FailedFile::new(
                    &path,
                    ErrorCode::Internal,
                    format!("writing {shown} failed: {e}"),
                ));
            }
        };
        if actual != expected {
            drop(file);
            drop(temp); // removes the temporary file
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

        // Mode, mtime, fsync, then into place.
        let (mode, mtime, overwrite) = (rec.mode, rec.mtime_ns, dest.overwrite);
        let ids = dest.owner.ids(rec.uid, rec.gid);
        let p = path.clone();
        blocking(move || {
            let shown = to.display().to_string();
            if let Some((uid, gid)) = ids {
                // Before the mode: a change of owner clears setuid/setgid bits.
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                    .map_err(|e| ownership_failed(&p, &to, uid, gid, &e))?;
            }
            let times = FileTimes::new().set_modified(system_time(mtime));
            file.set_times(times)
                .and_then(|()| file.set_permissions(Permissions::from_mode(mode & FILE_MODE_MASK)))
                .and_then(|()| file.sync_all())
                .map_err(|e| {
                    io_failed(&p, "cannot finish", &temp.path.display().to_string(), &e)
                })?;
            drop(file);
            temp.persist(&to, overwrite).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => FailedFile::new(
                    &p,
                    ErrorCode::Conflict,
                    format!("{shown} exists and differs; use --overwrite"),
                ),
                _ => io_failed(&p, "cannot move into place", &shown, &e),
            })?;
            sync_parent(&to);
            Ok(())
        })
        .await
        .map_or_else(Step::Failed, |()| Step::Done(rec))
    }
}

/// The canonical target directory, or why it cannot be used.
fn check_target(target: &str) -> Result<PathBuf, (ErrorCode, String)> {
    match std::fs::metadata(target) {
        Ok(m) if m.is_dir() => std::fs::canonicalize(target).map_err(|e| {
            (
                ErrorCode::StorageError,
                format!("cannot resolve the target directory {target}: {e}"),
            )
        }),
        Ok(_) => Err((
            ErrorCode::BadRequest,
            format!("the target {target} is not a directory"),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err((
            ErrorCode::PathMissing,
            format!("the target directory {target} does not exist"),
        )),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err((
            ErrorCode::PermissionDenied,
            format!("cannot access the target directory {target}: {e}"),
        )),
        Err(e) => Err((
            ErrorCode::StorageError,
            format!("cannot access the target directory {target}: {e}"),
        )),
    }
}

/// Creates a file's parent and decides what to do about what is at `to`.
fn prepare(
    dest: &Destination,
    rec: &FileRecord,
    to: &Path,
    size: u64,
    expected: &str,
) -> Result<Existing, FailedFile> {
    let path = rec.path.as_str();
    let shown = to.display().to_string();
    let Some(parent) = to.parent() else {
        return Err(FailedFile::new(
            path,
            ErrorCode::BadRequest,
            format!("{shown} has no parent directory"),
        ));
    };
    dest.make_dirs(rec, parent)?;
    match std::fs::symlink_metadata(to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::Download),
        Err(e) => Err(io_failed(path, "cannot look at", &shown, &e)),
        Ok(m) if m.is_dir() => Err(FailedFile::new(
            path,
            ErrorCode::Conflict,
            format!("{shown} exists and is a directory"),
        )),
        Ok(m) if m.is_file() && m.len() == size && hash_file(to).is_ok_and(|h| h == expected) => {
            Ok(Existing::Identical)
        }
        Ok(_) if dest.overwrite => Ok(Existing::Download),
        Ok(_) => Err(FailedFile::new(
            path,
            ErrorCode::Conflict,
            format!("{shown} exists and differs; use --overwrite"),
        )),
    }
}

fn hash_file(path: &Path) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Creates a directory of the batch; true if it was already there.
fn make_directory(dest: &Destination, rec: &FileRecord, to: &Path) -> Result<bool, FailedFile> {
    let shown = to.display().to_string();
    match std::fs::metadata(to) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(FailedFile::new(
            &rec.path,
            ErrorCode::Conflict,
            format!("{shown} exists and is not a directory"),
        )),
        Err(_) => dest.make_dirs(rec, to).map(|()| false),
    }
}

/// Sets a restored directory's owner, mode and time. A directory that was already there and
/// belongs to someone else than the one this get restores for is left as it is.
fn finish_directory(
    dest: &Destination,
    rec: &FileRecord,
    to: &Path,
    existed: bool,
) -> Result<(), FailedFile> {
    let shown = to.display().to_string();
    let ids = dest.owner.ids(rec.uid, rec.gid);
    if let Some((uid, gid)) = ids {
        use std::os::unix::fs::MetadataExt;
        if existed
            && dest.owner != Ownership::Recorded
            && std::fs::metadata(to).is_ok_and(|m| m.uid() != uid)
        {
            return Ok(());
        }
        give(&rec.path, to, (uid, gid), false)?;
    }
    let times = FileTimes::new().set_modified(system_time(rec.mtime_ns));
    File::open(to)
        .and_then(|d| d.set_times(times))
        .and_then(|()| {
            std::fs::set_permissions(to, Permissions::from_mode(rec.mode & DIR_MODE_MASK))
        })
        .map_err(|e| io_failed(&rec.path, "cannot set the mode and time of", &shown, &e))
}

fn make_link(dest: &Destination, rec: &FileRecord, to: &Path) -> Result<(), FailedFile> {
    let path = rec.path.as_str();
    let shown = to.display().to_string();
    let Some(target) = rec.link_target.as_deref() else {
        return Err(FailedFile::new(
            path,
            ErrorCode::Internal,
            format!("{path} is a symbolic link without a target in the catalogue"),
        ));
    };
    let Some(parent) = to.parent() else {
        return Err(FailedFile::new(
            path,
            ErrorCode::BadRequest,
            format!("{shown} has no parent directory"),
        ));
    };
    dest.make_dirs(rec, parent)?;
    let ids = dest.owner.ids(rec.uid, rec.gid);
    let create = |at: &Path| {
        std::os::unix::fs::symlink(target, at).map_err(|e| {
            io_failed(
                path,
                "cannot create the symbolic link",
                &at.display().to_string(),
                &e,
            )
        })?;
        match ids {
            Some(ids) => give(path, at, ids, true).inspect_err(|_| {
                let _ = std::fs::remove_file(at);
            }),
            None => Ok(()),
        }
    };
    match std::fs::symlink_metadata(to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(to),
        Err(e) => Err(io_failed(path, "cannot look at", &shown, &e)),
        Ok(m)
            if m.file_type().is_symlink()
                && std::fs::read_link(to).is_ok_and(|t| t == Path::new(target)) =>
        {
            Ok(())
        }
        Ok(m) if m.is_dir() => Err(FailedFile::new(
            path,
            ErrorCode::Conflict,
            format!("{shown} exists and is a directory"),
        )),
        Ok(_) if !dest.overwrite => Err(FailedFile::new(
            path,
            ErrorCode::Conflict,
            format!("{shown} exists and differs; use --overwrite"),
        )),
        Ok(_) => {
            let temp = TempFile::name_for(to, "link");
            create(&temp)?;
            let guard = TempFile {
                path: temp.clone(),
                armed: true,
            };
            std::fs::rename(&temp, to)
                .map_err(|e| io_failed(path, "cannot replace", &shown, &e))?;
            guard.disarm();
            Ok(())
        }
    }
}

/// fsyncs the directory holding `path`, so the rename survives a crash (best effort).
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(dir) = File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

/// A temporary file `.<name>.nlds-<random>.<suffix>` next to its destination, removed when
/// dropped unless it was moved into place.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn name_for(to: &Path, suffix: &str) -> PathBuf {
        let name = to
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        // Stay well within NAME_MAX (255 bytes) whatever the name.
        let mut end = name.len().min(200);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let random = Uuid::new_v4().simple().to_string();
        to.with_file_name(format!(".{}.nlds-{}.{suffix}", &name[..end], &random[..12]))
    }

    fn create(to: &Path, suffix: &str) -> io::Result<(TempFile, File)> {
        let path = Self::name_for(to, suffix);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok((TempFile { path, armed: true }, file))
    }

    fn disarm(mut self) {
        self.armed = false;
    }

    /// Moves the file to `to`. Without `overwrite`, never replaces something that appeared there
    /// meanwhile (a hard link fails if `to` exists); falls back to a rename where the file
    /// system has no hard links.
    fn persist(self, to: &Path, overwrite: bool) -> io::Result<()> {
        if !overwrite {
            match std::fs::hard_link(&self.path, to) {
                Ok(()) => {
                    drop(self); // removes the temporary name
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
                Err(_) if std::fs::symlink_metadata(to).is_ok() => {
                    return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                }
                Err(_) => {}
            }
        }
        std::fs::rename(&self.path, to)?;
        self.disarm();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn destinations_stay_under_the_target() {
        let d = Destination {
            root: Some(Arc::new(PathBuf::from("/restore"))),
            overwrite: false,
            owner: Ownership::Process,
        };
        assert_eq!(
            d.of("/data/a b/ü.nc").unwrap(),
            PathBuf::from("/restore/data/a b/ü.nc")
        );
        assert_eq!(
            d.of("relative/x").unwrap(),
            PathBuf::from("/restore/relative/x")
        );
        let f = d.of("/data/../../etc/passwd").unwrap_err();
        assert_eq!(f.code, ErrorCode::BadRequest);
        let d = Destination {
            root: None,
            overwrite: false,
            owner: Ownership::Process,
        };
        assert_eq!(d.of("/data/x").unwrap(), PathBuf::from("/data/x"));
        assert_eq!(d.of("data/x").unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn temporary_names_are_hidden_bounded_and_next_to_the_destination() {
        let long = "é".repeat(127); // 254 bytes
        let to = PathBuf::from("/restore/dir").join(&long);
        let temp = TempFile::name_for(&to, "part");
        assert_eq!(temp.parent(), to.parent());
        let name = temp.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".é"), "{name}");
        assert!(name.ends_with(".part"), "{name}");
        assert!(name.contains(".nlds-"), "{name}");
        assert!(name.len() <= 255, "{}", name.len());
    }
}
