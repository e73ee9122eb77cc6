//! The object-store tenancy of each copy (owned by the catalogue role): `location.tenancy` names
//! the configured tenancy (`[workers.object_store.tenancies.<name>]`) whose endpoint, bucket and
//! credentials hold a warm copy; NULL means the default object store (every copy made before
//! tenancies could be chosen, and every cold copy).

use sea_orm_migration::prelude::*;

use crate::m20261125_000001_create_catalogue::Location;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum LocationTenancy {
    Tenancy,
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
                    .table(Location::Table)
                    .add_column(ColumnDef::new(LocationTenancy::Tenancy).text().null())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Location::Table)
                    .drop_column(LocationTenancy::Tenancy)
                    .take(),
            )
            .await
    }
}
