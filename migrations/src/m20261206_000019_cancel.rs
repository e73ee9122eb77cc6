//! `submission.cancelled_at` and `cancelled_by`: a cancelled transaction (`POST
//! /api/v2/transactions/{id}/cancel`, `nlds cancel`), owned by the catalogue, which accepted it
//! (the submission row) and checks it before each step it does for the transaction.

use sea_orm_migration::prelude::*;

use crate::columns::timestamp_null;
use crate::m20261205_000007_outbox::Submission;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Cancel {
    CancelledAt,
    CancelledBy,
}

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait's lifetimes cannot be written out in the trait's signature"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Submission::Table)
                    .add_column(timestamp_null(Cancel::CancelledAt))
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Submission::Table)
                    .add_column(ColumnDef::new(Cancel::CancelledBy).text().null())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [Cancel::CancelledBy, Cancel::CancelledAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Submission::Table)
                        .drop_column(col)
                        .take(),
                )
                .await?;
        }
        Ok(())
    }
}
