//! E-mail delivery through the configured SMTP relay (`[notify] smtp_*`), with `lettre`.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use nlds_core::notify::{OperatorAlert, PolicyPassEnded, StageEnded, TransactionEnded};
use nlds_settings::{NotifyConfig, SmtpTls};

/// The relay's transport.
pub type Relay = AsyncSmtpTransport<Tokio1Executor>;

/// The transport `cfg` describes; `None` without `smtp_host`.
pub fn relay(cfg: &NotifyConfig, timeout: Duration) -> anyhow::Result<Option<Relay>> {
    let Some(host) = cfg.smtp_host.as_deref() else {
        return Ok(None);
    };
    let builder = match cfg.smtp_tls {
        SmtpTls::None => Relay::builder_dangerous(host),
        SmtpTls::Starttls => Relay::starttls_relay(host)?,
        SmtpTls::Tls => Relay::relay(host)?,
    };
    let mut builder = builder.port(cfg.smtp_port).timeout(Some(timeout));
    if let Some(user) = &cfg.smtp_user {
        let password = cfg.smtp_password()?.unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(Some(builder.build()))
}

/// The subject and text of an e-mail about `payload` (a [`TransactionEnded`] or an
/// [`OperatorAlert`] as JSON).
pub fn render(payload: &str) -> Result<(String, String), String> {
    if let Ok(t) = serde_json::from_str::<TransactionEnded>(payload) {
        let subject = format!("[nlds] {} {} ended {}", t.action, t.transaction_id, t.state);
        let label = t.label.as_deref().unwrap_or("-");
        let text = format!(
            "Transaction {id} ({action}) of {user} in group {group} ended {state}.\n\n\
             job label: {job}\nholding label: {label}\n\
             files: {done} of {total} done, {failed} failed\n\
             bytes: {bdone} of {btotal}\nstarted: {created}\nended: {ended}\n\n\
             See `nlds stat -i {id}` for the details.\n",
            id = t.transaction_id,
            action = t.action,
            user = t.user,
            group = t.group,
            state = t.state,
            job = t.job_label,
            done = t.files_done,
            total = t.files_total,
            failed = t.files_failed,
            bdone = t.bytes_done,
            btotal = t.bytes_total,
            created = t.created.to_rfc3339(),
            ended = t.ended.to_rfc3339(),
        );
        return Ok((subject, text));
    }
    if let Ok(t) = serde_json::from_str::<StageEnded>(payload) {
        let subject = format!(
            "[nlds] stage request {} ended: {} of {} staged",
            t.request_id, t.files_completed, t.files_total
        );
        let text = format!(
            "Stage request {id} of {user} in group {group} ended.\n\n\
             files: {done} of {total} staged, {failed} failed, {cancelled} cancelled\n\
             started: {created}\nended: {ended}\n\n\
             See `nlds stage --status {id}` for the details.\n",
            id = t.request_id,
            user = t.user,
            group = t.group,
            done = t.files_completed,
            total = t.files_total,
            failed = t.files_failed,
            cancelled = t.files_cancelled,
            created = t.created.to_rfc3339(),
            ended = t.ended.to_rfc3339(),
        );
        return Ok((subject, text));
    }
    if let Ok(p) = serde_json::from_str::<PolicyPassEnded>(payload) {
        let subject = format!(
            "[nlds] policy pass {} ({}) ended {}",
            p.id, p.kind, p.outcome
        );
        let text = format!(
            "Policy pass {id} ({kind}) ended {outcome}.\n\n\
             evaluated: {evaluated}\narchived files: {archived}\nevicted files: {evicted}\n\
             errors: {errors}\ncircuit breaker: {breaker}\nstarted: {started}\nended: {ended}\n\n\
             See `nlds admin policy status` for the details.\n",
            id = p.id,
            kind = p.kind,
            outcome = p.outcome,
            evaluated = p.evaluated,
            archived = p.archived_files,
            evicted = p.evicted_files,
            errors = p.errors,
            breaker = p.breaker.as_deref().unwrap_or("closed"),
            started = p.started.to_rfc3339(),
            ended = p.ended.to_rfc3339(),
        );
        return Ok((subject, text));
    }
    if let Ok(a) = serde_json::from_str::<OperatorAlert>(payload) {
        let subject = format!("[nlds alert] {}: {}", a.kind, a.subject);
        let text = format!(
            "{}\n\nkind: {}\nsubject: {}\nsince: {}\n",
            a.message,
            a.kind,
            a.subject,
            a.opened.to_rfc3339()
        );
        return Ok((subject, text));
    }
    Err("the notification's body is not one nlds knows".into())
}

/// Sends the e-mail about `payload` to `to` through `relay` (none: an error that says so).
pub async fn send(
    relay: Option<&Relay>,
    from: &str,
    to: &str,
    payload: &str,
) -> Result<(), String> {
    let Some(relay) = relay else {
        return Err("no SMTP relay configured ([notify] smtp_host)".into());
    };
    let (subject, text) = render(payload)?;
    let message = Message::builder()
        .from(
            from.parse()
                .map_err(|e| format!("[notify] from is not an address: {e}"))?,
        )
        .to(to
            .parse()
            .map_err(|e| format!("{to:?} is not an e-mail address: {e}"))?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(text)
        .map_err(|e| format!("cannot build the e-mail: {e}"))?;
    relay
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("the SMTP relay refused or failed: {e}"))
}
