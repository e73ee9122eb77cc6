use chrono::{DateTime, Utc};

use nlds_core::State;
use nlds_core::admin::{AuditAction, AuditPage, FailedFilePage, LogLevel, LogPage};
use nlds_core::api::ApiAction;
use uuid::Uuid;

use super::options::{minutes, range};
use super::*;
use crate::args::Order;
use crate::format::Zone;
use nlds_core::AccessRole;
use nlds_core::ErrorCode;
use nlds_core::admin::{AuditEvent, AuditOutcome, FailedFileRow, LogEntry};

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn times_and_durations_on_the_command_line() {
    assert_eq!(parse_when("2026-11-25T08:00:00Z").unwrap(), When::At(t0()));
    assert_eq!(
        parse_when("2h").unwrap().resolve(t0()),
        t0() - chrono::Duration::hours(2)
    );
    assert!(parse_when("yesterday").unwrap_err().contains("RFC 3339"));
    assert_eq!(minutes(Some(std::time::Duration::from_secs(61))), Some(2));
    assert_eq!(minutes(Some(std::time::Duration::from_secs(5))), Some(1));
    let r = TimeRange {
        since: Some(When::Ago(std::time::Duration::from_secs(60))),
        until: Some(When::Ago(std::time::Duration::from_secs(120))),
    };
    assert!(range(&r, t0()).is_err());
}

#[test]
fn queries_from_options() {
    let a = TransactionsArgs {
        by_user: Some("alice".into()),
        in_group: None,
        state: vec![State::Failed, State::Complete],
        api_action: vec![ApiAction::Put],
        older_than: None,
        newer_than: Some(std::time::Duration::from_secs(1800)),
        stalled: Some(std::time::Duration::from_secs(600)),
        waiting: vec!["tape".into(), "retrying".into()],
        paging: Paging {
            limit: Some(5),
            offset: Some(10),
        },
        order: Order {
            descending: false,
            ascending: true,
        },
    };
    let Plan::Admin(AdminPlan::Transactions(q)) =
        prepare(&AdminCommand::Transactions(a), t0()).unwrap()
    else {
        panic!()
    };
    assert_eq!(q.user.as_deref(), Some("alice"));
    assert_eq!(q.state.as_deref(), Some("FAILED,COMPLETE"));
    assert_eq!(q.waiting.as_deref(), Some("tape,retrying"));
    assert_eq!(q.api_action.as_deref(), Some("put"));
    assert_eq!(
        (q.newer_than_minutes, q.stalled_minutes),
        (Some(30), Some(10))
    );
    assert_eq!(
        (q.limit, q.offset, q.descending),
        (Some(5), Some(10), Some(false))
    );
}

#[test]
fn tables() {
    let page = AuditPage {
        records: vec![AuditEvent {
            id: Uuid::nil(),
            time: t0(),
            user: "bob".into(),
            group: "climate".into(),
            role: AccessRole::User,
            action: AuditAction::Meta,
            outcome: AuditOutcome::Refused,
            endpoint: "POST /api/v2/meta".into(),
            holding_id: Some(4),
            label: None,
            transaction_id: None,
            target_user: Some("alice".into()),
            code: Some(ErrorCode::Forbidden),
            detail: "holding 4 belongs to another user".into(),
        }],
        total: 1,
        limit: 1000,
        offset: 0,
    };
    let t = audit_table(&page, Zone::Utc, None);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("time"));
    assert!(lines[1].starts_with("2026-11-25T08:00:00+00:00  bob (as alice)  climate"));
    assert!(lines[1].contains("refused") && lines[1].ends_with("another user"));
    let narrow = audit_table(&page, Zone::Utc, Some(120));
    assert!(
        narrow.lines().all(|l| crate::format::text_width(l) <= 120),
        "{narrow}"
    );
    assert!(narrow.contains("holding 4 …"), "{narrow}");

    let logs = LogPage {
        entries: vec![LogEntry {
            id: 1,
            time: t0(),
            level: LogLevel::Warning,
            service: "catalog-get".into(),
            transaction_id: None,
            sub_id: None,
            user: Some("bob".into()),
            message: "1 file(s) failed\nat catalog-get".into(),
        }],
        total: 1,
        limit: 1,
        offset: 0,
    };
    let t = logs_table(&logs, Zone::Utc, None);
    assert!(
        t.lines()
            .nth(1)
            .unwrap()
            .ends_with("1 file(s) failed at catalog-get"),
        "{t}"
    );

    let failed = FailedFilePage {
        transaction_id: Uuid::nil(),
        user: "bob".into(),
        group: "climate".into(),
        files: vec![FailedFileRow {
            sub_id: Uuid::nil(),
            path: "/a/x".into(),
            code: ErrorCode::NotFound,
            reason: "not yours".into(),
        }],
        total: 1,
        limit: 10,
        offset: 0,
    };
    let t = failed_view(&failed, None);
    assert!(t.starts_with(&format!(
        "transaction {} of bob (climate): 1 failed file(s)\n",
        Uuid::nil()
    )));
    assert!(t.contains("/a/x  not_found  not yours"), "{t}");
}
