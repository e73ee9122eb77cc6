//! A set of row ids in a read's `WHERE`, written for the backend.
//!
//! On PostgreSQL the ids are one array parameter (`"t"."c" = ANY($1)`), however many there are:
//! the statement's text is the same for every set, so a connection prepares it once, and a page
//! of 1,000 files needs one statement per lookup instead of two `IN` lists of 500 parameters,
//! each planned anew (0.9-1.0 ms against 0.3 ms, BENCHMARKS.md "rows decoded by position"). On
//! SQLite, which has no arrays, they are `IN` lists of at most [`CHUNK`] parameters.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbBackend};

use super::CHUNK;

/// `ids` in as many parts as `backend` needs one statement each for: one part on PostgreSQL,
/// parts of at most [`CHUNK`] ids on SQLite. No ids: no part.
pub(super) fn parts(backend: DbBackend, ids: &[i64]) -> std::slice::Chunks<'_, i64> {
    let size = match backend {
        DbBackend::Postgres => ids.len().max(1),
        _ => CHUNK,
    };
    ids.chunks(size)
}

/// `col` is one of `ids` (one part of [`parts`]).
pub(super) fn any_of(backend: DbBackend, col: impl ColumnTrait, ids: &[i64]) -> Expr {
    match backend {
        DbBackend::Postgres => col.eq_any(ids.iter().copied()),
        _ => col.is_in(ids.iter().copied()),
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{EntityTrait, QueryFilter, QueryTrait};

    use super::*;
    use crate::db::location;

    fn statement(backend: DbBackend, ids: &[i64]) -> (String, usize) {
        let s = location::Entity::find()
            .filter(any_of(backend, location::Column::FileId, ids))
            .build(backend);
        (s.sql, s.values.map_or(0, |v| v.0.len()))
    }

    #[test]
    fn postgres_binds_every_id_as_one_array_in_one_statement() {
        let ids: Vec<i64> = (1..=1_001).collect();
        assert_eq!(parts(DbBackend::Postgres, &ids).count(), 1);
        let (a, n) = statement(DbBackend::Postgres, &ids);
        let (b, _) = statement(DbBackend::Postgres, &ids[..3]);
        assert!(
            a.ends_with(r#"WHERE "location"."file_id" = ANY($1)"#),
            "{a}"
        );
        assert_eq!(n, 1, "one parameter, the array");
        assert_eq!(a, b, "the same text for any number of ids");
    }

    #[test]
    fn sqlite_lists_at_most_a_chunk_of_ids_per_statement() {
        let ids: Vec<i64> = (1..=1_001).collect();
        let sizes: Vec<usize> = parts(DbBackend::Sqlite, &ids).map(<[i64]>::len).collect();
        assert_eq!(sizes, [CHUNK, CHUNK, 1]);
        let (sql, n) = statement(DbBackend::Sqlite, &ids[..CHUNK]);
        assert!(sql.contains(r#""location"."file_id" IN (?, ?"#), "{sql}");
        assert_eq!(n, CHUNK);
    }

    #[test]
    fn no_ids_is_no_statement() {
        assert_eq!(parts(DbBackend::Postgres, &[]).count(), 0);
        assert_eq!(parts(DbBackend::Sqlite, &[]).count(), 0);
    }
}
