//! Extended attributes, read and written on descriptors (never by path).
//!
//! Kept: the `user.*` attributes and the POSIX ACLs (`system.posix_acl_access`,
//! `system.posix_acl_default`). Not kept: `security.*` (SELinux labels are the site's policy
//! for where a file lands, and a file capability restored for another owner would hand out
//! privileges) and `trusted.*` (administrators' own, readable by root only). See
//! docs/PROTOCOL.md, "Extended attributes and ACLs".

use std::os::fd::AsFd;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use nlds_core::message::Xattr;
use nlds_core::pathname;
use rustix::fs::XattrFlags;
use rustix::io::Errno;

/// The largest value read (the kernel's `XATTR_SIZE_MAX`).
const MAX_VALUE: usize = 64 << 10;

/// Is the attribute `name` kept?
pub fn kept(name: &[u8]) -> bool {
    name.starts_with(b"user.")
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}

/// The kept attributes of the open file or directory `fd`, sorted by name. A file system
/// without extended attributes (or a descriptor that cannot have them) has none.
pub fn read(fd: impl AsFd) -> Vec<Xattr> {
    let fd = fd.as_fd();
    let names = match list(fd) {
        Some(n) => n,
        None => return Vec::new(),
    };
    let mut out = Vec::new();
    let mut value = vec![0u8; MAX_VALUE];
    for name in names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty() && kept(n))
    {
        let Ok(n) = rustix::fs::fgetxattr(fd, name, &mut value[..]) else {
            continue; // removed meanwhile
        };
        let Ok(name) = pathname::encode_bytes(name) else {
            continue;
        };
        out.push(Xattr {
            name,
            value: STANDARD.encode(&value[..n]),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The raw name list (`flistxattr`), or None where there is none.
fn list(fd: std::os::fd::BorrowedFd<'_>) -> Option<Vec<u8>> {
    for _ in 0..4 {
        let size = match rustix::fs::flistxattr_query(fd) {
            Ok(0) => return None,
            Ok(s) => s,
            Err(_) => return None,
        };
        let mut buf = vec![0u8; size];
        match rustix::fs::flistxattr(fd, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Some(buf);
            }
            Err(Errno::RANGE) => continue, // grew meanwhile
            Err(_) => return None,
        }
    }
    None
}

/// Sets `attrs` on the open file or directory `fd` (`shown`: its path, for messages). Each one
/// that cannot be set is a warning naming the file and the attribute, never a failure of the
/// file.
pub fn apply(fd: impl AsFd, shown: &str, attrs: &[Xattr]) -> Vec<String> {
    let fd = fd.as_fd();
    let mut warnings = Vec::new();
    for a in attrs {
        let name = pathname::decode_bytes(&a.name);
        if !kept(&name) {
            continue;
        }
        let value = match STANDARD.decode(&a.value) {
            Ok(v) => v,
            Err(e) => {
                warnings.push(format!(
                    "{shown}: the extended attribute {} was not restored: its recorded value is \
                     not base64 ({e})",
                    pathname::display(&a.name)
                ));
                continue;
            }
        };
        if let Err(e) = rustix::fs::fsetxattr(fd, &name[..], &value, XattrFlags::empty()) {
            let why = match e {
                Errno::NOTSUP => "the file system does not support it".to_owned(),
                Errno::PERM | Errno::ACCESS => "not permitted".to_owned(),
                e => std::io::Error::from(e).to_string(),
            };
            warnings.push(format!(
                "{shown}: the extended attribute {} was not restored: {why}",
                pathname::display(&a.name)
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_attributes_round_trip_through_descriptors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let f = std::fs::File::create(&p).unwrap();
        if rustix::fs::fsetxattr(&f, "user.probe", b"1", XattrFlags::empty()).is_err() {
            // The temporary directory's file system has no user attributes: nothing to read.
            assert!(read(&f).is_empty());
            return;
        }
        rustix::fs::fsetxattr(&f, "user.comment", b"\x00\xffbinary", XattrFlags::empty()).unwrap();
        let got = read(&f);
        let names: Vec<&str> = got.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["user.comment", "user.probe"]);
        let g = std::fs::File::create(d.path().join("g")).unwrap();
        let bad = Xattr {
            name: "user.bad".into(),
            value: "%%%".into(),
        };
        let skipped = Xattr {
            name: "trusted.x".into(),
            value: STANDARD.encode(b"x"),
        };
        let mut all = got.clone();
        all.push(bad);
        all.push(skipped);
        let warnings = apply(&g, "/g", &all);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("/g: the extended attribute user.bad"),
            "{warnings:?}"
        );
        assert_eq!(read(&g), got);
    }
}
