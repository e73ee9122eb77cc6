//! The transactional outbox (owned by the catalogue role): a message that a committed change
//! implies (the removal of objects whose copies were evicted or purged, the first message of a
//! submitted put) is written here in the same database transaction as the change, and deleted by
//! the relay once the bus has confirmed it. A crash between the commit and the publish leaves the
//! row, and the relay publishes it when the role runs again.

use sea_orm_migration::prelude::*;

use crate::columns::{id, text, timestamp};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Outbox {
    Table,
    RoutingKey,
    Envelope,
    Created,
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
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(id())
                    .col(text(Outbox::RoutingKey))
                    .col(text(Outbox::Envelope))
                    .col(timestamp(Outbox::Created))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Outbox::Table).take())
            .await
    }
}
