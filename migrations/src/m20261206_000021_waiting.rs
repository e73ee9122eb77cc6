//! `sub_record.retrying`: the last retry the bus runtime reported for a batch (JSON of
//! `nlds_core::waiting::Retrying`), kept until the batch's state changes, so that stat can say why
//! it waits (owned by the monitor role).

use sea_orm_migration::prelude::*;

use crate::m20261125_000002_create_monitor::SubRecord;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Waiting {
    Retrying,
}

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
                    .table(SubRecord::Table)
                    .add_column(ColumnDef::new(Waiting::Retrying).text().null())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SubRecord::Table)
                    .drop_column(Waiting::Retrying)
                    .take(),
            )
            .await
    }
}
