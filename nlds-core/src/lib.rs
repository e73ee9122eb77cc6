//! The nlds-rs contract.
//!
//! Everything two sides of a queue or an HTTP call must agree on lives here: typed routing keys and
//! the queue topology ([`routing`]), the message envelope ([`message`]), transaction states and their
//! derivation ([`state`]), the workflows and every state a worker reports ([`workflow`]), the
//! closed set of error codes ([`error`]) and the REST API types ([`api`]).
//! This crate does no I/O: it must never depend on axum, lapin or an S3 client. Its optional `db`
//! feature ([`db`]) derives the sea-orm column conversions of its enums (the orphan rule puts them
//! here) and nothing else.

pub mod access;
pub mod admin;
pub mod api;
pub mod change;
#[cfg(feature = "db")]
pub mod db;
pub mod drain;
pub mod error;
pub mod files;
pub mod heartbeat;
pub mod message;
pub mod notify;
pub mod number;
pub mod pathname;
pub mod pattern;
pub mod policy;
pub mod quota;
pub mod raw_page;
pub mod routing;
pub mod stage;
pub mod state;
pub mod storage_audit;
pub mod system_status;
pub mod versions;
pub mod waiting;
pub mod workflow;

pub use access::AccessRole;
pub use change::Change;
pub use error::ErrorCode;
pub use files::{FailedFile, PathKind};
pub use message::{Envelope, FileRecord, Payload};
pub use routing::{Action, Role, RoutingKey, Worker};
pub use state::State;

/// A strum `VariantArray` as a fixed-size array: the `ALL` constants that callers iterate by value.
/// A wrong `N` fails the build (the constant's evaluation panics).
pub(crate) const fn variants<T: strum::VariantArray + Copy, const N: usize>() -> [T; N] {
    let all = T::VARIANTS;
    assert!(all.len() == N, "ALL must list every variant");
    let mut out = [all[0]; N];
    let mut i = 1;
    while i < N {
        out[i] = all[i];
        i += 1;
    }
    out
}
