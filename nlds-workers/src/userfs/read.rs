//! The put side: entries looked at, directories listed and files opened through the handle of
//! their parent, each checked on the `fstat` of what was actually opened.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nlds_core::ErrorCode;
use rustix::fs::{AtFlags, Mode, OFlags, openat, statat};

use super::{Denial, Dir, Meta, UserFs, fstat};
use crate::posix::{READ, SEARCH};

/// `lstat` of `name` in `dir` (search on `dir` checked first). The error is the raw one, for
/// the caller's own wording.
pub fn lstat_at(fs: &mut UserFs, dir: &Dir, name: &OsStr) -> Result<Meta, LstatError> {
    fs.check(dir, SEARCH).map_err(LstatError::Denied)?;
    statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| Meta::of(&st))
        .map_err(|e| LstatError::Io(e.into()))
}

/// Why [`lstat_at`] failed.
#[derive(Debug)]
pub enum LstatError {
    Denied(Denial),
    Io(std::io::Error),
}

/// Opens the directory `name` of `dir` for listing (`O_RDONLY|O_DIRECTORY|O_NOFOLLOW`),
/// checks that it is the inode `seen` (its `lstat`) and that the user may list it (read and
/// search, on its `fstat`).
pub fn open_listing(fs: &mut UserFs, dir: &Dir, name: &OsStr, seen: &Meta) -> Result<Dir, Denial> {
    let at = dir.path().join(name);
    let fd = openat(
        dir.fd(),
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Denial::io("open directory", &at, &e.into()))?;
    let meta = fstat(&fd).map_err(|e| Denial::io("stat", &at, &e))?;
    if !meta.same(seen) {
        return Err(Denial::new(
            ErrorCode::Conflict,
            format!("{} was replaced while it was being indexed", at.display()),
        ));
    }
    let d = Dir::new(fd, at, meta);
    fs.check(&d, READ | SEARCH)?;
    Ok(d)
}

/// The names in the directory `dir` (opened by [`open_listing`]), sorted, without `.` and `..`.
pub fn list(dir: &Dir) -> Result<Vec<OsString>, Denial> {
    let mut names = entries(dir)?.collect::<Result<Vec<_>, _>>()?;
    names.sort_unstable();
    Ok(names)
}

/// The names in the directory `dir` (opened by [`open_listing`]) one at a time, in the order the
/// file system gives them, without `.` and `..`: a directory of any size is read in constant
/// memory. A read error ends the listing with that error.
pub fn entries(dir: &Dir) -> Result<impl Iterator<Item = Result<OsString, Denial>> + '_, Denial> {
    let io = |e: rustix::io::Errno| Denial::io("read directory", dir.path(), &e.into());
    let mut d = rustix::fs::Dir::read_from(dir.fd()).map_err(io)?;
    let mut failed = false;
    Ok(std::iter::from_fn(move || {
        if failed {
            return None;
        }
        loop {
            match d.read()? {
                Err(e) => {
                    failed = true;
                    return Some(Err(io(e)));
                }
                Ok(entry) => {
                    let name = entry.file_name().to_bytes();
                    if name != b"." && name != b".." {
                        return Some(Ok(OsStr::from_bytes(name).to_os_string()));
                    }
                }
            }
        }
    }))
}

/// The target of the symbolic link `name` of `dir`.
pub fn read_link_at(dir: &Dir, name: &OsStr) -> std::io::Result<OsString> {
    let t = rustix::fs::readlinkat(dir.fd(), name, Vec::new())?;
    Ok(OsStr::from_bytes(t.as_bytes()).to_os_string())
}

/// A regular file opened for reading through its parent's handle, and its `fstat`.
pub struct Opened {
    pub file: File,
    pub meta: Meta,
}

/// Opens `name` of `dir` for reading on behalf of the user: `openat(O_RDONLY|O_NOFOLLOW|
/// O_NONBLOCK|O_NOCTTY)`, then on the `fstat` of that descriptor: a regular file (never a FIFO,
/// device or socket), readable by the user. `shown` is the path named in failures.
pub fn open_file(
    fs: &mut UserFs,
    dir: &Dir,
    name: &OsStr,
    shown: &Path,
) -> Result<Opened, OpenError> {
    fs.check(dir, SEARCH).map_err(OpenError::Denied)?;
    // Not even opened if it is not a regular file now (opening a device can have effects); the
    // fstat below decides, this only avoids opening what is plainly not a file.
    let before = statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| Meta::of(&st))
        .map_err(|e| OpenError::Io(e.into()))?;
    if !before.is_file() {
        return Err(OpenError::NotAFile(before));
    }
    let fd = openat(
        dir.fd(),
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // O_NOFOLLOW on a link: it was swapped in since the statat.
        rustix::io::Errno::LOOP => OpenError::NotAFile(Meta {
            mode: rustix::fs::FileType::Symlink.as_raw_mode(),
            ..before
        }),
        e => OpenError::Io(e.into()),
    })?;
    let meta = fstat(&fd).map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotAFile(meta));
    }
    fs.checker()
        .check(shown, meta.inode(), READ)
        .map_err(|r| OpenError::Denied(Denial::permission(r)))?;
    Ok(Opened {
        file: File::from(fd),
        meta,
    })
}

/// Why [`open_file`] failed.
#[derive(Debug)]
pub enum OpenError {
    Denied(Denial),
    /// It is not a regular file (any more): what it is.
    NotAFile(Meta),
    Io(std::io::Error),
}
