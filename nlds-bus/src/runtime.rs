//! Delivery processing shared by both buses: decode, handle (catching panics), and decide whether
//! to ack, retry later or dead-letter.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use nlds_core::error::ErrorCode;
use nlds_core::message::FailedFile;
use nlds_core::workflow::gave_up;
use nlds_core::{Action, Envelope, Payload, RoutingKey, Worker};
use tracing::Instrument;
use uuid::Uuid;

use crate::{Handler, HandlerError, Outcome};

/// Capped exponential back-off for transient faults. Each delay is one durable delay queue on
/// RabbitMQ, so the set of delays is fixed at startup.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay before attempt 2, 3, ... ; the number of delays bounds the attempts.
    pub delays: Vec<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            delays: [2, 10, 60, 300].map(Duration::from_secs).to_vec(),
        }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt after `attempt` (1-based) failed, or `None` when the
    /// attempts are used up.
    pub fn next_delay(&self, attempt: u32) -> Option<Duration> {
        self.delays.get(attempt.saturating_sub(1) as usize).copied()
    }
}

/// Deliveries of this process that failed on a transient fault and were scheduled for
/// redelivery after a back-off delay.
static RETRIES: AtomicU64 = AtomicU64::new(0);

/// How many deliveries this process has scheduled for redelivery after a transient fault (each
/// one waited at least the first delay of the [`RetryPolicy`]). The benchmark reports it: a
/// local fault that the process should have avoided shows up here as seconds of delay.
pub fn retries_scheduled() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

/// What to do with a delivery once it was processed.
#[derive(Debug)]
pub(crate) enum Disposition {
    /// Publish these (and the reply), then ack.
    Done(Box<Outcome>),
    /// Transient fault: redeliver after this delay with the attempt count raised.
    Retry(Duration),
    /// Poison or permanent failure: publish these (the failure report), then dead-letter.
    DeadLetter(Vec<(RoutingKey, Envelope)>, String),
}

/// Processes one delivery. `attempt` is 1 for a first delivery.
pub(crate) async fn process(
    handler: &dyn Handler,
    role: nlds_core::Role,
    key: &str,
    data: &[u8],
    attempt: u32,
    retry: &RetryPolicy,
) -> Disposition {
    let key: RoutingKey = match key.parse() {
        Ok(k) => k,
        Err(e) => {
            count(
                role,
                &Disposition::DeadLetter(Vec::new(), String::new()),
                None,
            );
            return Disposition::DeadLetter(Vec::new(), format!("bad routing key: {e}"));
        }
    };
    let env: Envelope = match serde_json::from_slice(data) {
        Ok(env) => env,
        Err(e) => {
            let reason = format!("malformed message on {key}: {e}");
            let d = Disposition::DeadLetter(
                failure_for_raw(data, &reason).into_iter().collect(),
                reason,
            );
            count(role, &d, None);
            return d;
        }
    };
    if key.action == nlds_core::Action::SystemStat {
        // A health ping (the system status page): answered by the runtime for every role.
        let alive = nlds_core::message::RpcReply::Alive {
            role: key.worker.to_string(),
            pid: std::process::id(),
            hostname: hostname(),
        };
        return Disposition::Done(Box::new(Outcome::reply(
            env.reply(nlds_core::Payload::Reply(alive)),
        )));
    }
    let span = tracing::info_span!(
        "handle",
        key = %key,
        transaction_id = %env.transaction_id,
        sub_id = %env.sub_id,
        user = %env.user,
        attempt
    );
    let started = std::time::Instant::now();
    let result = AssertUnwindSafe(handler.handle(key, env.clone()))
        .catch_unwind()
        .instrument(span.clone())
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(HandlerError::permanent(
                ErrorCode::Internal,
                format!("handler for {key} panicked: {what}"),
            ))
        });
    let _enter = span.enter(); // for the logging below; no await from here on
    let disposition = decide(&key, &env, result, attempt, retry);
    // One line per message handled, for operators (info level).
    tracing::info!(
        transaction_id = %env.transaction_id,
        role = %key.worker,
        key = %key,
        outcome = disposition.name(),
        duration_ms = started.elapsed().as_millis() as u64,
        "handled"
    );
    count(role, &disposition, Some(started.elapsed()));
    disposition
}

/// Counts a delivery of `role`'s queue (`nlds_deliveries_total`) and the time its handler took
/// (`nlds_step_duration_seconds`), when it ran. Health pings are not counted.
fn count(role: nlds_core::Role, d: &Disposition, took: Option<Duration>) {
    use nlds_metrics::record::Delivery;
    let outcome = match d {
        Disposition::Done(_) => Delivery::Acked,
        Disposition::Retry(_) => Delivery::Retried,
        Disposition::DeadLetter(..) => Delivery::DeadLettered,
    };
    nlds_metrics::record::delivery(role.as_str(), outcome, took);
}

/// What becomes of a delivery after its handler's `result`.
fn decide(
    key: &RoutingKey,
    env: &Envelope,
    result: Result<Outcome, HandlerError>,
    attempt: u32,
    retry: &RetryPolicy,
) -> Disposition {
    match result {
        Ok(outcome) => Disposition::Done(Box::new(outcome)),
        Err(e) if e.retryable => match retry.next_delay(attempt) {
            Some(delay) => {
                RETRIES.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, ?delay, "transient failure, will retry");
                if let Some((k, note)) = retry_note(key, env, &e, attempt, delay, retry) {
                    crate::notices::send(k, note);
                }
                Disposition::Retry(delay)
            }
            None => {
                let e = HandlerError::permanent(
                    e.code,
                    format!("{} (gave up after {attempt} attempts)", e.message),
                );
                // `forward = false`: the log record travels with the failure report (reports).
                tracing::error!(error = %e, forward = false, "retries exhausted");
                Disposition::DeadLetter(reports(key, env, &e), e.message)
            }
        },
        Err(e) => {
            tracing::error!(error = %e, code = %e.code, forward = false, "permanent failure");
            Disposition::DeadLetter(reports(key, env, &e), e.message)
        }
    }
}

impl Disposition {
    fn name(&self) -> &'static str {
        match self {
            Disposition::Done(_) => "done",
            Disposition::Retry(_) => "retry",
            Disposition::DeadLetter(..) => "dead-letter",
        }
    }
}

/// The warning for the monitor while a step of a transaction is retried (none for the monitor,
/// the logger and the RPCs, which have no step of a transaction to report).
fn retry_note(
    key: &RoutingKey,
    env: &Envelope,
    err: &HandlerError,
    attempt: u32,
    delay: Duration,
    retry: &RetryPolicy,
) -> Option<(RoutingKey, Envelope)> {
    if matches!(
        key.worker,
        Worker::MonitorPut | Worker::Monitor | Worker::Log | Worker::Catalog
    ) {
        return None;
    }
    let at = chrono::Utc::now() + delay;
    let note = nlds_core::workflow::retry_note::retry_note(
        key.worker.as_str(),
        attempt,
        retry.delays.len(),
        at,
        err.code,
        &err.message,
    );
    let retry = nlds_core::waiting::Retrying {
        step: key.worker.as_str().to_owned(),
        retry: attempt,
        of: u32::try_from(retry.delays.len()).unwrap_or(u32::MAX),
        next_try: at,
        code: err.code,
        error: nlds_core::workflow::retry_note::clip(&err.message),
    };
    Some((
        RoutingKey::new(Worker::MonitorPut, Action::Start),
        env.reply(Payload::Warning {
            warnings: vec![note],
            retry: Some(retry),
        }),
    ))
}

/// The failure report for a batch plus an error record for the logger.
fn reports(key: &RoutingKey, env: &Envelope, err: &HandlerError) -> Vec<(RoutingKey, Envelope)> {
    let mut out: Vec<_> = failure_for(key, env, err).into_iter().collect();
    if key.worker != Worker::Log {
        out.push((
            RoutingKey::new(Worker::Log, Action::Error),
            env.reply(Payload::Log {
                service: key.worker.as_str().to_owned(),
                level: "error".into(),
                message: format!("{key}: {err} ({})", err.code),
            }),
        ));
    }
    out
}

/// The paths a message is about, for failure reports.
fn paths_of(payload: &Payload) -> Vec<String> {
    match payload {
        Payload::PutRequest { paths, .. } | Payload::GetRequest { paths, .. } => paths.clone(),
        Payload::Files { files, .. } => files.iter().map(|f| f.path.clone()).collect(),
        Payload::Failed { files } => files.iter().map(|f| f.path.clone()).collect(),
        _ => Vec::new(),
    }
}

/// The report that fails a batch a handler gave up on: a `<worker>.failed` message listing
/// every path of the batch with the reason, which the router turns into a monitor update.
/// Monitor, log and RPC messages get none (nothing would handle it, or the caller gets an error).
pub fn failure_for(
    key: &RoutingKey,
    env: &Envelope,
    err: &HandlerError,
) -> Option<(RoutingKey, Envelope)> {
    if matches!(
        key.worker,
        Worker::MonitorPut | Worker::Monitor | Worker::Log | Worker::Catalog
    ) {
        return None;
    }
    if matches!(key.action, Action::Complete | Action::Failed) {
        // The router could not handle a step's report: tell the monitor directly.
        let failed = paths_of(&env.payload)
            .into_iter()
            .map(|p| FailedFile::new(p, err.code, err.message.clone()))
            .collect();
        return Some((
            RoutingKey::new(Worker::MonitorPut, Action::Start),
            env.with_sub(
                Uuid::new_v5(&env.sub_id, b"failed/router"),
                Payload::MonitorUpdate {
                    state: gave_up(),
                    files: 0,
                    bytes: 0,
                    failed,
                    warnings: vec![err.message.clone()],
                    versions: 0,
                },
            ),
        ));
    }
    let mut files: Vec<FailedFile> = paths_of(&env.payload)
        .into_iter()
        .map(|p| FailedFile::new(p, err.code, err.message.clone()))
        .collect();
    if files.is_empty() {
        files.push(FailedFile::new("(request)", err.code, err.message.clone()));
    }
    Some((
        RoutingKey::new(key.worker, Action::Failed),
        env.reply(Payload::Failed { files }),
    ))
}

/// A failure report for a message that does not decode: if its identity can still be read, the
/// transaction is failed with the reason.
fn failure_for_raw(data: &[u8], reason: &str) -> Option<(RoutingKey, Envelope)> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    let tid = Uuid::parse_str(v.get("transaction_id")?.as_str()?).ok()?;
    let sub = v
        .get("sub_id")
        .and_then(|s| s.as_str())
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or(tid);
    let action = serde_json::from_value(v.get("action")?.clone()).ok()?;
    let env = Envelope::new(
        tid,
        v.get("user")?.as_str()?,
        v.get("group")?.as_str()?,
        action,
        v.get("job_label")
            .and_then(|s| s.as_str())
            .unwrap_or_default(),
        Payload::MonitorUpdate {
            state: gave_up(),
            files: 0,
            bytes: 0,
            failed: vec![FailedFile::new("(message)", ErrorCode::Internal, reason)],
            warnings: Vec::new(),
            versions: 0,
        },
    );
    Some((
        RoutingKey::new(Worker::MonitorPut, Action::Start),
        env.with_sub(Uuid::new_v5(&sub, b"failed/poison"), env.payload.clone()),
    ))
}

/// This machine's name, for health pings.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use nlds_core::api::ApiAction;

    struct H(fn() -> Result<Outcome, HandlerError>);
    #[async_trait]
    impl Handler for H {
        async fn handle(&self, _: RoutingKey, _: Envelope) -> Result<Outcome, HandlerError> {
            (self.0)()
        }
    }

    fn env() -> Envelope {
        Envelope::new(
            Uuid::new_v4(),
            "u",
            "g",
            ApiAction::Put,
            "j",
            Payload::PutRequest {
                holding_id: 1,
                paths: vec!["/a".into(), "/b".into()],
            },
        )
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            delays: vec![Duration::from_millis(1), Duration::from_millis(2)],
        }
    }

    #[tokio::test]
    async fn transient_errors_retry_then_fail_the_batch() {
        let h = H(|| Err(HandlerError::transient(ErrorCode::Unavailable, "s3 down")));
        let data = env().to_json();
        let before = retries_scheduled();
        for attempt in 1..=2 {
            assert!(matches!(
                process(
                    &h,
                    nlds_core::Role::Indexer,
                    "nlds-api.index.start",
                    &data,
                    attempt,
                    &policy()
                )
                .await,
                Disposition::Retry(_)
            ));
        }
        // Counted for the benchmark (other tests may retry at the same time: at least these).
        assert!(retries_scheduled() >= before + 2);
        match process(
            &h,
            nlds_core::Role::Indexer,
            "nlds-api.index.start",
            &data,
            3,
            &policy(),
        )
        .await
        {
            Disposition::DeadLetter(publish, reason) => {
                assert!(reason.contains("gave up after 3 attempts"), "{reason}");
                let (key, env) = &publish[0];
                assert_eq!(key.to_string(), "nlds-api.index.failed");
                let Payload::Failed { files } = &env.payload else {
                    panic!()
                };
                assert_eq!(files.len(), 2);
                assert_eq!(files[0].code, ErrorCode::Unavailable);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_scheduled_retry_sends_the_monitor_a_warning_for_the_transaction() {
        let env = env();
        let err = HandlerError::transient(ErrorCode::Unavailable, "S3 down");
        let key: RoutingKey = "nlds-api.transfer-put.start".parse().unwrap();
        let (k, note) = retry_note(&key, &env, &err, 2, Duration::from_secs(10), &policy())
            .expect("a step of a transaction");
        assert_eq!(k.to_string(), "nlds-api.monitor-put.start");
        assert_eq!(
            (note.transaction_id, note.sub_id, note.user.as_str()),
            (env.transaction_id, env.sub_id, "u")
        );
        let Payload::Warning { warnings, retry } = &note.payload else {
            panic!("{note:?}")
        };
        assert!(
            warnings[0].starts_with("retry 2 of 2 at ")
                && warnings[0].ends_with("(transfer-put): unavailable: S3 down"),
            "{warnings:?}"
        );
        // The same retry in fields, for the batch's "why it waits".
        let retry = retry.as_ref().expect("the retry in fields");
        assert_eq!(
            (
                retry.step.as_str(),
                retry.retry,
                retry.of,
                retry.code,
                retry.error.as_str()
            ),
            ("transfer-put", 2, 2, ErrorCode::Unavailable, "S3 down")
        );
        assert!(retry.next_try > chrono::Utc::now() + Duration::from_secs(5));
        // The monitor, the logger and the RPCs have no step of a transaction to report.
        for k in [
            "nlds-api.monitor-put.start",
            "nlds-api.log.warning",
            "nlds-api.catalog.list",
        ] {
            let key: RoutingKey = k.parse().unwrap();
            assert!(
                retry_note(&key, &env, &err, 1, Duration::ZERO, &policy()).is_none(),
                "{k}"
            );
        }
    }

    #[tokio::test]
    async fn panics_and_permanent_errors_dead_letter_with_a_reason() {
        let h = H(|| panic!("boom"));
        let data = env().to_json();
        match process(
            &h,
            nlds_core::Role::Indexer,
            "nlds-api.transfer-put.start",
            &data,
            1,
            &policy(),
        )
        .await
        {
            Disposition::DeadLetter(publish, reason) => {
                assert!(reason.contains("panicked: boom"), "{reason}");
                assert_eq!(publish[0].0.to_string(), "nlds-api.transfer-put.failed");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn poison_messages_fail_their_transaction_if_it_can_be_named() {
        let h = H(|| Ok(Outcome::none()));
        let mut v: serde_json::Value = serde_json::from_slice(&env().to_json()).unwrap();
        v["payload"] = serde_json::json!({"kind": "nonsense"});
        let data = serde_json::to_vec(&v).unwrap();
        match process(
            &h,
            nlds_core::Role::Indexer,
            "nlds-api.index.start",
            &data,
            1,
            &policy(),
        )
        .await
        {
            Disposition::DeadLetter(publish, reason) => {
                assert!(
                    reason.starts_with("malformed message on nlds-api.index.start"),
                    "{reason}"
                );
                assert_eq!(publish[0].0.to_string(), "nlds-api.monitor-put.start");
            }
            other => panic!("{other:?}"),
        }
        match process(
            &h,
            nlds_core::Role::Indexer,
            "nlds-api.index.start",
            b"{not json",
            1,
            &policy(),
        )
        .await
        {
            Disposition::DeadLetter(publish, _) => assert!(publish.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            process(&h, nlds_core::Role::Indexer, "garbage", b"{}", 1, &policy()).await,
            Disposition::DeadLetter(..)
        ));
    }
}
