//! Issue 14, item 5: faithful copies of a hostile tree.
//!
//! Embedded mode (SQLite, in-process bus, the embedded S3 server on disk) with
//! `posix_checks = "user"`: a real unprivileged account, carol (made with useradd), puts a tree
//! of hers full of awkward entries and gets it back into an empty directory of hers. Every entry
//! is either restored identical (bytes, mode, modification time, link target, hard-link
//! identity, sparseness by `st_blocks`, extended attributes and ACLs) or reported as a failed
//! file of the put under its exact path with the reason that applies to it. Needs root (useradd,
//! chown, files carol may not read); under CI it is never skipped.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use nlds_core::api::TransactionStatus;
use nlds_core::{ErrorCode, State, pathname};
use nlds_embedded::{Embedded, EmbeddedOptions};
use nlds_server::ServerSettings;
use nlds_workers::posix::PosixChecks;
use serde_json::json;

use crate::helpers::{Api, restored, temp};
use crate::posix::{SystemUser, root_or_skip};

/// The sparse file: 2 GiB, three short runs of data.
const SPARSE_LEN: u64 = 2 << 30;
/// Empty files in one directory.
const MANY: usize = 5_000;

fn raw(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn own(p: &Path, user: &SystemUser) {
    std::os::unix::fs::lchown(p, Some(user.uid), Some(user.gid)).unwrap();
}

fn write(p: &Path, content: &[u8], user: &SystemUser, mode: u32) {
    std::fs::write(p, content).unwrap();
    own(p, user);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(p: &Path, user: &SystemUser, mode: u32) {
    std::fs::create_dir(p).unwrap();
    own(p, user);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The kept extended attributes of `p` (not following a link): name -> value.
fn xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 64 << 10];
    let Ok(n) = rustix::fs::llistxattr(p, &mut names[..]) else {
        return out;
    };
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"user.") || name.starts_with(b"system.posix_acl_") {
            let mut v = vec![0u8; 64 << 10];
            let len = rustix::fs::lgetxattr(p, name, &mut v[..]).unwrap();
            v.truncate(len);
            out.insert(name.to_vec(), v);
        }
    }
    out
}

/// A POSIX access ACL in the kernel's form: owner rw, `uid` r, group r, mask r, other none.
fn acl(uid: u32) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    let undefined = u32::MAX;
    for (tag, perm, id) in [
        (0x01u16, 6u16, undefined), // ACL_USER_OBJ
        (0x02, 4, uid),             // ACL_USER
        (0x04, 4, undefined),       // ACL_GROUP_OBJ
        (0x10, 4, undefined),       // ACL_MASK
        (0x20, 0, undefined),       // ACL_OTHER
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

fn blake3_of(p: &Path) -> String {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(p).unwrap()).unwrap();
    h.finalize().to_hex().to_string()
}

/// Every entry under `root` (not following links), relative raw path -> its metadata.
fn entries(root: &Path) -> BTreeMap<OsString, std::fs::Metadata> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().as_os_str().to_owned();
        out.insert(rel, std::fs::symlink_metadata(e.path()).unwrap());
    }
    out
}

/// What the put must fail: the entry (relative raw path), its error code, and what its reason
/// must say.
struct Expected {
    rel: OsString,
    code: ErrorCode,
    says: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_tree_is_restored_identical_or_failed_by_name() {
    if !root_or_skip("a_hostile_tree_is_restored_identical_or_failed_by_name") {
        return;
    }
    let carol = SystemUser::create("f");
    let data = temp();
    std::fs::write(
        data.path().join("tokens.toml"),
        format!(
            "[[token]]\ntoken = \"faithful-carol-token-0123456789\"\nuser = \"{c}\"\n\
             groups = [\"{c}\"]\n",
            c = carol.name
        ),
    )
    .unwrap();
    let mut settings = ServerSettings::default();
    settings.workers.posix_checks = Some(PosixChecks::User);
    let embedded = Embedded::start(EmbeddedOptions {
        data_dir: data.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap();
    let api = Api::new(&embedded.url, &embedded.token);

    // The tree, carol's, in a directory everyone may search.
    let top = temp();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = top.path().join("src");
    mkdir(&src, &carol, 0o755);
    let mut expected: Vec<Expected> = Vec::new();

    // Names: a newline, Latin-1 (a file, and a directory with a file in it), 255 bytes.
    write(
        &src.join("new\nline.txt"),
        b"a newline in the name",
        &carol,
        0o644,
    );
    write(
        &src.join(raw(b"caf\xe9.txt")),
        b"latin-1 name",
        &carol,
        0o640,
    );
    mkdir(&src.join(raw(b"r\xe9pertoire")), &carol, 0o750);
    write(
        &src.join(raw(b"r\xe9pertoire")).join(raw(b"\xff\xfe\x80")),
        b"bytes that are no UTF-8 at all",
        &carol,
        0o600,
    );
    write(
        &src.join("n".repeat(255)),
        b"a name of 255 bytes",
        &carol,
        0o644,
    );
    // A path of more than 2,800 bytes.
    let mut deep = src.clone();
    let mut rel_len = 0;
    while rel_len < 2_800 {
        let name = format!("{}{}", "d".repeat(199), rel_len / 200 % 10);
        deep.push(&name);
        mkdir(&deep, &carol, 0o755);
        rel_len += name.len() + 1;
    }
    write(&deep.join("bottom.txt"), b"at the bottom", &carol, 0o644);
    assert!(deep.join("bottom.txt").as_os_str().len() > 2_800);
    // Special files.
    let fifo = src.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    own(&fifo, &carol);
    expected.push(Expected {
        rel: "fifo".into(),
        code: ErrorCode::BadRequest,
        says: "is a FIFO",
    });
    let socket = src.join("socket");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    own(&socket, &carol);
    expected.push(Expected {
        rel: "socket".into(),
        code: ErrorCode::BadRequest,
        says: "is a socket",
    });
    // What carol may not read: root's 0600 file, root's 0700 directory (and what is in it).
    let secret = src.join("secret");
    std::fs::write(&secret, b"root's, not carol's").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    expected.push(Expected {
        rel: "secret".into(),
        code: ErrorCode::PermissionDenied,
        says: "secret",
    });
    let closed = src.join("closed");
    std::fs::create_dir(&closed).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(closed.join("inside"), b"behind a closed door").unwrap();
    expected.push(Expected {
        rel: "closed".into(),
        code: ErrorCode::PermissionDenied,
        says: "may not list directory",
    });
    // A real name with a character the encoding reserves.
    write(&src.join("x\u{10FEE9}y"), b"reserved", &carol, 0o644);
    expected.push(Expected {
        rel: "x\u{10FEE9}y".into(),
        code: ErrorCode::BadRequest,
        says: "reserves",
    });
    // Symbolic links: loops, out of the tree, dangling, to a directory of the tree.
    for (name, target) in [
        ("loop1", "loop2"),
        ("loop2", "loop1"),
        ("self", "self"),
        ("passwd", "/etc/passwd"),
        ("root", "/"),
        ("up", "../.."),
        ("dangling", "/nonexistent/nlds-faithful"),
    ] {
        let l = src.join(name);
        std::os::unix::fs::symlink(target, &l).unwrap();
        own(&l, &carol);
    }
    let l = src.join(raw(b"lien-\xe9"));
    std::os::unix::fs::symlink(raw(b"caf\xe9.txt"), &l).unwrap();
    own(&l, &carol);
    // Hard links: three names of one inode (two directories), two of another.
    let hl = src.join("hl");
    mkdir(&hl, &carol, 0o755);
    write(&hl.join("a"), b"one inode, three names", &carol, 0o640);
    std::fs::hard_link(hl.join("a"), hl.join("b")).unwrap();
    mkdir(&src.join("hl2"), &carol, 0o755);
    std::fs::hard_link(hl.join("a"), src.join("hl2/c")).unwrap();
    write(&hl.join("p"), b"another inode, two names", &carol, 0o600);
    std::fs::hard_link(hl.join("p"), hl.join(raw(b"q\xe9"))).unwrap();
    // A 2 GiB sparse file with three short runs of data.
    let sparse = src.join("sparse");
    {
        let mut f = std::fs::File::create(&sparse).unwrap();
        f.set_len(SPARSE_LEN).unwrap();
        for at in [0, SPARSE_LEN / 2 + 12_345, SPARSE_LEN - 10] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(b"data here").unwrap();
        }
    }
    own(&sparse, &carol);
    // 5,000 empty files in one directory.
    let many = src.join("many");
    mkdir(&many, &carol, 0o755);
    for i in 0..MANY {
        write(&many.join(format!("e{i:05}")), b"", &carol, 0o644);
    }
    // A read-only directory whose entries two get batches restore (1,000 entries a batch): the
    // second writes into it after the first gave it its recorded mode.
    let read_only = src.join("read-only");
    mkdir(&read_only, &carol, 0o755);
    for i in 0..1_500 {
        write(&read_only.join(format!("r{i:04}")), b"r", &carol, 0o444);
    }
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Extended attributes and an ACL, where the file system has them.
    let attributed = src.join("attributed.txt");
    write(&attributed, b"with attributes", &carol, 0o644);
    let has_xattrs = rustix::fs::setxattr(
        &attributed,
        "user.comment",
        b"\x00binary\xff value",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    if has_xattrs {
        rustix::fs::setxattr(
            &hl,
            "user.dir-note",
            b"on a directory",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::setxattr(
            &attributed,
            "system.posix_acl_access",
            &acl(4_000_000),
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        assert!(!xattrs(&attributed).is_empty());
    } else {
        eprintln!(
            "NOTE: {} has no user extended attributes: not checked",
            top.path().display()
        );
    }
    // Times: every entry's modification time is set apart from "now", then the directories'.
    let when = |i: usize| {
        std::time::SystemTime::UNIX_EPOCH
            + std::time::Duration::new(1_600_000_000 + i as u64 * 7, 123_456_789 + i as u32)
    };
    let all = entries(&src);
    for (i, (rel, m)) in all.iter().enumerate().rev() {
        if m.is_file() || m.is_dir() {
            let f = std::fs::File::options()
                .read(true)
                .open(src.join(rel))
                .unwrap();
            f.set_times(std::fs::FileTimes::new().set_modified(when(i)))
                .unwrap();
        }
    }

    // What the tree is now (times set).
    let all = entries(&src);

    // Put the whole tree as carol.
    let src_s = pathname::encode(src.as_os_str()).unwrap();
    let put = api
        .put_and_wait(json!({"paths": [src_s], "label": "hostile"}))
        .await;
    drop(listener);
    assert_eq!(put.state, State::CompleteWithErrors, "{put:#?}");
    check_failures(&put, &src, &expected);

    // Hard links are stored once: one object per inode (the embedded S3's files).
    let objects = object_files(&data.path().join("objects"));
    let stored_files = all
        .iter()
        .filter(|(rel, m)| {
            m.is_file() && !expected.iter().any(|e| Path::new(rel).starts_with(&e.rel))
        })
        .count();
    assert_eq!(
        objects,
        stored_files - 3,
        "one object per stored regular file, the five hard-linked names of two inodes sharing two"
    );

    // Get it back into an empty directory of carol's.
    let target = top.path().join("target");
    mkdir(&target, &carol, 0o755);
    let get = api
        .get_and_wait(json!({
            "paths": [src_s],
            "target": pathname::encode(target.as_os_str()).unwrap(),
        }))
        .await;
    assert_eq!(get.state, State::Complete, "{get:#?}");
    let back = restored(&target, &src);

    // Every entry: failed by name, or identical.
    let got = entries(&back);
    let mut inodes: HashMap<(u64, u64), u64> = HashMap::new();
    let mut problems = Vec::new();
    for (rel, m) in &all {
        let failed = expected.iter().any(|e| Path::new(rel).starts_with(&e.rel));
        let r = got.get(rel);
        if failed {
            if r.is_some() {
                problems.push(format!("{rel:?} failed but was restored"));
            }
            continue;
        }
        let Some(r) = r else {
            problems.push(format!("{rel:?} was not restored"));
            continue;
        };
        let shown = format!("{rel:?}");
        if m.file_type() != r.file_type() {
            problems.push(format!(
                "{shown}: {:?} became {:?}",
                m.file_type(),
                r.file_type()
            ));
            continue;
        }
        if m.is_symlink() {
            let (a, b) = (
                std::fs::read_link(src.join(rel)).unwrap(),
                std::fs::read_link(back.join(rel)).unwrap(),
            );
            if a != b {
                problems.push(format!(
                    "{shown}: link to {a:?} restored as a link to {b:?}"
                ));
            }
            continue;
        }
        if m.mode() & 0o7777 != r.mode() & 0o7777 {
            problems.push(format!(
                "{shown}: mode {:o} restored {:o}",
                m.mode(),
                r.mode()
            ));
        }
        // Directories whose entries several get batches restore ("many", "read-only")
        // too: every batch that writes into one gives it its recorded time and mode again.
        if (m.mtime(), m.mtime_nsec()) != (r.mtime(), r.mtime_nsec()) {
            problems.push(format!(
                "{shown}: mtime {}.{:09} restored {}.{:09}",
                m.mtime(),
                m.mtime_nsec(),
                r.mtime(),
                r.mtime_nsec()
            ));
        }
        if (m.uid(), m.gid()) != (r.uid(), r.gid()) {
            problems.push(format!(
                "{shown}: owner {}:{} restored {}:{}",
                m.uid(),
                m.gid(),
                r.uid(),
                r.gid()
            ));
        }
        if has_xattrs && xattrs(&src.join(rel)) != xattrs(&back.join(rel)) {
            problems.push(format!(
                "{shown}: extended attributes {:?} restored {:?}",
                xattrs(&src.join(rel)),
                xattrs(&back.join(rel))
            ));
        }
        if m.is_file() {
            if m.len() != r.len() || blake3_of(&src.join(rel)) != blake3_of(&back.join(rel)) {
                problems.push(format!("{shown}: content differs"));
            }
            // No more blocks than the original (a sparse file stays sparse).
            if r.blocks() > m.blocks() + 8 {
                problems.push(format!(
                    "{shown}: {} blocks allocated, the original {}",
                    r.blocks(),
                    m.blocks()
                ));
            }
            if m.nlink() > 1 {
                // Names of one inode are names of one inode again.
                let first = *inodes.entry((m.dev(), m.ino())).or_insert(r.ino());
                if first != r.ino() || r.nlink() != m.nlink() {
                    problems.push(format!(
                        "{shown}: a hard link ({} names) restored as inode {} with {} names, not \
                         with the others",
                        m.nlink(),
                        r.ino(),
                        r.nlink()
                    ));
                }
            }
        }
    }
    for rel in got.keys() {
        if !all.contains_key(rel) {
            problems.push(format!("{rel:?} was restored but is not in the tree"));
        }
    }
    let sparse_back = std::fs::metadata(back.join("sparse")).unwrap();
    assert!(
        sparse_back.blocks() * 512 < 1 << 20,
        "the 2 GiB sparse file took {} bytes",
        sparse_back.blocks() * 512
    );
    let mut f = std::fs::File::open(back.join("sparse")).unwrap();
    f.seek(SeekFrom::Start(SPARSE_LEN / 2 + 12_345)).unwrap();
    let mut b = [0u8; 9];
    f.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"data here");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The restore left nothing of its own behind (temporary names).
    assert!(
        got.keys()
            .all(|k| !k.as_bytes().windows(6).any(|w| w == b".nlds-")),
        "a temporary file was left behind"
    );
    embedded.stop().await.unwrap();
}

/// The put failed exactly the expected entries, each under its path, with its code and a reason
/// that says what applies to it.
fn check_failures(put: &TransactionStatus, src: &Path, expected: &[Expected]) {
    let failed: BTreeMap<String, (ErrorCode, String)> = put
        .failed_files()
        .map(|f| (f.path.clone(), (f.code, f.reason.clone())))
        .collect();
    assert_eq!(failed.len(), expected.len(), "{failed:#?}");
    for e in expected {
        let full = src.join(&e.rel);
        // The one name the encoding refuses is reported with that character escaped.
        let path = pathname::encode(full.as_os_str())
            .unwrap_or_else(|_| full.to_str().unwrap().replace('\u{10FEE9}', "\\u{10FEE9}"));
        let (code, reason) = failed
            .get(&path)
            .unwrap_or_else(|| panic!("{path:?} did not fail: {failed:#?}"));
        assert_eq!(*code, e.code, "{path}: {reason}");
        assert!(
            reason.contains(e.says),
            "{path}: {reason:?} should say {:?}",
            e.says
        );
    }
}

/// The number of objects the embedded S3 server holds (its files, without its own metadata).
fn object_files(root: &Path) -> usize {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| !e.file_name().as_bytes().starts_with(b"."))
        .filter(|e| {
            let key = format!("/{}/", nlds_storage::s3::KEY_PREFIX);
            e.path().to_string_lossy().contains(&key)
        })
        .count()
}
