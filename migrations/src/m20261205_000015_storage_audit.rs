//! `storage_audit`: the runs of the storage audit (owned by the storage-audit role): what was
//! asked, the counts, the listed findings and notes (JSON), so the admin view shows the latest
//! runs and the scheduled scrub knows when it last ran. A run is recorded when it starts
//! (`finished` empty) and completed when it ends.
//!
//! Also an index for the audit's keyset pages of warm locations (bucket, tenancy, key), with
//! the bytewise `C` collation on PostgreSQL, the order S3 lists keys in.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::columns::{id, index, text, timestamp, timestamp_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum StorageAudit {
    Table,
    /// `operator` or `schedule`.
    Trigger,
    Started,
    Finished,
    /// The request, as JSON.
    Request,
    /// The report (counts, listed findings, notes), as JSON; empty until the run ends.
    Report,
    /// Why the run stopped early, if it did.
    Error,
}

const LOCATION_INDEX: &str = "idx_location_bucket_key";

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait's lifetimes cannot be written out in the trait's signature"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StorageAudit::Table)
                    .if_not_exists()
                    .col(id())
                    .col(text(StorageAudit::Trigger))
                    .col(timestamp(StorageAudit::Started))
                    .col(timestamp_null(StorageAudit::Finished))
                    .col(text(StorageAudit::Request))
                    .col(ColumnDef::new(StorageAudit::Report).text().null())
                    .col(ColumnDef::new(StorageAudit::Error).text().null())
                    .take(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "idx_storage_audit_trigger_started",
                    StorageAudit::Table,
                    vec![
                        StorageAudit::Trigger.into_iden(),
                        StorageAudit::Started.into_iden(),
                    ],
                    false,
                )
                .if_not_exists()
                .take(),
            )
            .await?;
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => format!(
                r#"CREATE INDEX IF NOT EXISTS {LOCATION_INDEX} ON location (bucket, tenancy, "key" COLLATE "C", id)"#
            ),
            _ => format!(
                r#"CREATE INDEX IF NOT EXISTS {LOCATION_INDEX} ON location (bucket, tenancy, "key", id)"#
            ),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP INDEX IF EXISTS {LOCATION_INDEX}"))
            .await?;
        manager
            .drop_table(Table::drop().table(StorageAudit::Table).take())
            .await
    }
}
