//! Notifications (docs/NOTIFY.md): a user's channels and when to use them, the body a webhook
//! receives, and the check of a webhook URL. Shared by the monitor (which keeps and delivers
//! them), the API (which carries them) and the CLI (which sets and shows them).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::ApiAction;
use crate::state::State;

/// When a user's channels are used.
#[cfg_attr(
    feature = "db",
    derive(sea_orm::DeriveValueType),
    sea_orm(value_type = "String", from_str = "crate::db::parse")
)]
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum NotifyOn {
    /// Only when a transaction ends FAILED or COMPLETE_WITH_ERRORS (the default).
    #[default]
    Failure,
    /// Whenever a transaction ends.
    Always,
}

/// A way to notify.
#[cfg_attr(
    feature = "db",
    derive(sea_orm::DeriveValueType),
    sea_orm(value_type = "String", from_str = "crate::db::parse")
)]
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Channel {
    Email,
    Webhook,
}

/// Where a notification is in its delivery.
#[cfg_attr(
    feature = "db",
    derive(sea_orm::DeriveValueType),
    sea_orm(value_type = "String", from_str = "crate::db::parse")
)]
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Delivery {
    /// Not delivered yet: tried at `next_attempt_at`.
    Pending,
    /// Delivered (the receiver answered 2xx, or the relay took the e-mail).
    Sent,
    /// A dead letter: every try failed; `last_error` says why.
    Dead,
}

/// `PUT /api/v2/notify`: the caller's channels. An absent field keeps what is set; an empty
/// string removes that channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetNotify {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// An `https://` URL (or `http://` to loopback), without credentials in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<NotifyOn>,
    /// A new signing secret for the webhook that is set (the old one stops working at once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotate_secret: bool,
}

/// What `monitor.notify` is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyRequest {
    /// The caller's channels; with `secret`, the webhook's signing secret too.
    Show { secret: bool },
    /// Changes the caller's channels (a new webhook URL, or `rotate_secret`, gets a new
    /// secret: the answer says so, and the API server shows it).
    Set(SetNotify),
    /// Removes the caller's channels (pending notifications are still delivered).
    Clear,
    /// Operators: notifications in `state` (newest first, at most `limit`).
    List { state: Delivery, limit: u64 },
}

/// `GET /api/v2/notify`: the caller's channels and their notifications that could not be
/// delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotifySettings {
    pub email: Option<String>,
    pub webhook: Option<String>,
    pub on: NotifyOn,
    /// The webhook's signing secret: only in the answer to the `PUT` that set a new webhook (or
    /// rotated its secret), or to a `GET` with `secret=true`. Derived by the API server
    /// ([`webhook_secret`]); never in a message of the bus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// Which secret signs the webhook: the non-secret input it is derived from (with the
    /// operators' key, which never leaves the servers), changed by a new URL or a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_nonce: Option<String>,
    /// This answer made a new secret (a new webhook URL or a rotation): the API server shows it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub webhook_secret_new: bool,
    /// The webhook is signed with a secret an earlier version stored, which is not shown again
    /// (`nlds notify set --rotate-secret` replaces it with one that can be shown).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub webhook_secret_legacy: bool,
    /// The caller's most recent dead letters (newest first).
    #[serde(default)]
    pub dead_letters: Vec<NotificationSummary>,
}

/// One notification, as its owner or an operator sees it (never its signing secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationSummary {
    pub id: i64,
    /// What it is about: `transaction:<id>` or `alert:<kind>:<what>`.
    pub subject: String,
    pub channel: Channel,
    /// The address or URL.
    pub target: String,
    pub state: Delivery,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// The JSON body a webhook receives (and what an e-mail says) when a transaction ends. Names and
/// counts only: never file contents, paths or secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TransactionEnded {
    /// `transaction.ended`.
    pub event: String,
    pub transaction_id: Uuid,
    pub user: String,
    pub group: String,
    pub action: ApiAction,
    pub state: State,
    pub job_label: String,
    pub label: Option<String>,
    pub files_total: u64,
    pub files_done: u64,
    pub files_failed: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub created: DateTime<Utc>,
    pub ended: DateTime<Utc>,
}

/// The `event` of [`TransactionEnded`].
pub const TRANSACTION_ENDED: &str = "transaction.ended";

/// The JSON body a webhook receives (and what an e-mail says) when every file of a stage
/// request is final (COMPLETED, FAILED or CANCELLED).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageEnded {
    /// `stage.ended`.
    pub event: String,
    pub request_id: Uuid,
    pub user: String,
    pub group: String,
    pub files_total: u64,
    pub files_completed: u64,
    pub files_failed: u64,
    pub files_cancelled: u64,
    pub created: DateTime<Utc>,
    pub ended: DateTime<Utc>,
}

/// The `event` of [`StageEnded`].
pub const STAGE_ENDED: &str = "stage.ended";

/// The JSON body the operators' channels receive when a policy pass ends (not a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyPassEnded {
    /// `policy_pass.ended`.
    pub event: String,
    pub id: i64,
    /// `scheduled`, `manual`, `watermark`.
    pub kind: String,
    /// `completed`, `capped`, `breaker_open`, `failed`, ...
    pub outcome: String,
    pub evaluated: u64,
    pub archived_files: u64,
    pub evicted_files: u64,
    pub errors: u64,
    /// Why the circuit breaker opened, if it did.
    pub breaker: Option<String>,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
}

/// The `event` of [`PolicyPassEnded`].
pub const POLICY_PASS_ENDED: &str = "policy_pass.ended";

/// An operator alert (webhook body and e-mail text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OperatorAlert {
    /// `alert.opened`.
    pub event: String,
    /// `stalled_transaction`, `dead_letters`, `policy_breaker`, `backend_unreachable`.
    pub kind: String,
    /// What it is about (a transaction id, a queue, a backend).
    pub subject: String,
    pub message: String,
    pub opened: DateTime<Utc>,
}

/// The header carrying a webhook's signature: `sha256=<hex HMAC-SHA256>` of
/// `<timestamp>.<body>` under the receiver's secret.
pub const SIGNATURE_HEADER: &str = "X-NLDS-Signature";
/// The header carrying the Unix time (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "X-NLDS-Timestamp";

/// The fewest bytes a webhook key (`[notify] webhook_key_file`) may hold.
pub const WEBHOOK_KEY_MIN_BYTES: usize = 32;

/// The key that users' webhook secrets are derived from (`[notify] webhook_key_file`), read by
/// the API server (which shows a secret to its owner) and the delivery task (which signs with
/// it). Its `Debug` never shows it.
#[derive(Clone)]
pub struct WebhookKey(Vec<u8>);

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(<redacted>)")
    }
}

impl WebhookKey {
    /// A key of `bytes`; fewer than [`WEBHOOK_KEY_MIN_BYTES`] is refused (the error says how many).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, String> {
        let bytes = bytes.into();
        if bytes.len() < WEBHOOK_KEY_MIN_BYTES {
            return Err(format!(
                "the webhook key holds {} bytes: at least {WEBHOOK_KEY_MIN_BYTES} are needed \
                 (e.g. `openssl rand -hex 32`)",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    /// The signing secret of `user`'s webhook with `nonce` ([`webhook_secret`]).
    pub fn secret_for(&self, user: &str, nonce: &str) -> String {
        webhook_secret(&self.0, user, nonce)
    }
}

/// A user's webhook signing secret: the hex HMAC-SHA256, under `key`, of `webhook`, the user
/// and the user's nonce (each ended by a NUL byte). The same on the API server and in the
/// delivery task, so the secret is never stored nor sent between them.
pub fn webhook_secret(key: &[u8], user: &str, nonce: &str) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    for part in [b"webhook".as_slice(), user.as_bytes(), nonce.as_bytes()] {
        mac.update(part);
        mac.update(b"\0");
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadWebhook {
    #[error("the webhook URL must start with https:// (or http:// to a loopback host)")]
    Scheme,
    #[error(
        "the webhook URL must not carry credentials (user:password@): the server signs instead"
    )]
    Credentials,
    #[error("the webhook URL names no host")]
    NoHost,
    #[error(
        "the webhook URL is http:// to a host that is not loopback: use https:// (or ask the \
         operators to allow http)"
    )]
    Insecure,
    #[error("the webhook URL must not contain spaces or control characters")]
    Characters,
}

/// Checks a webhook URL: `https://`, or `http://` only to loopback unless `allow_http`; no
/// user or password in it; a host.
pub fn check_webhook_url(url: &str, allow_http: bool) -> Result<(), BadWebhook> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(BadWebhook::Characters);
    }
    let lower = url.to_ascii_lowercase();
    let (https, rest) = if let Some(rest) = lower.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = lower.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(BadWebhook::Scheme);
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(BadWebhook::Credentials);
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(BadWebhook::NoHost);
    }
    if !https && !allow_http && !is_loopback(host) {
        return Err(BadWebhook::Insecure);
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_secrets_are_derived_per_user_and_nonce() {
        let key = WebhookKey::new(vec![7u8; 32]).unwrap();
        let s = key.secret_for("alice", "n1");
        assert_eq!(s.len(), 64);
        assert_eq!(s, key.secret_for("alice", "n1"), "the same on every side");
        assert_ne!(s, key.secret_for("alice", "n2"));
        assert_ne!(s, key.secret_for("bob", "n1"));
        // The separators keep (user, nonce) pairs apart.
        assert_ne!(key.secret_for("ab", "c"), key.secret_for("a", "bc"));
        let other = WebhookKey::new(vec![8u8; 32]).unwrap();
        assert_ne!(s, other.secret_for("alice", "n1"));
        assert!(
            WebhookKey::new(vec![1u8; 31])
                .unwrap_err()
                .contains("31 bytes")
        );
        assert!(!format!("{key:?}").contains('7'));
    }

    #[test]
    fn webhook_urls_are_checked() {
        let ok = |u: &str| check_webhook_url(u, false);
        assert_eq!(ok("https://hooks.example.org/nlds?x=1"), Ok(()));
        assert_eq!(ok("http://127.0.0.1:8080/hook"), Ok(()));
        assert_eq!(ok("http://localhost/hook"), Ok(()));
        assert_eq!(ok("http://[::1]:9/hook"), Ok(()));
        assert_eq!(ok("http://example.org/hook"), Err(BadWebhook::Insecure));
        assert_eq!(check_webhook_url("http://example.org/hook", true), Ok(()));
        assert_eq!(ok("ftp://example.org/"), Err(BadWebhook::Scheme));
        assert_eq!(ok("example.org/hook"), Err(BadWebhook::Scheme));
        assert_eq!(
            ok("https://user:pw@example.org/hook"),
            Err(BadWebhook::Credentials)
        );
        assert_eq!(
            ok("https://user@example.org/"),
            Err(BadWebhook::Credentials)
        );
        assert_eq!(ok("https:///hook"), Err(BadWebhook::NoHost));
        assert_eq!(ok("https://a b/"), Err(BadWebhook::Characters));
        // A `@` after the host is part of the path, not credentials.
        assert_eq!(ok("https://example.org/a@b"), Ok(()));
    }
}
