//! Why each unfinished sub-record of a page of transactions waits ([`nlds_core::waiting`]),
//! worked out when the status is read, so it is never stale.
//!
//! Besides its own tables (and `role_drain`: a batch queued for a drained role says so), the
//! monitor reads (never writes) three of the catalogue's: the
//! transaction's cancel (`submission`) and the recall a get batch joined (`recall_request`,
//! `recall`, `aggregation`). All live in the one database; asking the catalogue over the bus for
//! each status read would cost a round trip per page and could only be older.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use nlds_core::State;
use nlds_core::drain::RoleDrain;
use nlds_core::waiting::{Retrying, Waiting, WaitingReason, role_of_step, step_of};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use super::{CHUNK, Result};
use crate::db::{
    aggregation, recall, recall_request, role_drain, sub_record, submission, transaction_record,
};

/// The reasons of one page, looked up once for all its unfinished sub-records.
#[derive(Default)]
pub(super) struct Reasons {
    /// When each cancelled transaction (by id) was cancelled.
    cancelled: HashMap<String, DateTime<Utc>>,
    /// The recall each get batch (by sub id) waits for.
    tape: HashMap<String, Waiting>,
    /// The roles drained for maintenance.
    drains: nlds_core::drain::Drains,
}

impl Reasons {
    /// Looks up the cancels and recalls of the unfinished sub-records `subs` of the
    /// transactions `tids` (only those that have one).
    pub(super) async fn of(
        c: &impl ConnectionTrait,
        tids: &[&str],
        subs: &[&sub_record::Model],
    ) -> Result<Self> {
        let mut out = Reasons::default();
        if subs.is_empty() {
            return Ok(out);
        }
        out.drains.drained = role_drain::Entity::find()
            .all(c)
            .await?
            .into_iter()
            .map(RoleDrain::from)
            .collect();
        for chunk in tids.chunks(CHUNK) {
            let rows: Vec<(String, Option<DateTime<Utc>>)> = submission::Entity::find()
                .select_only()
                .column(submission::Column::TransactionId)
                .column(submission::Column::CancelledAt)
                .filter(submission::Column::TransactionId.is_in(chunk.iter().copied()))
                .filter(submission::Column::CancelledAt.is_not_null())
                .into_tuple()
                .all(c)
                .await?;
            out.cancelled
                .extend(rows.into_iter().filter_map(|(t, at)| Some((t, at?))));
        }
        let sub_ids: Vec<&str> = subs.iter().map(|s| s.sub_id.as_str()).collect();
        let mut waits: Vec<(String, i64)> = Vec::new();
        for chunk in sub_ids.chunks(CHUNK) {
            let rows: Vec<(String, i64)> = recall_request::Entity::find()
                .select_only()
                .column(recall_request::Column::SubId)
                .column(recall_request::Column::RecallId)
                .filter(recall_request::Column::SubId.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(c)
                .await?;
            waits.extend(rows);
        }
        if waits.is_empty() {
            return Ok(out);
        }
        let mut recall_ids: Vec<i64> = waits.iter().map(|(_, r)| *r).collect();
        recall_ids.sort_unstable();
        recall_ids.dedup();
        let mut recalls: HashMap<i64, recall::Model> = HashMap::new();
        for chunk in recall_ids.chunks(CHUNK) {
            for r in recall::Entity::find()
                .filter(recall::Column::Id.is_in(chunk.iter().copied()))
                .all(c)
                .await?
            {
                recalls.insert(r.id, r);
            }
        }
        let mut agg_ids: Vec<i64> = recalls.values().map(|r| r.aggregation_id).collect();
        agg_ids.sort_unstable();
        agg_ids.dedup();
        let mut names: HashMap<i64, String> = HashMap::new();
        for chunk in agg_ids.chunks(CHUNK) {
            let rows: Vec<(i64, String)> = aggregation::Entity::find()
                .select_only()
                .column(aggregation::Column::Id)
                .column(aggregation::Column::Name)
                .filter(aggregation::Column::Id.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(c)
                .await?;
            names.extend(rows);
        }
        for (sub_id, recall_id) in waits {
            let Some(r) = recalls.get(&recall_id) else {
                continue;
            };
            let aggregate = names
                .get(&r.aggregation_id)
                .cloned()
                .unwrap_or_else(|| format!("#{}", r.aggregation_id));
            out.tape.insert(
                sub_id,
                Waiting::Tape {
                    aggregate,
                    since: r.created,
                    staging: r.started,
                },
            );
        }
        Ok(out)
    }

    /// Why `sub` of transaction `tid` waits; `None` if it is final. A cancel comes first (the
    /// batch ends at its next step whatever it waits for), then a recall, then a retry, else
    /// the step its state names.
    pub(super) fn why(&self, tid: &str, sub: &sub_record::Model) -> Option<Waiting> {
        let step = step_of(sub.state)?;
        if let Some(since) = self.cancelled.get(tid) {
            return Some(Waiting::Cancelled { since: *since });
        }
        if let Some(tape) = self.tape.get(&sub.sub_id) {
            return Some(tape.clone());
        }
        if let Some(retry) = sub
            .retrying
            .as_deref()
            .and_then(|j| serde_json::from_str::<Retrying>(j).ok())
        {
            return Some(Waiting::Retrying(retry));
        }
        Some(Waiting::Queued {
            step: step.to_owned(),
            since: sub.last_updated,
            drained: role_of_step(step).and_then(|r| self.drains.of(r)).cloned(),
        })
    }
}

/// The transactions (a condition on `transaction_record`) with an unfinished sub-record that
/// waits for one of `reasons`, with the precedence of [`Reasons::why`]: the admin view's
/// `waiting` filter.
pub(super) fn condition(reasons: &[WaitingReason]) -> Condition {
    use sea_orm::sea_query::Query;
    use transaction_record::Column as T;
    let unfinished: Vec<State> = State::ALL.into_iter().filter(|s| !s.is_final()).collect();
    let cancelled = || {
        Query::select()
            .column(submission::Column::TransactionId)
            .from(submission::Entity)
            .and_where(submission::Column::CancelledAt.is_not_null())
            .to_owned()
    };
    let recalled = || {
        Query::select()
            .column(recall_request::Column::SubId)
            .from(recall_request::Entity)
            .to_owned()
    };
    // The transactions with an unfinished sub-record that also meets `also`.
    let with_sub = |also: Condition| {
        T::Id.in_subquery(
            Query::select()
                .column(sub_record::Column::TransactionRecordId)
                .from(sub_record::Entity)
                .and_where(sub_record::Column::State.is_in(unfinished.clone()))
                .cond_where(also)
                .to_owned(),
        )
    };
    let mut any = Condition::any();
    for reason in reasons {
        any = any.add(match reason {
            WaitingReason::Cancelled => Condition::all()
                .add(T::TransactionId.in_subquery(cancelled()))
                .add(with_sub(Condition::all())),
            WaitingReason::Tape => Condition::all()
                .add(T::TransactionId.not_in_subquery(cancelled()))
                .add(with_sub(
                    Condition::all().add(sub_record::Column::SubId.in_subquery(recalled())),
                )),
            WaitingReason::Retrying => Condition::all()
                .add(T::TransactionId.not_in_subquery(cancelled()))
                .add(with_sub(
                    Condition::all()
                        .add(sub_record::Column::SubId.not_in_subquery(recalled()))
                        .add(sub_record::Column::Retrying.is_not_null()),
                )),
            WaitingReason::Queued => Condition::all()
                .add(T::TransactionId.not_in_subquery(cancelled()))
                .add(with_sub(
                    Condition::all()
                        .add(sub_record::Column::SubId.not_in_subquery(recalled()))
                        .add(sub_record::Column::Retrying.is_null()),
                )),
        });
    }
    any
}
