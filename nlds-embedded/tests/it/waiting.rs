//! Why a transaction waits (issue 16 item 2, docs/WAITING.md): what the tests of each reason
//! share. Each reason is produced where its situation already is: queued and cancelled in
//! cancel.rs (a put held at a step, then cancelled there), tape in cancel.rs (a get waiting for
//! a recall), retrying in logs.rs (a transfer retried while S3 is down).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::Api;

/// The `waiting` objects of `tid`'s sub-records that have one, as `api`'s caller sees them.
pub async fn reasons(api: &Api, tid: &str) -> (Value, Vec<Value>) {
    let (code, t) = api.get(&format!("/api/v2/transactions/{tid}")).await;
    assert_eq!(code, 200, "{t}");
    let reasons = t["sub_records"]
        .as_array()
        .map(|subs| {
            subs.iter()
                .filter(|s| !s["waiting"].is_null())
                .map(|s| s["waiting"].clone())
                .collect()
        })
        .unwrap_or_default();
    (t, reasons)
}

/// Polls `tid` until one of its sub-records waits for `reason` and every one that waits waits
/// for it (at most 30 s); returns that reason's object.
pub async fn until_waiting(api: &Api, tid: &str, reason: &str) -> Value {
    let start = Instant::now();
    loop {
        let (t, reasons) = reasons(api, tid).await;
        if !reasons.is_empty() && reasons.iter().all(|w| w["reason"] == reason) {
            return reasons[0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{tid} never waited for {reason} alone: {t:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The transactions the admin view lists as waiting for `reason` (`?waiting=`).
pub async fn admin_waiting(operator: &Api, reason: &str) -> Vec<String> {
    let (code, page) = operator
        .get(&format!(
            "/api/v2/admin/transactions?waiting={reason}&limit=1000"
        ))
        .await;
    assert_eq!(code, 200, "{page}");
    page["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["transaction_id"].as_str().unwrap().to_owned())
        .collect()
}
