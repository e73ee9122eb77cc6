//! Restoring links: symbolic links and hard links made with `*at` calls relative to directory
//! handles, replacing what is in their place only with `overwrite` (under a journalled
//! temporary name renamed over it), and given away through a handle on the link itself.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nlds_core::{ErrorCode, FailedFile};
use nlds_hooks::points;
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid, openat, statat};
use rustix::io::Errno;

use super::{io_failed, ownership_failed, sync_dir};
use crate::userfs::temp_file::temp_name;
use crate::userfs::{Denial, Dir, Meta, fstat};

/// How a link is restored over something else already at its place: only with `overwrite`, and
/// then under a temporary name renamed over it, the name recorded in `journal` (if any) before
/// it is created and its inode just after, so a restart removes it if this process dies there.
#[derive(Clone, Copy, Default)]
pub struct Replace<'a> {
    pub overwrite: bool,
    pub journal: Option<&'a crate::userfs::journal::Journal>,
}

impl Replace<'_> {
    fn intent(&self, path: &str, dir: &Dir, temp: &OsStr, shown: &Path) -> Result<(), FailedFile> {
        match self.journal {
            Some(j) => j
                .intent(dir, temp)
                .map_err(|e| io_failed(path, "cannot journal the temporary", shown, &e)),
            None => Ok(()),
        }
    }

    /// Records the inode of `temp`, just created; on failure removes it.
    fn created(&self, path: &str, dir: &Dir, temp: &OsStr, shown: &Path) -> Result<(), FailedFile> {
        let Some(j) = self.journal else {
            return Ok(());
        };
        let recorded = statat(dir.fd(), temp, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io::Error::from)
            .and_then(|st| j.created(dir, temp, &Meta::of(&st)));
        recorded.map_err(|e| {
            let _ = rustix::fs::unlinkat(dir.fd(), temp, AtFlags::empty());
            io_failed(path, "cannot journal the temporary", shown, &e)
        })
    }
}

/// Restores the symbolic link `name` of `dir` (`to`: its path) pointing to `target`, given to
/// `ids`. An identical link is left alone; anything else is a conflict unless
/// `replace.overwrite`.
pub fn make_link(
    path: &str,
    dir: &Dir,
    name: &OsStr,
    to: &Path,
    target: &OsStr,
    ids: Option<(u32, u32)>,
    replace: Replace<'_>,
) -> Result<(), FailedFile> {
    let shown = to.display();
    let overwrite = replace.overwrite;
    let create = |at: &OsStr, at_shown: &Path| -> Result<(), FailedFile> {
        nlds_hooks::pause(points::GET_BEFORE_LINK, at_shown);
        let temporary = at != name;
        if temporary {
            replace.intent(path, dir, at, at_shown)?;
        }
        rustix::fs::symlinkat(target, dir.fd(), at)
            .map_err(|e| io_failed(path, "cannot create the symbolic link", at_shown, &e.into()))?;
        if temporary {
            replace.created(path, dir, at, at_shown)?;
        }
        if let Some((uid, gid)) = ids {
            give_link(dir, at, at_shown, uid, gid).map_err(|d| {
                if at != name {
                    nlds_hooks::pause(points::GET_BEFORE_UNLINK, at_shown);
                }
                let _ = rustix::fs::unlinkat(dir.fd(), at, AtFlags::empty());
                FailedFile::new(path, d.code, d.reason)
            })?;
        }
        Ok(())
    };
    match statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW).map(|s| Meta::of(&s)) {
        Err(Errno::NOENT) => create(name, to),
        Err(e) => Err(io_failed(path, "cannot look at", to, &e.into())),
        Ok(m)
            if m.is_symlink()
                && crate::userfs::read::read_link_at(dir, name)
                    .is_ok_and(|t| t.as_bytes() == target.as_bytes()) =>
        {
            Ok(())
        }
        Ok(m) if m.is_dir() => Err(FailedFile::new(
            path,
            ErrorCode::Conflict,
            format!("{shown} exists and is a directory"),
        )),
        Ok(_) if !overwrite => Err(FailedFile::new(
            path,
            ErrorCode::Conflict,
            format!("{shown} exists and differs; use --overwrite"),
        )),
        Ok(_) => {
            let temp = temp_name(name, "link");
            let temp_shown = to.with_file_name(&temp);
            create(&temp, &temp_shown)?;
            if let Err(e) = rustix::fs::renameat(dir.fd(), &temp, dir.fd(), name) {
                nlds_hooks::pause(points::GET_BEFORE_UNLINK, &temp_shown);
                let _ = rustix::fs::unlinkat(dir.fd(), &temp, AtFlags::empty());
                return Err(io_failed(path, "cannot replace", to, &e.into()));
            }
            Ok(())
        }
    }
}

/// Restores `name` of `dir` (`to`: its path) as a hard link to the regular file `from` (a file
/// of `size` bytes this restore just made), with `linkat` between the two directory handles
/// (never following a link). What is there already: the same inode is fine; anything else is a
/// conflict unless `replace.overwrite` (then the link is made under a journalled temporary name
/// and renamed over it). Ok(false): `from` is not such a file any more.
pub fn hard_link(
    path: &str,
    from: (&Dir, &OsStr),
    at: (&Dir, &OsStr),
    to: &Path,
    size: u64,
    replace: Replace<'_>,
) -> Result<bool, FailedFile> {
    let overwrite = replace.overwrite;
    let ((fdir, fname), (dir, name)) = (from, at);
    let source = match statat(fdir.fd(), fname, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Meta::of(&st),
        Err(_) => return Ok(false),
    };
    if !source.is_file() || source.size != size {
        return Ok(false);
    }
    let shown = to.display();
    match statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW).map(|s| Meta::of(&s)) {
        Err(Errno::NOENT) => {}
        Err(e) => return Err(io_failed(path, "cannot look at", to, &e.into())),
        Ok(m) if m.same(&source) => return Ok(true),
        Ok(m) if m.is_dir() => {
            return Err(FailedFile::new(
                path,
                ErrorCode::Conflict,
                format!("{shown} exists and is a directory"),
            ));
        }
        Ok(_) if !overwrite => {
            return Err(FailedFile::new(
                path,
                ErrorCode::Conflict,
                format!("{shown} exists and differs; use --overwrite"),
            ));
        }
        Ok(_) => {
            let temp = temp_name(name, "link");
            let temp_shown = to.with_file_name(&temp);
            replace.intent(path, dir, &temp, &temp_shown)?;
            rustix::fs::linkat(fdir.fd(), fname, dir.fd(), &temp, AtFlags::empty())
                .map_err(|e| io_failed(path, "cannot create the hard link", to, &e.into()))?;
            replace.created(path, dir, &temp, &temp_shown)?;
            if let Err(e) = rustix::fs::renameat(dir.fd(), &temp, dir.fd(), name) {
                let _ = rustix::fs::unlinkat(dir.fd(), &temp, AtFlags::empty());
                return Err(io_failed(path, "cannot replace", to, &e.into()));
            }
            sync_dir(dir);
            return Ok(true);
        }
    }
    match rustix::fs::linkat(fdir.fd(), fname, dir.fd(), name, AtFlags::empty()) {
        Ok(()) => {
            sync_dir(dir);
            Ok(true)
        }
        Err(Errno::EXIST) => Err(FailedFile::new(
            path,
            ErrorCode::Conflict,
            format!("{shown} exists and differs; use --overwrite"),
        )),
        // No hard links on this file system (or across two): a copy instead.
        Err(Errno::XDEV) | Err(Errno::PERM) | Err(Errno::MLINK) => Ok(false),
        Err(e) => Err(io_failed(
            path,
            "cannot create the hard link",
            to,
            &e.into(),
        )),
    }
}

/// Gives the link `name` of `dir`, just created by this restore, to `uid`/`gid`: through an
/// `O_PATH|O_NOFOLLOW` handle on it, checked to be a link this process made.
fn give_link(dir: &Dir, name: &OsStr, shown: &Path, uid: u32, gid: u32) -> Result<(), Denial> {
    let fd = openat(
        dir.fd(),
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Denial::io("open the new link", shown, &e.into()))?;
    let m = fstat(&fd).map_err(|e| Denial::io("stat", shown, &e))?;
    let euid = rustix::process::geteuid().as_raw();
    if !m.is_symlink() || (euid == 0 && m.uid != 0) {
        return Err(Denial::new(
            ErrorCode::Conflict,
            format!(
                "{} was replaced right after it was created",
                shown.display()
            ),
        ));
    }
    rustix::fs::chownat(
        &fd,
        c"",
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| ownership_failed(shown, uid, gid, &e.into()))
}
