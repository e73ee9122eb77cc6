//! The views of `find`: the files table, bare paths (or URLs) and one file in full.

use nlds_core::PathKind;
use nlds_core::api::{FileEntry, Tier};

use crate::format::{
    Align, Fit, INDENT, Zone, col, human_size, kv, last_access, opt, printable, table, time,
};

/// The `find` table: user, h-id, h-label, size, date, storage, path (or `url` with `-U`); with a
/// `width`, the user and label are shortened at their end and the path at its start.
pub fn files_table(files: &[FileEntry], url: bool, zone: Zone, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    let rows: Vec<Vec<String>> = files
        .iter()
        .map(|f| {
            vec![
                f.user.clone(),
                f.holding_id.to_string(),
                f.label.clone(),
                human_size(f.size),
                time(&f.ingest_time, zone),
                storage(f),
                if url {
                    object_url(f).unwrap_or_else(|| "-".into())
                } else {
                    f.path.clone()
                },
            ]
        })
        .collect();
    table(
        &[
            col("user", Left, End),
            col("h-id", Right, Keep),
            col("h-label", Left, End),
            col("size", Right, Keep),
            col("date", Left, Keep),
            col("storage", Left, Keep),
            col(if url { "url" } else { "path" }, Left, Start),
        ],
        &rows,
        width,
    )
}

/// `find --versions`: every version of each path, by path then version (ingest time and
/// transaction of each).
pub fn versions_table(files: &[FileEntry], zone: Zone, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    let mut sorted: Vec<&FileEntry> = files.iter().collect();
    sorted.sort_by(|a, b| {
        (a.holding_id, &a.path, a.version).cmp(&(b.holding_id, &b.path, b.version))
    });
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|f| {
            vec![
                f.holding_id.to_string(),
                f.version.to_string(),
                time(&f.ingest_time, zone),
                f.transaction_id.to_string(),
                human_size(f.size),
                f.path.clone(),
            ]
        })
        .collect();
    table(
        &[
            col("h-id", Right, Keep),
            col("version", Right, Keep),
            col("ingest time", Left, Keep),
            col("transaction", Left, Keep),
            col("size", Right, Keep),
            col("path", Left, Start),
        ],
        &rows,
        width,
    )
}

/// `find -1`: the paths (or, with `-U`, the URLs of the files that have a warm copy), one per line.
pub fn simple_paths(files: &[FileEntry], url: bool) -> String {
    let mut o = String::new();
    for f in files {
        let line = if url {
            object_url(f)
        } else {
            Some(f.path.clone())
        };
        if let Some(line) = line {
            o.push_str(&line);
            o.push('\n');
        }
    }
    o
}

/// One file in full.
pub fn file_view(f: &FileEntry, url: bool, zone: Zone) -> String {
    let mut o = String::new();
    kv(&mut o, INDENT, "path", &printable(&f.path));
    kv(&mut o, INDENT, "type", f.kind.as_str());
    if f.kind == PathKind::Link {
        kv(&mut o, INDENT, "link path", &opt(f.link_target.as_deref()));
    }
    kv(
        &mut o,
        INDENT,
        "size",
        &format!("{} ({} bytes)", human_size(f.size), f.size),
    );
    kv(&mut o, INDENT, "user uid", &f.uid.to_string());
    kv(&mut o, INDENT, "group gid", &f.gid.to_string());
    kv(&mut o, INDENT, "permissions", &permissions(f.kind, f.mode));
    kv(&mut o, INDENT, "modified", &time(&f.mtime, zone));
    kv(
        &mut o,
        INDENT,
        "holding",
        &format!("{} ({})", f.holding_id, f.label),
    );
    kv(
        &mut o,
        INDENT,
        "owner",
        &format!("{} ({})", f.user, f.group),
    );
    kv(
        &mut o,
        INDENT,
        "transaction id",
        &f.transaction_id.to_string(),
    );
    kv(&mut o, INDENT, "ingest time", &time(&f.ingest_time, zone));
    kv(
        &mut o,
        INDENT,
        "last access",
        &last_access(f.last_access.as_ref(), zone),
    );
    kv(&mut o, INDENT, "access count", &f.access_count.to_string());
    kv(
        &mut o,
        INDENT,
        "checksum",
        &opt(f.blake3.as_deref().map(|c| format!("blake3:{c}"))),
    );
    if !f.xattrs.is_empty() {
        // As getfattr shows them: name="value", the value's unprintable bytes escaped.
        let shown: Vec<String> = f
            .xattrs
            .iter()
            .map(|x| format!("{}=\"{}\"", printable(&x.name), x.value))
            .collect();
        kv(&mut o, INDENT, "xattrs", &shown.join("\n"));
    }
    if f.kind != PathKind::Link {
        let locs = if f.locations.is_empty() {
            "(none)".to_owned()
        } else {
            f.locations
                .iter()
                .map(|l| match l.tier {
                    Tier::Warm => format!("warm: {}/{}", l.bucket, l.key),
                    Tier::Cold => format!("cold: {}/{}", l.bucket, l.key),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        kv(&mut o, INDENT, "storage", &locs);
    }
    if url {
        kv(&mut o, INDENT, "url", &opt(object_url(f)));
    }
    o
}

/// `-rw-r--r--`, `drwxr-s---`, `lrwxrwxrwx`.
pub fn permissions(kind: PathKind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        PathKind::File => '-',
        PathKind::Directory => 'd',
        PathKind::Link => 'l',
    });
    let special = [(0o4000, 's'), (0o2000, 's'), (0o1000, 't')];
    for (i, (bit, ch)) in special.iter().enumerate() {
        let shift = 6 - 3 * i;
        let bits = (mode >> shift) & 0o7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        s.push(match (mode & bit != 0, x) {
            (true, true) => *ch,
            (true, false) => ch.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// The `s3://bucket/key` URL of a file's warm copy.
pub fn object_url(f: &FileEntry) -> Option<String> {
    f.locations
        .iter()
        .find(|l| l.tier == Tier::Warm)
        .map(|l| format!("s3://{}/{}", l.bucket, l.key))
}

/// `W` (warm, object store), `C` (cold, tape), `W+C`; `C+R` for a cold copy being recalled;
/// `L` for a link; `-` for none.
pub fn storage(f: &FileEntry) -> String {
    if f.kind == PathKind::Link {
        return "L".into();
    }
    if f.recalling && !f.locations.iter().any(|l| l.tier == Tier::Warm) {
        return "C+R".into();
    }
    let warm = f.locations.iter().any(|l| l.tier == Tier::Warm);
    let cold = f.locations.iter().any(|l| l.tier == Tier::Cold);
    match (warm, cold) {
        (true, true) => "W+C",
        (true, false) => "W",
        (false, true) => "C",
        (false, false) => "-",
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_letters_show_tiers_and_recalls() {
        let mut f = FileEntry {
            path: "/a".into(),
            kind: PathKind::File,
            link_target: None,
            size: 1,
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
            blake3: None,
            locations: vec![nlds_core::api::FileLocation {
                tier: Tier::Cold,
                bucket: "dir".into(),
                key: "h1/a.tar".into(),
            }],
            recalling: false,
            last_access: None,
            access_count: 0,
            version: 1,
            xattrs: Vec::new(),
        };
        assert_eq!(storage(&f), "C");
        f.recalling = true;
        assert_eq!(storage(&f), "C+R");
        f.locations.push(nlds_core::api::FileLocation {
            tier: Tier::Warm,
            bucket: "nlds".into(),
            key: "tx/x".into(),
        });
        assert_eq!(storage(&f), "W+C");

        // Extended attributes, escaped for humans, one a line.
        assert!(!file_view(&f, false, Zone::Utc).contains("xattrs"));
        f.xattrs = vec![
            nlds_core::api::FileXattr::new("user.comment".into(), b"run 42", "cnVuIDQy".into()),
            nlds_core::api::FileXattr::new("user.bin".into(), b"a\n\xff\"", "YQr/Ig==".into()),
        ];
        let view = file_view(&f, false, Zone::Utc);
        assert!(view.contains(r#"user.comment="run 42""#), "{view}");
        assert!(view.contains(r#"user.bin="a\n\xff\"""#), "{view}");
    }
    #[test]
    fn modes() {
        assert_eq!(permissions(PathKind::File, 0o644), "-rw-r--r--");
        assert_eq!(permissions(PathKind::Directory, 0o2750), "drwxr-s---");
        assert_eq!(permissions(PathKind::Directory, 0o1777), "drwxrwxrwt");
        assert_eq!(permissions(PathKind::File, 0o4644), "-rwSr--r--");
        assert_eq!(permissions(PathKind::Link, 0o777), "lrwxrwxrwx");
    }
}
