//! The queues of the embedded mode's in-process bus (`nlds_bus::memory::MemoryBus::durable`):
//! every message published and not yet acknowledged, one row per destination queue, so a crash
//! of the process loses none of them.
//!
//! `not_before` (Unix milliseconds) holds a delayed message (a retry after a transient fault, a
//! delayed publish) until then; `dead_reason` set marks a dead letter, kept for inspection;
//! `transaction_id` names the transaction a message works for, so start-up recovery can tell a
//! transaction that will resume from one that cannot. The table holds only what is in flight,
//! and is read whole only at start, so it has no index but its key (each one would slow every
//! publish and acknowledgement).

use sea_orm_migration::prelude::*;

use crate::columns::{big, id, text};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum BusMessage {
    Table,
    Queue,
    RoutingKey,
    Body,
    Attempt,
    NotBefore,
    TransactionId,
    DeadReason,
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
                    .table(BusMessage::Table)
                    .if_not_exists()
                    .col(id())
                    .col(text(BusMessage::Queue))
                    .col(text(BusMessage::RoutingKey))
                    .col(ColumnDef::new(BusMessage::Body).blob().not_null())
                    .col(ColumnDef::new(BusMessage::Attempt).integer().not_null())
                    .col(big(BusMessage::NotBefore))
                    .col(ColumnDef::new(BusMessage::TransactionId).text().null())
                    .col(ColumnDef::new(BusMessage::DeadReason).text().null())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BusMessage::Table).take())
            .await
    }
}
