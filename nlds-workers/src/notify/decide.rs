//! Deciding to notify: when the monitor's update makes a transaction final (or the catalogue's
//! change ends a stage request), the notifications its owner wants are inserted in that
//! change's database transaction, so that a crash loses none and a redelivered change adds none
//! (unique per subject, channel and target).

use chrono::Utc;
use nlds_core::State;
use nlds_core::api::TransactionStatus;
use nlds_core::notify::{
    Channel, Delivery, NotifyOn, POLICY_PASS_ENDED, PolicyPassEnded, STAGE_ENDED, StageEnded,
    TRANSACTION_ENDED, TransactionEnded,
};
use nlds_core::stage::StageState;
use nlds_settings::NotifyConfig;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Set};

use crate::db::{
    notification, notify_pref, policy_pass, stage_file, stage_request, transaction_record,
};

/// The channels of `record`'s owner, if the owner has any and `record` may want them: looked up
/// before the monitor derives the transaction's state (which costs more).
pub async fn channels_of(
    c: &impl ConnectionTrait,
    record: &transaction_record::Model,
) -> Result<Option<notify_pref::Model>, DbErr> {
    notify_pref::Entity::find_by_id(record.user.clone())
        .one(c)
        .await
}

/// Whether a transaction in `state` with `files_failed` failed files ended badly.
pub fn is_failure(state: State, files_failed: u64) -> bool {
    state.is_failed() || state == State::CompleteWithErrors || files_failed > 0
}

/// Whether a transaction whose derived state is `state` has ended.
pub fn has_ended(state: State) -> bool {
    state.is_final() && state != State::Split
}

/// Inserts the notifications of `status` (a transaction that just ended) on `pref`'s channels,
/// if `pref` asks for them (or the request did: `record.notify`).
pub async fn transaction_ended(
    c: &impl ConnectionTrait,
    record: &transaction_record::Model,
    status: &TransactionStatus,
    pref: &notify_pref::Model,
) -> Result<(), DbErr> {
    let wanted = record.notify
        || pref.on == NotifyOn::Always
        || is_failure(status.state, status.files_failed);
    if !wanted {
        return Ok(());
    }
    let now = Utc::now();
    let body = TransactionEnded {
        event: TRANSACTION_ENDED.into(),
        transaction_id: status.transaction_id,
        user: status.user.clone(),
        group: status.group.clone(),
        action: status.api_action,
        state: status.state,
        job_label: status.job_label.clone(),
        label: status.label.clone(),
        files_total: status.files_total,
        files_done: status.files_done,
        files_failed: status.files_failed,
        bytes_total: status.bytes_total,
        bytes_done: status.bytes_done,
        created: status.created,
        ended: now,
    };
    let payload = serde_json::to_string(&body)
        .map_err(|e| DbErr::Custom(format!("cannot encode a notification: {e}")))?;
    let subject = format!("transaction:{}", status.transaction_id);
    on_channels(c, pref, &subject, &payload, now).await
}

/// Inserts the notifications of stage request `stage_id` if every file of it is final and its
/// owner wants them (called in the database transaction of the change that may have ended it).
pub async fn stage_ended(c: &impl ConnectionTrait, stage_id: i64) -> Result<(), DbErr> {
    let Some(request) = stage_request::Entity::find_by_id(stage_id).one(c).await? else {
        return Ok(());
    };
    let Some(pref) = notify_pref::Entity::find_by_id(request.user.clone())
        .one(c)
        .await?
    else {
        return Ok(());
    };
    let states: Vec<StageState> = stage_file::Entity::find()
        .select_only()
        .column(stage_file::Column::State)
        .filter(stage_file::Column::StageId.eq(stage_id))
        .into_tuple()
        .all(c)
        .await?;
    if states.iter().any(|s| !s.is_final()) {
        return Ok(());
    }
    let count = |state: StageState| states.iter().filter(|s| **s == state).count() as u64;
    let failed = count(StageState::Failed);
    if pref.on != NotifyOn::Always && failed == 0 {
        return Ok(());
    }
    let now = Utc::now();
    let body = StageEnded {
        event: STAGE_ENDED.into(),
        request_id: crate::db::stored_uuid("stage_request", "request_id", &request.request_id)?,
        user: request.user.clone(),
        group: request.group.clone(),
        files_total: states.len() as u64,
        files_completed: count(StageState::Completed),
        files_failed: failed,
        files_cancelled: count(StageState::Cancelled),
        created: request.created,
        ended: now,
    };
    let payload = serde_json::to_string(&body)
        .map_err(|e| DbErr::Custom(format!("cannot encode a notification: {e}")))?;
    let subject = format!("stage:{}", request.request_id);
    on_channels(c, &pref, &subject, &payload, now).await
}

/// Inserts one notification of `payload` per channel of `pref`.
async fn on_channels(
    c: &impl ConnectionTrait,
    pref: &notify_pref::Model,
    subject: &str,
    payload: &str,
    now: chrono::DateTime<Utc>,
) -> Result<(), DbErr> {
    let targets = [
        (Channel::Email, pref.email.clone()),
        (Channel::Webhook, pref.webhook_url.clone()),
    ];
    for (channel, target) in targets {
        let Some(target) = target.filter(|t| !t.is_empty()) else {
            continue;
        };
        insert(
            c,
            notification::ActiveModel {
                subject: Set(subject.to_owned()),
                channel: Set(channel),
                target: Set(target),
                user: Set(Some(pref.user.clone())),
                payload: Set(payload.to_owned()),
                ..pending(now)
            },
        )
        .await?;
    }
    Ok(())
}

/// The operators' channels (`[notify] operator_emails`, `operator_webhook`).
#[derive(Debug, Clone, Default)]
pub struct Operators {
    pub emails: Vec<String>,
    pub webhook: Option<String>,
}

impl Operators {
    pub fn of(cfg: &NotifyConfig) -> Self {
        Self {
            emails: cfg.operator_emails.clone(),
            webhook: cfg.operator_webhook.clone(),
        }
    }

    /// Inserts one notification of `payload` per operator channel (unsigned by a user's
    /// secret: the operators' own signs it).
    pub async fn notify(
        &self,
        c: &impl ConnectionTrait,
        subject: &str,
        payload: &str,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), DbErr> {
        let targets = self
            .emails
            .iter()
            .map(|e| (Channel::Email, e.clone()))
            .chain(self.webhook.iter().map(|w| (Channel::Webhook, w.clone())));
        for (channel, target) in targets {
            insert(
                c,
                notification::ActiveModel {
                    subject: Set(subject.to_owned()),
                    channel: Set(channel),
                    target: Set(target),
                    user: Set(None),
                    payload: Set(payload.to_owned()),
                    ..pending(now)
                },
            )
            .await?;
        }
        Ok(())
    }
}

/// Inserts the operators' notifications of policy pass `p`, which just ended (in the database
/// transaction that records its end).
pub async fn policy_pass_ended(
    c: &impl ConnectionTrait,
    ops: &Operators,
    p: &policy_pass::Model,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    let body = PolicyPassEnded {
        event: POLICY_PASS_ENDED.into(),
        id: p.id,
        kind: p.kind.clone(),
        outcome: p.outcome.clone(),
        evaluated: n(p.evaluated),
        archived_files: n(p.archived_files),
        evicted_files: n(p.evicted_files),
        errors: n(p.errors),
        breaker: p.breaker.clone(),
        started: p.started,
        ended: p.ended.unwrap_or(now),
    };
    let payload = serde_json::to_string(&body)
        .map_err(|e| DbErr::Custom(format!("cannot encode a notification: {e}")))?;
    ops.notify(c, &format!("policy_pass:{}", p.id), &payload, now)
        .await
}

/// A new notification, due now.
pub fn pending(now: chrono::DateTime<Utc>) -> notification::ActiveModel {
    notification::ActiveModel {
        state: Set(Delivery::Pending),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_error: Set(None),
        created: Set(now),
        updated: Set(now),
        ..Default::default()
    }
}

/// Inserts `row` unless its subject, channel and target are already there.
pub async fn insert(c: &impl ConnectionTrait, row: notification::ActiveModel) -> Result<(), DbErr> {
    notification::Entity::insert(row)
        .on_conflict_do_nothing_on([
            notification::Column::Subject,
            notification::Column::Channel,
            notification::Column::Target,
        ])
        .exec_without_returning(c)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_ends() {
        assert!(is_failure(State::Failed, 0));
        assert!(is_failure(State::CompleteWithErrors, 0));
        assert!(is_failure(State::Complete, 1));
        assert!(!is_failure(State::Complete, 0));
        assert!(!is_failure(State::CompleteWithWarnings, 0));
        assert!(has_ended(State::Complete));
        assert!(!has_ended(State::Split));
        assert!(!has_ended(State::Routing));
    }
}
