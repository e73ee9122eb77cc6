//! The sweep of a dead process's journals: exactly the temporaries it created are removed, as
//! the user, and nothing a hostile user put in their place. Needs root (acts for `nobody`).

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use super::*;
use crate::posix::SEARCH;
use crate::userfs::temp_file::TempFile;
use crate::workdir::{ProcessDir, orphans};

fn own(p: &Path, uid: u32, gid: u32, mode: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn nobody() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// Creates a temporary for `name` in `dir` (recorded in `j`) and forgets it, as a process killed
/// mid-download does: no destructor removes it. Its path.
fn leave(j: &Journal, dir: &Dir, name: &str) -> PathBuf {
    let to = dir.path().join(name);
    let (temp, file) =
        TempFile::create_recorded(dir, OsStr::new(name), &to, "part", Some(j)).unwrap();
    let path = temp.path().to_path_buf();
    drop(file);
    std::mem::forget(temp);
    path
}

#[test]
fn the_sweep_removes_exactly_what_was_created_and_nothing_put_in_its_place() {
    if !rustix::process::geteuid().is_root() {
        panic!("this test acts for the user nobody: run it as root");
    }
    let (uid, gid) = nobody();
    let d = tempfile::tempdir().unwrap();
    own(d.path(), 0, 0, 0o755);
    let secret = d.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    own(&secret, 0, 0, 0o700);
    let victim = secret.join("victim");
    std::fs::write(&victim, b"root only").unwrap();
    own(&victim, 0, 0, 0o600);
    // The user's restore target, a subdirectory of it, and a directory they cannot write.
    let t = d.path().join("t");
    std::fs::create_dir(&t).unwrap();
    own(&t, uid, gid, 0o755);
    let sub = t.join("sub");
    std::fs::create_dir(&sub).unwrap();
    own(&sub, uid, gid, 0o755);
    let ro = d.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    own(&ro, 0, 0, 0o755);

    let policy = PosixPolicy::default();
    let mut fs = UserFs::new(policy, "nobody");
    let work = ProcessDir::create(&d.path().join("work")).unwrap();
    let j = Journal::create(work.path(), "nobody").unwrap();
    let dir_t = fs.open_dir(&t, WRITE | SEARCH).unwrap();
    let dir_sub = fs.open_dir(&sub, WRITE | SEARCH).unwrap();
    let dir_ro = UserFs::service().open_dir(&ro, 0).unwrap();

    let plain = leave(&j, &dir_t, "a");
    let to_link = leave(&j, &dir_t, "b");
    let replaced = leave(&j, &dir_t, "c");
    let under_link = leave(&j, &dir_sub, "e");
    let not_writable = leave(&j, &dir_ro, "h");
    // Killed between recording the name and recording the inode: the file is the service's.
    let early = t.join(".f.nlds-000000000001.part");
    j.intent(&dir_t, early.file_name().unwrap()).unwrap();
    std::fs::write(&early, b"").unwrap();
    // ... and the same, where the user put a second name of the victim instead.
    let hard = t.join(".g.nlds-000000000002.part");
    j.intent(&dir_t, hard.file_name().unwrap()).unwrap();
    std::fs::hard_link(&victim, &hard).unwrap();
    // Never recorded: not ours to remove, whatever its name.
    let unrelated = t.join(".x.nlds-000000000003.part");
    std::fs::write(&unrelated, b"mine").unwrap();
    std::mem::forget(j); // the process dies: its journal stays
    drop(work);

    // The hostile user: a temporary swapped for a link to the victim, another replaced by a
    // file of theirs, a directory swapped for a link to a copy of it.
    std::fs::remove_file(&to_link).unwrap();
    symlink(&victim, &to_link).unwrap();
    // (Written before the temporary goes, so it cannot get the same inode number.)
    let theirs = t.join("theirs");
    std::fs::write(&theirs, b"the user's").unwrap();
    std::fs::rename(&theirs, &replaced).unwrap();
    let sub_real = t.join("sub.real");
    std::fs::rename(&sub, &sub_real).unwrap();
    symlink(&sub_real, &sub).unwrap();

    let dead = orphans(&d.path().join("work")).unwrap();
    assert_eq!(dead.len(), 1);
    let swept = sweep(&dead[0].path, policy).unwrap();
    let mut removed = swept.removed.clone();
    removed.sort();
    let mut want = vec![plain.clone(), early.clone()];
    want.sort();
    assert_eq!(removed, want, "kept: {:?}", swept.kept);
    assert!(!plain.exists() && !early.exists());
    let kept: Vec<&PathBuf> = swept.kept.iter().map(|(p, _)| p).collect();
    for p in [&to_link, &replaced, &under_link, &not_writable, &hard] {
        assert!(
            kept.contains(&p),
            "{} should be left alone: {:?}",
            p.display(),
            swept.kept
        );
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"root only");
    assert_eq!(std::fs::metadata(&victim).unwrap().nlink(), 2);
    assert!(std::fs::symlink_metadata(&to_link).unwrap().is_symlink());
    assert_eq!(std::fs::read(&replaced).unwrap(), b"the user's");
    assert!(sub_real.join(under_link.file_name().unwrap()).exists());
    assert!(
        not_writable.exists(),
        "nobody may not remove entries in ro/"
    );
    assert_eq!(std::fs::read(&unrelated).unwrap(), b"mine");
    let why = |p: &PathBuf| &swept.kept.iter().find(|(k, _)| k == p).unwrap().1;
    assert!(
        why(&under_link).contains("symbolic link"),
        "{}",
        why(&under_link)
    );
    assert!(
        why(&not_writable).contains("nobody"),
        "{}",
        why(&not_writable)
    );
}

#[test]
fn a_batch_that_ends_leaves_no_journal() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::create(d.path(), "u").unwrap();
    let dir = UserFs::service().open_dir(d.path(), 0).unwrap();
    let (temp, _f) =
        TempFile::create_recorded(&dir, OsStr::new("a"), &d.path().join("a"), "part", Some(&j))
            .unwrap();
    temp.discard();
    drop(j);
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
}

/// The temporary names of links made to replace others (`--overwrite`): a symbolic link, and a
/// second name of a restored file, journalled as a killed process left them. The sweep removes
/// those names (and only the names: the restored file keeps its own), but not a link the user
/// put in place of one.
#[test]
fn the_sweep_removes_journalled_link_temporaries_and_nothing_in_their_place() {
    let d = tempfile::tempdir().unwrap();
    let work = ProcessDir::create(&d.path().join("work")).unwrap();
    let t = d.path().join("t");
    std::fs::create_dir(&t).unwrap();
    let user = nix::unistd::User::from_uid(rustix::process::geteuid().as_raw().into())
        .unwrap()
        .unwrap()
        .name;
    let j = Journal::create(work.path(), &user).unwrap();
    let dir = UserFs::service().open_dir(&t, 0).unwrap();
    let record = |name: &str, make: &dyn Fn(&Path)| {
        let at = t.join(name);
        j.intent(&dir, OsStr::new(name)).unwrap();
        make(&at);
        let st = statat(dir.fd(), OsStr::new(name), AtFlags::SYMLINK_NOFOLLOW).unwrap();
        j.created(&dir, OsStr::new(name), &Meta::of(&st)).unwrap();
        at
    };
    let soft = record(".l.nlds-000000000001.link", &|p| {
        symlink("target", p).unwrap()
    });
    std::fs::write(t.join("restored"), b"data").unwrap();
    let hard = record(".h.nlds-000000000002.link", &|p| {
        std::fs::hard_link(t.join("restored"), p).unwrap()
    });
    let swapped = record(".s.nlds-000000000003.link", &|p| {
        symlink("target", p).unwrap()
    });
    std::mem::forget(j);
    drop(work);
    // The user swaps one for a link of their own (another inode).
    std::fs::remove_file(&swapped).unwrap();
    std::fs::write(t.join("pad"), b"").unwrap(); // (so the inode number is not reused)
    symlink("/etc/shadow", &swapped).unwrap();

    let dead = orphans(&d.path().join("work")).unwrap();
    let swept = sweep(&dead[0].path, PosixPolicy::default()).unwrap();
    let mut removed = swept.removed.clone();
    removed.sort();
    let mut want = vec![soft.clone(), hard.clone()];
    want.sort();
    assert_eq!(removed, want, "kept: {:?}", swept.kept);
    assert!(std::fs::symlink_metadata(&soft).is_err());
    assert!(std::fs::symlink_metadata(&hard).is_err());
    assert_eq!(std::fs::read(t.join("restored")).unwrap(), b"data");
    assert_eq!(
        std::fs::read_link(&swapped).unwrap(),
        Path::new("/etc/shadow")
    );
    assert_eq!(swept.kept.len(), 1, "{:?}", swept.kept);
}
