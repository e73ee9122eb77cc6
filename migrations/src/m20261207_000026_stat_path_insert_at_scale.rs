//! `holding_stat.paths` on PostgreSQL, for statements that insert many files: the insert trigger
//! of `m20261205_000017_holding_stat_paths` asked, for each new (holding, path), whether a live
//! version exists outside the statement's rows with `f.id NOT IN (SELECT id FROM new_rows)`.
//! PostgreSQL hashes that subquery only while the transition table fits in `work_mem`; past
//! that (a bulk load of millions of files) it scans the transition table once per probe, and
//! the statement never ends.
//!
//! The function now counts instead of excluding: a (holding, path) is new when its live
//! versions in the table are exactly the live rows the statement inserted for it. One index
//! probe per (holding, path) on the live unique index `(holding_id, path, version)`, whatever
//! the statement's size. The trigger itself, and SQLite's row-level triggers, stay as they are.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const COUNTING: &str = r#"
CREATE OR REPLACE FUNCTION nlds_stat_path_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- A path counts once its first live version is in: every live version of it is one of this
  -- statement's rows (they are all in the table by now).
  INSERT INTO holding_stat (holding_id, paths)
  SELECT k.holding_id, COUNT(*) FROM (
      SELECT n.holding_id, n.path, COUNT(*) AS inserted FROM new_rows n
       WHERE n.deleted_at IS NULL GROUP BY n.holding_id, n.path) k
   WHERE (SELECT COUNT(*) FROM "file" f
           WHERE f.holding_id = k.holding_id AND f.path = k.path AND f.deleted_at IS NULL)
         = k.inserted
   GROUP BY k.holding_id ORDER BY k.holding_id
  ON CONFLICT (holding_id) DO UPDATE SET paths = holding_stat.paths + excluded.paths;
  RETURN NULL;
END $$;
"#;

/// The function as migration 000017 created it.
const EXCLUDING: &str = r#"
CREATE OR REPLACE FUNCTION nlds_stat_path_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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
"#;

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait's lifetimes cannot be written out in the trait's signature"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(COUNTING)
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(EXCLUDING)
                .await?;
        }
        Ok(())
    }
}
