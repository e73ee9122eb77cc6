//! A stored value that does not parse (an enum column's unknown string or number, a malformed
//! UUID, written behind the code's back) is an error naming it, never a default: on SQLite and
//! PostgreSQL.

use chrono::Utc;
use nlds_core::admin::{AuditAction, AuditEvent, AuditFilter, AuditOutcome, LogFilter, LogLevel};
use nlds_core::api::ApiAction;
use nlds_core::{AccessRole, ErrorCode, State};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait};
use uuid::Uuid;

use super::{
    aggregation, failed_file, file, location, positional, sub_record, testing, transaction_record,
};
use crate::audit::{self, LogLine};

async fn sql(db: &DatabaseConnection, statement: &str) {
    db.execute_unprepared(statement).await.expect(statement);
}

/// `err` names every one of `names`.
fn names(err: DbErr, names: &[&str]) {
    let text = err.to_string();
    for n in names {
        assert!(text.contains(n), "{text:?} does not name {n:?}");
    }
}

async fn malformed_values_are_errors(db: &DatabaseConnection) {
    let now = Utc::now();

    // Catalogue: a file with a location, and an aggregation.
    let (h, _) = testing::holding_with(db, "h", &[1]).await;
    aggregation::Entity::insert(aggregation::ActiveModel {
        name: Set("a.tar".into()),
        transaction_id: Set(Uuid::new_v4().to_string()),
        holding_id: Set(h),
        backend: Set("dir".into()),
        state: Set(aggregation::State::Stored),
        size: Set(10240),
        members: Set(1),
        created: Set(now),
        ..Default::default()
    })
    .exec(db)
    .await
    .unwrap();
    // The typed columns store the same strings as before.
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT f.kind, l.tier, a.state FROM file f JOIN location l ON l.file_id = f.id \
             JOIN aggregation a ON a.holding_id = f.holding_id",
        ))
        .await
        .unwrap()
        .unwrap();
    let stored: [String; 3] = [0, 1, 2].map(|i| row.try_get_by_index(i).unwrap());
    assert_eq!(stored, ["file", "warm", "stored"]);
    sql(db, "UPDATE location SET tier = 'tepid'").await;
    names(
        location::Entity::find().all(db).await.unwrap_err(),
        &["Tier", "\"tepid\""],
    );
    sql(db, "UPDATE file SET kind = 'socket'").await;
    names(
        file::Entity::find().all(db).await.unwrap_err(),
        &["PathKind", "\"socket\""],
    );
    // Read by position (the find's decoder): the same, and the column's name.
    names(
        positional::all(file::Entity::find(), db).await.unwrap_err(),
        &["PathKind", "\"socket\"", "file.kind"],
    );
    sql(db, "UPDATE aggregation SET state = 'lost'").await;
    names(
        aggregation::Entity::find().all(db).await.unwrap_err(),
        &["State", "\"lost\""],
    );

    // Monitor: a sub-record with a failed file.
    let r = transaction_record::Entity::insert(transaction_record::ActiveModel {
        transaction_id: Set(Uuid::new_v4().to_string()),
        user: Set("u".into()),
        group: Set("g".into()),
        api_action: Set(ApiAction::Put),
        job_label: Set("j".into()),
        created: Set(now),
        updated: Set(now),
        ..Default::default()
    })
    .exec(db)
    .await
    .unwrap()
    .last_insert_id;
    let s = sub_record::Entity::insert(sub_record::ActiveModel {
        transaction_record_id: Set(r),
        sub_id: Set(Uuid::new_v4().to_string()),
        state: Set(State::Complete),
        files: Set(1),
        bytes: Set(1),
        last_updated: Set(now),
        ..Default::default()
    })
    .exec(db)
    .await
    .unwrap()
    .last_insert_id;
    failed_file::Entity::insert(failed_file::ActiveModel {
        sub_record_id: Set(s),
        path: Set("/a".into()),
        code: Set(ErrorCode::NotFound),
        reason: Set("gone".into()),
        ..Default::default()
    })
    .exec(db)
    .await
    .unwrap();
    let row = sub_record::Entity::find().one(db).await.unwrap().unwrap();
    assert_eq!(row.state, State::Complete);
    // The NLDS number, as before.
    let n: i32 = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT state FROM sub_record",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(n, 100);
    sql(db, "UPDATE sub_record SET state = 77").await;
    names(
        sub_record::Entity::find().all(db).await.unwrap_err(),
        &["State", "77"],
    );
    sql(db, "UPDATE failed_file SET code = 'oops'").await;
    names(
        failed_file::Entity::find().all(db).await.unwrap_err(),
        &["ErrorCode", "\"oops\""],
    );
    sql(db, "UPDATE transaction_record SET api_action = 'teleport'").await;
    names(
        transaction_record::Entity::find()
            .all(db)
            .await
            .unwrap_err(),
        &["ApiAction", "\"teleport\""],
    );

    // Audit and log records: enum columns, then UUID columns.
    let ev = AuditEvent {
        id: Uuid::new_v4(),
        time: now,
        user: "u".into(),
        group: "g".into(),
        role: AccessRole::User,
        action: AuditAction::Admin,
        outcome: AuditOutcome::Refused,
        endpoint: "GET /".into(),
        holding_id: None,
        label: None,
        transaction_id: Some(Uuid::new_v4()),
        target_user: None,
        code: Some(ErrorCode::Forbidden),
        detail: String::new(),
    };
    audit::store_audit(db, &ev).await.unwrap();
    let all = AuditFilter::default();
    let mut got = audit::query_audit(db, &all).await.unwrap().records;
    // PostgreSQL keeps microseconds.
    got[0].time = ev.time;
    assert_eq!(got, [ev]);
    sql(db, "UPDATE audit_record SET role = 'emperor'").await;
    names(
        audit::query_audit(db, &all).await.unwrap_err(),
        &["AccessRole", "\"emperor\""],
    );
    sql(
        db,
        "UPDATE audit_record SET role = 'user', outcome = 'maybe'",
    )
    .await;
    names(
        audit::query_audit(db, &all).await.unwrap_err(),
        &["AuditOutcome", "\"maybe\""],
    );
    sql(
        db,
        "UPDATE audit_record SET outcome = 'refused', transaction_id = 'nope'",
    )
    .await;
    names(
        audit::query_audit(db, &all).await.unwrap_err(),
        &["audit_record.transaction_id", "\"nope\""],
    );

    audit::store_log(
        db,
        &LogLine {
            time: now,
            level: LogLevel::Warning,
            service: "s",
            transaction_id: None,
            sub_id: Some(Uuid::new_v4()),
            user: None,
            message: "m",
        },
    )
    .await
    .unwrap();
    let logs = LogFilter::default();
    let page = audit::query_logs(db, &logs).await.unwrap();
    assert_eq!(page.entries[0].level, LogLevel::Warning);
    sql(db, "UPDATE log_record SET level = 'loud'").await;
    names(
        audit::query_logs(db, &logs).await.unwrap_err(),
        &["LogLevel", "\"loud\""],
    );
    sql(
        db,
        "UPDATE log_record SET level = 'warning', sub_id = '1234'",
    )
    .await;
    names(
        audit::query_logs(db, &logs).await.unwrap_err(),
        &["log_record.sub_id", "\"1234\""],
    );
}

#[tokio::test]
async fn malformed_values_are_errors_on_sqlite() {
    malformed_values_are_errors(&testing::memory().await).await;
}

#[tokio::test]
async fn malformed_values_are_errors_on_postgres() {
    let Some(pg) = testing::postgres("malformed").await else {
        return;
    };
    malformed_values_are_errors(&pg.db).await;
    pg.drop_now().await;
}
