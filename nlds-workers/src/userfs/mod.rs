//! File-system work on behalf of a user, through directory handles, never by path.
//!
//! The workers run as root in distributed mode, so a path checked and later used by name is an
//! invitation: a user who swaps one of their own directories for a symbolic link between the
//! check and the use gets the service to read, write, chown or chmod whatever the link points
//! to. Here every operation acts on a file descriptor that was itself checked:
//!
//! * [`resolve`]: a path is resolved one component at a time from a handle on `/`, each
//!   directory opened with `openat(parent, name, O_PATH|O_DIRECTORY|O_NOFOLLOW)` and checked
//!   (search permission of the user, on the `fstat` of the handle actually opened). A symbolic
//!   link met on the way is read with `readlinkat` on its own handle and its target resolved with
//!   the same checks (at most 40 links; `fs.protected_symlinks` emulated), as the kernel would for
//!   the user. Below a get's target directory no link is followed at all.
//! * [`read`]: the put side (indexer and transfer-put) lists directories and opens files through
//!   their parent's handle (`openat(.., O_NOFOLLOW)`), and checks what was opened.
//! * [`restore`]: the get side creates directories with `mkdirat`, temporary files with
//!   `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, gives them away and sets their mode and times with
//!   `fchown`/`fchmod`/`futimens` on their own descriptors, and moves them into place with
//!   `linkat`/`renameat` relative to the directory handle.
//!
//! With `posix_checks = "service"` the same code runs with the user's checks off: the process's
//! own access decides. The permission rules and their messages stay in [`crate::posix`].

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nlds_core::{ErrorCode, FailedFile};
use rustix::fs::{FileType, Stat};

use crate::posix::Inode;

pub mod journal;
pub mod read;
pub mod resolve;
pub mod restore;
pub mod temp_file;
#[cfg(test)]
mod tests;
pub mod xattr;

pub use resolve::{Links, UserFs};

/// What `fstat` said about an inode, in the units the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// Hard links to it (`st_nlink`).
    pub nlink: u64,
    /// 512-byte blocks allocated (`st_blocks`).
    pub blocks: u64,
}

impl Meta {
    #[allow(
        clippy::unnecessary_cast,
        clippy::useless_conversion,
        reason = "stat field types differ between targets: a cast needed on one is redundant on another (so not #[expect])"
    )]
    pub fn of(st: &Stat) -> Self {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Self {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            mode: st.st_mode as u32,
            size: st.st_size.max(0) as u64,
            mtime_ns: ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime_ns: ns(st.st_ctime as i64, st.st_ctime_nsec as i64),
            nlink: st.st_nlink as u64,
            blocks: st.st_blocks.max(0) as u64,
        }
    }

    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }
    pub fn is_file(&self) -> bool {
        self.file_type() == FileType::RegularFile
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type() == FileType::Symlink
    }
    /// Owner, group and mode, for [`crate::posix::allowed`].
    pub fn inode(&self) -> Inode {
        Inode {
            uid: self.uid,
            gid: self.gid,
            mode: self.mode & 0o7777,
            is_dir: self.is_dir(),
        }
    }
    /// The same inode?
    pub fn same(&self, other: &Meta) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
    /// "a directory", "a FIFO", ... (for messages).
    pub fn kind_name(&self) -> &'static str {
        match self.file_type() {
            FileType::RegularFile => "a regular file",
            FileType::Directory => "a directory",
            FileType::Symlink => "a symbolic link",
            FileType::Fifo => "a FIFO",
            FileType::Socket => "a socket",
            FileType::CharacterDevice => "a character device",
            FileType::BlockDevice => "a block device",
            FileType::Unknown => "of an unknown type",
        }
    }
}

/// `fstat` of a descriptor.
pub fn fstat(fd: &OwnedFd) -> io::Result<Meta> {
    Ok(Meta::of(&rustix::fs::fstat(fd)?))
}

/// An open directory: its handle (`O_PATH`, or `O_RDONLY` for directories a restore created),
/// the path it was reached by (for messages) and its `fstat` when opened. Cloning shares the
/// descriptor.
#[derive(Debug, Clone)]
pub struct Dir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    meta: Meta,
}

impl Dir {
    fn new(fd: OwnedFd, path: PathBuf, meta: Meta) -> Self {
        Self {
            fd: Arc::new(fd),
            path,
            meta,
        }
    }
    /// The descriptor (for `*at` calls).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
    /// The path it was reached by.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Its `fstat` when opened.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }
}

/// Why a path could not be used, with the code of the failure it becomes. `reason` does not
/// name the path concerned ([`Denial::failed`] puts it in front).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub code: ErrorCode,
    pub reason: String,
    /// The failure was a missing component (`ENOENT`).
    pub missing: bool,
}

impl Denial {
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            missing: false,
        }
    }

    /// A refusal by the permission rules.
    pub fn permission(reason: String) -> Self {
        Self::new(ErrorCode::PermissionDenied, reason)
    }

    /// `cannot <what> <at>: <error>`, coded by the kind of error.
    pub fn io(what: &str, at: &Path, e: &io::Error) -> Self {
        let code = match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => ErrorCode::PathMissing,
            io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
            io::ErrorKind::AlreadyExists | io::ErrorKind::IsADirectory => ErrorCode::Conflict,
            _ => ErrorCode::StorageError,
        };
        Self {
            code,
            reason: format!("cannot {what} {}: {e}", at.display()),
            missing: e.kind() == io::ErrorKind::NotFound,
        }
    }

    /// The failure of `path`: `<path>: <reason>`.
    pub fn failed(&self, path: &str) -> FailedFile {
        FailedFile::new(path, self.code, format!("{path}: {}", self.reason))
    }
}

impl From<rustix::io::Errno> for Denial {
    fn from(e: rustix::io::Errno) -> Self {
        Self::new(ErrorCode::StorageError, io::Error::from(e).to_string())
    }
}

/// The components of an absolute, normalised path (no `..`), or why not.
pub fn components(path: &Path) -> Result<Vec<OsString>, Denial> {
    if !path.is_absolute() {
        return Err(Denial::new(
            ErrorCode::BadRequest,
            format!("{} is not absolute", path.display()),
        ));
    }
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                return Err(Denial::new(
                    ErrorCode::BadRequest,
                    format!("{} contains '..'", path.display()),
                ));
            }
            Component::Prefix(_) => {
                return Err(Denial::new(
                    ErrorCode::BadRequest,
                    format!("{} is not a POSIX path", path.display()),
                ));
            }
        }
    }
    Ok(out)
}

/// A name that can be used in an `*at` call: one component, not empty, not `.` or `..`.
pub fn is_plain_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/')
}

/// The descriptor limit of the process, raised once to its hard maximum: a restore keeps a
/// handle on every directory of its batch.
pub fn raise_fd_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut l = getrlimit(Resource::Nofile);
        if l.current < l.maximum {
            l.current = l.maximum;
            let _ = setrlimit(Resource::Nofile, l);
        }
    });
}
