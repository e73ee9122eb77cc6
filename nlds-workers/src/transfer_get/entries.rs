//! What a batch restores besides file contents: where each path lands ([`Destination`]),
//! symbolic links, hard links to a path restored earlier in the batch, and the owner, mode and
//! time of directories, each through the handle of its directory ([`crate::userfs::restore`]).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use nlds_core::{ErrorCode, FailedFile, FileRecord, pathname};

use crate::posix::Ownership;
use crate::userfs::journal::Journal;
use crate::userfs::restore::{self, DirSyncs, Restorer};
use crate::warm::{Moving, system_time};

/// Permission bits restored on directories (setgid and sticky keep their meaning there).
const DIR_MODE_MASK: u32 = 0o3777;

/// Where the files of a batch go.
#[derive(Clone)]
pub(super) struct Destination {
    /// The target directory, normalised (None: restore to the original paths).
    pub(super) root: Option<Arc<PathBuf>>,
    pub(super) overwrite: bool,
    /// Who what is created belongs to.
    pub(super) owner: Ownership,
    /// The batch's journal of temporary files.
    pub(super) journal: Option<Arc<Journal>>,
    /// The directories the batch moved files into, fsynced once before it reports.
    pub(super) syncs: Arc<DirSyncs>,
    /// The bytes downloaded so far, reported while the batch is in flight.
    pub(super) moving: Moving,
}

impl Destination {
    /// The destination of `path`: `target/<path without leading '/'>`, or the path itself.
    pub(super) fn of(&self, path: &str) -> Result<PathBuf, FailedFile> {
        let raw = pathname::decode(path);
        let bytes = raw.as_bytes();
        let start = bytes.iter().position(|b| *b != b'/').unwrap_or(bytes.len());
        let rel = Path::new(OsStr::from_bytes(&bytes[start..]));
        if rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(FailedFile::new(
                path,
                ErrorCode::BadRequest,
                format!("{path} contains '..' and cannot be restored"),
            ));
        }
        match &self.root {
            Some(root) => Ok(root.join(rel)),
            None if start > 0 => Ok(PathBuf::from(raw)),
            None => Err(FailedFile::new(
                path,
                ErrorCode::BadRequest,
                format!("{path} is not absolute; give a target directory to restore it"),
            )),
        }
    }
}

/// The restore of one batch, shared by its steps (locked only to find or make directories).
pub(super) type Shared = Arc<Mutex<Restorer>>;

pub(super) fn lock(r: &Shared) -> MutexGuard<'_, Restorer> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The warnings of a batch (attributes that could not be restored), shared by its steps.
pub(super) type Warnings = Arc<Mutex<Vec<String>>>;

pub(super) fn warn(to: Warnings, w: Vec<String>) {
    if !w.is_empty() {
        to.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(w);
    }
}

/// Restores a symbolic link of the batch, through the handle of its directory.
pub(super) fn make_link(
    dest: &Destination,
    restorer: &Shared,
    rec: &FileRecord,
    to: &Path,
) -> Result<(), FailedFile> {
    let path = rec.path.as_str();
    let Some(target) = rec.link_target.as_deref() else {
        return Err(FailedFile::new(
            path,
            ErrorCode::Internal,
            format!("{path} is a symbolic link without a target in the catalogue"),
        ));
    };
    let (dir, name) = lock(restorer).parent(path, to, (rec.uid, rec.gid))?;
    let ids = dest.owner.ids(rec.uid, rec.gid);
    let target = pathname::decode(target);
    let replace = restore::Replace {
        overwrite: dest.overwrite,
        journal: dest.journal.as_deref(),
    };
    restore::make_link(path, &dir, &name, to, &target, ids, replace)
}

/// Restores `rec`, a later path of a hard-linked inode, as a hard link to its first path
/// `first` (restored by this batch at `first_to`), through the handles of both directories.
/// Ok(false): the first one is not the regular file this batch restored any more (download it
/// instead).
pub(super) fn hard_link(
    dest: &Destination,
    restorer: &Shared,
    rec: &FileRecord,
    to: &Path,
    first: &str,
    first_to: &Path,
) -> Result<bool, FailedFile> {
    let path = rec.path.as_str();
    let (from_dir, from_name) = lock(restorer).parent(first, first_to, (rec.uid, rec.gid))?;
    let (dir, name) = lock(restorer).parent(path, to, (rec.uid, rec.gid))?;
    restore::hard_link(
        path,
        (&from_dir, &from_name),
        (&dir, &name),
        to,
        rec.size,
        restore::Replace {
            overwrite: dest.overwrite,
            journal: dest.journal.as_deref(),
        },
    )
}

/// Sets a restored directory's owner, mode and time through its handle. A directory that was
/// already there and belongs to someone else than the one this get restores for is left as it
/// is.
pub(super) fn finish_directory(
    dest: &Destination,
    restorer: &Shared,
    rec: &FileRecord,
    to: &Path,
    existed: bool,
    warnings: &Warnings,
) -> Result<(), FailedFile> {
    let Some((dir, _)) = lock(restorer).directory(to) else {
        return Err(FailedFile::new(
            &rec.path,
            ErrorCode::Internal,
            format!("{} was not made by this restore", to.display()),
        ));
    };
    let ids = dest.owner.ids(rec.uid, rec.gid);
    let keep = dest.owner == Ownership::Recorded;
    restore::finish_dir(
        &dir,
        ids,
        keep,
        existed,
        rec.mode & DIR_MODE_MASK,
        system_time(rec.mtime_ns),
        (&rec.path, &rec.xattrs),
    )
    .map(|w| warn(warnings.clone(), w))
    .map_err(|d| FailedFile::new(&rec.path, d.code, d.reason))
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
            journal: None,
            syncs: Arc::default(),
            moving: Moving::quiet(),
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
            journal: None,
            syncs: Arc::default(),
            moving: Moving::quiet(),
        };
        assert_eq!(d.of("/data/x").unwrap(), PathBuf::from("/data/x"));
        assert_eq!(d.of("data/x").unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(
            d.of("/data/../etc/x").unwrap_err().code,
            ErrorCode::BadRequest,
            "no '..' without a target either"
        );
    }
}
