//! Text output: tables and single-record views in the layout of the Python NLDS client, with ISO
//! 8601 times that carry their offset and 1024-based sizes.
//!
//! Every function returns a `String` (ending in a newline when not empty) and depends only on its
//! arguments, so outputs can be checked against golden files.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use nlds_core::api::{
    Accepted, FileEntry, HoldingSummary, MetaResponse, Tags, Tier, TransactionStatus, WhoAmI,
};
use nlds_core::{PathKind, State};

/// The time zone times are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    /// The machine's local time zone.
    #[default]
    Local,
    Utc,
}

/// `2026-05-01T12:34:56+01:00`.
pub fn time(t: &DateTime<Utc>, zone: Zone) -> String {
    const FMT: &str = "%Y-%m-%dT%H:%M:%S%:z";
    match zone {
        Zone::Utc => t.format(FMT).to_string(),
        Zone::Local => t.with_timezone(&chrono::Local).format(FMT).to_string(),
    }
}

/// A size in 1024-based units: `0 B`, `1023 B`, `1.0 KiB`, `1.5 MiB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    // 1023.95 KiB would print as "1024.0 KiB": move up a unit instead.
    while v >= 1023.95 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The state as users know it: `SEARCHING` (no sub-record yet) is shown as `QUEUED`.
pub fn state_name(s: State) -> &'static str {
    match s {
        State::Searching => "QUEUED",
        s => s.name(),
    }
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

/// `W` (warm, object store), `C` (cold, tape), `W+C`; `L` for a link; `-` for none.
pub fn storage(f: &FileEntry) -> String {
    if f.kind == PathKind::Link {
        return "L".into();
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

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

/// Columns as wide as their widest cell, two spaces apart; nothing is truncated.
fn table(headers: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|(h, _)| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if headers[i].1 == Align::Right {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

const INDENT: &str = "    ";

/// `    key             : value`; later lines of a multi-line value are aligned under the first.
fn kv(out: &mut String, indent: &str, key: &str, value: &str) {
    let mut lines = value.lines();
    let first = lines.next().unwrap_or("");
    let _ = writeln!(out, "{indent}{key:<16}: {first}");
    let cont = format!("{indent}{:<16}  ", "");
    for l in lines {
        out.push_str(&cont);
        out.push_str(l);
        out.push('\n');
    }
}

fn tags_text(tags: &Tags) -> String {
    if tags.is_empty() {
        return "(none)".into();
    }
    tags.iter()
        .map(|(k, v)| format!("{k} : {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

// ----- stat -----

/// The `stat` table: user, id, action, job label, label, done, state, last update.
pub fn stat_table(records: &[TransactionStatus], zone: Zone) -> String {
    use Align::*;
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|t| {
            vec![
                t.user.clone(),
                t.id.to_string(),
                t.api_action.to_string(),
                t.job_label.clone(),
                opt(t.label.as_deref()),
                format!("{}%", t.percent),
                state_name(t.state).to_owned(),
                time(&t.updated, zone),
            ]
        })
        .collect();
    table(
        &[
            ("user", Left),
            ("id", Right),
            ("action", Left),
            ("job label", Left),
            ("label", Left),
            ("done", Right),
            ("state", Left),
            ("last update", Left),
        ],
        &rows,
    )
}

/// One transaction in full; `sub_records` (`-S`) adds its sub-records, `errors` (`-E`) its
/// failed files with their reasons.
pub fn transaction_view(
    t: &TransactionStatus,
    sub_records: bool,
    errors: bool,
    zone: Zone,
) -> String {
    let mut o = String::new();
    kv(&mut o, INDENT, "id", &t.id.to_string());
    kv(
        &mut o,
        INDENT,
        "transaction id",
        &t.transaction_id.to_string(),
    );
    kv(&mut o, INDENT, "user", &t.user);
    kv(&mut o, INDENT, "group", &t.group);
    kv(&mut o, INDENT, "action", t.api_action.as_str());
    kv(&mut o, INDENT, "job label", &t.job_label);
    kv(&mut o, INDENT, "label", &opt(t.label.as_deref()));
    kv(&mut o, INDENT, "holding id", &opt(t.holding_id));
    kv(&mut o, INDENT, "creation time", &time(&t.created, zone));
    kv(&mut o, INDENT, "state", state_name(t.state));
    let warnings = if t.warnings.is_empty() {
        "(none)".to_owned()
    } else {
        t.warnings.join("\n")
    };
    kv(&mut o, INDENT, "warnings", &warnings);
    kv(&mut o, INDENT, "last update", &time(&t.updated, zone));
    kv(&mut o, INDENT, "complete", &format!("{}%", t.percent));
    kv(
        &mut o,
        INDENT,
        "files",
        &format!(
            "{} of {} done, {} failed",
            t.files_done, t.files_total, t.files_failed
        ),
    );
    kv(
        &mut o,
        INDENT,
        "size",
        &format!(
            "{} of {}",
            human_size(t.bytes_done),
            human_size(t.bytes_total)
        ),
    );
    if sub_records {
        let subs: Vec<_> = t
            .sub_records
            .iter()
            .filter(|s| s.state != State::Split)
            .collect();
        kv(
            &mut o,
            INDENT,
            "sub records",
            if subs.is_empty() { "(none)" } else { "->" },
        );
        for s in subs {
            kv(&mut o, "        + ", "id", &s.id.to_string());
            let ind = "          ";
            kv(&mut o, ind, "sub id", &s.sub_id.to_string());
            kv(&mut o, ind, "state", state_name(s.state));
            kv(&mut o, ind, "last update", &time(&s.last_updated, zone));
            kv(&mut o, ind, "files", &s.files.to_string());
            kv(&mut o, ind, "size", &human_size(s.bytes));
        }
    }
    if errors {
        let failed: Vec<_> = t.failed_files().collect();
        kv(
            &mut o,
            INDENT,
            "failed files",
            if failed.is_empty() { "(none)" } else { "->" },
        );
        for f in failed {
            kv(&mut o, "        + ", "path", &f.path);
            kv(&mut o, "          ", "code", f.code.as_str());
            kv(&mut o, "          ", "reason", &f.reason);
        }
    }
    o
}

/// `stat -F`: the failed files' paths, one per line, ready for `putlist`/`getlist`.
pub fn failed_paths(records: &[TransactionStatus]) -> String {
    let mut o = String::new();
    for f in records.iter().flat_map(|t| t.failed_files()) {
        o.push_str(&f.path);
        o.push('\n');
    }
    o
}

/// One line of `--wait` progress (without a terminal).
pub fn progress_line(t: &TransactionStatus) -> String {
    let mut line = format!(
        "{}: {} files {}/{}, {}/{}",
        t.transaction_id,
        state_name(t.state),
        t.files_done,
        t.files_total,
        human_size(t.bytes_done),
        human_size(t.bytes_total)
    );
    if t.files_failed > 0 {
        let _ = write!(line, ", {} failed", t.files_failed);
    }
    line
}

// ----- list -----

/// The `list` table: user, id, label, ingest time, files, size.
pub fn holdings_table(holdings: &[HoldingSummary], zone: Zone) -> String {
    use Align::*;
    let rows: Vec<Vec<String>> = holdings
        .iter()
        .map(|h| {
            vec![
                h.user.clone(),
                h.id.to_string(),
                h.label.clone(),
                time(&h.created, zone),
                h.files.to_string(),
                human_size(h.bytes),
            ]
        })
        .collect();
    table(
        &[
            ("user", Left),
            ("id", Right),
            ("label", Left),
            ("ingest time", Left),
            ("files", Right),
            ("size", Right),
        ],
        &rows,
    )
}

/// One holding in full.
pub fn holding_view(h: &HoldingSummary, zone: Zone) -> String {
    let mut o = String::new();
    kv(&mut o, INDENT, "id", &h.id.to_string());
    kv(&mut o, INDENT, "label", &h.label);
    kv(&mut o, INDENT, "user", &h.user);
    kv(&mut o, INDENT, "group", &h.group);
    kv(&mut o, INDENT, "ingest time", &time(&h.created, zone));
    kv(&mut o, INDENT, "files", &h.files.to_string());
    kv(&mut o, INDENT, "size", &human_size(h.bytes));
    kv(&mut o, INDENT, "tags", &tags_text(&h.tags));
    let txs = if h.transactions.is_empty() {
        "(none)".to_owned()
    } else {
        h.transactions
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    kv(&mut o, INDENT, "transaction id", &txs);
    o
}

// ----- find -----

/// The `find` table: user, h-id, h-label, size, date, storage, path (or `url` with `-U`).
pub fn files_table(files: &[FileEntry], url: bool, zone: Zone) -> String {
    use Align::*;
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
            ("user", Left),
            ("h-id", Right),
            ("h-label", Left),
            ("size", Right),
            ("date", Left),
            ("storage", Left),
            (if url { "url" } else { "path" }, Left),
        ],
        &rows,
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
    kv(&mut o, INDENT, "path", &f.path);
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
        "checksum",
        &opt(f.blake3.as_deref().map(|c| format!("blake3:{c}"))),
    );
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

// ----- meta, put/get, whoami -----

/// What `meta` changed.
pub fn meta_view(m: &MetaResponse) -> String {
    let mut o = format!("Changed metadata of {} holding(s)\n", m.holdings.len());
    for h in &m.holdings {
        kv(&mut o, INDENT, "id", &h.id.to_string());
        kv(&mut o, INDENT, "user", &h.user);
        kv(&mut o, INDENT, "group", &h.group);
        kv(&mut o, INDENT, "old label", &h.old.label);
        kv(&mut o, INDENT, "old tags", &tags_text(&h.old.tags));
        kv(&mut o, INDENT, "new label", &h.new.label);
        kv(&mut o, INDENT, "new tags", &tags_text(&h.new.tags));
    }
    o
}

/// An accepted put or get.
pub fn accepted_view(a: &Accepted) -> String {
    let mut o = format!("{} transaction accepted for processing.\n", a.api_action);
    kv(
        &mut o,
        INDENT,
        "transaction id",
        &a.transaction_id.to_string(),
    );
    kv(&mut o, INDENT, "action", a.api_action.as_str());
    kv(&mut o, INDENT, "job label", &a.job_label);
    kv(&mut o, INDENT, "holding id", &opt(a.holding_id));
    kv(&mut o, INDENT, "label", &opt(a.label.as_deref()));
    o
}

pub fn whoami_view(w: &WhoAmI) -> String {
    let mut o = String::new();
    kv(&mut o, INDENT, "user", &w.user);
    kv(&mut o, INDENT, "groups", &w.groups.join(", "));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn modes() {
        assert_eq!(permissions(PathKind::File, 0o644), "-rw-r--r--");
        assert_eq!(permissions(PathKind::Directory, 0o2750), "drwxr-s---");
        assert_eq!(permissions(PathKind::Directory, 0o1777), "drwxrwxrwt");
        assert_eq!(permissions(PathKind::File, 0o4644), "-rwSr--r--");
        assert_eq!(permissions(PathKind::Link, 0o777), "lrwxrwxrwx");
    }

    #[test]
    fn times_carry_their_offset() {
        let t: DateTime<Utc> = "2026-05-01T12:34:56.789Z".parse().unwrap();
        assert_eq!(time(&t, Zone::Utc), "2026-05-01T12:34:56+00:00");
        let local = time(&t, Zone::Local);
        assert_eq!(local.len(), 25, "{local}");
        assert!(
            local.parse::<DateTime<chrono::FixedOffset>>().is_ok(),
            "{local}"
        );
    }

    #[test]
    fn tables_align() {
        let t = table(
            &[
                ("a", Align::Left),
                ("num", Align::Right),
                ("z", Align::Left),
            ],
            &[
                vec!["long value".into(), "1".into(), "x".into()],
                vec!["s".into(), "1234".into(), "".into()],
            ],
        );
        assert_eq!(
            t,
            "a            num  z\nlong value     1  x\ns           1234\n"
        );
        assert_eq!(state_name(State::Searching), "QUEUED");
        assert_eq!(state_name(State::Complete), "COMPLETE");
    }
}
