//! Soft delete (owned by the catalogue role): a deleted holding or file keeps its row, marked
//! with when (`deleted_at`), by whom (`deleted_by`) and by which delete transaction
//! (`delete_transaction`), until it is purged after the retention period.
//!
//! The uniqueness of a holding's label (per user) and of a path (per holding) now holds among
//! live rows only (partial unique indexes `WHERE deleted_at IS NULL`), so a deleted path or label
//! can be put again at once; undeleting it then is a conflict.

use sea_orm_migration::prelude::*;

use crate::columns::{index, timestamp_null};
use crate::m20261125_000001_create_catalogue::{File, Holding};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum SoftDelete {
    DeletedAt,
    DeletedBy,
    DeleteTransaction,
}

/// The unique index `name` on `cols` of `table`, among live rows only.
fn live_unique(name: &str, table: impl IntoIden, cols: Vec<DynIden>) -> IndexCreateStatement {
    let mut i = index(name, table, cols, true);
    i.and_where(Expr::col(SoftDelete::DeletedAt).is_null());
    i
}

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait does not accept `SchemaManager<'_>` here"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [Holding::Table.into_iden(), File::Table.into_iden()] {
            // SQLite adds one column per ALTER TABLE.
            for col in [
                timestamp_null(SoftDelete::DeletedAt),
                ColumnDef::new(SoftDelete::DeletedBy).text().null().take(),
                ColumnDef::new(SoftDelete::DeleteTransaction)
                    .text()
                    .null()
                    .take(),
            ] {
                manager
                    .alter_table(Table::alter().table(table.clone()).add_column(col).take())
                    .await?;
            }
        }
        manager
            .drop_index(
                Index::drop()
                    .name("uq_file_holding_path")
                    .table(File::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("uq_holding_user_label")
                    .table(Holding::Table)
                    .to_owned(),
            )
            .await?;
        for stmt in [
            live_unique(
                "uq_file_holding_path_live",
                File::Table,
                vec![File::HoldingId.into_iden(), File::Path.into_iden()],
            ),
            live_unique(
                "uq_holding_user_label_live",
                Holding::Table,
                vec![Holding::User.into_iden(), Holding::Label.into_iden()],
            ),
            // The purge sweep finds deleted rows by time.
            index(
                "idx_file_deleted_at",
                File::Table,
                vec![SoftDelete::DeletedAt.into_iden()],
                false,
            ),
            index(
                "idx_holding_deleted_at",
                Holding::Table,
                vec![SoftDelete::DeletedAt.into_iden()],
                false,
            ),
        ] {
            manager.create_index(stmt).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Deleted rows would break the full unique indexes: they go first (their copies are
        // left to the operator).
        let be = manager.get_database_backend();
        let conn = manager.get_connection();
        for sql in [
            "DELETE FROM \"file\" WHERE deleted_at IS NOT NULL",
            "DELETE FROM \"holding\" WHERE deleted_at IS NOT NULL \
             AND id NOT IN (SELECT holding_id FROM \"file\") \
             AND id NOT IN (SELECT holding_id FROM \"transaction\")",
        ] {
            conn.execute_raw(sea_orm_migration::sea_orm::Statement::from_string(be, sql))
                .await?;
        }
        for (name, table) in [
            ("uq_file_holding_path_live", File::Table.into_iden()),
            ("uq_holding_user_label_live", Holding::Table.into_iden()),
            ("idx_file_deleted_at", File::Table.into_iden()),
            ("idx_holding_deleted_at", Holding::Table.into_iden()),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        for table in [Holding::Table.into_iden(), File::Table.into_iden()] {
            for col in [
                SoftDelete::DeletedAt.into_iden(),
                SoftDelete::DeletedBy.into_iden(),
                SoftDelete::DeleteTransaction.into_iden(),
            ] {
                manager
                    .alter_table(Table::alter().table(table.clone()).drop_column(col).take())
                    .await?;
            }
        }
        manager
            .create_index(index(
                "uq_file_holding_path",
                File::Table,
                vec![File::HoldingId.into_iden(), File::Path.into_iden()],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "uq_holding_user_label",
                Holding::Table,
                vec![Holding::User.into_iden(), Holding::Label.into_iden()],
                true,
            ))
            .await?;
        Ok(())
    }
}
