//! The delivery task: runs beside the monitor role (one per monitor process), apart from its
//! handler, so a slow or unreachable receiver never holds up a state update.
//!
//! Each round claims the notifications that are due: on PostgreSQL with
//! `FOR UPDATE SKIP LOCKED`, so two processes never take the same row; a claim moves the row's
//! `next_attempt_at` past the longest a delivery can take (a lease), and the transaction ends
//! before anything is sent, so no database lock or connection is held while a receiver answers.
//! A process that dies mid-delivery leaves the row to be tried again when its lease ends (at
//! least once: receivers deduplicate by the subject). Then every claimed row is delivered at
//! once, and its outcome recorded: `sent`; or one more attempt, due after capped exponential
//! back-off; or, after the last attempt, `dead` with the last error.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use nlds_bus::Bus;
use nlds_core::notify::{Channel, Delivery, WebhookKey};
use nlds_settings::NotifyConfig;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use tokio_util::sync::CancellationToken;

use super::{alerts, email, webhook};
use crate::db::{notification, notify_pref};

/// Delivers the notifications the monitor decided on, and checks for operator alerts.
pub struct Notifier {
    db: DatabaseConnection,
    cfg: NotifyConfig,
    http: reqwest::Client,
    smtp: Option<email::Relay>,
    /// The operators' webhook secret (`[notify] operator_webhook_secret_file`).
    operator_secret: Option<String>,
    /// The key users' webhook secrets are derived from (`[notify] webhook_key_file`).
    webhook_key: Option<WebhookKey>,
    /// The bus, asked how many dead letters wait (operator alerts).
    bus: Option<Arc<dyn Bus>>,
    /// The backends probed for operator alerts, by name.
    probes: Vec<(String, alerts::Probe)>,
}

impl Notifier {
    /// A delivery task over `db` with `cfg`; fails on settings it cannot use (an SMTP host
    /// that is not a name, a secret or key file that cannot be read, a key too short).
    pub fn new(db: DatabaseConnection, cfg: NotifyConfig) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(cfg.webhook_timeout_secs.max(1));
        let webhook_key = super::webhook_key(&cfg)?;
        Ok(Self {
            webhook_key,
            http: webhook::client(timeout)?,
            smtp: email::relay(&cfg, timeout)?,
            operator_secret: cfg.operator_webhook_secret()?,
            bus: None,
            probes: Vec::new(),
            db,
            cfg,
        })
    }

    /// Asks `bus` for its dead-letter queues' depths (operator alerts).
    pub fn with_bus(mut self, bus: Arc<dyn Bus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Probes `probe` (named `name`, e.g. "object store") at each alert check.
    pub fn with_probe(mut self, name: impl Into<String>, probe: alerts::Probe) -> Self {
        self.probes.push((name.into(), probe));
        self
    }

    /// Delivers and checks until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let poll = Duration::from_millis(self.cfg.poll_ms.max(10));
        let check = Duration::from_secs(self.cfg.alert_check_secs);
        let mut last_check: Option<tokio::time::Instant> = None;
        loop {
            if !check.is_zero() && last_check.is_none_or(|t| t.elapsed() >= check) {
                last_check = Some(tokio::time::Instant::now());
                if let Err(e) =
                    alerts::check(&self.db, self.bus.as_ref(), &self.probes, &self.cfg).await
                {
                    tracing::warn!(error = %e, "operator alert check failed; retrying");
                }
            }
            match self.round().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(notifications = n, "notifications delivered or retried"),
                Err(e) => tracing::warn!(error = %e, "notification delivery failed; retrying"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// One round: claims what is due, delivers it, records the outcomes; returns how many.
    pub async fn round(&self) -> Result<usize, DbErr> {
        let rows = self.claim().await?;
        let outcomes = futures::future::join_all(rows.iter().map(|r| self.deliver(r))).await;
        for (row, outcome) in rows.iter().zip(outcomes) {
            self.record(row, outcome).await?;
        }
        Ok(rows.len())
    }

    /// The rows that are due, each leased for longer than a delivery can take.
    async fn claim(&self) -> Result<Vec<notification::Model>, DbErr> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let mut q = notification::Entity::find()
            .filter(notification::Column::State.eq(Delivery::Pending))
            .filter(notification::Column::NextAttemptAt.lte(now))
            .order_by_asc(notification::Column::NextAttemptAt)
            .order_by_asc(notification::Column::Id)
            .limit(self.cfg.batch.max(1));
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = q.all(&txn).await?;
        if !rows.is_empty() {
            let lease = chrono::Duration::seconds(
                i64::try_from(self.cfg.webhook_timeout_secs.max(1) * 3 + 60).unwrap_or(3600),
            );
            notification::Entity::update_many()
                .col_expr(
                    notification::Column::NextAttemptAt,
                    Expr::value(now + lease),
                )
                .filter(notification::Column::Id.is_in(rows.iter().map(|r| r.id)))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(rows)
    }

    /// Sends one notification; the error is what to record.
    async fn deliver(&self, row: &notification::Model) -> Result<(), String> {
        match row.channel {
            Channel::Email => {
                email::send(
                    self.smtp.as_ref(),
                    &self.cfg.from,
                    &row.target,
                    &row.payload,
                )
                .await
            }
            Channel::Webhook => {
                let secret = match &row.user {
                    Some(user) => self.secret_of(user).await?,
                    None => self.operator_secret.clone(),
                };
                webhook::post(&self.http, &row.target, secret.as_deref(), &row.payload).await
            }
        }
    }

    /// The signing secret of `user`'s webhook, derived from the nonce read at each delivery (so
    /// a rotation counts at once) under `[notify] webhook_key_file`; a secret an earlier version
    /// stored while its owner has not rotated. Never unsigned: without either, the delivery fails.
    async fn secret_of(&self, user: &str) -> Result<Option<String>, String> {
        let pref = notify_pref::Entity::find_by_id(user.to_owned())
            .one(&self.db)
            .await
            .map_err(|e| format!("cannot read the webhook's nonce: {e}"))?;
        let Some(pref) = pref.filter(|p| p.webhook_url.is_some()) else {
            return Err("the webhook was removed: nothing to sign with".into());
        };
        match (pref.webhook_nonce, pref.webhook_secret) {
            (Some(nonce), _) => match &self.webhook_key {
                Some(key) => Ok(Some(key.secret_for(user, &nonce))),
                None => Err("no [notify] webhook_key_file on this process: cannot sign".into()),
            },
            (None, Some(legacy)) => Ok(Some(legacy)),
            (None, None) => Err("the webhook has no secret to sign with".into()),
        }
    }

    async fn record(
        &self,
        row: &notification::Model,
        outcome: Result<(), String>,
    ) -> Result<(), DbErr> {
        let now = Utc::now();
        let attempts = row.attempts.saturating_add(1);
        let mut change = notification::ActiveModel {
            id: Set(row.id),
            attempts: Set(attempts),
            updated: Set(now),
            ..Default::default()
        };
        match outcome {
            Ok(()) => {
                change.state = Set(Delivery::Sent);
                change.last_error = Set(None);
                tracing::info!(notification = row.id, subject = %row.subject,
                    channel = %row.channel, attempts, "notification delivered");
            }
            Err(e) if u32::try_from(attempts).unwrap_or(u32::MAX) >= self.cfg.attempts.max(1) => {
                change.state = Set(Delivery::Dead);
                tracing::warn!(notification = row.id, subject = %row.subject,
                    channel = %row.channel, attempts, error = %e,
                    "notification is a dead letter after its last attempt");
                change.last_error = Set(Some(e));
            }
            Err(e) => {
                let wait = self
                    .cfg
                    .backoff(u32::try_from(attempts).unwrap_or(u32::MAX));
                let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
                change.next_attempt_at = Set(now + wait);
                tracing::info!(notification = row.id, subject = %row.subject,
                    channel = %row.channel, attempts, error = %e,
                    "notification not delivered; trying again later");
                change.last_error = Set(Some(e));
            }
        }
        notification::Entity::update(change).exec(&self.db).await?;
        Ok(())
    }
}
