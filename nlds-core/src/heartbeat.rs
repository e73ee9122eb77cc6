//! A worker process's heartbeat: who it is and what it can reach, announced every
//! `[workers] heartbeat_secs` to the processes watching (`Bus::beat`, the same fanout as
//! transaction changes), so the API server's status page (`/status`, `/api/v2/status`) knows
//! which roles have a live process without asking any of them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How many heartbeat intervals may pass without one before a process counts as gone.
pub const MISSED_BEATS: u32 = 3;

/// One process's heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// This run of the process (a new id each start).
    pub instance: Uuid,
    /// The roles it runs (their command-line names).
    pub roles: Vec<String>,
    pub host: String,
    pub pid: u32,
    pub started: DateTime<Utc>,
    pub sent: DateTime<Utc>,
    /// Seconds until its next heartbeat.
    pub interval_secs: u64,
    /// Its readiness checks (`database`, `object_store`, `cold_store`, `bus`): `"ok"` or what
    /// failed.
    #[serde(default)]
    pub checks: BTreeMap<String, String>,
    /// Those of its roles it does not consume now because an operator drained them
    /// ([`crate::drain`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drained: Vec<String>,
}

impl Heartbeat {
    /// Whether the process still counts as alive at `now`: its last heartbeat is less than
    /// [`MISSED_BEATS`] intervals old.
    pub fn alive_at(&self, now: DateTime<Utc>) -> bool {
        let allowed =
            chrono::Duration::seconds((self.interval_secs.max(1) * u64::from(MISSED_BEATS)) as i64);
        now - self.sent < allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_gone_after_the_missed_beats() {
        let sent = Utc::now();
        let hb = Heartbeat {
            instance: Uuid::nil(),
            roles: vec!["indexer".into()],
            host: "h".into(),
            pid: 1,
            started: sent,
            sent,
            interval_secs: 10,
            checks: BTreeMap::new(),
            drained: Vec::new(),
        };
        assert!(hb.alive_at(sent + chrono::Duration::seconds(29)));
        assert!(!hb.alive_at(sent + chrono::Duration::seconds(30)));
        let json = serde_json::to_string(&hb).unwrap();
        assert_eq!(serde_json::from_str::<Heartbeat>(&json).unwrap(), hb);
    }
}
