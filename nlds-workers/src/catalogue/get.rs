//! `catalog-get.start` and `catalog.plan`: resolving which copies a get restores, and batching them;
//! a get's files are recorded as accessed and pinned warm for it (see `catalogue::access`).

use nlds_core::api::Tier;
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use nlds_bus::Outcome;
use nlds_core::message::{HoldingFilter, ObjectRef, RpcReply, sub_id};
use nlds_core::workflow::{self, Step, Workflow};
use nlds_core::{
    Action, Envelope, ErrorCode, FailedFile, FileRecord, PathKind, Payload, RoutingKey, Worker,
};
use sea_orm::sea_query::Order;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};

use super::context::RestoreDirs;
use super::store::{load_copies, load_transactions, scoped_files};
use super::{
    CHUNK, Catalogue, Result, SCAN_PAGE, compile_set, dedup, has_selector, ingest_key, normalise,
    prefix_range, record, to_u64,
};
use super::{access, cancel, missing, versions};
use crate::db::{bad_request, file};

impl Catalogue {
    /// The files a get of `paths` restores (the newest catalogued copy of each path, in path
    /// order), and the requested paths that match nothing.
    pub(super) async fn resolve_get(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        paths: &[String],
        regex: bool,
    ) -> Result<(Vec<file::Model>, Vec<FailedFile>)> {
        if paths.is_empty() {
            return Err(bad_request("a get needs at least one path"));
        }
        if paths.iter().any(|p| p.trim().is_empty()) {
            return Err(bad_request("a get path must not be empty"));
        }
        if regex && !has_selector(filter) {
            return Err(bad_request(
                "a regular expression can only search named holdings: \
                 give a holding id, label, transaction id or tags",
            ));
        }
        let scope = self.scope(env, filter, false).await?;
        let named = filter.names_holding();

        // Every catalogued file that matches, and which requested paths matched anything.
        let mut matched: Vec<file::Model> = Vec::new();
        let wanted: Vec<(&str, String)> = if regex {
            Vec::new()
        } else {
            paths.iter().map(|p| (p.as_str(), normalise(p))).collect()
        };
        let mut unmatched: Vec<(&str, Option<&str>)> = Vec::new();
        if regex {
            let set = compile_set(paths).await?;
            let mut hit = vec![false; set.len()];
            let mut ids = Vec::new();
            let mut last = 0i64;
            loop {
                let page: Vec<(i64, String)> = scoped_files(&scope)
                    .filter(versions::selected_in(&filter.versions, &scope, named))
                    .select_only()
                    .column(file::Column::Id)
                    .column(file::Column::Path)
                    .filter(file::Column::Id.gt(last))
                    .order_by(file::Column::Id, Order::Asc)
                    .limit(SCAN_PAGE)
                    .into_tuple()
                    .all(&self.db)
                    .await?;
                let Some((l, _)) = page.last() else { break };
                last = *l;
                for (id, path) in &page {
                    let matches = set.matches(path);
                    if matches.matched_any() {
                        for i in matches.iter() {
                            hit[i] = true;
                        }
                        ids.push(*id);
                    }
                }
                if (page.len() as u64) < SCAN_PAGE {
                    break;
                }
            }
            for chunk in ids.chunks(CHUNK) {
                matched.extend(
                    file::Entity::find()
                        .filter(file::Column::Id.is_in(chunk.iter().copied()))
                        .all(&self.db)
                        .await?,
                );
            }
            unmatched.extend(
                paths
                    .iter()
                    .zip(hit)
                    .filter(|(_, h)| !h)
                    .map(|(p, _)| (p.as_str(), None)),
            );
        }
        if !regex {
            let exact: Vec<&str> = wanted.iter().map(|(_, n)| n.as_str()).collect();
            // The rows of the exact paths, in path order: each path's rows are found by binary
            // search. (A map from each path to a vector of its rows held a vector of four rows'
            // room per path: 17 MB for a getlist of 30,000 paths, the largest live allocation of
            // the embedded process.)
            let mut rows: Vec<file::Model> = Vec::new();
            for chunk in dedup(&exact).chunks(CHUNK) {
                rows.extend(
                    scoped_files(&scope)
                        .filter(versions::selected_in(&filter.versions, &scope, named))
                        .filter(file::Column::Path.is_in(chunk.iter().copied()))
                        .all(&self.db)
                        .await?,
                );
            }
            rows.sort_unstable_by(|a, b| a.path.cmp(&b.path));
            let mut found: HashMap<&str, bool> = HashMap::new();
            for norm in dedup(&exact) {
                let hits = rows_of(&rows, norm);
                let mut any = !hits.is_empty();
                // Everything under the path, unless it names only plain files and links.
                let directory =
                    hits.is_empty() || hits.iter().any(|m| m.kind == PathKind::Directory);
                if directory {
                    let (lo, hi) = prefix_range(norm);
                    let under = scoped_files(&scope)
                        .filter(versions::selected_in(&filter.versions, &scope, named))
                        .filter(file::Column::Path.gt(lo))
                        .filter(file::Column::Path.lt(hi))
                        .all(&self.db)
                        .await?;
                    any |= !under.is_empty();
                    matched.extend(under);
                }
                found.insert(norm, any);
            }
            unmatched.extend(
                wanted
                    .iter()
                    .filter(|(_, n)| !found.get(n.as_str()).copied().unwrap_or(false))
                    .map(|(p, n)| (*p, Some(n.as_str()))),
            );
            matched.extend(rows);
        }

        // Newest ingest wins per path.
        let tx_ids: Vec<i64> = dedup(&matched.iter().map(|m| m.transaction_id).collect::<Vec<_>>());
        let txs = load_transactions(&self.db, &tx_ids).await?;
        let mut best: BTreeMap<String, file::Model> = BTreeMap::new();
        for m in matched {
            let newer = match best.get(&m.path) {
                None => true,
                Some(b) => ingest_key(&txs, &m) > ingest_key(&txs, b),
            };
            if newer {
                best.insert(m.path.clone(), m);
            }
        }
        let whose = if filter.groupall {
            format!("{}'s or group {}'s", env.user, env.group)
        } else {
            format!("{}'s", env.user)
        };
        let mut failed: Vec<FailedFile> = Vec::with_capacity(unmatched.len());
        for (given, norm) in unmatched {
            failed.push(
                missing::unmatched(&self.db, &scope, &filter.versions, given, norm, &whose).await?,
            );
        }
        Ok((best.into_values().collect(), failed))
    }

    /// `catalog.plan`: what a get would restore, as catalogue entries.
    pub(super) async fn plan(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        paths: &[String],
        regex: bool,
    ) -> Result<RpcReply> {
        let (best, missing) = self.resolve_get(env, filter, paths, regex).await?;
        Ok(RpcReply::Plan {
            files: self.entries(best).await?,
            missing,
        })
    }

    pub(super) async fn get(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        paths: &[String],
        regex: bool,
        target: &Option<String>,
        overwrite: bool,
    ) -> Result<Outcome> {
        if cancel::is_cancelled(&self.db, env, false).await? {
            let names = paths.iter().map(String::as_str);
            let (k, e) = cancel::cancelled_update(env, cancel::cancelled_files(names, "restored"));
            return Ok(Outcome::publish(k, e));
        }
        let (best, mut failed) = self.resolve_get(env, filter, paths, regex).await?;
        let ids: Vec<i64> = best.iter().map(|m| m.id).collect();
        self.track_get(env, &ids).await?;
        let (locations, checksums) = load_copies(&self.db, &ids).await?;
        let mut records = Vec::with_capacity(best.len());
        let mut cold_only: BTreeMap<String, Vec<file::Model>> = BTreeMap::new();
        for m in best {
            let warm = locations
                .get(&m.id)
                .and_then(|ls| ls.iter().find(|l| l.tier == Tier::Warm));
            let kind = m.kind;
            if kind == PathKind::File && warm.is_none() {
                match locations
                    .get(&m.id)
                    .and_then(|ls| ls.iter().find(|l| l.tier == Tier::Cold))
                {
                    // Only on tape: recalled first (see catalogue::recall).
                    Some(c) => cold_only.entry(c.key.clone()).or_default().push(m),
                    None => failed.push(FailedFile::new(
                        &m.path,
                        ErrorCode::StorageError,
                        format!("{}: no stored copy (holding {})", m.path, m.holding_id),
                    )),
                }
                continue;
            }
            let mut r = record(&m);
            r.blake3 = checksums.get(&m.id).cloned();
            r.object = warm.filter(|_| kind == PathKind::File).map(|l| ObjectRef {
                bucket: l.bucket.clone(),
                key: l.key.clone(),
                tenancy: l.tenancy.clone(),
            });
            records.push(r);
        }

        let recalled: u64 = cold_only.values().map(|v| v.len() as u64).sum();
        let recalled_bytes: u64 = cold_only.values().flatten().map(|m| to_u64(m.size)).sum();
        let dirs = RestoreDirs::of(&records);
        let (mut out, unrecallable) = self
            .register_recalls(env, cold_only, target, overwrite, &dirs)
            .await?;
        failed.extend(unrecallable);
        let files_total = records.len() as u64 + recalled;
        let bytes_total: u64 = records.iter().map(|r| r.size).sum::<u64>() + recalled_bytes;
        // The request's sub-record stands for its batches (and those waiting for a recall).
        let split = workflow::split(Workflow::Get, Step::CatalogGet)
            .map_err(|e| super::internal(format!("catalogue: {e}")))?;
        for (i, batch) in self.batches(records).into_iter().enumerate() {
            let holdings: HashSet<Option<i64>> = batch.iter().map(|r| r.holding_id).collect();
            let holding_id = if holdings.len() == 1 {
                holdings.into_iter().next().flatten()
            } else {
                None
            };
            // Batches of the message's own sub-record: the request, or one part of a request
            // whose paths came in chunks.
            let sub = sub_id(env.sub_id, "get", i);
            let context = dirs.context(batch.iter().map(|r| r.path.as_str()));
            if let Some(state) = split.batch {
                out = out.and(
                    RoutingKey::new(Worker::MonitorPut, Action::Start),
                    env.with_sub(
                        sub,
                        Payload::MonitorUpdate {
                            state,
                            // Directories travel for their restore only.
                            files: nlds_core::message::file_count(&batch),
                            bytes: batch.iter().map(|r| r.size).sum(),
                            failed: Vec::new(),
                            warnings: Vec::new(),
                            versions: 0,
                        },
                    ),
                );
            }
            out = out.and(
                RoutingKey::new(Worker::CatalogGet, Action::Complete),
                env.with_sub(
                    sub,
                    Payload::Files {
                        // Unknown paths travel with the first batch (see the indexer).
                        failed: std::mem::take(&mut failed),
                        holding_id,
                        files: batch,
                        target: target.clone(),
                        overwrite,
                        context,
                    },
                ),
            );
        }
        if !failed.is_empty() {
            out = out.and(
                RoutingKey::new(Worker::CatalogGet, Action::Failed),
                env.with_sub(
                    nlds_core::message::sub_id(env.sub_id, "get-failed", 0),
                    Payload::Failed { files: failed },
                ),
            );
        }
        out = out.and(
            RoutingKey::new(Worker::MonitorPut, Action::Start),
            env.with_sub(
                env.sub_id,
                Payload::MonitorUpdate {
                    state: split.parent,
                    files: files_total,
                    bytes: bytes_total,
                    failed: Vec::new(),
                    warnings: Vec::new(),
                    versions: 0,
                },
            ),
        );
        Ok(out)
    }

    /// Records an access of every file a get resolved (those it restores from the warm tier and
    /// those it waits for a recall of) and pins them warm for the get (requester
    /// `get:<transaction id>`) for `[policy] get_pin_secs`, in one database transaction with a
    /// bounded number of statements (see [`access`]). A redelivered get (or part of a getlist)
    /// finds its files pinned and counts them not again.
    async fn track_get(&self, env: &Envelope, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let requester = access::get_requester(env.transaction_id);
        let now = Utc::now();
        let txn = self.db.begin().await?;
        // Per file, not per transaction: each part of a getlist (its paths came in chunks) is
        // a message of the same transaction with files of its own.
        let fresh = access::not_pinned_by(&txn, ids, &requester).await?;
        if !fresh.is_empty() {
            access::record(&txn, &fresh, now).await?;
            if self.policy.get_pin_secs > 0 {
                let secs = i64::try_from(self.policy.get_pin_secs).unwrap_or(i64::MAX);
                let until = TimeDelta::try_seconds(secs)
                    .and_then(|d| now.checked_add_signed(d))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                access::pin(&txn, &fresh, &requester, until).await?;
            }
        }
        txn.commit().await?;
        Ok(())
    }

    /// Splits files into batches of at most `batch_files` files and `batch_bytes` bytes; the
    /// names of a hard-linked inode travel together (see [`batches`]).
    pub(super) fn batches(&self, files: Vec<FileRecord>) -> Vec<Vec<FileRecord>> {
        batches(files, self.batch_files, self.batch_bytes)
    }
}

/// The rows of `path` among `rows` (sorted by path).
fn rows_of<'a>(rows: &'a [file::Model], path: &str) -> &'a [file::Model] {
    let lo = rows.partition_point(|m| m.path.as_str() < path);
    let len = rows[lo..].partition_point(|m| m.path == path);
    &rows[lo..lo + len]
}

/// Splits `files` (in order) into batches of at most `max_files` files and `max_bytes` bytes.
/// The later names of a hard-linked inode (a regular file whose `link_target` is its first
/// name) travel in the batch of their first name, so transfer-get restores them as links to it
/// (a group may exceed the limits; a later name whose first name is not in `files` travels
/// alone and is downloaded).
pub(super) fn batches(
    files: Vec<FileRecord>,
    max_files: usize,
    max_bytes: u64,
) -> Vec<Vec<FileRecord>> {
    let firsts: HashSet<String> = files
        .iter()
        .filter(|f| f.kind == PathKind::File && f.link_target.is_none())
        .map(|f| f.path.clone())
        .collect();
    let mut later: HashMap<String, Vec<FileRecord>> = HashMap::new();
    let mut rest = Vec::with_capacity(files.len());
    for f in files {
        match f.link_target.as_ref() {
            Some(t) if f.kind == PathKind::File && firsts.contains(t) => {
                later.entry(t.clone()).or_default().push(f);
            }
            _ => rest.push(f),
        }
    }
    let mut out = Vec::new();
    let mut cur: Vec<FileRecord> = Vec::new();
    let mut bytes = 0u64;
    for f in rest {
        let mut group = vec![];
        let links = later.remove(&f.path).unwrap_or_default();
        group.push(f);
        group.extend(links);
        let size: u64 = group.iter().map(|r| r.size).sum();
        if !cur.is_empty()
            && (cur.len() + group.len() > max_files || bytes.saturating_add(size) > max_bytes)
        {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes = bytes.saturating_add(size);
        cur.extend(group);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    fn file(path: &str, size: u64, first: Option<&str>) -> FileRecord {
        FileRecord {
            path: path.into(),
            kind: PathKind::File,
            link_target: first.map(Into::into),
            size,
            uid: 0,
            gid: 0,
            mode: 0o644,
            mtime_ns: 0,
            blake3: None,
            object: None,
            holding_id: None,
            xattrs: Vec::new(),
            new_version: false,
        }
    }

    fn paths(b: &[Vec<FileRecord>]) -> Vec<Vec<&str>> {
        b.iter()
            .map(|b| b.iter().map(|f| f.path.as_str()).collect())
            .collect()
    }

    #[test]
    fn batches_split_by_count_and_bytes() {
        let files: Vec<FileRecord> = (0..5).map(|i| file(&format!("/f{i}"), 10, None)).collect();
        assert_eq!(
            paths(&batches(files.clone(), 2, u64::MAX)),
            [vec!["/f0", "/f1"], vec!["/f2", "/f3"], vec!["/f4"]]
        );
        assert_eq!(paths(&batches(files, 100, 25)).len(), 3);
    }

    #[test]
    fn the_names_of_a_hard_linked_inode_travel_together() {
        // Path order puts the later names before and far after their first name.
        let files = vec![
            file("/a/link", 6, Some("/m/first")),
            file("/b", 1, None),
            file("/c", 1, None),
            file("/m/first", 6, None),
            file("/n", 1, None),
            file("/z/link2", 6, Some("/m/first")),
            file("/z/orphan", 6, Some("/gone")),
        ];
        let b = batches(files, 2, u64::MAX);
        assert_eq!(
            paths(&b),
            [
                vec!["/b", "/c"],
                vec!["/m/first", "/a/link", "/z/link2"],
                vec!["/n", "/z/orphan"],
            ]
        );
    }
}
