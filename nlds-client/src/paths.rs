//! Paths as sent to the server: absolute, lexically normalised, symlinks **not** resolved (like
//! Python's `os.path.abspath(os.path.expanduser(p))`, which the NLDS client used for put), and
//! FILELIST parsing for `putlist` and `getlist`.

use std::path::{Component, Path, PathBuf};

/// Makes `p` absolute against `cwd`, expanding a leading `~` with `home`, and removes `.`, `..`
/// and repeated or trailing slashes without touching the file system.
pub fn absolutize(p: &str, cwd: &Path, home: Option<&Path>) -> Result<String, String> {
    let expanded: PathBuf = match (p, home) {
        ("~", Some(h)) => h.to_path_buf(),
        (s, Some(h)) if s.starts_with("~/") => h.join(&s[2..]),
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
    out.into_os_string()
        .into_string()
        .map_err(|bad| format!("path {bad:?} is not valid UTF-8"))
}

/// Parses the text of a FILELIST: one path per line, surrounding whitespace trimmed, blank lines
/// skipped, each path made absolute with [`absolutize`], duplicates (after that) dropped keeping
/// the first. An empty list is an error.
pub fn parse_filelist(text: &str, cwd: &Path, home: Option<&Path>) -> Result<Vec<String>, String> {
    let mut seen = std::collections::HashSet::new();
    let mut paths = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let abs = absolutize(line, cwd, home)?;
        if seen.insert(abs.clone()) {
            paths.push(abs);
        }
    }
    if paths.is_empty() {
        return Err("FILELIST contains no paths".into());
    }
    Ok(paths)
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
