//! The usage counters (`usage`: bytes and files per group and tier), kept in the same database
//! transactions that add or remove copies or change whether a file is live.
//!
//! Tiers: `warm` counts live (not deleted) files with a warm copy, `cold` live files with a cold
//! copy, `all` every live file (the file-count quota). Bytes are those of regular files; a file
//! counts for its holding's group.
//!
//! A change to files goes through [`counted`] before and after: [`Counts::delta`] of the two is
//! what [`apply`] adds, one upsert per (group, tier). [`counted`] locks the files' rows on
//! PostgreSQL (`FOR UPDATE`, in id order), so two changes to the same files take turns and each
//! sees the other's result; SQLite serializes writers anyway. [`recompute`] counts from the
//! catalogue itself: what the counters must equal.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use nlds_core::PathKind;
use nlds_core::api::Tier;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::{CHUNK, Result, SCAN_PAGE};
use crate::db::{file, holding, location, usage};

/// Live files with a warm copy.
pub(crate) const WARM: &str = "warm";
/// Live files with a cold copy.
pub(crate) const COLD: &str = "cold";
/// Every live file.
pub(crate) const ALL: &str = "all";

/// A file row as counted: id, holding, size, kind, deleted at.
type FileRow = (i64, i64, i64, PathKind, Option<DateTime<Utc>>);

/// Bytes and files per (group, tier).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts(BTreeMap<(String, &'static str), (i64, i64)>);

impl Counts {
    fn add(&mut self, group: &str, tier: &'static str, bytes: i64, files: i64) {
        let e = self.0.entry((group.to_owned(), tier)).or_default();
        e.0 += bytes;
        e.1 += files;
    }

    /// What `self` counts on `tier` over all groups: `(bytes, files)`.
    pub(crate) fn total(&self, tier: &str) -> (i64, i64) {
        self.0
            .iter()
            .filter(|((_, t), _)| *t == tier)
            .fold((0, 0), |(b, f), (_, v)| (b + v.0, f + v.1))
    }

    /// `self - before`, the non-zero changes.
    pub(crate) fn delta(&self, before: &Counts) -> Vec<(String, &'static str, i64, i64)> {
        let keys: HashSet<&(String, &'static str)> = self.0.keys().chain(before.0.keys()).collect();
        let mut out: Vec<_> = keys
            .into_iter()
            .map(|k| {
                let (ab, af) = self.0.get(k).copied().unwrap_or_default();
                let (bb, bf) = before.0.get(k).copied().unwrap_or_default();
                (k.0.clone(), k.1, ab - bb, af - bf)
            })
            .filter(|(_, _, b, f)| *b != 0 || *f != 0)
            .collect();
        out.sort();
        out
    }

    /// As `usage` rows.
    fn rows(self) -> Vec<usage::Model> {
        self.0
            .into_iter()
            .map(|((group, tier), (bytes, files))| usage::Model {
                group,
                tier: tier.to_owned(),
                bytes,
                files,
            })
            .collect()
    }
}

/// What the files `ids` count now (live ones, by their holding's group). Locks their rows on
/// PostgreSQL until the end of the database transaction `c` is in.
pub(crate) async fn counted(c: &impl ConnectionTrait, ids: &[i64]) -> Result<Counts> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Counts::default();
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<FileRow> = file::Entity::find()
            .select_only()
            .column(file::Column::Id)
            .column(file::Column::HoldingId)
            .column(file::Column::Size)
            .column(file::Column::Kind)
            .column(file::Column::DeletedAt)
            .filter(file::Column::Id.is_in(chunk.iter().copied()))
            .order_by_asc(file::Column::Id)
            .lock_exclusive()
            .into_tuple()
            .all(c)
            .await?;
        let live: Vec<(i64, i64, i64, PathKind)> = rows
            .into_iter()
            .filter(|r| r.4.is_none())
            .map(|(id, h, size, kind, _)| (id, h, size, kind))
            .collect();
        count_into(c, &live, &mut out).await?;
    }
    Ok(out)
}

/// Adds what the live files `live` (id, holding, size, kind) count to `out`.
async fn count_into(
    c: &impl ConnectionTrait,
    live: &[(i64, i64, i64, PathKind)],
    out: &mut Counts,
) -> Result<(), DbErr> {
    if live.is_empty() {
        return Ok(());
    }
    let mut holdings: Vec<i64> = live.iter().map(|r| r.1).collect();
    holdings.sort_unstable();
    holdings.dedup();
    let mut groups: HashMap<i64, String> = HashMap::new();
    for chunk in holdings.chunks(CHUNK) {
        let rows: Vec<(i64, String)> = holding::Entity::find()
            .select_only()
            .column(holding::Column::Id)
            .column(holding::Column::Group)
            .filter(holding::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(c)
            .await?;
        groups.extend(rows);
    }
    let tiers: Vec<(i64, Tier)> = location::Entity::find()
        .select_only()
        .column(location::Column::FileId)
        .column(location::Column::Tier)
        .filter(location::Column::FileId.is_in(live.iter().map(|r| r.0)))
        .into_tuple()
        .all(c)
        .await?;
    let warm: HashSet<i64> = tiers
        .iter()
        .filter(|(_, t)| *t == Tier::Warm)
        .map(|(id, _)| *id)
        .collect();
    let cold: HashSet<i64> = tiers
        .iter()
        .filter(|(_, t)| *t == Tier::Cold)
        .map(|(id, _)| *id)
        .collect();
    for (id, h, size, kind) in live {
        let Some(group) = groups.get(h) else { continue };
        let bytes = if *kind == PathKind::File { *size } else { 0 };
        out.add(group, ALL, bytes, 1);
        if warm.contains(id) {
            out.add(group, WARM, bytes, 1);
        }
        if cold.contains(id) {
            out.add(group, COLD, bytes, 1);
        }
    }
    Ok(())
}

/// Adds `(group, tier, bytes, files)` changes to the counters, one upsert each.
pub(crate) async fn apply(
    c: &impl ConnectionTrait,
    changes: &[(String, &'static str, i64, i64)],
) -> Result<()> {
    for (group, tier, bytes, files) in changes {
        if *bytes == 0 && *files == 0 {
            continue;
        }
        usage::Entity::insert(usage::ActiveModel {
            group: Set(group.clone()),
            tier: Set((*tier).to_owned()),
            bytes: Set(*bytes),
            files: Set(*files),
        })
        .on_conflict(
            OnConflict::columns([usage::Column::Group, usage::Column::Tier])
                .value(
                    usage::Column::Bytes,
                    Expr::col((usage::Entity, usage::Column::Bytes)).add(*bytes),
                )
                .value(
                    usage::Column::Files,
                    Expr::col((usage::Entity, usage::Column::Files)).add(*files),
                )
                .to_owned(),
        )
        .exec_without_returning(c)
        .await?;
    }
    Ok(())
}

/// Applies what the files `ids` count now beyond `before` (taken with [`counted`] before the
/// change, in the same database transaction).
pub(crate) async fn settle(c: &impl ConnectionTrait, ids: &[i64], before: &Counts) -> Result<()> {
    let after = counted(c, ids).await?;
    apply(c, &after.delta(before)).await
}

/// The usage counters as the catalogue says they must be, counted from its files and copies
/// (groups and tiers with nothing are left out).
pub async fn recompute(c: &impl ConnectionTrait) -> Result<Vec<usage::Model>, DbErr> {
    let mut out = Counts::default();
    let mut last = 0i64;
    loop {
        let page: Vec<(i64, i64, i64, PathKind)> = file::Entity::find()
            .select_only()
            .column(file::Column::Id)
            .column(file::Column::HoldingId)
            .column(file::Column::Size)
            .column(file::Column::Kind)
            .filter(file::Column::DeletedAt.is_null())
            .filter(file::Column::Id.gt(last))
            .order_by_asc(file::Column::Id)
            .limit(SCAN_PAGE)
            .into_tuple()
            .all(c)
            .await?;
        let Some(l) = page.last() else { break };
        last = l.0;
        for chunk in page.chunks(CHUNK) {
            count_into(c, chunk, &mut out).await?;
        }
        if (page.len() as u64) < SCAN_PAGE {
            break;
        }
    }
    Ok(out.rows())
}

/// The counters as stored (rows with nothing left out), for comparing with [`recompute`].
pub async fn stored(c: &impl ConnectionTrait) -> Result<Vec<usage::Model>, DbErr> {
    usage::Entity::find()
        .filter(usage::Column::Bytes.ne(0).or(usage::Column::Files.ne(0)))
        .order_by_asc(usage::Column::Group)
        .order_by_asc(usage::Column::Tier)
        .all(c)
        .await
}
