//! Accepting a put or get: the catalogue claims the transaction id and stages the transaction's
//! first messages in its outbox, in one database transaction. A crash of the API at any point of
//! accepting a request then leaves either nothing (the claim was not committed) or a
//! transaction that runs to completion (its record and submission are in the outbox); a client
//! that retries with the same id finds it, and nothing is submitted twice.

use chrono::Utc;
use nlds_core::message::RpcReply;
use nlds_core::workflow::submission_key;
use nlds_core::{Action, Envelope, Payload, RoutingKey, Worker};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, TransactionTrait, TryInsertResult};

use super::chunks::stage_chunked;
use super::{Catalogue, Result};
use crate::db::{bad_request, submission};

impl Catalogue {
    /// `catalog.get` / `catalog.getlist` ([`Payload::GetRequest`]): accepts the get.
    pub(super) async fn submit_get(&self, env: &Envelope) -> Result<RpcReply> {
        let txn = self.db.begin().await?;
        let mut chunked = false;
        let messages = if !claim(&txn, env).await? {
            Vec::new()
        } else if env.chunks > 0 {
            // The paths came in chunks: one submission per chunk, each a get of its paths.
            let Payload::GetRequest {
                filter,
                regex,
                target,
                overwrite,
                ..
            } = &env.payload
            else {
                return Err(bad_request("catalog.get needs a get request"));
            };
            let get = |paths| Payload::GetRequest {
                filter: filter.clone(),
                paths,
                regex: *regex,
                target: target.clone(),
                overwrite: *overwrite,
            };
            chunked = true;
            stage_chunked(&txn, env, get, None, None).await?;
            Vec::new()
        } else {
            first_messages(env, env.payload.clone(), None, None)?
        };
        self.commit_with(txn, messages).await?;
        if chunked {
            self.outbox.wake();
        }
        Ok(RpcReply::Submitted)
    }
}

/// Claims `env`'s transaction id for its submission: `true` the first time (inside `c`'s
/// database transaction, so the claim stands or falls with what is staged beside it).
pub(super) async fn claim(c: &impl ConnectionTrait, env: &Envelope) -> Result<bool> {
    let inserted = submission::Entity::insert(submission::ActiveModel {
        transaction_id: Set(env.transaction_id.to_string()),
        created: Set(Utc::now()),
        ..Default::default()
    })
    .on_conflict_do_nothing_on([submission::Column::TransactionId])
    .exec_without_returning(c)
    .await?;
    Ok(matches!(inserted, TryInsertResult::Inserted(n) if n > 0))
}

/// The first messages of an accepted put or get, in the order they are published: its record
/// with the monitor (`monitor-put.init`, under `label` and `holding_id`), then its submission
/// to the router (`route.<action>` carrying `payload`).
pub(super) fn first_messages(
    env: &Envelope,
    payload: Payload,
    label: Option<String>,
    holding_id: Option<i64>,
) -> Result<Vec<(RoutingKey, Envelope)>> {
    let key = submission_key(env.action).ok_or_else(|| {
        bad_request(format!(
            "a {} transaction is not submitted to the router",
            env.action.as_str()
        ))
    })?;
    let mut submit = env.clone();
    submit.payload = payload;
    Ok(vec![
        (
            RoutingKey::new(Worker::MonitorPut, Action::Init),
            env.reply(Payload::MonitorInit { label, holding_id }),
        ),
        (key, submit),
    ])
}
