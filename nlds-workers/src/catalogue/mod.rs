//! The catalogue role: holdings, transactions and the files stored in them.
//!
//! One [`Catalogue`] handles the work keys `catalog-check.start`, `catalog-put.start` and
//! `catalog-get.start` (role `catalogue`) and the RPC keys `catalog.setup`, `catalog.list`,
//! `catalog.find` and `catalog.meta` (role `catalogue-rpc`); see `docs/PROTOCOL.md`.
//!
//! Every handler is idempotent: a redelivered message finds its rows already there and gives the
//! same answer. RPC errors are answered as [`RpcReply::Error`]; work errors are
//! [`HandlerError`]s, transient for database outages.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::api::{
    DEFAULT_LIMIT, FileEntry, FileLocation, FilePage, HoldingMeta, HoldingPage, HoldingSummary,
    MAX_LIMIT, MetaChange, MetaResponse, Tags, Tier,
};
use nlds_core::error::ApiError;
use nlds_core::message::{HoldingFilter, ObjectRef, RpcReply, sub_id};
use nlds_core::workflow::{Step, Workflow};
use nlds_core::{
    Action, Envelope, ErrorCode, FailedFile, FileRecord, PathKind, Payload, RoutingKey, State,
    Worker,
};
use regex::{Regex, RegexSet};
use sea_orm::sea_query::{Expr, OnConflict, Order, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    JoinType, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, RelationTrait,
    TransactionTrait, TryInsertResult,
};
use uuid::Uuid;

use crate::db::{
    self, OpError as Error, bad_request, checksum, conflict, file, holding, internal, location,
    tag, transaction,
};

/// Paths (or ids) per `IN (...)` list: far below the bind-parameter limits of SQLite and
/// PostgreSQL.
const CHUNK: usize = 500;
/// Rows per page when scanning a holding's paths for a regular expression.
const SCAN_PAGE: u64 = 10_000;
/// Longest holding label and tag key.
const MAX_LABEL: usize = 256;
/// Longest tag value.
const MAX_TAG_VALUE: usize = 4096;
/// The checksum algorithm of the pipeline.
const BLAKE3: &str = "blake3";
const WARM: &str = "warm";
const COLD: &str = "cold";

mod archive;
mod delete;
mod recall;
pub use archive::{ArchiveConfig, member_of};
pub use delete::DeleteConfig;
pub use recall::recall_sub;

/// The catalogue handler (roles `catalogue` and `catalogue-rpc`).
pub struct Catalogue {
    db: DatabaseConnection,
    batch_files: usize,
    batch_bytes: u64,
    archive: ArchiveConfig,
    /// The cold store's kind, recorded with each aggregation and cold location.
    cold_backend: String,
    /// Retention of deleted files (see `catalogue::delete`).
    delete: DeleteConfig,
}

type Result<T, E = Error> = std::result::Result<T, E>;

#[async_trait]
impl Handler for Catalogue {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let rpc = key.worker == Worker::Catalog;
        let result = db::retrying(|| self.dispatch(key, &env)).await;
        db::finish(key, &env, rpc, result)
    }
}

impl Catalogue {
    /// A catalogue on `db`; gets are split into batches of at most `batch_files` files and
    /// `batch_bytes` bytes (a larger file gets a batch of its own).
    pub fn new(db: DatabaseConnection, batch_files: usize, batch_bytes: u64) -> Self {
        Self {
            db,
            batch_files: batch_files.max(1),
            batch_bytes: batch_bytes.max(1),
            archive: ArchiveConfig::default(),
            cold_backend: "dir".into(),
            delete: DeleteConfig::default(),
        }
    }

    /// How archive rounds pack files, and the cold store's kind.
    pub fn with_archive(mut self, archive: ArchiveConfig, cold_backend: impl Into<String>) -> Self {
        self.archive = archive;
        self.cold_backend = cold_backend.into();
        self
    }

    async fn dispatch(&self, key: RoutingKey, env: &Envelope) -> Result<Outcome> {
        let reply = |r: RpcReply| Outcome::reply(env.reply(Payload::Reply(r)));
        match (key.worker, key.action, &env.payload) {
            (
                Worker::CatalogCheck,
                Action::Start,
                Payload::Files {
                    holding_id,
                    files,
                    target,
                    overwrite,
                    ..
                },
            ) => {
                self.check(env, *holding_id, files, target, *overwrite)
                    .await
            }
            (
                Worker::CatalogPut,
                Action::Start,
                Payload::Files {
                    holding_id,
                    files,
                    target,
                    overwrite,
                    ..
                },
            ) => self.put(env, *holding_id, files, target, *overwrite).await,
            (
                Worker::CatalogGet,
                Action::Start,
                Payload::GetRequest {
                    filter,
                    paths,
                    regex,
                    target,
                    overwrite,
                },
            ) => {
                self.get(env, filter, paths, *regex, target, *overwrite)
                    .await
            }
            (
                Worker::Catalog,
                Action::Setup,
                Payload::SetupHolding {
                    label,
                    holding_id,
                    tags,
                },
            ) => Ok(reply(
                self.setup(env, label.as_deref(), *holding_id, tags).await?,
            )),
            (Worker::Catalog, Action::List, Payload::ListHoldings { filter }) => {
                Ok(reply(RpcReply::Holdings(self.list(env, filter).await?)))
            }
            (
                Worker::Catalog,
                Action::Find,
                Payload::FindFiles {
                    filter,
                    path,
                    path_regex,
                },
            ) => Ok(reply(RpcReply::Files(
                self.find(env, filter, path.as_deref(), *path_regex).await?,
            ))),
            (
                Worker::Catalog,
                Action::Meta,
                Payload::ChangeMeta {
                    filter,
                    new_label,
                    new_tags,
                    del_tags,
                    dry_run,
                },
            ) => Ok(reply(RpcReply::Meta(
                self.meta(
                    env,
                    filter,
                    new_label.as_deref(),
                    new_tags,
                    del_tags,
                    *dry_run,
                )
                .await?,
            ))),
            (Worker::CatalogArchiveNext, Action::Start, Payload::ArchiveNext) => {
                self.archive_next().await
            }
            (
                Worker::CatalogArchiveUpdate,
                Action::Start,
                Payload::ArchiveStored {
                    aggregation_id,
                    name,
                    sums,
                },
            ) => self.archive_stored(env, *aggregation_id, name, sums).await,
            (Worker::CatalogArchiveUpdate, Action::Start, Payload::Failed { files })
                if env.action == nlds_core::api::ApiAction::ArchiveGet =>
            {
                self.recall_failed(env, files).await
            }
            (Worker::CatalogArchiveUpdate, Action::Start, Payload::Failed { files }) => {
                self.archive_failed(env, files).await
            }
            (
                Worker::CatalogArchiveUpdate,
                Action::Start,
                Payload::RecallProgress {
                    aggregation_id,
                    state,
                },
            ) => self.recall_progress(*aggregation_id, *state).await,
            (
                Worker::CatalogArchiveUpdate,
                Action::Start,
                Payload::ArchiveRestored {
                    aggregation_id,
                    restored,
                },
            ) => self.recall_restored(*aggregation_id, restored).await,
            (Worker::Catalog, Action::Evict, Payload::Evict { holding_id }) => {
                // The catalogue no longer lists these warm copies: their objects are deleted,
                // published (and confirmed) with the answer.
                let files = self.evict(*holding_id).await?;
                let mut out = delete::removal_messages(
                    Workflow::Evict,
                    Step::CatalogEvict,
                    |p| env.reply(p),
                    Some(*holding_id),
                    files.clone(),
                    Vec::new(),
                );
                out.reply = Some(env.reply(Payload::Reply(RpcReply::Evicted { files })));
                Ok(out)
            }
            (
                Worker::Catalog,
                Action::Plan,
                Payload::PlanGet {
                    filter,
                    paths,
                    regex,
                },
            ) => Ok(reply(self.plan(env, filter, paths, *regex).await?)),
            (
                Worker::Catalog,
                Action::Del,
                Payload::Delete {
                    filter,
                    paths,
                    regex,
                    dry_run,
                },
            ) => {
                let plan = self.delete(env, filter, paths, *regex, *dry_run).await?;
                // A committed delete is recorded with the monitor in the same outcome as the
                // answer, so it is never done without being on record.
                let mut out = if *dry_run {
                    Outcome::none()
                } else {
                    delete::recorded(env, filter, &plan)
                };
                out.reply = Some(env.reply(Payload::Reply(RpcReply::Deleted(plan))));
                Ok(out)
            }
            (
                Worker::Catalog,
                Action::Undelete,
                Payload::Undelete {
                    filter,
                    paths,
                    regex,
                    dry_run,
                },
            ) => Ok(reply(RpcReply::Deleted(
                self.undelete(env, filter, paths, *regex, *dry_run).await?,
            ))),
            (Worker::Catalog, Action::Purge, Payload::Purge { holding_id }) => {
                self.purge_now(env, *holding_id).await
            }
            (
                Worker::CatalogCheck
                | Worker::CatalogPut
                | Worker::CatalogGet
                | Worker::Catalog
                | Worker::CatalogArchiveNext
                | Worker::CatalogArchiveUpdate,
                Action::Start
                | Action::Setup
                | Action::List
                | Action::Find
                | Action::Meta
                | Action::Plan
                | Action::Evict
                | Action::Del
                | Action::Undelete
                | Action::Purge,
                _,
            ) => Err(bad_request(format!(
                "{key} does not take a {} payload",
                payload_kind(&env.payload)
            ))),
            _ => Err(bad_request(format!("the catalogue does not handle {key}"))),
        }
    }

    // ---------------------------------------------------------------------------------------
    // catalog.setup

    async fn setup(
        &self,
        env: &Envelope,
        label: Option<&str>,
        holding_id: Option<i64>,
        tags: &Tags,
    ) -> Result<RpcReply> {
        if let Some(l) = label {
            validate_label(l)?;
        }
        for (k, v) in tags {
            validate_tag(k, v)?;
        }
        let txn = self.db.begin().await?;
        let h = match holding_id {
            Some(id) => {
                // Outside what the caller may read (another group's holding, for anyone but an
                // operator), the answer is the one for an id that does not exist.
                let h = holding::Entity::find_by_id(id)
                    .filter(holding::Column::DeletedAt.is_null())
                    .one(&txn)
                    .await?
                    .filter(|h| h.user == env.user || h.group == env.group || env.role.is_admin())
                    .ok_or_else(|| ApiError::not_found(format!("holding {id} not found")))?;
                if h.user != env.user {
                    return Err(ApiError::forbidden(format!(
                        "holding {id} belongs to another user"
                    ))
                    .into());
                }
                if let Some(l) = label
                    && l != h.label
                {
                    return Err(bad_request(format!(
                        "holding {id} is labelled {:?}, not {l:?}",
                        h.label
                    )));
                }
                h
            }
            None => {
                let default;
                let label = match label {
                    Some(l) => l,
                    None => {
                        default = env.transaction_id.to_string()[..8].to_owned();
                        &default
                    }
                };
                get_or_create_holding(&txn, &env.user, &env.group, label).await?
            }
        };
        let new_tags = tags.iter().map(|(k, v)| tag::ActiveModel {
            holding_id: Set(h.id),
            key: Set(k.clone()),
            value: Set(v.clone()),
            ..Default::default()
        });
        tag::Entity::insert_many(new_tags)
            .on_conflict_do_nothing_on([tag::Column::HoldingId, tag::Column::Key])
            .exec_without_returning(&txn)
            .await?;
        ensure_transaction(&txn, env.transaction_id, h.id).await?;
        txn.commit().await?;
        Ok(RpcReply::Holding {
            id: h.id,
            label: h.label,
        })
    }

    // ---------------------------------------------------------------------------------------
    // catalog-check.start

    async fn check(
        &self,
        env: &Envelope,
        holding_id: Option<i64>,
        files: &[FileRecord],
        target: &Option<String>,
        overwrite: bool,
    ) -> Result<Outcome> {
        let h = holding_id.ok_or_else(|| bad_request("catalog-check needs a holding id"))?;
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let existing = existing_files(&self.db, h, &paths).await?;
        let tid = env.transaction_id.to_string();
        let mut keep = Vec::with_capacity(files.len());
        let mut failed = Vec::new();
        for f in files {
            match existing.get(&f.path) {
                Some(e) if e.tid != tid => failed.push(FailedFile::new(
                    &f.path,
                    ErrorCode::Conflict,
                    format!(
                        "{} is already in holding {h} (transaction {})",
                        f.path, e.tid
                    ),
                )),
                _ => keep.push(f.clone()),
            }
        }
        let complete = env.reply(Payload::Files {
            failed,
            holding_id: Some(h),
            files: keep,
            target: target.clone(),
            overwrite,
        });
        Ok(Outcome::publish(
            RoutingKey::new(Worker::CatalogCheck, Action::Complete),
            complete,
        ))
    }

    // ---------------------------------------------------------------------------------------
    // catalog-put.start

    async fn put(
        &self,
        env: &Envelope,
        holding_id: Option<i64>,
        files: &[FileRecord],
        target: &Option<String>,
        overwrite: bool,
    ) -> Result<Outcome> {
        let h = holding_id.ok_or_else(|| bad_request("catalog-put needs a holding id"))?;
        let txn = self.db.begin().await?;
        let tx = ensure_transaction(&txn, env.transaction_id, h).await?;

        // A path twice in one message is the same file: catalogue it once.
        let mut seen = HashSet::new();
        let files: Vec<&FileRecord> = files.iter().filter(|f| seen.insert(&f.path)).collect();
        let mut failed: BTreeMap<&str, FailedFile> = BTreeMap::new();
        for f in &files {
            if f.kind == PathKind::File && f.object.is_none() {
                failed.insert(
                    &f.path,
                    FailedFile::new(
                        &f.path,
                        ErrorCode::StorageError,
                        format!("{} reached the catalogue without a stored object", f.path),
                    ),
                );
            }
        }
        let candidates: Vec<&FileRecord> = files
            .iter()
            .copied()
            .filter(|f| !failed.contains_key(f.path.as_str()))
            .collect();
        let paths: Vec<&str> = candidates.iter().map(|f| f.path.as_str()).collect();
        let before = existing_files(&txn, h, &paths).await?;
        let new: Vec<&FileRecord> = candidates
            .iter()
            .copied()
            .filter(|f| !before.contains_key(&f.path))
            .collect();
        for chunk in new.chunks(CHUNK) {
            let rows = chunk.iter().map(|f| file::ActiveModel {
                holding_id: Set(h),
                transaction_id: Set(tx.id),
                path: Set(f.path.clone()),
                kind: Set(f.kind.as_str().to_owned()),
                link_target: Set(f.link_target.clone()),
                size: Set(to_i64(f.size)),
                uid: Set(i64::from(f.uid)),
                gid: Set(i64::from(f.gid)),
                mode: Set(i64::from(f.mode)),
                mtime_ns: Set(f.mtime_ns),
                ..Default::default()
            });
            // A concurrent put of the same path from another transaction loses here and is
            // reported as a conflict below.
            file::Entity::insert_many(rows)
                .on_conflict(live_conflict([file::Column::HoldingId, file::Column::Path]))
                .try_insert()
                .exec_without_returning(&txn)
                .await?;
        }
        let new_paths: Vec<&str> = new.iter().map(|f| f.path.as_str()).collect();
        let after = existing_files(&txn, h, &new_paths).await?;

        let now = Utc::now();
        let mut locations = Vec::new();
        let mut checksums = Vec::new();
        let mut conflicting: Vec<(&FileRecord, i64, String)> = Vec::new();
        let mut done = Vec::new();
        for f in &candidates {
            let (e, inserted) = match (before.get(&f.path), after.get(&f.path)) {
                (Some(e), _) => (e, false),
                (None, Some(e)) => (e, true),
                (None, None) => {
                    return Err(internal(format!(
                        "{} was inserted into holding {h} but cannot be read back",
                        f.path
                    )));
                }
            };
            if e.transaction_pk != tx.id {
                conflicting.push((f, e.file_id, e.tid.clone()));
                continue;
            }
            if inserted {
                if let Some(o) = &f.object {
                    locations.push(location::ActiveModel {
                        file_id: Set(e.file_id),
                        tier: Set(WARM.to_owned()),
                        bucket: Set(o.bucket.clone()),
                        key: Set(o.key.clone()),
                        created: Set(now),
                        tenancy: Set(o.tenancy.clone()),
                        ..Default::default()
                    });
                }
                if let Some(b) = &f.blake3 {
                    checksums.push(checksum::ActiveModel {
                        file_id: Set(e.file_id),
                        algorithm: Set(BLAKE3.to_owned()),
                        value: Set(b.clone()),
                        ..Default::default()
                    });
                }
            }
            done.push(f.path.as_str());
        }
        add_locations(&txn, locations).await?;
        for chunk in chunks_of(checksums) {
            checksum::Entity::insert_many(chunk)
                .on_conflict_do_nothing_on([checksum::Column::FileId, checksum::Column::Algorithm])
                .exec_without_returning(&txn)
                .await?;
        }

        // Objects uploaded for paths the holding already has are deleted again, unless the
        // catalogued copy is that very object.
        let ids: Vec<i64> = conflicting.iter().map(|(_, id, _)| *id).collect();
        let mut kept: HashSet<(String, String)> = HashSet::new();
        for chunk in ids.chunks(CHUNK) {
            let rows = location::Entity::find()
                .filter(location::Column::FileId.is_in(chunk.iter().copied()))
                .all(&txn)
                .await?;
            kept.extend(rows.into_iter().map(|l| (l.bucket, l.key)));
        }
        txn.commit().await?;

        let mut to_delete = Vec::new();
        for (f, _, other) in &conflicting {
            failed.insert(
                &f.path,
                FailedFile::new(
                    &f.path,
                    ErrorCode::Conflict,
                    format!("{} is already in holding {h} (transaction {other})", f.path),
                ),
            );
            if let Some(o) = &f.object
                && !kept.contains(&(o.bucket.clone(), o.key.clone()))
            {
                to_delete.push((*f).clone());
            }
        }
        // Never an object a live file still counts on (the last-copy guard decides).
        if !to_delete.is_empty() {
            let proposals = to_delete
                .iter()
                .filter_map(|f| f.object.as_ref())
                .map(|o| delete::Removal::Warm {
                    bucket: o.bucket.clone(),
                    key: o.key.clone(),
                })
                .collect();
            let verdict = delete::guard_removals(&self.db, proposals).await?;
            to_delete.retain(|f| {
                f.object.as_ref().is_some_and(|o| {
                    verdict.allowed.contains(&delete::Removal::Warm {
                        bucket: o.bucket.clone(),
                        key: o.key.clone(),
                    })
                })
            });
        }
        let done: HashSet<&str> = done.into_iter().collect();
        let complete: Vec<FileRecord> = files
            .iter()
            .filter(|f| done.contains(f.path.as_str()))
            .map(|f| (*f).clone())
            .collect();
        let mut out = Outcome::publish(
            RoutingKey::new(Worker::CatalogPut, Action::Complete),
            env.reply(Payload::Files {
                failed: failed.into_values().collect(),
                holding_id: Some(h),
                files: complete,
                target: target.clone(),
                overwrite,
            }),
        );
        if !to_delete.is_empty() {
            out = out.and(
                RoutingKey::new(Worker::TransferDel, Action::Start),
                env.reply(Payload::Files {
                    failed: Vec::new(),
                    holding_id: Some(h),
                    files: to_delete,
                    target: None,
                    overwrite: false,
                }),
            );
        }
        Ok(out)
    }

    // ---------------------------------------------------------------------------------------
    // catalog-get.start

    /// The files a get of `paths` restores (the newest catalogued copy of each path, in path
    /// order), and the requested paths that match nothing.
    async fn resolve_get(
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

        // Every catalogued file that matches, and which requested paths matched anything.
        let mut matched: Vec<file::Model> = Vec::new();
        let mut unmatched: Vec<&str> = Vec::new();
        if regex {
            let set = compile_set(paths).await?;
            let mut hit = vec![false; set.len()];
            let mut ids = Vec::new();
            let mut last = 0i64;
            loop {
                let page: Vec<(i64, String)> = scoped_files(&scope)
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
                    .map(|(p, _)| p.as_str()),
            );
        } else {
            let wanted: Vec<(&str, String)> =
                paths.iter().map(|p| (p.as_str(), normalise(p))).collect();
            let exact: Vec<&str> = wanted.iter().map(|(_, n)| n.as_str()).collect();
            let mut by_path: HashMap<String, Vec<file::Model>> = HashMap::new();
            for chunk in dedup(&exact).chunks(CHUNK) {
                for m in scoped_files(&scope)
                    .filter(file::Column::Path.is_in(chunk.iter().copied()))
                    .all(&self.db)
                    .await?
                {
                    by_path.entry(m.path.clone()).or_default().push(m);
                }
            }
            let mut found: HashMap<&str, bool> = HashMap::new();
            for norm in dedup(&exact) {
                let hits = by_path.get(norm);
                let mut any = hits.is_some_and(|h| !h.is_empty());
                // Everything under the path, unless it names only plain files and links.
                let directory =
                    hits.is_none_or(|h| h.iter().any(|m| m.kind == PathKind::Directory.as_str()));
                if directory {
                    let (lo, hi) = prefix_range(norm);
                    let under = scoped_files(&scope)
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
                    .map(|(p, _)| *p),
            );
            matched.extend(by_path.into_values().flatten());
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
        let failed: Vec<FailedFile> = unmatched
            .iter()
            .map(|p| {
                let whose = if filter.groupall {
                    format!("{}'s or group {}'s", env.user, env.group)
                } else {
                    format!("{}'s", env.user)
                };
                FailedFile::new(
                    *p,
                    ErrorCode::NotFound,
                    format!("{p} is in none of {whose} holdings"),
                )
            })
            .collect();
        Ok((best.into_values().collect(), failed))
    }

    /// `catalog.plan`: what a get would restore, as catalogue entries.
    async fn plan(
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

    async fn get(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        paths: &[String],
        regex: bool,
        target: &Option<String>,
        overwrite: bool,
    ) -> Result<Outcome> {
        let (best, mut failed) = self.resolve_get(env, filter, paths, regex).await?;
        let ids: Vec<i64> = best.iter().map(|m| m.id).collect();
        let (locations, checksums) = load_copies(&self.db, &ids).await?;
        let mut records = Vec::with_capacity(best.len());
        let mut cold_only: BTreeMap<String, Vec<file::Model>> = BTreeMap::new();
        for m in best {
            let warm = locations
                .get(&m.id)
                .and_then(|ls| ls.iter().find(|l| l.tier == WARM));
            let kind = PathKind::parse(&m.kind).unwrap_or(PathKind::File);
            if kind == PathKind::File && warm.is_none() {
                match locations
                    .get(&m.id)
                    .and_then(|ls| ls.iter().find(|l| l.tier == COLD))
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
        let (mut out, unrecallable) = self
            .register_recalls(env, cold_only, target, overwrite)
            .await?;
        failed.extend(unrecallable);
        let files_total = records.len() as u64 + recalled;
        let bytes_total: u64 = records.iter().map(|r| r.size).sum::<u64>() + recalled_bytes;
        for (i, batch) in self.batches(records).into_iter().enumerate() {
            let holdings: HashSet<Option<i64>> = batch.iter().map(|r| r.holding_id).collect();
            let holding_id = if holdings.len() == 1 {
                holdings.into_iter().next().flatten()
            } else {
                None
            };
            out = out.and(
                RoutingKey::new(Worker::CatalogGet, Action::Complete),
                env.with_sub(
                    sub_id(env.transaction_id, "get", i),
                    Payload::Files {
                        // Unknown paths travel with the first batch (see the indexer).
                        failed: std::mem::take(&mut failed),
                        holding_id,
                        files: batch,
                        target: target.clone(),
                        overwrite,
                    },
                ),
            );
        }
        if !failed.is_empty() {
            out = out.and(
                RoutingKey::new(Worker::CatalogGet, Action::Failed),
                env.with_sub(
                    nlds_core::message::sub_id(env.transaction_id, "get-failed", 0),
                    Payload::Failed { files: failed },
                ),
            );
        }
        out = out.and(
            RoutingKey::new(Worker::MonitorPut, Action::Start),
            env.with_sub(
                env.transaction_id,
                Payload::MonitorUpdate {
                    state: State::Split,
                    files: files_total,
                    bytes: bytes_total,
                    failed: Vec::new(),
                    warnings: Vec::new(),
                },
            ),
        );
        Ok(out)
    }

    /// Splits files into batches of at most `batch_files` files and `batch_bytes` bytes.
    fn batches(&self, files: Vec<FileRecord>) -> Vec<Vec<FileRecord>> {
        let mut out = Vec::new();
        let mut cur: Vec<FileRecord> = Vec::new();
        let mut bytes = 0u64;
        for f in files {
            if !cur.is_empty()
                && (cur.len() >= self.batch_files
                    || bytes.saturating_add(f.size) > self.batch_bytes)
            {
                out.push(std::mem::take(&mut cur));
                bytes = 0;
            }
            bytes = bytes.saturating_add(f.size);
            cur.push(f);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    // ---------------------------------------------------------------------------------------
    // catalog.list

    async fn list(&self, env: &Envelope, filter: &HoldingFilter) -> Result<HoldingPage> {
        let scope = self.scope(env, filter, false).await?;
        let (limit, offset) = page(filter)?;
        let order = order(filter);
        let query = holding::Entity::find().filter(scope);
        let total = query.clone().count(&self.db).await?;
        let rows = query
            .order_by(holding::Column::Created, order.clone())
            .order_by(holding::Column::Id, order)
            .limit(limit)
            .offset(offset)
            .all(&self.db)
            .await?;
        let ids: Vec<i64> = rows.iter().map(|h| h.id).collect();
        let mut tags = load_tags(&self.db, &ids).await?;
        let mut transactions: HashMap<i64, Vec<Uuid>> = HashMap::new();
        let mut stats: HashMap<i64, (u64, u64)> = HashMap::new();
        let mut tiers: HashMap<i64, (u64, u64)> = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            for t in transaction::Entity::find()
                .filter(transaction::Column::HoldingId.is_in(chunk.iter().copied()))
                .order_by(transaction::Column::IngestTime, Order::Asc)
                .order_by(transaction::Column::Id, Order::Asc)
                .all(&self.db)
                .await?
            {
                transactions
                    .entry(t.holding_id)
                    .or_default()
                    .push(parse_uuid(&t.transaction_id));
            }
            let counts: Vec<(i64, i64, i64)> = file::Entity::find()
                .select_only()
                .column(file::Column::HoldingId)
                .expr(Expr::cust("CAST(COUNT(*) AS BIGINT)"))
                .expr(Expr::cust(
                    r#"CAST(COALESCE(SUM("file"."size"), 0) AS BIGINT)"#,
                ))
                .filter(file::Column::HoldingId.is_in(chunk.iter().copied()))
                .filter(file::Column::DeletedAt.is_null())
                .group_by(file::Column::HoldingId)
                .into_tuple()
                .all(&self.db)
                .await?;
            for (h, n, b) in counts {
                stats.insert(h, (to_u64(n), to_u64(b)));
            }
            let per_tier: Vec<(i64, String, i64)> = location::Entity::find()
                .join(JoinType::InnerJoin, location::Relation::File.def())
                .select_only()
                .column(file::Column::HoldingId)
                .column(location::Column::Tier)
                .expr(Expr::cust("CAST(COUNT(*) AS BIGINT)"))
                .filter(file::Column::HoldingId.is_in(chunk.iter().copied()))
                .filter(file::Column::DeletedAt.is_null())
                .group_by(file::Column::HoldingId)
                .group_by(location::Column::Tier)
                .into_tuple()
                .all(&self.db)
                .await?;
            for (h, tier, n) in per_tier {
                let e = tiers.entry(h).or_default();
                if tier == WARM {
                    e.0 = to_u64(n);
                } else if tier == COLD {
                    e.1 = to_u64(n);
                }
            }
        }
        let recalling = self.recalling_files().await?;
        let recalling_by_holding: HashMap<i64, u64> = if recalling.is_empty() {
            HashMap::new()
        } else {
            let mut m = HashMap::new();
            let ids: Vec<i64> = recalling.iter().copied().collect();
            for chunk in ids.chunks(CHUNK) {
                for (h,) in file::Entity::find()
                    .select_only()
                    .column(file::Column::HoldingId)
                    .filter(file::Column::Id.is_in(chunk.iter().copied()))
                    .into_tuple::<(i64,)>()
                    .all(&self.db)
                    .await?
                {
                    *m.entry(h).or_insert(0) += 1;
                }
            }
            m
        };
        let holdings = rows
            .into_iter()
            .map(|h| {
                let (files, bytes) = stats.get(&h.id).copied().unwrap_or_default();
                let (warm_files, cold_files) = tiers.get(&h.id).copied().unwrap_or_default();
                HoldingSummary {
                    warm_files,
                    cold_files,
                    recalling_files: recalling_by_holding.get(&h.id).copied().unwrap_or(0),
                    tags: tags.remove(&h.id).unwrap_or_default(),
                    transactions: transactions.remove(&h.id).unwrap_or_default(),
                    id: h.id,
                    label: h.label,
                    user: h.user,
                    group: h.group,
                    created: h.created,
                    files,
                    bytes,
                }
            })
            .collect();
        Ok(HoldingPage {
            holdings,
            total,
            limit,
            offset,
        })
    }

    // ---------------------------------------------------------------------------------------
    // catalog.find

    async fn find(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        path: Option<&str>,
        path_regex: bool,
    ) -> Result<FilePage> {
        let scope = self.scope(env, filter, false).await?;
        let (limit, offset) = page(filter)?;
        let order = order(filter);
        let re = match (path, path_regex) {
            (Some(p), true) => Some(compile(p).await?),
            _ => None,
        };
        let mut query = find_query(scope, order);
        if let (Some(p), false) = (path, path_regex) {
            query = query.filter(file::Column::Path.eq(p));
        }
        let (total, models) = match re {
            None => {
                let total = query.clone().count(&self.db).await?;
                let models = query.limit(limit).offset(offset).all(&self.db).await?;
                (total, models)
            }
            Some(re) => {
                let all: Vec<(i64, String)> = query
                    .select_only()
                    .column(file::Column::Id)
                    .column(file::Column::Path)
                    .into_tuple()
                    .all(&self.db)
                    .await?;
                let hits: Vec<i64> = all
                    .into_iter()
                    .filter(|(_, p)| re.is_match(p))
                    .map(|(id, _)| id)
                    .collect();
                let total = hits.len() as u64;
                let page: Vec<i64> = hits
                    .into_iter()
                    .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                    .take(usize::try_from(limit).unwrap_or(usize::MAX))
                    .collect();
                let mut by_id: HashMap<i64, file::Model> = file::Entity::find()
                    .filter(file::Column::Id.is_in(page.iter().copied()))
                    .all(&self.db)
                    .await?
                    .into_iter()
                    .map(|m| (m.id, m))
                    .collect();
                (
                    total,
                    page.iter().filter_map(|id| by_id.remove(id)).collect(),
                )
            }
        };
        let files = self.entries(models).await?;
        Ok(FilePage {
            files,
            total,
            limit,
            offset,
        })
    }

    /// The API view of file rows, in their order.
    async fn entries(&self, models: Vec<file::Model>) -> Result<Vec<FileEntry>> {
        let ids: Vec<i64> = models.iter().map(|m| m.id).collect();
        let holding_ids = dedup(&models.iter().map(|m| m.holding_id).collect::<Vec<_>>());
        let tx_ids = dedup(&models.iter().map(|m| m.transaction_id).collect::<Vec<_>>());
        let holdings: HashMap<i64, holding::Model> = holding::Entity::find()
            .filter(holding::Column::Id.is_in(holding_ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|h| (h.id, h))
            .collect();
        let txs = load_transactions(&self.db, &tx_ids).await?;
        let (mut locations, mut checksums) = load_copies(&self.db, &ids).await?;
        let recalling = self.recalling_files().await?;
        let mut out = Vec::with_capacity(models.len());
        for m in models {
            let h = holdings.get(&m.holding_id).ok_or_else(|| {
                internal(format!("holding {} of {} vanished", m.holding_id, m.path))
            })?;
            let t = txs.get(&m.transaction_id).ok_or_else(|| {
                internal(format!(
                    "transaction {} of {} vanished",
                    m.transaction_id, m.path
                ))
            })?;
            let mut locs: Vec<FileLocation> = locations
                .remove(&m.id)
                .unwrap_or_default()
                .into_iter()
                .map(|l| FileLocation {
                    tier: if l.tier == COLD {
                        Tier::Cold
                    } else {
                        Tier::Warm
                    },
                    bucket: l.bucket,
                    key: l.key,
                })
                .collect();
            locs.sort_by_key(|l| l.tier == Tier::Cold);
            out.push(FileEntry {
                kind: PathKind::parse(&m.kind).unwrap_or(PathKind::File),
                link_target: m.link_target,
                size: to_u64(m.size),
                uid: to_u32(m.uid),
                gid: to_u32(m.gid),
                mode: to_u32(m.mode),
                mtime: DateTime::from_timestamp_nanos(m.mtime_ns),
                holding_id: h.id,
                label: h.label.clone(),
                user: h.user.clone(),
                group: h.group.clone(),
                transaction_id: parse_uuid(&t.transaction_id),
                ingest_time: t.ingest_time,
                blake3: checksums.remove(&m.id),
                recalling: recalling.contains(&m.id),
                locations: locs,
                path: m.path,
            });
        }
        Ok(out)
    }

    // ---------------------------------------------------------------------------------------
    // catalog.meta

    async fn meta(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        new_label: Option<&str>,
        new_tags: &Tags,
        del_tags: &Tags,
        dry_run: bool,
    ) -> Result<MetaResponse> {
        if !has_selector(filter) {
            return Err(bad_request("give a holding id, label or tags"));
        }
        if let Some(l) = new_label {
            validate_label(l)?;
        }
        for (k, v) in new_tags {
            validate_tag(k, v)?;
        }
        let scope = self.changeable(env, filter).await?;
        let txn = self.db.begin().await?;
        let holdings = holding::Entity::find()
            .filter(scope)
            .order_by(holding::Column::Id, Order::Asc)
            .all(&txn)
            .await?;
        // Nothing in the caller's read scope: the same answer whether the holding exists
        // elsewhere or not at all (no label, owner or group of another group's holding).
        if holdings.is_empty() {
            return Err(ApiError::not_found(format!("no holding of {} matches", env.user)).into());
        }
        // All or nothing: one holding the caller may not change refuses the whole request.
        if let Some(reason) = holdings.iter().find_map(|h| may_change(env, h).err()) {
            return Err(ApiError::forbidden(reason).into());
        }
        if new_label.is_some() && holdings.len() > 1 {
            return Err(bad_request(format!(
                "{} holdings match, but a new label needs exactly one",
                holdings.len()
            )));
        }
        let ids: Vec<i64> = holdings.iter().map(|h| h.id).collect();
        let mut old_tags = load_tags(&txn, &ids).await?;
        let mut changes = Vec::with_capacity(holdings.len());
        for h in holdings {
            let mut label = h.label.clone();
            if let Some(nl) = new_label
                && nl != h.label
            {
                if let Some(other) = holding::Entity::find()
                    .filter(holding::Column::User.eq(&h.user))
                    .filter(holding::Column::Label.eq(nl))
                    .filter(holding::Column::DeletedAt.is_null())
                    .one(&txn)
                    .await?
                {
                    // Name the other holding only if the caller may read it.
                    return Err(conflict(
                        if other.user == env.user || other.group == env.group {
                            format!("label {nl:?} is already used by holding {}", other.id)
                        } else {
                            format!(
                                "label {nl:?} is already used by another holding of {}",
                                h.user
                            )
                        },
                    ));
                }
                let update = holding::ActiveModel {
                    id: Set(h.id),
                    label: Set(nl.to_owned()),
                    ..Default::default()
                };
                holding::Entity::update(update)
                    .exec(&txn)
                    .await
                    .map_err(|e| {
                        if db::is_unique_violation(&e) {
                            conflict(format!("label {nl:?} is already used by another holding"))
                        } else {
                            e.into()
                        }
                    })?;
                label = nl.to_owned();
            }
            let old = old_tags.remove(&h.id).unwrap_or_default();
            let mut tags = old.clone();
            for (k, v) in del_tags {
                if old.get(k).is_some_and(|cur| v.is_empty() || cur == v) {
                    tag::Entity::delete_many()
                        .filter(tag::Column::HoldingId.eq(h.id))
                        .filter(tag::Column::Key.eq(k))
                        .exec(&txn)
                        .await?;
                    tags.remove(k);
                }
            }
            for (k, v) in new_tags {
                tag::Entity::insert(tag::ActiveModel {
                    holding_id: Set(h.id),
                    key: Set(k.clone()),
                    value: Set(v.clone()),
                    ..Default::default()
                })
                .on_conflict(
                    OnConflict::columns([tag::Column::HoldingId, tag::Column::Key])
                        .update_column(tag::Column::Value)
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
                tags.insert(k.clone(), v.clone());
            }
            changes.push(MetaChange {
                id: h.id,
                user: h.user,
                group: h.group,
                old: HoldingMeta {
                    label: h.label,
                    tags: old,
                },
                new: HoldingMeta { label, tags },
            });
        }
        if dry_run {
            txn.rollback().await?;
        } else {
            txn.commit().await?;
        }
        Ok(MetaResponse {
            holdings: changes,
            dry_run,
        })
    }

    /// The condition selecting the live holdings a `catalog.meta` request names, before the
    /// per-holding permission check ([`may_change`]): the caller's own; with a holding id, that
    /// holding if it is in the group (which the caller may read), so a refusal can say whose it
    /// is, and anywhere for an operator; with `groupall`, the group's. Another group's holding is
    /// never selected, so it is not found, exactly like an id that does not exist.
    async fn changeable(&self, env: &Envelope, filter: &HoldingFilter) -> Result<Condition> {
        if env.role.is_admin()
            && let Some(id) = filter.holding_id
        {
            return Ok(Condition::all()
                .add(holding::Column::Id.eq(id))
                .add(holding::Column::DeletedAt.is_null()));
        }
        let widened = HoldingFilter {
            groupall: filter.groupall || filter.holding_id.is_some(),
            ..filter.clone()
        };
        self.scope(env, &widened, false).await
    }

    // ---------------------------------------------------------------------------------------
    // Holding selection

    /// The condition (on `holding` columns) selecting the holdings `filter` names that `env.user`
    /// may see: their own, and with `groupall` (unless `own_only`) those of `env.group`.
    async fn scope(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        own_only: bool,
    ) -> Result<Condition> {
        self.scope_of(env, filter, own_only, true).await
    }

    /// [`Catalogue::scope`], of live holdings only (`live_only`) or of deleted ones too.
    async fn scope_of(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        own_only: bool,
        live_only: bool,
    ) -> Result<Condition> {
        let mut visible = Condition::any().add(holding::Column::User.eq(&env.user));
        if filter.groupall && !own_only {
            visible = visible.add(holding::Column::Group.eq(&env.group));
        }
        let mut cond = Condition::all().add(visible);
        if live_only {
            cond = cond.add(holding::Column::DeletedAt.is_null());
        }
        if let Some(id) = filter.holding_id {
            cond = cond.add(holding::Column::Id.eq(id));
        }
        if !filter.holding_ids.is_empty() {
            cond = cond.add(holding_id_in(&filter.holding_ids));
        }
        if let Some(t) = filter.transaction_id {
            cond = cond.add(
                holding::Column::Id.in_subquery(
                    Query::select()
                        .column((transaction::Entity, transaction::Column::HoldingId))
                        .from(transaction::Entity)
                        .and_where(transaction::Column::TransactionId.eq(t.to_string()))
                        .to_owned(),
                ),
            );
        }
        for (k, v) in &filter.tags {
            cond = cond.add(
                holding::Column::Id.in_subquery(
                    Query::select()
                        .column((tag::Entity, tag::Column::HoldingId))
                        .from(tag::Entity)
                        .and_where(tag::Column::Key.eq(k.as_str()))
                        .and_where(tag::Column::Value.eq(v.as_str()))
                        .to_owned(),
                ),
            );
        }
        match &filter.label {
            Some(l) if filter.label_regex => {
                let re = compile(l).await?;
                let labels: Vec<(i64, String)> = holding::Entity::find()
                    .select_only()
                    .column(holding::Column::Id)
                    .column(holding::Column::Label)
                    .filter(cond)
                    .into_tuple()
                    .all(&self.db)
                    .await?;
                let ids: Vec<i64> = labels
                    .into_iter()
                    .filter(|(_, label)| re.is_match(label))
                    .map(|(id, _)| id)
                    .collect();
                Ok(Condition::all().add(holding_id_in(&ids)))
            }
            Some(l) => Ok(cond.add(holding::Column::Label.eq(l.as_str()))),
            None => Ok(cond),
        }
    }
}

/// May `env`'s caller change the label or tags of holding `h`? A USER changes only their own
/// holdings, a DEPUTY or MANAGER any of their group's, an ADMIN (operator) any. A refusal of a
/// holding of the caller's group names the holding, its owner and the reason: what a member of
/// the group can read anyway (`groupall`). A holding of another group is never named (the
/// selection leaves those out; this is the belt to its braces).
fn may_change(env: &Envelope, h: &holding::Model) -> std::result::Result<(), String> {
    if h.user == env.user
        || env.role.is_admin()
        || (env.role.manages_group() && h.group == env.group)
    {
        return Ok(());
    }
    Err(if h.group == env.group {
        format!(
            "holding {} ({:?}) belongs to {}: {} is a {} of group {} and may change only their \
             own holdings (a deputy or manager of the group may change it)",
            h.id, h.label, h.user, env.user, env.role, h.group
        )
    } else {
        format!("holding {} not found", h.id)
    })
}

// -------------------------------------------------------------------------------------------
// Queries

/// Files of the holdings selected by `scope`.
fn scoped_files(scope: &Condition) -> sea_orm::Select<file::Entity> {
    file::Entity::find()
        .join(JoinType::InnerJoin, file::Relation::Holding.def())
        .filter(scope.clone())
        .filter(file::Column::DeletedAt.is_null())
}

/// Files of the holdings selected by `scope`, ordered by ingest time (then id).
fn find_query(scope: Condition, order: Order) -> sea_orm::Select<file::Entity> {
    file::Entity::find()
        .join(JoinType::InnerJoin, file::Relation::Holding.def())
        .join(JoinType::InnerJoin, file::Relation::Transaction.def())
        .filter(scope)
        .filter(file::Column::DeletedAt.is_null())
        .order_by(transaction::Column::IngestTime, order.clone())
        .order_by(file::Column::Id, order)
}

/// `"file"."holding_id" IN (...)` with the ids inlined (integers only).
fn holding_file_in(ids: &[i64]) -> Expr {
    if ids.is_empty() {
        return Expr::cust("1 = 0");
    }
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    Expr::cust(format!(r#""file"."holding_id" IN ({})"#, list.join(",")))
}

/// `ON CONFLICT (cols) WHERE deleted_at IS NULL`: the target of the unique indexes that hold
/// among live rows only (deleted rows keep their path or label until they are purged).
fn live_conflict<C: sea_orm::sea_query::IntoIden + Copy>(
    cols: impl IntoIterator<Item = C>,
) -> OnConflict {
    OnConflict::columns(cols)
        .target_and_where(sea_orm::sea_query::ExprTrait::is_null(Expr::col(
            sea_orm::sea_query::Alias::new("deleted_at"),
        )))
        .do_nothing()
        .to_owned()
}

/// `"holding"."id" IN (...)` with the ids inlined (integers only), so any number of them fits.
fn holding_id_in(ids: &[i64]) -> Expr {
    if ids.is_empty() {
        return Expr::cust("1 = 0");
    }
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    Expr::cust(format!(r#""holding"."id" IN ({})"#, list.join(",")))
}

/// A file already catalogued in a holding.
struct Existing {
    file_id: i64,
    transaction_pk: i64,
    tid: String,
}

/// The files of holding `h` at `paths`, by path.
async fn existing_files(
    c: &impl ConnectionTrait,
    h: i64,
    paths: &[&str],
) -> Result<HashMap<String, Existing>> {
    let mut out = HashMap::new();
    for chunk in paths.chunks(CHUNK) {
        let rows: Vec<(i64, String, i64, String)> = file::Entity::find()
            .select_only()
            .column(file::Column::Id)
            .column(file::Column::Path)
            .column(file::Column::TransactionId)
            .column_as(transaction::Column::TransactionId, "tid")
            .join(JoinType::InnerJoin, file::Relation::Transaction.def())
            .filter(file::Column::HoldingId.eq(h))
            .filter(file::Column::DeletedAt.is_null())
            .filter(file::Column::Path.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(c)
            .await?;
        for (file_id, path, transaction_pk, tid) in rows {
            out.insert(
                path,
                Existing {
                    file_id,
                    transaction_pk,
                    tid,
                },
            );
        }
    }
    Ok(out)
}

/// Finds the user's holding labelled `label`, or creates it in `group`. Safe against concurrent
/// creation: the UNIQUE (user, label) index decides, and the loser reads the winner's row.
async fn get_or_create_holding(
    c: &impl ConnectionTrait,
    user: &str,
    group: &str,
    label: &str,
) -> Result<holding::Model> {
    for _ in 0..3 {
        if let Some(h) = holding::Entity::find()
            .filter(holding::Column::User.eq(user))
            .filter(holding::Column::Label.eq(label))
            .filter(holding::Column::DeletedAt.is_null())
            .one(c)
            .await?
        {
            if h.group != group {
                return Err(conflict(format!(
                    "{user} already has a holding labelled {label:?} (id {}) in group {}",
                    h.id, h.group
                )));
            }
            return Ok(h);
        }
        let new = holding::ActiveModel {
            label: Set(label.to_owned()),
            user: Set(user.to_owned()),
            group: Set(group.to_owned()),
            created: Set(Utc::now()),
            ..Default::default()
        };
        let res = holding::Entity::insert(new)
            .on_conflict(live_conflict([
                holding::Column::User,
                holding::Column::Label,
            ]))
            .try_insert()
            .exec(c)
            .await?;
        if let TryInsertResult::Inserted(r) = res
            && let Some(h) = holding::Entity::find_by_id(r.last_insert_id).one(c).await?
        {
            return Ok(h);
        }
    }
    Err(internal(format!(
        "cannot create or find holding {label:?} of {user}"
    )))
}

/// The `transaction` row of `tid`, created in holding `h` if missing; a transaction of another
/// holding is a conflict.
async fn ensure_transaction(
    c: &impl ConnectionTrait,
    tid: Uuid,
    h: i64,
) -> Result<transaction::Model> {
    let find = || {
        transaction::Entity::find().filter(transaction::Column::TransactionId.eq(tid.to_string()))
    };
    let t = match find().one(c).await? {
        Some(t) => t,
        None => {
            transaction::Entity::insert(transaction::ActiveModel {
                transaction_id: Set(tid.to_string()),
                holding_id: Set(h),
                ingest_time: Set(Utc::now()),
                ..Default::default()
            })
            .on_conflict_do_nothing_on([transaction::Column::TransactionId])
            .exec_without_returning(c)
            .await?;
            find()
                .one(c)
                .await?
                .ok_or_else(|| internal(format!("transaction {tid} cannot be read back")))?
        }
    };
    if t.holding_id != h {
        // Whose it is, and which holding, is not the caller's business.
        return Err(conflict(format!(
            "transaction id {tid} is already in use: choose another (or leave it out to have \
             one made)"
        )));
    }
    Ok(t)
}

async fn load_transactions(
    c: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<HashMap<i64, transaction::Model>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        for t in transaction::Entity::find()
            .filter(transaction::Column::Id.is_in(chunk.iter().copied()))
            .all(c)
            .await?
        {
            out.insert(t.id, t);
        }
    }
    Ok(out)
}

async fn load_tags(c: &impl ConnectionTrait, ids: &[i64]) -> Result<HashMap<i64, Tags>> {
    let mut out: HashMap<i64, Tags> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        for t in tag::Entity::find()
            .filter(tag::Column::HoldingId.is_in(chunk.iter().copied()))
            .all(c)
            .await?
        {
            out.entry(t.holding_id).or_default().insert(t.key, t.value);
        }
    }
    Ok(out)
}

/// Locations and blake3 checksums of files, by file id.
async fn load_copies(
    c: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<(HashMap<i64, Vec<location::Model>>, HashMap<i64, String>)> {
    let mut locations: HashMap<i64, Vec<location::Model>> = HashMap::new();
    let mut checksums = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        for l in location::Entity::find()
            .filter(location::Column::FileId.is_in(chunk.iter().copied()))
            .all(c)
            .await?
        {
            locations.entry(l.file_id).or_default().push(l);
        }
        for s in checksum::Entity::find()
            .filter(checksum::Column::FileId.is_in(chunk.iter().copied()))
            .filter(checksum::Column::Algorithm.eq(BLAKE3))
            .all(c)
            .await?
        {
            checksums.insert(s.file_id, s.value);
        }
    }
    Ok((locations, checksums))
}

// -------------------------------------------------------------------------------------------
// Helpers

/// Records copies; a file's existing copy on the same tier is kept (idempotent).
async fn add_locations(c: &impl ConnectionTrait, rows: Vec<location::ActiveModel>) -> Result<()> {
    for chunk in chunks_of(rows) {
        location::Entity::insert_many(chunk)
            .on_conflict_do_nothing_on([location::Column::FileId, location::Column::Tier])
            .exec_without_returning(c)
            .await?;
    }
    Ok(())
}

/// A copy of file `file_id` on `tier`, at `bucket`/`key`.
fn location_row(file_id: i64, tier: &str, bucket: &str, key: &str) -> location::ActiveModel {
    location::ActiveModel {
        file_id: Set(file_id),
        tier: Set(tier.to_owned()),
        bucket: Set(bucket.to_owned()),
        key: Set(key.to_owned()),
        created: Set(Utc::now()),
        ..Default::default()
    }
}

/// The order of a path's copies: newer ingest first wins.
fn ingest_key(
    txs: &HashMap<i64, transaction::Model>,
    m: &file::Model,
) -> (Option<DateTime<Utc>>, i64) {
    (
        txs.get(&m.transaction_id).map(|t| t.ingest_time),
        m.transaction_id,
    )
}

/// A file row as it travels through the pipeline (without object and checksum).
fn record(m: &file::Model) -> FileRecord {
    FileRecord {
        path: m.path.clone(),
        kind: PathKind::parse(&m.kind).unwrap_or(PathKind::File),
        link_target: m.link_target.clone(),
        size: to_u64(m.size),
        uid: to_u32(m.uid),
        gid: to_u32(m.gid),
        mode: to_u32(m.mode),
        mtime_ns: m.mtime_ns,
        blake3: None,
        object: None,
        holding_id: Some(m.holding_id),
    }
}

/// Does the filter name holdings (rather than everything visible)?
fn has_selector(f: &HoldingFilter) -> bool {
    f.holding_id.is_some() || f.label.is_some() || f.transaction_id.is_some() || !f.tags.is_empty()
}

/// A path without trailing slashes (`/` stays `/`).
fn normalise(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() && p.starts_with('/') {
        "/".to_owned()
    } else {
        t.to_owned()
    }
}

/// The exclusive bounds of the paths strictly under directory `dir`: `(dir/, dir0)` (`0` follows
/// `/` in byte order), so a plain index range scan finds them.
fn prefix_range(dir: &str) -> (String, String) {
    let base = dir.trim_end_matches('/');
    (format!("{base}/"), format!("{base}0"))
}

/// A request's regular expression, compiled with the request limits ([`nlds_core::pattern`]) off
/// the async runtime.
pub(crate) async fn compile(pattern: &str) -> Result<Regex> {
    let p = pattern.to_owned();
    tokio::task::spawn_blocking(move || nlds_core::pattern::compile(&p))
        .await
        .map_err(|e| internal(format!("compiling a regular expression failed: {e}")))?
        .map_err(Error::from)
}

/// Several regular expressions as one set, compiled like [`compile`].
pub(crate) async fn compile_set(patterns: &[String]) -> Result<RegexSet> {
    let p = patterns.to_vec();
    tokio::task::spawn_blocking(move || nlds_core::pattern::compile_set(&p))
        .await
        .map_err(|e| internal(format!("compiling regular expressions failed: {e}")))?
        .map_err(Error::from)
}

fn validate_label(label: &str) -> Result<(), ApiError> {
    if label.trim().is_empty() {
        return Err(ApiError::bad_request("a holding label must not be empty"));
    }
    if label.chars().count() > MAX_LABEL {
        return Err(ApiError::bad_request(format!(
            "a holding label must be at most {MAX_LABEL} characters long"
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "holding label {label:?} contains control characters"
        )));
    }
    Ok(())
}

fn validate_tag(key: &str, value: &str) -> Result<(), ApiError> {
    if key.trim().is_empty() {
        return Err(ApiError::bad_request("a tag key must not be empty"));
    }
    if key.chars().count() > MAX_LABEL || value.chars().count() > MAX_TAG_VALUE {
        return Err(ApiError::bad_request(format!(
            "tag {key:?} is too long (keys up to {MAX_LABEL}, values up to {MAX_TAG_VALUE} characters)"
        )));
    }
    if key.chars().chain(value.chars()).any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "tag {key:?} contains control characters"
        )));
    }
    Ok(())
}

fn page(filter: &HoldingFilter) -> Result<(u64, u64)> {
    let limit = match filter.limit {
        0 => DEFAULT_LIMIT,
        l => l.min(MAX_LIMIT),
    };
    Ok((limit, nlds_core::number::db_count("offset", filter.offset)?))
}

fn order(filter: &HoldingFilter) -> Order {
    if filter.descending {
        Order::Desc
    } else {
        Order::Asc
    }
}

fn dedup<T: Copy + Eq + std::hash::Hash>(items: &[T]) -> Vec<T> {
    let mut seen = HashSet::new();
    items.iter().copied().filter(|i| seen.insert(*i)).collect()
}

fn chunks_of<T>(mut items: Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    while items.len() > CHUNK {
        let rest = items.split_off(CHUNK);
        out.push(std::mem::replace(&mut items, rest));
    }
    if !items.is_empty() {
        out.push(items);
    }
    out
}

fn parse_uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap_or_default()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn payload_kind(p: &Payload) -> &'static str {
    match p {
        Payload::PutRequest { .. } => "put_request",
        Payload::GetRequest { .. } => "get_request",
        Payload::Files { .. } => "files",
        Payload::Failed { .. } => "failed",
        Payload::MonitorInit { .. } => "monitor_init",
        Payload::CheckTransactionId => "check_transaction_id",
        Payload::MonitorUpdate { .. } => "monitor_update",
        Payload::Log { .. } => "log",
        Payload::SetupHolding { .. } => "setup_holding",
        Payload::ListHoldings { .. } => "list_holdings",
        Payload::FindFiles { .. } => "find_files",
        Payload::ChangeMeta { .. } => "change_meta",
        Payload::PlanGet { .. } => "plan_get",
        Payload::Stat { .. } => "stat",
        Payload::SystemStat => "system_stat",
        Payload::ArchiveNext => "archive_next",
        Payload::ArchiveAggregate { .. } => "archive_aggregate",
        Payload::ArchiveStored { .. } => "archive_stored",
        Payload::ArchiveRecall { .. } => "archive_recall",
        Payload::RecallProgress { .. } => "recall_progress",
        Payload::ArchiveRestored { .. } => "archive_restored",
        Payload::Evict { .. } => "evict",
        Payload::Delete { .. } => "delete",
        Payload::Undelete { .. } => "undelete",
        Payload::Purge { .. } => "purge",
        Payload::ArchiveRemove { .. } => "archive_remove",
        Payload::Admin(_) => "admin",
        Payload::Audit(_) => "audit",
        Payload::Reply(_) => "reply",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing;
    use nlds_core::api::ApiAction;
    use sea_orm::{DbBackend, QueryTrait, Statement};

    const ALICE: &str = "alice";
    const BOB: &str = "bob";
    const CAROL: &str = "carol";
    const CLIMATE: &str = "climate";
    const OCEAN: &str = "ocean";

    fn tid(n: u128) -> Uuid {
        Uuid::from_u128(0x6f1c_7a52_2b7e_4c39_9d1e_0000_0000_0000 + n)
    }

    fn env(user: &str, group: &str, t: Uuid, payload: Payload) -> Envelope {
        Envelope::new(t, user, group, ApiAction::Put, "job", payload)
    }

    fn key(w: Worker, a: Action) -> RoutingKey {
        RoutingKey::new(w, a)
    }

    fn file_rec(path: &str, size: u64) -> FileRecord {
        FileRecord {
            path: path.into(),
            kind: PathKind::File,
            link_target: None,
            size,
            uid: 1000,
            gid: 100,
            mode: 0o644,
            mtime_ns: 1_700_000_000_123_456_789,
            blake3: Some(format!("b3:{path}")),
            object: Some(ObjectRef {
                bucket: "nlds".into(),
                key: format!("obj{path}"),
                tenancy: None,
            }),
            holding_id: None,
        }
    }

    fn dir_rec(path: &str) -> FileRecord {
        FileRecord {
            kind: PathKind::Directory,
            size: 0,
            mode: 0o755,
            blake3: None,
            object: None,
            ..file_rec(path, 0)
        }
    }

    fn link_rec(path: &str, target: &str) -> FileRecord {
        FileRecord {
            kind: PathKind::Link,
            link_target: Some(target.into()),
            size: 0,
            blake3: None,
            object: None,
            ..file_rec(path, 0)
        }
    }

    async fn rpc(cat: &Catalogue, action: Action, e: Envelope) -> RpcReply {
        let out = cat.handle(key(Worker::Catalog, action), e).await.unwrap();
        assert!(out.publish.is_empty(), "an RPC publishes nothing");
        match out.reply.expect("an RPC replies").payload {
            Payload::Reply(r) => r,
            other => panic!("not a reply: {other:?}"),
        }
    }

    fn api_error(r: RpcReply) -> ApiError {
        match r {
            RpcReply::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    async fn setup_as(
        cat: &Catalogue,
        user: &str,
        group: &str,
        t: Uuid,
        label: Option<&str>,
        holding_id: Option<i64>,
        tags: &[(&str, &str)],
    ) -> RpcReply {
        let payload = Payload::SetupHolding {
            label: label.map(str::to_owned),
            holding_id,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        rpc(cat, Action::Setup, env(user, group, t, payload)).await
    }

    /// Sets up holding `label` for transaction `t` and returns its id.
    async fn holding(cat: &Catalogue, user: &str, group: &str, t: Uuid, label: &str) -> i64 {
        match setup_as(cat, user, group, t, Some(label), None, &[]).await {
            RpcReply::Holding { id, label: l } => {
                assert_eq!(l, label);
                id
            }
            other => panic!("setup failed: {other:?}"),
        }
    }

    fn files_msg(h: i64, files: Vec<FileRecord>) -> Payload {
        Payload::Files {
            failed: Vec::new(),
            holding_id: Some(h),
            files,
            target: None,
            overwrite: false,
        }
    }

    async fn put(
        cat: &Catalogue,
        user: &str,
        group: &str,
        t: Uuid,
        h: i64,
        files: Vec<FileRecord>,
    ) -> Outcome {
        cat.handle(
            key(Worker::CatalogPut, Action::Start),
            env(user, group, t, files_msg(h, files)),
        )
        .await
        .unwrap()
    }

    /// The messages of an outcome published to `w.a`.
    fn sent(out: &Outcome, w: Worker, a: Action) -> Vec<&Envelope> {
        out.publish
            .iter()
            .filter(|(k, _)| *k == key(w, a))
            .map(|(_, e)| e)
            .collect()
    }

    fn paths_of(e: &Envelope) -> Vec<String> {
        match &e.payload {
            Payload::Files { files, .. } => files.iter().map(|f| f.path.clone()).collect(),
            Payload::Failed { files } => files.iter().map(|f| f.path.clone()).collect(),
            other => panic!("no files in {other:?}"),
        }
    }

    fn failed_of(e: &Envelope) -> Vec<FailedFile> {
        match &e.payload {
            Payload::Failed { files } => files.clone(),
            Payload::Files { failed, .. } => failed.clone(),
            other => panic!("not a failure: {other:?}"),
        }
    }

    /// The failures of a get resolution, wherever they travel (with the first batch, or on
    /// their own `.failed` when nothing was found).
    fn get_failures(out: &Outcome) -> Vec<FailedFile> {
        sent(out, Worker::CatalogGet, Action::Complete)
            .into_iter()
            .chain(sent(out, Worker::CatalogGet, Action::Failed))
            .flat_map(failed_of)
            .collect()
    }

    fn records_of(out: &Outcome, w: Worker) -> Vec<FileRecord> {
        sent(out, w, Action::Complete)
            .into_iter()
            .flat_map(|e| match &e.payload {
                Payload::Files { files, .. } => files.clone(),
                other => panic!("not files: {other:?}"),
            })
            .collect()
    }

    async fn rows<E>(db: &DatabaseConnection, _table: E) -> u64
    where
        E: EntityTrait,
        E::Model: Sync,
    {
        E::find().count(db).await.unwrap()
    }

    fn get_filter() -> HoldingFilter {
        HoldingFilter::default()
    }

    async fn get(
        cat: &Catalogue,
        user: &str,
        group: &str,
        t: Uuid,
        filter: HoldingFilter,
        paths: &[&str],
        regex: bool,
    ) -> Result<Outcome, HandlerError> {
        let payload = Payload::GetRequest {
            filter,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            regex,
            target: Some("/restore".into()),
            overwrite: true,
        };
        cat.handle(
            key(Worker::CatalogGet, Action::Start),
            env(user, group, t, payload),
        )
        .await
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    // -------------------------------------------------------------------------------------
    // Scenarios, each run on SQLite and (with NLDS_TEST_DATABASE_URL) on PostgreSQL.

    async fn setup_rules(db: DatabaseConnection) {
        let cat = Catalogue::new(db.clone(), 1000, 1 << 30);

        // No label: the holding is labelled with the transaction id's first 8 characters, and
        // the same setup again (a retried request) gives the same holding and transaction.
        let t0 = tid(1);
        let first = setup_as(&cat, ALICE, CLIMATE, t0, None, None, &[]).await;
        let RpcReply::Holding { id: h0, label } = first.clone() else {
            panic!("{first:?}")
        };
        assert_eq!(label, t0.to_string()[..8]);
        assert_eq!(
            setup_as(&cat, ALICE, CLIMATE, t0, None, None, &[]).await,
            first
        );
        assert_eq!(rows(&db, transaction::Entity).await, 1);

        // A label: get or create, with tags added only for new keys.
        let h1 = match setup_as(
            &cat,
            ALICE,
            CLIMATE,
            tid(2),
            Some("run42"),
            None,
            &[("a", "1")],
        )
        .await
        {
            RpcReply::Holding { id, .. } => id,
            other => panic!("{other:?}"),
        };
        assert_ne!(h1, h0);
        let again = setup_as(
            &cat,
            ALICE,
            CLIMATE,
            tid(3),
            Some("run42"),
            None,
            &[("a", "2"), ("b", "3")],
        )
        .await;
        assert_eq!(
            again,
            RpcReply::Holding {
                id: h1,
                label: "run42".into()
            }
        );
        let tags = load_tags(&db, &[h1]).await.unwrap().remove(&h1).unwrap();
        assert_eq!(
            tags.get("a").map(String::as_str),
            Some("1"),
            "existing keys keep their value"
        );
        assert_eq!(tags.get("b").map(String::as_str), Some("3"));
        assert_eq!(rows(&db, holding::Entity).await, 2);
        assert_eq!(rows(&db, transaction::Entity).await, 3);

        // By id: it must exist and be the caller's.
        let e = api_error(setup_as(&cat, ALICE, CLIMATE, tid(4), None, Some(h1 + 100), &[]).await);
        assert_eq!(e.code, ErrorCode::NotFound);
        assert_eq!(e.message, format!("holding {} not found", h1 + 100));
        let e = api_error(setup_as(&cat, BOB, CLIMATE, tid(5), None, Some(h1), &[]).await);
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert_eq!(e.message, format!("holding {h1} belongs to another user"));
        // Outside the caller's group: the answer of an id that does not exist.
        let e = api_error(setup_as(&cat, CAROL, OCEAN, tid(5), None, Some(h1), &[]).await);
        assert_eq!(e.code, ErrorCode::NotFound);
        assert_eq!(e.message, format!("holding {h1} not found"));
        assert_eq!(
            setup_as(&cat, ALICE, CLIMATE, tid(6), None, Some(h1), &[]).await,
            RpcReply::Holding {
                id: h1,
                label: "run42".into()
            }
        );

        // The same label in another group is a conflict naming the group.
        let e = api_error(setup_as(&cat, ALICE, OCEAN, tid(7), Some("run42"), None, &[]).await);
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(e.message.contains(CLIMATE), "{}", e.message);
        // Another user may use the same label.
        let hb = holding(&cat, BOB, CLIMATE, tid(8), "run42").await;
        assert_ne!(hb, h1);

        // Labels are validated.
        for bad in ["", "   ", "tab\there", &"x".repeat(257)] {
            let e = api_error(setup_as(&cat, ALICE, CLIMATE, tid(9), Some(bad), None, &[]).await);
            assert_eq!(e.code, ErrorCode::BadRequest, "{bad:?}");
        }
        let ok = "é".repeat(256);
        holding(&cat, ALICE, CLIMATE, tid(10), &ok).await;
        let e =
            api_error(setup_as(&cat, ALICE, CLIMATE, tid(11), Some("t"), None, &[("", "v")]).await);
        assert_eq!(e.code, ErrorCode::BadRequest);

        // A transaction belongs to one holding; the refusal does not say which.
        let e = api_error(setup_as(&cat, ALICE, CLIMATE, tid(2), None, Some(h0), &[]).await);
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(
            e.message.contains("already in use") && !e.message.contains("holding"),
            "{}",
            e.message
        );

        // Concurrent puts to a new label create one holding.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8u128 {
            let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
            tasks.spawn(async move {
                setup_as(
                    &cat,
                    CAROL,
                    OCEAN,
                    tid(100 + i),
                    Some("race"),
                    None,
                    &[("k", "v")],
                )
                .await
            });
        }
        let mut ids = HashSet::new();
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                RpcReply::Holding { id, .. } => ids.insert(id),
                other => panic!("{other:?}"),
            };
        }
        assert_eq!(ids.len(), 1);
        let n = holding::Entity::find()
            .filter(holding::Column::User.eq(CAROL))
            .count(&db)
            .await
            .unwrap();
        assert_eq!(n, 1);
    }

    async fn put_and_check(db: DatabaseConnection) {
        let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
        let (t1, t2) = (tid(1), tid(2));
        let h = holding(&cat, ALICE, CLIMATE, t1, "data").await;
        let batch = vec![
            dir_rec("/d"),
            file_rec("/d/a", 10),
            file_rec("/d/b", 20),
            link_rec("/d/l", "a"),
            file_rec("/d/a", 10), // the same path twice in one message
        ];
        let out = put(&cat, ALICE, CLIMATE, t1, h, batch.clone()).await;
        let complete = sent(&out, Worker::CatalogPut, Action::Complete);
        assert_eq!(complete.len(), 1);
        assert_eq!(paths_of(complete[0]), ["/d", "/d/a", "/d/b", "/d/l"]);
        assert_eq!(complete[0].sub_id, t1);
        assert!(failed_of(sent(&out, Worker::CatalogPut, Action::Complete)[0]).is_empty());
        let counts = |db: DatabaseConnection| async move {
            (
                rows(&db, file::Entity).await,
                rows(&db, location::Entity).await,
                rows(&db, checksum::Entity).await,
            )
        };
        assert_eq!(counts(db.clone()).await, (4, 2, 2));

        // Redelivery: the same answer, no new rows.
        let out = put(&cat, ALICE, CLIMATE, t1, h, batch).await;
        assert_eq!(
            paths_of(sent(&out, Worker::CatalogPut, Action::Complete)[0]),
            ["/d", "/d/a", "/d/b", "/d/l"]
        );
        assert!(failed_of(sent(&out, Worker::CatalogPut, Action::Complete)[0]).is_empty());
        assert!(sent(&out, Worker::TransferDel, Action::Start).is_empty());
        assert_eq!(counts(db.clone()).await, (4, 2, 2));

        // The stored rows.
        let a = file::Entity::find()
            .filter(file::Column::Path.eq("/d/a"))
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.kind.as_str(), a.size, a.mode, a.mtime_ns),
            ("file", 10, 0o644, 1_700_000_000_123_456_789)
        );
        let (locs, sums) = load_copies(&db, &[a.id]).await.unwrap();
        let loc = &locs[&a.id][0];
        assert_eq!(
            (loc.tier.as_str(), loc.bucket.as_str(), loc.key.as_str()),
            ("warm", "nlds", "obj/d/a")
        );
        assert_eq!(sums[&a.id], "b3:/d/a");
        let l = file::Entity::find()
            .filter(file::Column::Path.eq("/d/l"))
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(l.link_target.as_deref(), Some("a"));

        // Check: paths already there from another transaction are dropped.
        setup_as(&cat, ALICE, CLIMATE, t2, None, Some(h), &[]).await;
        let check = |t: Uuid, files: Vec<FileRecord>| {
            cat.handle(
                key(Worker::CatalogCheck, Action::Start),
                env(ALICE, CLIMATE, t, files_msg(h, files)),
            )
        };
        let out = check(t2, vec![file_rec("/d/a", 1), file_rec("/d/c", 1)])
            .await
            .unwrap();
        assert_eq!(
            paths_of(sent(&out, Worker::CatalogCheck, Action::Complete)[0]),
            ["/d/c"]
        );
        let failed = failed_of(sent(&out, Worker::CatalogCheck, Action::Complete)[0]);
        assert_eq!(failed.len(), 1);
        assert_eq!(
            (failed[0].path.as_str(), failed[0].code),
            ("/d/a", ErrorCode::Conflict)
        );
        assert!(
            failed[0].reason.contains(&t1.to_string()),
            "{}",
            failed[0].reason
        );
        // ... but not those of the same transaction (a redelivery after the put).
        let out = check(t1, vec![file_rec("/d/a", 1)]).await.unwrap();
        assert_eq!(
            paths_of(sent(&out, Worker::CatalogCheck, Action::Complete)[0]),
            ["/d/a"]
        );
        assert!(failed_of(sent(&out, Worker::CatalogCheck, Action::Complete)[0]).is_empty());
        // Everything dropped still completes (empty), so the batch can finish.
        let out = check(t2, vec![file_rec("/d/b", 1)]).await.unwrap();
        assert!(paths_of(sent(&out, Worker::CatalogCheck, Action::Complete)[0]).is_empty());

        // Put: a path from another transaction fails and its new object is deleted again,
        // unless it is the catalogued object itself; a file without an object fails.
        let mut same_object = file_rec("/d/b", 20);
        same_object.object = Some(ObjectRef {
            bucket: "nlds".into(),
            key: "obj/d/b".into(),
            tenancy: None,
        });
        let mut no_object = file_rec("/d/e", 5);
        no_object.object = None;
        let mut other_object = file_rec("/d/a", 11);
        other_object.object = Some(ObjectRef {
            bucket: "nlds".into(),
            key: "t2/d/a".into(),
            tenancy: None,
        });
        let out = put(
            &cat,
            ALICE,
            CLIMATE,
            t2,
            h,
            vec![other_object, file_rec("/d/c", 30), same_object, no_object],
        )
        .await;
        assert_eq!(
            paths_of(sent(&out, Worker::CatalogPut, Action::Complete)[0]),
            ["/d/c"]
        );
        let failed = failed_of(sent(&out, Worker::CatalogPut, Action::Complete)[0]);
        let codes: Vec<(&str, ErrorCode)> =
            failed.iter().map(|f| (f.path.as_str(), f.code)).collect();
        assert_eq!(
            codes,
            [
                ("/d/a", ErrorCode::Conflict),
                ("/d/b", ErrorCode::Conflict),
                ("/d/e", ErrorCode::StorageError)
            ]
        );
        let del = sent(&out, Worker::TransferDel, Action::Start);
        assert_eq!(del.len(), 1);
        match &del[0].payload {
            Payload::Files { files, .. } => {
                assert_eq!(files.len(), 1);
                assert_eq!(files[0].object.as_ref().unwrap().key, "t2/d/a");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(counts(db.clone()).await, (5, 3, 3));
        let a_again = file::Entity::find_by_id(a.id)
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a_again, a, "the catalogued file is untouched");

        // Work errors are permanent handler errors.
        let err = cat
            .handle(
                key(Worker::CatalogPut, Action::Start),
                env(
                    ALICE,
                    CLIMATE,
                    t1,
                    Payload::Files {
                        failed: Vec::new(),
                        holding_id: None,
                        files: vec![],
                        target: None,
                        overwrite: false,
                    },
                ),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(!err.retryable);
    }

    /// alice: "one" (t1) and, later, "two" (t2) in climate; bob: "bobs" in climate; carol:
    /// "carols" in ocean.
    async fn get_world(cat: &Catalogue) -> (i64, i64, i64, i64) {
        let h1 = holding(cat, ALICE, CLIMATE, tid(1), "one").await;
        put(
            cat,
            ALICE,
            CLIMATE,
            tid(1),
            h1,
            vec![
                dir_rec("/data/dir"),
                file_rec("/data/dir/a.nc", 100),
                file_rec("/data/dir/sub/b.nc", 200),
                file_rec("/data/dirx/c.nc", 300),
                file_rec("/data/dir.nc", 1),
                file_rec("/data/x.txt", 1),
                link_rec("/data/link", "x.txt"),
            ],
        )
        .await;
        let h2 = holding(cat, ALICE, CLIMATE, tid(2), "two").await;
        let mut newer = file_rec("/data/x.txt", 2);
        newer.object = Some(ObjectRef {
            bucket: "nlds".into(),
            key: "two/x.txt".into(),
            tenancy: None,
        });
        put(
            cat,
            ALICE,
            CLIMATE,
            tid(2),
            h2,
            vec![newer, file_rec("/data/dir/a.nc", 101)],
        )
        .await;
        let hb = holding(cat, BOB, CLIMATE, tid(3), "bobs").await;
        put(
            cat,
            BOB,
            CLIMATE,
            tid(3),
            hb,
            vec![file_rec("/data/bob.nc", 7)],
        )
        .await;
        let hc = holding(cat, CAROL, OCEAN, tid(4), "carols").await;
        put(
            cat,
            CAROL,
            OCEAN,
            tid(4),
            hc,
            vec![file_rec("/data/carol.nc", 9)],
        )
        .await;
        (h1, h2, hb, hc)
    }

    async fn get_resolution(db: DatabaseConnection) {
        let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
        let (h1, h2, hb, _hc) = get_world(&cat).await;
        let g = tid(50);

        // Exact path: the newest ingest wins; with a holding named, that holding's copy.
        let out = get(
            &cat,
            ALICE,
            CLIMATE,
            g,
            get_filter(),
            &["/data/x.txt"],
            false,
        )
        .await
        .unwrap();
        let recs = records_of(&out, Worker::CatalogGet);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].holding_id, Some(h2));
        assert_eq!(recs[0].size, 2);
        assert_eq!(recs[0].object.as_ref().unwrap().key, "two/x.txt");
        assert_eq!(recs[0].blake3.as_deref(), Some("b3:/data/x.txt"));
        assert_eq!(recs[0].mtime_ns, 1_700_000_000_123_456_789);
        let named = HoldingFilter {
            holding_id: Some(h1),
            ..get_filter()
        };
        let out = get(&cat, ALICE, CLIMATE, g, named, &["/data/x.txt"], false)
            .await
            .unwrap();
        let recs = records_of(&out, Worker::CatalogGet);
        assert_eq!((recs[0].holding_id, recs[0].size), (Some(h1), 1));
        let by_label = HoldingFilter {
            label: Some("one".into()),
            ..get_filter()
        };
        let out = get(
            &cat,
            ALICE,
            CLIMATE,
            g,
            by_label,
            &["/data/dir/a.nc"],
            false,
        )
        .await
        .unwrap();
        assert_eq!(records_of(&out, Worker::CatalogGet)[0].size, 100);

        // A directory: itself and everything under it (not /data/dirx or /data/dir.nc), the
        // newest copy of each; a trailing slash changes nothing.
        for p in ["/data/dir", "/data/dir/"] {
            let out = get(&cat, ALICE, CLIMATE, g, get_filter(), &[p], false)
                .await
                .unwrap();
            let recs = records_of(&out, Worker::CatalogGet);
            let got: Vec<(String, u64)> = recs.iter().map(|r| (r.path.clone(), r.size)).collect();
            assert_eq!(
                got,
                [
                    ("/data/dir".to_owned(), 0),
                    ("/data/dir/a.nc".to_owned(), 101),
                    ("/data/dir/sub/b.nc".to_owned(), 200)
                ]
            );
            assert!(recs[0].object.is_none(), "directories have no object");
            assert!(get_failures(&out).is_empty());
        }
        // A prefix that is not a catalogued directory still selects what is under it.
        let out = get(
            &cat,
            ALICE,
            CLIMATE,
            g,
            get_filter(),
            &["/data/dir/sub"],
            false,
        )
        .await
        .unwrap();
        assert_eq!(
            sorted(
                records_of(&out, Worker::CatalogGet)
                    .iter()
                    .map(|r| r.path.clone())
                    .collect()
            ),
            ["/data/dir/sub/b.nc"]
        );
        // Links travel without an object.
        let out = get(
            &cat,
            ALICE,
            CLIMATE,
            g,
            get_filter(),
            &["/data/link"],
            false,
        )
        .await
        .unwrap();
        let recs = records_of(&out, Worker::CatalogGet);
        assert_eq!(
            (recs[0].kind, recs[0].link_target.as_deref()),
            (PathKind::Link, Some("x.txt"))
        );
        assert!(recs[0].object.is_none());

        // Regex: only with a holding selector, matched in the selected holdings only.
        let err = get(&cat, ALICE, CLIMATE, g, get_filter(), &[r"\.nc$"], true)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        let one = HoldingFilter {
            label: Some("one".into()),
            ..get_filter()
        };
        let out = get(
            &cat,
            ALICE,
            CLIMATE,
            g,
            one.clone(),
            &[r"\.nc$", "^/nothing"],
            true,
        )
        .await
        .unwrap();
        let recs = records_of(&out, Worker::CatalogGet);
        assert_eq!(
            recs.iter()
                .map(|r| (r.path.as_str(), r.holding_id))
                .collect::<Vec<_>>(),
            [
                ("/data/dir.nc", Some(h1)),
                ("/data/dir/a.nc", Some(h1)),
                ("/data/dir/sub/b.nc", Some(h1)),
                ("/data/dirx/c.nc", Some(h1))
            ]
        );
        let failed = get_failures(&out);
        assert_eq!(failed.len(), 1);
        assert_eq!(
            (failed[0].path.as_str(), failed[0].code),
            ("^/nothing", ErrorCode::NotFound)
        );
        let err = get(&cat, ALICE, CLIMATE, g, one, &["(unclosed"], true)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        // A label regex selects holdings.
        let re_label = HoldingFilter {
            label: Some("^t.o$".into()),
            label_regex: true,
            ..get_filter()
        };
        let out = get(&cat, ALICE, CLIMATE, g, re_label, &["."], true)
            .await
            .unwrap();
        assert_eq!(
            records_of(&out, Worker::CatalogGet)
                .iter()
                .map(|r| r.holding_id)
                .collect::<Vec<_>>(),
            [Some(h2), Some(h2)]
        );

        // Unknown paths: one failed message naming them.
        let out = get(
            &cat,
            ALICE,
            CLIMATE,
            g,
            get_filter(),
            &["/data/x.txt", "/nope", "/data/bob.nc"],
            false,
        )
        .await
        .unwrap();
        assert_eq!(records_of(&out, Worker::CatalogGet).len(), 1);
        assert!(
            sent(&out, Worker::CatalogGet, Action::Failed).is_empty(),
            "with a batch, the failures travel in it"
        );
        let failed = get_failures(&out);
        assert_eq!(failed.len(), 2);
        for (f, p) in failed.iter().zip(["/nope", "/data/bob.nc"]) {
            assert_eq!((f.path.as_str(), f.code), (p, ErrorCode::NotFound));
            assert!(
                f.reason.contains(p) && f.reason.contains("none of alice's holdings"),
                "{}",
                f.reason
            );
        }
        // The group's holdings with groupall only; never another group's.
        let groupall = HoldingFilter {
            groupall: true,
            ..get_filter()
        };
        let out = get(
            &cat,
            ALICE,
            CLIMATE,
            g,
            groupall,
            &["/data/bob.nc", "/data/carol.nc"],
            false,
        )
        .await
        .unwrap();
        let recs = records_of(&out, Worker::CatalogGet);
        assert_eq!((recs.len(), recs[0].holding_id), (1, Some(hb)));
        let failed = get_failures(&out);
        assert_eq!(failed[0].path, "/data/carol.nc");

        // A file without a warm copy fails with storage_error.
        let b = file::Entity::find()
            .filter(file::Column::Path.eq("/data/dir/sub/b.nc"))
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        location::Entity::delete_many()
            .filter(location::Column::FileId.eq(b.id))
            .exec(&db)
            .await
            .unwrap();
        let out = get(
            &cat,
            ALICE,
            CLIMATE,
            g,
            get_filter(),
            &["/data/dir/sub/b.nc", "/data/x.txt"],
            false,
        )
        .await
        .unwrap();
        assert_eq!(records_of(&out, Worker::CatalogGet).len(), 1);
        let failed = get_failures(&out);
        assert_eq!(
            (failed[0].path.as_str(), failed[0].code),
            ("/data/dir/sub/b.nc", ErrorCode::StorageError)
        );
        assert!(
            failed[0].reason.contains("no stored copy"),
            "{}",
            failed[0].reason
        );
    }

    async fn get_batches(db: DatabaseConnection) {
        let cat = Catalogue::new(db.clone(), 2, 250);
        let (h1, _, _, _) = get_world(&cat).await;
        let g = tid(60);
        let one = HoldingFilter {
            holding_id: Some(h1),
            ..get_filter()
        };
        // dir (0) + a.nc (100) | sub/b.nc (200) | dirx/c.nc (300, alone: larger than a batch)
        let out = get(
            &cat,
            ALICE,
            CLIMATE,
            g,
            one,
            &["/data/dir", "/data/dirx"],
            false,
        )
        .await
        .unwrap();
        let batches = sent(&out, Worker::CatalogGet, Action::Complete);
        let got: Vec<(Uuid, Vec<String>)> =
            batches.iter().map(|e| (e.sub_id, paths_of(e))).collect();
        assert_eq!(
            got,
            [
                (
                    sub_id(g, "get", 0),
                    vec!["/data/dir".to_owned(), "/data/dir/a.nc".to_owned()]
                ),
                (sub_id(g, "get", 1), vec!["/data/dir/sub/b.nc".to_owned()]),
                (sub_id(g, "get", 2), vec!["/data/dirx/c.nc".to_owned()]),
            ]
        );
        for b in &batches {
            match &b.payload {
                Payload::Files {
                    holding_id,
                    target,
                    overwrite,
                    ..
                } => {
                    assert_eq!(*holding_id, Some(h1));
                    assert_eq!(target.as_deref(), Some("/restore"));
                    assert!(*overwrite);
                }
                other => panic!("{other:?}"),
            }
        }
        let split = sent(&out, Worker::MonitorPut, Action::Start);
        assert_eq!(split.len(), 1);
        assert_eq!(split[0].sub_id, g);
        assert_eq!(
            split[0].payload,
            Payload::MonitorUpdate {
                state: State::Split,
                files: 4,
                bytes: 600,
                failed: vec![],
                warnings: vec![]
            }
        );
        // Nothing found: no batches, one failure, and the SPLIT that ends the parent.
        let out = get(&cat, ALICE, CLIMATE, g, get_filter(), &["/nope"], false)
            .await
            .unwrap();
        assert!(sent(&out, Worker::CatalogGet, Action::Complete).is_empty());
        assert_eq!(sent(&out, Worker::CatalogGet, Action::Failed).len(), 1);
        assert_eq!(sent(&out, Worker::MonitorPut, Action::Start).len(), 1);
    }

    async fn list_find_meta(db: DatabaseConnection) {
        let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
        let (h1, h2, hb, hc) = get_world(&cat).await;
        let e = |user: &str, group: &str, p: Payload| env(user, group, tid(70), p);
        let list = |f: HoldingFilter| e(ALICE, CLIMATE, Payload::ListHoldings { filter: f });
        setup_as(
            &cat,
            ALICE,
            CLIMATE,
            tid(5),
            None,
            Some(h1),
            &[("project", "cmip")],
        )
        .await;

        // list: paging, order, totals and summaries.
        let page = match rpc(&cat, Action::List, list(get_filter())).await {
            RpcReply::Holdings(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!((page.total, page.limit, page.offset), (2, DEFAULT_LIMIT, 0));
        let s1 = &page.holdings[0];
        assert_eq!(
            (
                s1.id,
                s1.label.as_str(),
                s1.user.as_str(),
                s1.group.as_str()
            ),
            (h1, "one", ALICE, CLIMATE)
        );
        assert_eq!((s1.files, s1.bytes), (7, 602));
        assert_eq!(s1.transactions, [tid(1), tid(5)]);
        assert_eq!(s1.tags.get("project").map(String::as_str), Some("cmip"));
        assert_eq!(
            (
                page.holdings[1].id,
                page.holdings[1].files,
                page.holdings[1].bytes
            ),
            (h2, 2, 103)
        );
        let desc = HoldingFilter {
            groupall: true,
            descending: true,
            limit: 2,
            ..get_filter()
        };
        let RpcReply::Holdings(page) = rpc(&cat, Action::List, list(desc.clone())).await else {
            panic!()
        };
        assert_eq!(page.total, 3, "groupall adds bob's holding, never carol's");
        assert_eq!(
            page.holdings.iter().map(|h| h.id).collect::<Vec<_>>(),
            [hb, h2]
        );
        let RpcReply::Holdings(page) = rpc(
            &cat,
            Action::List,
            list(HoldingFilter { offset: 2, ..desc }),
        )
        .await
        else {
            panic!()
        };
        assert_eq!((page.total, page.offset), (3, 2));
        assert_eq!(page.holdings.iter().map(|h| h.id).collect::<Vec<_>>(), [h1]);
        for (filter, want) in [
            (
                HoldingFilter {
                    tags: [("project".to_owned(), "cmip".to_owned())].into(),
                    ..get_filter()
                },
                vec![h1],
            ),
            (
                HoldingFilter {
                    tags: [("project".to_owned(), "other".to_owned())].into(),
                    ..get_filter()
                },
                vec![],
            ),
            (
                HoldingFilter {
                    transaction_id: Some(tid(2)),
                    ..get_filter()
                },
                vec![h2],
            ),
            (
                HoldingFilter {
                    label: Some("o".into()),
                    label_regex: true,
                    ..get_filter()
                },
                vec![h1, h2],
            ),
            (
                HoldingFilter {
                    label: Some("bobs".into()),
                    ..get_filter()
                },
                vec![],
            ),
            (
                HoldingFilter {
                    holding_id: Some(hc),
                    groupall: true,
                    ..get_filter()
                },
                vec![],
            ),
        ] {
            let RpcReply::Holdings(page) = rpc(&cat, Action::List, list(filter.clone())).await
            else {
                panic!()
            };
            assert_eq!(
                page.holdings.iter().map(|h| h.id).collect::<Vec<_>>(),
                want,
                "{filter:?}"
            );
            assert_eq!(page.total, want.len() as u64);
        }

        // find: an exact path, everything (paged), a regex.
        let find = |filter: HoldingFilter, path: Option<&str>, path_regex: bool| {
            e(
                ALICE,
                CLIMATE,
                Payload::FindFiles {
                    filter,
                    path: path.map(str::to_owned),
                    path_regex,
                },
            )
        };
        let RpcReply::Files(page) = rpc(
            &cat,
            Action::Find,
            find(get_filter(), Some("/data/dir/a.nc"), false),
        )
        .await
        else {
            panic!()
        };
        assert_eq!(page.total, 2);
        let f = &page.files[0];
        assert_eq!(
            (f.holding_id, f.label.as_str(), f.size, f.transaction_id),
            (h1, "one", 100, tid(1))
        );
        assert_eq!(
            (f.kind, f.uid, f.gid, f.mode),
            (PathKind::File, 1000, 100, 0o644)
        );
        assert_eq!(
            f.mtime,
            DateTime::from_timestamp_nanos(1_700_000_000_123_456_789)
        );
        assert_eq!(f.blake3.as_deref(), Some("b3:/data/dir/a.nc"));
        assert_eq!(
            f.locations,
            [FileLocation {
                tier: Tier::Warm,
                bucket: "nlds".into(),
                key: "obj/data/dir/a.nc".into()
            }]
        );
        assert_eq!((page.files[1].holding_id, page.files[1].size), (h2, 101));
        assert!(page.files[0].ingest_time <= page.files[1].ingest_time);
        let paged = HoldingFilter {
            limit: 3,
            offset: 3,
            descending: true,
            ..get_filter()
        };
        let RpcReply::Files(page) = rpc(&cat, Action::Find, find(paged, None, false)).await else {
            panic!()
        };
        assert_eq!(
            (page.total, page.limit, page.offset, page.files.len()),
            (9, 3, 3, 3)
        );
        // Newest first: t2's two files, then t1's seven by descending id.
        assert!(page.files.iter().all(|f| f.holding_id == h1));
        let RpcReply::Files(page) = rpc(
            &cat,
            Action::Find,
            find(
                HoldingFilter {
                    limit: 2,
                    offset: 1,
                    ..get_filter()
                },
                Some(r"/dir/.*\.nc$"),
                true,
            ),
        )
        .await
        else {
            panic!()
        };
        assert_eq!(page.total, 3);
        assert_eq!(
            page.files
                .iter()
                .map(|f| (f.path.as_str(), f.holding_id))
                .collect::<Vec<_>>(),
            [("/data/dir/sub/b.nc", h1), ("/data/dir/a.nc", h2)]
        );
        let err = api_error(rpc(&cat, Action::Find, find(get_filter(), Some("("), true)).await);
        assert_eq!(err.code, ErrorCode::BadRequest);

        // meta: selectors, relabel, tags, ownership.
        let meta = |user: &str,
                    filter: HoldingFilter,
                    new_label: Option<&str>,
                    new: &[(&str, &str)],
                    del: &[(&str, &str)]| {
            let tags = |t: &[(&str, &str)]| -> Tags {
                t.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            };
            e(
                user,
                CLIMATE,
                Payload::ChangeMeta {
                    filter,
                    new_label: new_label.map(str::to_owned),
                    new_tags: tags(new),
                    del_tags: tags(del),
                    dry_run: false,
                },
            )
        };
        let err = api_error(
            rpc(
                &cat,
                Action::Meta,
                meta(ALICE, get_filter(), Some("x"), &[], &[]),
            )
            .await,
        );
        assert_eq!(
            (err.code, err.message.as_str()),
            (ErrorCode::BadRequest, "give a holding id, label or tags")
        );
        let by_id = |id| HoldingFilter {
            holding_id: Some(id),
            ..get_filter()
        };
        let err = api_error(
            rpc(
                &cat,
                Action::Meta,
                meta(ALICE, by_id(h1), Some("two"), &[], &[]),
            )
            .await,
        );
        assert_eq!(err.code, ErrorCode::Conflict);
        assert!(err.message.contains(&h2.to_string()), "{}", err.message);
        let err = api_error(
            rpc(
                &cat,
                Action::Meta,
                meta(
                    ALICE,
                    HoldingFilter {
                        groupall: true,
                        ..by_id(hb)
                    },
                    Some("mine"),
                    &[],
                    &[],
                ),
            )
            .await,
        );
        assert_eq!(err.code, ErrorCode::Forbidden);
        let err = api_error(
            rpc(
                &cat,
                Action::Meta,
                meta(
                    ALICE,
                    HoldingFilter {
                        label: Some("nope".into()),
                        ..get_filter()
                    },
                    None,
                    &[("a", "b")],
                    &[],
                ),
            )
            .await,
        );
        assert_eq!(err.code, ErrorCode::NotFound);
        let err = api_error(
            rpc(
                &cat,
                Action::Meta,
                meta(
                    ALICE,
                    HoldingFilter {
                        label: Some("o".into()),
                        label_regex: true,
                        ..get_filter()
                    },
                    Some("both"),
                    &[],
                    &[],
                ),
            )
            .await,
        );
        assert_eq!(err.code, ErrorCode::BadRequest);

        setup_as(
            &cat,
            ALICE,
            CLIMATE,
            tid(6),
            None,
            Some(h1),
            &[("keep", "1"), ("drop", "x"), ("any", "y")],
        )
        .await;
        let reply = rpc(
            &cat,
            Action::Meta,
            meta(
                ALICE,
                by_id(h1),
                Some("uno"),
                &[("project", "cmip7"), ("new", "n")],
                &[("drop", "x"), ("keep", "2"), ("any", "")],
            ),
        )
        .await;
        let RpcReply::Meta(m) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(m.holdings.len(), 1);
        let c = &m.holdings[0];
        assert_eq!(
            (
                c.id,
                c.user.as_str(),
                c.old.label.as_str(),
                c.new.label.as_str()
            ),
            (h1, ALICE, "one", "uno")
        );
        let keys = |t: &Tags| {
            t.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(&c.old.tags),
            ["any=y", "drop=x", "keep=1", "project=cmip"]
        );
        assert_eq!(keys(&c.new.tags), ["keep=1", "new=n", "project=cmip7"]);
        let stored = holding::Entity::find_by_id(h1)
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.label, "uno");
        assert_eq!(
            keys(&load_tags(&db, &[h1]).await.unwrap()[&h1]),
            ["keep=1", "new=n", "project=cmip7"]
        );
        // Select by tags, several holdings at once.
        setup_as(
            &cat,
            ALICE,
            CLIMATE,
            tid(7),
            None,
            Some(h2),
            &[("new", "n")],
        )
        .await;
        let RpcReply::Meta(m) = rpc(
            &cat,
            Action::Meta,
            meta(
                ALICE,
                HoldingFilter {
                    tags: [("new".to_owned(), "n".to_owned())].into(),
                    ..get_filter()
                },
                None,
                &[("shared", "s")],
                &[],
            ),
        )
        .await
        else {
            panic!()
        };
        assert_eq!(
            m.holdings.iter().map(|c| c.id).collect::<Vec<_>>(),
            [h1, h2]
        );
        assert!(
            m.holdings
                .iter()
                .all(|c| c.new.tags.get("shared").map(String::as_str) == Some("s"))
        );
    }

    async fn run_all(db: impl AsyncFn() -> DatabaseConnection) {
        setup_rules(db().await).await;
        put_and_check(db().await).await;
        get_resolution(db().await).await;
        get_batches(db().await).await;
        list_find_meta(db().await).await;
    }

    #[tokio::test]
    async fn setup_rules_sqlite() {
        setup_rules(testing::memory().await).await;
    }

    #[tokio::test]
    async fn put_is_idempotent_and_check_drops_existing_sqlite() {
        put_and_check(testing::memory().await).await;
    }

    #[tokio::test]
    async fn get_resolution_sqlite() {
        get_resolution(testing::memory().await).await;
    }

    #[tokio::test]
    async fn get_batches_sqlite() {
        get_batches(testing::memory().await).await;
    }

    #[tokio::test]
    async fn list_find_meta_sqlite() {
        list_find_meta(testing::memory().await).await;
    }

    /// `catalog.meta` by role: a USER changes only their own holdings, a MANAGER (or DEPUTY)
    /// any of their group's but not another group's, an ADMIN any; a refusal in the group names
    /// the holding, its owner and the reason, another group's holding is not found (as a missing
    /// one), and nothing changes.
    #[tokio::test]
    async fn meta_changes_follow_the_callers_role() {
        use nlds_core::AccessRole;
        let cat = Catalogue::new(testing::memory().await, 1000, 1 << 30);
        let ha = holding(&cat, ALICE, CLIMATE, tid(1), "alice-run").await;
        let hb = holding(&cat, BOB, CLIMATE, tid(2), "bob-run").await;
        let hc = holding(&cat, CAROL, OCEAN, tid(3), "carol-run").await;
        let change = |user: &str, role: AccessRole, id: i64, tag: &str| {
            env(
                user,
                CLIMATE,
                tid(9),
                Payload::ChangeMeta {
                    filter: HoldingFilter {
                        holding_id: Some(id),
                        ..get_filter()
                    },
                    new_label: None,
                    new_tags: [("by".to_owned(), tag.to_owned())].into(),
                    del_tags: Tags::new(),
                    dry_run: false,
                },
            )
            .with_role(role)
        };
        let tags_of = async |id: i64| {
            let m = tag::Entity::find()
                .filter(tag::Column::HoldingId.eq(id))
                .all(&cat.db)
                .await
                .unwrap();
            m.into_iter()
                .map(|t| format!("{}={}", t.key, t.value))
                .collect::<Vec<_>>()
        };

        // A USER: not bob's holding in the same group, whatever the reply lets them see.
        let err = api_error(
            rpc(
                &cat,
                Action::Meta,
                change(ALICE, AccessRole::User, hb, "alice"),
            )
            .await,
        );
        assert_eq!(err.code, ErrorCode::Forbidden, "{}", err.message);
        assert!(
            err.message
                .contains(&format!("holding {hb} (\"bob-run\") belongs to bob"))
                && err.message.contains("may change only their own holdings"),
            "{}",
            err.message
        );
        assert!(tags_of(hb).await.is_empty(), "nothing changed");
        // ... but their own.
        let ok = rpc(
            &cat,
            Action::Meta,
            change(ALICE, AccessRole::User, ha, "alice"),
        )
        .await;
        assert!(matches!(ok, RpcReply::Meta(_)), "{ok:?}");
        assert_eq!(tags_of(ha).await, ["by=alice"]);

        // A MANAGER (and a DEPUTY) of climate: bob's holding, not carol's in ocean.
        for (role, tag) in [
            (AccessRole::Manager, "manager"),
            (AccessRole::Deputy, "deputy"),
        ] {
            let ok = rpc(&cat, Action::Meta, change(ALICE, role, hb, tag)).await;
            let RpcReply::Meta(m) = ok else {
                panic!("{role}: {ok:?}")
            };
            assert_eq!((m.holdings[0].id, m.holdings[0].user.as_str()), (hb, BOB));
            assert_eq!(tags_of(hb).await, [format!("by={tag}")]);
        }
        let err = api_error(
            rpc(
                &cat,
                Action::Meta,
                change(ALICE, AccessRole::Manager, hc, "x"),
            )
            .await,
        );
        // Another group's holding is outside alice's scope: not found, exactly like an id that
        // does not exist, naming nothing of it (label, owner, group).
        let missing = api_error(
            rpc(
                &cat,
                Action::Meta,
                change(ALICE, AccessRole::Manager, hc + 1000, "x"),
            )
            .await,
        );
        assert_eq!(err.code, ErrorCode::NotFound, "{err:?}");
        assert_eq!(
            err, missing,
            "another group's holding answers as a missing one"
        );
        for secret in ["carol-run", CAROL, OCEAN] {
            assert!(!err.message.contains(secret), "{}", err.message);
        }
        for role in [AccessRole::User, AccessRole::Deputy] {
            let e = api_error(rpc(&cat, Action::Meta, change(ALICE, role, hc, "x")).await);
            assert_eq!(e, missing, "{role}");
        }
        assert!(
            tags_of(hc).await.is_empty(),
            "another group's holding is untouched"
        );
        // A manager renaming bob's holding: the label is unique among bob's holdings.
        let relabel = env(
            ALICE,
            CLIMATE,
            tid(9),
            Payload::ChangeMeta {
                filter: HoldingFilter {
                    holding_id: Some(hb),
                    ..get_filter()
                },
                new_label: Some("alice-run".into()),
                new_tags: Tags::new(),
                del_tags: Tags::new(),
                dry_run: false,
            },
        )
        .with_role(AccessRole::Manager);
        let ok = rpc(&cat, Action::Meta, relabel).await;
        assert!(
            matches!(ok, RpcReply::Meta(_)),
            "alice's own label does not clash: {ok:?}"
        );

        // An ADMIN: any group's holding.
        let ok = rpc(
            &cat,
            Action::Meta,
            change(ALICE, AccessRole::Admin, hc, "admin"),
        )
        .await;
        assert!(matches!(ok, RpcReply::Meta(_)), "{ok:?}");
        assert_eq!(tags_of(hc).await, ["by=admin"]);
    }

    /// The same scenarios on PostgreSQL (`NLDS_TEST_DATABASE_URL`; required under `CI`), each
    /// in a fresh database.
    #[tokio::test]
    async fn catalogue_postgres() {
        let mut dbs = Vec::new();
        for i in 0..5 {
            match testing::postgres(&format!("catalogue{i}")).await {
                Some(pg) => dbs.push(pg),
                None => return,
            }
        }
        let conns: Vec<DatabaseConnection> = dbs.iter().map(|p| p.db.clone()).collect();
        let next = std::sync::Mutex::new(conns.into_iter());
        run_all(async || next.lock().unwrap().next().unwrap()).await;
        for pg in dbs {
            pg.drop_now().await;
        }
    }

    #[tokio::test]
    async fn plan_lists_what_a_get_restores_and_meta_dry_run_changes_nothing() {
        let db = testing::memory().await;
        let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
        let (h1, h2, _, _) = get_world(&cat).await;
        let plan = Payload::PlanGet {
            filter: get_filter(),
            paths: vec!["/data/dir".into(), "/data/x.txt".into(), "/nowhere".into()],
            regex: false,
        };
        let RpcReply::Plan { files, missing } =
            rpc(&cat, Action::Plan, env(ALICE, CLIMATE, tid(9), plan)).await
        else {
            panic!("not a plan")
        };
        let got: Vec<(&str, i64, u64)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.holding_id, f.size))
            .collect();
        // The newest copy of each path wins, as in a real get; nothing is published.
        assert!(got.contains(&("/data/x.txt", h2, 2)), "{got:?}");
        assert!(got.contains(&("/data/dir/a.nc", h2, 101)), "{got:?}");
        assert!(got.contains(&("/data/dir/sub/b.nc", h1, 200)), "{got:?}");
        assert!(
            !got.iter().any(|(p, _, _)| p.starts_with("/data/dirx")),
            "{got:?}"
        );
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].path, "/nowhere");
        assert_eq!(missing[0].code, ErrorCode::NotFound);

        let change = |dry_run| Payload::ChangeMeta {
            filter: HoldingFilter {
                holding_id: Some(h1),
                ..get_filter()
            },
            new_label: Some("renamed".into()),
            new_tags: [("k".to_string(), "v".to_string())].into(),
            del_tags: Tags::new(),
            dry_run,
        };
        let RpcReply::Meta(m) = rpc(
            &cat,
            Action::Meta,
            env(ALICE, CLIMATE, tid(9), change(true)),
        )
        .await
        else {
            panic!("not a meta reply")
        };
        assert!(m.dry_run);
        assert_eq!(m.holdings[0].new.label, "renamed");
        assert_eq!(
            m.holdings[0].new.tags.get("k").map(String::as_str),
            Some("v")
        );
        let stored = holding::Entity::find_by_id(h1)
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.label, "one", "a dry run must not rename");
        assert!(
            load_tags(&db, &[h1])
                .await
                .unwrap()
                .get(&h1)
                .is_none_or(|t| t.is_empty())
        );
        let RpcReply::Meta(m) = rpc(
            &cat,
            Action::Meta,
            env(ALICE, CLIMATE, tid(9), change(false)),
        )
        .await
        else {
            panic!("not a meta reply")
        };
        assert!(!m.dry_run);
        let stored = holding::Entity::find_by_id(h1)
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.label, "renamed");
    }

    #[tokio::test]
    async fn exact_and_prefix_lookups_use_the_path_index() {
        let db = testing::memory().await;
        let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
        get_world(&cat).await;
        let e = env(
            ALICE,
            CLIMATE,
            tid(80),
            Payload::Stat {
                filter: Default::default(),
            },
        );
        let scope = cat.scope(&e, &get_filter(), false).await.unwrap();
        let plan = |q: sea_orm::Select<file::Entity>| {
            let db = db.clone();
            async move {
                let stmt = q.build(DbBackend::Sqlite);
                let explain = Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    format!("EXPLAIN QUERY PLAN {}", stmt.sql),
                    stmt.values.unwrap_or(sea_orm::Values(Vec::new())),
                );
                db.query_all_raw(explain)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.try_get::<String>("", "detail").unwrap())
                    .collect::<Vec<_>>()
            }
        };
        let exact = plan(
            find_query(scope.clone(), Order::Asc).filter(file::Column::Path.eq("/data/x.txt")),
        )
        .await;
        assert!(
            exact
                .iter()
                .any(|d| d.starts_with("SEARCH file USING INDEX") && d.contains("path=?")),
            "{exact:?}"
        );
        let (lo, hi) = prefix_range("/data/dir");
        let range = plan(
            scoped_files(&scope)
                .filter(file::Column::Path.gt(lo))
                .filter(file::Column::Path.lt(hi)),
        )
        .await;
        assert!(
            range.iter().any(
                |d| d.starts_with("SEARCH file USING INDEX") && d.contains("path>? AND path<?")
            ),
            "{range:?}"
        );
    }

    #[test]
    fn prefix_ranges_and_paths() {
        assert_eq!(
            prefix_range("/a/b"),
            ("/a/b/".to_owned(), "/a/b0".to_owned())
        );
        assert_eq!(prefix_range("/"), ("/".to_owned(), "0".to_owned()));
        assert_eq!(normalise("/a/b//"), "/a/b");
        assert_eq!(normalise("/"), "/");
        // Byte order puts every "/a/b/..." between the bounds and "/a/b.c", "/a/bc" outside.
        let (lo, hi) = prefix_range("/a/b");
        for inside in ["/a/b/c", "/a/b//", "/a/b/\u{10ffff}"] {
            assert!(lo.as_str() < inside && inside < hi.as_str(), "{inside}");
        }
        for outside in ["/a/b", "/a/b.c", "/a/bc", "/a/b0", "/a/b-"] {
            assert!(
                !(lo.as_str() < outside && outside < hi.as_str()),
                "{outside}"
            );
        }
    }

    #[tokio::test]
    async fn rpc_errors_are_replies_and_unknown_keys_are_refused() {
        let cat = Catalogue::new(testing::memory().await, 10, 10);
        let e = env(
            ALICE,
            CLIMATE,
            tid(1),
            Payload::Stat {
                filter: Default::default(),
            },
        );
        let err = api_error(rpc(&cat, Action::List, e.clone()).await);
        assert_eq!(err.code, ErrorCode::BadRequest);
        let err = cat
            .handle(key(Worker::Index, Action::Start), e)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(
            err.message.contains("nlds-api.index.start"),
            "{}",
            err.message
        );
    }
}
