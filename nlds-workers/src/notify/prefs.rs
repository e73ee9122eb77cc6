//! `monitor.notify`: a user's channels (show, set, clear) and the operators' list of
//! notifications. A webhook's signing secret is neither made nor answered here: a new URL (or a
//! rotation) stores a new random nonce, which is not secret, and the API server and the delivery
//! task each derive the secret from it under `[notify] webhook_key_file`
//! ([`nlds_core::notify::webhook_secret`]), so no secret crosses the bus. A secret stored by an
//! earlier version (`webhook_secret`) is still used to sign until its owner rotates it, and is
//! never answered.

use chrono::Utc;
use nlds_core::notify::{
    Delivery, NotificationSummary, NotifyOn, NotifyRequest, NotifySettings, SetNotify,
    check_webhook_url,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};

use crate::db::{OpError, bad_request, notification, notify_pref};

/// Dead letters shown to their owner.
const OWN_DEAD_LETTERS: u64 = 20;

/// What `monitor.notify` answers.
pub enum Answer {
    Settings(NotifySettings),
    List(Vec<NotificationSummary>),
}

/// Answers `req` for `user` (the list: for operators, checked by the server as for every
/// `monitor.admin` query).
pub async fn answer(
    db: &sea_orm::DatabaseConnection,
    user: &str,
    allow_http: bool,
    req: &NotifyRequest,
) -> Result<Answer, OpError> {
    match req {
        // Whether to show the secret is the API server's to decide: it derives it.
        NotifyRequest::Show { .. } => Ok(Answer::Settings(show(db, user, false).await?)),
        NotifyRequest::Set(change) => {
            Ok(Answer::Settings(set(db, user, change, allow_http).await?))
        }
        NotifyRequest::Clear => {
            notify_pref::Entity::delete_by_id(user.to_owned())
                .exec(db)
                .await?;
            Ok(Answer::Settings(show(db, user, false).await?))
        }
        NotifyRequest::List { state, limit } => {
            Ok(Answer::List(list(db, None, *state, *limit).await?))
        }
    }
}

/// `user`'s channels; `fresh`: the answer made a new secret (for the server to show).
async fn show(c: &impl ConnectionTrait, user: &str, fresh: bool) -> Result<NotifySettings, DbErr> {
    let pref = notify_pref::Entity::find_by_id(user.to_owned())
        .one(c)
        .await?;
    let dead_letters = list(c, Some(user), Delivery::Dead, OWN_DEAD_LETTERS).await?;
    Ok(match pref {
        Some(p) => NotifySettings {
            webhook_secret_new: fresh && p.webhook_nonce.is_some(),
            webhook_secret_legacy: p.webhook_url.is_some()
                && p.webhook_nonce.is_none()
                && p.webhook_secret.is_some(),
            webhook_nonce: p.webhook_nonce.filter(|_| p.webhook_url.is_some()),
            email: p.email,
            webhook: p.webhook_url,
            on: p.on,
            webhook_secret: None,
            dead_letters,
        },
        None => NotifySettings {
            dead_letters,
            ..Default::default()
        },
    })
}

async fn set(
    db: &sea_orm::DatabaseConnection,
    user: &str,
    change: &SetNotify,
    allow_http: bool,
) -> Result<NotifySettings, OpError> {
    let email = change.email.as_deref().map(str::trim);
    if let Some(e) = email.filter(|e| !e.is_empty())
        && !plausible_address(e)
    {
        return Err(bad_request(format!("{e:?} is not an e-mail address")));
    }
    let webhook = change.webhook.as_deref().map(str::trim);
    if let Some(w) = webhook.filter(|w| !w.is_empty()) {
        check_webhook_url(w, allow_http).map_err(|e| bad_request(e.to_string()))?;
    }
    if email.is_none() && webhook.is_none() && change.on.is_none() && !change.rotate_secret {
        return Err(bad_request(
            "nothing to set: give an e-mail address, a webhook URL, when to notify or a secret \
             rotation",
        ));
    }
    let txn = db.begin().await?;
    let old = notify_pref::Entity::find_by_id(user.to_owned())
        .one(&txn)
        .await?;
    let keep = |new: Option<&str>, old: Option<String>| match new {
        Some("") => None,
        Some(v) => Some(v.to_owned()),
        None => old,
    };
    let old_webhook = old.as_ref().and_then(|o| o.webhook_url.clone());
    let webhook_url = keep(webhook, old_webhook.clone());
    if change.rotate_secret && webhook_url.is_none() {
        return Err(bad_request(
            "no webhook to rotate the secret of: set one with --webhook URL",
        ));
    }
    // A new URL or a rotation gets a new nonce (so a new secret, which the server shows in this
    // answer), and drops a secret an earlier version stored.
    let fresh = webhook_url.is_some() && (webhook_url != old_webhook || change.rotate_secret);
    let (nonce, legacy) = match (&webhook_url, fresh) {
        (None, _) => (None, None),
        (Some(_), true) => (Some(hex::encode(rand::random::<[u8; 16]>())), None),
        (Some(_), false) => (
            old.as_ref().and_then(|o| o.webhook_nonce.clone()),
            old.as_ref().and_then(|o| o.webhook_secret.clone()),
        ),
    };
    let model = notify_pref::ActiveModel {
        user: Set(user.to_owned()),
        email: Set(keep(email, old.as_ref().and_then(|o| o.email.clone()))),
        webhook_url: Set(webhook_url),
        webhook_secret: Set(legacy),
        webhook_nonce: Set(nonce),
        on: Set(change
            .on
            .or(old.as_ref().map(|o| o.on))
            .unwrap_or(NotifyOn::Failure)),
        updated: Set(Utc::now()),
    };
    notify_pref::Entity::insert(model)
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(notify_pref::Column::User)
                .update_columns([
                    notify_pref::Column::Email,
                    notify_pref::Column::WebhookUrl,
                    notify_pref::Column::WebhookSecret,
                    notify_pref::Column::WebhookNonce,
                    notify_pref::Column::On,
                    notify_pref::Column::Updated,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    let answer = show(&txn, user, fresh).await?;
    txn.commit().await?;
    Ok(answer)
}

/// `local@domain` with something on each side: the relay decides the rest.
fn plausible_address(a: &str) -> bool {
    match a.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !a.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// Notifications in `state` (of `user`, or everyone's), newest first.
pub async fn list(
    c: &impl ConnectionTrait,
    user: Option<&str>,
    state: Delivery,
    limit: u64,
) -> Result<Vec<NotificationSummary>, DbErr> {
    let mut q = notification::Entity::find()
        .filter(notification::Column::State.eq(state))
        .order_by_desc(notification::Column::Updated)
        .order_by_desc(notification::Column::Id)
        .limit(limit.clamp(1, 1000));
    if let Some(u) = user {
        q = q.filter(notification::Column::User.eq(u));
    }
    Ok(q.all(c)
        .await?
        .into_iter()
        .map(|n| NotificationSummary {
            id: n.id,
            subject: n.subject,
            channel: n.channel,
            target: n.target,
            state: n.state,
            attempts: u32::try_from(n.attempts).unwrap_or(0),
            last_error: n.last_error,
            created: n.created,
            updated: n.updated,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(plausible_address("a@b.org"));
        assert!(!plausible_address("a.org"));
        assert!(!plausible_address("@b"));
        assert!(!plausible_address("a@"));
        assert!(!plausible_address("a b@c"));
    }
}
