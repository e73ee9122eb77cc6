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
//! | archive-put | `archive-put.start` (and a round timer) | `archive-put.complete` / `.failed`, `catalog-archive-next.start` |
//!
//! Handlers are idempotent and return an [`nlds_bus::Outcome`]; the bus publishes and acks.

pub mod archive;
pub mod audit;
pub mod catalogue;
pub mod cold;
pub mod config;
pub mod db;
pub mod hooks;
pub mod indexer;
pub mod logger;
pub mod monitor;
pub mod posix;
pub mod ranged;
pub mod recovery;
pub mod router;
pub mod run;
pub mod s3;
pub mod transfer;
pub mod userfs;

pub use config::WorkerConfig;
