//! The indexer: expands the paths of a put into files, directories and links (recursively, never
//! following symlinks), stats every entry and splits the result into batches by file count and
//! bytes. Every path that is missing or unreadable becomes a failed file with its reason.
//!
//! With `posix_checks = "user"` every entry is checked against the requesting user's
//! permissions ([`crate::posix`]): read on files, read and search on directories walked, search
//! on every parent. A directory the user may not list is reported once and not descended into.
//! All of it goes through directory handles ([`crate::userfs`]): each path's parent is resolved
//! component by component, directories are listed and descended into through the descriptors
//! that were checked, and entries are looked at with `statat(.., AT_SYMLINK_NOFOLLOW)`.
//!
//! Batches are emitted as the walk makes them ([`index_into`]): with a bus, each is published
//! when it is full, so the indexer holds at most a couple of batches and the requested paths of
//! one message, whatever the size of the tree (a directory is read entry by entry).
//!
//! The names of a hard-linked inode travel in one batch (so transfer-put stores the inode once
//! and the later names share its object): they are held back until all `st_nlink` names are
//! met, or the walk ends (names outside the request), then batched together. The indexer holds
//! only the names of inodes whose links it has not all met yet.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use nlds_bus::{Bus, Handler, HandlerError, Outcome};
use nlds_core::error::ErrorCode;
use nlds_core::message::{FailedFile, FileRecord, sub_id};
use nlds_core::workflow::{self, Step, Workflow};
use nlds_core::{Action, Envelope, PathKind, Payload, Role, RoutingKey, Worker, pathname};

use crate::config::IndexConfig;
use crate::posix::{PosixPolicy, READ, SEARCH};
use crate::userfs::read::{self, LstatError, OpenError};
use crate::userfs::{Denial, Dir, Links, Meta, UserFs, components, xattr};
use nlds_hooks::points;

/// The indexer role.
#[derive(Clone)]
pub struct Indexer {
    cfg: IndexConfig,
    posix: PosixPolicy,
    /// Where batches are published as they are made (without one, they are returned together
    /// in the handler's outcome).
    bus: Option<Arc<dyn Bus>>,
}

/// What the walk emits, in order: a full batch, or a path that failed.
#[derive(Debug)]
pub enum Emitted {
    Batch(Vec<FileRecord>),
    Failed(FailedFile),
}

/// The result of indexing a request.
#[derive(Debug, Default)]
pub struct Index {
    pub batches: Vec<Vec<FileRecord>>,
    pub failed: Vec<FailedFile>,
}

/// Turns an I/O error on `path` into a failed file with a reason a user understands.
pub fn io_failure(path: &str, what: &str, e: &io::Error) -> FailedFile {
    let code = match e.kind() {
        io::ErrorKind::NotFound => ErrorCode::PathMissing,
        io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
        _ => ErrorCode::StorageError,
    };
    let reason = match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        io::ErrorKind::PermissionDenied => format!("permission denied: cannot {what}"),
        _ => format!("cannot {what}: {e}"),
    };
    FailedFile::new(path, code, reason)
}

fn record(path: &str, md: &Meta, link_target: Option<String>) -> FileRecord {
    let (kind, size) = if md.is_symlink() {
        (PathKind::Link, 0)
    } else if md.is_dir() {
        (PathKind::Directory, 0)
    } else {
        (PathKind::File, md.size)
    };
    FileRecord {
        path: path.to_owned(),
        kind,
        link_target,
        size,
        uid: md.uid,
        gid: md.gid,
        mode: md.mode & 0o7777,
        mtime_ns: md.mtime_ns,
        blake3: None,
        object: None,
        holding_id: None,
        xattrs: Vec::new(),
        new_version: false,
    }
}

struct Batcher<'a> {
    cfg: &'a IndexConfig,
    fs: UserFs,
    emit: &'a mut dyn FnMut(Emitted),
    current: Vec<FileRecord>,
    bytes: u64,
    /// The paths asked for: only these can be met twice (listed twice, or inside a directory
    /// that is also listed), so only these are remembered.
    requested: HashSet<&'a str>,
    seen: HashSet<&'a str>,
    /// The first path of each inode with more than one hard link (by `(st_dev, st_ino)`): the
    /// later paths of the same inode are recorded as hard links to it.
    hard_links: HashMap<(u64, u64), String>,
    /// The names met so far of each hard-linked inode not yet batched, and the links it has.
    linked: HashMap<(u64, u64), Linked>,
}

/// The names of a hard-linked inode met so far (held back until all are met).
struct Linked {
    /// When the inode was first met (the order held-back groups are batched in at the end).
    order: usize,
    nlink: u64,
    names: Vec<FileRecord>,
}

/// The failure of `path` for a refusal of the file-system layer (a missing component reads as
/// before: "no such file or directory").
fn denied(path: &str, d: &Denial) -> FailedFile {
    if d.missing {
        FailedFile::new(path, ErrorCode::PathMissing, "no such file or directory")
    } else {
        d.failed(path)
    }
}

impl Batcher<'_> {
    fn push(&mut self, rec: FileRecord) {
        if !self.current.is_empty()
            && (self.current.len() >= self.cfg.batch_files
                || self.bytes + rec.size > self.cfg.batch_bytes)
        {
            (self.emit)(Emitted::Batch(std::mem::take(&mut self.current)));
            self.bytes = 0;
        }
        self.bytes += rec.size;
        self.current.push(rec);
    }

    /// Batches the names of one hard-linked inode together (in one batch, which may exceed the
    /// batch's file count or bytes for them).
    fn push_group(&mut self, names: Vec<FileRecord>) {
        let bytes: u64 = names.iter().map(|r| r.size).sum();
        if !self.current.is_empty()
            && (self.current.len() + names.len() > self.cfg.batch_files
                || self.bytes.saturating_add(bytes) > self.cfg.batch_bytes)
        {
            (self.emit)(Emitted::Batch(std::mem::take(&mut self.current)));
            self.bytes = 0;
        }
        self.bytes = self.bytes.saturating_add(bytes);
        self.current.extend(names);
    }

    /// Holds back `rec`, a name of the hard-linked inode `id` with `nlink` links, until all its
    /// names are met.
    fn push_linked(&mut self, id: (u64, u64), nlink: u64, rec: FileRecord) {
        let order = self.hard_links.len();
        let group = self.linked.entry(id).or_insert_with(|| Linked {
            order,
            nlink,
            names: Vec::new(),
        });
        group.names.push(rec);
        if group.names.len() as u64 >= group.nlink
            && let Some(done) = self.linked.remove(&id)
        {
            self.push_group(done.names);
        }
    }

    /// Batches the hard-linked inodes with names outside the request (in the order first met).
    fn flush_linked(&mut self) {
        let mut left: Vec<Linked> = self.linked.drain().map(|(_, l)| l).collect();
        left.sort_by_key(|l| l.order);
        for l in left {
            self.push_group(l.names);
        }
    }

    fn fail(&mut self, f: FailedFile) {
        (self.emit)(Emitted::Failed(f));
    }

    /// Whether `path` is met for the first time: always, unless it is one of the paths asked
    /// for and was indexed already (listed twice, or inside a directory also listed).
    fn first_visit(&mut self, path: &str) -> bool {
        match self.requested.get(path).copied() {
            Some(p) => self.seen.insert(p),
            None => true,
        }
    }

    /// Indexes one requested path: its parent is resolved as the user (links on the way
    /// followed as the kernel would for them, search checked on each directory's handle), the
    /// path itself is looked at through that handle and never followed.
    fn index_path(&mut self, given: &str) {
        if !self.first_visit(given) {
            return;
        }
        // The canonical spelling of the path (see nlds_core::pathname), and its raw bytes.
        let path = match pathname::canonical(given) {
            Ok(p) => p,
            Err(e) => {
                return self.fail(FailedFile::new(given, ErrorCode::BadRequest, e.to_string()));
            }
        };
        let path = path.as_str();
        let raw = pathname::decode(path);
        let p = Path::new(&raw);
        let comps = match components(p) {
            Ok(c) => c,
            Err(d) => {
                let reason = if p.is_absolute() {
                    d.reason
                } else {
                    "path is not absolute".to_owned()
                };
                return self.fail(FailedFile::new(path, ErrorCode::BadRequest, reason));
            }
        };
        let Some((name, parents)) = comps.split_last() else {
            // "/" itself.
            let root = match self.fs.root() {
                Ok(r) => r,
                Err(d) => return self.fail(denied(path, &d)),
            };
            return self.index_root(path, root);
        };
        let mut links = 0;
        let parent = match self
            .fs
            .root()
            .and_then(|r| self.fs.walk(r, parents, Links::Follow, &mut links))
        {
            Ok(d) => d,
            Err(d) => return self.fail(denied(path, &d)),
        };
        self.index_at(&parent, name, path, true);
    }

    /// Indexes `/`, a directory the user asked for as a whole.
    fn index_root(&mut self, path: &str, root: Dir) {
        let dir = match self.fs.check(&root, READ | SEARCH) {
            Ok(()) => root,
            Err(d) => return self.fail(denied(path, &d)),
        };
        self.push(record(path, dir.meta(), None));
        nlds_hooks::pause(
            points::INDEX_BEFORE_WALK,
            Path::new(&pathname::decode(path)),
        );
        self.walk(&dir, path);
    }

    /// Indexes the entry `name` of `dir` (its path: `path`), descending into it if it is a
    /// directory. `top`: one of the paths asked for.
    fn index_at(&mut self, dir: &Dir, name: &OsStr, path: &str, top: bool) {
        let md = match read::lstat_at(&mut self.fs, dir, name) {
            Ok(md) => md,
            Err(LstatError::Denied(d)) => return self.fail(denied(path, &d)),
            Err(LstatError::Io(e)) => return self.fail(io_failure(path, "stat", &e)),
        };
        if md.is_dir() {
            let sub = match read::open_listing(&mut self.fs, dir, name, &md) {
                Ok(d) => d,
                Err(d) => {
                    return self.fail(match d.code {
                        ErrorCode::PermissionDenied if d.reason.starts_with("cannot") => {
                            FailedFile::new(
                                path,
                                ErrorCode::PermissionDenied,
                                "permission denied: cannot read directory",
                            )
                        }
                        _ => denied(path, &d),
                    });
                }
            };
            let mut rec = record(path, sub.meta(), None);
            rec.xattrs = xattr::read(sub.fd());
            self.push(rec);
            if top {
                nlds_hooks::pause(
                    points::INDEX_BEFORE_WALK,
                    Path::new(&pathname::decode(path)),
                );
            }
            self.walk(&sub, path);
        } else if md.is_symlink() {
            match read::read_link_at(dir, name) {
                Ok(t) => match pathname::encode(&t) {
                    Ok(t) => self.push(record(path, &md, Some(t))),
                    Err(e) => self.fail(FailedFile::new(
                        path,
                        ErrorCode::BadRequest,
                        format!("the target of the symbolic link {path}: {e}"),
                    )),
                },
                Err(e) => self.fail(io_failure(path, "read link", &e)),
            }
        } else if md.is_file() {
            match read::open_file(&mut self.fs, dir, name, Path::new(&pathname::decode(path))) {
                Ok(opened) => {
                    let meta = opened.meta;
                    // A later path of an inode already indexed in this request: a hard link
                    // to the first one (stored once, restored as a link).
                    let first = (meta.nlink > 1).then(|| {
                        self.hard_links
                            .entry((meta.dev, meta.ino))
                            .or_insert_with(|| path.to_owned())
                            .clone()
                    });
                    let link = first.clone().filter(|f| f != path);
                    let mut rec = record(path, &meta, link);
                    rec.xattrs = xattr::read(&opened.file);
                    if first.is_some() {
                        self.push_linked((meta.dev, meta.ino), meta.nlink, rec);
                    } else {
                        self.push(rec);
                    }
                }
                Err(OpenError::Denied(d)) => self.fail(denied(path, &d)),
                Err(OpenError::Io(e)) => self.fail(io_failure(path, "read file", &e)),
                Err(OpenError::NotAFile(m)) => self.fail(FailedFile::new(
                    path,
                    ErrorCode::Conflict,
                    format!(
                        "{path} is now {} (it changed while it was indexed)",
                        m.kind_name()
                    ),
                )),
            }
        } else {
            self.fail(FailedFile::new(
                path,
                ErrorCode::BadRequest,
                format!(
                    "{} is {}: not a regular file, directory or symlink (not stored)",
                    pathname::display(path),
                    md.kind_name()
                ),
            ));
        }
    }

    /// Indexes what is in `dir` (its path: `path`), through its handle.
    fn walk(&mut self, dir: &Dir, path: &str) {
        let names = match read::entries(dir) {
            Ok(n) => n,
            Err(d) => return self.fail(denied(path, &d)),
        };
        let base = pathname::decode(path);
        for name in names {
            let name = match name {
                Ok(n) => n,
                Err(d) => return self.fail(denied(path, &d)),
            };
            let child = match pathname::encode(Path::new(&base).join(&name).as_os_str()) {
                Ok(c) => c,
                Err(e) => {
                    let shown = e.shown.clone();
                    self.fail(FailedFile::new(shown, ErrorCode::BadRequest, e.to_string()));
                    continue;
                }
            };
            if self.first_visit(&child) {
                self.index_at(dir, &name, &child, false);
            }
        }
    }
}

/// Indexes `paths` with the process's own access (blocking file-system work: call from a
/// blocking thread).
pub fn index(paths: &[String], cfg: &IndexConfig) -> Index {
    index_as(paths, cfg, UserFs::service())
}

/// Indexes `paths` on behalf of the user `fs` acts for, all batches together.
pub fn index_as(paths: &[String], cfg: &IndexConfig, fs: UserFs) -> Index {
    let mut out = Index::default();
    index_into(paths, cfg, fs, &mut |e| match e {
        Emitted::Batch(b) => out.batches.push(b),
        Emitted::Failed(f) => out.failed.push(f),
    });
    out
}

/// Indexes `paths` on behalf of the user `fs` acts for, handing each batch to `emit` as soon as
/// it is full (the last one when the walk ends) and each failed path as it is found.
pub fn index_into(paths: &[String], cfg: &IndexConfig, fs: UserFs, emit: &mut dyn FnMut(Emitted)) {
    let mut b = Batcher {
        cfg,
        fs,
        emit,
        current: Vec::new(),
        bytes: 0,
        requested: paths.iter().map(String::as_str).collect(),
        seen: HashSet::new(),
        hard_links: HashMap::new(),
        linked: HashMap::new(),
    };
    for p in paths {
        b.index_path(p);
    }
    b.flush_linked();
    if !b.current.is_empty() {
        let last = std::mem::take(&mut b.current);
        (b.emit)(Emitted::Batch(last));
    }
}

impl Indexer {
    /// An indexer that checks the process's own access (see [`Indexer::with_posix`]).
    pub fn new(cfg: IndexConfig) -> Self {
        Self {
            cfg,
            posix: PosixPolicy::SERVICE,
            bus: None,
        }
    }

    /// Publishes each batch on `bus` as soon as it is made.
    pub fn with_bus(mut self, bus: Arc<dyn Bus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Checks POSIX permissions as `posix` says (the requesting user's with `"user"`).
    pub fn with_posix(mut self, posix: PosixPolicy) -> Self {
        self.posix = posix;
        self
    }
}

/// Where the indexer's messages go: published at once on the bus, or gathered into the outcome.
enum Sink<'a> {
    Bus(&'a dyn Bus),
    Collect(Vec<(RoutingKey, Envelope)>),
}

impl Sink<'_> {
    async fn send(&mut self, key: RoutingKey, env: Envelope) -> Result<(), HandlerError> {
        match self {
            Sink::Bus(bus) => {
                // In one process, the walk waits while the steps after it have much queued.
                nlds_bus::wait_for_room(*bus, Some(Role::Indexer)).await;
                bus.publish(key, &env)
                    .await
                    .map_err(|e| HandlerError::transient(e.code(), format!("indexer: {e}")))
            }
            Sink::Collect(out) => {
                out.push((key, env));
                Ok(())
            }
        }
    }
}

/// Publishes what the walk emits, batch by batch. Paths that failed travel with the next batch
/// (recorded with its next state): the newest batch is held back until the next one is full or
/// the walk ends, so failures found after it still travel with one. Failures with no batch to
/// travel with (none left, or more than a batch's worth waiting) go on sub-records of their own
/// (`index-failed`).
struct Emitter<'a> {
    env: &'a Envelope,
    holding_id: i64,
    batch_state: Option<nlds_core::State>,
    max_failed: usize,
    held: Option<Vec<FileRecord>>,
    failed: Vec<FailedFile>,
    batches: usize,
    failed_subs: usize,
}

impl Emitter<'_> {
    async fn take(&mut self, sink: &mut Sink<'_>, e: Emitted) -> Result<(), HandlerError> {
        match e {
            Emitted::Batch(files) => {
                if let Some(prev) = self.held.replace(files) {
                    self.publish_batch(sink, prev).await?;
                }
            }
            Emitted::Failed(f) => {
                self.failed.push(f);
                if self.failed.len() >= self.max_failed {
                    self.publish_failed(sink).await?;
                }
            }
        }
        Ok(())
    }

    async fn finish(&mut self, sink: &mut Sink<'_>) -> Result<(), HandlerError> {
        if let Some(last) = self.held.take() {
            self.publish_batch(sink, last).await?;
        }
        if !self.failed.is_empty() {
            self.publish_failed(sink).await?;
        }
        Ok(())
    }

    async fn publish_batch(
        &mut self,
        sink: &mut Sink<'_>,
        files: Vec<FileRecord>,
    ) -> Result<(), HandlerError> {
        // Batches of the message's own sub-record: the request, or one part of a request whose
        // paths came in chunks.
        let sub = sub_id(self.env.sub_id, "index", self.batches);
        self.batches += 1;
        if let Some(state) = self.batch_state {
            let bytes = files.iter().map(|f| f.size).sum();
            let update = self.env.with_sub(
                sub,
                Payload::MonitorUpdate {
                    state,
                    // Directories travel for their restore only: not files to users.
                    files: nlds_core::message::file_count(&files),
                    bytes,
                    failed: Vec::new(),
                    warnings: Vec::new(),
                    versions: 0,
                },
            );
            sink.send(RoutingKey::new(Worker::MonitorPut, Action::Start), update)
                .await?;
        }
        let batch = self.env.with_sub(
            sub,
            Payload::Files {
                context: Vec::new(),
                failed: std::mem::take(&mut self.failed),
                holding_id: Some(self.holding_id),
                files,
                target: None,
                overwrite: false,
            },
        );
        sink.send(RoutingKey::new(Worker::Index, Action::Complete), batch)
            .await
    }

    async fn publish_failed(&mut self, sink: &mut Sink<'_>) -> Result<(), HandlerError> {
        let sub = sub_id(self.env.sub_id, "index-failed", self.failed_subs);
        self.failed_subs += 1;
        let files = std::mem::take(&mut self.failed);
        sink.send(
            RoutingKey::new(Worker::Index, Action::Failed),
            self.env.with_sub(sub, Payload::Failed { files }),
        )
        .await
    }
}

#[async_trait]
impl Handler for Indexer {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let Payload::PutRequest { holding_id, paths } = &env.payload else {
            return Err(HandlerError::permanent(
                ErrorCode::Internal,
                format!("{key} needs a put request"),
            ));
        };
        let (holding_id, paths, cfg) = (*holding_id, paths.clone(), self.cfg.clone());
        // The request's sub-record stands for its batches; each batch reports as it is made.
        let split = workflow::split(Workflow::Put, Step::Index)
            .map_err(|e| HandlerError::permanent(ErrorCode::Internal, format!("indexer: {e}")))?;
        let fs = UserFs::new(self.posix, &env.user);
        // The walk runs on a blocking thread and hands over what it makes through a short
        // channel: it waits while the batches before are being published.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Emitted>(2);
        let walk = tokio::task::spawn_blocking(move || {
            index_into(&paths, &cfg, fs, &mut |e| {
                // A closed channel means the handler gave up; the walk then runs out unread.
                let _ = tx.blocking_send(e);
            });
        });
        let mut sink = match &self.bus {
            Some(bus) => Sink::Bus(bus.as_ref()),
            None => Sink::Collect(Vec::new()),
        };
        let mut emitter = Emitter {
            env: &env,
            holding_id,
            batch_state: split.batch,
            max_failed: self.cfg.batch_files.max(1),
            held: None,
            failed: Vec::new(),
            batches: 0,
            failed_subs: 0,
        };
        while let Some(e) = rx.recv().await {
            emitter.take(&mut sink, e).await?;
        }
        walk.await.map_err(|e| {
            HandlerError::permanent(ErrorCode::Internal, format!("indexing crashed: {e}"))
        })?;
        emitter.finish(&mut sink).await?;
        let out = match sink {
            Sink::Collect(publish) => Outcome {
                publish,
                reply: None,
            },
            Sink::Bus(_) => Outcome::none(),
        };
        Ok(out.and(
            RoutingKey::new(Worker::MonitorPut, Action::Start),
            env.reply(Payload::MonitorUpdate {
                state: split.parent,
                files: 0,
                bytes: 0,
                failed: Vec::new(),
                warnings: Vec::new(),
                versions: 0,
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlds_core::State;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use uuid::Uuid;

    fn cfg(files: usize, bytes: u64) -> IndexConfig {
        IndexConfig {
            batch_files: files,
            batch_bytes: bytes,
            ..Default::default()
        }
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a/b c/ü")).unwrap();
        std::fs::write(r.join("a/one"), b"1").unwrap();
        std::fs::write(r.join("a/b c/two"), vec![0u8; 100]).unwrap();
        std::fs::write(r.join("a/b c/ü/empty"), b"").unwrap();
        std::os::unix::fs::symlink("/nonexistent/target", r.join("a/link")).unwrap();
        std::os::unix::fs::symlink(r.join("a/b c"), r.join("a/dirlink")).unwrap();
        d
    }

    fn s(p: &Path) -> String {
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn indexes_recursively_without_following_links() {
        let d = tree();
        let idx = index(&[s(&d.path().join("a"))], &cfg(1000, u64::MAX));
        assert!(idx.failed.is_empty(), "{:?}", idx.failed);
        let all: Vec<&FileRecord> = idx.batches.iter().flatten().collect();
        let by = |suffix: &str| {
            all.iter()
                .find(|f| f.path.ends_with(suffix))
                .unwrap_or_else(|| panic!("{suffix} missing"))
        };
        assert_eq!(all.len(), 8, "{all:#?}"); // a, b c, ü, one, two, empty, link, dirlink
        assert_eq!(by("/a/one").size, 1);
        assert_eq!(by("/two").size, 100);
        assert_eq!(by("/ü/empty").kind, PathKind::File);
        assert_eq!(by("/link").kind, PathKind::Link);
        assert_eq!(
            by("/link").link_target.as_deref(),
            Some("/nonexistent/target")
        );
        assert_eq!(by("/dirlink").kind, PathKind::Link);
        assert_eq!(by("/b c").kind, PathKind::Directory);
        assert!(
            !all.iter().any(|f| f.path.contains("dirlink/")),
            "followed a link"
        );
    }

    #[test]
    fn names_that_are_not_utf8_are_indexed_in_their_encoding() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let raw = |b: &[u8]| r.join(OsStr::from_bytes(b));
        std::fs::create_dir(raw(b"r\xe9p")).unwrap();
        std::fs::write(raw(b"r\xe9p/caf\xe9.txt"), b"x").unwrap();
        std::os::unix::fs::symlink(OsStr::from_bytes(b"caf\xe9.txt"), raw(b"r\xe9p/l")).unwrap();
        std::fs::write(r.join("bad\u{10FEE9}"), b"").unwrap();
        let top = pathname::encode(r.as_os_str()).unwrap();
        let idx = index(std::slice::from_ref(&top), &cfg(1000, u64::MAX));
        let all: Vec<&FileRecord> = idx.batches.iter().flatten().collect();
        let file = all
            .iter()
            .find(|f| f.path == format!("{top}/r\u{10FEE9}p/caf\u{10FEE9}.txt"))
            .unwrap_or_else(|| panic!("{all:#?}"));
        assert_eq!((file.kind, file.size), (PathKind::File, 1));
        let link = all.iter().find(|f| f.path.ends_with("/l")).unwrap();
        assert_eq!(link.link_target.as_deref(), Some("caf\u{10FEE9}.txt"));
        // The real name with a reserved character: refused, naming it.
        assert_eq!(idx.failed.len(), 1, "{:?}", idx.failed);
        assert_eq!(idx.failed[0].code, ErrorCode::BadRequest);
        assert_eq!(idx.failed[0].path, format!("{top}/bad\\u{{10FEE9}}"));
        assert!(
            idx.failed[0].reason.contains("reserves"),
            "{:?}",
            idx.failed
        );
        // Asked for by its encoded path, the file is found (not "no such file").
        let one = index(std::slice::from_ref(&file.path), &cfg(10, u64::MAX));
        assert!(one.failed.is_empty(), "{:?}", one.failed);
        assert_eq!(one.batches[0][0].path, file.path);
    }

    #[test]
    fn later_names_of_an_inode_are_hard_links_to_the_first() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir(r.join("x")).unwrap();
        std::fs::write(r.join("a"), b"shared").unwrap();
        std::fs::hard_link(r.join("a"), r.join("b")).unwrap();
        std::fs::hard_link(r.join("a"), r.join("x/c")).unwrap();
        std::fs::write(r.join("single"), b"alone").unwrap();
        std::fs::write(r.join("y"), b"outside").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::hard_link(r.join("y"), outside.path().join("z")).unwrap();
        // Batches of two: the three names of one inode still travel in one batch (so
        // transfer-put stores it once), whatever the order the walk meets them in.
        let idx = index(&[s(r)], &cfg(2, u64::MAX));
        assert!(idx.batches.len() > 1);
        let batch_of = |n: &str| {
            let p = s(&r.join(n));
            idx.batches
                .iter()
                .position(|b| b.iter().any(|f| f.path == p))
                .unwrap()
        };
        assert_eq!(batch_of("a"), batch_of("b"));
        assert_eq!(batch_of("a"), batch_of("x/c"));
        assert_eq!(
            idx.batches[batch_of("a")].len(),
            3,
            "the group is batched on its own when it does not fit: {:?}",
            idx.batches
        );
        // A name outside the request: the one inside is batched when the walk ends.
        let y = s(&r.join("y"));
        assert_eq!(
            idx.batches.iter().flatten().filter(|f| f.path == y).count(),
            1
        );
        let all: Vec<&FileRecord> = idx.batches.iter().flatten().collect();
        let by = |n: &str| all.iter().find(|f| f.path == s(&r.join(n))).unwrap();
        // Directories are read in the file system's order: the first of the three names met is
        // the one stored, the other two are links to it.
        let names = ["a", "b", "x/c"].map(|n| s(&r.join(n)));
        let first = all
            .iter()
            .find(|f| names.contains(&f.path))
            .map(|f| f.path.clone())
            .unwrap();
        for n in ["a", "b", "x/c"] {
            let f = by(n);
            let want = (f.path != first).then_some(first.as_str());
            assert_eq!(f.link_target.as_deref(), want, "{n}");
            assert_eq!((f.kind, f.size), (PathKind::File, 6), "{n}");
        }
        assert_eq!(by("single").link_target, None);
    }

    #[test]
    fn special_files_fail_naming_what_they_are() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let _sock = std::os::unix::net::UnixListener::bind(d.path().join("sock")).unwrap();
        let idx = index(&[s(d.path())], &cfg(10, u64::MAX));
        let reasons: Vec<&str> = idx.failed.iter().map(|f| f.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].starts_with(&format!("{} is a FIFO", s(&fifo))),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("/sock is a socket"), "{reasons:?}");
    }

    #[test]
    fn splits_by_count_and_bytes() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..10 {
            std::fs::write(d.path().join(format!("f{i}")), vec![0u8; 10]).unwrap();
        }
        let paths: Vec<String> = (0..10)
            .map(|i| s(&d.path().join(format!("f{i}"))))
            .collect();
        let idx = index(&paths, &cfg(4, u64::MAX));
        assert_eq!(
            idx.batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        let idx = index(&paths, &cfg(1000, 25));
        assert_eq!(
            idx.batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 2, 2, 2, 2]
        );
        // one file larger than the byte limit still gets a batch of its own
        let idx = index(&paths[..2], &cfg(1000, 5));
        assert_eq!(idx.batches.len(), 2);
    }

    #[test]
    fn duplicates_and_nested_paths_are_indexed_once() {
        let d = tree();
        let a = s(&d.path().join("a"));
        let one = s(&d.path().join("a/one"));
        let idx = index(&[one.clone(), a.clone(), one, a], &cfg(1000, u64::MAX));
        assert_eq!(idx.batches.iter().flatten().count(), 8);
    }

    #[test]
    fn missing_and_unreadable_paths_fail_with_reasons() {
        let d = tree();
        let missing = s(&d.path().join("nope"));
        let idx = index(&[missing.clone(), "relative/path".into()], &cfg(10, 100));
        assert!(idx.batches.is_empty());
        assert_eq!(idx.failed[0].path, missing);
        assert_eq!(idx.failed[0].code, ErrorCode::PathMissing);
        assert_eq!(idx.failed[0].reason, "no such file or directory");
        assert_eq!(idx.failed[1].code, ErrorCode::BadRequest);

        if nix_is_root() {
            return; // root reads everything; the permission cases are covered in the integration tests as a normal user
        }
        let secret = d.path().join("a/one");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
        let idx = index(&[s(&d.path().join("a"))], &cfg(1000, u64::MAX));
        assert_eq!(idx.failed.len(), 1);
        assert_eq!(idx.failed[0].code, ErrorCode::PermissionDenied);
    }

    fn nix_is_root() -> bool {
        std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn handler_emits_batches_failures_and_split() {
        let d = tree();
        let env = Envelope::new(
            uuid::Uuid::new_v4(),
            "u",
            "g",
            nlds_core::api::ApiAction::Putlist,
            "j",
            Payload::PutRequest {
                holding_id: 7,
                paths: vec![s(&d.path().join("a")), s(&d.path().join("gone"))],
            },
        );
        let h = Indexer::new(cfg(3, u64::MAX));
        let out = h
            .handle(RoutingKey::new(Worker::Index, Action::Start), env.clone())
            .await
            .unwrap();
        let keys: Vec<String> = out.publish.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(
            keys.iter()
                .filter(|k| k.ends_with("index.complete"))
                .count(),
            3
        );
        // The missing path travels with the first batch, not in a message of its own.
        assert_eq!(
            keys.iter().filter(|k| k.ends_with("index.failed")).count(),
            0
        );
        // It was found after two batches were full, so it travels with the last one, which
        // was held back for it.
        let failed: Vec<&FailedFile> = out
            .publish
            .iter()
            .filter(|(k, _)| k.action == Action::Complete)
            .flat_map(|(_, e)| match &e.payload {
                Payload::Files { failed, .. } => failed.iter(),
                _ => panic!("not a batch"),
            })
            .collect();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].path.ends_with("/gone"));
        assert_eq!(failed[0].code, ErrorCode::PathMissing);
        let (last_key, last) = out.publish.last().unwrap();
        assert_eq!(last_key.to_string(), "nlds-api.monitor-put.start");
        assert!(matches!(
            last.payload,
            Payload::MonitorUpdate {
                state: State::Split,
                ..
            }
        ));
        assert_eq!(last.sub_id, env.transaction_id);
        // batches carry the holding and distinct, deterministic sub ids
        let subs: HashSet<_> = out
            .publish
            .iter()
            .filter(|(k, _)| k.action == Action::Complete)
            .map(|(_, e)| e.sub_id)
            .collect();
        assert_eq!(subs.len(), 3);
        assert!(subs.contains(&sub_id(env.transaction_id, "index", 0)));
    }

    /// A bus that records what is published.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<(RoutingKey, Envelope)>>);

    #[async_trait]
    impl Bus for Recorder {
        async fn publish(&self, key: RoutingKey, env: &Envelope) -> Result<(), nlds_bus::BusError> {
            self.0.lock().unwrap().push((key, env.clone()));
            Ok(())
        }
        async fn rpc(
            &self,
            key: RoutingKey,
            _: &Envelope,
            _: std::time::Duration,
        ) -> Result<Envelope, nlds_bus::BusError> {
            Err(nlds_bus::BusError::Unroutable(key.to_string()))
        }
        async fn consume(
            &self,
            _: nlds_core::Role,
            _: Arc<dyn Handler>,
            _: nlds_bus::ConsumeOptions,
            _: tokio_util::sync::CancellationToken,
        ) -> Result<(), nlds_bus::BusError> {
            Ok(())
        }
        async fn ready(&self) -> Result<(), nlds_bus::BusError> {
            Ok(())
        }
        async fn publish_delayed(
            &self,
            key: RoutingKey,
            env: &Envelope,
            _: std::time::Duration,
        ) -> Result<(), nlds_bus::BusError> {
            self.publish(key, env).await
        }
        async fn consumers(&self, _: nlds_core::Role) -> Result<u32, nlds_bus::BusError> {
            Ok(1)
        }
    }

    /// With a bus, a directory of many entries is published batch by batch as the walk goes,
    /// under the sub ids of the message's own sub-record (here one part of a request sent in
    /// chunks); only the part's SPLIT is left for the outcome.
    #[tokio::test]
    async fn batches_are_published_as_they_are_made() {
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("big");
        std::fs::create_dir(&big).unwrap();
        for i in 0..2500 {
            std::fs::write(big.join(format!("f{i}")), b"").unwrap();
        }
        let tid = uuid::Uuid::new_v4();
        let part = workflow::part_sub(tid, 3);
        let env = Envelope::new(
            tid,
            "u",
            "g",
            nlds_core::api::ApiAction::Putlist,
            "j",
            Payload::PutRequest {
                holding_id: 7,
                paths: vec![s(&big)],
            },
        );
        let env = env.with_sub(part, env.payload.clone());
        let bus = Arc::new(Recorder::default());
        let h = Indexer::new(cfg(100, u64::MAX)).with_bus(bus.clone());
        let out = h
            .handle(RoutingKey::new(Worker::Index, Action::Start), env)
            .await
            .unwrap();
        assert_eq!(
            out.publish.len(),
            1,
            "only the SPLIT is left for the outcome"
        );
        assert_eq!(out.publish[0].1.sub_id, part);
        let published = bus.0.lock().unwrap();
        let batches: Vec<&Envelope> = published
            .iter()
            .filter(|(k, _)| k.action == Action::Complete)
            .map(|(_, e)| e)
            .collect();
        // 2,501 entries (the directory and its files) in batches of 100.
        assert_eq!(batches.len(), 26);
        let files: usize = batches
            .iter()
            .map(|e| match &e.payload {
                Payload::Files { files, .. } => files.len(),
                _ => panic!("not a batch"),
            })
            .sum();
        assert_eq!(files, 2501);
        for (i, e) in batches.iter().enumerate() {
            assert_eq!(e.sub_id, sub_id(part, "index", i));
        }
        // Each batch's first state goes out before it.
        let first = published
            .iter()
            .position(|(k, e)| k.worker == Worker::MonitorPut && e.sub_id == batches[0].sub_id)
            .unwrap();
        let complete = published
            .iter()
            .position(|(k, e)| k.action == Action::Complete && e.sub_id == batches[0].sub_id)
            .unwrap();
        assert!(first < complete);
    }

    /// Failed paths with no batch to travel with go on sub-records of their own, at most a
    /// batch's worth each, so no message holds an unbounded list of them.
    #[tokio::test]
    async fn failures_without_batches_are_published_in_bounded_messages() {
        let d = tempfile::tempdir().unwrap();
        let paths: Vec<String> = (0..5)
            .map(|i| s(&d.path().join(format!("gone{i}"))))
            .collect();
        let env = Envelope::new(
            uuid::Uuid::new_v4(),
            "u",
            "g",
            nlds_core::api::ApiAction::Putlist,
            "j",
            Payload::PutRequest {
                holding_id: 7,
                paths,
            },
        );
        let out = Indexer::new(cfg(2, u64::MAX))
            .handle(RoutingKey::new(Worker::Index, Action::Start), env.clone())
            .await
            .unwrap();
        let failed: Vec<(Uuid, usize)> = out
            .publish
            .iter()
            .filter(|(k, _)| k.action == Action::Failed)
            .map(|(_, e)| match &e.payload {
                Payload::Failed { files } => (e.sub_id, files.len()),
                _ => panic!("not a failure"),
            })
            .collect();
        let tid = env.transaction_id;
        assert_eq!(
            failed,
            [
                (sub_id(tid, "index-failed", 0), 2),
                (sub_id(tid, "index-failed", 1), 2),
                (sub_id(tid, "index-failed", 2), 1),
            ]
        );
    }
}
