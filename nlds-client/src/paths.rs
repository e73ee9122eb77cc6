//! Paths as sent to the server: absolute, lexically normalised, symlinks **not** resolved (like
//! Python's `os.path.abspath(os.path.expanduser(p))`, which the NLDS client used for put), and
//! FILELIST parsing for `putlist` and `getlist`. A path is bytes: it is sent in the encoding of
//! `nlds_core::pathname` (valid UTF-8 unchanged, other bytes as reserved code points).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nlds_core::pathname;

use crate::filelist::{FilelistError, FilelistReader};

/// Makes `p` absolute against `cwd`, expanding a leading `~` with `home`, and removes `.`, `..`
/// and repeated or trailing slashes without touching the file system. The result is encoded
/// with `nlds_core::pathname::encode`.
pub fn absolutize(p: impl AsRef<OsStr>, cwd: &Path, home: Option<&Path>) -> Result<String, String> {
    let p = p.as_ref();
    let b = p.as_bytes();
    let expanded: PathBuf = match home {
        Some(h) if b == b"~" => h.to_path_buf(),
        Some(h) if b.starts_with(b"~/") => h.join(OsStr::from_bytes(&b[2..])),
        _ => PathBuf::from(p),
    };
    let joined = if expanded.is_absolute() {
        expanded
    } else {
        cwd.join(expanded)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    pathname::encode(out.as_os_str()).map_err(|e| e.to_string())
}

/// Parses a FILELIST (bytes: names need not be UTF-8): one path per line, surrounding
/// whitespace trimmed, blank lines skipped, each path made absolute with [`absolutize`],
/// duplicates (after that) dropped keeping the first. An empty list is an error. (A name with a
/// newline in it cannot be listed; put or get its directory.) The whole list in memory: a long
/// one is read as it streams by [`crate::filelist::FilelistReader`], by the same rules.
pub fn parse_filelist(text: &[u8], cwd: &Path, home: Option<&Path>) -> Result<Vec<String>, String> {
    let mut reader = FilelistReader::new(text, cwd, home, usize::MAX);
    match reader.next_chunk() {
        Ok(Some(paths)) => Ok(paths),
        Ok(None) => Err(FilelistError::Empty.to_string()),
        Err(FilelistError::Path { message, .. }) => Err(message),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_without_resolving() {
        let cwd = Path::new("/gws/proj/work");
        let home = Some(Path::new("/home/alice"));
        assert_eq!(
            absolutize("a.nc", cwd, home).unwrap(),
            "/gws/proj/work/a.nc"
        );
        assert_eq!(
            absolutize("./d/../b.nc", cwd, home).unwrap(),
            "/gws/proj/work/b.nc"
        );
        assert_eq!(absolutize("../x/", cwd, home).unwrap(), "/gws/proj/x");
        assert_eq!(absolutize("/a//b/./c", cwd, home).unwrap(), "/a/b/c");
        assert_eq!(absolutize("/../..", cwd, home).unwrap(), "/");
        assert_eq!(absolutize("~/f", cwd, home).unwrap(), "/home/alice/f");
        assert_eq!(absolutize("~", cwd, home).unwrap(), "/home/alice");
        assert_eq!(
            absolutize("~bob/f", cwd, home).unwrap(),
            "/gws/proj/work/~bob/f"
        );
        assert_eq!(absolutize("~/f", cwd, None).unwrap(), "/gws/proj/work/~/f");
        assert_eq!(
            absolutize("dir with space/f", cwd, home).unwrap(),
            "/gws/proj/work/dir with space/f"
        );
    }

    #[test]
    fn names_that_are_not_utf8_are_carried_encoded() {
        let cwd = Path::new("/gws");
        let got = absolutize(OsStr::from_bytes(b"d/caf\xe9.txt"), cwd, None).unwrap();
        assert_eq!(got, "/gws/d/caf\u{10FEE9}.txt");
        let list = parse_filelist(
            b"caf\xe9.txt\r\n \n/x/\xff\xfe\n/plain/\xc3\xa9\n",
            cwd,
            None,
        )
        .unwrap();
        assert_eq!(
            list,
            [
                "/gws/caf\u{10FEE9}.txt",
                "/x/\u{10FEFF}\u{10FEFE}",
                "/plain/é"
            ]
        );
        let e = absolutize("/x/\u{10FE80}", cwd, None).unwrap_err();
        assert!(e.contains("reserves"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let got = absolutize("link/f", dir.path(), None).unwrap();
        assert_eq!(got, format!("{}/link/f", dir.path().display()));
    }
}
