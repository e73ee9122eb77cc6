//! POSIX permission checks made on behalf of the requesting user, not the service account.
//!
//! The workers usually run as root (or as a service account that can read everyone's data), so
//! "can the process open it" says nothing about whether the *user* may. With
//! `[workers] posix_checks = "user"` (the distributed default) the indexer, transfer-put and
//! transfer-get look the requesting user up through NSS (uid, primary gid, supplementary groups,
//! once per message) and decide from each inode's owner, group and mode bits, exactly as the
//! kernel's discretionary access check does for that user: the first matching class (owner, then
//! group, then other) decides, and a class that matches but lacks the bit denies even if "other"
//! would allow. ACLs and capabilities are not consulted. A requesting user that maps to uid 0
//! gets root's override only with `posix_root_override = true`.
//!
//! With `posix_checks = "service"` (the embedded default: on a single-user laptop the embedded
//! user name is not a system account) nothing is checked here and the process's own access
//! decides, as any program's would.
//!
//! A denial is a per-file failure ([`ErrorCode::PermissionDenied`]) whose reason names the path,
//! the user and the inode that stopped them, e.g. `/data/x/y: user bob may not search directory
//! /data/x (mode 0700, owner alice)`. A user the host does not know fails every file with a
//! clear reason; nothing here panics.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use nlds_core::{ErrorCode, FailedFile, FileRecord, PathKind};

pub use nlds_settings::{PosixChecks, PosixPolicy};

/// Read, write and search (execute) bits of one class.
pub const READ: u32 = 4;
pub const WRITE: u32 = 2;
pub const SEARCH: u32 = 1;

/// A system account: who a request's user is on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
    /// Every group the account is in (primary and supplementary), sorted.
    pub groups: Vec<u32>,
}

impl Account {
    /// Looks `name` up through NSS (`getpwnam_r`, `getgrouplist`).
    pub fn lookup(name: &str) -> Result<Account, String> {
        use nix::unistd::{Gid, User, getgrouplist};
        let user = match User::from_name(name) {
            Ok(Some(u)) => u,
            Ok(None) => {
                return Err(format!(
                    "user {name} is not an account on this host, so their POSIX permissions \
                     cannot be checked"
                ));
            }
            Err(e) => return Err(format!("cannot look user {name} up: {e}")),
        };
        let cname = std::ffi::CString::new(name)
            .map_err(|_| format!("user name {name:?} contains a NUL character"))?;
        let mut groups: Vec<u32> = getgrouplist(&cname, Gid::from_raw(user.gid.as_raw()))
            .map_err(|e| format!("cannot list the groups of user {name}: {e}"))?
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        groups.push(user.gid.as_raw());
        groups.sort_unstable();
        groups.dedup();
        Ok(Account {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
        })
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.groups.binary_search(&gid).is_ok()
    }
}

/// The owner, group and permission bits of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inode {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub is_dir: bool,
}

/// Whether `who` may use `inode` for `want` (a combination of [`READ`], [`WRITE`], [`SEARCH`]),
/// by the mode bits. The first class that matches decides (owner, then group, then other).
pub fn allowed(who: &Account, inode: Inode, want: u32, root_override: bool) -> bool {
    if who.uid == 0 && root_override {
        // Root reads and writes anything; it searches directories and executes files with at
        // least one execute bit.
        return want & SEARCH == 0 || inode.is_dir || inode.mode & 0o111 != 0;
    }
    let bits = if inode.uid == who.uid {
        (inode.mode >> 6) & 7
    } else if who.in_group(inode.gid) {
        (inode.mode >> 3) & 7
    } else {
        inode.mode & 7
    };
    bits & want == want
}

fn verb(want: u32, is_dir: bool) -> &'static str {
    match (want, is_dir) {
        (SEARCH, true) => "search directory",
        (READ, true) => "read directory",
        (w, true) if w == READ | SEARCH => "list directory",
        (w, true) if w & WRITE != 0 => "write to directory",
        (READ, false) => "read file",
        (w, false) if w & WRITE != 0 => "write file",
        (_, true) => "use directory",
        (_, false) => "use file",
    }
}

/// Names of uids and gids, looked up once each.
#[derive(Default)]
struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    fn user(&mut self, uid: u32) -> String {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_else(|| uid.to_string())
            })
            .clone()
    }
    fn group(&mut self, gid: u32) -> String {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
                    .unwrap_or_else(|| gid.to_string())
            })
            .clone()
    }
}

/// The checks of one message: the requesting user, looked up once, and what was already found
/// out about directories (a batch's files mostly share them).
pub struct Checker {
    policy: PosixPolicy,
    user: String,
    account: Option<Result<Arc<Account>, String>>,
    names: Names,
}

impl Checker {
    pub fn new(policy: PosixPolicy, user: &str) -> Self {
        Self {
            policy,
            user: user.to_owned(),
            account: None,
            names: Names::default(),
        }
    }

    /// Whether checks are made for the user (`posix_checks = "user"`).
    pub fn enabled(&self) -> bool {
        self.policy.checks == PosixChecks::User
    }

    /// The requesting user's account (looked up on first use).
    pub fn account(&mut self) -> Result<Arc<Account>, String> {
        self.account
            .get_or_insert_with(|| Account::lookup(&self.user).map(Arc::new))
            .clone()
    }

    fn denied(&mut self, who: &Account, at: &Path, inode: Inode, want: u32) -> String {
        format!(
            "user {} may not {} {} (mode {:04o}, owner {}, group {})",
            who.name,
            verb(want, inode.is_dir),
            at.display(),
            inode.mode & 0o7777,
            self.names.user(inode.uid),
            self.names.group(inode.gid),
        )
    }

    /// Whether the user may use the inode found at `at` for `want` (always, when the checks are
    /// off). The reason names the user, the inode and what stopped them, without the path
    /// concerned (see [`Checker::fail`]).
    pub fn check(&mut self, at: &Path, inode: Inode, want: u32) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        let who = self.account()?;
        if allowed(&who, inode, want, self.policy.root_override) {
            Ok(())
        } else {
            Err(self.denied(&who, at, inode, want))
        }
    }

    /// The sticky-directory rule of a replacement: in a sticky directory (owned by `dir_uid`)
    /// an existing entry (owned by `old_uid`) may only be replaced by its owner or the
    /// directory's.
    pub fn may_replace(
        &mut self,
        dest: &Path,
        dir: &Path,
        dir_inode: Inode,
        old_uid: u32,
    ) -> Result<(), String> {
        if !self.enabled() || dir_inode.mode & 0o1000 == 0 {
            return Ok(());
        }
        let who = self.account()?;
        let root = who.uid == 0 && self.policy.root_override;
        if root || old_uid == who.uid || dir_inode.uid == who.uid {
            return Ok(());
        }
        let owner = self.names.user(old_uid);
        Err(format!(
            "user {} may not replace {} in the sticky directory {} (it belongs to {owner})",
            who.name,
            dest.display(),
            dir.display()
        ))
    }

    /// Get, on behalf of a user (not `keep_owner`): an entry recorded as someone else's is
    /// restored only if its recorded owner, group and mode would have let the user read it
    /// (`groupall` must not turn another member's private file into the requester's).
    pub fn may_restore(&mut self, rec: &FileRecord) -> Result<(), FailedFile> {
        if !self.enabled() {
            return Ok(());
        }
        let who = self.account().map_err(|r| Self::fail(&rec.path, r))?;
        if rec.uid == who.uid {
            return Ok(());
        }
        let inode = Inode {
            uid: rec.uid,
            gid: rec.gid,
            mode: rec.mode,
            is_dir: rec.kind == PathKind::Directory,
        };
        if allowed(&who, inode, READ, self.policy.root_override) {
            return Ok(());
        }
        let what = match rec.kind {
            PathKind::File => "file",
            PathKind::Directory => "directory",
            PathKind::Link => "symbolic link",
        };
        let owner = self.names.user(rec.uid);
        let group = self.names.group(rec.gid);
        Err(Self::fail(
            &rec.path,
            format!(
                "user {} may not read {owner}'s {what} (recorded mode {:04o}, owner {owner}, \
                 group {group}); only its owner or a reader by its recorded mode may restore it",
                who.name,
                rec.mode & 0o7777,
            ),
        ))
    }

    /// The name of `uid` (its number if it has none).
    pub fn user_name(&mut self, uid: u32) -> String {
        self.names.user(uid)
    }

    /// Who follows symbolic links for these checks: the user's uid, or the process's own when
    /// the checks are off.
    pub fn follower(&mut self) -> Result<(u32, String), String> {
        if self.enabled() {
            let who = self.account()?;
            Ok((who.uid, format!("user {}", who.name)))
        } else {
            Ok((
                rustix::process::geteuid().as_raw(),
                "the service".to_owned(),
            ))
        }
    }

    /// A permission failure of `path`: `<path>: <reason>`.
    pub fn fail(path: &str, reason: String) -> FailedFile {
        FailedFile::new(
            path,
            ErrorCode::PermissionDenied,
            format!("{path}: {reason}"),
        )
    }
}

/// Who restored files and directories belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Leave them to the process (`posix_checks = "service"`).
    Process,
    /// The requesting user's uid and primary gid.
    Requester { uid: u32, gid: u32 },
    /// The uid and gid recorded when they were put (an admin's `keep_owner`).
    Recorded,
}

impl Ownership {
    /// The uid and gid to give an entry recorded with `uid`/`gid`, if any.
    pub fn ids(self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        match self {
            Ownership::Process => None,
            Ownership::Requester { uid, gid } => Some((uid, gid)),
            Ownership::Recorded => Some((uid, gid)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Account {
        Account {
            name: "bob".into(),
            uid: 1001,
            gid: 100,
            groups: vec![100, 200],
        }
    }

    fn inode(uid: u32, gid: u32, mode: u32) -> Inode {
        Inode {
            uid,
            gid,
            mode,
            is_dir: false,
        }
    }

    #[test]
    fn the_first_matching_class_decides() {
        let b = bob();
        // owner class
        assert!(allowed(&b, inode(1001, 5, 0o400), READ, false));
        assert!(
            !allowed(&b, inode(1001, 5, 0o044), READ, false),
            "owner denied though group/other may"
        );
        assert!(allowed(&b, inode(1001, 5, 0o600), READ | WRITE, false));
        assert!(!allowed(&b, inode(1001, 5, 0o400), READ | WRITE, false));
        // group class: primary and supplementary
        assert!(allowed(&b, inode(7, 100, 0o040), READ, false));
        assert!(allowed(&b, inode(7, 200, 0o040), READ, false));
        assert!(
            !allowed(&b, inode(7, 200, 0o404), READ, false),
            "group denied though other may"
        );
        // other class
        assert!(allowed(&b, inode(7, 300, 0o004), READ, false));
        assert!(!allowed(&b, inode(7, 300, 0o640), READ, false));
        // search on directories
        let dir = Inode {
            is_dir: true,
            ..inode(7, 300, 0o701)
        };
        assert!(allowed(&b, dir, SEARCH, false));
        assert!(!allowed(&b, dir, READ | SEARCH, false));
        let private = Inode {
            is_dir: true,
            ..inode(7, 300, 0o700)
        };
        assert!(!allowed(&b, private, SEARCH, false));
    }

    #[test]
    fn root_bypasses_only_when_configured() {
        let root = Account {
            name: "root".into(),
            uid: 0,
            gid: 0,
            groups: vec![0],
        };
        let f = inode(1001, 100, 0o600);
        assert!(!allowed(&root, f, READ, false));
        assert!(allowed(&root, f, READ | WRITE, true));
        assert!(!allowed(&root, f, SEARCH, true), "no execute bit at all");
        let d = Inode {
            is_dir: true,
            ..inode(1001, 100, 0o700)
        };
        assert!(allowed(&root, d, SEARCH | WRITE, true));
    }

    #[test]
    fn reasons_name_the_verb() {
        assert_eq!(verb(SEARCH, true), "search directory");
        assert_eq!(verb(READ | SEARCH, true), "list directory");
        assert_eq!(verb(WRITE | SEARCH, true), "write to directory");
        assert_eq!(verb(READ, false), "read file");
    }

    #[test]
    fn service_mode_checks_nothing_and_unknown_users_fail_clearly() {
        let private = Inode {
            is_dir: true,
            ..inode(0, 0, 0o700)
        };
        let mut off = Checker::new(PosixPolicy::SERVICE, "no-such-user-x9");
        assert!(off.check(Path::new("/root"), private, SEARCH).is_ok());
        let mut on = Checker::new(PosixPolicy::default(), "no-such-user-x9");
        let reason = on
            .check(Path::new("/etc"), inode(0, 0, 0o755), READ)
            .unwrap_err();
        assert!(
            reason.contains("user no-such-user-x9 is not an account on this host"),
            "{reason}"
        );
        let f = Checker::fail("/etc/hostname", reason);
        assert_eq!(f.code, ErrorCode::PermissionDenied);
        assert!(f.reason.starts_with("/etc/hostname: user no-such-user-x9"));
    }

    fn record(uid: u32, gid: u32, mode: u32, kind: PathKind) -> FileRecord {
        FileRecord {
            path: "/data/x".into(),
            kind,
            link_target: None,
            size: 0,
            uid,
            gid,
            mode,
            mtime_ns: 0,
            blake3: None,
            object: None,
            holding_id: None,
            xattrs: Vec::new(),
            new_version: false,
        }
    }

    #[test]
    fn others_entries_are_restored_only_to_readers_by_their_recorded_mode() {
        // root is an account on every host; its "other" class decides for entries of uid 4242.
        let mut c = Checker::new(PosixPolicy::default(), "root");
        assert!(
            c.may_restore(&record(0, 0, 0o600, PathKind::File)).is_ok(),
            "own"
        );
        assert!(
            c.may_restore(&record(4242, 4242, 0o644, PathKind::File))
                .is_ok()
        );
        assert!(
            c.may_restore(&record(4242, 0, 0o640, PathKind::File))
                .is_ok(),
            "root's group"
        );
        let f = c
            .may_restore(&record(4242, 4243, 0o600, PathKind::File))
            .unwrap_err();
        assert_eq!(f.code, ErrorCode::PermissionDenied);
        assert_eq!(
            f.reason,
            "/data/x: user root may not read 4242's file (recorded mode 0600, owner 4242, \
             group 4243); only its owner or a reader by its recorded mode may restore it"
        );
        let f = c
            .may_restore(&record(4242, 4243, 0o700, PathKind::Directory))
            .unwrap_err();
        assert!(f.reason.contains("4242's directory"), "{}", f.reason);
        // Off (service checks): nothing is refused.
        let mut off = Checker::new(PosixPolicy::SERVICE, "root");
        assert!(
            off.may_restore(&record(4242, 4243, 0o600, PathKind::File))
                .is_ok()
        );
    }

    #[test]
    fn ownership_ids() {
        assert_eq!(Ownership::Process.ids(1, 2), None);
        assert_eq!(
            Ownership::Requester { uid: 5, gid: 6 }.ids(1, 2),
            Some((5, 6))
        );
        assert_eq!(Ownership::Recorded.ids(1, 2), Some((1, 2)));
    }
}
