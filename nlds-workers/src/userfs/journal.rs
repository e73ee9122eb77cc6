//! The journal of the temporary files transfer-get creates in users' restore targets
//! (`.<name>.nlds-<random>.part`), so that those a killed process left behind are removed when
//! transfer-get starts again, and nothing else.
//!
//! Each batch writes its own journal in the process's locked work directory
//! ([`crate::workdir::ProcessDir`]): one JSON line with the name (and the directory's path, found
//! again from its handle) *before* the file is created, and one with the inode it got just
//! after. The journal is removed when the batch ends (every temporary is by then moved into place
//! or removed). A write reaches the page cache before the file is created, so it survives the
//! death of the process (not of the machine).
//!
//! The sweep ([`sweep`]) runs on the user's behalf with the same discipline as the restore
//! ([`super::UserFs`]): the directory is walked from `/` as the user without following any link
//! (a directory swapped for a link is left alone), the user must be allowed to remove entries
//! there (write and search, the sticky rule), and the entry is removed only if it is, without
//! following it, the regular file that was created: the recorded inode, or, when the process
//! died before recording it, a file of the service's own (no user can make one) with a single
//! link. A link, another file or a file moved there since is left alone.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{AtFlags, statat};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::{Denial, Dir, Links, Meta, UserFs, components, is_plain_name};
use crate::posix::{PosixPolicy, SEARCH, WRITE};

/// The extension of journal files.
const EXT: &str = "journal";

/// One line: a temporary file about to be created (`inode: None`) or created.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    user: String,
    /// The directory's path (bytes).
    dir: Vec<u8>,
    /// The temporary's name in it (bytes).
    name: Vec<u8>,
    /// `(st_dev, st_ino)` once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inode: Option<(u64, u64)>,
}

/// The journal of one batch, removed when dropped.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    user: String,
    file: Mutex<File>,
}

impl Journal {
    /// A new journal in `dir` (this process's work directory) for the temporaries of `user`.
    pub fn create(dir: &Path, user: &str) -> io::Result<Self> {
        let path = dir.join(format!("{}.{EXT}", uuid::Uuid::new_v4().simple()));
        let file = File::options().create_new(true).append(true).open(&path)?;
        Ok(Self {
            path,
            user: user.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// Records that `name` is about to be created in `dir`.
    pub fn intent(&self, dir: &Dir, name: &OsStr) -> io::Result<()> {
        self.write(dir, name, None)
    }

    /// Records the inode `name` of `dir` was created as.
    pub fn created(&self, dir: &Dir, name: &OsStr, meta: &Meta) -> io::Result<()> {
        self.write(dir, name, Some((meta.dev, meta.ino)))
    }

    fn write(&self, dir: &Dir, name: &OsStr, inode: Option<(u64, u64)>) -> io::Result<()> {
        let entry = Entry {
            user: self.user.clone(),
            dir: real_path(dir).into_os_string().into_vec(),
            name: name.as_bytes().to_vec(),
            inode,
        };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        // One write per line, under the lock: lines never interleave.
        self.file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .write_all(&line)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The path of a directory handle as the kernel knows it now (no link in it), or the path it was
/// reached by.
fn real_path(dir: &Dir) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", dir.fd().as_raw_fd()))
        .ok()
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| dir.path().to_path_buf())
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    /// Temporaries removed.
    pub removed: Vec<PathBuf>,
    /// Entries left alone, and why.
    pub kept: Vec<(PathBuf, String)>,
}

/// Removes the temporaries the journals in `dir` (a dead process's work directory) recorded,
/// as described in the module's documentation, with the checks of `policy`.
pub fn sweep(dir: &Path, policy: PosixPolicy) -> io::Result<Swept> {
    let mut swept = Swept::default();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension() != Some(OsStr::new(EXT)) {
            continue;
        }
        // The last line of a temporary wins (the inode once it was created).
        let mut temps: Vec<Entry> = Vec::new();
        for line in io::BufReader::new(File::open(&path)?).lines() {
            // A torn last line (the process died in the write) names nothing created.
            let Ok(e) = serde_json::from_str::<Entry>(&line?) else {
                continue;
            };
            match temps
                .iter_mut()
                .find(|t| (&t.dir, &t.name) == (&e.dir, &e.name))
            {
                Some(t) => *t = e,
                None => temps.push(e),
            }
        }
        for e in temps {
            let at = Path::new(OsStr::from_bytes(&e.dir)).join(OsStr::from_bytes(&e.name));
            match remove(&e, policy) {
                Ok(true) => swept.removed.push(at),
                Ok(false) => {}
                Err(why) => swept.kept.push((at, why)),
            }
        }
    }
    Ok(swept)
}

/// Removes the temporary of `e` if it is still there and still ours: Ok(true) if removed,
/// Ok(false) if gone, Err(why) if left alone.
fn remove(e: &Entry, policy: PosixPolicy) -> Result<bool, String> {
    let dir_path = PathBuf::from(OsString::from_vec(e.dir.clone()));
    let name = OsStr::from_bytes(&e.name);
    if !is_plain_name(name) {
        return Err("not a plain file name".into());
    }
    let mut fs = UserFs::new(policy, &e.user);
    let denied = |d: Denial| d.reason;
    let comps = components(&dir_path).map_err(denied)?;
    let root = fs.root().map_err(denied)?;
    let mut links = 0;
    let dir = match fs.walk(root, &comps, Links::Refuse(&dir_path), &mut links) {
        Ok(d) => d,
        Err(d) if d.missing => return Ok(false),
        Err(d) => return Err(d.reason),
    };
    fs.check(&dir, WRITE | SEARCH).map_err(denied)?;
    let meta = match statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Meta::of(&st),
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(io::Error::from(e).to_string()),
    };
    // A temporary file, or the temporary name (`*.link`) of a link made to replace another (a
    // symbolic link, or a hard link: its inode has other names, and only this one goes). A
    // symbolic link under any other name is not ours, even with the recorded inode number (a
    // removed file's number is soon given again).
    let is_link_temp = name.as_bytes().ends_with(b".link");
    let ours = (meta.is_file() || (meta.is_symlink() && is_link_temp))
        && match e.inode {
            Some(inode) => (meta.dev, meta.ino) == inode,
            // Created by this process, which died before recording the inode: it still belongs
            // to the service (given away only once written) and has no other name.
            None => meta.uid == rustix::process::geteuid().as_raw() && meta.nlink == 1,
        };
    if !ours {
        return Err(format!(
            "it is now {} that this process did not create",
            meta.kind_name()
        ));
    }
    let at = dir_path.join(name);
    fs.checker()
        .may_replace(&at, &dir_path, dir.meta().inode(), meta.uid)?;
    match rustix::fs::unlinkat(dir.fd(), name, AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(io::Error::from(e).to_string()),
    }
}

#[cfg(test)]
mod tests;
