//! The cold tier's tables (owned by the catalogue role): `aggregation`, a tar file on the cold
//! store, and `aggregation_member`, a file's place in one. A file's cold copy is its `location`
//! row of tier `cold` (bucket = backend kind, key = aggregation name), written only once the
//! aggregation is stored and verified.

use sea_orm_migration::prelude::*;

use crate::columns::{big, big_null, id, index, text, timestamp, timestamp_null};
use crate::m20261125_000001_create_catalogue::{File, Holding};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Aggregation {
    Table,
    Id,
    Name,
    /// The archive transaction writing it (the envelope's transaction id).
    TransactionId,
    HoldingId,
    Backend,
    /// `writing` (leased to an archive-put worker until `lease_until`) or `stored`.
    State,
    Size,
    Members,
    Adler32,
    Crc32c,
    Blake3,
    Created,
    LeaseUntil,
    Stored,
}

#[derive(DeriveIden)]
pub enum AggregationMember {
    Table,
    Id,
    AggregationId,
    FileId,
    Position,
    DataOffset,
}

/// A recall in progress: one per aggregation, however many gets wait for it.
#[derive(DeriveIden)]
pub enum Recall {
    Table,
    Id,
    AggregationId,
    /// When archive-get.start was (last) sent.
    Created,
    /// archive-get has taken the recall up (it reported staging).
    Started,
}

/// A get batch waiting for a recall: the envelope to resume it with, and its files.
#[derive(DeriveIden)]
pub enum RecallRequest {
    Table,
    Id,
    RecallId,
    SubId,
    Envelope,
    FileIds,
}

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait does not accept `SchemaManager<'_>` here"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Aggregation::Table)
                    .col(id())
                    .col(text(Aggregation::Name))
                    .col(text(Aggregation::TransactionId))
                    .col(big(Aggregation::HoldingId))
                    .col(text(Aggregation::Backend))
                    .col(text(Aggregation::State))
                    .col(big(Aggregation::Size))
                    .col(big(Aggregation::Members))
                    .col(big_null(Aggregation::Adler32))
                    .col(big_null(Aggregation::Crc32c))
                    .col(ColumnDef::new(Aggregation::Blake3).text().null())
                    .col(timestamp(Aggregation::Created))
                    .col(timestamp_null(Aggregation::LeaseUntil))
                    .col(timestamp_null(Aggregation::Stored))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_aggregation_holding")
                            .from(Aggregation::Table, Aggregation::HoldingId)
                            .to(Holding::Table, Holding::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "uq_aggregation_name",
                Aggregation::Table,
                vec![Aggregation::Name.into_iden()],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "uq_aggregation_transaction",
                Aggregation::Table,
                vec![Aggregation::TransactionId.into_iden()],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_aggregation_holding",
                Aggregation::Table,
                vec![Aggregation::HoldingId.into_iden()],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AggregationMember::Table)
                    .col(id())
                    .col(big(AggregationMember::AggregationId))
                    .col(big(AggregationMember::FileId))
                    .col(big(AggregationMember::Position))
                    .col(big(AggregationMember::DataOffset))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_member_aggregation")
                            .from(AggregationMember::Table, AggregationMember::AggregationId)
                            .to(Aggregation::Table, Aggregation::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_member_file")
                            .from(AggregationMember::Table, AggregationMember::FileId)
                            .to(File::Table, File::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        // A file is in at most one aggregation: two archivers can never both take it.
        manager
            .create_index(index(
                "uq_member_file",
                AggregationMember::Table,
                vec![AggregationMember::FileId.into_iden()],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "uq_member_position",
                AggregationMember::Table,
                vec![
                    AggregationMember::AggregationId.into_iden(),
                    AggregationMember::Position.into_iden(),
                ],
                true,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Recall::Table)
                    .col(id())
                    .col(big(Recall::AggregationId))
                    .col(timestamp(Recall::Created))
                    .col(
                        ColumnDef::new(Recall::Started)
                            .boolean()
                            .not_null()
                            .default(false)
                            .take(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_recall_aggregation")
                            .from(Recall::Table, Recall::AggregationId)
                            .to(Aggregation::Table, Aggregation::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        // One recall per aggregation: concurrent gets share it.
        manager
            .create_index(index(
                "uq_recall_aggregation",
                Recall::Table,
                vec![Recall::AggregationId.into_iden()],
                true,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RecallRequest::Table)
                    .col(id())
                    .col(big(RecallRequest::RecallId))
                    .col(text(RecallRequest::SubId))
                    .col(text(RecallRequest::Envelope))
                    .col(text(RecallRequest::FileIds))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_request_recall")
                            .from(RecallRequest::Table, RecallRequest::RecallId)
                            .to(Recall::Table, Recall::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "uq_request_sub",
                RecallRequest::Table,
                vec![
                    RecallRequest::RecallId.into_iden(),
                    RecallRequest::SubId.into_iden(),
                ],
                true,
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RecallRequest::Table.into_iden(),
            Recall::Table.into_iden(),
            AggregationMember::Table.into_iden(),
            Aggregation::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
