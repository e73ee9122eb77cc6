use super::*;
use crate::db::testing;
use nlds_core::ErrorCode;
use nlds_core::api::{ApiAction, TransactionStatus};
use nlds_core::message::sub_id;
use nlds_core::waiting::{Retrying, Waiting};

const ALICE: &str = "alice";
const BOB: &str = "bob";
const CAROL: &str = "carol";
const CLIMATE: &str = "climate";
const OCEAN: &str = "ocean";

fn tid(n: u128) -> Uuid {
    Uuid::from_u128(0x1d2c_0000_0000_4000_8000_0000_0000_0000 + n)
}

struct Tx {
    env: Envelope,
}

impl Tx {
    fn new(n: u128, user: &str, group: &str, action: ApiAction, job: &str) -> Self {
        Self {
            env: Envelope::new(
                tid(n),
                user,
                group,
                action,
                job,
                Payload::MonitorInit {
                    label: None,
                    holding_id: None,
                },
            ),
        }
    }
    fn init(&self, label: Option<&str>, holding_id: Option<i64>) -> (RoutingKey, Envelope) {
        (
            RoutingKey::new(Worker::MonitorPut, Action::Init),
            self.env.reply(Payload::MonitorInit {
                label: label.map(str::to_owned),
                holding_id,
            }),
        )
    }
    fn update(
        &self,
        sub: Uuid,
        state: State,
        files: u64,
        bytes: u64,
        failed: &[&str],
        warnings: &[&str],
    ) -> (RoutingKey, Envelope) {
        (
            RoutingKey::new(Worker::MonitorPut, Action::Start),
            self.env.with_sub(
                sub,
                Payload::MonitorUpdate {
                    state,
                    files,
                    bytes,
                    failed: failed
                        .iter()
                        .map(|p| {
                            FailedFile::new(*p, ErrorCode::PathMissing, format!("{p} is gone"))
                        })
                        .collect(),
                    warnings: warnings.iter().map(|w| w.to_string()).collect(),
                    versions: 0,
                },
            ),
        )
    }
    fn sub(&self, i: usize) -> Uuid {
        sub_id(self.env.transaction_id, "index", i)
    }
    fn failure(&self) -> Uuid {
        Uuid::new_v5(&self.env.transaction_id, b"failed/index")
    }
}

async fn send(m: &Monitor, (key, env): (RoutingKey, Envelope)) {
    let out = m.handle(key, env).await.unwrap();
    assert!(out.publish.is_empty() && out.reply.is_none());
}

async fn stat(m: &Monitor, user: &str, group: &str, filter: StatusFilter) -> TransactionPage {
    let env = Envelope::new(
        tid(999),
        user,
        group,
        ApiAction::Get,
        "stat",
        Payload::Stat { filter },
    );
    let out = m
        .handle(RoutingKey::new(Worker::Monitor, Action::Stat), env)
        .await
        .unwrap();
    match out.reply.expect("a reply").payload {
        Payload::Reply(RpcReply::Transactions(p)) => p,
        other => panic!("{other:?}"),
    }
}

fn ids(p: &TransactionPage) -> Vec<Uuid> {
    p.transactions.iter().map(|t| t.transaction_id).collect()
}

async fn upserts(db: DatabaseConnection) {
    let m = Monitor::new(db.clone());
    let t = Tx::new(1, ALICE, CLIMATE, ApiAction::Put, "run");

    // The update overtakes the init: the record is created from the envelope.
    send(
        &m,
        t.update(t.env.transaction_id, State::Indexing, 0, 0, &[], &[]),
    )
    .await;
    let first = transaction_record::Entity::find()
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            first.user.as_str(),
            first.group.as_str(),
            first.api_action.as_str(),
            first.job_label.as_str()
        ),
        (ALICE, CLIMATE, "put", "run")
    );
    assert_eq!((first.label.as_deref(), first.holding_id), (None, None));
    send(&m, t.init(Some("data"), Some(7))).await;
    send(&m, t.init(Some("data"), Some(7))).await;
    let records = transaction_record::Entity::find().all(&db).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].id, records[0].created),
        (first.id, first.created)
    );
    assert_eq!(
        (records[0].label.as_deref(), records[0].holding_id),
        (Some("data"), Some(7))
    );

    // Counts are kept by state-only updates; final states are not regressed.
    send(&m, t.update(t.sub(0), State::Indexing, 10, 1000, &[], &[])).await;
    send(
        &m,
        t.update(t.sub(0), State::CatalogPutting, 0, 0, &[], &[]),
    )
    .await;
    send(&m, t.update(t.sub(0), State::Complete, 0, 0, &[], &[])).await;
    send(
        &m,
        t.update(t.sub(0), State::TransferPutting, 0, 0, &[], &[]),
    )
    .await;
    send(
        &m,
        t.update(t.env.transaction_id, State::Split, 10, 1000, &[], &[]),
    )
    .await;
    send(
        &m,
        t.update(t.env.transaction_id, State::Indexing, 0, 0, &[], &[]),
    )
    .await;
    let subs = sub_record::Entity::find()
        .order_by(sub_record::Column::Id, Order::Asc)
        .all(&db)
        .await
        .unwrap();
    let got: Vec<(String, State, i64, i64)> = subs
        .iter()
        .map(|s| (s.sub_id.clone(), s.state, s.files, s.bytes))
        .collect();
    assert_eq!(
        got,
        [
            (t.env.transaction_id.to_string(), State::Split, 10, 1000),
            (t.sub(0).to_string(), State::Complete, 10, 1000),
        ]
    );

    // Failed files and warnings are added once, however often the update comes.
    for _ in 0..2 {
        send(
            &m,
            t.update(
                t.failure(),
                State::Failed,
                2,
                0,
                &["/x", "/y"],
                &["slow disk"],
            ),
        )
        .await;
    }
    send(
        &m,
        t.update(
            t.failure(),
            State::Failed,
            2,
            0,
            &["/y", "/z"],
            &["slow disk", "retry"],
        ),
    )
    .await;
    assert_eq!(failed_file::Entity::find().count(&db).await.unwrap(), 3);
    assert_eq!(warning::Entity::find().count(&db).await.unwrap(), 2);
    assert_eq!(sub_record::Entity::find().count(&db).await.unwrap(), 3);

    let page = stat(&m, ALICE, CLIMATE, StatusFilter::default()).await;
    assert_eq!(page.total, 1);
    let s = &page.transactions[0];
    // The percentage counts bytes (all 1000 done), not batches (1 of 2 complete).
    assert_eq!((s.state, s.percent), (State::CompleteWithErrors, 100));
    assert_eq!(s.warnings, ["slow disk", "retry"]);
    assert_eq!((s.files_total, s.files_done, s.files_failed), (13, 10, 3));
    assert_eq!((s.bytes_total, s.bytes_done), (1000, 1000));
    assert_eq!(
        (s.label.as_deref(), s.holding_id, s.api_action),
        (Some("data"), Some(7), ApiAction::Put)
    );
    let sr: Vec<(Uuid, State, usize)> = s
        .sub_records
        .iter()
        .map(|r| (r.sub_id, r.state, r.failed_files.len()))
        .collect();
    assert_eq!(
        sr,
        [
            (t.env.transaction_id, State::Split, 0),
            (t.sub(0), State::Complete, 0),
            (t.failure(), State::Failed, 3)
        ]
    );
    let ff = &s.sub_records[2].failed_files[0];
    assert_eq!(
        (ff.path.as_str(), ff.code, ff.reason.as_str()),
        ("/x", ErrorCode::PathMissing, "/x is gone")
    );
}

/// Transactions in every derived state, for alice, bob (same group) and carol.
async fn stat_world(m: &Monitor) -> Vec<Tx> {
    let mk = |n, user, group, action, job| Tx::new(n, user, group, action, job);
    let txs = vec![
        mk(1, ALICE, CLIMATE, ApiAction::Put, "complete"),
        mk(2, ALICE, CLIMATE, ApiAction::Putlist, "errors"),
        mk(3, ALICE, CLIMATE, ApiAction::Get, "failed"),
        mk(4, ALICE, CLIMATE, ApiAction::Put, "running"),
        mk(5, ALICE, CLIMATE, ApiAction::Getlist, "queued"),
        mk(6, ALICE, CLIMATE, ApiAction::Put, "warned"),
        mk(7, BOB, CLIMATE, ApiAction::Put, "bobs"),
        mk(8, CAROL, OCEAN, ApiAction::Put, "carols"),
    ];
    for t in &txs {
        send(m, t.init(None, None)).await;
        let tid = t.env.transaction_id;
        match t.env.job_label.as_str() {
            "queued" => {}
            "errors" => {
                send(m, t.update(tid, State::Split, 0, 0, &[], &[])).await;
                send(m, t.update(t.sub(0), State::Complete, 4, 40, &[], &[])).await;
                send(
                    m,
                    t.update(t.failure(), State::Failed, 1, 0, &["/gone"], &[]),
                )
                .await;
            }
            "failed" => {
                send(
                    m,
                    t.update(t.failure(), State::Failed, 0, 0, &["/a", "/b"], &[]),
                )
                .await;
            }
            "running" => {
                send(m, t.update(t.sub(0), State::Complete, 1, 10, &[], &[])).await;
                send(
                    m,
                    t.update(t.sub(1), State::TransferPutting, 2, 20, &[], &[]),
                )
                .await;
            }
            "warned" => {
                send(
                    m,
                    t.update(t.sub(0), State::Complete, 1, 1, &[], &["careful"]),
                )
                .await;
            }
            _ => send(m, t.update(t.sub(0), State::Complete, 3, 30, &[], &[])).await,
        }
    }
    txs
}

async fn stat_filters(db: DatabaseConnection) {
    let m = Monitor::new(db.clone());
    let txs = stat_world(&m).await;
    let all = stat(&m, ALICE, CLIMATE, StatusFilter::default()).await;
    assert_eq!(all.total, 6);
    assert_eq!(ids(&all), (1..=6).map(tid).collect::<Vec<_>>());
    let states: Vec<(String, State, u8)> = all
        .transactions
        .iter()
        .map(|t| (t.job_label.clone(), t.state, t.percent))
        .collect();
    assert_eq!(
        states,
        [
            ("complete".to_owned(), State::Complete, 100),
            // Bytes done of bytes: all 40 (the failed file has none), 10 of 30.
            ("errors".to_owned(), State::CompleteWithErrors, 100),
            ("failed".to_owned(), State::Failed, 0),
            ("running".to_owned(), State::TransferPutting, 33),
            ("queued".to_owned(), State::Searching, 0),
            ("warned".to_owned(), State::CompleteWithWarnings, 100),
        ]
    );
    let errors = &all.transactions[1];
    assert_eq!(
        (errors.files_total, errors.files_done, errors.files_failed),
        (5, 4, 1)
    );
    let running = &all.transactions[3];
    assert_eq!(
        (
            running.files_total,
            running.files_done,
            running.bytes_total,
            running.bytes_done
        ),
        (3, 1, 30, 10)
    );

    let f = StatusFilter::default;
    let cases: Vec<(StatusFilter, Vec<u128>)> = vec![
        (
            StatusFilter {
                groupall: true,
                ..f()
            },
            vec![1, 2, 3, 4, 5, 6, 7],
        ),
        (
            StatusFilter {
                groupall: true,
                descending: true,
                limit: 2,
                offset: 1,
                ..f()
            },
            vec![6, 5],
        ),
        (
            StatusFilter {
                id: Some(all.transactions[2].id),
                ..f()
            },
            vec![3],
        ),
        (
            StatusFilter {
                transaction_id: Some(tid(4)),
                ..f()
            },
            vec![4],
        ),
        (
            StatusFilter {
                transaction_id: Some(tid(8)),
                groupall: true,
                ..f()
            },
            vec![],
        ),
        (
            StatusFilter {
                job_label: Some("errors".into()),
                ..f()
            },
            vec![2],
        ),
        (
            StatusFilter {
                job_label: Some("^(comp|warn)".into()),
                job_label_regex: true,
                ..f()
            },
            vec![1, 6],
        ),
        (
            StatusFilter {
                api_actions: vec![ApiAction::Get, ApiAction::Getlist],
                ..f()
            },
            vec![3, 5],
        ),
        (
            StatusFilter {
                exclude_api_actions: vec![ApiAction::Put],
                ..f()
            },
            vec![2, 3, 5],
        ),
        (
            StatusFilter {
                states: vec![State::Complete],
                groupall: true,
                ..f()
            },
            vec![1, 7],
        ),
        (
            StatusFilter {
                states: vec![State::Failed, State::CompleteWithErrors],
                ..f()
            },
            vec![2, 3],
        ),
        (
            StatusFilter {
                states: vec![State::Searching, State::TransferPutting],
                ..f()
            },
            vec![4, 5],
        ),
        (
            StatusFilter {
                states: vec![State::CompleteWithWarnings],
                ..f()
            },
            vec![6],
        ),
        (
            StatusFilter {
                states: vec![State::Complete, State::CompleteWithWarnings, State::Failed],
                descending: true,
                limit: 2,
                offset: 1,
                ..f()
            },
            vec![3, 1],
        ),
        (
            StatusFilter {
                states: vec![State::Complete],
                job_label: Some("o".into()),
                job_label_regex: true,
                groupall: true,
                ..f()
            },
            vec![1, 7],
        ),
    ];
    for (filter, want) in cases {
        let page = stat(&m, ALICE, CLIMATE, filter.clone()).await;
        assert_eq!(
            ids(&page),
            want.iter().map(|n| tid(*n)).collect::<Vec<_>>(),
            "{filter:?}"
        );
        if filter.limit == 0 {
            assert_eq!(page.total, want.len() as u64, "{filter:?}");
        }
    }
    let paged = stat(
        &m,
        ALICE,
        CLIMATE,
        StatusFilter {
            states: vec![State::Complete, State::CompleteWithWarnings, State::Failed],
            limit: 2,
            offset: 1,
            ..f()
        },
    )
    .await;
    assert_eq!((paged.total, paged.limit, paged.offset), (3, 2, 1));
    // carol sees only her own.
    let carol = stat(
        &m,
        CAROL,
        OCEAN,
        StatusFilter {
            groupall: true,
            ..f()
        },
    )
    .await;
    assert_eq!(ids(&carol), [txs[7].env.transaction_id]);
    // A bad regex is a bad request, answered as a reply.
    let env = Envelope::new(
        tid(999),
        ALICE,
        CLIMATE,
        ApiAction::Get,
        "stat",
        Payload::Stat {
            filter: StatusFilter {
                job_label: Some("(".into()),
                job_label_regex: true,
                ..f()
            },
        },
    );
    let out = m
        .handle(RoutingKey::new(Worker::Monitor, Action::Stat), env)
        .await
        .unwrap();
    match out.reply.unwrap().payload {
        Payload::Reply(RpcReply::Error(e)) => assert_eq!(e.code, ErrorCode::BadRequest),
        other => panic!("{other:?}"),
    }
}

/// A transaction id belongs to one user, group and API action: `monitor.init` never moves
/// another's record to the caller (the upsert refuses, atomically), the check RPC refuses
/// it without saying whose it is, and a retry by the owner is accepted.
async fn ids_are_not_shared(db: DatabaseConnection) {
    let m = Monitor::new(db.clone());
    let rpc = |env: Envelope| {
        let m = &m;
        async move {
            let out = m
                .handle(RoutingKey::new(Worker::Monitor, Action::Init), env)
                .await
                .unwrap();
            match out.reply.expect("a reply").payload {
                Payload::Reply(r) => r,
                other => panic!("{other:?}"),
            }
        }
    };
    let alice = Tx::new(50, ALICE, CLIMATE, ApiAction::Get, "mine");
    send(&m, alice.init(Some("data"), Some(7))).await;
    let check = |t: &Tx| t.env.reply(Payload::CheckTransactionId);
    let init = |t: &Tx| {
        t.env.reply(Payload::MonitorInit {
            label: Some("stolen".into()),
            holding_id: Some(8),
        })
    };
    // The owner's retry: accepted.
    assert_eq!(rpc(check(&alice)).await, RpcReply::Available);
    assert_eq!(rpc(init(&alice)).await, RpcReply::Recorded);
    // Another user, another group of the same user, another action: refused, by the check
    // and by the init itself.
    let mut others = vec![
        Tx::new(50, BOB, CLIMATE, ApiAction::Get, "mine"),
        Tx::new(50, ALICE, OCEAN, ApiAction::Get, "mine"),
        Tx::new(50, ALICE, CLIMATE, ApiAction::Del, "mine"),
    ];
    for t in &mut others {
        for reply in [rpc(check(t)).await, rpc(init(t)).await] {
            let RpcReply::Error(e) = reply else {
                panic!("{} {} {}: {reply:?}", t.env.user, t.env.group, t.env.action)
            };
            assert_eq!(e.code, ErrorCode::Conflict);
            assert_eq!(
                e.message,
                format!(
                    "transaction id {} is already in use: choose another transaction id (or \
                     leave it out to have one made)",
                    tid(50)
                )
            );
        }
    }
    // ... and a stray update of bob's does not attach to alice's record.
    let bob = &others[0];
    assert!(
        m.handle(
            RoutingKey::new(Worker::MonitorPut, Action::Start),
            bob.update(bob.sub(0), State::Complete, 1, 1, &[], &[]).1
        )
        .await
        .is_err()
    );
    let r = transaction_record::Entity::find().all(&db).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (
            r[0].user.as_str(),
            r[0].group.as_str(),
            r[0].api_action.as_str()
        ),
        (ALICE, CLIMATE, "get")
    );
    assert_eq!(
        (r[0].label.as_deref(), r[0].holding_id),
        (Some("stolen"), Some(8))
    );
    assert_eq!(sub_record::Entity::find().all(&db).await.unwrap().len(), 0);
    assert_eq!(
        ids(&stat(
            &m,
            BOB,
            CLIMATE,
            StatusFilter {
                groupall: false,
                ..Default::default()
            }
        )
        .await)
        .len(),
        0
    );
    // A fresh id is free for anyone.
    let fresh = Tx::new(51, BOB, CLIMATE, ApiAction::Get, "his");
    assert_eq!(rpc(check(&fresh)).await, RpcReply::Available);
    assert_eq!(
        transaction_record::Entity::find()
            .all(&db)
            .await
            .unwrap()
            .len(),
        1,
        "the check records nothing"
    );
}

#[tokio::test]
async fn ids_are_not_shared_sqlite() {
    ids_are_not_shared(testing::memory().await).await;
}

#[tokio::test]
async fn upserts_sqlite() {
    upserts(testing::memory().await).await;
}

#[tokio::test]
async fn stat_filters_sqlite() {
    stat_filters(testing::memory().await).await;
}

#[tokio::test]
async fn monitor_postgres() {
    let Some(a) = testing::postgres("monitor_a").await else {
        return;
    };
    let Some(b) = testing::postgres("monitor_b").await else {
        return;
    };
    upserts(a.db.clone()).await;
    stat_filters(b.db.clone()).await;
    a.drop_now().await;
    b.drop_now().await;
    let Some(c) = testing::postgres("monitor_c").await else {
        return;
    };
    ids_are_not_shared(c.db.clone()).await;
    c.drop_now().await;
}

/// The state filter over 10,000 transactions: a handful of queries, not one per transaction.
#[tokio::test]
async fn state_filter_scales_to_ten_thousand_transactions() {
    let db = testing::memory().await;
    let now = Utc::now();
    let n = 10_000i64;
    let records = (0..n).map(|i| transaction_record::ActiveModel {
        transaction_id: Set(tid(i as u128).to_string()),
        user: Set(ALICE.into()),
        group: Set(CLIMATE.into()),
        api_action: Set(ApiAction::Put),
        job_label: Set(format!("job{i}")),
        created: Set(now),
        updated: Set(now),
        ..Default::default()
    });
    for chunk in chunks(records) {
        transaction_record::Entity::insert_many(chunk)
            .exec(&db)
            .await
            .unwrap();
    }
    let ids: Vec<i64> = transaction_record::Entity::find()
        .select_only()
        .column(transaction_record::Column::Id)
        .order_by(transaction_record::Column::Id, Order::Asc)
        .into_tuple()
        .all(&db)
        .await
        .unwrap();
    // Every third transaction is still transferring, the rest complete.
    let subs = ids.iter().enumerate().flat_map(|(i, id)| {
        let second = if i % 3 == 0 {
            State::TransferPutting
        } else {
            State::Complete
        };
        [State::Complete, second]
            .into_iter()
            .enumerate()
            .map(move |(j, st)| sub_record::ActiveModel {
                transaction_record_id: Set(*id),
                sub_id: Set(Uuid::from_u128(j as u128 + 1).to_string()),
                state: Set(st),
                files: Set(1),
                bytes: Set(1),
                last_updated: Set(now),
                ..Default::default()
            })
    });
    for chunk in chunks(subs) {
        sub_record::Entity::insert_many(chunk)
            .exec(&db)
            .await
            .unwrap();
    }
    let m = Monitor::new(db);
    let started = std::time::Instant::now();
    let page = stat(
        &m,
        ALICE,
        CLIMATE,
        StatusFilter {
            states: vec![State::TransferPutting],
            limit: 10,
            offset: 5,
            descending: true,
            ..Default::default()
        },
    )
    .await;
    let took = started.elapsed();
    assert_eq!(page.total, 3334);
    assert_eq!(page.transactions.len(), 10);
    assert!(
        page.transactions
            .iter()
            .all(|t| t.state == State::TransferPutting && t.percent == 50)
    );
    assert_eq!(page.transactions[0].job_label, format!("job{}", 9999 - 15));
    assert!(
        took < std::time::Duration::from_secs(5),
        "stat took {took:?}"
    );
}

/// Retry notes: added to the transaction (once each), shown while the step waits and kept once it
/// completes, without making the transaction COMPLETE_WITH_WARNINGS; a note for an unknown
/// transaction, or naming another user, changes nothing.
#[tokio::test]
async fn retry_notes_are_history_that_does_not_degrade_a_completed_transaction() {
    let db = testing::memory().await;
    let m = Monitor::new(db.clone());
    let t = Tx::new(40, ALICE, CLIMATE, ApiAction::Put, "notes");
    send(&m, t.init(None, None)).await;
    send(
        &m,
        t.update(t.sub(0), State::TransferPutting, 1, 10, &[], &[]),
    )
    .await;
    let note = nlds_core::workflow::retry_note::retry_note(
        "transfer-put",
        1,
        4,
        Utc::now(),
        ErrorCode::Unavailable,
        "S3 down",
    );
    // Before the retry, the batch waits in transfer-put's queue.
    let s = &stat(&m, ALICE, CLIMATE, StatusFilter::default())
        .await
        .transactions[0];
    assert!(
        matches!(&s.sub_records[0].waiting, Some(Waiting::Queued { step, .. }) if step == "transfer-put"),
        "{s:#?}"
    );
    let retry = Retrying {
        step: "transfer-put".into(),
        retry: 1,
        of: 4,
        next_try: Utc::now(),
        code: ErrorCode::Unavailable,
        error: "S3 down".into(),
    };
    let warn = |env: &Envelope| {
        (
            RoutingKey::new(Worker::MonitorPut, Action::Start),
            env.reply(Payload::Warning {
                warnings: vec![note.clone()],
                retry: Some(retry.clone()),
            }),
        )
    };
    // The note comes with the envelope of the batch whose step failed.
    let mut batch = t.env.clone();
    batch.sub_id = t.sub(0);
    for _ in 0..2 {
        send(&m, warn(&batch)).await;
    }
    let mut bobs = batch.clone();
    bobs.user = BOB.into();
    send(&m, warn(&bobs)).await;
    send(
        &m,
        warn(&Tx::new(41, ALICE, CLIMATE, ApiAction::Put, "x").env),
    )
    .await;
    assert_eq!(warning::Entity::find().count(&db).await.unwrap(), 1);
    assert_eq!(
        transaction_record::Entity::find().count(&db).await.unwrap(),
        1
    );

    let s = &stat(&m, ALICE, CLIMATE, StatusFilter::default())
        .await
        .transactions[0];
    assert_eq!(
        (s.state, s.warnings.clone()),
        (State::TransferPutting, vec![note.clone()])
    );
    assert_eq!(s.sub_records.len(), 1);
    // The batch now waits for the retry (bob's note changed nothing of alice's).
    assert_eq!(
        s.sub_records[0].waiting,
        Some(Waiting::Retrying(retry.clone()))
    );

    send(&m, t.update(t.sub(0), State::Complete, 1, 10, &[], &[])).await;
    let s = &stat(&m, ALICE, CLIMATE, StatusFilter::default())
        .await
        .transactions[0];
    assert_eq!(
        (s.state, s.warnings.clone()),
        (State::Complete, vec![note.clone()])
    );
    // Ended: it waits for nothing, and a late retry report changes nothing.
    assert_eq!(s.sub_records[0].waiting, None);
    send(&m, warn(&batch)).await;
    let s = &stat(&m, ALICE, CLIMATE, StatusFilter::default())
        .await
        .transactions[0];
    assert_eq!(
        (s.state, &s.sub_records[0].waiting),
        (State::Complete, &None)
    );

    // Any other warning still makes it COMPLETE_WITH_WARNINGS.
    send(
        &m,
        t.update(t.sub(0), State::Complete, 1, 10, &[], &["slow disk"]),
    )
    .await;
    let s = &stat(&m, ALICE, CLIMATE, StatusFilter::default())
        .await
        .transactions[0];
    assert_eq!(s.state, State::CompleteWithWarnings);
}

/// `nlds_transactions_started_total` / `nlds_transactions_ended_total` of `action` (and `state`).
fn counted(action: &str, state: Option<&str>) -> u64 {
    let m = nlds_metrics::metrics();
    match state {
        None => m
            .transactions_started
            .get_or_create(&[("action", action.to_owned())])
            .get(),
        Some(s) => m
            .transactions_ended
            .get_or_create(&[("action", action.to_owned()), ("state", s.to_owned())])
            .get(),
    }
}

#[tokio::test]
async fn a_transaction_is_counted_as_started_once_and_as_ended_once_when_its_last_batch_ends() {
    let m = Monitor::new(testing::memory().await);
    let (started, ended) = (counted("put", None), counted("put", Some("COMPLETE")));
    let t = Tx::new(50, ALICE, CLIMATE, ApiAction::Put, "count");
    // The catalogue's init and the API's: one transaction.
    send(&m, t.init(None, None)).await;
    send(&m, t.init(None, None)).await;
    assert_eq!(counted("put", None), started + 1);
    send(
        &m,
        t.update(t.sub(0), State::TransferPutting, 1, 1, &[], &[]),
    )
    .await;
    send(&m, t.update(t.sub(1), State::Complete, 1, 1, &[], &[])).await;
    assert_eq!(
        counted("put", Some("COMPLETE")),
        ended,
        "a batch is still open"
    );
    send(&m, t.update(t.sub(0), State::Complete, 1, 1, &[], &[])).await;
    assert_eq!(counted("put", Some("COMPLETE")), ended + 1);
    // A redelivered final update ends nothing again.
    send(&m, t.update(t.sub(0), State::Complete, 1, 1, &[], &[])).await;
    assert_eq!(counted("put", Some("COMPLETE")), ended + 1);

    // An update that overtakes the init creates the record: counted then, not by the init.
    let started = counted("get", None);
    let g = Tx::new(51, ALICE, CLIMATE, ApiAction::Get, "count");
    send(&m, g.update(g.sub(0), State::Routing, 0, 0, &[], &[])).await;
    send(&m, g.init(None, None)).await;
    assert_eq!(counted("get", None), started + 1);
}

/// A progress report of `bytes` moved of `t`'s batch `sub`.
fn progress(t: &Tx, sub: Uuid, bytes: u64) -> (RoutingKey, Envelope) {
    (
        RoutingKey::new(Worker::MonitorPut, Action::Progress),
        t.env.with_sub(sub, Payload::Progress { bytes }),
    )
}

/// The status of `t` (alice's) and its `updated` time.
async fn status_of(m: &Monitor, t: &Tx) -> TransactionStatus {
    let filter = StatusFilter {
        transaction_id: Some(t.env.transaction_id),
        ..Default::default()
    };
    stat(m, ALICE, CLIMATE, filter).await.transactions.remove(0)
}

/// Announcements received so far.
fn announced(rx: &mut tokio::sync::broadcast::Receiver<Change>) -> usize {
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    n
}

/// `monitor-put.progress`: the bytes of a batch in flight are stored, counted as done and
/// announced; a late, smaller, unknown or other user's report changes nothing (no announcement,
/// no new event id); the batch's final state clears them, and a report after it is ignored.
async fn progress_reports(db: DatabaseConnection) {
    use nlds_bus::memory::MemoryBus;
    let bus = Arc::new(MemoryBus::new());
    let mut rx = bus
        .changes()
        .await
        .unwrap()
        .expect("the memory bus announces");
    let m = Monitor::new(db.clone()).with_changes(bus.clone());
    let t = Tx::new(60, ALICE, CLIMATE, ApiAction::Put, "progress");
    send(&m, t.init(None, None)).await;
    send(
        &m,
        t.update(t.sub(0), State::TransferPutting, 2, 100, &[], &[]),
    )
    .await;
    send(
        &m,
        t.update(t.sub(1), State::TransferPutting, 2, 300, &[], &[]),
    )
    .await;
    announced(&mut rx);
    let before = status_of(&m, &t).await;
    assert_eq!((before.bytes_done, before.bytes_total), (0, 400));

    // Stored, counted as done (files are not: none is done yet), announced, new event id.
    send(&m, progress(&t, t.sub(1), 120)).await;
    let s = status_of(&m, &t).await;
    assert_eq!((s.bytes_done, s.bytes_total, s.files_done), (120, 400, 0));
    assert_eq!(s.percent, 30, "bytes done of bytes");
    assert_eq!(s.sub_records[1].bytes_moving, 120);
    assert_eq!(s.state, State::TransferPutting);
    assert!(s.updated > before.updated);
    assert_eq!(announced(&mut rx), 1);

    // Late (no more than stored), of another user, of an unknown transaction or batch:
    // nothing stored, nothing announced, the event id stays.
    send(&m, progress(&t, t.sub(1), 80)).await;
    send(&m, progress(&t, t.sub(1), 120)).await;
    let bob = Tx::new(60, BOB, CLIMATE, ApiAction::Put, "progress");
    send(&m, progress(&bob, t.sub(1), 200)).await;
    let unknown = Tx::new(61, ALICE, CLIMATE, ApiAction::Put, "progress");
    send(&m, progress(&unknown, unknown.sub(0), 200)).await;
    send(&m, progress(&t, t.sub(7), 200)).await;
    let same = status_of(&m, &t).await;
    assert_eq!((same.bytes_done, same.updated), (120, s.updated));
    assert_eq!(announced(&mut rx), 0);
    assert_eq!(
        transaction_record::Entity::find().count(&db).await.unwrap(),
        1,
        "a report creates no transaction"
    );

    // More than the batch has: counted up to its bytes.
    send(&m, progress(&t, t.sub(1), 1000)).await;
    assert_eq!(status_of(&m, &t).await.bytes_done, 300);
    assert_eq!(announced(&mut rx), 1);

    // A batch moving on (not final) keeps what it moved; its final state clears it.
    send(
        &m,
        t.update(t.sub(1), State::CatalogPutting, 2, 300, &[], &[]),
    )
    .await;
    assert_eq!(status_of(&m, &t).await.bytes_done, 300);
    send(&m, t.update(t.sub(1), State::Complete, 2, 300, &[], &[])).await;
    let stored = sub_record::Entity::find()
        .filter(sub_record::Column::SubId.eq(t.sub(1).to_string()))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.bytes_moving, 0, "cleared at the final state");
    let s = status_of(&m, &t).await;
    assert_eq!((s.bytes_done, s.files_done), (300, 2));
    assert_eq!(s.sub_records[1].bytes_moving, 0);
    announced(&mut rx);

    // After the final state: ignored (never moves a finished batch, never announced).
    send(&m, progress(&t, t.sub(1), 2000)).await;
    let after = status_of(&m, &t).await;
    assert_eq!((after.bytes_done, after.updated), (300, s.updated));
    assert_eq!(announced(&mut rx), 0);

    // The whole transaction ended: a late report of any batch is no new event.
    send(&m, progress(&t, t.sub(0), 50)).await;
    assert_eq!(announced(&mut rx), 1, "batch 0 is still in flight");
    send(&m, t.update(t.sub(0), State::Complete, 2, 100, &[], &[])).await;
    let end = status_of(&m, &t).await;
    assert_eq!(end.state, State::Complete);
    assert_eq!(
        (end.bytes_done, end.bytes_total, end.percent),
        (400, 400, 100)
    );
    announced(&mut rx);
    for sub in [t.sub(0), t.sub(1)] {
        send(&m, progress(&t, sub, 5000)).await;
    }
    assert_eq!(status_of(&m, &t).await.updated, end.updated);
    assert_eq!(announced(&mut rx), 0, "the final event is never re-sent");

    // A report that cannot be stored (no database) is dropped, not an error to retry.
    let out = Monitor::new(sea_orm::Database::connect("sqlite::memory:").await.unwrap())
        .handle(progress(&t, t.sub(0), 1).0, progress(&t, t.sub(0), 1).1)
        .await
        .expect("best effort: never an error");
    assert!(out.publish.is_empty() && out.reply.is_none());
}

#[tokio::test]
async fn progress_reports_sqlite() {
    progress_reports(testing::memory().await).await;
}

#[tokio::test]
async fn progress_reports_postgres() {
    let Some(p) = testing::postgres("monitor_progress").await else {
        return;
    };
    progress_reports(p.db.clone()).await;
    p.drop_now().await;
}
