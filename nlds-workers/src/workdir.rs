//! A process's own scratch directory under a shared base (`[workers] work_dir`, the recall
//! spool), and the removal of what dead processes left there.
//!
//! Several processes of a role may share a base directory. Each works in `<base>/<uuid>`, a
//! directory it holds an exclusive `flock` on for its whole life (the lock is on the directory's
//! inode and dies with the process, even with `kill -9`). A process that starts looks at the
//! other subdirectories: one whose lock it can take belongs to no live process, and is swept.
//! The directory is created under a hidden name (`.<uuid>`), locked, then renamed, so no sweeper
//! ever sees an unlocked directory of a live process.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{FlockOperation, flock};

/// Hidden directories (a process died between creating and renaming one) older than this are
/// removed too.
const HIDDEN_GRACE: Duration = Duration::from_secs(3600);

/// This process's scratch directory, locked while it lives.
#[derive(Debug)]
pub struct ProcessDir {
    path: PathBuf,
    _lock: File,
}

impl ProcessDir {
    /// Creates and locks a new directory under `base` (created if missing).
    pub fn create(base: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(base)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let hidden = base.join(format!(".{id}"));
        std::fs::create_dir(&hidden)?;
        let lock = File::open(&hidden)?;
        flock(lock.as_fd(), FlockOperation::NonBlockingLockExclusive)?;
        let path = base.join(&id);
        std::fs::rename(&hidden, &path)?;
        Ok(Self { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A dead process's directory, locked by us until dropped.
#[derive(Debug)]
pub struct Orphan {
    pub path: PathBuf,
    _lock: File,
}

impl Orphan {
    /// Removes it and everything in it.
    pub fn remove(self) -> io::Result<()> {
        std::fs::remove_dir_all(&self.path)
    }
}

/// The directories under `base` that no live process holds (none if `base` does not exist).
/// Hidden directories left half-created are removed here.
pub fn orphans(base: &Path) -> io::Result<Vec<Orphan>> {
    let entries = match std::fs::read_dir(base) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if !entry.file_type()?.is_dir() {
            continue;
        }
        if entry.file_name().to_string_lossy().starts_with('.') {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age > HIDDEN_GRACE);
            if old {
                let _ = std::fs::remove_dir_all(&path);
            }
            continue;
        }
        let lock = File::open(&path)?;
        match flock(lock.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => out.push(Orphan { path, _lock: lock }),
            Err(rustix::io::Errno::WOULDBLOCK) => {} // a live process's
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Removes the directories of dead processes under `base`; returns what was removed (for the
/// log).
pub fn sweep(base: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for o in orphans(base)? {
        let path = o.path.clone();
        o.remove()?;
        removed.push(path);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_directory_is_kept_and_a_dead_ones_swept() {
        let base = tempfile::tempdir().unwrap();
        let live = ProcessDir::create(base.path()).unwrap();
        std::fs::write(live.path().join("x"), b"live").unwrap();
        let dead = ProcessDir::create(base.path()).unwrap();
        let dead_path = dead.path().to_owned();
        std::fs::write(dead_path.join("y"), b"dead").unwrap();
        drop(dead); // its lock goes, as when the process dies
        let removed = sweep(base.path()).unwrap();
        assert_eq!(removed, vec![dead_path.clone()]);
        assert!(!dead_path.exists());
        assert_eq!(std::fs::read(live.path().join("x")).unwrap(), b"live");
        assert!(sweep(base.path()).unwrap().is_empty());
    }

    #[test]
    fn a_missing_base_has_no_orphans() {
        let base = tempfile::tempdir().unwrap();
        assert!(orphans(&base.path().join("none")).unwrap().is_empty());
    }
}
