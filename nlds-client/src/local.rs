//! What a dry run finds on the local disk: the files a put would index ([`scan`], walking like the
//! server's indexer: symlinks are not followed), and what a get would do at each destination
//! ([`destinations`]).

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use nlds_core::api::FileEntry;
use nlds_core::{ErrorCode, FailedFile, PathKind};
use serde::Serialize;

/// What a path given to a put is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanKind {
    File,
    Directory,
    Link,
    /// It does not exist.
    Missing,
    /// It cannot be read (or, for a directory, listed).
    Unreadable,
    /// A device, socket or pipe: the indexer refuses those.
    Special,
}

impl ScanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanKind::File => "file",
            ScanKind::Directory => "directory",
            ScanKind::Link => "link",
            ScanKind::Missing => "missing",
            ScanKind::Unreadable => "unreadable",
            ScanKind::Special => "special",
        }
    }
    /// The put would store something for it.
    pub fn is_found(self) -> bool {
        matches!(self, ScanKind::File | ScanKind::Directory | ScanKind::Link)
    }
}

/// Counts of what would be stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub files: u64,
    pub directories: u64,
    pub links: u64,
    pub bytes: u64,
}

impl Counts {
    /// Entries that would be stored (files, directories and links).
    pub fn entries(&self) -> u64 {
        self.files + self.directories + self.links
    }
    fn add(&mut self, o: &Counts) {
        self.files += o.files;
        self.directories += o.directories;
        self.links += o.links;
        self.bytes += o.bytes;
    }
}

/// One path given to a put, and what lies under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathScan {
    pub path: String,
    pub kind: ScanKind,
    #[serde(flatten)]
    pub counts: Counts,
}

/// The local side of a put's dry run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LocalScan {
    pub paths: Vec<PathScan>,
    /// The totals over every path (an entry reached twice counts once).
    #[serde(flatten)]
    pub total: Counts,
    /// Entries the put would fail for, and why.
    pub problems: Vec<FailedFile>,
}

impl LocalScan {
    /// Given paths that exist and can be read.
    pub fn found(&self) -> usize {
        self.paths.iter().filter(|p| p.kind.is_found()).count()
    }

    /// Adds the scan of more paths (the next chunk of a FILELIST): its paths and problems after
    /// these, its totals to these (an entry reached from both counts twice).
    pub fn join(&mut self, other: LocalScan) {
        self.paths.extend(other.paths);
        self.total.add(&other.total);
        self.problems.extend(other.problems);
    }
}

fn io_problem(path: &str, what: &str, e: &io::Error) -> FailedFile {
    match e.kind() {
        io::ErrorKind::NotFound => {
            FailedFile::new(path, ErrorCode::PathMissing, "no such file or directory")
        }
        io::ErrorKind::PermissionDenied => FailedFile::new(
            path,
            ErrorCode::PermissionDenied,
            format!("permission denied: cannot {what}"),
        ),
        _ => FailedFile::new(path, ErrorCode::StorageError, format!("cannot {what}: {e}")),
    }
}

/// Walks `paths` (absolute) as the indexer would: a directory recursively, symlinks stored as
/// links and never followed, each file opened to check it can be read. Blocking.
pub fn scan(paths: &[String]) -> LocalScan {
    let mut out = LocalScan::default();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    for p in paths {
        let mut counts = Counts::default();
        let raw = PathBuf::from(nlds_core::pathname::decode(p));
        let kind = match std::fs::symlink_metadata(&raw) {
            Err(e) => {
                out.problems.push(io_problem(p, "stat", &e));
                if e.kind() == io::ErrorKind::NotFound {
                    ScanKind::Missing
                } else {
                    ScanKind::Unreadable
                }
            }
            Ok(md) if md.is_dir() => {
                if let Err(e) = std::fs::read_dir(&raw) {
                    out.problems.push(io_problem(p, "read directory", &e));
                    ScanKind::Unreadable
                } else {
                    walk_dir(&raw, &mut seen, &mut counts, &mut out.problems);
                    ScanKind::Directory
                }
            }
            Ok(md) => match entry(&raw, &md, &mut seen, &mut counts) {
                Ok(kind) => kind,
                Err(problem) => {
                    let kind = if problem.code == ErrorCode::BadRequest {
                        ScanKind::Special
                    } else {
                        ScanKind::Unreadable
                    };
                    out.problems.push(problem);
                    kind
                }
            },
        };
        out.total.add(&counts);
        out.paths.push(PathScan {
            path: p.clone(),
            kind,
            counts,
        });
    }
    out
}

fn walk_dir(
    root: &Path,
    seen: &mut HashSet<PathBuf>,
    counts: &mut Counts,
    problems: &mut Vec<FailedFile>,
) {
    for item in walkdir::WalkDir::new(root).follow_links(false) {
        match item {
            Ok(e) => {
                let shown = shown(e.path());
                match e.metadata() {
                    Ok(md) => {
                        if md.is_dir() {
                            if let Err(err) = std::fs::read_dir(e.path()) {
                                push_once(problems, io_problem(&shown, "read directory", &err));
                            } else if seen.insert(e.path().to_owned()) {
                                counts.directories += 1;
                            }
                        } else if let Err(p) = entry(e.path(), &md, seen, counts) {
                            push_once(problems, p);
                        }
                    }
                    Err(err) => {
                        let ioe = err
                            .into_io_error()
                            .unwrap_or_else(|| io::Error::other("walk error"));
                        push_once(problems, io_problem(&shown, "stat", &ioe));
                    }
                }
            }
            Err(err) => {
                let shown = err.path().map(shown).unwrap_or_else(|| shown(root));
                let ioe = err
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("walk error"));
                push_once(problems, io_problem(&shown, "read directory", &ioe));
            }
        }
    }
}

/// `path` as the API carries it (`nlds_core::pathname`); a name the encoding refuses as it is
/// shown to humans (the indexer fails it).
fn shown(path: &Path) -> String {
    nlds_core::pathname::encode(path.as_os_str()).unwrap_or_else(|e| e.shown)
}

/// walkdir reports an unreadable directory both as an entry and as an error: record it once.
fn push_once(problems: &mut Vec<FailedFile>, p: FailedFile) {
    if !problems.iter().any(|q| q.path == p.path) {
        problems.push(p);
    }
}

/// A file, link or special file (not a directory); counted once however often it is reached.
fn entry(
    path: &Path,
    md: &std::fs::Metadata,
    seen: &mut HashSet<PathBuf>,
    counts: &mut Counts,
) -> Result<ScanKind, FailedFile> {
    let shown = shown(path);
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        ScanKind::Link
    } else if ft.is_file() {
        std::fs::File::open(path).map_err(|e| io_problem(&shown, "read file", &e))?;
        ScanKind::File
    } else {
        return Err(FailedFile::new(
            shown,
            ErrorCode::BadRequest,
            "not a regular file, directory or symlink",
        ));
    };
    if seen.insert(path.to_owned()) {
        match kind {
            ScanKind::Link => counts.links += 1,
            _ => {
                counts.files += 1;
                counts.bytes += md.len();
            }
        }
    }
    Ok(kind)
}

/// Entries under a put's paths that the holding it would add to already has: the put would fail
/// for them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AlreadyStored {
    /// The holding that has them.
    pub holding_id: i64,
    /// How many.
    pub total: u64,
    /// The first few of them.
    pub examples: Vec<String>,
}

/// The paths a put may check against its holding in one query.
pub const MAX_CHECKED_PATHS: usize = 200;

/// A regular expression (for the server's `find`) matching the entries a put of `scan`'s paths
/// would store: each file or link exactly, each directory and everything under it. `None` when
/// nothing was found or there are too many paths to ask about in one query.
pub fn stored_paths_regex(scan: &LocalScan) -> Option<String> {
    let found: Vec<&PathScan> = scan.paths.iter().filter(|p| p.kind.is_found()).collect();
    if found.is_empty() || found.len() > MAX_CHECKED_PATHS {
        return None;
    }
    let alternatives: Vec<String> = found
        .iter()
        .map(|p| match p.kind {
            ScanKind::Directory => format!("{}(?:/.*)?", regex_escape(&p.path)),
            _ => regex_escape(&p.path),
        })
        .collect();
    Some(format!("^(?:{})$", alternatives.join("|")))
}

/// Escapes the characters that mean something in a regular expression.
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What a get would do with one file at its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestAction {
    /// Nothing is there: the file is written.
    Restore,
    /// The same content is already there: nothing to do.
    Skip,
    /// Different content is there and `--overwrite` was not given: the file would fail.
    Conflict,
    /// Different content is there and `--overwrite` replaces it.
    Overwrite,
    /// Something is there that cannot be compared (a directory, which is merged; a link; a file
    /// without a recorded checksum and of the same size).
    Exists,
}

impl DestAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DestAction::Restore => "restore",
            DestAction::Skip => "skip (identical)",
            DestAction::Conflict => "conflict",
            DestAction::Overwrite => "overwrite",
            DestAction::Exists => "exists",
        }
    }
}

/// Where one file of a get would go, and what would happen there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    pub path: String,
    pub destination: String,
    pub action: DestAction,
}

/// The destination of an original `path`: under `target` (`TARGET/original/path`), or the path.
pub fn destination_of(path: &str, target: Option<&str>) -> PathBuf {
    use nlds_core::pathname::decode;
    match target {
        Some(t) => Path::new(&decode(t)).join(decode(path.trim_start_matches('/'))),
        None => PathBuf::from(decode(path)),
    }
}

/// What a get of `files` would do at each destination: compares an existing file with the
/// catalogue's blake3 checksum (hashing it only when the sizes match). Blocking.
pub fn destinations(
    files: &[FileEntry],
    target: Option<&str>,
    overwrite: bool,
) -> Vec<Destination> {
    files
        .iter()
        .map(|f| {
            let dest = destination_of(&f.path, target);
            let action = match std::fs::symlink_metadata(&dest) {
                Err(_) => DestAction::Restore,
                Ok(md) => match f.kind {
                    PathKind::Directory if md.is_dir() => DestAction::Exists,
                    PathKind::Link => DestAction::Exists,
                    PathKind::File if md.is_file() => match same_content(f, &dest, md.len()) {
                        Some(true) => DestAction::Skip,
                        Some(false) if overwrite => DestAction::Overwrite,
                        Some(false) => DestAction::Conflict,
                        None => DestAction::Exists,
                    },
                    _ if overwrite => DestAction::Overwrite,
                    _ => DestAction::Conflict,
                },
            };
            Destination {
                path: f.path.clone(),
                destination: nlds_core::pathname::encode(dest.as_os_str())
                    .unwrap_or_else(|_| dest.to_string_lossy().into_owned()),
                action,
            }
        })
        .collect()
}

/// `Some(true)` if the file at `dest` has the catalogued content, `Some(false)` if not, `None`
/// if that cannot be told.
fn same_content(f: &FileEntry, dest: &Path, len: u64) -> Option<bool> {
    if len != f.size {
        return Some(false);
    }
    let want = f.blake3.as_deref()?;
    let mut file = std::fs::File::open(dest).ok()?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Some(
        hasher
            .finalize()
            .to_hex()
            .as_str()
            .eq_ignore_ascii_case(want),
    )
}

/// The entries a put of `paths` would store, as the indexer records them (kind, size: 0 for
/// directories and links, mtime, link target), for the server to say what the put would do with
/// each (`put --dry-run`, docs/VERSIONS.md). With `hash`, each regular file's blake3 too (the
/// `checksum` sync level). What cannot be read is left out (the scan reports it). Blocking.
pub fn entries(paths: &[String], hash: bool) -> Vec<nlds_core::versions::LocalEntry> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    for p in paths {
        for item in walkdir::WalkDir::new(nlds_core::pathname::decode(p)).follow_links(false) {
            let Ok(e) = item else { continue };
            let Ok(md) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if !seen.insert(e.path().to_owned()) {
                continue;
            }
            let ft = md.file_type();
            let (kind, size) = if ft.is_symlink() {
                (PathKind::Link, 0)
            } else if ft.is_dir() {
                (PathKind::Directory, 0)
            } else if ft.is_file() {
                (PathKind::File, md.len())
            } else {
                continue;
            };
            let link_target = ft
                .is_symlink()
                .then(|| std::fs::read_link(e.path()).ok())
                .flatten()
                .map(|t| shown(&t));
            let blake3 = (hash && kind == PathKind::File)
                .then(|| hash_file(e.path()).ok())
                .flatten();
            out.push(nlds_core::versions::LocalEntry {
                path: shown(e.path()),
                kind,
                size,
                mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                link_target,
                blake3,
            });
        }
    }
    out
}

fn hash_file(p: &Path) -> io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(p)?)?;
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: &Path) -> String {
        p.to_string_lossy().into_owned()
    }

    #[cfg(unix)]
    #[test]
    fn scan_counts_like_the_indexer() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/one"), b"12345").unwrap();
        std::fs::write(root.join("a/b/two"), b"123").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link-to-etc")).unwrap();
        let single = dir.path().join("single");
        std::fs::write(&single, b"xy").unwrap();
        let missing = dir.path().join("missing");
        let scan = scan(&[s(&root), s(&single), s(&missing), s(&root.join("a/one"))]);
        assert_eq!(
            scan.paths[0],
            PathScan {
                path: s(&root),
                kind: ScanKind::Directory,
                counts: Counts {
                    files: 2,
                    directories: 3,
                    links: 1,
                    bytes: 8
                }
            }
        );
        assert_eq!(scan.paths[1].kind, ScanKind::File);
        assert_eq!(scan.paths[1].counts.bytes, 2);
        assert_eq!(scan.paths[2].kind, ScanKind::Missing);
        assert_eq!(scan.paths[3].kind, ScanKind::File);
        assert_eq!(
            scan.total,
            Counts {
                files: 3,
                directories: 3,
                links: 1,
                bytes: 10
            },
            "a file inside a listed directory counts once; /etc is not followed"
        );
        assert_eq!(scan.found(), 3);
        assert_eq!(
            scan.problems,
            vec![FailedFile::new(
                s(&missing),
                ErrorCode::PathMissing,
                "no such file or directory"
            )]
        );
    }

    #[test]
    fn a_regex_of_what_a_put_would_store() {
        let scan = LocalScan {
            paths: vec![
                PathScan {
                    path: "/d/run (1)".into(),
                    kind: ScanKind::Directory,
                    counts: Counts::default(),
                },
                PathScan {
                    path: "/d/a+b.nc".into(),
                    kind: ScanKind::File,
                    counts: Counts::default(),
                },
                PathScan {
                    path: "/d/gone".into(),
                    kind: ScanKind::Missing,
                    counts: Counts::default(),
                },
            ],
            ..LocalScan::default()
        };
        let re = stored_paths_regex(&scan).unwrap();
        assert_eq!(re, r"^(?:/d/run \(1\)(?:/.*)?|/d/a\+b\.nc)$");
        assert_eq!(regex_escape(r"a\b[c]^$"), r"a\\b\[c\]\^\$");
        let none = LocalScan {
            paths: vec![scan.paths[2].clone()],
            ..LocalScan::default()
        };
        assert_eq!(stored_paths_regex(&none), None);
    }

    #[test]
    fn destinations_compare_content() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_str().unwrap();
        let entry = |path: &str, content: &[u8]| FileEntry {
            path: path.into(),
            kind: PathKind::File,
            link_target: None,
            size: content.len() as u64,
            uid: 0,
            gid: 0,
            mode: 0o644,
            mtime: chrono::DateTime::UNIX_EPOCH,
            holding_id: 1,
            label: "l".into(),
            user: "u".into(),
            group: "g".into(),
            transaction_id: uuid::Uuid::nil(),
            ingest_time: chrono::DateTime::UNIX_EPOCH,
            blake3: Some(blake3::hash(content).to_hex().to_string()),
            locations: vec![],
            recalling: false,
            last_access: None,
            access_count: 0,
            version: 1,
            xattrs: Vec::new(),
        };
        std::fs::create_dir_all(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/same"), b"same").unwrap();
        std::fs::write(dir.path().join("d/diff"), b"diff").unwrap();
        let files = vec![
            entry("/d/new", b"x"),
            entry("/d/same", b"same"),
            entry("/d/diff", b"DIFF"),
        ];
        let acts: Vec<DestAction> = destinations(&files, Some(target), false)
            .iter()
            .map(|d| d.action)
            .collect();
        assert_eq!(
            acts,
            vec![DestAction::Restore, DestAction::Skip, DestAction::Conflict]
        );
        let d = destinations(&files, Some(target), true);
        assert_eq!(d[2].action, DestAction::Overwrite);
        assert_eq!(d[0].destination, format!("{target}/d/new"));
        assert_eq!(
            destination_of("/a/b", None),
            PathBuf::from("/a/b"),
            "without a target, files go back where they were"
        );
    }
}
