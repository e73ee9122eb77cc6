//! The policy runner against a real catalogue on the in-process bus (SQLite, and PostgreSQL when
//! `NLDS_TEST_DATABASE_URL` is set), with the rules replaced by a decision function (the
//! engine's rules are tested in `nlds-policy`; the system tests run both together).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use nlds_bus::memory::MemoryBus;
use nlds_bus::{Bus, ConsumeOptions, Handler, HandlerError, Outcome};
use nlds_core::api::Tier;
use nlds_core::message::AggregateSums;
use nlds_core::policy::{PassKind, PassOutcome};
use nlds_core::{Action, Envelope, ErrorCode, FailedFile, Payload, Role, RoutingKey, Worker};
use nlds_policy::{Action as RuleAction, Decision, FileFacts, Policy};
use nlds_settings::{ArchiveConfig, PolicyConfig, Watermark};
use nlds_storage::cold::aggregate;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use tokio_util::sync::CancellationToken;

use super::pass::{Move, Planned, breaker_trips, fair_plan};
use super::watermark::Candidates;
use super::{PolicyRunner, RunnerError, lease, scan};
use crate::catalogue::Catalogue;
use crate::db::testing::{self, holding_with};
use crate::db::{aggregation, aggregation_member, file, holding, location, outbox, pin, recall};

pub(crate) type Decider =
    Arc<dyn Fn(&FileFacts<'_>, DateTime<Utc>) -> Option<Decision> + Send + Sync>;

fn decide(name: &str, action: RuleAction) -> Decider {
    let name = name.to_owned();
    Arc::new(move |_, _| {
        Some(Decision {
            rule: 0,
            name: name.clone(),
            action,
        })
    })
}

// ---------------------------------------------------------------- pure parts

fn planned(id: i64, size: u64) -> Planned {
    Planned {
        id,
        size,
        what: Move::Evict,
    }
}

#[test]
fn a_binding_cap_takes_groups_in_turn_not_the_first_group_first() {
    let mut groups = BTreeMap::new();
    groups.insert(
        "big".to_owned(),
        (1..=10).map(|i| planned(i, 1)).collect::<VecDeque<_>>(),
    );
    groups.insert(
        "small".to_owned(),
        (11..=12).map(|i| planned(i, 1)).collect::<VecDeque<_>>(),
    );
    groups.insert(
        "mid".to_owned(),
        (21..=25).map(|i| planned(i, 1)).collect::<VecDeque<_>>(),
    );
    let (plan, capped) = fair_plan(groups.clone(), 7, 0);
    let ids: Vec<i64> = plan.iter().map(|p| p.id).collect();
    // Round-robin in group-name order: big, mid, small, big, mid, small, big.
    assert_eq!(ids, [1, 21, 11, 2, 22, 12, 3]);
    assert!(capped);

    // A byte cap: a group whose next file does not fit stops; the others go on.
    let mut sized = BTreeMap::new();
    sized.insert(
        "a".to_owned(),
        VecDeque::from([planned(1, 5), planned(2, 50)]),
    );
    sized.insert(
        "b".to_owned(),
        VecDeque::from([planned(3, 5), planned(4, 5)]),
    );
    let (plan, capped) = fair_plan(sized, 0, 20);
    let ids: Vec<i64> = plan.iter().map(|p| p.id).collect();
    assert_eq!(ids, [1, 3, 4]);
    assert!(capped);

    // No cap: everything, nothing capped.
    let (plan, capped) = fair_plan(groups, 0, 0);
    assert_eq!(plan.len(), 17);
    assert!(!capped);
}

#[test]
fn the_breaker_opens_above_the_rate_once_enough_actions_were_tried() {
    assert_eq!(breaker_trips(9, 9, 10, 0.5, "archive", Some("x")), None);
    assert_eq!(breaker_trips(20, 10, 10, 0.5, "archive", Some("x")), None);
    assert_eq!(
        breaker_trips(20, 12, 10, 0.5, "archive", Some("disk full")).as_deref(),
        Some("12 of 20 archive actions failed: disk full")
    );
    assert_eq!(breaker_trips(0, 0, 0, 0.0, "evict", None), None);
}

fn row(
    id: i64,
    size: i64,
    tenancy: Option<&str>,
    accessed: Option<DateTime<Utc>>,
) -> scan::ScanRow {
    scan::ScanRow {
        id,
        holding_id: 1,
        path: format!("/f{id}"),
        size,
        ingested: Utc::now() - Duration::days(100),
        last_access: accessed,
        label: "l".into(),
        user: "u".into(),
        group: "g".into(),
        tenancy: tenancy.map(str::to_owned),
        has_warm: true,
        has_cold: true,
        cold_verified: true,
        in_aggregation: true,
        pinned: false,
        awaited: false,
    }
}

#[test]
fn watermarks_choose_the_least_recently_accessed_until_below_low() {
    let now = Utc::now();
    let mut c = Candidates::default();
    // f1 never accessed (ingested 100 days ago), f2 a day ago, f3 50 days ago, f4 an hour ago.
    c.push(&row(1, 10, None, None));
    c.push(&row(2, 10, None, Some(now - Duration::days(1))));
    c.push(&row(3, 10, None, Some(now - Duration::days(50))));
    c.push(&row(4, 10, None, Some(now - Duration::hours(1))));
    c.push(&row(9, 10, Some("other"), None));
    let marks = BTreeMap::from([
        (
            "default".to_owned(),
            Watermark {
                high_bytes: 35,
                low_bytes: 20,
            },
        ),
        (
            "other".to_owned(),
            Watermark {
                high_bytes: 100,
                low_bytes: 50,
            },
        ),
    ]);
    let usage = [("default".to_owned(), 40u64), ("other".to_owned(), 60)]
        .into_iter()
        .collect();
    let chosen = c.choose(&marks, &usage, &Default::default(), None, None);
    let ids: Vec<i64> = chosen.files.iter().map(|(_, c)| c.id).collect();
    // 40 -> 30 (f1) -> 20 (f3) -> 10 (f2): below 20 only after the third.
    assert_eq!(ids, [1, 3, 2]);
    assert!(!chosen.capped);

    // Below high: nothing. A file cap stops early and says so.
    let mut c = Candidates::default();
    c.push(&row(1, 10, None, None));
    c.push(&row(2, 10, None, None));
    let usage = [("default".to_owned(), 40u64)].into_iter().collect();
    let chosen = c.choose(&marks, &usage, &Default::default(), Some(1), None);
    assert_eq!(chosen.files.len(), 1);
    assert!(chosen.capped);
}

// ---------------------------------------------------------------- the world

/// archive-put, faked: stores every aggregate (or, when `fail` is set, reports the write failed),
/// answering the catalogue directly as the router would.
struct FakeArchivePut {
    fail: Arc<AtomicBool>,
}

#[async_trait]
impl Handler for FakeArchivePut {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let Payload::ArchiveAggregate {
            aggregation_id,
            name,
            members,
            ..
        } = &env.payload
        else {
            return Ok(Outcome::none());
        };
        assert_eq!(key, RoutingKey::new(Worker::ArchivePut, Action::Start));
        let update = RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start);
        if self.fail.load(Ordering::SeqCst) {
            let files = members
                .iter()
                .map(|m| {
                    FailedFile::new(
                        &m.path,
                        ErrorCode::StorageError,
                        format!("writing aggregate {name}: cold store unwritable"),
                    )
                })
                .collect();
            return Ok(Outcome::publish(
                update,
                env.reply(Payload::Failed { files }),
            ));
        }
        let tar: Vec<_> = members.iter().map(aggregate::member_of).collect();
        let size = aggregate::layout(&tar).unwrap().size;
        Ok(Outcome::publish(
            update,
            env.reply(Payload::ArchiveStored {
                aggregation_id: *aggregation_id,
                name: name.clone(),
                sums: AggregateSums {
                    size,
                    adler32: 1,
                    crc32c: 2,
                    blake3: "ab".into(),
                },
            }),
        ))
    }
}

struct World {
    db: DatabaseConnection,
    bus: Arc<dyn Bus>,
    fail: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn world(db: DatabaseConnection) -> World {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let stop = CancellationToken::new();
    let fail = Arc::new(AtomicBool::new(false));
    let cat: Arc<dyn Handler> = Arc::new(Catalogue::new(db.clone(), 1000, 1 << 30).with_archive(
        ArchiveConfig {
            aggregate_bytes: 1 << 30,
            aggregate_members: 3,
            lease_secs: 3600,
            ..Default::default()
        },
        "dir",
    ));
    let fake: Arc<dyn Handler> = Arc::new(FakeArchivePut { fail: fail.clone() });
    for (role, h) in [
        (Role::Catalogue, cat.clone()),
        (Role::CatalogueRpc, cat),
        (Role::ArchivePut, fake),
    ] {
        let (bus, stop) = (bus.clone(), stop.clone());
        tokio::spawn(async move {
            bus.consume(role, h, ConsumeOptions::default(), stop)
                .await
                .unwrap()
        });
    }
    World {
        db,
        bus,
        fail,
        stop,
    }
}

fn runner(w: &World, cfg: PolicyConfig, decider: Decider) -> PolicyRunner {
    let mut r = PolicyRunner::new(w.db.clone(), w.bus.clone(), cfg, Policy::default());
    r.decider = Some(decider);
    r.archive_wait = std::time::Duration::from_secs(30);
    r
}

fn cfg() -> PolicyConfig {
    PolicyConfig {
        enabled: true,
        max_files: 0,
        max_bytes: 0,
        breaker_min_actions: 2,
        breaker_error_rate: 0.5,
        ..Default::default()
    }
}

/// Gives `ids` a cold copy in an aggregation in `state` (stored: with cold locations).
async fn aggregate(
    db: &DatabaseConnection,
    holding_id: i64,
    ids: &[i64],
    state: aggregation::State,
) -> i64 {
    let now = Utc::now();
    let name = format!("agg-{}", uuid::Uuid::new_v4().simple());
    let a = aggregation::Entity::insert(aggregation::ActiveModel {
        name: Set(name.clone()),
        transaction_id: Set(uuid::Uuid::new_v4().to_string()),
        holding_id: Set(holding_id),
        backend: Set("dir".into()),
        state: Set(state),
        size: Set(1),
        members: Set(ids.len() as i64),
        created: Set(now),
        stored: Set((state == aggregation::State::Stored).then_some(now)),
        ..Default::default()
    })
    .exec(db)
    .await
    .unwrap()
    .last_insert_id;
    for (i, id) in ids.iter().enumerate() {
        aggregation_member::Entity::insert(aggregation_member::ActiveModel {
            aggregation_id: Set(a),
            file_id: Set(*id),
            position: Set(i as i64),
            data_offset: Set(0),
            ..Default::default()
        })
        .exec(db)
        .await
        .unwrap();
        if state == aggregation::State::Stored {
            location::Entity::insert(location::ActiveModel {
                file_id: Set(*id),
                tier: Set(Tier::Cold),
                bucket: Set("dir".into()),
                key: Set(name.clone()),
                created: Set(now),
                ..Default::default()
            })
            .exec(db)
            .await
            .unwrap();
        }
    }
    a
}

async fn pin_until(db: &DatabaseConnection, id: i64, until: DateTime<Utc>) {
    pin::Entity::insert(pin::ActiveModel {
        file_id: Set(id),
        requester: Set(format!("get:{}", uuid::Uuid::new_v4())),
        until: Set(until),
        created: Set(Utc::now()),
        ..Default::default()
    })
    .exec(db)
    .await
    .unwrap();
}

async fn warm(db: &DatabaseConnection) -> Vec<i64> {
    let mut ids: Vec<i64> = location::Entity::find()
        .filter(location::Column::Tier.eq(Tier::Warm))
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.file_id)
        .collect();
    ids.sort_unstable();
    ids
}

async fn in_group(db: &DatabaseConnection, holding_id: i64, group: &str) {
    holding::Entity::update_many()
        .col_expr(holding::Column::Group, Expr::value(group))
        .filter(holding::Column::Id.eq(holding_id))
        .exec(db)
        .await
        .unwrap();
}

/// Files in every situation the guards care about: (holding, [plain warm-only, verified,
/// verified+pinned, verified+expired pin, verified+recalling, writing, deleted verified]).
async fn situations(db: &DatabaseConnection) -> (i64, [i64; 7]) {
    let (h, f) = holding_with(db, "s", &[100, 200, 300, 400, 500, 600, 700]).await;
    aggregate(db, h, &[f[1], f[2], f[3]], aggregation::State::Stored).await;
    let recalled = aggregate(db, h, &[f[4]], aggregation::State::Stored).await;
    recall::Entity::insert(recall::ActiveModel {
        aggregation_id: Set(recalled),
        created: Set(Utc::now()),
        started: Set(false),
        ..Default::default()
    })
    .exec(db)
    .await
    .unwrap();
    aggregate(db, h, &[f[5]], aggregation::State::Writing).await;
    aggregate(db, h, &[f[6]], aggregation::State::Stored).await;
    file::Entity::update_many()
        .col_expr(file::Column::DeletedAt, Expr::value(Some(Utc::now())))
        .filter(file::Column::Id.eq(f[6]))
        .exec(db)
        .await
        .unwrap();
    pin_until(db, f[2], Utc::now() + Duration::hours(1)).await;
    pin_until(db, f[3], Utc::now() - Duration::hours(1)).await;
    (h, [f[0], f[1], f[2], f[3], f[4], f[5], f[6]])
}

// ---------------------------------------------------------------- scan

async fn scan_sees_tiers_pins_and_waits(db: DatabaseConnection) {
    let (_, f) = situations(&db).await;
    let now = Utc::now();
    // Pages of two: every live file once, in id order, the deleted one never.
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let page = scan::page(&db, after, 2, now).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        rows.extend(page);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    assert_eq!(ids, f[..6]);
    let by = |id: i64| rows.iter().find(|r| r.id == id).unwrap();
    let flags = |r: &scan::ScanRow| {
        (
            r.has_warm,
            r.has_cold,
            r.cold_verified,
            r.in_aggregation,
            r.pinned,
            r.awaited,
        )
    };
    assert_eq!(flags(by(f[0])), (true, false, false, false, false, false));
    assert_eq!(flags(by(f[1])), (true, true, true, true, false, false));
    assert_eq!(flags(by(f[2])), (true, true, true, true, true, false));
    assert_eq!(flags(by(f[3])), (true, true, true, true, false, false));
    assert_eq!(flags(by(f[4])), (true, true, true, true, false, true));
    assert_eq!(flags(by(f[5])), (true, false, false, true, false, false));
    let r = by(f[1]);
    assert_eq!(
        (r.size, r.label.as_str(), r.user.as_str()),
        (200, "s", "alice")
    );
    assert_eq!(r.group, "climate");
    assert_eq!(r.path, "/s/f1");
    // One file, as explain asks.
    let one = scan::one(&db, f[2], now).await.unwrap().unwrap();
    assert!(one.pinned && one.cold_verified);
    assert!(scan::one(&db, 999_999, now).await.unwrap().is_none());
}

#[tokio::test]
async fn scan_sees_tiers_pins_and_waits_sqlite() {
    scan_sees_tiers_pins_and_waits(testing::memory().await).await;
}

#[tokio::test]
async fn scan_sees_tiers_pins_and_waits_postgres() {
    let Some(pg) = testing::postgres("policy_scan").await else {
        return;
    };
    scan_sees_tiers_pins_and_waits(pg.db.clone()).await;
    pg.drop_now().await;
}

// ---------------------------------------------------------------- lease

async fn one_runner_holds_the_lease(db: DatabaseConnection) {
    for round in 0..10 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        let (ra, rb) = tokio::join!(lease::acquire(&db, &a, 60), lease::acquire(&db, &b, 60));
        let winners = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {ra:?} {rb:?}");
        let (winner, loser) = if ra.is_ok() { (&a, rb) } else { (&b, ra) };
        match loser {
            Err(RunnerError::LeaseHeld { holder, .. }) => assert_eq!(&holder, winner),
            other => panic!("{other:?}"),
        }
        // The holder renews; the other cannot.
        assert!(lease::renew(&db, winner, 60).await.unwrap());
        let other = if winner == &a { &b } else { &a };
        assert!(!lease::renew(&db, other, 60).await.unwrap());
        lease::release(&db, winner).await.unwrap();
        // Released (expired now): free for whoever comes next.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn one_runner_holds_the_lease_sqlite() {
    one_runner_holds_the_lease(testing::memory().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runner_holds_the_lease_postgres() {
    let Some(pg) = testing::postgres("policy_lease").await else {
        return;
    };
    one_runner_holds_the_lease(pg.db.clone()).await;

    // Two runners with their passes: one runs, the other names who holds the lease.
    let w = world(pg.db.clone()).await;
    holding_with(&w.db, "x", &[1, 2, 3]).await;
    let one = Arc::new(runner(&w, cfg(), decide("none", RuleAction::None)).with_holder("one"));
    lease::acquire(&w.db, "one", 60).await.unwrap();
    let two = runner(&w, cfg(), decide("none", RuleAction::None)).with_holder("two");
    let err = two.pass(PassKind::Manual).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, RunnerError::LeaseHeld { ref holder, .. } if holder == "one"),
        "{text}"
    );
    assert!(
        text.contains("another policy runner holds the lease (one, until"),
        "{text}"
    );
    // The holder runs its pass; afterwards the lease is free for the other.
    let report = one.pass(PassKind::Manual).await.unwrap();
    assert_eq!(
        (report.outcome, report.evaluated),
        (PassOutcome::Completed, 3)
    );
    two.pass(PassKind::Manual).await.unwrap();
    drop(w);
    pg.drop_now().await;
}

// ---------------------------------------------------------------- passes

async fn snapshot(db: &DatabaseConnection) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        file::Entity::find()
            .order_by_asc(file::Column::Id)
            .all(db)
            .await
            .unwrap(),
        location::Entity::find()
            .order_by_asc(location::Column::Id)
            .all(db)
            .await
            .unwrap(),
        aggregation::Entity::find()
            .order_by_asc(aggregation::Column::Id)
            .all(db)
            .await
            .unwrap(),
        aggregation_member::Entity::find()
            .order_by_asc(aggregation_member::Column::Id)
            .all(db)
            .await
            .unwrap(),
        outbox::Entity::find().all(db).await.unwrap(),
        crate::db::policy_lease::Entity::find()
            .all(db)
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn a_dry_run_reports_per_rule_and_group_and_changes_nothing() {
    let w = world(testing::memory().await).await;
    let (_, f) = situations(&w.db).await;
    let (h2, _) = holding_with(&w.db, "t", &[10, 20]).await;
    in_group(&w.db, h2, "ocean").await;
    let before = snapshot(&w.db).await;
    // Evict what has a verified cold copy, archive the rest.
    let r = runner(
        &w,
        cfg(),
        Arc::new(|f: &FileFacts<'_>, _| {
            Some(Decision {
                rule: usize::from(!f.cold),
                name: if f.cold { "evict-cold" } else { "archive-rest" }.into(),
                action: if f.cold {
                    RuleAction::Evict
                } else {
                    RuleAction::Archive
                },
            })
        }),
    );
    let report = r.pass(PassKind::DryRun).await.unwrap();
    assert_eq!(
        snapshot(&w.db).await,
        before,
        "a dry run changed the catalogue"
    );
    assert_eq!(report.outcome, PassOutcome::Completed);
    assert_eq!(report.evaluated, 8);
    assert_eq!(
        (report.archived_files, report.evicted_files, report.errors),
        (0, 0, 0)
    );
    // Only the files each action would apply to: evict f1 and f3 (f2 pinned, f4 awaited);
    // archive f0 and the two of holding t (f5 is being written).
    let evict = report
        .rules
        .iter()
        .find(|t| t.rule == "evict-cold")
        .unwrap();
    assert_eq!((evict.tally.files, evict.tally.bytes), (2, 200 + 400));
    assert_eq!(evict.tally.examples, ["/s/f1", "/s/f3"]);
    let archive = report
        .rules
        .iter()
        .find(|t| t.rule == "archive-rest")
        .unwrap();
    assert_eq!(
        (archive.tally.files, archive.tally.bytes),
        (3, 100 + 10 + 20)
    );
    let ocean = report
        .groups
        .iter()
        .find(|g| g.group == "ocean" && g.action == "archive")
        .unwrap();
    assert_eq!((ocean.tally.files, ocean.tally.bytes), (2, 30));
    let _ = f;
    // Recorded as a pass all the same (the runner's own table).
    let status = r.status(5).await.unwrap();
    assert_eq!(status.passes.len(), 1);
    let p = &status.passes[0];
    assert_eq!(
        (p.id, p.kind, p.outcome),
        (report.id, PassKind::DryRun, PassOutcome::Completed)
    );
    assert_eq!((&p.rules, &p.groups), (&report.rules, &report.groups));
}

#[tokio::test]
async fn evict_drops_only_verified_unpinned_unawaited_warm_copies() {
    let w = world(testing::memory().await).await;
    let (_, f) = situations(&w.db).await;
    let r = runner(&w, cfg(), decide("evict-all", RuleAction::Evict));
    let report = r.pass(PassKind::Manual).await.unwrap();
    assert_eq!(report.outcome, PassOutcome::Completed, "{report:?}");
    assert_eq!((report.evicted_files, report.evicted_bytes), (2, 200 + 400));
    let left = warm(&w.db).await;
    assert_eq!(left, [f[0], f[2], f[4], f[5], f[6]]);
    // The objects' deletion is staged with the change.
    assert!(!outbox::Entity::find().all(&w.db).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_catalogue_refuses_to_evict_pinned_awaited_or_unverified_files() {
    // The guard is the catalogue's, whatever the runner asks.
    let w = world(testing::memory().await).await;
    let (_, f) = situations(&w.db).await;
    let mut r = runner(&w, cfg(), decide("x", RuleAction::None));
    r.rpc_timeout = std::time::Duration::from_secs(10);
    let (files, bytes) = super::actions::evict(&r, &f).await.unwrap();
    assert_eq!((files, bytes), (2, 200 + 400));
    assert_eq!(warm(&w.db).await, [f[0], f[2], f[4], f[5], f[6]]);
}

#[tokio::test]
async fn pin_and_none_rules_keep_files_where_they_are() {
    let w = world(testing::memory().await).await;
    let (_, f) = situations(&w.db).await;
    let before = snapshot(&w.db).await;
    for d in [
        decide(
            "keep",
            RuleAction::Pin {
                until: Utc::now() + Duration::days(1),
            },
        ),
        decide("never", RuleAction::None),
    ] {
        let report = runner(&w, cfg(), d).pass(PassKind::Manual).await.unwrap();
        assert_eq!(report.outcome, PassOutcome::Completed);
        assert_eq!((report.archived_files, report.evicted_files), (0, 0));
        assert_eq!(report.rules[0].tally.files, 6, "{report:?}");
    }
    assert_eq!(
        snapshot(&w.db).await.lines().take(5).collect::<Vec<_>>(),
        before.lines().take(5).collect::<Vec<_>>()
    );
    let _ = f;
}

#[tokio::test]
async fn archive_makes_verified_cold_copies_and_counts_them() {
    let w = world(testing::memory().await).await;
    let (_, f) = situations(&w.db).await;
    let (_, g) = holding_with(&w.db, "t", &[10, 20, 30, 40]).await;
    let r = runner(&w, cfg(), decide("archive-all", RuleAction::Archive));
    let report = r.pass(PassKind::Manual).await.unwrap();
    assert_eq!(report.outcome, PassOutcome::Completed, "{report:?}");
    // f0 and the four of t: five files, two aggregates of t (three members at most) and one of s.
    assert_eq!(
        (report.archived_files, report.archived_bytes, report.errors),
        (5, 100 + 10 + 20 + 30 + 40, 0)
    );
    for id in [f[0], g[0], g[1], g[2], g[3]] {
        let member = aggregation_member::Entity::find()
            .filter(aggregation_member::Column::FileId.eq(id))
            .one(&w.db)
            .await
            .unwrap()
            .unwrap();
        let a = aggregation::Entity::find_by_id(member.aggregation_id)
            .one(&w.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.state, aggregation::State::Stored);
        assert!(
            location::Entity::find()
                .filter(location::Column::FileId.eq(id))
                .filter(location::Column::Tier.eq(Tier::Cold))
                .one(&w.db)
                .await
                .unwrap()
                .is_some()
        );
    }
    // The one being written is left to its round.
    assert!(
        location::Entity::find()
            .filter(location::Column::FileId.eq(f[5]))
            .filter(location::Column::Tier.eq(Tier::Cold))
            .one(&w.db)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_breaker_opens_when_the_cold_store_fails_and_only_a_new_run_or_reset_closes_it() {
    let w = world(testing::memory().await).await;
    let (_, _) = holding_with(&w.db, "t", &[1; 8]).await;
    w.fail.store(true, Ordering::SeqCst);
    let mut c = cfg();
    c.breaker_min_actions = 3;
    c.watermarks.insert(
        "default".into(),
        Watermark {
            high_bytes: 1,
            low_bytes: 0,
        },
    );
    let r = runner(&w, c, decide("archive-all", RuleAction::Archive));
    // nlds_policy_passes_total{outcome}, counted as each pass ends.
    let passes = |outcome: &str| {
        nlds_metrics::metrics()
            .policy_passes
            .get_or_create(&[("outcome", outcome.to_owned())])
            .get()
    };
    let (opened, completed) = (passes("breaker_open"), passes("completed"));
    let report = r.pass(PassKind::Manual).await.unwrap();
    assert_eq!(report.outcome, PassOutcome::BreakerOpen, "{report:?}");
    assert_eq!(passes("breaker_open"), opened + 1);
    let why = report.breaker.clone().unwrap();
    assert!(
        why.starts_with("8 of 8 archive actions failed: aggregate "),
        "{why}"
    );
    assert_eq!((report.archived_files, report.errors), (0, 8));
    let status = r.status(1).await.unwrap();
    assert_eq!(status.breaker.as_deref(), Some(why.as_str()));
    assert!(status.breaker_since.is_some());
    // Watermark passes wait for it to close.
    match r.pass(PassKind::Watermark).await {
        Err(RunnerError::BreakerOpen { reason, .. }) => assert_eq!(reason, why),
        other => panic!("{other:?}"),
    }
    // An operator closes it ...
    r.reset_breaker().await.unwrap();
    assert_eq!(r.status(1).await.unwrap().breaker, None);
    // ... and so does the next manual (or scheduled) pass, which runs.
    lease::open_breaker(&w.db, "test").await.unwrap();
    w.fail.store(false, Ordering::SeqCst);
    let report = r.pass(PassKind::Manual).await.unwrap();
    assert_eq!(report.outcome, PassOutcome::Completed, "{report:?}");
    assert_eq!(report.archived_files, 8);
    assert_eq!(r.status(1).await.unwrap().breaker, None);
    assert_eq!(
        (passes("breaker_open"), passes("completed")),
        (opened + 1, completed + 1)
    );
}

#[tokio::test]
async fn caps_bound_a_pass_and_share_it_across_groups() {
    let w = world(testing::memory().await).await;
    let (a, _) = holding_with(&w.db, "a", &[1; 6]).await;
    let (b, _) = holding_with(&w.db, "b", &[1; 2]).await;
    in_group(&w.db, a, "big").await;
    in_group(&w.db, b, "small").await;
    let mut c = cfg();
    c.max_files = 4;
    let r = runner(&w, c, decide("archive-all", RuleAction::Archive));
    let report = r.pass(PassKind::Manual).await.unwrap();
    assert_eq!(report.outcome, PassOutcome::Capped, "{report:?}");
    assert_eq!(report.archived_files, 4);
    // Two of each group, not four of the first.
    let cold_in = |h: i64| {
        let db = w.db.clone();
        async move {
            let ids: Vec<i64> = file::Entity::find()
                .filter(file::Column::HoldingId.eq(h))
                .all(&db)
                .await
                .unwrap()
                .into_iter()
                .map(|f| f.id)
                .collect();
            location::Entity::find()
                .filter(location::Column::FileId.is_in(ids))
                .filter(location::Column::Tier.eq(Tier::Cold))
                .all(&db)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!((cold_in(a).await, cold_in(b).await), (2, 2));
}

#[tokio::test]
async fn a_watermark_pass_evicts_the_least_recently_accessed_until_below_low() {
    let w = world(testing::memory().await).await;
    let k = 256 * 1024;
    // 16 files of 256 KiB: 4 MiB warm; high 3 MiB, low 2 MiB.
    let (h, f) = holding_with(&w.db, "w", &[k; 16]).await;
    // All but the last two have verified cold copies; f[0] is pinned, f[1] awaited by a recall.
    aggregate(&w.db, h, &f[2..14], aggregation::State::Stored).await;
    let recalled = aggregate(&w.db, h, &f[1..2], aggregation::State::Stored).await;
    aggregate(&w.db, h, &f[0..1], aggregation::State::Stored).await;
    recall::Entity::insert(recall::ActiveModel {
        aggregation_id: Set(recalled),
        created: Set(Utc::now()),
        started: Set(false),
        ..Default::default()
    })
    .exec(&w.db)
    .await
    .unwrap();
    pin_until(&w.db, f[0], Utc::now() + Duration::hours(1)).await;
    // Accessed in the order f13, f12, ..., f0 (f13 longest ago).
    for (i, id) in f.iter().enumerate() {
        file::Entity::update_many()
            .col_expr(
                file::Column::LastAccess,
                Expr::value(Some(Utc::now() - Duration::days(100 - (16 - i as i64)))),
            )
            .filter(file::Column::Id.eq(*id))
            .exec(&w.db)
            .await
            .unwrap();
    }
    let mut c = cfg();
    c.watermarks.insert(
        "default".into(),
        Watermark {
            high_bytes: 3 * 1024 * 1024,
            low_bytes: 2 * 1024 * 1024,
        },
    );
    let r = runner(&w, c, decide("none", RuleAction::None));
    // A `none` rule keeps every file from the watermark too.
    let report = r.pass(PassKind::Watermark).await.unwrap();
    assert_eq!(report.evicted_files, 0, "{report:?}");
    // Without a rule, the least recently accessed go first (f13, f12, ...) until the tier is
    // below 2 MiB: 9 of them.
    let mut r = r;
    r.decider = Some(Arc::new(|_, _| None));
    let above = super::watermark::above_high(&r).await.unwrap();
    assert_eq!(above, [("default".to_owned(), 4 * 1024 * 1024)]);
    let report = r.pass(PassKind::Watermark).await.unwrap();
    assert_eq!(report.outcome, PassOutcome::Completed, "{report:?}");
    assert_eq!(
        (report.evicted_files, report.evicted_bytes),
        (9, 9 * k as u64),
        "{report:?}"
    );
    let tally = report
        .rules
        .iter()
        .find(|t| t.rule == "watermark:default")
        .unwrap();
    assert_eq!(tally.tally.files, 9);
    // 16 -> 7 files: f13 down to f5 went; the pinned, the awaited, the three most recently
    // accessed and the two without a cold copy stayed.
    let left = warm(&w.db).await;
    assert_eq!(left, [f[0], f[1], f[2], f[3], f[4], f[14], f[15]]);
    assert!(super::watermark::above_high(&r).await.unwrap().is_empty());
    assert!(super::watermark::check(&r).await.unwrap().is_none());
}
