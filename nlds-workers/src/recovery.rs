//! Start-up recovery for the embedded mode. Its in-process bus keeps its queues in the database
//! (`nlds_bus::memory::MemoryBus::durable`), and the catalogue's outbox keeps the messages of
//! accepted requests, so a transaction the process was working on when it stopped resumes from
//! them. What cannot resume is a transaction still in progress of which no message is left in
//! either: a request whose acceptance was cut off between its RPCs (RPCs are never stored: the
//! client waiting for the answer is gone with the process), or one left by an older nlds-server
//! whose bus kept its queues in memory only. Such a transaction is ended as FAILED with a reason, so nothing
//! is left "in progress" forever. (The distributed mode needs none of this: its queues are
//! RabbitMQ's.) What becomes of each sub-record is decided by
//! [`nlds_core::workflow::sub_record::interrupted`].

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use nlds_core::workflow::sub_record::{self as states, interrupted, interruption};
use nlds_core::{ErrorCode, State};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};

use crate::db::{failed_file, outbox, sub_record, transaction_record};

/// The `sub_id` of the sub-record recovery adds to a transaction it ends (not a UUID; its status
/// shows the nil UUID).
pub(crate) const INTERRUPTED_SUB_ID: &str = "interrupted";

/// The numbers of the states `keep` selects.
fn values(keep: impl Fn(State) -> bool) -> Vec<i32> {
    State::ALL
        .into_iter()
        .filter(|s| keep(*s))
        .map(State::value)
        .collect()
}

/// The numbers of the states a sub-record is left in by recovery (it had finished).
fn finished_states() -> Vec<i32> {
    values(|s| interrupted(s).is_none())
}

/// The transactions that have a message waiting in the in-process bus's store or in the outbox:
/// they resume when the roles start.
async fn resumable(db: &sea_orm::DatabaseConnection) -> Result<HashSet<String>, DbErr> {
    let mut ids: HashSet<String> = nlds_bus::transactions_in_flight(db)
        .await?
        .into_iter()
        .map(|t| t.to_string())
        .collect();
    let staged: Vec<String> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::Envelope)
        .into_tuple()
        .all(db)
        .await?;
    ids.extend(staged.iter().filter_map(|env| {
        let v: serde_json::Value = serde_json::from_str(env).ok()?;
        Some(v.get("transaction_id")?.as_str()?.to_owned())
    }));
    Ok(ids)
}

/// Ends as FAILED with `reason` every unfinished transaction that nothing will move on (no
/// message of it is stored, see the module's documentation); returns how many there were.
pub async fn fail_stranded(db: &sea_orm::DatabaseConnection, reason: &str) -> Result<u64, DbErr> {
    let resumable = resumable(db).await?;
    // Transactions with a sub-record still in progress ...
    let mut ids: Vec<i64> = sub_record::Entity::find()
        .select_only()
        .column(sub_record::Column::TransactionRecordId)
        .filter(sub_record::Column::State.is_not_in(finished_states()))
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    // ... or with no live sub-record at all (still queued).
    let live: Vec<i64> = sub_record::Entity::find()
        .select_only()
        .column(sub_record::Column::TransactionRecordId)
        .filter(sub_record::Column::State.is_not_in(values(states::stands_for_batches)))
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    let live: std::collections::HashSet<i64> = live.into_iter().collect();
    let all: Vec<(i64, String)> = transaction_record::Entity::find()
        .select_only()
        .column(transaction_record::Column::Id)
        .column(transaction_record::Column::TransactionId)
        .into_tuple()
        .all(db)
        .await?;
    ids.extend(
        all.iter()
            .map(|(id, _)| *id)
            .filter(|id| !live.contains(id)),
    );
    ids.sort_unstable();
    ids.dedup();
    let resuming: HashSet<i64> = all
        .into_iter()
        .filter(|(_, tid)| resumable.contains(tid))
        .map(|(id, _)| id)
        .collect();
    ids.retain(|id| !resuming.contains(id));

    for &id in &ids {
        let txn = db.begin().await?;
        let unfinished: Vec<(i64, State)> = sub_record::Entity::find()
            .select_only()
            .column(sub_record::Column::Id)
            .column(sub_record::Column::State)
            .filter(sub_record::Column::TransactionRecordId.eq(id))
            .filter(sub_record::Column::State.is_not_in(finished_states()))
            .into_tuple()
            .all(&txn)
            .await?;
        // The sub-records by the state each ends in.
        let mut ends: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for (sub, value) in unfinished {
            if let Some(to) = interrupted(value) {
                ends.entry(to.value()).or_default().push(sub);
            }
        }
        for (to, subs) in ends {
            // In chunks, within the databases' limits on bound parameters.
            for chunk in subs.chunks(1000) {
                sub_record::Entity::update_many()
                    .col_expr(sub_record::Column::State, Expr::value(to))
                    .col_expr(sub_record::Column::LastUpdated, Expr::value(Utc::now()))
                    .filter(sub_record::Column::Id.is_in(chunk.iter().copied()))
                    .exec(&txn)
                    .await?;
            }
        }
        let existing = sub_record::Entity::find()
            .filter(sub_record::Column::TransactionRecordId.eq(id))
            .filter(sub_record::Column::SubId.eq(INTERRUPTED_SUB_ID))
            .one(&txn)
            .await?;
        if existing.is_none() {
            let sub = sub_record::ActiveModel {
                transaction_record_id: Set(id),
                sub_id: Set(INTERRUPTED_SUB_ID.into()),
                state: Set(interruption()),
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
                code: Set(ErrorCode::Unavailable),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::Monitor;
    use nlds_bus::Handler;
    use nlds_core::api::ApiAction;
    use nlds_core::message::{StatusFilter, sub_id};
    use nlds_core::{Action, Envelope, Payload, RoutingKey, Worker};
    use uuid::Uuid;

    async fn update(m: &Monitor, tid: Uuid, sub: Uuid, state: State) {
        let env = Envelope::new(
            tid,
            "alice",
            "climate",
            ApiAction::Put,
            "j",
            Payload::PutRequest {
                holding_id: 1,
                paths: vec![],
            },
        );
        let env = env.with_sub(
            sub,
            Payload::MonitorUpdate {
                state,
                files: 1,
                bytes: 1,
                failed: vec![],
                warnings: vec![],
                versions: 0,
            },
        );
        m.handle(RoutingKey::new(Worker::MonitorPut, Action::Start), env)
            .await
            .unwrap();
    }

    async fn init(m: &Monitor, tid: Uuid) {
        let env = Envelope::new(
            tid,
            "alice",
            "climate",
            ApiAction::Put,
            "j",
            Payload::MonitorInit {
                label: None,
                holding_id: None,
            },
        );
        m.handle(RoutingKey::new(Worker::MonitorPut, Action::Init), env)
            .await
            .unwrap();
    }

    async fn state_of(m: &Monitor, tid: Uuid) -> (State, Vec<String>) {
        let env = Envelope::new(
            Uuid::new_v4(),
            "alice",
            "climate",
            ApiAction::Put,
            "rpc",
            Payload::Stat {
                filter: StatusFilter {
                    transaction_id: Some(tid),
                    limit: 1,
                    ..Default::default()
                },
            },
        );
        let out = m
            .handle(RoutingKey::new(Worker::Monitor, Action::Stat), env)
            .await
            .unwrap();
        let Some(Payload::Reply(nlds_core::message::RpcReply::Transactions(page))) =
            out.reply.map(|r| r.payload)
        else {
            panic!("no stat reply")
        };
        let t = &page.transactions[0];
        (
            t.state,
            t.failed_files().map(|f| f.reason.clone()).collect(),
        )
    }

    #[tokio::test]
    async fn stranded_transactions_end_failed_with_the_reason_and_the_others_stay() {
        let db = crate::db::testing::memory().await;
        let m = Monitor::new(db.clone());
        let (running, queued, split_only, done) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let (in_bus, in_outbox) = (Uuid::new_v4(), Uuid::new_v4());
        init(&m, running).await;
        update(&m, running, running, State::Split).await;
        update(&m, running, sub_id(running, "index", 0), State::Complete).await;
        update(
            &m,
            running,
            sub_id(running, "index", 1),
            State::TransferPutting,
        )
        .await;
        init(&m, queued).await;
        init(&m, split_only).await;
        update(&m, split_only, split_only, State::Split).await;
        init(&m, done).await;
        update(&m, done, done, State::Complete).await;
        // Two more in progress, with a message left to resume them: one in the bus's store ...
        for tid in [in_bus, in_outbox] {
            init(&m, tid).await;
            update(&m, tid, tid, State::Split).await;
            update(&m, tid, sub_id(tid, "index", 0), State::TransferPutting).await;
        }
        let msg = |tid| {
            Envelope::new(
                tid,
                "alice",
                "climate",
                ApiAction::Put,
                "j",
                Payload::PutRequest {
                    holding_id: 1,
                    paths: vec!["/a".into()],
                },
            )
        };
        let key = RoutingKey::new(Worker::CatalogPut, Action::Start);
        let bus = nlds_bus::memory::MemoryBus::durable(db.clone())
            .await
            .unwrap();
        nlds_bus::Bus::publish(&bus, key, &msg(in_bus))
            .await
            .unwrap();
        // ... and one staged in the outbox.
        outbox::ActiveModel {
            routing_key: Set(key.to_string()),
            envelope: Set(String::from_utf8(msg(in_outbox).to_json()).unwrap()),
            created: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();

        assert_eq!(fail_stranded(&db, "interrupted: test").await.unwrap(), 3);
        for tid in [queued, split_only] {
            let (state, reasons) = state_of(&m, tid).await;
            assert_eq!(state, State::Failed);
            assert_eq!(reasons, ["interrupted: test"]);
        }
        // One batch finished before the stop: the transaction ends with errors, not in progress.
        let (state, reasons) = state_of(&m, running).await;
        assert_eq!(state, State::CompleteWithErrors);
        assert_eq!(reasons, ["interrupted: test"]);
        assert_eq!(state_of(&m, done).await, (State::Complete, vec![]));
        for tid in [in_bus, in_outbox] {
            assert_eq!(
                state_of(&m, tid).await,
                (State::TransferPutting, vec![]),
                "a transaction that resumes is left alone"
            );
        }
        // Nothing is left stranded, so a second start changes nothing.
        assert_eq!(fail_stranded(&db, "again").await.unwrap(), 0);
        assert_eq!(state_of(&m, running).await.1, ["interrupted: test"]);
    }
}
