//! `[notify]`: notifications when a transaction ends (docs/NOTIFY.md): the SMTP relay e-mail
//! goes through, how webhooks are delivered and retried, and the operators' alerts.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// `[notify]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifyConfig {
    /// The SMTP relay every e-mail goes through; none: e-mail notifications are dead letters
    /// ("no SMTP relay configured") and webhooks still work.
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    /// How the connection to the relay is protected: `starttls` (the default), `tls` (implicit,
    /// port 465) or `none` (a relay on the same host or network only).
    pub smtp_tls: SmtpTls,
    /// The relay's login, if it wants one; the password only from a file (a secret mount).
    pub smtp_user: Option<String>,
    pub smtp_password_file: Option<PathBuf>,
    /// The sender of every e-mail.
    pub from: String,
    /// Seconds a webhook receiver has to answer one delivery.
    pub webhook_timeout_secs: u64,
    /// Whether webhook URLs may be plain `http://` to any host (else only to loopback).
    pub allow_http: bool,
    /// Tries per notification; after the last one it is a dead letter.
    pub attempts: u32,
    /// The wait before the second try (milliseconds), doubled after each failed try up to
    /// `backoff_max_ms`.
    pub backoff_ms: u64,
    pub backoff_max_ms: u64,
    /// How often the delivery task looks for notifications that are due (milliseconds).
    pub poll_ms: u64,
    /// Notifications delivered at once by one delivery task.
    pub batch: u64,
    /// An operator alert names a transaction not updated for this long (seconds; 0: never).
    pub stalled_after_secs: u64,
    /// Seconds between two checks for operator alerts (0: no checks).
    pub alert_check_secs: u64,
    /// Where operator alerts go: e-mail addresses and a webhook, whose signing secret is read
    /// from `operator_webhook_secret_file` (never from the database or a message).
    pub operator_emails: Vec<String>,
    pub operator_webhook: Option<String>,
    pub operator_webhook_secret_file: Option<PathBuf>,
    /// The key users' webhook signing secrets are derived from (at least 32 bytes; its
    /// whitespace-trimmed content is the key), read by the API server, which shows a user their
    /// secret, and by the processes that deliver notifications (the monitor's), which sign with
    /// it: the secrets are never stored nor sent over the bus. The embedded mode makes one in
    /// its data directory (`webhook.key`, mode 0600) unless this is set. Unset in the
    /// distributed mode: users cannot set webhooks. Changing it changes every user's secret.
    pub webhook_key_file: Option<PathBuf>,
    /// Inline form of `smtp_password_file` (tests and development only).
    #[serde(skip_serializing)]
    pub smtp_password: Option<SecretString>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP upgraded with STARTTLS (required: a relay that does not offer it is an error).
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No TLS at all.
    None,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            smtp_host: None,
            smtp_port: 587,
            smtp_tls: SmtpTls::Starttls,
            smtp_user: None,
            smtp_password_file: None,
            from: "nlds@localhost".into(),
            webhook_timeout_secs: 10,
            allow_http: false,
            attempts: 8,
            backoff_ms: 30_000,
            backoff_max_ms: 3_600_000,
            poll_ms: 2000,
            batch: 32,
            stalled_after_secs: 24 * 3600,
            alert_check_secs: 300,
            operator_emails: Vec::new(),
            operator_webhook: None,
            operator_webhook_secret_file: None,
            webhook_key_file: None,
            smtp_password: None,
        }
    }
}

impl NotifyConfig {
    /// The SMTP password, from `smtp_password_file` if set; `None` without either.
    pub fn smtp_password(&self) -> std::io::Result<Option<String>> {
        use secrecy::ExposeSecret as _;
        match (&self.smtp_password_file, &self.smtp_password) {
            (Some(p), _) => read_trimmed(p, "SMTP password").map(Some),
            (None, Some(s)) => Ok(Some(s.expose_secret().to_owned())),
            (None, None) => Ok(None),
        }
    }

    /// The operators' webhook signing secret, if a file names one.
    pub fn operator_webhook_secret(&self) -> std::io::Result<Option<String>> {
        self.operator_webhook_secret_file
            .as_ref()
            .map(|p| read_trimmed(p, "operator webhook secret"))
            .transpose()
    }

    /// The key users' webhook secrets are derived from (`webhook_key_file`, trimmed), if
    /// set; the error names the file.
    pub fn webhook_key(&self) -> std::io::Result<Option<String>> {
        self.webhook_key_file
            .as_ref()
            .map(|p| read_trimmed(p, "webhook key"))
            .transpose()
    }

    /// The wait before try `attempt + 1` after `attempt` failed tries (1 or more): capped
    /// exponential back-off.
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(30);
        let ms = self
            .backoff_ms
            .saturating_mul(factor)
            .min(self.backoff_max_ms.max(self.backoff_ms));
        std::time::Duration::from_millis(ms)
    }
}

fn read_trimmed(p: &PathBuf, what: &str) -> std::io::Result<String> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot read the {what} file {}: {e}", p.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = NotifyConfig {
            backoff_ms: 30,
            backoff_max_ms: 100,
            ..Default::default()
        };
        let secs: Vec<u128> = (1..=5).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(secs, [30, 60, 100, 100, 100]);
    }
}
