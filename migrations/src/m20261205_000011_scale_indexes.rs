//! Indexes for the catalogue's and the monitor's read queries at scale (millions of files), each
//! named for the query it serves (see BENCHMARKS.md, "Catalogue at scale", for the plans):
//!
//! * `idx_transaction_record_user_created`, `idx_transaction_record_group_created`
//!   (`transaction_record ("user" | "group", created, id)`): the newest (or oldest) transactions
//!   of a user or group (`monitor.stat`) read from the end of an index, not sorted;
//! * `holding_stat`: the live files, bytes, and live files with a warm and with a cold copy of
//!   each holding, kept by triggers on `file` and `location` in the same database transaction as
//!   the change, so `catalog.list` reads four numbers per holding instead of counting every file
//!   and copy of the page (a user's 100 holdings of 1,000 files: 200,000 rows a request).
//!
//! The triggers count a file while `deleted_at IS NULL`: inserting, soft-deleting, undeleting,
//! resizing or moving a file, and adding or removing a copy, move the counts; a hard delete of a
//! live file subtracts it (and its copies) before the row goes, and a copy deleted with its file
//! (the cascade, when the file is no longer visible) is not subtracted twice. PostgreSQL runs one
//! statement-level trigger per statement (transition tables, one upsert per holding), SQLite
//! row-level triggers.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::columns::{big, index};
use crate::m20261125_000001_create_catalogue::Holding;
use crate::m20261125_000002_create_monitor::TransactionRecord;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum HoldingStat {
    Table,
    HoldingId,
    Files,
    Bytes,
    WarmFiles,
    ColdFiles,
}

/// `holding_stat` upserts of one statement's deltas, per holding in id order (so two statements
/// never wait on each other's rows in opposite orders).
const PG_UPSERT: &str = "INSERT INTO holding_stat (holding_id, files, bytes, warm_files, cold_files) \
    SELECT h, SUM(f), SUM(b), SUM(w), SUM(c) FROM d GROUP BY h ORDER BY h \
    ON CONFLICT (holding_id) DO UPDATE SET files = holding_stat.files + excluded.files, \
    bytes = holding_stat.bytes + excluded.bytes, \
    warm_files = holding_stat.warm_files + excluded.warm_files, \
    cold_files = holding_stat.cold_files + excluded.cold_files";

/// The PostgreSQL functions and triggers that keep `holding_stat` (`{upsert}`: [`PG_UPSERT`]).
const PG_TRIGGERS: &str = r#"
CREATE FUNCTION nlds_stat_file_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH d (h, f, b, w, c) AS (
    SELECT holding_id, 1, size, 0, 0 FROM new_rows WHERE deleted_at IS NULL)
  {upsert};
  RETURN NULL;
END $$;
CREATE TRIGGER nlds_stat_file_insert AFTER INSERT ON "file"
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION nlds_stat_file_insert();

CREATE FUNCTION nlds_stat_file_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH changed AS (
    SELECT o.id FROM old_rows o JOIN new_rows n ON n.id = o.id
     WHERE (o.deleted_at IS NULL) <> (n.deleted_at IS NULL)
        OR o.size <> n.size OR o.holding_id <> n.holding_id),
  tiers AS (
    SELECT l.file_id,
           MAX(CASE WHEN l.tier = 'warm' THEN 1 ELSE 0 END) AS w,
           MAX(CASE WHEN l.tier = 'cold' THEN 1 ELSE 0 END) AS c
      FROM location l JOIN changed ON changed.id = l.file_id GROUP BY l.file_id),
  d (h, f, b, w, c) AS (
    SELECT o.holding_id, -1, -o.size, -COALESCE(t.w, 0), -COALESCE(t.c, 0)
      FROM old_rows o JOIN changed USING (id) LEFT JOIN tiers t ON t.file_id = o.id
     WHERE o.deleted_at IS NULL
    UNION ALL
    SELECT n.holding_id, 1, n.size, COALESCE(t.w, 0), COALESCE(t.c, 0)
      FROM new_rows n JOIN changed USING (id) LEFT JOIN tiers t ON t.file_id = n.id
     WHERE n.deleted_at IS NULL)
  {upsert};
  RETURN NULL;
END $$;
CREATE TRIGGER nlds_stat_file_update AFTER UPDATE ON "file"
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION nlds_stat_file_update();

CREATE FUNCTION nlds_stat_file_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE holding_stat SET files = files - 1, bytes = bytes - OLD.size,
    warm_files = warm_files - (SELECT COUNT(*) FROM location WHERE file_id = OLD.id AND tier = 'warm'),
    cold_files = cold_files - (SELECT COUNT(*) FROM location WHERE file_id = OLD.id AND tier = 'cold')
   WHERE holding_id = OLD.holding_id;
  RETURN OLD;
END $$;
CREATE TRIGGER nlds_stat_file_delete BEFORE DELETE ON "file"
  FOR EACH ROW WHEN (OLD.deleted_at IS NULL) EXECUTE FUNCTION nlds_stat_file_delete();

CREATE FUNCTION nlds_stat_location_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH d (h, f, b, w, c) AS (
    SELECT f.holding_id, 0, 0, CASE WHEN n.tier = 'warm' THEN 1 ELSE 0 END,
           CASE WHEN n.tier = 'cold' THEN 1 ELSE 0 END
      FROM new_rows n JOIN "file" f ON f.id = n.file_id WHERE f.deleted_at IS NULL)
  {upsert};
  RETURN NULL;
END $$;
CREATE TRIGGER nlds_stat_location_insert AFTER INSERT ON location
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION nlds_stat_location_insert();

CREATE FUNCTION nlds_stat_location_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH d (h, f, b, w, c) AS (
    SELECT f.holding_id, 0, 0, CASE WHEN o.tier = 'warm' THEN -1 ELSE 0 END,
           CASE WHEN o.tier = 'cold' THEN -1 ELSE 0 END
      FROM old_rows o JOIN "file" f ON f.id = o.file_id WHERE f.deleted_at IS NULL
    UNION ALL
    SELECT f.holding_id, 0, 0, CASE WHEN n.tier = 'warm' THEN 1 ELSE 0 END,
           CASE WHEN n.tier = 'cold' THEN 1 ELSE 0 END
      FROM new_rows n JOIN "file" f ON f.id = n.file_id WHERE f.deleted_at IS NULL)
  {upsert};
  RETURN NULL;
END $$;
CREATE TRIGGER nlds_stat_location_update AFTER UPDATE ON location
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION nlds_stat_location_update();

CREATE FUNCTION nlds_stat_location_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- A copy deleted with its file (the cascade) finds no file row: the file's own trigger has
  -- subtracted it already.
  WITH d (h, f, b, w, c) AS (
    SELECT f.holding_id, 0, 0, CASE WHEN o.tier = 'warm' THEN -1 ELSE 0 END,
           CASE WHEN o.tier = 'cold' THEN -1 ELSE 0 END
      FROM old_rows o JOIN "file" f ON f.id = o.file_id WHERE f.deleted_at IS NULL)
  {upsert};
  RETURN NULL;
END $$;
CREATE TRIGGER nlds_stat_location_delete AFTER DELETE ON location
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION nlds_stat_location_delete();
"#;

const PG_DOWN: &str = r#"
DROP TRIGGER IF EXISTS nlds_stat_file_insert ON "file";
DROP TRIGGER IF EXISTS nlds_stat_file_update ON "file";
DROP TRIGGER IF EXISTS nlds_stat_file_delete ON "file";
DROP TRIGGER IF EXISTS nlds_stat_location_insert ON location;
DROP TRIGGER IF EXISTS nlds_stat_location_update ON location;
DROP TRIGGER IF EXISTS nlds_stat_location_delete ON location;
DROP FUNCTION IF EXISTS nlds_stat_file_insert();
DROP FUNCTION IF EXISTS nlds_stat_file_update();
DROP FUNCTION IF EXISTS nlds_stat_file_delete();
DROP FUNCTION IF EXISTS nlds_stat_location_insert();
DROP FUNCTION IF EXISTS nlds_stat_location_update();
DROP FUNCTION IF EXISTS nlds_stat_location_delete();
"#;

/// The SQLite triggers that keep `holding_stat` (row-level; a statement each).
const SQLITE_TRIGGERS: [&str; 6] = [
    r#"CREATE TRIGGER nlds_stat_file_insert AFTER INSERT ON "file" WHEN NEW.deleted_at IS NULL
BEGIN
  INSERT OR IGNORE INTO holding_stat (holding_id) VALUES (NEW.holding_id);
  UPDATE holding_stat SET files = files + 1, bytes = bytes + NEW.size
   WHERE holding_id = NEW.holding_id;
END"#,
    r#"CREATE TRIGGER nlds_stat_file_update AFTER UPDATE OF deleted_at, size, holding_id ON "file"
  WHEN (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)
    OR OLD.size <> NEW.size OR OLD.holding_id <> NEW.holding_id
BEGIN
  UPDATE holding_stat SET files = files - 1, bytes = bytes - OLD.size,
    warm_files = warm_files - (SELECT COUNT(*) FROM location WHERE file_id = OLD.id AND tier = 'warm'),
    cold_files = cold_files - (SELECT COUNT(*) FROM location WHERE file_id = OLD.id AND tier = 'cold')
   WHERE holding_id = OLD.holding_id AND OLD.deleted_at IS NULL;
  INSERT OR IGNORE INTO holding_stat (holding_id)
    SELECT NEW.holding_id WHERE NEW.deleted_at IS NULL;
  UPDATE holding_stat SET files = files + 1, bytes = bytes + NEW.size,
    warm_files = warm_files + (SELECT COUNT(*) FROM location WHERE file_id = NEW.id AND tier = 'warm'),
    cold_files = cold_files + (SELECT COUNT(*) FROM location WHERE file_id = NEW.id AND tier = 'cold')
   WHERE holding_id = NEW.holding_id AND NEW.deleted_at IS NULL;
END"#,
    r#"CREATE TRIGGER nlds_stat_file_delete BEFORE DELETE ON "file" WHEN OLD.deleted_at IS NULL
BEGIN
  UPDATE holding_stat SET files = files - 1, bytes = bytes - OLD.size,
    warm_files = warm_files - (SELECT COUNT(*) FROM location WHERE file_id = OLD.id AND tier = 'warm'),
    cold_files = cold_files - (SELECT COUNT(*) FROM location WHERE file_id = OLD.id AND tier = 'cold')
   WHERE holding_id = OLD.holding_id;
END"#,
    r#"CREATE TRIGGER nlds_stat_location_insert AFTER INSERT ON location
BEGIN
  UPDATE holding_stat SET warm_files = warm_files + (NEW.tier = 'warm'),
    cold_files = cold_files + (NEW.tier = 'cold')
   WHERE holding_id = (SELECT holding_id FROM "file" WHERE id = NEW.file_id AND deleted_at IS NULL);
END"#,
    r#"CREATE TRIGGER nlds_stat_location_update AFTER UPDATE OF tier, file_id ON location
BEGIN
  UPDATE holding_stat SET warm_files = warm_files - (OLD.tier = 'warm'),
    cold_files = cold_files - (OLD.tier = 'cold')
   WHERE holding_id = (SELECT holding_id FROM "file" WHERE id = OLD.file_id AND deleted_at IS NULL);
  UPDATE holding_stat SET warm_files = warm_files + (NEW.tier = 'warm'),
    cold_files = cold_files + (NEW.tier = 'cold')
   WHERE holding_id = (SELECT holding_id FROM "file" WHERE id = NEW.file_id AND deleted_at IS NULL);
END"#,
    // A copy deleted with its file (the cascade) finds no file row: the file's own trigger has
    // subtracted it already.
    r#"CREATE TRIGGER nlds_stat_location_delete AFTER DELETE ON location
BEGIN
  UPDATE holding_stat SET warm_files = warm_files - (OLD.tier = 'warm'),
    cold_files = cold_files - (OLD.tier = 'cold')
   WHERE holding_id = (SELECT holding_id FROM "file" WHERE id = OLD.file_id AND deleted_at IS NULL);
END"#,
];

const SQLITE_DOWN: [&str; 6] = [
    "DROP TRIGGER IF EXISTS nlds_stat_file_insert",
    "DROP TRIGGER IF EXISTS nlds_stat_file_update",
    "DROP TRIGGER IF EXISTS nlds_stat_file_delete",
    "DROP TRIGGER IF EXISTS nlds_stat_location_insert",
    "DROP TRIGGER IF EXISTS nlds_stat_location_update",
    "DROP TRIGGER IF EXISTS nlds_stat_location_delete",
];

/// The counts of the holdings already catalogued.
const BACKFILL: &str = r#"INSERT INTO holding_stat (holding_id, files, bytes, warm_files, cold_files)
SELECT f.holding_id, COUNT(*), COALESCE(SUM(f.size), 0),
       COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM location l WHERE l.file_id = f.id AND l.tier = 'warm') THEN 1 ELSE 0 END), 0),
       COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM location l WHERE l.file_id = f.id AND l.tier = 'cold') THEN 1 ELSE 0 END), 0)
  FROM "file" f WHERE f.deleted_at IS NULL GROUP BY f.holding_id"#;

/// `(name, table, columns)` of every index this migration adds.
fn indexes() -> Vec<(&'static str, DynIden, Vec<DynIden>)> {
    vec![
        (
            "idx_transaction_record_user_created",
            TransactionRecord::Table.into_iden(),
            vec![
                TransactionRecord::User.into_iden(),
                TransactionRecord::Created.into_iden(),
                TransactionRecord::Id.into_iden(),
            ],
        ),
        (
            "idx_transaction_record_group_created",
            TransactionRecord::Table.into_iden(),
            vec![
                TransactionRecord::Group.into_iden(),
                TransactionRecord::Created.into_iden(),
                TransactionRecord::Id.into_iden(),
            ],
        ),
    ]
}

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait does not accept `SchemaManager<'_>` here"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, cols) in indexes() {
            manager
                .create_index(index(name, table, cols, false))
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(HoldingStat::Table)
                    .col(
                        ColumnDef::new(HoldingStat::HoldingId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(big(HoldingStat::Files).default(0).take())
                    .col(big(HoldingStat::Bytes).default(0).take())
                    .col(big(HoldingStat::WarmFiles).default(0).take())
                    .col(big(HoldingStat::ColdFiles).default(0).take())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_holding_stat_holding")
                            .from(HoldingStat::Table, HoldingStat::HoldingId)
                            .to(Holding::Table, Holding::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        let conn = manager.get_connection();
        conn.execute_unprepared(BACKFILL).await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            conn.execute_unprepared(&PG_TRIGGERS.replace("{upsert}", PG_UPSERT))
                .await?;
        } else {
            for sql in SQLITE_TRIGGERS {
                conn.execute_unprepared(sql).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            conn.execute_unprepared(PG_DOWN).await?;
        } else {
            for sql in SQLITE_DOWN {
                conn.execute_unprepared(sql).await?;
            }
        }
        manager
            .drop_table(Table::drop().table(HoldingStat::Table).to_owned())
            .await?;
        for (name, table, _) in indexes() {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
