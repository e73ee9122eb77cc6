//! The file a restore writes before it is moved into place, through its directory's handle.
//!
//! Where it can, a restore that must not replace anything writes an **unnamed** file:
//! `openat(dir, ".", O_TMPFILE)` makes an inode in the directory's file system with no name, and
//! `linkat` gives it its final name once it is written, owned, dated and fsynced, failing if the
//! name exists by then (what a restore without `overwrite` wants). Until then nothing is in the
//! user's directory: a process killed at any point leaves nothing behind (the kernel frees an
//! inode without a name when its last descriptor closes), so nothing needs to be journalled or
//! swept, and the directory is modified once per file instead of three times (create, link,
//! unlink). It is linked through `/proc/self/fd/N` with `AT_SYMLINK_FOLLOW` (open(2)'s way, which
//! needs no capability; the magic link names this process's own descriptor, which no user can
//! swap). A file system without `O_TMPFILE` (or a machine without `/proc`), and a restore that may
//! replace a file, use a **named** temporary, `.<name>.nlds-<random>.<suffix>`, created
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, recorded in the batch's journal ([`super::journal`]) and renamed
//! over (or linked to) the destination.

use std::ffi::{OsStr, OsString};
use std::fs::{File, FileTimes};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nlds_core::message::Xattr;
use rustix::fs::{AtFlags, CWD, Gid, Mode, OFlags, Uid, openat, statat};
use rustix::io::Errno;

use super::restore::{DirSyncs, ownership_failed};
use super::{Denial, Dir, fstat};
use nlds_hooks::points;

/// `.<name>.nlds-<random>.<suffix>`, within NAME_MAX whatever the name.
pub fn temp_name(name: &OsStr, suffix: &str) -> OsString {
    let name = name.to_string_lossy();
    let mut end = name.len().min(200);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let random = uuid::Uuid::new_v4().simple().to_string();
    OsString::from(format!(".{}.nlds-{}.{suffix}", &name[..end], &random[..12]))
}

/// What the file is called until it is moved into place.
enum Name {
    /// None (`O_TMPFILE`): this descriptor keeps it alive until it is linked.
    Unnamed(OwnedFd),
    /// A temporary name in the directory, removed unless the file was moved into place.
    Temporary(OsString),
}

/// A file being written for a destination in a directory handle (see the module's docs).
pub struct TempFile {
    dir: Dir,
    name: Name,
    /// Its path, for messages and pause points: the temporary's, or the destination's when the
    /// file has no name yet.
    shown: PathBuf,
    armed: bool,
}

/// Whether this process can link a descriptor by its `/proc/self/fd` magic link.
fn proc_fd_links() -> bool {
    static PROC: OnceLock<bool> = OnceLock::new();
    *PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

impl TempFile {
    /// Creates a temporary file for `to` (named `name` in `dir`), mode 0600, under a name.
    pub fn create(dir: &Dir, name: &OsStr, to: &Path, suffix: &str) -> io::Result<(Self, File)> {
        Self::create_recorded(dir, name, to, suffix, None)
    }

    /// The file for `to` (named `name` in `dir`) of a restore that may not replace anything
    /// there: unnamed where the file system allows it, else as [`TempFile::create_recorded`].
    pub fn create_unnamed(
        dir: &Dir,
        name: &OsStr,
        to: &Path,
        suffix: &str,
        journal: Option<&super::journal::Journal>,
    ) -> io::Result<(Self, File)> {
        if proc_fd_links() {
            match openat(
                dir.fd(),
                ".",
                OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => {
                    let keep = fd.try_clone()?;
                    let temp = Self {
                        dir: dir.clone(),
                        name: Name::Unnamed(keep),
                        shown: to.to_path_buf(),
                        armed: true,
                    };
                    return Ok((temp, File::from(fd)));
                }
                // No O_TMPFILE in this file system (or kernel): a named temporary.
                Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Self::create_recorded(dir, name, to, suffix, journal)
    }

    /// [`TempFile::create`], its name recorded in `journal` before it is created and its inode
    /// just after (so a restart removes it if this process dies: [`super::journal`]).
    pub fn create_recorded(
        dir: &Dir,
        name: &OsStr,
        to: &Path,
        suffix: &str,
        journal: Option<&super::journal::Journal>,
    ) -> io::Result<(Self, File)> {
        let temp = temp_name(name, suffix);
        if let Some(j) = journal {
            j.intent(dir, &temp)?;
        }
        let fd = openat(
            dir.fd(),
            &temp,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        if let Some(j) = journal {
            let recorded = fstat(&fd).and_then(|m| j.created(dir, &temp, &m));
            if let Err(e) = recorded {
                let _ = rustix::fs::unlinkat(dir.fd(), &temp, AtFlags::empty());
                return Err(e);
            }
        }
        let shown = to.with_file_name(&temp);
        Ok((
            Self {
                dir: dir.clone(),
                name: Name::Temporary(temp),
                shown,
                armed: true,
            },
            File::from(fd),
        ))
    }

    /// Its path (for messages): the temporary's, or the destination's for an unnamed file.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// Whether it has no name until it is moved into place.
    pub fn is_unnamed(&self) -> bool {
        matches!(self.name, Name::Unnamed(_))
    }

    /// Gives the written file to `ids`, sets its extended attributes (`path`: the file's
    /// path, named in the warnings of those that cannot be set), modification time and mode
    /// and fsyncs it, all on its descriptor. The warnings are returned.
    pub fn finish(
        &self,
        file: &File,
        ids: Option<(u32, u32)>,
        mode: u32,
        mtime: std::time::SystemTime,
        (path, xattrs): (&str, &[Xattr]),
    ) -> Result<Vec<String>, Denial> {
        nlds_hooks::pause(points::GET_BEFORE_OWNER, &self.shown);
        if let Some((uid, gid)) = ids {
            // Before the mode: a change of owner clears setuid/setgid bits.
            rustix::fs::fchown(file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|e| ownership_failed(&self.shown, uid, gid, &e.into()))?;
        }
        // Before the mode: an ACL sets the group bits, the mode then sets its mask.
        let warnings = super::xattr::apply(file, path, xattrs);
        file.set_times(FileTimes::new().set_modified(mtime))
            .and_then(|()| Ok(rustix::fs::fchmod(file, Mode::from_raw_mode(mode))?))
            .and_then(|()| file.sync_all())
            .map_err(|e| Denial::io("finish", &self.shown, &e))?;
        Ok(warnings)
    }

    /// Moves the file to `name` of its directory and fsyncs the directory. Without `overwrite`,
    /// never replaces something that appeared there meanwhile (a hard link fails if the name
    /// exists); falls back to a rename where the file system has no hard links.
    pub fn persist(&mut self, name: &OsStr, to: &Path, overwrite: bool) -> io::Result<()> {
        let syncs = DirSyncs::default();
        self.persist_deferred(name, to, overwrite, &syncs)?;
        syncs.sync();
        Ok(())
    }

    /// As [`TempFile::persist`], but the directory is only added to `syncs`, for the caller to
    /// fsync once for all the files it moves into it ([`DirSyncs::sync`]) before it reports
    /// them restored. An unnamed file never replaces anything (it is made only for restores
    /// without `overwrite`).
    pub fn persist_deferred(
        &mut self,
        name: &OsStr,
        to: &Path,
        overwrite: bool,
        syncs: &DirSyncs,
    ) -> io::Result<()> {
        nlds_hooks::pause(points::GET_BEFORE_RENAME, to);
        let fd = self.dir.fd();
        let temp = match &self.name {
            Name::Unnamed(own) => {
                if overwrite {
                    return Err(io::Error::other(
                        "an unnamed temporary file cannot replace a file",
                    ));
                }
                let link = format!("/proc/self/fd/{}", own.as_raw_fd());
                return match rustix::fs::linkat(
                    CWD,
                    link.as_str(),
                    fd,
                    name,
                    AtFlags::SYMLINK_FOLLOW,
                ) {
                    Ok(()) => {
                        self.armed = false;
                        syncs.add(&self.dir);
                        Ok(())
                    }
                    Err(Errno::EXIST) => Err(io::ErrorKind::AlreadyExists.into()),
                    Err(e) => Err(e.into()),
                };
            }
            Name::Temporary(temp) => temp,
        };
        if !overwrite {
            match rustix::fs::linkat(fd, temp, fd, name, AtFlags::empty()) {
                Ok(()) => {
                    self.armed = false;
                    let _ = rustix::fs::unlinkat(fd, temp, AtFlags::empty());
                    syncs.add(&self.dir);
                    return Ok(());
                }
                Err(Errno::EXIST) => return Err(io::ErrorKind::AlreadyExists.into()),
                Err(_) if statat(fd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok() => {
                    return Err(io::ErrorKind::AlreadyExists.into());
                }
                Err(_) => {}
            }
        }
        rustix::fs::renameat(fd, temp, fd, name)?;
        self.armed = false;
        syncs.add(&self.dir);
        Ok(())
    }

    /// Removes the temporary file after a failure (blocking: a pause point). An unnamed one
    /// goes with its last descriptor.
    pub fn discard(mut self) {
        if self.armed {
            nlds_hooks::pause(points::GET_BEFORE_UNLINK, &self.shown);
            if let Name::Temporary(temp) = &self.name {
                let _ = rustix::fs::unlinkat(self.dir.fd(), temp, AtFlags::empty());
            }
            self.armed = false;
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed
            && let Name::Temporary(temp) = &self.name
        {
            let _ = rustix::fs::unlinkat(self.dir.fd(), temp, AtFlags::empty());
        }
    }
}

#[cfg(test)]
mod unit {
    #[test]
    fn temporary_names_are_hidden_and_bounded() {
        let long = "é".repeat(127); // 254 bytes
        let temp = super::temp_name(std::ffi::OsStr::new(&long), "part");
        let name = temp.to_str().unwrap();
        assert!(name.starts_with(".é"), "{name}");
        assert!(name.ends_with(".part"), "{name}");
        assert!(name.contains(".nlds-"), "{name}");
        assert!(name.len() <= 255, "{}", name.len());
    }
}
