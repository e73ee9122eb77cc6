//! A transaction changed: what the monitor announces after each update of a transaction it has
//! stored, for the processes that stream live status (`GET
//! /api/v2/transactions/{id}/events`). It names the transaction only: a watcher reads the status
//! itself, with its caller's rights, so an announcement reveals nothing to anyone.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Transaction `transaction_id` has a new status (a state, counts, failures or warnings), or
/// was just cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub transaction_id: Uuid,
    /// The API recorded a cancel of it (docs/CANCEL.md): transfers stop moving its files.
    #[serde(default)]
    pub cancelled: bool,
    /// Not a transaction's change: the drained roles changed (`transaction_id` is nil), and
    /// every worker process asks the monitor which roles are drained now ([`crate::drain`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drains: bool,
}

impl Change {
    /// `transaction_id` has a new status.
    pub fn of(transaction_id: Uuid) -> Self {
        Self {
            transaction_id,
            cancelled: false,
            drains: false,
        }
    }

    /// `transaction_id` was cancelled.
    pub fn cancelled(transaction_id: Uuid) -> Self {
        Self {
            transaction_id,
            cancelled: true,
            drains: false,
        }
    }

    /// The drained roles changed.
    pub fn drains() -> Self {
        Self {
            transaction_id: Uuid::nil(),
            cancelled: false,
            drains: true,
        }
    }
}
