//! The policy runner over the distributed services (RabbitMQ, PostgreSQL, moto S3, the `dir`
//! tape emulator): a warm tier above its high watermark is brought below its low one by evicting
//! the least recently accessed files with verified cold copies, never a pinned or awaited one;
//! a dry run changes nothing (catalogue rows and bucket objects identical before and after).
//!
//! The watermark is scaled down from the 50 MiB: 18 files of 256 KiB (4.5 MiB), high
//! 4 MiB, low 2 MiB.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nlds_core::State;
use nlds_core::policy::{PassKind, PassOutcome};
use nlds_settings::Watermark;
use nlds_workers::policy::PolicyRunner;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::json;

use crate::distributed::{Services, TOKEN, bucket_keys, start_roles, start_server};
use crate::helpers::{Api, temp};

const K: usize = 256 * 1024;

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql).await.unwrap();
}

/// `(id, path)` of every file of holding `label`, by path.
async fn file_ids(db: &DatabaseConnection, label: &str) -> BTreeMap<String, i64> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        format!(
            "SELECT f.id, f.path FROM file f JOIN holding h ON h.id = f.holding_id \
             WHERE h.label = '{label}' AND f.kind = 'file'"
        ),
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.try_get::<String>("", "path").unwrap(),
            r.try_get::<i64>("", "id").unwrap(),
        )
    })
    .collect()
}

/// File ids with a warm location, in order.
async fn warm_ids(db: &DatabaseConnection) -> Vec<i64> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT file_id FROM location WHERE tier = 'warm' ORDER BY file_id".to_owned(),
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<i64>("", "file_id").unwrap())
    .collect()
}

/// The catalogue's rows as text (files, locations, aggregations and members, pins).
async fn catalogue(db: &DatabaseConnection) -> String {
    let mut out = String::new();
    for sql in [
        "SELECT id, path, size, deleted_at::text AS d FROM file ORDER BY id",
        "SELECT id, file_id, tier, bucket, key FROM location ORDER BY id",
        "SELECT id, name, state FROM aggregation ORDER BY id",
        "SELECT id, aggregation_id, file_id FROM aggregation_member ORDER BY id",
        "SELECT id, file_id, until::text AS u FROM pin ORDER BY id",
    ] {
        for r in db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap()
        {
            out.push_str(&format!("{r:?}\n"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watermark_pass_evicts_the_least_recently_accessed_verified_files_below_low() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let mut settings = svc.settings();
    settings.workers.archive.interval_secs = 0;
    settings.workers.archive.aggregate_bytes = 1 << 20;
    settings.workers.archive.aggregate_members = 4;
    settings.workers.archive.aggregates_per_holding = 100;
    let cold = temp();
    settings.workers.cold.dir_mut().root = cold.path().to_owned();
    // The policy role runs, but its timer stays out of the way: passes run when the test asks.
    settings.policy.enabled = true;
    settings.policy.interval_secs = 0;
    settings.policy.watermark_check_secs = 3600;
    settings.policy.max_files = 0;
    settings.policy.watermarks.insert(
        "default".into(),
        Watermark {
            high_bytes: 4 << 20,
            low_bytes: 2 << 20,
        },
    );
    let stop = tokio_util::sync::CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);

    // 16 files archived (verified cold copies), then 2 more never archived.
    let hot = temp();
    for i in 0..16 {
        std::fs::write(hot.path().join(format!("f{i:02}")), vec![i as u8; K]).unwrap();
    }
    let put = api
        .put_and_wait(json!({"paths": [hot.path()], "label": "hot"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    let bus = nlds_workers::run::connect_bus(&settings.bus).await.unwrap();
    nlds_workers::archive_put::request_round(bus.as_ref())
        .await
        .unwrap();
    let db = Database::connect(&settings.workers.database_url)
        .await
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let stored = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM location WHERE tier = 'cold'".to_owned(),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        if stored == 16 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "not archived");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let young = temp();
    for i in 0..2 {
        std::fs::write(young.path().join(format!("y{i}")), vec![7u8; K]).unwrap();
    }
    let put = api
        .put_and_wait(json!({"paths": [young.path()], "label": "young"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");

    let hot_ids: Vec<i64> = file_ids(&db, "hot").await.into_values().collect();
    let young_ids: Vec<i64> = file_ids(&db, "young").await.into_values().collect();
    assert_eq!((hot_ids.len(), young_ids.len()), (16, 2));
    // f00 is accessed longest ago, f15 most recently; f00 is pinned by a get, a stage request
    // waits for f01.
    for (i, id) in hot_ids.iter().enumerate() {
        exec(
            &db,
            &format!(
                "UPDATE file SET last_access = now() - interval '{} days' WHERE id = {id}",
                100 - i
            ),
        )
        .await;
    }
    exec(
        &db,
        &format!(
            "INSERT INTO pin (file_id, requester, until, created) \
             VALUES ({}, 'get:test', now() + interval '1 hour', now())",
            hot_ids[0]
        ),
    )
    .await;
    exec(
        &db,
        "INSERT INTO stage_request (request_id, \"user\", \"group\", created, lifetime_secs) \
         VALUES ('stage-test', 'alice', 'climate', now(), 3600)",
    )
    .await;
    exec(
        &db,
        &format!(
            "INSERT INTO stage_file (stage_id, file_id, path, state, updated) \
             SELECT id, {}, '/x', 'SUBMITTED', now() FROM stage_request \
             WHERE request_id = 'stage-test'",
            hot_ids[1]
        ),
    )
    .await;

    let runner = Arc::new(
        PolicyRunner::from_config(db.clone(), bus.clone(), settings.policy.clone())
            .unwrap()
            .with_holder("system-test"),
    );

    // A dry run: the report says what would go, nothing changes.
    let os = &settings.workers.object_store;
    let (rows, objects) = (catalogue(&db).await, bucket_keys(os, "").await);
    assert_eq!(objects.len(), 18);
    let dry = runner.pass(PassKind::DryRun).await.unwrap();
    assert_eq!(dry.outcome, PassOutcome::Completed, "{dry:?}");
    assert_eq!(dry.evicted_files, 0);
    let would = dry
        .rules
        .iter()
        .find(|t| t.rule == "watermark:default")
        .expect("the dry run reports the watermark's evictions");
    assert_eq!(would.tally.files, 11, "{dry:?}");
    assert_eq!(
        catalogue(&db).await,
        rows,
        "a dry run changed the catalogue"
    );
    assert_eq!(
        bucket_keys(os, "").await,
        objects,
        "a dry run changed the bucket"
    );

    // The pass: 18 files (4.5 MiB) down to 7 (1.75 MiB): f02..f12 go, least recently accessed
    // first; the pinned, the awaited, the three most recent and the two without a cold copy stay.
    let report = runner.pass(PassKind::Watermark).await.unwrap();
    assert_eq!(report.outcome, PassOutcome::Completed, "{report:?}");
    assert_eq!(
        (report.evicted_files, report.evicted_bytes),
        (11, 11 * K as u64),
        "{report:?}"
    );
    let mut expect: Vec<i64> = vec![hot_ids[0], hot_ids[1]];
    expect.extend(&hot_ids[13..]);
    expect.extend(&young_ids);
    expect.sort_unstable();
    assert_eq!(warm_ids(&db).await, expect);
    // Their objects are deleted (the catalogue staged the removals with the change).
    let start = std::time::Instant::now();
    while bucket_keys(os, "").await.len() != 7 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "objects not removed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Below the high watermark now: the next check starts no pass.
    assert!(
        nlds_workers::policy::watermark::check(&runner)
            .await
            .unwrap()
            .is_none()
    );
    let status = runner.status(5).await.unwrap();
    assert_eq!(status.passes.len(), 2);
    assert_eq!(status.passes[0].kind, PassKind::Watermark);
    assert_eq!(status.breaker, None);
    stop.cancel();
}
