//! The formatting every view shares, in the layout of the Python NLDS client: ISO 8601 times
//! that carry their offset, 1024-based sizes, tables that fit the terminal and `key : value`
//! lines. The views themselves live with their commands (`commands::*::view`) and in
//! [`crate::transaction`].
//!
//! Every function returns a `String` (ending in a newline when not empty) and depends only on its
//! arguments, so outputs can be checked against golden files.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nlds_core::api::Tags;
use nlds_core::{FailedFile, State};

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

/// When a file or holding was last accessed (by a get, recall or stage), or `never`.
pub fn last_access(t: Option<&DateTime<Utc>>, zone: Zone) -> String {
    t.map_or_else(|| "never".to_owned(), |t| time(t, zone))
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
/// `s` for a terminal: the bytes of a path name that are not UTF-8 escaped as `\xE9` (see
/// `nlds_core::pathname`), control characters as `?` (as every name shown before).
pub(crate) fn printable(s: &str) -> String {
    use nlds_core::pathname;
    if !s
        .chars()
        .any(|c| c.is_control() || pathname::is_reserved(c))
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if pathname::is_reserved(c) {
            out.push_str(&pathname::display(c.encode_utf8(&mut [0; 4])));
        } else if c.is_control() {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
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

pub(crate) fn tags_text(tags: &Tags) -> String {
    if tags.is_empty() {
        return "(none)".into();
    }
    tags.iter()
        .map(|(k, v)| format!("{k} : {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
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

pub(crate) fn holding_selector(
    label: Option<&str>,
    holding_id: Option<i64>,
    tags: &Tags,
) -> Option<String> {
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

pub(crate) fn problems_list(o: &mut String, title: &str, problems: &[FailedFile]) {
    if problems.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n{title}:");
    for p in problems {
        let _ = writeln!(
            o,
            "{INDENT}{}: {} ({})",
            printable(&p.path),
            printable(&p.reason),
            p.code
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_utf8_are_shown_escaped() {
        assert_eq!(printable("/d/caf\u{10FEE9}.txt"), "/d/caf\\xE9.txt");
        assert_eq!(printable("new\nline"), "new?line");
        assert_eq!(printable("/ü/plain"), "/ü/plain");
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
