//! Versions of a path (owned by the catalogue role; docs/VERSIONS.md): a put of a path the
//! holding already has stores it again as the next version, so a live path is unique per
//! (holding, path, version) instead of per (holding, path). Existing rows are version 1.
//!
//! The unique index `(holding_id, path, version) WHERE deleted_at IS NULL` is also the index the
//! newest live version of a path is read from (a backward scan of one path's entries), on
//! PostgreSQL and SQLite alike. Each version keeps its own put transaction (`transaction_id`),
//! hence its ingest time.
//!
//! The monitor's sub-records count the new versions a put stored (`sub_record.versions`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::Statement;

use crate::columns::index;
use crate::m20261125_000001_create_catalogue::File;
use crate::m20261125_000002_create_monitor::SubRecord;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Versions {
    Version,
    Versions,
    DeletedAt,
}

const PATH_LIVE: &str = "uq_file_holding_path_live";
const VERSION_LIVE: &str = "uq_file_holding_path_version_live";

/// The unique index `name` on `cols` of `file`, among live rows only.
fn live_unique(name: &str, cols: Vec<DynIden>) -> IndexCreateStatement {
    let mut i = index(name, File::Table, cols, true);
    i.and_where(Expr::col(Versions::DeletedAt).is_null());
    i
}

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
                    .table(File::Table)
                    .add_column(
                        ColumnDef::new(Versions::Version)
                            .integer()
                            .not_null()
                            .default(1),
                    )
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(SubRecord::Table)
                    .add_column(
                        ColumnDef::new(Versions::Versions)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .take(),
            )
            .await?;
        manager
            .drop_index(Index::drop().name(PATH_LIVE).table(File::Table).to_owned())
            .await?;
        manager
            .create_index(live_unique(
                VERSION_LIVE,
                vec![
                    File::HoldingId.into_iden(),
                    File::Path.into_iden(),
                    Versions::Version.into_iden(),
                ],
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One live row per path again: the older live versions are soft-deleted (the purge
        // removes them after the retention period; nothing is dropped here).
        let be = manager.get_database_backend();
        manager
            .get_connection()
            .execute_raw(Statement::from_string(
                be,
                "UPDATE \"file\" SET deleted_at = CURRENT_TIMESTAMP, \
                 deleted_by = 'migration 000009 down' \
                 WHERE deleted_at IS NULL AND EXISTS (SELECT 1 FROM \"file\" AS n \
                 WHERE n.holding_id = \"file\".holding_id AND n.path = \"file\".path \
                 AND n.version > \"file\".version AND n.deleted_at IS NULL)",
            ))
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(VERSION_LIVE)
                    .table(File::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(live_unique(
                PATH_LIVE,
                vec![File::HoldingId.into_iden(), File::Path.into_iden()],
            ))
            .await?;
        for (table, col) in [
            (File::Table.into_iden(), Versions::Version.into_iden()),
            (SubRecord::Table.into_iden(), Versions::Versions.into_iden()),
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(col).take())
                .await?;
        }
        Ok(())
    }
}
