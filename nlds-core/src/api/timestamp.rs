//! Timestamps of pages (a file's `mtime`, `ingest_time`, `last_access`) written exactly as
//! chrono's `Serialize` writes them (RFC 3339, UTC as `Z`, the fraction in 0, 3, 6 or 9 digits as
//! needed), but formatted once into a string: chrono's own goes through `collect_str`, which
//! sends each piece of the text through serde_json's escaping writer. A page of 1,000 files has
//! 2,000 to 3,000 timestamps; that path took 9 % of the catalogue's instructions for a label's first
//! page (BENCHMARKS.md, "ids as one array"). Reading them back is chrono's, unchanged.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// `#[serde(serialize_with = "timestamp::write")]` for a `DateTime<Utc>`.
pub(super) fn write<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// `#[serde(serialize_with = "timestamp::write_option")]` for an `Option<DateTime<Utc>>`.
pub(super) fn write_option<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&Rfc3339(t)),
        None => s.serialize_none(),
    }
}

struct Rfc3339<'a>(&'a DateTime<Utc>);

impl Serialize for Rfc3339<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        write(self.0, s)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[derive(Serialize)]
    struct Ours {
        #[serde(serialize_with = "write")]
        t: DateTime<Utc>,
        #[serde(serialize_with = "write_option")]
        o: Option<DateTime<Utc>>,
    }

    #[derive(Serialize)]
    struct Chronos {
        t: DateTime<Utc>,
        o: Option<DateTime<Utc>>,
    }

    #[test]
    fn written_exactly_as_chrono_writes_them() {
        let base = Utc.with_ymd_and_hms(2026, 12, 7, 16, 5, 9).unwrap();
        let times = [
            base,
            base + chrono::Duration::milliseconds(120),
            base + chrono::Duration::microseconds(120_001),
            base + chrono::Duration::nanoseconds(1),
            DateTime::from_timestamp_nanos(0),
            DateTime::from_timestamp_nanos(-1),
            DateTime::from_timestamp_nanos(i64::MAX),
            DateTime::from_timestamp(-62_135_596_800, 0).unwrap(), // 0001-01-01
            // A leap second (the fraction past 1 s).
            DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap(),
        ];
        for t in times {
            for o in [None, Some(t)] {
                let ours = serde_json::to_string(&Ours { t, o }).unwrap();
                let chronos = serde_json::to_string(&Chronos { t, o }).unwrap();
                assert_eq!(ours, chronos, "{t:?}");
            }
        }
        let ours = serde_json::to_string(&Ours { t: base, o: None }).unwrap();
        assert_eq!(ours, r#"{"t":"2026-12-07T16:05:09Z","o":null}"#);
    }
}
