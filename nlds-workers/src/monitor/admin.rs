//! The monitor's admin queries (RPC `monitor.admin`, service operators only: the server checks):
//! transactions of every user, the failed files of any transaction, the collected log records and
//! the audit log; and the audit record of the files a transfer was refused.

use chrono::Utc;
use nlds_core::admin::{
    AdminAnswer, AdminQuery, AdminTransactionFilter, AuditAction, AuditEvent, AuditOutcome,
    FailedFilePage, FailedFileRow,
};
use nlds_core::api::{ApiAction, DEFAULT_LIMIT, MAX_LIMIT, TransactionPage};
use nlds_core::error::ApiError;
use nlds_core::message::StatusFilter;
use nlds_core::{Envelope, ErrorCode, FailedFile, State};
use sea_orm::sea_query::{Order, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use super::{Monitor, Result};
use crate::audit;
use crate::db::{self, failed_file, sub_record, transaction_record};

/// Failure codes that mean "not yours" or "not allowed": audited as refusals.
const REFUSALS: [ErrorCode; 3] = [
    ErrorCode::NotFound,
    ErrorCode::Forbidden,
    ErrorCode::PermissionDenied,
];

/// Paths named in the detail of a refusal record.
const NAMED: usize = 5;

impl Monitor {
    pub(super) async fn admin(&self, q: &AdminQuery) -> Result<AdminAnswer> {
        Ok(match q {
            AdminQuery::Transactions(f) => AdminAnswer::Transactions(self.transactions(f).await?),
            AdminQuery::FailedFiles {
                transaction_id,
                limit,
                offset,
            } => {
                AdminAnswer::FailedFiles(self.failed_files(*transaction_id, *limit, *offset).await?)
            }
            AdminQuery::Logs(f) => AdminAnswer::Logs(audit::query_logs(&self.db, f).await?),
            AdminQuery::Audit(f) => AdminAnswer::Audit(audit::query_audit(&self.db, f).await?),
            AdminQuery::Drains(r) => AdminAnswer::Drains(self.drains(r).await?),
        })
    }

    /// Transactions of every user that `f` selects.
    async fn transactions(&self, f: &AdminTransactionFilter) -> Result<TransactionPage> {
        use transaction_record::Column as C;
        let mut cond = Condition::all();
        if let Some(u) = &f.user {
            cond = cond.add(C::User.eq(u.as_str()));
        }
        if let Some(g) = &f.group {
            cond = cond.add(C::Group.eq(g.as_str()));
        }
        if let Some(t) = f.created_before {
            cond = cond.add(C::Created.lt(t));
        }
        if let Some(t) = f.created_after {
            cond = cond.add(C::Created.gte(t));
        }
        if !f.waiting.is_empty() {
            cond = cond.add(super::waiting::condition(&f.waiting));
        }
        let mut states = f.states.clone();
        if let Some(t) = f.stalled_since {
            cond = cond.add(C::Updated.lt(t));
            // "No progress": not in a final state (derived from the sub-records).
            if states.is_empty() {
                states = State::ALL.to_vec();
            }
            states.retain(|s| !s.is_final());
            if states.is_empty() {
                return Ok(TransactionPage {
                    transactions: Vec::new(),
                    total: 0,
                    limit: f.limit,
                    offset: f.offset,
                });
            }
        }
        let filter = StatusFilter {
            api_actions: f.api_actions.clone(),
            transaction_id: f.transaction_id,
            states,
            limit: f.limit,
            offset: f.offset,
            descending: f.descending,
            ..Default::default()
        };
        self.stat_where(cond, &filter).await
    }

    /// A page of one transaction's failed files, in the order they were recorded.
    async fn failed_files(&self, tid: Uuid, limit: u64, offset: u64) -> Result<FailedFilePage> {
        let record = transaction_record::Entity::find()
            .filter(transaction_record::Column::TransactionId.eq(tid.to_string()))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("transaction {tid} not found")))?;
        let limit = match limit {
            0 => DEFAULT_LIMIT,
            l => l.min(MAX_LIMIT),
        };
        let in_tx = Query::select()
            .column((sub_record::Entity, sub_record::Column::Id))
            .from(sub_record::Entity)
            .and_where(sub_record::Column::TransactionRecordId.eq(record.id))
            .to_owned();
        let query = failed_file::Entity::find()
            .filter(failed_file::Column::SubRecordId.in_subquery(in_tx))
            .order_by(failed_file::Column::Id, Order::Asc);
        let total = query.clone().count(&self.db).await?;
        let rows = query.limit(limit).offset(offset).all(&self.db).await?;
        // Read after the rows, so every row's sub-record is among them.
        let subs: std::collections::HashMap<i64, Uuid> = sub_record::Entity::find()
            .select_only()
            .column(sub_record::Column::Id)
            .column(sub_record::Column::SubId)
            .filter(sub_record::Column::TransactionRecordId.eq(record.id))
            .into_tuple::<(i64, String)>()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|(id, s)| Ok((id, super::sub_id_of(&s)?)))
            .collect::<Result<_>>()?;
        Ok(FailedFilePage {
            transaction_id: tid,
            user: record.user,
            group: record.group,
            files: rows
                .into_iter()
                .map(|f| {
                    let sub_id = subs.get(&f.sub_record_id).copied().ok_or_else(|| {
                        db::internal(format!("sub-record {} vanished", f.sub_record_id))
                    })?;
                    Ok(FailedFileRow {
                        sub_id,
                        path: f.path,
                        code: f.code,
                        reason: f.reason,
                    })
                })
                .collect::<Result<_>>()?,
            total,
            limit,
            offset,
        })
    }
}

/// Records, in the update's database transaction, that files of a put or get were refused (not
/// the user's, or not permitted by POSIX permissions): one audit record per update, naming the
/// first few files. A redelivered update writes no second record.
pub(super) async fn audit_refused_files(
    c: &impl ConnectionTrait,
    env: &Envelope,
    holding_id: Option<i64>,
    failed: &[FailedFile],
) -> Result<(), sea_orm::DbErr> {
    let action = match env.action {
        ApiAction::Put | ApiAction::Putlist => AuditAction::Put,
        ApiAction::Get | ApiAction::Getlist => AuditAction::Get,
        // Deletes are audited by the API, which sees what was deleted and refused at once.
        _ => return Ok(()),
    };
    let refused: Vec<&FailedFile> = failed
        .iter()
        .filter(|f| REFUSALS.contains(&f.code))
        .collect();
    let Some(first) = refused.first() else {
        return Ok(());
    };
    let mut detail = format!("{} file(s) refused: ", refused.len());
    let named: Vec<String> = refused
        .iter()
        .take(NAMED)
        .map(|f| format!("{} ({})", f.path, f.reason))
        .collect();
    detail.push_str(&named.join("; "));
    if refused.len() > NAMED {
        detail.push_str("; ...");
    }
    let key = format!("audit/refused/{}/{}", refused.len(), first.path);
    let event = AuditEvent {
        id: Uuid::new_v5(&env.sub_id, key.as_bytes()),
        time: Utc::now(),
        user: env.user.clone(),
        group: env.group.clone(),
        role: env.role,
        action,
        outcome: AuditOutcome::Refused,
        endpoint: "monitor".into(),
        holding_id,
        label: None,
        transaction_id: Some(env.transaction_id),
        target_user: None,
        code: Some(first.code),
        detail,
    };
    audit::store_audit(c, &event).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing;
    use nlds_bus::Handler;
    use nlds_core::admin::{AuditFilter, LogFilter};
    use nlds_core::message::RpcReply;
    use nlds_core::{Action, Payload, RoutingKey, Worker};

    fn env(n: u128, user: &str, group: &str, action: ApiAction) -> Envelope {
        Envelope::new(
            Uuid::from_u128(0xad00 + n),
            user,
            group,
            action,
            "job",
            Payload::MonitorInit {
                label: Some("run".into()),
                holding_id: Some(n as i64),
            },
        )
    }

    async fn send(m: &Monitor, key: RoutingKey, e: Envelope) {
        m.handle(key, e).await.unwrap();
    }

    async fn ask(m: &Monitor, q: AdminQuery) -> std::result::Result<AdminAnswer, ApiError> {
        let e = Envelope::new(
            Uuid::new_v4(),
            "root",
            "ops",
            ApiAction::Get,
            "rpc",
            Payload::Admin(q),
        );
        let out = m
            .handle(RoutingKey::new(Worker::Monitor, Action::Admin), e)
            .await
            .unwrap();
        match out.reply.expect("a reply").payload {
            Payload::Reply(RpcReply::Admin(a)) => Ok(a),
            Payload::Reply(RpcReply::Error(e)) => Err(e),
            other => panic!("{other:?}"),
        }
    }

    async fn txs(m: &Monitor, f: AdminTransactionFilter) -> Vec<(String, Uuid)> {
        match ask(m, AdminQuery::Transactions(f)).await.unwrap() {
            AdminAnswer::Transactions(p) => p
                .transactions
                .into_iter()
                .map(|t| (t.user, t.transaction_id))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    fn update(e: &Envelope, n: usize, state: State, failed: Vec<FailedFile>) -> Envelope {
        e.with_sub(
            nlds_core::message::sub_id(e.transaction_id, "index", n),
            Payload::MonitorUpdate {
                state,
                files: 2,
                bytes: 10,
                failed,
                warnings: Vec::new(),
                versions: 0,
            },
        )
    }

    async fn admin_queries(db: sea_orm::DatabaseConnection) {
        let m = Monitor::new(db.clone());
        let init = RoutingKey::new(Worker::MonitorPut, Action::Init);
        let start = RoutingKey::new(Worker::MonitorPut, Action::Start);
        let a1 = env(1, "alice", "climate", ApiAction::Put);
        let a2 = env(2, "alice", "climate", ApiAction::Get);
        let b1 = env(3, "bob", "ocean", ApiAction::Get);
        for e in [&a1, &a2, &b1] {
            send(&m, init, e.clone()).await;
        }
        send(&m, start, update(&a1, 0, State::Complete, Vec::new())).await;
        let refused = vec![
            FailedFile::new(
                "/a/x",
                ErrorCode::NotFound,
                "/a/x is in none of bob's holdings",
            ),
            FailedFile::new("/a/y", ErrorCode::PermissionDenied, "cannot write /t/a/y"),
            FailedFile::new("/a/z", ErrorCode::StorageError, "s3 down"),
        ];
        // b1 has some files refused; sent twice (a redelivery).
        for _ in 0..2 {
            send(
                &m,
                start,
                update(&b1, 0, State::TransferGetting, refused.clone()),
            )
            .await;
        }
        send(
            &m,
            start,
            update(&a2, 0, State::TransferGetting, Vec::new()),
        )
        .await;

        // Every user's transactions, filtered.
        let all = txs(&m, AdminTransactionFilter::default()).await;
        assert_eq!(all.len(), 3);
        let bob = txs(
            &m,
            AdminTransactionFilter {
                user: Some("bob".into()),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(bob, vec![("bob".to_owned(), b1.transaction_id)]);
        let climate_gets = txs(
            &m,
            AdminTransactionFilter {
                group: Some("climate".into()),
                api_actions: vec![ApiAction::Get],
                ..Default::default()
            },
        )
        .await;
        assert_eq!(climate_gets, vec![("alice".to_owned(), a2.transaction_id)]);
        let complete = txs(
            &m,
            AdminTransactionFilter {
                states: vec![State::Complete],
                ..Default::default()
            },
        )
        .await;
        assert_eq!(complete, vec![("alice".to_owned(), a1.transaction_id)]);
        // Stalled: not final and not updated since a moment from now (everything is older),
        // so the two in progress; none is stalled since a minute ago.
        let later = Utc::now() + chrono::Duration::seconds(5);
        let stalled = txs(
            &m,
            AdminTransactionFilter {
                stalled_since: Some(later),
                ..Default::default()
            },
        )
        .await;
        let mut ids: Vec<Uuid> = stalled.iter().map(|(_, t)| *t).collect();
        ids.sort();
        let mut want = vec![a2.transaction_id, b1.transaction_id];
        want.sort();
        assert_eq!(ids, want);
        let earlier = Utc::now() - chrono::Duration::minutes(1);
        let none = txs(
            &m,
            AdminTransactionFilter {
                stalled_since: Some(earlier),
                ..Default::default()
            },
        )
        .await;
        assert!(none.is_empty(), "{none:?}");
        let old = txs(
            &m,
            AdminTransactionFilter {
                created_before: Some(earlier),
                ..Default::default()
            },
        )
        .await;
        assert!(old.is_empty());
        let new = txs(
            &m,
            AdminTransactionFilter {
                created_after: Some(earlier),
                limit: 2,
                offset: 1,
                descending: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(new.len(), 2, "a page of 2 from the second");

        // Failed files of any transaction, paged.
        let q = |limit, offset| AdminQuery::FailedFiles {
            transaction_id: b1.transaction_id,
            limit,
            offset,
        };
        let AdminAnswer::FailedFiles(p) = ask(&m, q(2, 1)).await.unwrap() else {
            panic!()
        };
        assert_eq!((p.total, p.files.len()), (3, 2));
        assert_eq!(p.user, "bob");
        assert_eq!(p.files[0].path, "/a/y");
        assert_eq!(p.files[0].code, ErrorCode::PermissionDenied);
        assert_eq!(
            p.files[0].sub_id,
            nlds_core::message::sub_id(b1.transaction_id, "index", 0)
        );
        let e = ask(
            &m,
            AdminQuery::FailedFiles {
                transaction_id: Uuid::nil(),
                limit: 0,
                offset: 0,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains(&Uuid::nil().to_string()), "{e}");

        // The refused files are audited once, naming them (not the storage failure).
        let AdminAnswer::Audit(a) = ask(&m, AdminQuery::Audit(AuditFilter::default()))
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(a.total, 1, "{a:?}");
        let r = &a.records[0];
        assert_eq!(
            (r.user.as_str(), r.action, r.outcome),
            ("bob", AuditAction::Get, AuditOutcome::Refused)
        );
        assert_eq!(r.transaction_id, Some(b1.transaction_id));
        assert_eq!(r.holding_id, Some(3));
        assert!(
            r.detail.starts_with("2 file(s) refused: /a/x"),
            "{}",
            r.detail
        );
        assert!(!r.detail.contains("/a/z"));

        let AdminAnswer::Logs(l) = ask(&m, AdminQuery::Logs(LogFilter::default()))
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(l.total, 0);
    }

    #[tokio::test]
    async fn admin_queries_sqlite() {
        admin_queries(testing::memory().await).await;
    }

    #[tokio::test]
    async fn admin_queries_postgres() {
        let Some(pg) = testing::postgres("monitor_admin").await else {
            return;
        };
        admin_queries(pg.db.clone()).await;
        pg.drop_now().await;
    }
}
