//! Text output: tables and single-record views in the layout of the Python NLDS client, with ISO
//! 8601 times that carry their offset and 1024-based sizes.
//!
//! Every function returns a `String` (ending in a newline when not empty) and depends only on its
//! arguments, so outputs can be checked against golden files.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nlds_core::api::{
    Accepted, FileEntry, GetPlan, GetRequest, HoldingSummary, MetaResponse, PutPlan, PutRequest,
    Tags, Tier, TransactionStatus,
};
use nlds_core::{FailedFile, PathKind, State};

use nlds_client::client::Identity;
use nlds_client::config::{Effective, Sourced};
use nlds_client::local::{AlreadyStored, DestAction, Destination, LocalScan};

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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Align {
    Left,
    Right,
}

/// How a column gives way when the table is wider than the terminal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fit {
    /// Never shortened (ids, sizes, times, states).
    Keep,
    /// Shortened at the end: `a-much-longer-l…` (labels, names).
    End,
    /// Shortened at the start, keeping the informative end: `…/run42/tas_day.nc` (paths).
    Start,
}

/// A table column.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Col {
    pub name: &'static str,
    pub align: Align,
    pub fit: Fit,
}

pub(crate) const fn col(name: &'static str, align: Align, fit: Fit) -> Col {
    Col { name, align, fit }
}

/// A shortened column is never made narrower than this (nor than its header).
const MIN_FIT_WIDTH: usize = 8;

/// Display width in terminal cells.
pub fn text_width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

fn char_width(c: char) -> usize {
    unicode_width::UnicodeWidthChar::width(c).unwrap_or(0)
}

/// Control characters (a newline or a tab in a file name) would break the layout: show them as `?`.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `s` cut to at most `width` cells with an ellipsis, at the end or (for paths) at the start.
pub fn shorten(s: &str, width: usize, at_start: bool) -> String {
    if text_width(s) <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let budget = width - 1; // the ellipsis takes one cell
    let mut used = 0;
    let mut kept: Vec<char> = Vec::new();
    let chars: Vec<char> = if at_start {
        s.chars().rev().collect()
    } else {
        s.chars().collect()
    };
    for c in chars {
        let w = char_width(c);
        if used + w > budget {
            break;
        }
        used += w;
        kept.push(c);
    }
    if at_start {
        kept.reverse();
        std::iter::once('\u{2026}').chain(kept).collect()
    } else {
        kept.into_iter()
            .chain(std::iter::once('\u{2026}'))
            .collect()
    }
}

/// Columns two spaces apart, each as wide as its widest cell. With `max_width`, a table that
/// would be wider gives way in its shortenable columns (the widest first, down to
/// [`MIN_FIT_WIDTH`]), whose cells are cut with an ellipsis; widths are measured in terminal
/// cells, so the columns stay aligned. Paths ([`Fit::Start`]) give way only once they are twice
/// as wide as the widest label. `None` (`--wide`) never shortens anything.
pub(crate) fn table(cols: &[Col], rows: &[Vec<String>], max_width: Option<usize>) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| printable(c)).collect())
        .collect();
    let natural: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|cell| text_width(cell))
                .chain(std::iter::once(text_width(c.name)))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut widths = natural.clone();
    if let Some(max) = max_width {
        let total = widths.iter().sum::<usize>() + 2 * cols.len().saturating_sub(1);
        let mut excess = total.saturating_sub(max);
        let floor: Vec<usize> = cols
            .iter()
            .zip(&natural)
            .map(|(c, n)| text_width(c.name).max(MIN_FIT_WIDTH).min(*n))
            .collect();
        // Paths carry more information per cell than labels: they only give way once they are
        // twice as wide as the widest label.
        while excess > 0 {
            let weight = |i: usize| match cols[i].fit {
                Fit::Start => widths[i].div_ceil(2),
                _ => widths[i],
            };
            let widest = (0..cols.len())
                .filter(|&i| cols[i].fit != Fit::Keep && widths[i] > floor[i])
                .max_by_key(|&i| (weight(i), i));
            let Some(i) = widest else { break };
            widths[i] -= 1;
            excess -= 1;
        }
    }
    let header: Vec<String> = cols.iter().map(|c| c.name.to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            let cell = if text_width(cell) > widths[i] {
                shorten(cell, widths[i], c.fit == Fit::Start)
            } else {
                cell.to_owned()
            };
            let pad = widths[i].saturating_sub(text_width(&cell));
            if c.align == Align::Right {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(&cell);
            } else {
                line.push_str(&cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(crate) const INDENT: &str = "    ";

/// `    key             : value`; later lines of a multi-line value are aligned under the first.
pub(crate) fn kv(out: &mut String, indent: &str, key: &str, value: &str) {
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

/// The `stat` table: user, id, action, job label, label, done, state, last update. With a
/// `width`, the user, job label and label columns are shortened to fit (see [`shorten`]).
pub fn stat_table(records: &[TransactionStatus], zone: Zone, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
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
            col("user", Left, End),
            col("id", Right, Keep),
            col("action", Left, Keep),
            col("job label", Left, End),
            col("label", Left, End),
            col("done", Right, Keep),
            col("state", Left, Keep),
            col("last update", Left, Keep),
        ],
        &rows,
        width,
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

/// The `list` table: user, id, label, ingest time, files, size; with a `width`, the user and
/// label columns are shortened to fit.
pub fn holdings_table(holdings: &[HoldingSummary], zone: Zone, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
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
            col("user", Left, End),
            col("id", Right, Keep),
            col("label", Left, End),
            col("ingest time", Left, Keep),
            col("files", Right, Keep),
            col("size", Right, Keep),
        ],
        &rows,
        width,
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

/// What `meta` changed, or with a dry run would change.
pub fn meta_view(m: &MetaResponse) -> String {
    let mut o = if m.dry_run {
        format!(
            "Dry run: would change the metadata of {} holding(s); nothing was changed.\n",
            m.holdings.len()
        )
    } else {
        format!("Changed metadata of {} holding(s)\n", m.holdings.len())
    };
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

/// `nlds whoami`: who the server takes you for, your groups, the group commands act in, the
/// server, and when the token expires (if known).
pub fn whoami_view(id: &Identity, server: &str, group: Option<&str>, zone: Zone) -> String {
    let mut o = String::new();
    kv(&mut o, INDENT, "user", &id.who.user);
    kv(&mut o, INDENT, "groups", &id.who.groups.join(", "));
    let roles: Vec<String> = if id.who.admin {
        vec!["admin (service operator, every group)".to_owned()]
    } else {
        id.who
            .roles
            .iter()
            .filter(|(_, r)| **r != nlds_core::AccessRole::User)
            .map(|(g, r)| format!("{r} in {g}"))
            .collect()
    };
    if !roles.is_empty() {
        kv(&mut o, INDENT, "roles", &roles.join(", "));
    }
    let acting = match (group, id.who.groups.first()) {
        (Some(g), _) => g.to_owned(),
        (None, Some(first)) => format!("{first} (your first group: no default group is set)"),
        (None, None) => "-".to_owned(),
    };
    kv(&mut o, INDENT, "group", &acting);
    kv(&mut o, INDENT, "server", server);
    let expires = id
        .token_expires
        .map(|t| time(&t, zone))
        .unwrap_or_else(|| "not known (the server does not say)".into());
    kv(&mut o, INDENT, "token expires", &expires);
    o
}

/// `5s`, `500ms`, `2m`, `1h`, `90s`.
pub fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// `nlds config show`: every setting, its value and where it came from; the token masked.
pub fn config_view(e: &Effective, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    fn row<T>(name: &str, v: &Option<Sourced<T>>, show: impl Fn(&T) -> String) -> Vec<String> {
        match v {
            Some(s) => vec![name.into(), show(&s.value), s.source.to_string()],
            None => vec![name.into(), "(not set)".into(), "-".into()],
        }
    }
    let file = match &e.config_file {
        Some(p) if e.config_file_found => vec![
            "config file".to_owned(),
            p.display().to_string(),
            format!("{} (found)", e.config_file_source),
        ],
        Some(p) => vec![
            "config file".to_owned(),
            p.display().to_string(),
            format!("{} (not found)", e.config_file_source),
        ],
        None => vec![
            "config file".to_owned(),
            "(none: neither $NLDS_CONFIG nor $HOME is set)".to_owned(),
            "-".to_owned(),
        ],
    };
    let rows = vec![
        file,
        row("url", &e.url, |u| u.clone()),
        row("token", &e.token, |t| t.masked()),
        row("group", &e.group, |g| g.clone()),
        row("user", &e.user, |u| u.clone()),
        vec![
            "insecure".into(),
            e.insecure.value.to_string(),
            e.insecure.source.to_string(),
        ],
        vec![
            "connect timeout".into(),
            duration_text(e.connect_timeout.value),
            e.connect_timeout.source.to_string(),
        ],
        vec![
            "request timeout".into(),
            duration_text(e.request_timeout.value),
            e.request_timeout.source.to_string(),
        ],
    ];
    table(
        &[
            col("setting", Left, Keep),
            col("value", Left, End),
            col("from", Left, Start),
        ],
        &rows,
        width,
    )
}

// ----- dry runs -----

fn holding_selector(label: Option<&str>, holding_id: Option<i64>, tags: &Tags) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(id) = holding_id {
        parts.push(format!("id {id}"));
    }
    if let Some(l) = label {
        parts.push(format!("label {l:?}"));
    }
    if !tags.is_empty() {
        let t: Vec<String> = tags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        parts.push(format!("tags {}", t.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `put --dry-run`: what would be sent, the holding the server would use, what the local walk
/// found under each path (counts, sizes, and the entries the put would fail for), and the entries
/// that the holding already has (`already`, when it was asked).
pub fn put_plan_view(
    req: &PutRequest,
    plan: &PutPlan,
    scan: &LocalScan,
    already: Option<&AlreadyStored>,
    width: Option<usize>,
) -> String {
    use Align::*;
    use Fit::*;
    let mut o = String::from("Dry run: nothing was sent to be stored.\n");
    let action = if req.paths.len() == 1 {
        "put"
    } else {
        "putlist"
    };
    kv(&mut o, INDENT, "action", action);
    kv(&mut o, INDENT, "group", &plan.group);
    let holding = match (&plan.holding, &plan.new_label) {
        (Some(h), _) => format!(
            "{} ({}): existing, {} files, {}",
            h.id,
            h.label,
            h.files,
            human_size(h.bytes)
        ),
        (None, Some(l)) if req.label.is_some() => format!("new holding labelled {l:?}"),
        (None, Some(l)) => format!("new holding with a generated label (like {l:?})"),
        (None, None) => "new holding".to_owned(),
    };
    kv(&mut o, INDENT, "holding", &holding);
    if !req.tags.is_empty() {
        kv(&mut o, INDENT, "tags", &tags_text(&req.tags));
    }
    kv(
        &mut o,
        INDENT,
        "job label",
        req.job_label.as_deref().unwrap_or("(default)"),
    );
    let found = scan.found();
    kv(
        &mut o,
        INDENT,
        "paths",
        &format!(
            "{} given: {} found, {} missing or unreadable",
            scan.paths.len(),
            found,
            scan.paths.len() - found
        ),
    );
    let t = &scan.total;
    kv(
        &mut o,
        INDENT,
        "would put",
        &format!(
            "{} files, {} directories, {} links: {} ({} bytes)",
            t.files,
            t.directories,
            t.links,
            human_size(t.bytes),
            t.bytes
        ),
    );
    kv(
        &mut o,
        INDENT,
        "problems",
        &if scan.problems.is_empty() {
            "(none)".to_owned()
        } else {
            format!("{} (listed below)", scan.problems.len())
        },
    );
    if let Some(h) = &plan.holding
        && scan.found() > 0
    {
        let text = match already {
            Some(a) if a.total == 0 => "(none)".to_owned(),
            Some(a) => format!(
                "{} of these entries are already in holding {}: the put would fail for them",
                a.total, h.id
            ),
            None => format!(
                "not checked (more than {} paths)",
                nlds_client::local::MAX_CHECKED_PATHS
            ),
        };
        kv(&mut o, INDENT, "already stored", &text);
    }
    o.push('\n');
    let rows: Vec<Vec<String>> = scan
        .paths
        .iter()
        .map(|p| {
            let n = |v: u64| {
                if p.kind.is_found() {
                    v.to_string()
                } else {
                    "-".into()
                }
            };
            vec![
                p.path.clone(),
                p.kind.as_str().to_owned(),
                n(p.counts.files),
                n(p.counts.directories),
                n(p.counts.links),
                if p.kind.is_found() {
                    human_size(p.counts.bytes)
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    o.push_str(&table(
        &[
            col("path", Left, Start),
            col("type", Left, Keep),
            col("files", Right, Keep),
            col("dirs", Right, Keep),
            col("links", Right, Keep),
            col("size", Right, Keep),
        ],
        &rows,
        width,
    ));
    problems_list(
        &mut o,
        &format!(
            "Problems ({}): the put would fail for these",
            scan.problems.len()
        ),
        &scan.problems,
    );
    if let Some(a) = already.filter(|a| a.total > 0) {
        let shown = if (a.examples.len() as u64) < a.total {
            format!(", the first {}", a.examples.len())
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "\nAlready in holding {} ({}{shown}):",
            a.holding_id, a.total
        );
        for p in &a.examples {
            let _ = writeln!(o, "{INDENT}{}", printable(p));
        }
    }
    o
}

fn problems_list(o: &mut String, title: &str, problems: &[FailedFile]) {
    if problems.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n{title}:");
    for p in problems {
        let _ = writeln!(
            o,
            "{INDENT}{}: {} ({})",
            printable(&p.path),
            p.reason,
            p.code
        );
    }
}

/// `get --dry-run`: what would be sent, the files the server would restore and what would
/// happen at each destination, and the requested paths that match nothing.
pub fn get_plan_view(
    req: &GetRequest,
    plan: &GetPlan,
    dests: &[Destination],
    width: Option<usize>,
) -> String {
    use Align::*;
    use Fit::*;
    let mut o = String::from("Dry run: nothing was restored.\n");
    let action = if req.paths.len() == 1 && !req.regex {
        "get"
    } else {
        "getlist"
    };
    kv(&mut o, INDENT, "action", action);
    kv(
        &mut o,
        INDENT,
        "group",
        req.group.as_deref().unwrap_or("(your first group)"),
    );
    let mut holding = holding_selector(req.label.as_deref(), req.holding_id, &req.tags)
        .unwrap_or_else(|| "any (the newest copy of each path)".to_owned());
    if req.groupall {
        holding.push_str("; the whole group's holdings");
    }
    kv(&mut o, INDENT, "holding", &holding);
    if req.regex {
        kv(&mut o, INDENT, "regex", &req.paths.join("\n"));
    }
    kv(
        &mut o,
        INDENT,
        "target",
        &plan
            .target
            .clone()
            .or_else(|| req.target.clone())
            .map(|t| format!("{t} (files go to TARGET/original/path)"))
            .unwrap_or_else(|| "(the original paths)".to_owned()),
    );
    kv(
        &mut o,
        INDENT,
        "existing files",
        if req.overwrite {
            "replaced if different (--overwrite)"
        } else {
            "kept (--no-clobber): identical ones are skipped, different ones fail"
        },
    );
    let kind = |k: PathKind| plan.files.iter().filter(|f| f.kind == k).count();
    kv(
        &mut o,
        INDENT,
        "would get",
        &format!(
            "{} entries ({} files, {} directories, {} links): {} ({} bytes)",
            plan.files_total,
            kind(PathKind::File),
            kind(PathKind::Directory),
            kind(PathKind::Link),
            human_size(plan.bytes_total),
            plan.bytes_total
        ),
    );
    let count = |a: DestAction| dests.iter().filter(|d| d.action == a).count();
    kv(
        &mut o,
        INDENT,
        "destinations",
        &format!(
            "{} new, {} identical (skipped), {} different ({}), {} other existing",
            count(DestAction::Restore),
            count(DestAction::Skip),
            count(DestAction::Conflict) + count(DestAction::Overwrite),
            if req.overwrite {
                "overwritten"
            } else {
                "would fail"
            },
            count(DestAction::Exists),
        ),
    );
    kv(
        &mut o,
        INDENT,
        "not found",
        &if plan.missing.is_empty() {
            "(none)".to_owned()
        } else {
            format!("{} path(s) (listed below)", plan.missing.len())
        },
    );
    if !plan.files.is_empty() {
        o.push('\n');
        let rows: Vec<Vec<String>> = plan
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                vec![
                    f.holding_id.to_string(),
                    f.label.clone(),
                    if f.kind == PathKind::File {
                        human_size(f.size)
                    } else {
                        f.kind.as_str().to_owned()
                    },
                    f.path.clone(),
                    dests
                        .get(i)
                        .map(|d| d.action.as_str().to_owned())
                        .unwrap_or_default(),
                ]
            })
            .collect();
        o.push_str(&table(
            &[
                col("h-id", Right, Keep),
                col("h-label", Left, End),
                col("size", Right, Keep),
                col("path", Left, Start),
                col("at destination", Left, Keep),
            ],
            &rows,
            width,
        ));
        if (plan.files.len() as u64) < plan.files_total {
            let _ = writeln!(
                o,
                "(showing {} of {} files)",
                plan.files.len(),
                plan.files_total
            );
        }
    }
    problems_list(
        &mut o,
        &format!(
            "Not found ({}): nothing stored matches these",
            plan.missing.len()
        ),
        &plan.missing,
    );
    let conflicts = count(DestAction::Conflict);
    if conflicts > 0 {
        let _ = writeln!(
            o,
            "\n{conflicts} file(s) exist with different content: the get would fail for them;\n\
             --overwrite replaces them."
        );
    }
    o
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
    }

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
        let cols = [
            col("a", Align::Left, Fit::End),
            col("num", Align::Right, Fit::Keep),
            col("z", Align::Left, Fit::Start),
        ];
        let rows = [
            vec!["long value".into(), "1".into(), "x".into()],
            vec!["s".into(), "1234".into(), "".into()],
        ];
        let t = table(&cols, &rows, None);
        assert_eq!(
            t,
            "a            num  z\nlong value     1  x\ns           1234\n"
        );
        assert_eq!(table(&cols, &rows, Some(200)), t, "fits: unchanged");
        assert_eq!(state_name(State::Searching), "QUEUED");
        assert_eq!(state_name(State::Complete), "COMPLETE");
    }

    #[test]
    fn narrow_tables_shorten_with_an_ellipsis_and_stay_aligned() {
        let cols = [
            col("label", Align::Left, Fit::End),
            col("n", Align::Right, Fit::Keep),
            col("path", Align::Left, Fit::Start),
        ];
        let rows = [
            vec![
                "a-very-long-label-indeed".into(),
                "7".into(),
                "/gws/project/run42/day/tas_day_2026.nc".into(),
            ],
            vec!["short".into(), "12345".into(), "/a".into()],
            vec![
                "tab\there".into(),
                "1".into(),
                "/ü/日本語/ファイル.nc".into(),
            ],
        ];
        let t = table(&cols, &rows, Some(40));
        for line in t.lines() {
            assert!(text_width(line) <= 40, "{line:?} is wider than 40");
        }
        assert_eq!(
            t,
            [
                "label            n  path",
                "a-very-lon\u{2026}      7  \u{2026}day/tas_day_2026.nc",
                "short        12345  /a",
                "tab?here         1  \u{2026}/日本語/ファイル.nc",
                "",
            ]
            .join("\n")
        );
        // Wide characters count two cells: a cut never splits one, and padding follows widths.
        assert_eq!(shorten("日本語ファイル", 6, false), "日本\u{2026}");
        assert_eq!(shorten("日本語ファイル", 6, true), "\u{2026}イル");
        assert_eq!(shorten("abc", 3, true), "abc");
        assert_eq!(shorten("abcd", 1, false), "\u{2026}");
        // Columns that cannot give way leave the table wider than asked, but aligned.
        assert_eq!(
            table(&cols, &rows, Some(5)),
            [
                "label         n  path",
                "a-very-\u{2026}      7  \u{2026}2026.nc",
                "short     12345  /a",
                "tab?here      1  \u{2026}イル.nc",
                "",
            ]
            .join("\n")
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(Duration::from_secs(10)), "10s");
        assert_eq!(duration_text(Duration::from_secs(120)), "2m");
        assert_eq!(duration_text(Duration::from_secs(90)), "90s");
        assert_eq!(duration_text(Duration::from_secs(7200)), "2h");
        assert_eq!(duration_text(Duration::from_millis(250)), "250ms");
    }
}
