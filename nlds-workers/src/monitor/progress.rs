//! Progress reports: the bytes a transfer role moved so far of a batch it is still uploading or
//! restoring (`monitor-put.progress` with [`nlds_core::Payload::Progress`], docs/LIVE.md).
//!
//! Reports are best effort and cheap: one conditional `UPDATE` of the batch's sub-record, and
//! the transaction's `updated` time (the id of its live-status events) moved only if it stored
//! something. A report about a batch that is final (or failing), one of no more bytes than
//! already stored (a late or repeated one), or one about an unknown transaction or another
//! user's changes nothing; a report that cannot be stored is dropped, never retried or
//! dead-lettered: the next one, or the batch's final update, says more.

use chrono::Utc;
use nlds_bus::Outcome;
use nlds_core::{Envelope, Payload, State};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};

use super::{Monitor, Result, to_i64};
use crate::db::{sub_record, transaction_record};

/// The states of a batch whose transfer may still report progress: neither final nor failing.
fn in_flight() -> Vec<State> {
    State::ALL
        .into_iter()
        .filter(|s| !s.is_final() && !s.is_failed())
        .collect()
}

impl Monitor {
    /// `monitor-put.progress`: stores the report, announces the change if it stored one, and
    /// never fails (see the module documentation).
    pub(super) async fn progress(&self, env: &Envelope) -> Outcome {
        let Payload::Progress { bytes } = env.payload else {
            tracing::warn!(transaction_id = %env.transaction_id,
                "monitor-put.progress without a progress report ignored");
            return Outcome::none();
        };
        match self.store_progress(env, bytes).await {
            Ok(true) => self.announce(env.transaction_id).await,
            Ok(false) => {}
            Err(e) => tracing::debug!(transaction_id = %env.transaction_id,
                sub_id = %env.sub_id, error = ?e, "a progress report was not stored"),
        }
        Outcome::none()
    }

    /// Stores `bytes` moved of `env`'s batch; whether that changed its status.
    pub(super) async fn store_progress(&self, env: &Envelope, bytes: u64) -> Result<bool> {
        use transaction_record::Column as T;
        let txn = self.db.begin().await?;
        let record = Query::select()
            .column(T::Id)
            .from(transaction_record::Entity)
            .and_where(T::TransactionId.eq(env.transaction_id.to_string()))
            .and_where(T::User.eq(env.user.as_str()))
            .to_owned();
        let bytes = to_i64(bytes);
        let stored = sub_record::Entity::update_many()
            .col_expr(sub_record::Column::BytesMoving, Expr::value(bytes))
            .filter(sub_record::Column::TransactionRecordId.in_subquery(record))
            .filter(sub_record::Column::SubId.eq(env.sub_id.to_string()))
            .filter(sub_record::Column::State.is_in(in_flight()))
            .filter(sub_record::Column::BytesMoving.lt(bytes))
            .exec(&txn)
            .await?;
        if stored.rows_affected == 0 {
            return Ok(false);
        }
        // What the status shows changed: its live-status events carry a newer id.
        transaction_record::Entity::update_many()
            .col_expr(T::Updated, Expr::value(Utc::now()))
            .filter(T::TransactionId.eq(env.transaction_id.to_string()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }
}
