//! `role_drain`: the roles an operator drained for maintenance (`nlds admin drain ROLE`), one row
//! each while drained, so a drain outlasts restarts of the role's processes (owned by the monitor
//! role, which answers drain and resume).

use sea_orm_migration::prelude::*;

use crate::columns::{text, timestamp};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RoleDrain {
    Table,
    Role,
    Since,
    By,
    Reason,
}

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
                    .table(RoleDrain::Table)
                    .if_not_exists()
                    .col(text(RoleDrain::Role).primary_key().take())
                    .col(timestamp(RoleDrain::Since))
                    .col(text(RoleDrain::By))
                    .col(ColumnDef::new(RoleDrain::Reason).text().null())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RoleDrain::Table).if_exists().take())
            .await
    }
}
