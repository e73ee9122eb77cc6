//! The last-copy guard every background removal goes through (see `catalogue::delete`): no
//! background action ever removes the last verified copy of a file that is not deleted.

use nlds_core::api::Tier;
use std::collections::{HashMap, HashSet};

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use super::{CHUNK, Result, dedup};
use crate::db::{aggregation, file, location};

/// A copy a background action wants to remove.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Removal {
    /// A warm object (and every `warm` location naming it).
    Warm { bucket: String, key: String },
    /// An aggregate on the cold store (and every `cold` location naming it).
    Aggregate { aggregation_id: i64, name: String },
}

impl std::fmt::Display for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removal::Warm { bucket, key } => write!(f, "warm object {bucket}/{key}"),
            Removal::Aggregate { name, .. } => write!(f, "aggregate {name}"),
        }
    }
}

/// What the guard decided.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub allowed: Vec<Removal>,
    /// Each refused removal, with the live file it would leave without a verified copy.
    pub refused: Vec<(Removal, String)>,
}

/// The files of `files` whose uploaded warm object the last-copy guard lets go: an object
/// another live file counts on stays (and so does its file's entry here). Used for objects a
/// batch uploaded but will not catalogue (a conflict, a cancel).
pub(crate) async fn removable_uploads(
    c: &impl ConnectionTrait,
    files: Vec<nlds_core::message::FileRecord>,
) -> Result<Vec<nlds_core::message::FileRecord>> {
    let warm = |o: &nlds_core::message::ObjectRef| Removal::Warm {
        bucket: o.bucket.clone(),
        key: o.key.clone(),
    };
    let proposals = files
        .iter()
        .filter_map(|f| f.object.as_ref())
        .map(warm)
        .collect::<Vec<_>>();
    if proposals.is_empty() {
        return Ok(Vec::new());
    }
    let allowed: HashSet<Removal> = guard_removals(c, proposals)
        .await?
        .allowed
        .into_iter()
        .collect();
    Ok(files
        .into_iter()
        .filter(|f| {
            f.object
                .as_ref()
                .is_some_and(|o| allowed.contains(&warm(o)))
        })
        .collect())
}

/// The last-copy guard: allows a removal only if every file that is not deleted and has a copy
/// among the removed ones keeps at least one verified copy outside all of `proposals` taken
/// together. Runs on `c` (the caller's database transaction, so what it checked is what the
/// caller then changes).
pub(crate) async fn guard_removals(
    c: &impl ConnectionTrait,
    proposals: Vec<Removal>,
) -> Result<Verdict> {
    let mut proposals = proposals;
    let mut seen = HashSet::new();
    proposals.retain(|p| seen.insert(p.clone()));
    // The locations each proposal removes.
    let mut touched: Vec<Vec<(i64, i64)>> = Vec::with_capacity(proposals.len());
    for p in &proposals {
        let q = location::Entity::find()
            .select_only()
            .column(location::Column::Id)
            .column(location::Column::FileId);
        let rows: Vec<(i64, i64)> = match p {
            Removal::Warm { bucket, key } => q
                .filter(location::Column::Tier.eq(Tier::Warm))
                .filter(location::Column::Bucket.eq(bucket.as_str()))
                .filter(location::Column::Key.eq(key.as_str())),
            Removal::Aggregate { name, .. } => q
                .filter(location::Column::Tier.eq(Tier::Cold))
                .filter(location::Column::Key.eq(name.as_str())),
        }
        .into_tuple()
        .all(c)
        .await?;
        touched.push(rows);
    }
    let removed: HashSet<i64> = touched.iter().flatten().map(|(l, _)| *l).collect();
    let affected: Vec<i64> = dedup(
        &touched
            .iter()
            .flatten()
            .map(|(_, f)| *f)
            .collect::<Vec<_>>(),
    );
    // Live files among them, and what copies they keep.
    let mut live: HashMap<i64, String> = HashMap::new();
    for chunk in affected.chunks(CHUNK) {
        let rows: Vec<(i64, String, i64)> = file::Entity::find()
            .select_only()
            .column(file::Column::Id)
            .column(file::Column::Path)
            .column(file::Column::HoldingId)
            .filter(file::Column::Id.is_in(chunk.iter().copied()))
            .filter(file::Column::DeletedAt.is_null())
            .into_tuple()
            .all(c)
            .await?;
        live.extend(
            rows.into_iter()
                .map(|(id, path, h)| (id, format!("{path} (holding {h})"))),
        );
    }
    let ids: Vec<i64> = live.keys().copied().collect();
    let mut kept: HashMap<i64, u32> = HashMap::new();
    let mut cold_names: HashMap<i64, Vec<String>> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        for l in location::Entity::find()
            .filter(location::Column::FileId.is_in(chunk.iter().copied()))
            .all(c)
            .await?
        {
            if removed.contains(&l.id) {
                continue;
            }
            if l.tier == Tier::Warm {
                *kept.entry(l.file_id).or_default() += 1;
            } else if l.tier == Tier::Cold {
                cold_names.entry(l.file_id).or_default().push(l.key);
            }
        }
    }
    let names: Vec<String> = dedup(
        &cold_names
            .values()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .into_iter()
    .map(str::to_owned)
    .collect();
    let mut stored: HashSet<String> = HashSet::new();
    for chunk in names.chunks(CHUNK) {
        let rows: Vec<String> = aggregation::Entity::find()
            .select_only()
            .column(aggregation::Column::Name)
            .filter(aggregation::Column::Name.is_in(chunk.iter().cloned()))
            .filter(aggregation::Column::State.eq(aggregation::State::Stored))
            .into_tuple()
            .all(c)
            .await?;
        stored.extend(rows);
    }
    for (f, names) in &cold_names {
        let n = names.iter().filter(|n| stored.contains(*n)).count() as u32;
        *kept.entry(*f).or_default() += n;
    }
    let starving: HashSet<i64> = ids
        .into_iter()
        .filter(|f| kept.get(f).copied().unwrap_or(0) == 0)
        .collect();
    let mut verdict = Verdict::default();
    for (p, rows) in proposals.into_iter().zip(touched) {
        match rows.iter().find(|(_, f)| starving.contains(f)) {
            Some((_, f)) => {
                let what = live.get(f).cloned().unwrap_or_default();
                tracing::warn!(removal = %p, file = %what,
                    "refused: it would remove the last verified copy of a file that is not deleted");
                verdict.refused.push((p, what));
            }
            None => verdict.allowed.push(p),
        }
    }
    Ok(verdict)
}
