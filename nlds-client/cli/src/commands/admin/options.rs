//! What the admin subcommands share: paging, time ranges and the next-page note.

use chrono::{DateTime, Utc};
use clap::Args;
use nlds_core::api::MAX_LIMIT;

use crate::ctx::{Ctx, Failure, Io, note};
use nlds_client::config::parse_duration;

/// Paging options shared by the admin commands.
#[derive(Debug, Clone, Default, Args)]
pub struct Paging {
    /// At most this many rows.
    #[arg(short = 'L', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT))]
    pub limit: Option<u64>,

    /// Skip this many rows first (the next page: --offset of the last plus its rows).
    #[arg(long, value_name = "N")]
    pub offset: Option<u64>,
}

/// `--since` / `--until`: a time (RFC 3339, e.g. 2026-11-25T08:00:00Z) or a duration ago (2h).
#[derive(Debug, Clone, Default, Args)]
pub struct TimeRange {
    /// From this time on: RFC 3339 (2026-11-25T08:00:00Z) or a duration ago (e.g. 2h).
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    pub since: Option<When>,

    /// Before this time: RFC 3339 or a duration ago.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    pub until: Option<When>,
}

/// A point in time given on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    At(DateTime<Utc>),
    Ago(std::time::Duration),
}

impl When {
    pub(super) fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            When::At(t) => t,
            When::Ago(d) => now - chrono::Duration::from_std(d).unwrap_or_default(),
        }
    }
}

/// An RFC 3339 time, or a duration meaning that long ago.
pub fn parse_when(s: &str) -> Result<When, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(When::At(t.with_timezone(&Utc)));
    }
    parse_duration(s).map(When::Ago).map_err(|_| {
        format!("{s:?} is neither a time (RFC 3339, e.g. 2026-11-25T08:00:00Z) nor a duration ago (e.g. 2h)")
    })
}

/// Whole minutes, rounded up (a duration under a minute is one minute).
pub(super) fn minutes(d: Option<std::time::Duration>) -> Option<u64> {
    d.map(|d| d.as_secs().div_ceil(60).max(1))
}

pub(super) fn join<T: ToString>(v: &[T]) -> Option<String> {
    (!v.is_empty()).then(|| v.iter().map(T::to_string).collect::<Vec<_>>().join(","))
}

pub(super) type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

pub(super) fn range(r: &TimeRange, now: DateTime<Utc>) -> Result<Range, Failure> {
    let since = r.since.map(|w| w.resolve(now));
    let until = r.until.map(|w| w.resolve(now));
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(Failure::usage(format!(
            "--since ({s}) must be before --until ({u})"
        )));
    }
    Ok((since, until))
}

pub(super) fn more(io: &mut Io<'_>, ctx: &Ctx, shown: usize, offset: u64, total: u64, what: &str) {
    let end = offset + shown as u64;
    if total > end {
        note(
            io,
            ctx,
            &format!(
                "note: showing {what} {}-{end} of {total}; the next page: --offset {end}",
                offset + 1
            ),
        );
    }
}
