//! nlds-rs workers: one library, one handler per role.
//!
//! | role | consumes | produces |
//! |---|---|---|
//! | router | `route.*`, `*.complete`, `*.failed` | the next step of each workflow, monitor updates |
//! | indexer | `index.start` | `index.complete` batches, `index.failed` |
//! | transfer-put | `transfer-put.start`, `transfer-del.start` | `transfer-put.complete` / `.failed` |
//! | transfer-get | `transfer-get.start` | `transfer-get.complete` / `.failed` |
//! | catalogue | `catalog-check.start`, `catalog-put.start`, `catalog-get.start`, RPC `catalog.*` | `.complete` / `.failed` |
//! | monitor | `monitor-put.init`, `monitor-put.start`, RPC `monitor.stat`, `monitor.admin` | nothing |
//! | logger | `log.*` (records, audit events) | `log_record` / `audit_record` rows, JSON-lines files under the log directory |
//! | archive-put | `archive-put.start`, `archive-put.del` (and a round timer) | `archive-put.complete` / `.failed`, `catalog-archive-next.start` |
//! | archive-get | `archive-get.start`, `archive-get.prepare-check` | `archive-get.complete` / `.failed` |
//! | policy | RPC `policy.*` (and the pass and watermark timer) | `catalog.evict`, `catalog-archive-next.start` RPCs |
//!
//! Handlers are idempotent and return an [`nlds_bus::Outcome`]; the bus publishes and acks.
//!
//! Each role has a folder named as the role is named on the command line (`transfer-put` is
//! [`transfer_put`]); `catalogue-rpc` and `monitor-rpc` share [`catalogue`] and [`monitor`]. Code
//! shared between roles is apart from them:
//!
//! | module | holds |
//! |---|---|
//! | [`run`] | settings, bus connection, starting roles, tracing, shutdown |
//! | [`db`] | the sea-orm entities, connecting and migrating, database error handling |
//! | [`audit`] | storing and querying audit events and log records (logger and monitor) |
//! | [`warm`] | what the two transfer roles share: tenancy clients, part buffers, batch outcomes |
//! | [`userfs`], [`posix`] | file-system work on behalf of users, POSIX permission checks |
//! | [`recovery`] | failing transactions left unfinished by a stopped process |
//! | [`drain`] | the roles drained for maintenance as this process knows them; consuming only while not drained |
//! | [`debris`], [`workdir`] | removing at start what killed processes left (multipart uploads, temporary files, partial aggregates, spools); each process's locked scratch directory |
//! | [`hooks`] | test pause points |
//! | [`config`] | the `[workers]` settings, re-exported from `nlds-settings` |
//!
//! The storage adapters (S3, the cold stores, the tar aggregate) are in the `nlds-storage` crate.

pub mod archive_get;
pub mod archive_put;
pub mod audit;
pub mod cancelled;
pub mod catalogue;
pub mod config;
pub mod db;
pub mod debris;
pub mod drain;
pub mod heartbeat;
pub mod indexer;
pub mod logger;
pub mod memory;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod ops;
pub mod outbox;
pub mod policy;
pub mod posix;
pub mod recovery;
pub mod router;
pub mod run;
#[cfg(test)]
pub(crate) mod s3_testing;
pub mod storage_audit;
pub mod telemetry;
pub mod transfer_get;
pub mod transfer_put;
pub mod userfs;
pub mod warm;
pub mod workdir;

pub use config::WorkerConfig;
