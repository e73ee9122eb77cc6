//! Tests of the handle-based file-system layer: resolution as a user (links followed or refused,
//! protected_symlinks), and in-process versions of the races (a directory swapped for a link to
//! a root-only directory between two steps redirects nothing). They need root (to give files
//! away and act for another account) and fail without it, unless skipping was asked for
//! (`nlds_hooks::skip`).

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nlds_core::ErrorCode;

use super::read::{self, OpenError};
use super::restore::{self, Restorer};
use super::temp_file::TempFile;
use super::*;
use crate::posix::{Ownership, PosixPolicy, READ, SEARCH, WRITE};

fn root_or_skip(test: &str) -> bool {
    rustix::process::geteuid().is_root()
        || !nlds_hooks::skip::missing(
            test,
            "not running as root",
            "it gives files away: run the tests as root, as CI does",
        )
}

/// An account every host has, that is not root: `nobody`.
fn nobody() -> (String, u32, u32) {
    let u = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    ("nobody".into(), u.uid.as_raw(), u.gid.as_raw())
}

fn as_nobody() -> UserFs {
    UserFs::new(PosixPolicy::default(), "nobody")
}

fn own(p: &Path, uid: u32, gid: u32, mode: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    if !std::fs::symlink_metadata(p).unwrap().is_symlink() {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn mkdir(p: &Path, uid: u32, gid: u32, mode: u32) {
    std::fs::create_dir_all(p).unwrap();
    own(p, uid, gid, mode);
}

/// A tree everyone may search, with a root-only directory `secret/` holding `victim` (root,
/// 0600, "root only").
fn tree() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    own(d.path(), 0, 0, 0o755);
    let secret = d.path().join("secret");
    mkdir(&secret, 0, 0, 0o700);
    std::fs::write(secret.join("victim"), b"root only").unwrap();
    own(&secret.join("victim"), 0, 0, 0o600);
    (d, secret)
}

/// The root-only directory and its file are as they were.
fn untouched(secret: &Path) {
    let m = std::fs::metadata(secret).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0o700));
    let names: Vec<_> = std::fs::read_dir(secret)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["victim"],
        "nothing was added to the root-only directory"
    );
    let v = secret.join("victim");
    let m = std::fs::metadata(&v).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0o600));
    assert_eq!(std::fs::read(&v).unwrap(), b"root only");
}

/// Moves `dir` away (to `<dir>.moved`) and puts a link to `to` in its place.
fn swap(dir: &Path, to: &Path) -> PathBuf {
    let moved = dir.with_extension("moved");
    std::fs::rename(dir, &moved).unwrap();
    std::os::unix::fs::symlink(to, dir).unwrap();
    moved
}

#[test]
fn a_link_on_the_way_is_followed_only_where_the_user_may_search() {
    if !root_or_skip("a_link_on_the_way_is_followed_only_where_the_user_may_search") {
        return;
    }
    let (d, secret) = tree();
    let r = d.path();
    mkdir(&secret.join("sub"), 0, 0, 0o755);
    mkdir(&r.join("open/sub"), 0, 0, 0o755);
    std::os::unix::fs::symlink("secret/sub", r.join("to-secret")).unwrap();
    std::os::unix::fs::symlink(r.join("open/sub"), r.join("to-open")).unwrap();
    std::os::unix::fs::symlink("../open/./sub", r.join("secret/up")).unwrap();

    let mut fs = as_nobody();
    // A link the user could follow: followed, and the handle is the directory it names.
    let dir = fs.open_dir(&r.join("to-open"), SEARCH).unwrap();
    assert_eq!(dir.path(), r.join("open/sub"));
    let m = std::fs::metadata(r.join("open/sub")).unwrap();
    assert_eq!((dir.meta().dev, dir.meta().ino), (m.dev(), m.ino()));
    // Into a directory they may not search: refused, naming it.
    let e = fs.open_dir(&r.join("to-secret"), SEARCH).unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    assert_eq!(
        e.reason,
        format!(
            "user nobody may not search directory {} (mode 0700, owner root, group root)",
            secret.display()
        )
    );
    // The same through the indexer: a failure with its reason, not "no objection".
    let f = r.join("to-secret/f");
    std::fs::write(secret.join("sub/f"), b"x").unwrap();
    let idx = crate::indexer::index_as(
        &[f.to_string_lossy().into_owned()],
        &crate::config::IndexConfig {
            batch_files: 10,
            batch_bytes: 1 << 20,
            ..Default::default()
        },
        as_nobody(),
    );
    assert!(idx.batches.is_empty());
    assert_eq!(idx.failed[0].code, ErrorCode::PermissionDenied);
    assert!(
        idx.failed[0].reason.contains("may not search directory"),
        "{}",
        idx.failed[0].reason
    );
    // With the checks off the process's own access decides (root: everything), same code.
    let mut svc = UserFs::service();
    let dir = svc.open_dir(&r.join("to-secret"), SEARCH).unwrap();
    assert_eq!(dir.path(), secret.join("sub"));
    // A relative link with `..` and `.` in it resolves from the link's directory.
    let dir = svc.open_dir(&secret.join("up"), SEARCH).unwrap();
    assert_eq!(dir.path(), r.join("open/sub"));
    // Paths asked for never contain `..`.
    let e = svc.open_dir(&r.join("open/../secret"), 0).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    // A loop of links ends.
    std::os::unix::fs::symlink("loop2", r.join("loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", r.join("loop2")).unwrap();
    let e = svc.open_dir(&r.join("loop1"), 0).unwrap_err();
    assert!(e.reason.contains("symbolic links"), "{}", e.reason);
    // A file where a directory is needed, and a missing directory: failures with reasons.
    let e = svc.open_dir(&secret.join("victim"), 0).unwrap_err();
    assert!(e.reason.contains("not a directory"), "{}", e.reason);
    let e = svc.open_dir(&r.join("nope/deeper"), 0).unwrap_err();
    assert!(e.missing && e.code == ErrorCode::PathMissing, "{e:?}");
}

#[test]
fn protected_symlinks_are_emulated() {
    if !root_or_skip("protected_symlinks_are_emulated") {
        return;
    }
    let (d, _secret) = tree();
    let r = d.path();
    let (_, uid, gid) = nobody();
    let sticky = r.join("sticky");
    mkdir(&sticky, 0, 0, 0o1777);
    mkdir(&r.join("open"), 0, 0, 0o755);
    for (name, owner) in [("by-other", 1), ("by-user", uid), ("by-dir-owner", 0)] {
        let l = sticky.join(name);
        std::os::unix::fs::symlink(r.join("open"), &l).unwrap();
        own(&l, owner, gid, 0);
    }
    let mut fs = as_nobody();
    let e = fs.open_dir(&sticky.join("by-other"), SEARCH).unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    assert!(
        e.reason.starts_with(&format!(
            "user nobody may not follow the symbolic link {}",
            sticky.join("by-other").display()
        )) && e.reason.contains("protected_symlinks"),
        "{}",
        e.reason
    );
    assert!(fs.open_dir(&sticky.join("by-user"), SEARCH).is_ok());
    assert!(fs.open_dir(&sticky.join("by-dir-owner"), SEARCH).is_ok());
    // Not sticky and world-writable: any link is followed.
    own(&sticky, 0, 0, 0o755);
    assert!(fs.open_dir(&sticky.join("by-other"), SEARCH).is_ok());
}

#[test]
fn no_link_is_followed_below_a_target() {
    if !root_or_skip("no_link_is_followed_below_a_target") {
        return;
    }
    let (d, secret) = tree();
    let (_, uid, gid) = nobody();
    let t = d.path().join("t");
    mkdir(&t, uid, gid, 0o755);
    std::os::unix::fs::symlink(&secret, t.join("data")).unwrap();
    let target = t.to_string_lossy().into_owned();
    let owner = Ownership::Requester { uid, gid };
    let mut r = Restorer::new(as_nobody(), owner, Some(&target)).unwrap();
    let f = r
        .parent("/data/f", &t.join("data/f"), (uid, gid))
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::Forbidden);
    assert_eq!(
        f.reason,
        format!(
            "/data/f: {} is a symbolic link; no link is followed below the target directory {}",
            t.join("data").display(),
            t.display()
        )
    );
    let f = r
        .make_directory("/data", &t.join("data"), (uid, gid))
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::Forbidden, "{}", f.reason);
    untouched(&secret);
    // The target itself may be reached through a link (resolved as the user).
    std::os::unix::fs::symlink(&t, d.path().join("t-link")).unwrap();
    let via = d.path().join("t-link").to_string_lossy().into_owned();
    assert!(Restorer::new(as_nobody(), owner, Some(&via)).is_ok());
    // A target the user may not write into fails as a whole, naming it.
    let e = Restorer::new(as_nobody(), owner, Some(&d.path().to_string_lossy()))
        .err()
        .unwrap();
    assert_eq!(e.0, ErrorCode::PermissionDenied);
    assert!(e.1.contains("may not write to directory"), "{}", e.1);
}

/// The race of issue 11 item 1, in-process: a directory made by the restore is swapped for a
/// link to a root-only directory before each later step; every step still lands in the
/// directory the restore made, and the root-only one is untouched.
#[test]
fn every_restore_step_acts_on_the_handle_not_the_path() {
    if !root_or_skip("every_restore_step_acts_on_the_handle_not_the_path") {
        return;
    }
    let (_, uid, gid) = nobody();
    for owner in [Ownership::Requester { uid, gid }, Ownership::Recorded] {
        let (d, secret) = tree();
        let t = d.path().join("t");
        mkdir(&t, uid, gid, 0o755);
        let target = t.to_string_lossy().into_owned();
        let mut r = Restorer::new(as_nobody(), owner, Some(&target)).unwrap();
        let x = t.join("x");
        // 1. The directory is made (and given away through its handle) ...
        assert!(!r.make_directory("/x", &x, (uid, gid)).unwrap());
        let m = std::fs::metadata(&x).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid));
        // ... then swapped for a link to the root-only directory.
        let moved = swap(&x, &secret);
        // 2. A file in it: temporary file, owner/mode/time, into place.
        let (dir, name) = r.parent("/x/f", &x.join("f"), (uid, gid)).unwrap();
        let (mut temp, mut file) = TempFile::create(&dir, &name, &x.join("f"), "part").unwrap();
        assert!(temp.path().starts_with(&x));
        file.write_all(b"restored").unwrap();
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        temp.finish(&file, Some((uid, gid)), 0o755, mtime, ("/f", &[]))
            .unwrap();
        drop(file);
        temp.persist(&name, &x.join("f"), false).unwrap();
        let f = moved.join("f");
        assert_eq!(std::fs::read(&f).unwrap(), b"restored");
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (uid, gid, 0o755));
        assert_eq!(m.mtime(), 1_600_000_000);
        // 3. A link in it.
        let (dir, name) = r.parent("/x/l", &x.join("l"), (uid, gid)).unwrap();
        restore::make_link(
            "/x/l",
            &dir,
            &name,
            &x.join("l"),
            std::ffi::OsStr::new("f"),
            Some((uid, gid)),
            restore::Replace::default(),
        )
        .unwrap();
        let m = std::fs::symlink_metadata(moved.join("l")).unwrap();
        assert!(m.is_symlink());
        assert_eq!((m.uid(), m.gid()), (uid, gid));
        // 4. The directory's owner, mode and time.
        let (dir, existed) = r.directory(&x).unwrap();
        assert!(!existed);
        restore::finish_dir(
            &dir,
            Some((uid, gid)),
            false,
            existed,
            0o750,
            mtime,
            ("/d", &[]),
        )
        .unwrap();
        let m = std::fs::metadata(&moved).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (uid, 0o750));
        // A temporary file removed after a failure: through the handle too.
        let (temp, _file) = TempFile::create(&dir, OsStr::new("g"), &x.join("g"), "part").unwrap();
        temp.discard();
        assert_eq!(
            std::fs::read_dir(&moved).unwrap().count(),
            2,
            "f and l only"
        );
        untouched(&secret);
    }
}

/// A directory above the restore's files swapped after the restore found it: a parent missing
/// below it is made in the directory found, never through the link.
#[test]
fn directories_made_later_go_into_the_directory_found() {
    if !root_or_skip("directories_made_later_go_into_the_directory_found") {
        return;
    }
    let (_, uid, gid) = nobody();
    let (d, secret) = tree();
    let home = d.path().join("home");
    mkdir(&home, uid, gid, 0o755);
    let owner = Ownership::Requester { uid, gid };
    let mut r = Restorer::new(as_nobody(), owner, None).unwrap();
    // The original path's parent exists: found (and kept) by handle.
    let p = home.join("a");
    let path = p.to_string_lossy().into_owned();
    r.parent(&path, &p, (uid, gid)).unwrap();
    let moved = swap(&home, &secret);
    let deep = home.join("b/c/f");
    let deep_path = deep.to_string_lossy().into_owned();
    let (dir, _) = r.parent(&deep_path, &deep, (uid, gid)).unwrap();
    assert_eq!(dir.path(), home.join("b/c"));
    let m = std::fs::metadata(moved.join("b/c")).unwrap();
    assert_eq!((m.uid(), m.gid()), (uid, gid));
    untouched(&secret);
    // Where the user may not write, nothing is made.
    let closed = d.path().join("closed");
    mkdir(&closed, 0, 0, 0o755);
    let p = closed.join("x/f");
    let f = r.parent(&p.to_string_lossy(), &p, (uid, gid)).unwrap_err();
    assert_eq!(f.code, ErrorCode::PermissionDenied);
    assert!(
        f.reason.contains(&format!(
            "user nobody may not write to directory {} (mode 0755, owner root, group root)",
            closed.display()
        )),
        "{}",
        f.reason
    );
    assert!(!closed.join("x").exists());
}

/// The race of issue 11 item 2, in-process: the directory of a file to put (or a directory
/// being indexed) is swapped for a link to a root-only directory after it was resolved; what is
/// read is still the user's.
#[test]
fn put_reads_through_the_handle_that_was_checked() {
    if !root_or_skip("put_reads_through_the_handle_that_was_checked") {
        return;
    }
    let (_, uid, gid) = nobody();
    let (d, secret) = tree();
    let mine = d.path().join("mine");
    mkdir(&mine, uid, gid, 0o755);
    std::fs::write(mine.join("victim"), b"the user's").unwrap();
    own(&mine.join("victim"), uid, gid, 0o644);
    let mut fs = as_nobody();
    let dir = fs.open_dir(&mine, SEARCH).unwrap();
    let seen = read::lstat_at(&mut fs, &dir, OsStr::new("victim")).unwrap();
    let listing = {
        let parent = fs.open_dir(d.path(), SEARCH).unwrap();
        let m = read::lstat_at(&mut fs, &parent, OsStr::new("mine")).unwrap();
        read::open_listing(&mut fs, &parent, OsStr::new("mine"), &m).unwrap()
    };
    swap(&mine, &secret);
    let mut opened = read::open_file(&mut fs, &dir, OsStr::new("victim"), &mine.join("victim"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(opened.meta.same(&seen));
    let mut content = Vec::new();
    opened.file.read_to_end(&mut content).unwrap();
    assert_eq!(content, b"the user's");
    assert_eq!(read::list(&listing).unwrap(), ["victim"]);
    // Through the path, now a link to the root-only directory: refused.
    let e = fs.open_dir(&mine, SEARCH).unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{}", e.reason);
    untouched(&secret);
}

#[test]
fn put_opens_only_regular_files_the_user_may_read() {
    if !root_or_skip("put_opens_only_regular_files_the_user_may_read") {
        return;
    }
    let (d, secret) = tree();
    let r = d.path();
    let fifo = r.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink(secret.join("victim"), r.join("link")).unwrap();
    let mut fs = as_nobody();
    let dir = fs.open_dir(r, READ | SEARCH).unwrap();
    match read::open_file(&mut fs, &dir, OsStr::new("fifo"), &fifo) {
        Err(OpenError::NotAFile(m)) => assert_eq!(m.kind_name(), "a FIFO"),
        other => panic!("{:?}", other.map(|o| o.meta)),
    }
    match read::open_file(&mut fs, &dir, OsStr::new("link"), &r.join("link")) {
        Err(OpenError::NotAFile(m)) => assert!(m.is_symlink()),
        other => panic!("{:?}", other.map(|o| o.meta)),
    }
    let sdir = UserFs::service().open_dir(&secret, 0).unwrap();
    match read::open_file(&mut fs, &sdir, OsStr::new("victim"), &secret.join("victim")) {
        Err(OpenError::Denied(d)) => assert_eq!(d.code, ErrorCode::PermissionDenied),
        other => panic!("{:?}", other.map(|o| o.meta)),
    }
    match read::open_file(&mut fs, &dir, OsStr::new("gone"), &r.join("gone")) {
        Err(OpenError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{:?}", other.map(|o| o.meta)),
    }
    let _ = WRITE;
}

#[test]
fn existing_directories_are_finished_through_their_handle_or_left_alone() {
    if !root_or_skip("existing_directories_are_finished_through_their_handle_or_left_alone") {
        return;
    }
    let (_, uid, gid) = nobody();
    let (d, secret) = tree();
    let t = d.path().join("t");
    mkdir(&t, uid, gid, 0o755);
    mkdir(&t.join("x"), uid, gid, 0o700);
    mkdir(&t.join("y"), 0, 0, 0o755);
    mkdir(&t.join("s"), 0, 0, 0o1777);
    std::fs::write(t.join("s/f"), b"root's").unwrap();
    let target = t.to_string_lossy().into_owned();
    let owner = Ownership::Requester { uid, gid };
    let mut r = Restorer::new(as_nobody(), owner, Some(&target)).unwrap();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    // The user's own: owner, mode and time set, on the inode found (even once swapped).
    assert!(r.make_directory("/x", &t.join("x"), (uid, gid)).unwrap());
    let moved = swap(&t.join("x"), &secret);
    let (dir, existed) = r.directory(&t.join("x")).unwrap();
    restore::finish_dir(
        &dir,
        Some((uid, gid)),
        false,
        existed,
        0o750,
        mtime,
        ("/d", &[]),
    )
    .unwrap();
    let m = std::fs::metadata(&moved).unwrap();
    assert_eq!(
        (m.uid(), m.mode() & 0o7777, m.mtime()),
        (uid, 0o750, 1_500_000_000)
    );
    // Someone else's: left as it is.
    assert!(r.make_directory("/y", &t.join("y"), (uid, gid)).unwrap());
    let (dir, existed) = r.directory(&t.join("y")).unwrap();
    restore::finish_dir(
        &dir,
        Some((uid, gid)),
        false,
        existed,
        0o700,
        mtime,
        ("/d", &[]),
    )
    .unwrap();
    let m = std::fs::metadata(t.join("y")).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o755));
    // A sticky directory: someone else's file there may not be replaced.
    let f = r.parent("/s/f", &t.join("s/f"), (uid, gid)).unwrap_err();
    assert_eq!(f.code, ErrorCode::PermissionDenied);
    assert!(
        f.reason.contains("may not replace") && f.reason.contains("sticky directory"),
        "{}",
        f.reason
    );
    untouched(&secret);
}

/// The files a batch moves into place have their directories fsynced once each, when the batch
/// asks, not once per file; every file is in place before that.
#[test]
fn directories_are_synced_once_for_all_the_files_moved_into_them() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t");
    for sub in ["a", "b"] {
        std::fs::create_dir_all(t.join(sub)).unwrap();
    }
    let target = t.to_string_lossy().into_owned();
    let fs = UserFs::new(PosixPolicy::SERVICE, "svc");
    let mut r = Restorer::new(fs, Ownership::Process, Some(&target)).unwrap();
    let syncs = restore::DirSyncs::default();
    for path in ["/a/f1", "/a/f2", "/b/f3", "/a/f4"] {
        let to = t.join(&path[1..]);
        let (dir, name) = r.parent(path, &to, (0, 0)).unwrap();
        let (mut temp, mut file) = TempFile::create(&dir, &name, &to, "part").unwrap();
        file.write_all(path.as_bytes()).unwrap();
        temp.finish(&file, None, 0o644, SystemTime::now(), (path, &[]))
            .unwrap();
        drop(file);
        temp.persist_deferred(&name, &to, false, &syncs).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), path.as_bytes());
    }
    assert_eq!(syncs.sync(), 2, "a and b, once each");
    assert_eq!(syncs.sync(), 0, "nothing left to sync");
}

/// A file of a restore that replaces nothing has no name in its directory while it is written
/// (`O_TMPFILE`), gets its final name whole (owner, mode, time, content) when it is moved into
/// place, is refused a name that appeared meanwhile (the file there kept as it was), and leaves
/// nothing when it is given up or its process is killed (its last descriptor closes).
#[test]
fn an_unnamed_file_appears_only_whole_and_leaves_nothing_when_given_up() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t");
    std::fs::create_dir_all(&t).unwrap();
    let target = t.to_string_lossy().into_owned();
    let fs = UserFs::new(PosixPolicy::SERVICE, "svc");
    let mut r = Restorer::new(fs, Ownership::Process, Some(&target)).unwrap();
    let entries = || std::fs::read_dir(&t).unwrap().count();

    // Written, finished and linked into place.
    let to = t.join("f");
    let (dir, name) = r.parent("/f", &to, (0, 0)).unwrap();
    let (mut temp, mut file) = TempFile::create_unnamed(&dir, &name, &to, "part", None).unwrap();
    assert!(temp.is_unnamed(), "this file system has O_TMPFILE");
    assert_eq!(temp.path(), to, "messages name the destination");
    file.write_all(b"restored").unwrap();
    assert_eq!(entries(), 0, "nothing in the directory while it is written");
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    temp.finish(&file, None, 0o640, mtime, ("/f", &[])).unwrap();
    drop(file);
    assert_eq!(entries(), 0, "nor once it is finished");
    temp.persist(&name, &to, false).unwrap();
    assert_eq!(std::fs::read(&to).unwrap(), b"restored");
    let m = std::fs::metadata(&to).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.mtime(), m.nlink()),
        (0o640, 1_600_000_000, 1)
    );
    drop(temp);
    assert_eq!(entries(), 1, "the file only");

    // A name that appeared meanwhile is not replaced.
    let (mut temp, mut file) = TempFile::create_unnamed(&dir, &name, &to, "part", None).unwrap();
    file.write_all(b"other").unwrap();
    drop(file);
    let err = temp.persist(&name, &to, false).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert!(
        temp.persist(&name, &to, true).is_err(),
        "an unnamed file never replaces one"
    );
    temp.discard();
    assert_eq!(std::fs::read(&to).unwrap(), b"restored", "kept as it was");

    // Given up, or forgotten as a killed process forgets it: nothing is left.
    let g = t.join("g");
    let (temp, mut file) =
        TempFile::create_unnamed(&dir, OsStr::new("g"), &g, "part", None).unwrap();
    file.write_all(b"partial").unwrap();
    drop(file);
    temp.discard();
    let (temp, file) = TempFile::create_unnamed(&dir, OsStr::new("g"), &g, "part", None).unwrap();
    std::mem::forget(temp);
    drop(file);
    assert_eq!(
        entries(),
        1,
        "f only: {:?}",
        std::fs::read_dir(&t).unwrap().collect::<Vec<_>>()
    );
}
