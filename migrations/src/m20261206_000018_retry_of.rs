//! `transaction_record.retry_of`: the transaction whose failed files a transaction retries
//! (`POST /api/v2/transactions/{id}/retry`, `nlds retry`), so that stat shows the link both ways
//! (owned by the monitor role). Indexed: stat looks up the retries of the transactions it shows.

use sea_orm_migration::prelude::*;

use crate::columns::index;
use crate::m20261125_000002_create_monitor::TransactionRecord;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Retry {
    RetryOf,
}

const INDEX: &str = "idx_transaction_record_retry_of";

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait's lifetimes cannot be written out in the trait's signature"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TransactionRecord::Table)
                    .add_column(ColumnDef::new(Retry::RetryOf).text().null())
                    .take(),
            )
            .await?;
        manager
            .create_index(
                index(
                    INDEX,
                    TransactionRecord::Table,
                    vec![Retry::RetryOf.into_iden()],
                    false,
                )
                .if_not_exists()
                .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(TransactionRecord::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(TransactionRecord::Table)
                    .drop_column(Retry::RetryOf)
                    .take(),
            )
            .await
    }
}
