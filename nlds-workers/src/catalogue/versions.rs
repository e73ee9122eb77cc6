//! Versions of a path in a holding (docs/VERSIONS.md): the newest live version a put compares
//! with, the number a new version gets, which version a read selects, and the pruning of old
//! versions beyond `[workers.versions] keep`.
//!
//! Every query here is on the live unique index `(holding_id, path, version)`: the newest live
//! version of a path is one backward step in that index.

use std::collections::HashMap;

use chrono::Utc;
use nlds_core::PathKind;
use nlds_core::versions::{
    EntryVerdict, LocalEntry, LocalPath, StoredVersion, SyncLevel, Verdict, VersionSelect, classify,
};
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QuerySelect};
use sea_orm::{QueryOrder, RelationTrait};

use super::{BLAKE3, CHUNK, Result, to_u64, usage};
use crate::db::{checksum, file, holding, holding_stat, transaction};

/// SQL: no live version of the same path in the same holding is newer than this `file` row.
///
/// Written as the highest live version of the path (none: 0) against this row's, not as `NOT
/// EXISTS (a newer one)`: PostgreSQL turns that into an anti-join whose plan depends on the
/// table's statistics, and on a table not analyzed yet (a new installation, a holding filling
/// up during a put) it compared each of a batch's 1,000 paths with every version in the holding
/// (13 s for 1,000 paths of a 10,000-file holding, BENCHMARKS.md "Batches in turn"). The scalar
/// subquery is one backward step in the live unique index `(holding_id, path, version)` per row
/// whatever the statistics (27 ms for the same query), on SQLite too.
const NO_NEWER: &str = r#"COALESCE((SELECT MAX("newer"."version") FROM "file" AS "newer" WHERE "newer"."holding_id" = "file"."holding_id" AND "newer"."path" = "file"."path" AND "newer"."deleted_at" IS NULL), 0) <= "file"."version""#;

/// The condition (on `file`) a read's version selection adds.
pub(super) fn selected(sel: &VersionSelect) -> SimpleExpr {
    match sel {
        VersionSelect::Newest => Expr::cust(NO_NEWER),
        VersionSelect::All => Expr::cust("1 = 1"),
        VersionSelect::Number(n) => file::Column::Version.eq(i64::from(*n)),
        VersionSelect::At(t) => at_time(*t),
    }
}

/// The condition (on `file`) the version selection of a find or get adds to the files of the
/// holdings in `scope`: as [`selected`], except that when the read names its holding (`named`:
/// by id or label), the newest live version of each path skips the newer-version probe of every row if
/// no holding in the scope holds two live versions of a path.
///
/// That is when each of them has as many live versions as paths with one (`holding_stat.files
/// = paths`), which the triggers on `file` keep in the same transaction as the files. Written
/// as an uncorrelated `NOT EXISTS` before an `OR`: both PostgreSQL (an InitPlan) and SQLite
/// evaluate it once per statement, in the statement's snapshot, and the probe only runs when
/// it is false. A label's first 1,000 files of 10,000,000 spent about a third of PostgreSQL's
/// time in the probe (BENCHMARKS.md). Joining `holding_stat` row by row instead made
/// PostgreSQL hash all of it (measured; the plan guard catches that plan). A read of all of a
/// user's holdings keeps the probe: it reads few rows of many holdings, where checking every
/// holding would cost more than the probes it saves.
pub(super) fn selected_in(
    sel: &VersionSelect,
    scope: &sea_orm::Condition,
    named: bool,
) -> SimpleExpr {
    use sea_orm::sea_query::{ExprTrait, Query};
    match sel {
        VersionSelect::Newest if named => {
            let stat = holding_stat::Entity;
            let two_versions_held = Query::select()
                .expr(Expr::val(1))
                .from(holding::Entity)
                .inner_join(
                    stat,
                    Expr::col((stat, holding_stat::Column::HoldingId))
                        .equals((holding::Entity, holding::Column::Id)),
                )
                .cond_where(scope.clone())
                .and_where(
                    Expr::col((stat, holding_stat::Column::Paths))
                        .ne(Expr::col((stat, holding_stat::Column::Files))),
                )
                .to_owned();
            Expr::exists(two_versions_held)
                .not()
                .or(Expr::cust(NO_NEWER))
        }
        other => selected(other),
    }
}

/// The newest live version of each path ingested at or before `t` (the ingest time of its put).
fn at_time(t: chrono::DateTime<Utc>) -> SimpleExpr {
    use sea_orm::sea_query::{Alias, ExprTrait, JoinType as J, Query};
    let (newer, nt) = (Alias::new("newer"), Alias::new("nt"));
    let put_by_then = Query::select()
        .column(transaction::Column::Id)
        .from(transaction::Entity)
        .and_where(Expr::col(transaction::Column::IngestTime).lte(t))
        .to_owned();
    let newer_by_then = Query::select()
        .expr(Expr::val(1))
        .from_as(file::Entity, newer.clone())
        .join_as(
            J::InnerJoin,
            transaction::Entity,
            nt.clone(),
            Expr::col((nt.clone(), transaction::Column::Id))
                .equals((newer.clone(), file::Column::TransactionId)),
        )
        .and_where(
            Expr::col((newer.clone(), file::Column::HoldingId))
                .equals((file::Entity, file::Column::HoldingId)),
        )
        .and_where(
            Expr::col((newer.clone(), file::Column::Path))
                .equals((file::Entity, file::Column::Path)),
        )
        .and_where(
            Expr::col((newer.clone(), file::Column::Version))
                .gt(Expr::col((file::Entity, file::Column::Version))),
        )
        .and_where(Expr::col((newer, file::Column::DeletedAt)).is_null())
        .and_where(Expr::col((nt, transaction::Column::IngestTime)).lte(t))
        .to_owned();
    Expr::col((file::Entity, file::Column::TransactionId))
        .in_subquery(put_by_then)
        .and(Expr::exists(newer_by_then).not())
}

/// The newest live version of a path in a holding.
#[derive(Debug, Clone)]
pub(super) struct Newest {
    pub(super) file_id: i64,
    pub(super) version: i32,
    pub(super) transaction_pk: i64,
    pub(super) tid: String,
    pub(super) kind: PathKind,
    pub(super) size: i64,
    pub(super) mtime_ns: i64,
    pub(super) link_target: Option<String>,
    pub(super) blake3: Option<String>,
}

impl Newest {
    /// What a put at `level` does with `f` (a path this is the newest version of).
    pub(super) fn classify(&self, level: SyncLevel, f: &nlds_core::FileRecord) -> Verdict {
        let local = LocalPath {
            kind: f.kind,
            size: f.size,
            mtime_ns: f.mtime_ns,
            link_target: f.link_target.as_deref(),
        };
        classify(level, &local, Some(&self.stored()))
    }

    /// As [`classify`] compares it.
    fn stored(&self) -> StoredVersion<'_> {
        StoredVersion {
            kind: self.kind,
            size: to_u64(self.size),
            mtime_ns: self.mtime_ns,
            link_target: self.link_target.as_deref(),
            blake3: self.blake3.as_deref(),
        }
    }
}

type NewestRow = (
    i64,
    String,
    i32,
    i64,
    String,
    PathKind,
    i64,
    i64,
    Option<String>,
);

/// The newest live version of each of `paths` in holding `h` that has one, by path (with its
/// blake3 when `with_checksums`).
pub(super) async fn newest(
    c: &impl ConnectionTrait,
    h: i64,
    paths: &[&str],
    with_checksums: bool,
) -> Result<HashMap<String, Newest>> {
    let mut out = HashMap::new();
    for chunk in paths.chunks(CHUNK) {
        let rows: Vec<NewestRow> = file::Entity::find()
            .select_only()
            .column(file::Column::Id)
            .column(file::Column::Path)
            .column(file::Column::Version)
            .column(file::Column::TransactionId)
            .column_as(transaction::Column::TransactionId, "tid")
            .column(file::Column::Kind)
            .column(file::Column::Size)
            .column(file::Column::MtimeNs)
            .column(file::Column::LinkTarget)
            .join(JoinType::InnerJoin, file::Relation::Transaction.def())
            .filter(file::Column::HoldingId.eq(h))
            .filter(file::Column::DeletedAt.is_null())
            .filter(file::Column::Path.is_in(chunk.iter().copied()))
            .filter(Expr::cust(NO_NEWER))
            .into_tuple()
            .all(c)
            .await?;
        for (file_id, path, version, transaction_pk, tid, kind, size, mtime_ns, link_target) in rows
        {
            out.insert(
                path,
                Newest {
                    file_id,
                    version,
                    transaction_pk,
                    tid,
                    kind,
                    size,
                    mtime_ns,
                    link_target,
                    blake3: None,
                },
            );
        }
    }
    if with_checksums {
        let ids: Vec<(i64, String)> = out.iter().map(|(p, n)| (n.file_id, p.clone())).collect();
        let by_id: HashMap<i64, String> = ids.into_iter().collect();
        let keys: Vec<i64> = by_id.keys().copied().collect();
        for chunk in keys.chunks(CHUNK) {
            for s in checksum::Entity::find()
                .filter(checksum::Column::FileId.is_in(chunk.iter().copied()))
                .filter(checksum::Column::Algorithm.eq(BLAKE3))
                .all(c)
                .await?
            {
                if let Some(n) = by_id.get(&s.file_id).and_then(|p| out.get_mut(p)) {
                    n.blake3 = Some(s.value);
                }
            }
        }
    }
    Ok(out)
}

/// The highest version number each of `paths` has in holding `h`, deleted versions included (a
/// new version never reuses a number), by path.
pub(super) async fn highest(
    c: &impl ConnectionTrait,
    h: i64,
    paths: &[&str],
) -> Result<HashMap<String, i32>> {
    let mut out = HashMap::new();
    for chunk in paths.chunks(CHUNK) {
        let rows: Vec<(String, i32)> = file::Entity::find()
            .select_only()
            .column(file::Column::Path)
            .expr(Expr::cust(r#"CAST(MAX("file"."version") AS INTEGER)"#))
            .filter(file::Column::HoldingId.eq(h))
            .filter(file::Column::Path.is_in(chunk.iter().copied()))
            .group_by(file::Column::Path)
            .into_tuple()
            .all(c)
            .await?;
        out.extend(rows);
    }
    Ok(out)
}

/// The live version `version` of each of `paths` in holding `h` (path -> (file id, transaction
/// pk)): who won an insert of that number.
pub(super) async fn at_version(
    c: &impl ConnectionTrait,
    h: i64,
    wanted: &[(&str, i32)],
) -> Result<HashMap<(String, i32), (i64, i64)>> {
    let mut out = HashMap::new();
    let paths: Vec<&str> = wanted.iter().map(|(p, _)| *p).collect();
    for chunk in paths.chunks(CHUNK) {
        let rows: Vec<(i64, String, i32, i64)> = file::Entity::find()
            .select_only()
            .column(file::Column::Id)
            .column(file::Column::Path)
            .column(file::Column::Version)
            .column(file::Column::TransactionId)
            .filter(file::Column::HoldingId.eq(h))
            .filter(file::Column::DeletedAt.is_null())
            .filter(file::Column::Path.is_in(chunk.iter().copied()))
            .order_by_asc(file::Column::Id)
            .into_tuple()
            .all(c)
            .await?;
        for (id, path, version, tx) in rows {
            out.insert((path, version), (id, tx));
        }
    }
    Ok(out)
}

/// Soft-deletes the live versions of `paths` in holding `h` older than the newest `keep`
/// (`keep` 0: none), as deleted by `tid`, keeping the usage counters (old versions count until
/// they are deleted). Returns how many were deleted.
pub(super) async fn prune(
    c: &impl ConnectionTrait,
    h: i64,
    paths: &[&str],
    keep: u32,
    tid: &str,
) -> Result<u64> {
    if keep == 0 || paths.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::new();
    let older = format!(
        r#"(SELECT COUNT(*) FROM "file" AS "newer" WHERE "newer"."holding_id" = "file"."holding_id" AND "newer"."path" = "file"."path" AND "newer"."version" > "file"."version" AND "newer"."deleted_at" IS NULL) >= {keep}"#
    );
    for chunk in paths.chunks(CHUNK) {
        let found: Vec<i64> = file::Entity::find()
            .select_only()
            .column(file::Column::Id)
            .filter(file::Column::HoldingId.eq(h))
            .filter(file::Column::DeletedAt.is_null())
            .filter(file::Column::Path.is_in(chunk.iter().copied()))
            .filter(Expr::cust(older.clone()))
            .into_tuple()
            .all(c)
            .await?;
        ids.extend(found);
    }
    if ids.is_empty() {
        return Ok(0);
    }
    let before = usage::counted(c, &ids).await?;
    let now = Utc::now();
    for chunk in ids.chunks(CHUNK) {
        file::Entity::update_many()
            .col_expr(file::Column::DeletedAt, Expr::value(now))
            .col_expr(
                file::Column::DeletedBy,
                Expr::value(format!("versions.keep = {keep}")),
            )
            .col_expr(file::Column::DeleteTransaction, Expr::value(tid.to_owned()))
            .filter(file::Column::Id.is_in(chunk.iter().copied()))
            .filter(file::Column::DeletedAt.is_null())
            .exec(c)
            .await?;
    }
    usage::settle(c, &ids, &before).await?;
    Ok(ids.len() as u64)
}

impl super::Catalogue {
    /// `catalog.plan` with [`nlds_core::Payload::ClassifyPut`]: what a put at the envelope's sync
    /// level (absent: `mtime`) would do with `entries` in holding `h`, decided by the same
    /// [`classify`] as catalog-check. A holding the caller cannot see is not found.
    pub(super) async fn classify_put(
        &self,
        env: &nlds_core::Envelope,
        h: i64,
        entries: &[LocalEntry],
    ) -> Result<Vec<EntryVerdict>> {
        let filter = nlds_core::message::HoldingFilter {
            holding_id: Some(h),
            ..Default::default()
        };
        let scope = self.scope(env, &filter, false).await?;
        let visible = crate::db::holding::Entity::find()
            .filter(scope)
            .one(&self.db)
            .await?;
        if visible.is_none() {
            return Err(nlds_core::error::ApiError::not_found(format!(
                "holding {h} not found among the holdings you can see"
            ))
            .into());
        }
        let level = env.sync.unwrap_or_default();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        let stored = newest(&self.db, h, &paths, level == SyncLevel::Checksum).await?;
        Ok(entries
            .iter()
            .map(|e| {
                let newest = stored.get(&e.path);
                let verdict = match newest {
                    None => Verdict::New,
                    Some(n) => {
                        let local = LocalPath {
                            kind: e.kind,
                            size: e.size,
                            mtime_ns: e.mtime_ns,
                            link_target: e.link_target.as_deref(),
                        };
                        classify(level, &local, Some(&n.stored()))
                    }
                };
                EntryVerdict {
                    path: e.path.clone(),
                    verdict: verdict.settle(e.blake3.as_deref()),
                    stored_version: newest.and_then(|n| u32::try_from(n.version).ok()),
                }
            })
            .collect())
    }
}
