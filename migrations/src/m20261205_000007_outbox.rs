//! The transactional outbox and accepted submissions (owned by the catalogue role).
//!
//! `outbox`: a message that a committed change implies (the removal of objects whose copies were
//! evicted or purged, the record of a delete, the first messages of a submitted put or get) is
//! written here in the same database transaction as the change, and deleted by the relay once
//! the bus has confirmed it. A crash between the commit and the publish leaves the row, and the
//! relay publishes it when the role runs again.
//!
//! `submission`: the transaction id of every put and get the catalogue accepted, so a retried
//! submission (same id) is accepted once: its first messages are staged only the first time.

use sea_orm_migration::prelude::*;

use crate::columns::{id, text, timestamp};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Submission {
    Table,
    TransactionId,
    Created,
}

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
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Submission::Table)
                    .if_not_exists()
                    .col(text(Submission::TransactionId).primary_key().take())
                    .col(timestamp(Submission::Created))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Submission::Table).take())
            .await?;
        manager
            .drop_table(Table::drop().table(Outbox::Table).take())
            .await
    }
}
