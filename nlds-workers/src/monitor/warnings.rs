//! Warnings of a transaction: those its steps report with their updates, and the notes the bus
//! runtime sends while a step is being retried (`monitor-put.start` with [`nlds_core::Payload::Warning`]).

use nlds_core::waiting::Retrying;
use nlds_core::workflow::retry_note::is_retry_note;
use nlds_core::{Envelope, State};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait,
};

use super::{Monitor, Result, chunks};
use crate::db::{sub_record, transaction_record, warning};

/// Adds `warnings` to the transaction record `record_id` (each text once); how many were new.
pub(super) async fn add_warnings(
    c: &impl ConnectionTrait,
    record_id: i64,
    warnings: &[String],
) -> Result<u64> {
    let mut added = 0;
    let rows = warnings.iter().map(|w| warning::ActiveModel {
        transaction_record_id: Set(record_id),
        text: Set(w.clone()),
        ..Default::default()
    });
    for chunk in chunks(rows) {
        added += super::inserted(
            warning::Entity::insert_many(chunk)
                .on_conflict_do_nothing_on([
                    warning::Column::TransactionRecordId,
                    warning::Column::Text,
                ])
                .exec_without_returning(c)
                .await?,
        );
    }
    Ok(added)
}

/// Does `warning` count towards COMPLETE_WITH_WARNINGS? A retry note does not: it stays as the
/// history of the outage, and the step it is about either succeeded or failed on its own.
pub(super) fn counts(warning: &str) -> bool {
    !is_retry_note(warning)
}

impl Monitor {
    /// `monitor-put.start` with [`nlds_core::Payload::Warning`]: adds the warnings to `env`'s
    /// transaction and keeps `retry` on the batch's sub-record (why it waits, until its state
    /// changes), in one database transaction. A note about a transaction this monitor does not
    /// know, or another user's, is ignored (the API records every transaction before its steps
    /// run).
    pub(super) async fn warn(
        &self,
        env: &Envelope,
        warnings: &[String],
        retry: Option<&Retrying>,
    ) -> Result<()> {
        use transaction_record::Column as C;
        let txn = self.db.begin().await?;
        let record = transaction_record::Entity::find()
            .filter(C::TransactionId.eq(env.transaction_id.to_string()))
            .filter(C::User.eq(env.user.as_str()))
            .one(&txn)
            .await?;
        let Some(r) = record else {
            tracing::debug!(transaction_id = %env.transaction_id, "warning for an unknown transaction ignored");
            return Ok(());
        };
        let mut changed = add_warnings(&txn, r.id, warnings).await? > 0;
        if let Some(retry) = retry {
            let json = serde_json::to_string(retry)
                .map_err(|e| crate::db::internal(format!("cannot encode a retry: {e}")))?;
            // Only a batch still in a state that is not final waits for its retry.
            let unfinished: Vec<State> = State::ALL.into_iter().filter(|s| !s.is_final()).collect();
            let updated = sub_record::Entity::update_many()
                .col_expr(sub_record::Column::Retrying, Expr::value(json))
                .filter(sub_record::Column::TransactionRecordId.eq(r.id))
                .filter(sub_record::Column::SubId.eq(env.sub_id.to_string()))
                .filter(sub_record::Column::State.is_in(unfinished))
                .exec(&txn)
                .await?;
            changed |= updated.rows_affected > 0;
        }
        if changed {
            // What the status shows changed: its live-status events carry a newer id.
            transaction_record::Entity::update_many()
                .col_expr(C::Updated, Expr::value(chrono::Utc::now()))
                .filter(C::Id.eq(r.id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}
