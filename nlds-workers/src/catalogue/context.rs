//! The directories of a restore that a get batch's entries are in but that travel in another
//! batch (`Payload::Files::context`): transfer-get gives them their recorded mode and time again
//! after writing into them, so a directory's time is its own however the restore was batched.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use nlds_core::{FileRecord, PathKind};

/// The directory records of one restore, by path.
#[derive(Debug, Default)]
pub(super) struct RestoreDirs(BTreeMap<String, FileRecord>);

impl RestoreDirs {
    /// The directories among `records`.
    pub(super) fn of(records: &[FileRecord]) -> Self {
        Self(
            records
                .iter()
                .filter(|r| r.kind == PathKind::Directory)
                .map(|r| (r.path.clone(), r.clone()))
                .collect(),
        )
    }

    /// The directories that the entries at `paths` are in, at any depth, other than those among
    /// `paths` themselves; in path order (parents before their subdirectories).
    pub(super) fn context<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> Vec<FileRecord> {
        if self.0.is_empty() {
            return Vec::new();
        }
        let paths: Vec<&str> = paths.into_iter().collect();
        let own: HashSet<&str> = paths.iter().copied().collect();
        let mut found = BTreeSet::new();
        for p in paths {
            let mut rest = p;
            while let Some((parent, _)) = rest.rsplit_once('/') {
                if parent.is_empty() {
                    break;
                }
                if !own.contains(parent) && self.0.contains_key(parent) && !found.insert(parent) {
                    break; // this parent and its own ancestors are in already
                }
                rest = parent;
            }
        }
        found.into_iter().map(|p| self.0[p].clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, kind: PathKind) -> FileRecord {
        FileRecord {
            path: path.into(),
            kind,
            link_target: None,
            size: 0,
            uid: 0,
            gid: 0,
            mode: 0o755,
            mtime_ns: 0,
            blake3: None,
            object: None,
            holding_id: None,
            new_version: false,
            xattrs: Vec::new(),
        }
    }

    fn paths(v: &[FileRecord]) -> Vec<&str> {
        v.iter().map(|r| r.path.as_str()).collect()
    }

    #[test]
    fn a_batch_gets_the_restored_directories_its_entries_are_in() {
        let all = [
            rec("/d", PathKind::Directory),
            rec("/d/a", PathKind::Directory),
            rec("/d/a/1", PathKind::File),
            rec("/d/a/2", PathKind::File),
            rec("/d/b", PathKind::Directory),
            rec("/d/b/1", PathKind::Link),
            rec("/other/x", PathKind::File),
        ];
        let dirs = RestoreDirs::of(&all);
        // Its own directories are not context; those of other batches are, with their
        // ancestors, once; a parent that is not restored (/other) is not.
        assert_eq!(paths(&dirs.context(["/d/a/2"])), ["/d", "/d/a"]);
        assert_eq!(
            paths(&dirs.context(["/d/a", "/d/a/1", "/d/b/1"])),
            ["/d", "/d/b"]
        );
        assert_eq!(paths(&dirs.context(["/d/b", "/d/b/1"])), ["/d"]);
        assert!(dirs.context(["/d"]).is_empty());
        assert!(dirs.context(["/other/x"]).is_empty());
        assert!(RestoreDirs::default().context(["/d/a/1"]).is_empty());
    }
}
