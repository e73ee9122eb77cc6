//! A transaction's full status as `monitor.stat` and the admin view answer it: its record, its
//! sub-records with their failed and skipped files and why each unfinished one waits, its
//! warnings, the retries linked to it, and the state and percentage derived from them (the
//! percentage from the bytes and files done, the bytes a transfer is moving included).

use std::collections::{HashMap, HashSet};

use nlds_core::api::{SubRecordStatus, TransactionStatus};
use nlds_core::workflow::sub_record::Tally;
use nlds_core::{ErrorCode, FailedFile, State};
use sea_orm::sea_query::Order;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::{CHUNK, Result, sub_id_of, to_u64, waiting, warnings};
use crate::db::{self, failed_file, sub_record, transaction_record, warning};

/// The full status of transaction records, in their order.
pub(super) async fn status(
    c: &impl ConnectionTrait,
    records: Vec<transaction_record::Model>,
) -> Result<Vec<TransactionStatus>> {
    let ids: Vec<i64> = records.iter().map(|r| r.id).collect();
    let mut subs: HashMap<i64, Vec<sub_record::Model>> = HashMap::new();
    let mut warnings: HashMap<i64, Vec<String>> = HashMap::new();
    let mut failed: HashMap<i64, Vec<FailedFile>> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        for s in sub_record::Entity::find()
            .filter(sub_record::Column::TransactionRecordId.is_in(chunk.iter().copied()))
            .order_by(sub_record::Column::Id, Order::Asc)
            .all(c)
            .await?
        {
            subs.entry(s.transaction_record_id).or_default().push(s);
        }
        for w in warning::Entity::find()
            .filter(warning::Column::TransactionRecordId.is_in(chunk.iter().copied()))
            .order_by(warning::Column::Id, Order::Asc)
            .all(c)
            .await?
        {
            warnings
                .entry(w.transaction_record_id)
                .or_default()
                .push(w.text);
        }
    }
    // Retries of these transactions (each its own record, linked by `retry_of`), oldest first.
    let mut retried_by: HashMap<String, Vec<Uuid>> = HashMap::new();
    let tids: Vec<&str> = records.iter().map(|r| r.transaction_id.as_str()).collect();
    for chunk in tids.chunks(CHUNK) {
        let rows: Vec<(Option<String>, String)> = transaction_record::Entity::find()
            .select_only()
            .column(transaction_record::Column::RetryOf)
            .column(transaction_record::Column::TransactionId)
            .filter(transaction_record::Column::RetryOf.is_in(chunk.iter().copied()))
            .order_by(transaction_record::Column::Id, Order::Asc)
            .into_tuple()
            .all(c)
            .await?;
        for (of, tid) in rows {
            if let (Some(of), Ok(tid)) = (of, Uuid::parse_str(&tid)) {
                retried_by.entry(of).or_default().push(tid);
            }
        }
    }
    let sub_ids: Vec<i64> = subs.values().flatten().map(|s| s.id).collect();
    for chunk in sub_ids.chunks(CHUNK) {
        for f in failed_file::Entity::find()
            .filter(failed_file::Column::SubRecordId.is_in(chunk.iter().copied()))
            .order_by(failed_file::Column::Id, Order::Asc)
            .all(c)
            .await?
        {
            failed.entry(f.sub_record_id).or_default().push(FailedFile {
                path: f.path,
                code: f.code,
                reason: f.reason,
            });
        }
    }
    // Why the unfinished sub-records wait (nothing to look up when all are final).
    let unfinished: Vec<&sub_record::Model> = subs
        .values()
        .flatten()
        .filter(|s| !s.state.is_final())
        .collect();
    let waiting_ids: HashSet<i64> = unfinished.iter().map(|s| s.transaction_record_id).collect();
    let waiting_tids: Vec<&str> = records
        .iter()
        .filter(|r| waiting_ids.contains(&r.id))
        .map(|r| r.transaction_id.as_str())
        .collect();
    let reasons = waiting::Reasons::of(c, &waiting_tids, &unfinished).await?;
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let warnings = warnings.remove(&r.id).unwrap_or_default();
        let mut sub_records = Vec::new();
        let mut tally = Tally::default();
        let (mut files_skipped, mut files_new_versions) = (0, 0);
        for s in subs.remove(&r.id).unwrap_or_default() {
            let waiting = reasons.why(&r.transaction_id, &s);
            let state = s.state;
            // Files a put skipped as unchanged travel with the failed ones; they are no failure.
            let (skipped_files, failed_files): (Vec<FailedFile>, Vec<FailedFile>) = failed
                .remove(&s.id)
                .unwrap_or_default()
                .into_iter()
                .partition(|f| f.code == ErrorCode::Unchanged);
            let (files, bytes) = (to_u64(s.files), to_u64(s.bytes));
            tally.add(state, files, bytes, failed_files.len() as u64);
            // Bytes a transfer role reported moved of a batch still in flight.
            tally.add_moving(state, bytes, to_u64(s.bytes_moving));
            files_skipped += skipped_files.len() as u64;
            let new_versions = to_u64(s.versions);
            if state == State::Complete {
                files_new_versions += new_versions;
            }
            sub_records.push(SubRecordStatus {
                id: s.id,
                sub_id: sub_id_of(&s.sub_id)?,
                state,
                last_updated: s.last_updated,
                files,
                bytes,
                failed_files,
                skipped_files,
                new_versions,
                waiting,
                bytes_moving: if state.is_final() {
                    0
                } else {
                    to_u64(s.bytes_moving).min(bytes)
                },
            });
        }
        // A retry note is history: the step it is about went on (warnings::counts).
        let derived = tally.derive(warnings.iter().any(|w| warnings::counts(w)));
        out.push(TransactionStatus {
            id: r.id,
            transaction_id: db::stored_uuid(
                "transaction_record",
                "transaction_id",
                &r.transaction_id,
            )?,
            api_action: r.api_action,
            user: r.user,
            group: r.group,
            job_label: r.job_label,
            label: r.label,
            holding_id: r.holding_id,
            state: derived.state,
            percent: tally.percent().unwrap_or(derived.percent),
            created: r.created,
            updated: r.updated,
            files_total: tally.files_total,
            files_done: tally.files_done,
            files_failed: tally.files_failed,
            files_skipped,
            files_new_versions,
            bytes_total: tally.bytes_total,
            bytes_done: tally.bytes_done,
            warnings,
            sub_records,
            retry_of: r.retry_of.as_deref().and_then(|t| Uuid::parse_str(t).ok()),
            retried_by: retried_by.remove(&r.transaction_id).unwrap_or_default(),
        });
    }
    Ok(out)
}
