//! The get side: where a restore writes, through directory handles.
//!
//! A [`Restorer`] holds a handle on every directory of one batch (the target, the directories
//! found on the way, those it created), keyed by destination path. Directories it creates are
//! made with `mkdirat(parent, name, 0700)`, opened `O_RDONLY|O_DIRECTORY|O_NOFOLLOW` from the
//! parent's handle and given away with `fchown` on that descriptor. Files are written unnamed
//! (`O_TMPFILE`) or under a temporary name created `O_CREAT|O_EXCL|O_NOFOLLOW` in the directory
//! handle ([`super::temp_file`]), finished with `fchown`/`futimens`/`fchmod`/`fsync` on their own
//! descriptor and moved into place with `linkat`/`renameat` relative to the handle. Below a target
//! no symbolic link is followed.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, FileTimes};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nlds_core::message::Xattr;
use nlds_core::{ErrorCode, FailedFile};
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid, openat, statat};
use rustix::io::Errno;

use super::{Denial, Dir, Links, Meta, UserFs, components, fstat, is_plain_name};
use crate::posix::{Ownership, SEARCH, WRITE};
use nlds_hooks::points;

mod links;
pub use links::{Replace, hard_link, make_link};

/// A directory of the restore.
struct Node {
    dir: Dir,
    /// Created by this restore (not there before).
    created: bool,
}

/// The directories of one restore (one batch of a get), and who what it creates belongs to.
pub struct Restorer {
    fs: UserFs,
    owner: Ownership,
    /// The target directory (given path), if any.
    root: Option<PathBuf>,
    nodes: HashMap<PathBuf, Node>,
    /// May the user write into this directory that was there before (checked once each)?
    writable: HashMap<PathBuf, Result<(), Denial>>,
}

impl Restorer {
    /// A restore into `target` (resolved as the user, who must be able to write into it), or to
    /// the original paths.
    pub fn new(
        mut fs: UserFs,
        owner: Ownership,
        target: Option<&str>,
    ) -> Result<Self, (ErrorCode, String)> {
        super::raise_fd_limit();
        let mut nodes = HashMap::new();
        let root = match target {
            None => {
                let slash = fs.root().map_err(|d| (d.code, d.reason))?;
                nodes.insert(
                    PathBuf::from("/"),
                    Node {
                        dir: slash,
                        created: false,
                    },
                );
                None
            }
            Some(t) => {
                let raw = nlds_core::pathname::decode(t);
                let given = Path::new(&raw);
                let dir = fs.open_dir(given, 0).map_err(|d| target_error(t, d))?;
                fs.check(&dir, WRITE | SEARCH)
                    .map_err(|d| (d.code, format!("the target directory {t}: {}", d.reason)))?;
                let key: PathBuf = std::iter::once(OsString::from("/"))
                    .chain(components(given).unwrap_or_default())
                    .collect();
                nodes.insert(
                    key.clone(),
                    Node {
                        dir,
                        created: false,
                    },
                );
                Some(key)
            }
        };
        Ok(Self {
            fs,
            owner,
            root,
            nodes,
            writable: HashMap::new(),
        })
    }

    /// The target directory (normalised), if any.
    pub fn target(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The permission rules (for the checks made on records).
    pub fn fs(&mut self) -> &mut UserFs {
        &mut self.fs
    }

    /// The directory `dir` of the restore (made if missing, with its missing parents), for the
    /// entry `path` recorded with `ids`.
    fn ensure(&mut self, path: &str, dir: &Path, rec_ids: (u32, u32)) -> Result<Dir, FailedFile> {
        if let Some(n) = self.nodes.get(dir) {
            return Ok(n.dir.clone());
        }
        let base = self.root.clone().unwrap_or_else(|| PathBuf::from("/"));
        let rel = dir.strip_prefix(&base).map_err(|_| {
            FailedFile::new(
                path,
                ErrorCode::Internal,
                format!("{} is not under {}", dir.display(), base.display()),
            )
        })?;
        let comps = components(&Path::new("/").join(rel)).map_err(|d| d.failed(path))?;
        // The deepest directory already known.
        let (mut at, mut cur, mut i) = (base.clone(), None, 0);
        for n in (0..=comps.len()).rev() {
            let p: PathBuf = std::iter::once(base.as_os_str())
                .chain(comps[..n].iter().map(OsString::as_os_str))
                .collect();
            if let Some(node) = self.nodes.get(&p) {
                (at, cur, i) = (p, Some(node.dir.clone()), n);
                break;
            }
        }
        let mut cur = cur.ok_or_else(|| {
            FailedFile::new(path, ErrorCode::Internal, "no handle on the restore's base")
        })?;
        let root = self.root.clone();
        let links = match &root {
            Some(r) => Links::Refuse(r),
            None => Links::Follow,
        };
        let mut count = 0;
        while i < comps.len() {
            let name = &comps[i];
            match self.fs.step(&cur, name, links, &mut count) {
                Ok(Some(next)) => {
                    at.push(name);
                    self.nodes.insert(
                        at.clone(),
                        Node {
                            dir: next.clone(),
                            created: false,
                        },
                    );
                    cur = next;
                    i += 1;
                }
                Ok(None) => break,
                Err(d) => return Err(d.failed(path)),
            }
        }
        if i < comps.len() {
            // Something to create: the user must be able to write where it starts.
            self.may_write(path, &at)?;
        }
        let ids = self.owner.ids(rec_ids.0, rec_ids.1);
        for name in &comps[i..] {
            at.push(name);
            let node =
                create_dir(&mut self.fs, &cur, name, &at, ids).map_err(|d| d.failed(path))?;
            cur = node.dir.clone();
            self.nodes.insert(at.clone(), node);
        }
        Ok(cur)
    }

    /// May the user write into `dir`, or (if this restore created it) into the directory that
    /// was there before above it?
    fn may_write(&mut self, path: &str, dir: &Path) -> Result<(), FailedFile> {
        let mut p = dir;
        let node = loop {
            match self.nodes.get(p) {
                Some(n) if !n.created => break n.dir.clone(),
                _ => match p.parent() {
                    Some(up) => p = up,
                    None => return Ok(()),
                },
            }
        };
        let key = p.to_path_buf();
        if !self.writable.contains_key(&key) {
            let r = self.fs.check(&node, WRITE | SEARCH);
            self.writable.insert(key.clone(), r);
        }
        match &self.writable[&key] {
            Ok(()) => Ok(()),
            Err(d) => Err(d.failed(path)),
        }
    }

    /// The directory `to` will be created in (made if missing) and its name there, once the
    /// user's right to create it there is checked (write on the directory that was there
    /// before; the sticky-directory rule if something is already at `to`).
    pub fn parent(
        &mut self,
        path: &str,
        to: &Path,
        rec_ids: (u32, u32),
    ) -> Result<(Dir, OsString), FailedFile> {
        let (Some(parent), Some(name)) = (to.parent(), to.file_name()) else {
            return Err(FailedFile::new(
                path,
                ErrorCode::BadRequest,
                format!("{} has no parent directory", to.display()),
            ));
        };
        if !is_plain_name(name) {
            return Err(FailedFile::new(
                path,
                ErrorCode::BadRequest,
                format!("{} is not a plain file name", to.display()),
            ));
        }
        let dir = self.ensure(path, parent, rec_ids)?;
        self.may_write(path, parent)?;
        if self.nodes.get(parent).is_some_and(|n| !n.created) && self.fs.enabled() {
            // The sticky-directory rule, on what is there now (a failed lstat is a failure).
            match statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => {}
                Err(e) => return Err(io_failed(path, "cannot look at", to, &e.into())),
                Ok(old) => self
                    .fs
                    .checker()
                    .may_replace(to, dir.path(), dir.meta().inode(), Meta::of(&old).uid)
                    .map_err(|r| crate::posix::Checker::fail(path, r))?,
            }
        }
        Ok((dir, name.to_os_string()))
    }

    /// A directory entry of the restore: made (with its parents) if missing; true if it was
    /// already there.
    pub fn make_directory(
        &mut self,
        path: &str,
        to: &Path,
        rec_ids: (u32, u32),
    ) -> Result<bool, FailedFile> {
        let (dir, name) = self.parent(path, to, rec_ids)?;
        if let Some(n) = self.nodes.get(to) {
            return Ok(!n.created);
        }
        let shown = to.display();
        match statat(dir.fd(), &name, AtFlags::SYMLINK_NOFOLLOW).map(|s| Meta::of(&s)) {
            Err(Errno::NOENT) => {
                let ids = self.owner.ids(rec_ids.0, rec_ids.1);
                let node =
                    create_dir(&mut self.fs, &dir, &name, to, ids).map_err(|d| d.failed(path))?;
                let existed = !node.created;
                self.nodes.insert(to.to_path_buf(), node);
                Ok(existed)
            }
            Err(e) => Err(io_failed(path, "cannot look at", to, &e.into())),
            Ok(m) if m.is_dir() => match self.fs.lookup(&dir, &name) {
                Ok(super::resolve::Found::Dir(d)) => {
                    self.nodes.insert(
                        to.to_path_buf(),
                        Node {
                            dir: d,
                            created: false,
                        },
                    );
                    Ok(true)
                }
                Ok(_) => Err(FailedFile::new(
                    path,
                    ErrorCode::Conflict,
                    format!("{shown} changed while it was being restored"),
                )),
                Err(d) => Err(d.failed(path)),
            },
            Ok(m) if m.is_symlink() && self.root.is_some() => Err(FailedFile::new(
                path,
                ErrorCode::Forbidden,
                format!(
                    "{path}: {shown} is a symbolic link; no link is followed below the target \
                     directory {}",
                    self.root.as_deref().unwrap_or(Path::new("/")).display()
                ),
            )),
            Ok(_) => Err(FailedFile::new(
                path,
                ErrorCode::Conflict,
                format!("{shown} exists and is not a directory"),
            )),
        }
    }

    /// The handle of the directory entry `to` (made by [`Restorer::make_directory`]) and whether
    /// it was there before.
    /// A directory of this restore, of this batch or of another that restores entries in it
    /// too (`Payload::Files::context`): made if missing, as [`Restorer::make_directory`] makes
    /// it. One that was there already and belongs to whom this get restores for (who could
    /// change its mode) takes this batch's entries whatever its mode says: another batch of the
    /// same get may have given it its recorded mode already, read-only say. Its owner is given
    /// write and search on it until [`finish_dir`] gives it its recorded mode again; someone
    /// else's directory keeps the usual rules. Returns whether it was there.
    pub fn adopt_directory(
        &mut self,
        path: &str,
        to: &Path,
        rec_ids: (u32, u32),
    ) -> Result<bool, FailedFile> {
        let existed = self.make_directory(path, to, rec_ids)?;
        if !existed {
            return Ok(false);
        }
        let Some(node) = self.nodes.get(to) else {
            return Ok(true);
        };
        let owner = match self.owner.ids(rec_ids.0, rec_ids.1) {
            Some((uid, _)) => uid,
            None => rustix::process::geteuid().as_raw(),
        };
        let fd = openat(
            node.dir.fd(),
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_failed(path, "cannot open", to, &e.into()))?;
        let m = fstat(&fd).map_err(|e| io_failed(path, "cannot look at", to, &e))?;
        if m.uid != owner || !m.same(node.dir.meta()) {
            return Ok(true); // someone else's: the usual rules
        }
        if m.mode & 0o300 != 0o300 {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode((m.mode & 0o7777) | 0o300))
                .map_err(|e| io_failed(path, "cannot make writable", to, &e.into()))?;
        }
        self.writable.insert(to.to_path_buf(), Ok(()));
        Ok(true)
    }

    pub fn directory(&self, to: &Path) -> Option<(Dir, bool)> {
        self.nodes.get(to).map(|n| (n.dir.clone(), !n.created))
    }
}

/// The failure of the target directory `t`.
fn target_error(t: &str, d: Denial) -> (ErrorCode, String) {
    if d.missing {
        (
            ErrorCode::PathMissing,
            format!("the target directory {t} does not exist"),
        )
    } else if d.code == ErrorCode::BadRequest && d.reason.ends_with("not a directory") {
        (
            ErrorCode::BadRequest,
            format!("the target {t} is not a directory"),
        )
    } else {
        (d.code, format!("the target directory {t}: {}", d.reason))
    }
}

fn io_failed(path: &str, what: &str, at: &Path, e: &io::Error) -> FailedFile {
    let d = Denial::io("", at, e);
    FailedFile::new(path, d.code, format!("{what} {}: {e}", at.display()))
}

/// The mode directories made on the way get (as `mkdir` with the process's umask would).
fn default_dir_mode() -> u32 {
    static MODE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| {
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o022);
        0o777 & !umask
    })
}

/// Creates the directory `name` in `parent` (`shown`: its path) and gives it to `ids`.
fn create_dir(
    fs: &mut UserFs,
    parent: &Dir,
    name: &OsStr,
    shown: &Path,
    ids: Option<(u32, u32)>,
) -> Result<Node, Denial> {
    match rustix::fs::mkdirat(parent.fd(), name, Mode::from_raw_mode(0o700)) {
        Ok(()) => {}
        Err(Errno::EXIST) => {
            // Appeared meanwhile: an existing directory (never followed if a link).
            return match fs.lookup(parent, name)? {
                super::resolve::Found::Dir(dir) => Ok(Node {
                    dir,
                    created: false,
                }),
                _ => Err(Denial::new(
                    ErrorCode::Conflict,
                    format!("{} exists and is not a directory", shown.display()),
                )),
            };
        }
        Err(e) => return Err(Denial::io("create directory", shown, &e.into())),
    }
    nlds_hooks::pause(points::GET_DIR_CREATED, shown);
    let fd = openat(
        parent.fd(),
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Denial::io("open the new directory", shown, &e.into()))?;
    let meta = fstat(&fd).map_err(|e| Denial::io("stat", shown, &e))?;
    let euid = rustix::process::geteuid().as_raw();
    if euid == 0 && meta.uid != 0 {
        return Err(Denial::new(
            ErrorCode::Conflict,
            format!(
                "{} was replaced right after this restore created it",
                shown.display()
            ),
        ));
    }
    if let Some((uid, gid)) = ids {
        give(&fd, shown, uid, gid)?;
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(default_dir_mode()))
        .map_err(|e| Denial::io("set the mode of", shown, &e.into()))?;
    let meta = fstat(&fd).map_err(|e| Denial::io("stat", shown, &e))?;
    Ok(Node {
        dir: Dir::new(fd, shown.to_path_buf(), meta),
        created: true,
    })
}

/// `fchown` of a descriptor, with the hint of a service that cannot.
fn give(fd: &OwnedFd, at: &Path, uid: u32, gid: u32) -> Result<(), Denial> {
    rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(|e| ownership_failed(at, uid, gid, &e.into()))
}

/// Giving `at` away failed.
pub fn ownership_failed(at: &Path, uid: u32, gid: u32, e: &io::Error) -> Denial {
    let hint = if e.kind() == io::ErrorKind::PermissionDenied {
        " (the transfer-get workers must run as root to restore files for other users, or set \
         [workers] posix_checks = \"service\")"
    } else {
        ""
    };
    Denial::new(
        ErrorCode::PermissionDenied,
        format!(
            "cannot give {} to uid {uid} gid {gid}: {e}{hint}",
            at.display()
        ),
    )
}

/// What is at a file's destination before the download.
pub enum Existing {
    /// Nothing (or something `--overwrite` replaces): download.
    Download,
    /// The same content is already there: nothing to do.
    Identical,
}

/// Decides what to do about what is at `name` in `dir` (`to`: its path): nothing there,
/// identical content (checked on a descriptor opened `O_NOFOLLOW`), or a conflict.
pub fn existing(
    path: &str,
    dir: &Dir,
    name: &OsStr,
    to: &Path,
    size: u64,
    expected: &str,
    overwrite: bool,
) -> Result<Existing, FailedFile> {
    let shown = to.display();
    let m = match statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => return Ok(Existing::Download),
        Err(e) => return Err(io_failed(path, "cannot look at", to, &e.into())),
        Ok(st) => Meta::of(&st),
    };
    if m.is_dir() {
        return Err(FailedFile::new(
            path,
            ErrorCode::Conflict,
            format!("{shown} exists and is a directory"),
        ));
    }
    if m.is_file() && m.size == size && hash_at(dir, name, size).is_some_and(|h| h == expected) {
        return Ok(Existing::Identical);
    }
    if overwrite {
        Ok(Existing::Download)
    } else {
        Err(FailedFile::new(
            path,
            ErrorCode::Conflict,
            format!("{shown} exists and differs; use --overwrite"),
        ))
    }
}

/// The blake3 of the regular file `name` of `dir` of `size` bytes.
fn hash_at(dir: &Dir, name: &OsStr, size: u64) -> Option<String> {
    let fd = openat(
        dir.fd(),
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let m = fstat(&fd).ok()?;
    if !m.is_file() || m.size != size {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(File::from(fd)).ok()?;
    Some(hasher.finalize().to_hex().to_string())
}

/// The directories a batch moved restored files into, each to be fsynced once when the batch has
/// moved them all, instead of once per file: a file's own data is fsynced before it is moved,
/// and its name is on disk once its directory is. (Restoring 10,000 small files into 100
/// directories fsynced a directory 10,000 times, each a journal commit on ext4.)
#[derive(Debug, Default)]
pub struct DirSyncs(std::sync::Mutex<HashMap<(u64, u64), Dir>>);

impl DirSyncs {
    /// Adds `dir` (once, by its device and inode).
    pub fn add(&self, dir: &Dir) {
        let meta = dir.meta();
        self.lock()
            .entry((meta.dev, meta.ino))
            .or_insert_with(|| dir.clone());
    }

    /// fsyncs every directory added since the last call (best effort, like [`sync_dir`]), and
    /// forgets them; returns how many.
    pub fn sync(&self) -> usize {
        let dirs: Vec<Dir> = self.lock().drain().map(|(_, d)| d).collect();
        for d in &dirs {
            sync_dir(d);
        }
        dirs.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u64), Dir>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// fsyncs a directory through its handle (best effort), so a rename in it survives a crash.
pub fn sync_dir(dir: &Dir) {
    if let Ok(fd) = openat(
        dir.fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        let _ = rustix::fs::fsync(&fd);
    }
}

/// Sets a restored directory's owner, mode and time, on a descriptor opened from its own
/// handle (so on the inode restored, whatever its name points to now). A directory that was
/// already there and belongs to someone else than the one this get restores for is left as it
/// is (unless the recorded owners are kept).
pub fn finish_dir(
    dir: &Dir,
    ids: Option<(u32, u32)>,
    keep_recorded: bool,
    existed: bool,
    mode: u32,
    mtime: std::time::SystemTime,
    (path, xattrs): (&str, &[Xattr]),
) -> Result<Vec<String>, Denial> {
    let shown = dir.path();
    nlds_hooks::pause(points::GET_BEFORE_DIR_FINISH, shown);
    let fd = openat(
        dir.fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Denial::io("open", shown, &e.into()))?;
    let m = fstat(&fd).map_err(|e| Denial::io("stat", shown, &e))?;
    if !m.same(dir.meta()) {
        return Err(Denial::new(
            ErrorCode::Conflict,
            format!("{} changed while it was being restored", shown.display()),
        ));
    }
    if let Some((uid, gid)) = ids {
        if existed && !keep_recorded && m.uid != uid {
            return Ok(Vec::new());
        }
        give(&fd, shown, uid, gid)?;
    }
    let warnings = super::xattr::apply(&fd, path, xattrs);
    let file = File::from(fd);
    file.set_times(FileTimes::new().set_modified(mtime))
        .and_then(|()| Ok(rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?))
        .map_err(|e| Denial::io("set the mode and time of", shown, &e))?;
    Ok(warnings)
}
