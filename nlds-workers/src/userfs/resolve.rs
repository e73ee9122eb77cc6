//! Path resolution on behalf of a user, one component at a time, through handles.
//!
//! Every directory looked in is opened `O_PATH|O_DIRECTORY|O_NOFOLLOW` relative to the handle of
//! its parent, and the user's search permission is checked on the `fstat` of that handle (not
//! on a path, which could have changed meanwhile). A symbolic link met as a non-final component
//! is followed the way the kernel would for the user: its target (read with `readlinkat` on the
//! link's own `O_PATH` handle) is resolved with the same checks, absolute ones from `/`, relative
//! ones from the link's directory; at most [`MAX_LINKS`] links per resolution; a link in a sticky,
//! world-writable directory is followed only if the follower or the directory's owner owns it
//! (`fs.protected_symlinks`). With [`Links::Refuse`] no link is followed at all.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nlds_core::ErrorCode;
use rustix::fs::{Mode, OFlags, openat};
use rustix::io::Errno;

use super::{Denial, Dir, Meta, components, fstat};
use crate::posix::{Checker, PosixPolicy, SEARCH};

/// The most symbolic links one resolution follows (as the kernel's `MAXSYMLINKS`).
pub const MAX_LINKS: u32 = 40;

/// What to do with a symbolic link met as a directory on the way.
#[derive(Debug, Clone, Copy)]
pub enum Links<'a> {
    /// Follow it (checked as the kernel would for the user).
    Follow,
    /// Refuse it: nothing below this directory (the target of a get) is reached through a link.
    Refuse(&'a Path),
}

/// A component opened by [`UserFs::lookup`].
pub enum Found {
    Dir(Dir),
    /// A symbolic link: its `O_PATH` handle and `fstat`.
    Link(OwnedFd, Meta),
    Missing,
}

/// The file-system access of one message on behalf of its user.
pub struct UserFs {
    checker: Checker,
}

impl UserFs {
    pub fn new(policy: PosixPolicy, user: &str) -> Self {
        Self {
            checker: Checker::new(policy, user),
        }
    }

    /// The process's own access, no checks (the same code, checks off).
    pub fn service() -> Self {
        Self::new(PosixPolicy::SERVICE, "")
    }

    /// The permission rules and the user's account.
    pub fn checker(&mut self) -> &mut Checker {
        &mut self.checker
    }

    /// Whether checks are made for the user.
    pub fn enabled(&self) -> bool {
        self.checker.enabled()
    }

    /// Checks `want` for the user on `dir` (on its `fstat`).
    pub fn check(&mut self, dir: &Dir, want: u32) -> Result<(), Denial> {
        self.checker
            .check(&dir.path, dir.meta.inode(), want)
            .map_err(Denial::permission)
    }

    /// A handle on `/`.
    pub fn root(&mut self) -> Result<Dir, Denial> {
        let fd = openat(
            rustix::fs::CWD,
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Denial::io("open", Path::new("/"), &e.into()))?;
        let meta = fstat(&fd).map_err(|e| Denial::io("stat", Path::new("/"), &e))?;
        Ok(Dir::new(fd, PathBuf::from("/"), meta))
    }

    /// Resolves the absolute, normalised directory path `path` (its last component followed if
    /// it is a link too), checking search on every directory looked in and `want` on the last.
    pub fn open_dir(&mut self, path: &Path, want: u32) -> Result<Dir, Denial> {
        let comps = components(path)?;
        let root = self.root()?;
        let mut links = 0;
        let dir = self.walk(root, &comps, Links::Follow, &mut links)?;
        if want != 0 {
            self.check(&dir, want)?;
        }
        Ok(dir)
    }

    /// Looks `name` up in `dir` (search on `dir` checked first), without following anything.
    pub fn lookup(&mut self, dir: &Dir, name: &OsStr) -> Result<Found, Denial> {
        self.check(dir, SEARCH)?;
        let at = dir.path.join(name);
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match openat(&*dir.fd, name, flags, Mode::empty()) {
            Ok(fd) => {
                let meta = fstat(&fd).map_err(|e| Denial::io("stat", &at, &e))?;
                if !meta.is_dir() {
                    return Err(not_a_directory(&at, &meta));
                }
                Ok(Found::Dir(Dir::new(fd, at, meta)))
            }
            Err(Errno::NOENT) => Ok(Found::Missing),
            Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
                // A link, or not a directory at all: look at the entry itself.
                let fd = openat(
                    &*dir.fd,
                    name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| Denial::io("look up", &at, &e.into()))?;
                let meta = fstat(&fd).map_err(|e| Denial::io("stat", &at, &e))?;
                if meta.is_symlink() {
                    Ok(Found::Link(fd, meta))
                } else {
                    Err(not_a_directory(&at, &meta))
                }
            }
            Err(e) => Err(Denial::io("look up", &at, &e.into())),
        }
    }

    /// Walks `comps` below `from`: every one must be a directory (a link to one, with
    /// [`Links::Follow`]). A missing component fails (see [`UserFs::walk_existing`]).
    pub fn walk(
        &mut self,
        from: Dir,
        comps: &[OsString],
        links: Links<'_>,
        count: &mut u32,
    ) -> Result<Dir, Denial> {
        let (dir, rest) = self.walk_existing(from, comps, links, count)?;
        match rest.first() {
            None => Ok(dir),
            Some(name) => Err(Denial {
                missing: true,
                ..Denial::io(
                    "look up",
                    &dir.path.join(name),
                    &io::Error::from(io::ErrorKind::NotFound),
                )
            }),
        }
    }

    /// Walks `comps` below `from` as far as they exist: the deepest directory reached and the
    /// components that are missing below it. (A link's target must exist.)
    pub fn walk_existing(
        &mut self,
        from: Dir,
        comps: &[OsString],
        links: Links<'_>,
        count: &mut u32,
    ) -> Result<(Dir, Vec<OsString>), Denial> {
        let mut cur = from;
        for (i, name) in comps.iter().enumerate() {
            match self.step(&cur, name, links, count)? {
                Some(next) => cur = next,
                None => return Ok((cur, comps[i..].to_vec())),
            }
        }
        Ok((cur, Vec::new()))
    }

    /// One component below `cur`: the directory reached, or None if it is missing.
    pub fn step(
        &mut self,
        cur: &Dir,
        name: &OsStr,
        links: Links<'_>,
        count: &mut u32,
    ) -> Result<Option<Dir>, Denial> {
        match self.lookup(cur, name)? {
            Found::Dir(d) => Ok(Some(d)),
            Found::Missing => Ok(None),
            Found::Link(fd, meta) => {
                let at = cur.path.join(name);
                match links {
                    Links::Refuse(root) => Err(Denial::new(
                        ErrorCode::Forbidden,
                        format!(
                            "{} is a symbolic link; no link is followed below the target \
                             directory {}",
                            at.display(),
                            root.display()
                        ),
                    )),
                    Links::Follow => self.follow(cur, &at, &fd, &meta, count).map(Some),
                }
            }
        }
    }

    /// Resolves the link `at` (handle `fd`, found in `dir`) to the directory it names.
    fn follow(
        &mut self,
        dir: &Dir,
        at: &Path,
        fd: &OwnedFd,
        meta: &Meta,
        count: &mut u32,
    ) -> Result<Dir, Denial> {
        *count += 1;
        if *count > MAX_LINKS {
            return Err(Denial::io(
                "resolve",
                at,
                &io::Error::from_raw_os_error(Errno::LOOP.raw_os_error()),
            ));
        }
        // fs.protected_symlinks: in a sticky, world-writable directory only links owned by the
        // follower or by the directory's owner are followed.
        let dmode = dir.meta.mode;
        if dmode & 0o1000 != 0 && dmode & 0o002 != 0 {
            let (uid, who) = self.checker.follower().map_err(Denial::permission)?;
            if meta.uid != uid && meta.uid != dir.meta.uid {
                let owner = self.checker.user_name(meta.uid);
                return Err(Denial::permission(format!(
                    "{who} may not follow the symbolic link {} (owner {owner}) in the sticky, \
                     world-writable directory {} (protected_symlinks)",
                    at.display(),
                    dir.path.display()
                )));
            }
        }
        let target = rustix::fs::readlinkat(fd, c"", Vec::new())
            .map_err(|e| Denial::io("read the symbolic link", at, &e.into()))?;
        let target = OsStr::from_bytes(target.as_bytes());
        let absolute = target.as_bytes().first() == Some(&b'/');
        let mut cur = if absolute { self.root()? } else { dir.clone() };
        for part in target.as_bytes().split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => cur = self.parent(&cur)?,
                name => match self.step(&cur, OsStr::from_bytes(name), Links::Follow, count)? {
                    Some(next) => cur = next,
                    None => {
                        return Err(Denial {
                            missing: true,
                            ..Denial::new(
                                ErrorCode::PathMissing,
                                format!(
                                    "the symbolic link {} points to {}, which does not exist",
                                    at.display(),
                                    Path::new(target).display()
                                ),
                            )
                        });
                    }
                },
            }
        }
        Ok(cur)
    }

    /// The parent of `dir` (`..` met in a link's target), search on `dir` checked.
    fn parent(&mut self, dir: &Dir) -> Result<Dir, Denial> {
        self.check(dir, SEARCH)?;
        let fd = openat(
            &*dir.fd,
            "..",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Denial::io("open the parent of", &dir.path, &e.into()))?;
        let path = dir
            .path
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let meta = fstat(&fd).map_err(|e| Denial::io("stat", &path, &e))?;
        Ok(Dir::new(fd, path, meta))
    }
}

fn not_a_directory(at: &Path, meta: &Meta) -> Denial {
    Denial::new(
        ErrorCode::BadRequest,
        format!("{} is {}, not a directory", at.display(), meta.kind_name()),
    )
}
