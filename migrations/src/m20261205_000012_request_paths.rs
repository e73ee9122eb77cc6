//! `request_paths`: the chunks of paths of a put or get too long for one request (owned by the
//! catalogue role). Each chunk is one row until the request starts: the catalogue then stages
//! one submission per chunk in its outbox and deletes the rows, in one database transaction.
//! Chunks of a request that never starts are deleted once they are older than
//! `[workers.index] unfinished_request_secs`.

use sea_orm_migration::prelude::*;

use crate::columns::{big, index, text, timestamp};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum RequestPaths {
    Table,
    TransactionId,
    Part,
    User,
    Group,
    ApiAction,
    /// The chunk's paths, a JSON array.
    Paths,
    /// How many paths the chunk holds.
    Count,
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
                    .table(RequestPaths::Table)
                    .if_not_exists()
                    .col(text(RequestPaths::TransactionId))
                    .col(big(RequestPaths::Part))
                    .col(text(RequestPaths::User))
                    .col(text(RequestPaths::Group))
                    .col(text(RequestPaths::ApiAction))
                    .col(text(RequestPaths::Paths))
                    .col(big(RequestPaths::Count))
                    .col(timestamp(RequestPaths::Created))
                    .primary_key(
                        Index::create()
                            .col(RequestPaths::TransactionId)
                            .col(RequestPaths::Part),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "idx_request_paths_created",
                    RequestPaths::Table,
                    vec![RequestPaths::Created.into_iden()],
                    false,
                )
                .if_not_exists()
                .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RequestPaths::Table).take())
            .await
    }
}
