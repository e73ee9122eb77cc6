//! `holding_stat.paths`: the paths of a holding that have a live version (what `list` shows as
//! its files: each path once, whatever its number of versions; docs/VERSIONS.md). The other
//! counts stay as migration 000011 keeps them, over every live version: `files` (live versions),
//! `bytes` (old versions take space and count in quotas until they are deleted), `warm_files`
//! and `cold_files`.
//!
//! Kept by triggers on `file` in the same database transaction as the change: a path counts
//! when its first live version appears (insert, undelete, move into the holding) and stops
//! counting when its last live version goes (soft or hard delete, move out). PostgreSQL runs one
//! statement-level trigger per insert and update (transition tables, counted per holding and
//! path) and a row-level one before a delete; SQLite row-level triggers. Each looks for the
//! path's other live versions on the live unique index `(holding_id, path, version)`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::columns::big;
use crate::m20261205_000011_scale_indexes::HoldingStat;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Stat {
    Paths,
}

/// The PostgreSQL functions and triggers that keep `holding_stat.paths`.
const PG_TRIGGERS: &str = r#"
CREATE FUNCTION nlds_stat_path_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- A path counts once its first live version is in: no live version of it outside this
  -- statement's rows.
  INSERT INTO holding_stat (holding_id, paths)
  SELECT k.holding_id, COUNT(*) FROM (
      SELECT DISTINCT n.holding_id, n.path FROM new_rows n WHERE n.deleted_at IS NULL) k
   WHERE NOT EXISTS (
      SELECT 1 FROM "file" f
       WHERE f.holding_id = k.holding_id AND f.path = k.path AND f.deleted_at IS NULL
         AND f.id NOT IN (SELECT id FROM new_rows))
   GROUP BY k.holding_id ORDER BY k.holding_id
  ON CONFLICT (holding_id) DO UPDATE SET paths = holding_stat.paths + excluded.paths;
  RETURN NULL;
END $$;
CREATE TRIGGER nlds_stat_path_insert AFTER INSERT ON "file"
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION nlds_stat_path_insert();

CREATE FUNCTION nlds_stat_path_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Each (holding, path) a changed row left or joined: live before (now, minus the changed
  -- rows as they are, plus them as they were) and live now.
  WITH changed AS (
    SELECT o.id FROM old_rows o JOIN new_rows n ON n.id = o.id
     WHERE (o.deleted_at IS NULL) <> (n.deleted_at IS NULL)
        OR o.holding_id <> n.holding_id OR o.path <> n.path),
  now_in AS (
    SELECT n.holding_id AS h, n.path AS p, COUNT(*) AS c FROM new_rows n JOIN changed USING (id)
     WHERE n.deleted_at IS NULL GROUP BY n.holding_id, n.path),
  was_in AS (
    SELECT o.holding_id AS h, o.path AS p, COUNT(*) AS c FROM old_rows o JOIN changed USING (id)
     WHERE o.deleted_at IS NULL GROUP BY o.holding_id, o.path),
  keys AS (SELECT h, p FROM now_in UNION SELECT h, p FROM was_in),
  counted AS (
    SELECT k.h,
           (SELECT COUNT(*) FROM "file" f
             WHERE f.holding_id = k.h AND f.path = k.p AND f.deleted_at IS NULL) AS live,
           COALESCE(ni.c, 0) AS joined, COALESCE(wi.c, 0) AS left_
      FROM keys k LEFT JOIN now_in ni ON ni.h = k.h AND ni.p = k.p
      LEFT JOIN was_in wi ON wi.h = k.h AND wi.p = k.p)
  INSERT INTO holding_stat (holding_id, paths)
  SELECT h, SUM(CASE WHEN live > 0 THEN 1 ELSE 0 END
              - CASE WHEN live - joined + left_ > 0 THEN 1 ELSE 0 END)
    FROM counted GROUP BY h ORDER BY h
  ON CONFLICT (holding_id) DO UPDATE SET paths = holding_stat.paths + excluded.paths;
  RETURN NULL;
END $$;
CREATE TRIGGER nlds_stat_path_update AFTER UPDATE ON "file"
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION nlds_stat_path_update();

CREATE FUNCTION nlds_stat_path_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Rows the statement deleted before this one are gone already: the last live version of a
  -- path finds no other.
  UPDATE holding_stat SET paths = paths - 1
   WHERE holding_id = OLD.holding_id
     AND NOT EXISTS (
       SELECT 1 FROM "file" f
        WHERE f.holding_id = OLD.holding_id AND f.path = OLD.path AND f.deleted_at IS NULL
          AND f.id <> OLD.id);
  RETURN OLD;
END $$;
CREATE TRIGGER nlds_stat_path_delete BEFORE DELETE ON "file"
  FOR EACH ROW WHEN (OLD.deleted_at IS NULL) EXECUTE FUNCTION nlds_stat_path_delete();
"#;

const PG_DOWN: &str = r#"
DROP TRIGGER IF EXISTS nlds_stat_path_insert ON "file";
DROP TRIGGER IF EXISTS nlds_stat_path_update ON "file";
DROP TRIGGER IF EXISTS nlds_stat_path_delete ON "file";
DROP FUNCTION IF EXISTS nlds_stat_path_insert();
DROP FUNCTION IF EXISTS nlds_stat_path_update();
DROP FUNCTION IF EXISTS nlds_stat_path_delete();
"#;

/// The SQLite triggers that keep `holding_stat.paths` (row-level).
const SQLITE_TRIGGERS: [&str; 3] = [
    r#"CREATE TRIGGER nlds_stat_path_insert AFTER INSERT ON "file" WHEN NEW.deleted_at IS NULL
BEGIN
  INSERT OR IGNORE INTO holding_stat (holding_id) VALUES (NEW.holding_id);
  UPDATE holding_stat SET paths = paths + 1
   WHERE holding_id = NEW.holding_id
     AND NOT EXISTS (SELECT 1 FROM "file" f WHERE f.holding_id = NEW.holding_id
       AND f.path = NEW.path AND f.deleted_at IS NULL AND f.id <> NEW.id);
END"#,
    r#"CREATE TRIGGER nlds_stat_path_update AFTER UPDATE OF deleted_at, holding_id, path ON "file"
  WHEN (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)
    OR OLD.holding_id <> NEW.holding_id OR OLD.path <> NEW.path
BEGIN
  UPDATE holding_stat SET paths = paths - 1
   WHERE holding_id = OLD.holding_id AND OLD.deleted_at IS NULL
     AND NOT EXISTS (SELECT 1 FROM "file" f WHERE f.holding_id = OLD.holding_id
       AND f.path = OLD.path AND f.deleted_at IS NULL);
  INSERT OR IGNORE INTO holding_stat (holding_id)
    SELECT NEW.holding_id WHERE NEW.deleted_at IS NULL;
  UPDATE holding_stat SET paths = paths + 1
   WHERE holding_id = NEW.holding_id AND NEW.deleted_at IS NULL
     AND NOT EXISTS (SELECT 1 FROM "file" f WHERE f.holding_id = NEW.holding_id
       AND f.path = NEW.path AND f.deleted_at IS NULL AND f.id <> NEW.id);
END"#,
    r#"CREATE TRIGGER nlds_stat_path_delete BEFORE DELETE ON "file" WHEN OLD.deleted_at IS NULL
BEGIN
  UPDATE holding_stat SET paths = paths - 1
   WHERE holding_id = OLD.holding_id
     AND NOT EXISTS (SELECT 1 FROM "file" f WHERE f.holding_id = OLD.holding_id
       AND f.path = OLD.path AND f.deleted_at IS NULL AND f.id <> OLD.id);
END"#,
];

const SQLITE_DOWN: [&str; 3] = [
    "DROP TRIGGER IF EXISTS nlds_stat_path_insert",
    "DROP TRIGGER IF EXISTS nlds_stat_path_update",
    "DROP TRIGGER IF EXISTS nlds_stat_path_delete",
];

/// The paths of the holdings already catalogued.
const BACKFILL: &str = r#"UPDATE holding_stat SET paths = (
  SELECT COUNT(DISTINCT f.path) FROM "file" f
   WHERE f.holding_id = holding_stat.holding_id AND f.deleted_at IS NULL)"#;

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait does not accept `SchemaManager<'_>` here"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(HoldingStat::Table)
                    .add_column(big(Stat::Paths).default(0).take())
                    .take(),
            )
            .await?;
        let conn = manager.get_connection();
        conn.execute_unprepared(BACKFILL).await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            conn.execute_unprepared(PG_TRIGGERS).await?;
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
            .alter_table(
                Table::alter()
                    .table(HoldingStat::Table)
                    .drop_column(Stat::Paths)
                    .take(),
            )
            .await?;
        Ok(())
    }
}
