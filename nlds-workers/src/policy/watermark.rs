//! Warm-tier watermarks per tenancy (`[policy.watermarks.<tenancy>]`, `default` for the default
//! object store): the bytes of live files with a warm copy in each tenancy (one aggregate query);
//! above `high_bytes`, the least recently accessed files the policy lets go (not kept by a `pin`
//! or `none` rule, not pinned in the catalogue, not awaited, with a verified cold copy) are
//! evicted until the tenancy is below `low_bytes`.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use nlds_core::policy::{PassKind, PassReport};
use nlds_settings::Watermark;
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement};

use super::scan::ScanRow;
use super::{PolicyRunner, RunnerError};

/// The watermark name of the default object store.
pub const DEFAULT: &str = "default";

/// The watermark name of a row's warm tenancy.
pub fn tenancy_name(row: &ScanRow) -> &str {
    row.tenancy.as_deref().unwrap_or(DEFAULT)
}

#[derive(Debug, FromQueryResult)]
struct UsageRow {
    tenancy: Option<String>,
    bytes: Option<i64>,
}

/// Warm bytes per tenancy name (live files with a warm copy).
pub async fn usage<C: ConnectionTrait>(db: &C) -> Result<HashMap<String, u64>, DbErr> {
    let b = db.get_database_backend();
    let sql = "SELECT l.tenancy AS tenancy, CAST(SUM(f.size) AS BIGINT) AS bytes \
               FROM location l JOIN file f ON f.id = l.file_id \
               WHERE l.tier = 'warm' AND f.kind = 'file' AND f.deleted_at IS NULL \
               GROUP BY l.tenancy";
    Ok(
        UsageRow::find_by_statement(Statement::from_string(b, sql.to_owned()))
            .all(db)
            .await?
            .into_iter()
            .map(|u| {
                (
                    u.tenancy.unwrap_or_else(|| DEFAULT.to_owned()),
                    u.bytes.unwrap_or(0).max(0) as u64,
                )
            })
            .collect(),
    )
}

/// A file a watermark may evict.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: i64,
    pub size: u64,
    pub recency: DateTime<Utc>,
    pub group: String,
    pub path: String,
}

/// The evictable files of the watched tenancies, as the scan finds them.
#[derive(Default)]
pub struct Candidates {
    by: HashMap<String, Vec<Candidate>>,
}

/// What the watermarks chose: (tenancy, file), least recently accessed first per tenancy.
pub struct Chosen {
    pub files: Vec<(String, Candidate)>,
    /// A cap stopped a tenancy above its low watermark.
    pub capped: bool,
}

impl Candidates {
    pub fn push(&mut self, row: &ScanRow) {
        self.by
            .entry(tenancy_name(row).to_owned())
            .or_default()
            .push(Candidate {
                id: row.id,
                size: row.size(),
                recency: row.recency(),
                group: row.group.clone(),
                path: row.path.clone(),
            });
    }

    /// For each tenancy above its high watermark, the least recently accessed candidates
    /// (ties: the lower file id first) until it would be below its low watermark, skipping
    /// `already` evicted ones, within `files` and `bytes` left (None: no cap).
    pub fn choose(
        mut self,
        marks: &BTreeMap<String, Watermark>,
        usage: &HashMap<String, u64>,
        already: &HashSet<i64>,
        mut files: Option<u64>,
        mut bytes: Option<u64>,
    ) -> Chosen {
        let mut out = Chosen {
            files: Vec::new(),
            capped: false,
        };
        for (tenancy, mark) in marks {
            let mut used = usage.get(tenancy).copied().unwrap_or(0);
            if used <= mark.high_bytes {
                continue;
            }
            let mut cands = self.by.remove(tenancy).unwrap_or_default();
            cands.sort_by(|a, b| a.recency.cmp(&b.recency).then(a.id.cmp(&b.id)));
            for c in cands {
                if used < mark.low_bytes {
                    break;
                }
                if already.contains(&c.id) {
                    continue;
                }
                if files == Some(0) || bytes.is_some_and(|b| b < c.size) {
                    out.capped = true;
                    break;
                }
                files = files.map(|f| f - 1);
                bytes = bytes.map(|b| b - c.size);
                used = used.saturating_sub(c.size);
                out.files.push((tenancy.clone(), c));
            }
        }
        out
    }
}

/// The tenancies above their high watermark now, with their usage.
pub async fn above_high(r: &PolicyRunner) -> Result<Vec<(String, u64)>, RunnerError> {
    if r.cfg.watermarks.is_empty() {
        return Ok(Vec::new());
    }
    let used = usage(&r.db).await?;
    Ok(r.cfg
        .watermarks
        .iter()
        .filter_map(|(t, m)| {
            let u = used.get(t).copied().unwrap_or(0);
            (u > m.high_bytes).then(|| (t.clone(), u))
        })
        .collect())
}

/// The timer's check: a watermark pass if a watched tenancy is above its high watermark.
pub async fn check(r: &PolicyRunner) -> Result<Option<PassReport>, RunnerError> {
    let above = above_high(r).await?;
    if above.is_empty() {
        return Ok(None);
    }
    tracing::info!(
        ?above,
        "warm tier above its high watermark: a watermark pass starts"
    );
    r.pass(PassKind::Watermark).await.map(Some)
}
