//! `sub_record.bytes_moving`: the bytes a transfer role reported moved of a batch it is still
//! uploading or restoring (`monitor-put.progress`), counted as done in the transaction's status
//! until the batch reaches a final state, which clears it (owned by the monitor role).

use sea_orm_migration::prelude::*;

use crate::m20261125_000002_create_monitor::SubRecord;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Progress {
    BytesMoving,
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
                    .add_column(
                        ColumnDef::new(Progress::BytesMoving)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SubRecord::Table)
                    .drop_column(Progress::BytesMoving)
                    .take(),
            )
            .await
    }
}
