//! Warnings of a transaction: those its steps report with their updates, and the notes the bus
//! runtime sends while a step is being retried (`monitor-put.start` with [`nlds_core::Payload::Warning`]).

use nlds_core::Envelope;
use nlds_core::workflow::retry_note::is_retry_note;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::{Monitor, Result, chunks};
use crate::db::{transaction_record, warning};

/// Adds `warnings` to the transaction record `record_id` (each text once).
pub(super) async fn add_warnings(
    c: &impl ConnectionTrait,
    record_id: i64,
    warnings: &[String],
) -> Result<()> {
    let rows = warnings.iter().map(|w| warning::ActiveModel {
        transaction_record_id: Set(record_id),
        text: Set(w.clone()),
        ..Default::default()
    });
    for chunk in chunks(rows) {
        warning::Entity::insert_many(chunk)
            .on_conflict_do_nothing_on([
                warning::Column::TransactionRecordId,
                warning::Column::Text,
            ])
            .exec_without_returning(c)
            .await?;
    }
    Ok(())
}

/// Does `warning` count towards COMPLETE_WITH_WARNINGS? A retry note does not: it stays as the
/// history of the outage, and the step it is about either succeeded or failed on its own.
pub(super) fn counts(warning: &str) -> bool {
    !is_retry_note(warning)
}

impl Monitor {
    /// `monitor-put.start` with [`nlds_core::Payload::Warning`]: adds the warnings to `env`'s
    /// transaction, changing no sub-record. A note about a transaction this monitor does not know,
    /// or another user's, is ignored (the API records every transaction before its steps run).
    pub(super) async fn warn(&self, env: &Envelope, warnings: &[String]) -> Result<()> {
        use transaction_record::Column as C;
        let record = transaction_record::Entity::find()
            .filter(C::TransactionId.eq(env.transaction_id.to_string()))
            .filter(C::User.eq(env.user.as_str()))
            .one(&self.db)
            .await?;
        match record {
            Some(r) => add_warnings(&self.db, r.id, warnings).await,
            None => {
                tracing::debug!(transaction_id = %env.transaction_id, "warning for an unknown transaction ignored");
                Ok(())
            }
        }
    }
}
