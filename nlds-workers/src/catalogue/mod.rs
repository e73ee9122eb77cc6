//! The catalogue role: holdings, transactions and the files stored in them.
//!
//! One [`Catalogue`] handles the work keys `catalog-check.start`, `catalog-put.start` and
//! `catalog-get.start` (role `catalogue`) and the RPC keys `catalog.setup`, `catalog.list`,
//! `catalog.find` and `catalog.meta` (role `catalogue-rpc`); see `docs/PROTOCOL.md`.
//!
//! Every handler is idempotent: a redelivered message finds its rows already there and gives the
//! same answer. RPC errors are answered as [`RpcReply::Error`]; work errors are
//! [`HandlerError`]s, transient for database outages.
//!
//! | module | holds |
//! |---|---|
//! | `mod.rs` | [`Catalogue`], the dispatch of each key to its handler, small request helpers |
//! | `setup` | `catalog.setup`: the holding and transaction of a put |
//! | `check`, `put` | `catalog-check.start`, `catalog-put.start` |
//! | `get` | `catalog-get.start`, `catalog.plan`: which copies a get restores, in batches |
//! | `list` | `catalog.list`: a page of holdings with their counts, tags and transactions, one statement |
//! | `query` | `catalog.find`, `catalog.meta` |
//! | `entries` | the API view of file rows: with their holding and transaction, copies, checksum |
//! | `authz` | which holdings a request selects, who may change them |
//! | `store` | database queries and writes the handlers share |
//! | `id_set` | a set of row ids in a read's `WHERE`: one array on PostgreSQL, `IN` lists on SQLite |
//! | `guard` | the last-copy guard every background removal goes through |
//! | `delete` | delete, undelete, purge (`delete::purge`) |
//! | `archive_round` | archive rounds: packing files into aggregates, recording them stored |
//! | `recall` | recalls of files whose only copy is cold, and evicting warm copies |
//! | `stage` | `catalog.stage`: stage requests, cancel, release, locality (archiveinfo) |
//! | `access` | access tracking (last access, count) and pins that keep files warm |
//! | `usage` | the usage counters per group and tier, kept with every change to copies |
//! | `versions` | versions of a path: the newest, the next number, read selection, pruning |
//! | `quota` | quotas: limits, reservations of running puts, `catalog.quota(-set)` |

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::api::{DEFAULT_LIMIT, MAX_LIMIT};
use nlds_core::error::ApiError;
use nlds_core::message::{HoldingFilter, RpcReply};

use nlds_core::{Action, Envelope, FileRecord, Payload, RoutingKey, Worker};
use nlds_settings::{PolicyConfig, VersionsConfig};
use regex::{Regex, RegexSet};
use sea_orm::sea_query::Order;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use uuid::Uuid;

use crate::db::{self, OpError as Error, bad_request, file, internal, transaction};
use crate::outbox::{self, Outbox};
use store::{add_locations, holding_file_in, load_copies, location_row};

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

pub(crate) mod access;
mod archive_round;
mod authz;
mod cancel;
mod check;
mod chunks;
mod context;
mod delete;
mod entries;
mod get;
mod guard;
mod id_set;
mod list;
mod missing;
mod put;
mod query;
mod quota;
mod recall;
mod setup;
mod stage;
mod store;
mod submit;
pub mod usage;
mod versions;
pub use archive_round::ArchiveConfig;
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
    /// Where the messages a committed change implies are staged (see [`crate::outbox`]).
    outbox: Outbox,
    /// `[policy]`: how long a get's files stay pinned warm.
    policy: PolicyConfig,
    /// How long the chunks of a request that has not started are kept (see `chunks`).
    unfinished_request_secs: u64,
    /// `[workers.versions]`: how many versions of a path a put keeps.
    versions: VersionsConfig,
    /// The in-process bus, when the catalogue shares it with the roles it feeds: a get part
    /// waits for room on it before it is resolved ([`Catalogue::with_backpressure`]).
    room: Option<std::sync::Arc<dyn nlds_bus::Bus>>,
}

type Result<T, E = Error> = std::result::Result<T, E>;

#[async_trait]
impl Handler for Catalogue {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        if let (Some(bus), Worker::CatalogGet, Action::Start) = (&self.room, key.worker, key.action)
        {
            nlds_bus::wait_for_room(bus.as_ref(), Some(nlds_core::Role::Catalogue)).await;
        }
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
            outbox: Outbox::new(),
            policy: PolicyConfig::default(),
            unfinished_request_secs: 24 * 3600,
            versions: VersionsConfig::default(),
            room: None,
        }
    }

    /// Makes a get part (`catalog-get.start`: up to a chunk of a getlist, 10,000 paths) wait
    /// while the in-process `bus` holds more than [`nlds_bus::BACKLOG_LIMIT_BYTES`] queued for
    /// the other roles. A part is small on the bus (its paths) but resolves into batches several
    /// times larger (full records for transfer-get): without the wait, every part the outbox
    /// relay let through while the backlog was low turned into batches at once, and the
    /// embedded process held the whole list as queued JSON. Nothing the catalogue waits for
    /// depends on the catalogue's own queue (excluded from the count), so the wait cannot
    /// deadlock. A broker's queues hold no process memory: no wait there.
    pub fn with_backpressure(mut self, bus: std::sync::Arc<dyn nlds_bus::Bus>) -> Self {
        self.room = Some(bus);
        self
    }

    /// `[workers.versions]`: how many versions of each path a put keeps (`keep`, 0: all).
    pub fn with_versions(mut self, versions: VersionsConfig) -> Self {
        self.versions = versions;
        self
    }

    /// `[policy]`: how long the files a get resolved stay pinned warm (`get_pin_secs`).
    pub fn with_policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// The outbox whose relay publishes what this catalogue stages (one relay per process).
    pub fn with_outbox(mut self, outbox: Outbox) -> Self {
        self.outbox = outbox;
        self
    }

    /// Commits `txn` together with the messages its change implies (staged in the outbox in
    /// the same database transaction), then wakes the relay: the change is never committed
    /// without them, nor they published without it.
    pub(super) async fn commit_with(
        &self,
        txn: DatabaseTransaction,
        messages: Vec<(RoutingKey, Envelope)>,
    ) -> Result<()> {
        for (key, env) in &messages {
            outbox::stage(&txn, *key, env).await?;
        }
        txn.commit().await?;
        if !messages.is_empty() {
            self.outbox.wake();
        }
        Ok(())
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
                    paths,
                    size_hint,
                },
            ) => Ok(reply(
                self.setup(env, label.as_deref(), *holding_id, tags, paths, *size_hint)
                    .await?,
            )),
            (
                Worker::Catalog,
                Action::Append,
                Payload::AppendPaths {
                    part,
                    paths,
                    max_total,
                },
            ) => Ok(reply(self.append(env, *part, paths, *max_total).await?)),
            (Worker::Catalog, Action::Get | Action::Getlist, Payload::GetRequest { .. }) => {
                Ok(reply(self.submit_get(env).await?))
            }
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
                    files_only,
                    named_must_exist,
                },
            ) => {
                let page = self
                    .find(env, filter, path.as_deref(), *path_regex, *files_only)
                    .await?;
                if *named_must_exist
                    && page.files.is_empty()
                    && filter.names_holding()
                    && !self.sees_holding(env, filter).await?
                {
                    return Err(filter.not_visible().into());
                }
                Ok(reply(RpcReply::Files(page)))
            }
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
            (Worker::CatalogArchiveNext, Action::Start, Payload::ArchiveSelect { file_ids }) => {
                // Answered (the policy waits for it) and published like any round.
                let (mut out, aggregations) = self.archive_select(file_ids).await?;
                out.reply =
                    Some(env.reply(Payload::Reply(RpcReply::ArchiveStarted { aggregations })));
                Ok(out)
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
            (Worker::Catalog, Action::Evict, Payload::EvictFiles { file_ids }) => {
                // As `Evict`, for the files the policy chose that may go now.
                let files = self.evict_files(env, file_ids).await?;
                Ok(reply(RpcReply::Evicted { files }))
            }
            (Worker::Catalog, Action::Evict, Payload::Evict { holding_id }) => {
                // The catalogue no longer lists these warm copies: the deletion of their objects
                // was staged in the outbox with that change.
                let files = self.evict(env, *holding_id).await?;
                Ok(reply(RpcReply::Evicted { files }))
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
                Action::Plan,
                Payload::ClassifyPut {
                    holding_id,
                    entries,
                },
            ) => Ok(reply(RpcReply::Classified(
                self.classify_put(env, *holding_id, entries).await?,
            ))),
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
                // A committed delete is recorded with the monitor by messages staged in the outbox
                // with it, so it is never done without being on record.
                let plan = self.delete(env, filter, paths, *regex, *dry_run).await?;
                Ok(reply(RpcReply::Deleted(plan)))
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
            (Worker::Catalog, Action::Stage, Payload::Stage(q)) => {
                Ok(reply(RpcReply::Stage(self.stage(env, q).await?)))
            }
            (Worker::Catalog, Action::Cancel, Payload::Cancel) => {
                Ok(reply(self.cancel(env).await?))
            }
            (Worker::Catalog, Action::Quota, Payload::QuotaShow { groups }) => {
                Ok(reply(self.quota_show(groups.as_deref()).await?))
            }
            (Worker::Catalog, Action::QuotaSet, Payload::QuotaSet { group, change }) => {
                Ok(reply(self.quota_set(env, group, change).await?))
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
                | Action::Append
                | Action::Get
                | Action::Getlist
                | Action::List
                | Action::Find
                | Action::Meta
                | Action::Plan
                | Action::Evict
                | Action::Del
                | Action::Undelete
                | Action::Purge
                | Action::Stage
                | Action::Quota
                | Action::QuotaSet
                | Action::Cancel,
                _,
            ) => Err(bad_request(format!(
                "{key} does not take a {} payload",
                payload_kind(&env.payload)
            ))),
            _ => Err(bad_request(format!("the catalogue does not handle {key}"))),
        }
    }
}

/// The order of a path's copies: newer ingest first wins.
fn ingest_key(
    txs: &store::ById<transaction::Model>,
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
        kind: m.kind,
        link_target: m.link_target.clone(),
        size: to_u64(m.size),
        uid: to_u32(m.uid),
        gid: to_u32(m.gid),
        mode: to_u32(m.mode),
        mtime_ns: m.mtime_ns,
        blake3: None,
        object: None,
        holding_id: Some(m.holding_id),
        xattrs: xattrs_of(m.xattrs.as_deref()),
        new_version: false,
    }
}

/// The `xattrs` column: JSON of the attributes, None when there are none.
pub(crate) fn xattrs_column(attrs: &[nlds_core::message::Xattr]) -> Option<String> {
    (!attrs.is_empty()).then(|| serde_json::to_string(attrs).unwrap_or_default())
}

/// The attributes of an `xattrs` column (none if it is NULL or unreadable).
pub(crate) fn xattrs_of(column: Option<&str>) -> Vec<nlds_core::message::Xattr> {
    column
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default()
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

/// A UUID stored as text in `table.column`: a malformed one is an error, never a nil UUID.
fn parse_uuid(table: &str, column: &str, value: &str) -> Result<Uuid> {
    Ok(db::stored_uuid(table, column, value)?)
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
        Payload::RetryOf { .. } => "retry_of",
        Payload::Cancel => "cancel",
        Payload::MonitorUpdate { .. } => "monitor_update",
        Payload::Warning { .. } => "warning",
        Payload::Progress { .. } => "progress",
        Payload::Log { .. } => "log",
        Payload::SetupHolding { .. } => "setup_holding",
        Payload::AppendPaths { .. } => "append_paths",
        Payload::ListHoldings { .. } => "list_holdings",
        Payload::FindFiles { .. } => "find_files",
        Payload::ChangeMeta { .. } => "change_meta",
        Payload::PlanGet { .. } => "plan_get",
        Payload::ClassifyPut { .. } => "classify_put",
        Payload::Stat { .. } => "stat",
        Payload::SystemStat => "system_stat",
        Payload::ArchiveNext => "archive_next",
        Payload::ArchiveAggregate { .. } => "archive_aggregate",
        Payload::ArchiveStored { .. } => "archive_stored",
        Payload::ArchiveRecall { .. } => "archive_recall",
        Payload::RecallProgress { .. } => "recall_progress",
        Payload::ArchiveRestored { .. } => "archive_restored",
        Payload::Evict { .. } => "evict",
        Payload::EvictFiles { .. } => "evict_files",
        Payload::ArchiveSelect { .. } => "archive_select",
        Payload::Delete { .. } => "delete",
        Payload::Undelete { .. } => "undelete",
        Payload::Purge { .. } => "purge",
        Payload::QuotaShow { .. } => "quota_show",
        Payload::QuotaSet { .. } => "quota_set",
        Payload::ArchiveRemove { .. } => "archive_remove",
        Payload::Admin(_) => "admin",
        Payload::Notify(_) => "notify",
        Payload::Stage(_) => "stage",
        Payload::Audit(_) => "audit",
        Payload::Policy => "policy",
        Payload::PolicyStatus { .. } => "policy_status",
        Payload::Explain { .. } => "explain",
        Payload::StorageAudit(_) => "storage_audit",
        Payload::StorageAuditRuns { .. } => "storage_audit_runs",
        Payload::PurgeQuarantine { .. } => "purge_quarantine",
        Payload::Reply(_) => "reply",
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod quota_tests;

#[cfg(test)]
mod chunks_tests;
#[cfg(test)]
mod list_tests;
#[cfg(test)]
mod versions_tests;
