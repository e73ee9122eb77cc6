//! The runner's state: the rules in use, the lease, the breaker and the recent passes.

use nlds_core::policy::PolicyStatus;

use super::{PolicyRunner, RunnerError, lease, pass};

/// The status with the `last` most recent passes (newest first).
pub async fn status(r: &PolicyRunner, last: usize) -> Result<PolicyStatus, RunnerError> {
    let l = lease::read(&r.db).await?;
    let passes = pass::recent(&r.db, last).await?;
    let next_pass = (r.cfg.interval_secs > 0).then(|| {
        passes
            .iter()
            .find(|p| p.kind == nlds_core::policy::PassKind::Scheduled)
            .map(|p| p.started)
            .unwrap_or_else(chrono::Utc::now)
            + chrono::Duration::seconds(r.cfg.interval_secs as i64)
    });
    Ok(PolicyStatus {
        enabled: r.cfg.enabled,
        rules: r
            .current()
            .rules()
            .into_iter()
            .map(|(n, a)| (n, pass::action_name(&a).to_owned()))
            .collect(),
        runner: l.as_ref().map(|l| l.holder.clone()),
        lease_until: l.as_ref().map(|l| l.until),
        breaker: l.as_ref().and_then(|l| l.breaker_reason.clone()),
        breaker_since: l.as_ref().and_then(|l| l.breaker_since),
        next_pass,
        passes,
    })
}
