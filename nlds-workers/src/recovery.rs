//! Start-up recovery for the embedded mode, whose in-process bus loses in-flight messages when the
//! process stops: every transaction still in progress is ended as FAILED with a reason, so nothing
//! is left "in progress" forever. (The distributed mode needs none: its queues are durable.)

use chrono::Utc;
use nlds_core::{ErrorCode, State};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};

use crate::db::{failed_file, sub_record, transaction_record};

fn final_states() -> Vec<i32> {
    [
        State::Complete,
        State::Failed,
        State::CompleteWithErrors,
        State::CompleteWithWarnings,
        State::Split,
    ]
    .iter()
    .map(|s| s.value())
    .collect()
}

/// Ends every unfinished transaction as FAILED with `reason`; returns how many there were.
pub async fn fail_unfinished(db: &sea_orm::DatabaseConnection, reason: &str) -> Result<u64, DbErr> {
    // Transactions with a sub-record still in progress ...
    let mut ids: Vec<i64> = sub_record::Entity::find()
        .select_only()
        .column(sub_record::Column::TransactionRecordId)
        .filter(sub_record::Column::State.is_not_in(final_states()))
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    // ... or with no live sub-record at all (still queued).
    let live: Vec<i64> = sub_record::Entity::find()
        .select_only()
        .column(sub_record::Column::TransactionRecordId)
        .filter(sub_record::Column::State.ne(State::Split.value()))
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    let live: std::collections::HashSet<i64> = live.into_iter().collect();
    let all: Vec<i64> = transaction_record::Entity::find()
        .select_only()
        .column(transaction_record::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    ids.extend(all.into_iter().filter(|id| !live.contains(id)));
    ids.sort_unstable();
    ids.dedup();

    for &id in &ids {
        let txn = db.begin().await?;
        sub_record::Entity::update_many()
            .col_expr(
                sub_record::Column::State,
                Expr::value(State::Failed.value()),
            )
            .col_expr(sub_record::Column::LastUpdated, Expr::value(Utc::now()))
            .filter(sub_record::Column::TransactionRecordId.eq(id))
            .filter(sub_record::Column::State.is_not_in(final_states()))
            .exec(&txn)
            .await?;
        let existing = sub_record::Entity::find()
            .filter(sub_record::Column::TransactionRecordId.eq(id))
            .filter(sub_record::Column::SubId.eq("interrupted"))
            .one(&txn)
            .await?;
        if existing.is_none() {
            let sub = sub_record::ActiveModel {
                transaction_record_id: Set(id),
                sub_id: Set("interrupted".into()),
                state: Set(State::Failed.value()),
                files: Set(0),
                bytes: Set(0),
                last_updated: Set(Utc::now()),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
            failed_file::ActiveModel {
                sub_record_id: Set(sub.id),
                path: Set("(transaction)".into()),
                code: Set(ErrorCode::Unavailable.as_str().into()),
                reason: Set(reason.into()),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
    }
    Ok(ids.len() as u64)
}
