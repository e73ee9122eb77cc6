//! Why a get found nothing for a path: the path is in none of the caller's holdings, or it is
//! there but has no version the get selected (`--version N`, `--at TIME`): then the reason says
//! which versions it has, or when its first version was stored (docs/VERSIONS.md).

use chrono::{DateTime, SecondsFormat, Utc};
use nlds_core::versions::VersionSelect;
use nlds_core::{ErrorCode, FailedFile};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, JoinType, QueryFilter, QueryOrder, QuerySelect,
    RelationTrait,
};

use super::Result;
use super::store::scoped_files;
use crate::db::{file, transaction};

/// The live versions of `path` (normalised) in the holdings of `scope`: (number, ingest time),
/// oldest ingest first.
async fn stored_versions(
    c: &impl ConnectionTrait,
    scope: &Condition,
    path: &str,
) -> Result<Vec<(i32, DateTime<Utc>)>> {
    Ok(scoped_files(scope)
        .join(JoinType::InnerJoin, file::Relation::Transaction.def())
        .select_only()
        .column(file::Column::Version)
        .column(transaction::Column::IngestTime)
        .filter(file::Column::Path.eq(path))
        .order_by_asc(transaction::Column::IngestTime)
        .order_by_asc(file::Column::Version)
        .into_tuple()
        .all(c)
        .await?)
}

/// A time as the reasons show it (RFC 3339, UTC, with the fraction a stored time has, so the
/// same text given as `--at` selects that version).
fn shown(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// "1, 2 and 3".
fn listed(numbers: &[i32]) -> String {
    match numbers {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(i32::to_string).collect();
            format!("{} and {last}", init.join(", "))
        }
    }
}

/// The reason a read of `path` with `sel` found nothing although the path has the live
/// versions `stored` (oldest ingest first): None when it has none (the path is not there at all)
/// or `sel` selects no particular version.
pub(super) fn no_such_version(
    path: &str,
    sel: &VersionSelect,
    stored: &[(i32, DateTime<Utc>)],
) -> Option<String> {
    let (_, first) = stored.first()?;
    match sel {
        VersionSelect::Number(n) => {
            let mut numbers: Vec<i32> = stored.iter().map(|(v, _)| *v).collect();
            numbers.sort_unstable();
            numbers.dedup();
            let (what, which) = if numbers.len() == 1 {
                ("version", listed(&numbers))
            } else {
                ("versions", listed(&numbers))
            };
            Some(format!("{path} has no version {n}: it has {what} {which}"))
        }
        VersionSelect::At(t) => Some(format!(
            "{path} has no version stored at or before {}: its first version was stored at {}",
            shown(*t),
            shown(*first)
        )),
        VersionSelect::Newest | VersionSelect::All => None,
    }
}

/// The failure of a requested path `given` (normalised: `norm`; None for a regular expression)
/// that matched nothing: no such version of a path the holdings have, or (`whose`) in none of
/// the caller's holdings.
pub(super) async fn unmatched(
    c: &impl ConnectionTrait,
    scope: &Condition,
    sel: &VersionSelect,
    given: &str,
    norm: Option<&str>,
    whose: &str,
) -> Result<FailedFile> {
    if let (Some(norm), VersionSelect::Number(_) | VersionSelect::At(_)) = (norm, sel) {
        let stored = stored_versions(c, scope, norm).await?;
        if let Some(reason) = no_such_version(given, sel, &stored) {
            return Ok(FailedFile::new(given, ErrorCode::NotFound, reason));
        }
    }
    Ok(FailedFile::new(
        given,
        ErrorCode::NotFound,
        format!("{given} is in none of {whose} holdings"),
    ))
}

#[cfg(test)]
mod unit {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 250_000_000).unwrap()
    }

    #[test]
    fn a_missing_number_lists_the_versions_there_are() {
        let stored = [(1, at(10)), (2, at(20)), (4, at(40))];
        assert_eq!(
            no_such_version("/a", &VersionSelect::Number(9), &stored).as_deref(),
            Some("/a has no version 9: it has versions 1, 2 and 4")
        );
        assert_eq!(
            no_such_version("/a", &VersionSelect::Number(2), &stored[2..]).as_deref(),
            Some("/a has no version 2: it has version 4")
        );
    }

    #[test]
    fn a_time_before_the_first_version_names_its_time() {
        let stored = [(1, at(1_764_900_000)), (2, at(1_764_990_000))];
        assert_eq!(
            no_such_version("/a", &VersionSelect::At(at(1_000)), &stored).as_deref(),
            Some(
                "/a has no version stored at or before 1970-01-01T00:16:40.250Z: its first \
                 version was stored at 2025-12-05T02:00:00.250Z"
            )
        );
    }

    #[test]
    fn a_path_with_no_versions_or_no_selection_has_no_such_reason() {
        assert_eq!(no_such_version("/a", &VersionSelect::Number(1), &[]), None);
        let stored = [(1, at(10))];
        assert_eq!(no_such_version("/a", &VersionSelect::Newest, &stored), None);
        assert_eq!(no_such_version("/a", &VersionSelect::All, &stored), None);
    }
}
