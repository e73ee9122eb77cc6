//! The catalogue scan: every live file (`kind = file`, not deleted) in keyset pages, one query
//! per page returning all the policy needs to know about each file ([`ScanRow`]), and the
//! holdings' tags loaded once per holding.
//!
//! A page is the next [`PAGE`] file ids after the last one seen; its upper bound is worked out
//! inside the same statement (`bounds`), so every joined table is read by an id range as well as
//! joined on it, which lets PostgreSQL merge or hash join a page rather than probe per row.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use nlds_policy::FileFacts;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    Statement, TransactionSession, TransactionTrait, Value,
};

use crate::db::tag;

/// Files per page.
pub const PAGE: u64 = 10_000;

/// What the policy (and the runner's guards) know about one live file.
#[derive(Debug, Clone, FromQueryResult)]
pub struct ScanRow {
    pub id: i64,
    pub holding_id: i64,
    pub path: String,
    pub size: i64,
    /// The ingest time of the file's transaction.
    pub ingested: DateTime<Utc>,
    pub last_access: Option<DateTime<Utc>>,
    pub label: String,
    pub user: String,
    pub group: String,
    /// The tenancy of the warm copy (`None`: the default object store, or no warm copy).
    pub tenancy: Option<String>,
    pub has_warm: bool,
    pub has_cold: bool,
    /// The cold copy is in an aggregation in state `stored` (written and verified).
    pub cold_verified: bool,
    /// The file is a member of an aggregation (being written, or stored).
    pub in_aggregation: bool,
    /// A `pin` row keeps the file warm now.
    pub pinned: bool,
    /// A recall of its aggregate or a stage request waits for the file.
    pub awaited: bool,
}

impl ScanRow {
    pub fn size(&self) -> u64 {
        self.size.max(0) as u64
    }

    /// The time the least-recently-used order goes by: the last access, else the ingest.
    pub fn recency(&self) -> DateTime<Utc> {
        self.last_access.unwrap_or(self.ingested)
    }
}

/// The policy's view of `row`, with its holding's `tags`.
pub fn facts_of<'a>(row: &'a ScanRow, tags: &'a [(String, String)]) -> FileFacts<'a> {
    FileFacts {
        path: &row.path,
        size: row.size(),
        ingested: row.ingested,
        last_access: row.last_access,
        label: &row.label,
        user: &row.user,
        group: &row.group,
        tenancy: row.tenancy.as_deref(),
        tags,
        warm: row.has_warm,
        cold: row.has_cold,
    }
}

/// `$n` on PostgreSQL, `?n` on SQLite.
fn ph(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    }
}

/// The scan's columns and joins over the files `f` the caller's `WHERE` selects; `$1` is now.
fn select(backend: DbBackend, from: &str, range: &str) -> String {
    let now = ph(backend, 1);
    let waiting = crate::db::stage_file::WAITING
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"SELECT f.id, f.holding_id, f.path, f.size, t.ingest_time AS ingested, f.last_access,
       h.label, h."user", h."group", w.tenancy AS tenancy,
       (w.file_id IS NOT NULL) AS has_warm,
       (c.file_id IS NOT NULL) AS has_cold,
       (c.file_id IS NOT NULL AND a.state IS NOT NULL AND a.state = 'stored') AS cold_verified,
       (am.file_id IS NOT NULL) AS in_aggregation,
       EXISTS (SELECT 1 FROM pin p WHERE p.file_id = f.id AND p.until > {now}) AS pinned,
       (r.id IS NOT NULL OR EXISTS (SELECT 1 FROM stage_file sf
            WHERE sf.file_id = f.id AND sf.state IN ({waiting}))) AS awaited
FROM {from}
JOIN "transaction" t ON t.id = f.transaction_id
JOIN holding h ON h.id = f.holding_id
LEFT JOIN (SELECT file_id, tenancy FROM location WHERE tier = 'warm' {range}) w ON w.file_id = f.id
LEFT JOIN (SELECT file_id FROM location WHERE tier = 'cold' {range}) c ON c.file_id = f.id
LEFT JOIN (SELECT file_id, aggregation_id FROM aggregation_member WHERE 1 = 1 {range}) am
       ON am.file_id = f.id
LEFT JOIN aggregation a ON a.id = am.aggregation_id
LEFT JOIN recall r ON r.aggregation_id = am.aggregation_id"#
    )
}

/// One page: the live files with ids above `after`, at most `limit`, in id order.
///
/// On PostgreSQL the page runs with JIT compilation off (`SET LOCAL jit = off` in its own read
/// transaction): the query is planned afresh for each page, and compiling it costs more than it
/// saves (bench/policy.sh over 10 million files: 95 s with JIT, 48.5 s without).
pub async fn page<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    after: i64,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<Vec<ScanRow>, DbErr> {
    let b = db.get_database_backend();
    let (lo, n) = (ph(b, 2), ph(b, 3));
    // `bounds`: the id range of the page's files, so each joined table is read by range too.
    let range = format!("AND file_id > {lo} AND file_id <= (SELECT hi FROM bounds)");
    let sql = format!(
        r#"WITH bounds AS (SELECT MAX(id) AS hi FROM (SELECT id FROM file
                 WHERE id > {lo} AND kind = 'file' AND deleted_at IS NULL
                 ORDER BY id LIMIT {n}) s)
{}
WHERE f.id > {lo} AND f.id <= (SELECT hi FROM bounds) AND f.kind = 'file' AND f.deleted_at IS NULL
ORDER BY f.id"#,
        select(b, "file f", &range)
    );
    let values: Vec<Value> = vec![now.into(), after.into(), (limit as i64).into()];
    let query = ScanRow::find_by_statement(Statement::from_sql_and_values(b, sql, values));
    if b != DbBackend::Postgres {
        return query.all(db).await;
    }
    let txn = db.begin().await?;
    txn.execute_unprepared("SET LOCAL jit = off").await?;
    let rows = query.all(&txn).await?;
    txn.commit().await?;
    Ok(rows)
}

/// One file's row (live or not, any kind), for `explain`.
pub async fn one<C: ConnectionTrait>(
    db: &C,
    file_id: i64,
    now: DateTime<Utc>,
) -> Result<Option<ScanRow>, DbErr> {
    let b = db.get_database_backend();
    let id = ph(b, 2);
    let range = format!("AND file_id = {id}");
    let sql = format!("{}\nWHERE f.id = {id}", select(b, "file f", &range));
    ScanRow::find_by_statement(Statement::from_sql_and_values(
        b,
        sql,
        vec![now.into(), file_id.into()],
    ))
    .one(db)
    .await
}

/// Holding tags, loaded once per holding.
#[derive(Default)]
pub struct Tags {
    cache: HashMap<i64, Arc<[(String, String)]>>,
}

impl Tags {
    /// Loads the tags of the holdings of `rows` not seen yet (one query).
    pub async fn load<C: ConnectionTrait>(
        &mut self,
        db: &C,
        rows: &[ScanRow],
    ) -> Result<(), DbErr> {
        let mut missing: Vec<i64> = rows
            .iter()
            .map(|r| r.holding_id)
            .filter(|h| !self.cache.contains_key(h))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let mut by: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        for chunk in missing.chunks(1000) {
            for t in tag::Entity::find()
                .filter(tag::Column::HoldingId.is_in(chunk.iter().copied()))
                .all(db)
                .await?
            {
                by.entry(t.holding_id).or_default().push((t.key, t.value));
            }
        }
        for h in missing {
            let mut tags = by.remove(&h).unwrap_or_default();
            tags.sort();
            self.cache.insert(h, tags.into());
        }
        Ok(())
    }

    /// The tags of `holding` (empty if it has none or was not loaded).
    pub fn of(&self, holding: i64) -> Arc<[(String, String)]> {
        self.cache
            .get(&holding)
            .cloned()
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }
}
