//! The read queries at scale: `holding_stat` follows every change of files and copies (SQLite
//! and PostgreSQL), and the statements of `catalog.find`, `catalog.list` and `monitor.stat` use
//! their indexes on PostgreSQL over a seeded catalogue (EXPLAIN, no planner settings changed).

use nlds_core::api::ApiAction;
use nlds_core::message::HoldingFilter;
use nlds_core::{Envelope, Payload};
use sea_orm::sea_query::Order;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Statement,
};
use serde_json::Value;
use uuid::Uuid;

use super::Catalogue;
use super::list::list_select;
use super::query::find_select;
use crate::db::{holding_stat, testing, transaction_record};

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `(holding_id, paths, files, bytes, warm_files, cold_files)` as the triggers keep them.
type Counts = (i64, i64, i64, i64, i64, i64);

/// The counts the triggers keep, and the counts of the rows.
async fn stats(db: &DatabaseConnection) -> (Vec<Counts>, Vec<Counts>) {
    let kept: Vec<Counts> = holding_stat::Entity::find()
        .order_by_asc(holding_stat::Column::HoldingId)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        // A holding whose files are all gone keeps a row of zeros.
        .filter(|s| (s.paths, s.files, s.bytes, s.warm_files, s.cold_files) != (0, 0, 0, 0, 0))
        .map(|s| {
            (
                s.holding_id,
                s.paths,
                s.files,
                s.bytes,
                s.warm_files,
                s.cold_files,
            )
        })
        .collect();
    let sql = r#"SELECT f.holding_id AS h, CAST(COUNT(DISTINCT f.path) AS BIGINT) AS p,
        CAST(COUNT(*) AS BIGINT) AS n, CAST(SUM(f.size) AS BIGINT) AS b,
        CAST(SUM(CASE WHEN EXISTS (SELECT 1 FROM location l WHERE l.file_id = f.id AND l.tier = 'warm') THEN 1 ELSE 0 END) AS BIGINT) AS w,
        CAST(SUM(CASE WHEN EXISTS (SELECT 1 FROM location l WHERE l.file_id = f.id AND l.tier = 'cold') THEN 1 ELSE 0 END) AS BIGINT) AS c
        FROM "file" f WHERE f.deleted_at IS NULL GROUP BY f.holding_id ORDER BY f.holding_id"#;
    let counted = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get::<i64>("", "h").unwrap(),
                r.try_get::<i64>("", "p").unwrap(),
                r.try_get::<i64>("", "n").unwrap(),
                r.try_get::<i64>("", "b").unwrap(),
                r.try_get::<i64>("", "w").unwrap(),
                r.try_get::<i64>("", "c").unwrap(),
            )
        })
        .collect();
    (kept, counted)
}

/// Every kind of change to files and copies, checking after each that the kept counts are the
/// counted ones.
async fn stat_follows_changes(db: &DatabaseConnection) {
    let now = "'2026-12-05 00:00:00+00'";
    exec(db, &format!(r#"INSERT INTO holding (id, label, "user", "group", created) VALUES (1, 'a', 'u', 'g', {now}), (2, 'b', 'u', 'g', {now})"#)).await;
    exec(db, &format!(r#"INSERT INTO "transaction" (id, transaction_id, holding_id, ingest_time) VALUES (1, 't1', 1, {now}), (2, 't2', 2, {now})"#)).await;
    let steps = [
        // Several files in one statement, to two holdings, one already deleted.
        r#"INSERT INTO "file" (id, holding_id, transaction_id, path, kind, size, uid, gid, mode, mtime_ns, access_count, deleted_at)
           VALUES (1, 1, 1, '/a', 'file', 10, 0, 0, 0, 0, 0, NULL), (2, 1, 1, '/b', 'file', 20, 0, 0, 0, 0, 0, NULL),
                  (3, 1, 1, '/c', 'file', 40, 0, 0, 0, 0, 0, NULL), (4, 2, 2, '/a', 'file', 80, 0, 0, 0, 0, 0, NULL),
                  (5, 2, 2, '/gone', 'file', 160, 0, 0, 0, 0, 0, '2026-01-01 00:00:00+00')"#,
        // Copies: warm for all, cold for some, one on the deleted file.
        r#"INSERT INTO location (file_id, tier, bucket, key, created) VALUES
           (1, 'warm', 'b', 'k1', '2026-12-05 00:00:00+00'), (2, 'warm', 'b', 'k2', '2026-12-05 00:00:00+00'),
           (3, 'warm', 'b', 'k3', '2026-12-05 00:00:00+00'), (4, 'warm', 'b', 'k4', '2026-12-05 00:00:00+00'),
           (5, 'warm', 'b', 'k5', '2026-12-05 00:00:00+00'), (1, 'cold', 'b', 'c1', '2026-12-05 00:00:00+00'),
           (4, 'cold', 'b', 'c4', '2026-12-05 00:00:00+00')"#,
        // Evict a warm copy.
        "DELETE FROM location WHERE file_id = 1 AND tier = 'warm'",
        // Access tracking changes nothing counted.
        r#"UPDATE "file" SET access_count = access_count + 1, last_access = '2026-12-05 00:00:00+00'"#,
        // Soft delete, undelete, resize, move.
        r#"UPDATE "file" SET deleted_at = '2026-12-05 00:00:00+00' WHERE id IN (2, 4)"#,
        r#"UPDATE "file" SET deleted_at = NULL WHERE id IN (4, 5)"#,
        r#"UPDATE "file" SET size = 7 WHERE id = 3"#,
        r#"UPDATE "file" SET holding_id = 2 WHERE id = 3"#,
        // Versions: two more of /a and a new path in one statement (one path more, three
        // files more).
        r#"INSERT INTO "file" (id, holding_id, transaction_id, path, kind, size, uid, gid, mode, mtime_ns, access_count, version, deleted_at)
           VALUES (6, 1, 1, '/a', 'file', 5, 0, 0, 0, 0, 0, 2, NULL), (7, 1, 1, '/a', 'file', 6, 0, 0, 0, 0, 0, 3, NULL),
                  (8, 1, 1, '/d', 'file', 1, 0, 0, 0, 0, 0, 1, NULL)"#,
        // Delete the newest and the oldest version of /a: the path stays (version 2).
        r#"UPDATE "file" SET deleted_at = '2026-12-05 00:00:00+00' WHERE id IN (7, 1)"#,
        // Its last live version: the path goes.
        r#"UPDATE "file" SET deleted_at = '2026-12-05 00:00:00+00' WHERE id = 6"#,
        // Two versions back in one statement: the path once.
        r#"UPDATE "file" SET deleted_at = NULL WHERE id IN (6, 7)"#,
        // Two live versions of one path hard-deleted in one statement: the path once.
        r#"DELETE FROM "file" WHERE id IN (7, 6)"#,
        // A copy changes tier.
        "UPDATE location SET tier = 'cold' WHERE file_id = 5 AND tier = 'warm'",
        // Purge a deleted file and hard-delete a live one: their copies go with them (cascade).
        r#"DELETE FROM "file" WHERE id IN (2, 1, 8)"#,
        // Everything of a holding.
        r#"DELETE FROM "file" WHERE holding_id = 2"#,
    ];
    for (i, sql) in steps.iter().enumerate() {
        exec(db, sql).await;
        let (kept, counted) = stats(db).await;
        assert_eq!(kept, counted, "after step {i}: {sql}");
    }
    let (kept, _) = stats(db).await;
    assert!(kept.is_empty(), "{kept:?}");
    // A deleted holding takes its row with it.
    exec(db, r#"DELETE FROM "transaction""#).await;
    exec(db, "DELETE FROM holding").await;
    let left = holding_stat::Entity::find().all(db).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn holding_stat_follows_every_change_on_sqlite() {
    stat_follows_changes(&testing::memory().await).await;
}

#[tokio::test]
async fn holding_stat_follows_every_change_on_postgres() {
    let Some(pg) = testing::postgres("holding_stat").await else {
        return;
    };
    stat_follows_changes(&pg.db).await;
    pg.drop_now().await;
}

/// The scan and sort nodes of a plan: `(node type, relation or index name)`.
fn nodes(plan: &Value, out: &mut Vec<(String, String)>) {
    let kind = plan["Node Type"].as_str().unwrap_or_default().to_owned();
    let on = plan["Index Name"]
        .as_str()
        .or(plan["Relation Name"].as_str())
        .unwrap_or_default()
        .to_owned();
    out.push((kind, on));
    for child in plan["Plans"].as_array().into_iter().flatten() {
        nodes(child, out);
    }
}

async fn plan(db: &DatabaseConnection, stmt: Statement) -> Vec<(String, String)> {
    let explain = Statement {
        sql: format!("EXPLAIN (FORMAT JSON) {}", stmt.sql),
        ..stmt
    };
    let row = db.query_one_raw(explain).await.unwrap().unwrap();
    let json: Value = row.try_get("", "QUERY PLAN").unwrap();
    let mut out = Vec::new();
    nodes(&json[0]["Plan"], &mut out);
    out
}

/// How many times the statement, run (`EXPLAIN ANALYZE`), looked for a newer version of a row
/// (the loops of its scans of `file` as `newer`).
async fn probes(db: &DatabaseConnection, stmt: Statement) -> u64 {
    fn loops(plan: &Value) -> u64 {
        let own = if plan["Alias"] == "newer" {
            plan["Actual Loops"].as_u64().unwrap_or_default()
        } else {
            0
        };
        own + plan["Plans"]
            .as_array()
            .into_iter()
            .flatten()
            .map(loops)
            .sum::<u64>()
    }
    let explain = Statement {
        sql: format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", stmt.sql),
        ..stmt
    };
    let row = db.query_one_raw(explain).await.unwrap().unwrap();
    let json: Value = row.try_get("", "QUERY PLAN").unwrap();
    loops(&json[0]["Plan"])
}

/// What a plan must not do: scan a catalogue table whole, or sort what an index gives in order.
fn assert_indexed(what: &str, plan: &[(String, String)], no_sort: bool) {
    let tables = [
        "file",
        "holding",
        "transaction",
        "location",
        "checksum",
        "holding_stat",
        "transaction_record",
        "tag",
    ];
    for (kind, on) in plan {
        assert!(
            !(kind == "Seq Scan" && tables.contains(&on.as_str())),
            "{what}: a sequential scan of {on}: {plan:?}"
        );
        assert!(!(no_sort && kind == "Sort"), "{what}: a sort: {plan:?}");
    }
}

/// 50 users, 1,000 holdings of 100 files (10 directories each), 2 transactions and a tag each.
const SEED: &str = r#"
INSERT INTO holding (id, label, "user", "group", created)
  SELECT h, format('run-%s', h), format('u%s', h % 50), format('g%s', h % 5),
         timestamptz '2026-01-01 00:00:00+00' + h * interval '1 minute'
    FROM generate_series(1, 1000) AS h;
INSERT INTO "transaction" (id, transaction_id, holding_id, ingest_time)
  SELECT (h - 1) * 2 + t + 1, md5(h::text || '/' || t::text), h,
         timestamptz '2026-01-01 00:00:00+00' + h * interval '1 minute' + t * interval '1 second'
    FROM generate_series(1, 1000) AS h, generate_series(0, 1) AS t;
INSERT INTO transaction_record (id, transaction_id, "user", "group", api_action, job_label, label,
                                holding_id, created, updated)
  SELECT t.id, t.transaction_id, h."user", h."group", 'put', 'job', h.label, h.id, t.ingest_time,
         t.ingest_time
    FROM "transaction" t JOIN holding h ON h.id = t.holding_id;
INSERT INTO "file" (holding_id, transaction_id, path, kind, size, uid, gid, mode, mtime_ns,
                    access_count)
  SELECT h, (h - 1) * 2 + i / 50 + 1,
         format('/gws/u%s/run-%s/d%s/f%s', h % 50, h, i / 10, i), 'file', 4096, 0, 0, 33188, 0, 0
    FROM generate_series(1, 1000) AS h, generate_series(0, 99) AS i;
INSERT INTO location (file_id, tier, bucket, key, created)
  SELECT id, 'warm', 'b', md5(id::text), timestamptz '2026-01-02 00:00:00+00' FROM "file";
INSERT INTO checksum (file_id, algorithm, value) SELECT id, 'blake3', md5(id::text) FROM "file";
INSERT INTO tag (holding_id, key, value) SELECT h, 'project', format('p%s', h % 7)
    FROM generate_series(1, 1000) AS h;
ANALYZE;
"#;

#[tokio::test]
async fn read_queries_use_their_indexes_on_postgres() {
    let Some(pg) = testing::postgres("plans").await else {
        return;
    };
    let db = pg.db.clone();
    exec(&db, SEED).await;
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let env = Envelope::new(
        Uuid::new_v4(),
        "u7",
        "g2",
        ApiAction::Put,
        "job",
        Payload::Stat {
            filter: Default::default(),
        },
    );
    let pg_stmt = |q: sea_orm::Select<crate::db::file::Entity>| q.build(DbBackend::Postgres);

    // catalog.find by exact path, over all of the user's holdings.
    let scope = cat
        .scope(&env, &HoldingFilter::default(), false)
        .await
        .unwrap();
    let all = HoldingFilter::default();
    let exact = find_select(
        scope.clone(),
        &all,
        Some("/gws/u7/run-7/d3/f35"),
        false,
        true,
    );
    assert_indexed("exact path", &plan(&db, pg_stmt(exact)).await, false);

    // catalog.find of a directory: an anchored regex is an index range of the path.
    let prefix = find_select(scope.clone(), &all, Some("^/gws/u7/run-7/d3/"), true, true);
    let p = plan(&db, pg_stmt(prefix)).await;
    assert_indexed("directory prefix", &p, false);
    // An unanchored regex scans the user's files: the same check sees the difference.
    let unanchored = find_select(scope, &all, Some("/gws/u7/run-7/d3/"), true, true);
    let u = plan(&db, pg_stmt(unanchored)).await;
    assert_ne!(p, u, "the anchored regex narrows nothing");

    // catalog.find of a holding by label: its first 1,000 files.
    let label = HoldingFilter {
        label: Some("run-7".into()),
        ..Default::default()
    };
    let scope = cat.scope(&env, &label, false).await.unwrap();
    let first = find_select(scope, &label, None, false, true).limit(1000);
    assert_indexed(
        "first page of a label",
        &plan(&db, pg_stmt(first.clone())).await,
        false,
    );
    // The holding has one version of each path: no row is probed for a newer version. With a
    // second version of one path, every row is (the 100 files and the new version).
    assert_eq!(probes(&db, pg_stmt(first.clone())).await, 0);
    exec(
        &db,
        r#"INSERT INTO "file" (holding_id, transaction_id, path, kind, size, uid, gid, mode,
               mtime_ns, access_count, version)
           SELECT holding_id, transaction_id, path, kind, size, uid, gid, mode, mtime_ns, 0, 2
             FROM "file" WHERE holding_id = 7 AND path = '/gws/u7/run-7/d3/f35'"#,
    )
    .await;
    assert_eq!(probes(&db, pg_stmt(first)).await, 101);

    // catalog.list: the page of holdings (a user's few, sorted), with their counts, tags and
    // transactions probed by index for the page's rows only.
    let scope = cat
        .scope(&env, &HoldingFilter::default(), false)
        .await
        .unwrap();
    let page = list_select(scope, Order::Asc, 1001, 0, DbBackend::Postgres);
    assert_indexed(
        "list of holdings",
        &plan(&db, page.build(DbBackend::Postgres)).await,
        false,
    );

    // monitor.stat: a user's last 10 transactions, read from the end of the index; without it,
    // the guard sees the sort.
    let stat = || {
        transaction_record::Entity::find()
            .filter(transaction_record::Column::User.eq("u7"))
            .order_by(transaction_record::Column::Created, Order::Desc)
            .order_by(transaction_record::Column::Id, Order::Desc)
            .limit(10)
            .build(DbBackend::Postgres)
    };
    assert_indexed("last 10 transactions", &plan(&db, stat()).await, true);
    exec(&db, "DROP INDEX idx_transaction_record_user_created").await;
    let without = plan(&db, stat()).await;
    assert!(
        without.iter().any(|(k, _)| k == "Sort" || k == "Seq Scan"),
        "without the index the plan still reads in order: {without:?}"
    );
    pg.drop_now().await;
}
