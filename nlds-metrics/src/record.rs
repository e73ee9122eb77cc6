//! What the rest of the code calls to count: one function per event, taking bounded labels only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics;

/// What became of a delivery (`nlds_deliveries_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handled: what it published is sent, then it is acknowledged.
    Acked,
    /// A transient fault: redelivered after a back-off delay.
    Retried,
    /// A permanent fault, a poison message or the retries used up: sent to the dead letters.
    DeadLettered,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Acked => "acked",
            Delivery::Retried => "retried",
            Delivery::DeadLettered => "dead_lettered",
        }
    }
}

/// A delivery of `role`'s queue was handled in `took` and ended as `outcome`.
pub fn delivery(role: &'static str, outcome: Delivery, took: Option<Duration>) {
    let m = metrics();
    m.deliveries
        .get_or_create(&[
            ("role", role.to_owned()),
            ("outcome", outcome.as_str().to_owned()),
        ])
        .inc();
    if let Some(took) = took {
        m.step_seconds
            .get_or_create(&[("role", role.to_owned())])
            .observe(took.as_secs_f64());
    }
}

/// `role` consumes in this process: its delivery counters start at 0, so that a rate or an
/// increase over them is defined before its first retry or dead letter.
pub fn consuming(role: &'static str) {
    for outcome in [Delivery::Acked, Delivery::Retried, Delivery::DeadLettered] {
        let labels = [
            ("role", role.to_owned()),
            ("outcome", outcome.as_str().to_owned()),
        ];
        drop(metrics().deliveries.get_or_create(&labels));
    }
}

/// The depth of `queue` as read now; `consumers` only for a role's own queue (not a dead-letter
/// queue).
pub fn queue(queue: &str, messages: u64, consumers: Option<u32>) {
    let m = metrics();
    let q = [("queue", queue.to_owned())];
    m.queue_messages.get_or_create(&q).set(to_i64(messages));
    if let Some(c) = consumers {
        m.queue_consumers.get_or_create(&q).set(i64::from(c));
    }
}

/// The monitor recorded a new transaction of API action `action` (`put`, `get`, ...).
pub fn transaction_started(action: &str) {
    metrics()
        .transactions_started
        .get_or_create(&[("action", action.to_owned())])
        .inc();
}

/// A transaction of `action` ended in `state` (`COMPLETE`, `FAILED`, ...).
pub fn transaction_ended(action: &str, state: &str) {
    metrics()
        .transactions_ended
        .get_or_create(&[("action", action.to_owned()), ("state", state.to_owned())])
        .inc();
}

/// A storage tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The object store (transfer-put, transfer-get).
    Warm,
    /// The cold store (archive-put, archive-get).
    Cold,
}

/// Which way data went: into the tier or out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Put,
    Get,
}

fn tier_labels(tier: Tier, op: Operation) -> [(&'static str, String); 2] {
    let t = match tier {
        Tier::Warm => "warm",
        Tier::Cold => "cold",
    };
    let o = match op {
        Operation::Put => "put",
        Operation::Get => "get",
    };
    [("tier", t.to_owned()), ("operation", o.to_owned())]
}

/// A batch (or an aggregate) of `files` files and `bytes` bytes was moved, successfully: counted,
/// and its time kept as the last success of this tier and operation.
pub fn moved(tier: Tier, op: Operation, files: u64, bytes: u64) {
    let m = metrics();
    let l = tier_labels(tier, op);
    m.files_moved.get_or_create(&l).inc_by(files);
    m.bytes_moved.get_or_create(&l).inc_by(bytes);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    m.last_success.get_or_create(&l).set(now);
}

/// A recall's files are warm again, `waited` after it was requested.
pub fn recall_waited(waited: Duration) {
    metrics().recall_wait.observe(waited.as_secs_f64());
}

/// A policy pass ended with `outcome`.
pub fn policy_pass(outcome: &str) {
    metrics()
        .policy_passes
        .get_or_create(&[("outcome", outcome.to_owned())])
        .inc();
}

/// A group's quota: its byte limit per tier (`warm`, `cold`), unlimited ones left out.
pub type Quota = (String, Vec<(&'static str, u64)>);

/// The usage as read now: `(group, tier, bytes, files)` rows, of which the `keep` largest groups
/// (by bytes over all tiers) are exported by name and the rest summed as `(other)`; and the byte
/// limits (`quotas`) of the groups exported by name. Replaces what was exported before (a group
/// that stored nothing any more disappears).
pub fn usage(rows: &[(String, String, u64, u64)], quotas: &[Quota], keep: usize) {
    use std::collections::{BTreeMap, HashSet};
    let mut per_group: BTreeMap<&str, u64> = BTreeMap::new();
    for (g, _, b, _) in rows {
        *per_group.entry(g).or_default() += b;
    }
    let mut order: Vec<(&str, u64)> = per_group.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let named: HashSet<&str> = order.iter().take(keep).map(|(g, _)| *g).collect();
    let mut sums: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for (g, tier, b, f) in rows {
        let group = if named.contains(g.as_str()) {
            g.clone()
        } else {
            OTHER.to_owned()
        };
        let e = sums.entry((group, tier.clone())).or_default();
        e.0 += b;
        e.1 += f;
    }
    let m = metrics();
    m.usage_bytes.clear();
    m.usage_files.clear();
    m.quota_bytes.clear();
    for ((group, tier), (b, f)) in sums {
        let l = [("group", group), ("tier", tier)];
        m.usage_bytes.get_or_create(&l).set(to_i64(b));
        m.usage_files.get_or_create(&l).set(to_i64(f));
    }
    for (group, limits) in quotas.iter().filter(|(g, _)| named.contains(g.as_str())) {
        for (tier, limit) in limits {
            let l = [("group", group.clone()), ("tier", (*tier).to_owned())];
            m.quota_bytes.get_or_create(&l).set(to_i64(*limit));
        }
    }
}

/// The group label of the groups not exported by name.
pub const OTHER: &str = "(other)";

/// An API request to the route template `route` (`/api/v2/holdings/{id}`; `unmatched` for no
/// route) answered `status` in `took`.
pub fn http(route: &str, method: &str, status: u16, took: Duration) {
    let m = metrics();
    m.http_requests
        .get_or_create(&[
            ("route", route.to_owned()),
            ("method", method.to_owned()),
            ("status", status.to_string()),
        ])
        .inc();
    m.http_seconds
        .get_or_create(&[("route", route.to_owned()), ("method", method.to_owned())])
        .observe(took.as_secs_f64());
}

/// The readiness of the process as checked now: every check by name, and whether it passed.
pub fn readiness<'a>(checks: impl IntoIterator<Item = (&'a str, bool)>) {
    let m = metrics();
    let mut all = true;
    for (name, ok) in checks {
        all &= ok;
        m.backend_up
            .get_or_create(&[("backend", name.to_owned())])
            .set(i64::from(ok));
    }
    m.ready.set(i64::from(all));
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_names_the_largest_groups_and_sums_the_rest() {
        let row = |g: &str, t: &str, b, f| (g.to_owned(), t.to_owned(), b, f);
        let quotas = [
            ("big".to_owned(), vec![("warm", 1000)]),
            ("small".to_owned(), vec![("warm", 10)]),
        ];
        usage(
            &[
                row("big", "warm", 100, 1),
                row("big", "cold", 50, 1),
                row("mid", "warm", 80, 2),
                row("small", "warm", 5, 3),
                row("tiny", "warm", 1, 4),
            ],
            &quotas,
            2,
        );
        let text = crate::render();
        for want in [
            "nlds_usage_bytes{group=\"big\",tier=\"warm\"} 100",
            "nlds_usage_bytes{group=\"big\",tier=\"cold\"} 50",
            "nlds_usage_bytes{group=\"mid\",tier=\"warm\"} 80",
            "nlds_usage_bytes{group=\"(other)\",tier=\"warm\"} 6",
            "nlds_usage_files{group=\"(other)\",tier=\"warm\"} 7",
            "nlds_quota_bytes{group=\"big\",tier=\"warm\"} 1000",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
        assert!(!text.contains("group=\"small\""), "{text}");
        // A group not named has no quota series either.
        assert!(!text.contains("nlds_quota_bytes{group=\"small\""), "{text}");
        // Read again without the big group: it is gone, not left at its old value.
        usage(&[row("mid", "warm", 80, 2)], &quotas, 2);
        assert!(!crate::render().contains("group=\"big\""));
    }

    #[test]
    fn moving_data_counts_it_and_stamps_the_last_success() {
        let l = tier_labels(Tier::Cold, Operation::Get);
        let before = metrics().files_moved.get_or_create(&l).get();
        moved(Tier::Cold, Operation::Get, 3, 4096);
        assert_eq!(metrics().files_moved.get_or_create(&l).get(), before + 3);
        assert!(metrics().last_success.get_or_create(&l).get() > 1.0e9);
    }
}
