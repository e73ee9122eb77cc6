//! Tiering by policy: access tracking, pins, stage requests, the policy runner's lease and passes,
//! and quotas (owned by the catalogue role, except `policy_lease` and `policy_pass`, owned by the
//! policy role).
//!
//! * `file.last_access`, `file.access_count`, `holding.last_access`: written in batches by the
//!   catalogue when a get, recall or stage resolves files;
//! * `pin`: a file kept warm for a requester (a get's transaction, a stage request) until a time;
//!   one row per (file, requester), so one release never drops another's pin;
//! * `stage_request`, `stage_file`: WLCG-style stage requests and the state of each file;
//! * `policy_lease`: the single active policy runner (holder, lease end) and its circuit breaker;
//! * `policy_pass`: every pass the policy ran (or dry-ran), with what it moved and why it stopped;
//! * `quota`: limits per group; `quota_reservation`: what running puts reserved; `usage`: bytes
//!   and files per group and tier, kept in the same database transactions as the copies.

use sea_orm_migration::prelude::*;

use crate::columns::{big, big_null, id, index, text, timestamp, timestamp_null};
use crate::m20261125_000001_create_catalogue::{File, Holding};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Access {
    LastAccess,
    AccessCount,
}

#[derive(DeriveIden)]
pub enum Pin {
    Table,
    FileId,
    Requester,
    Until,
    Created,
}

#[derive(DeriveIden)]
pub enum StageRequest {
    Table,
    RequestId,
    User,
    Group,
    Created,
    LifetimeSecs,
    Cancelled,
}

#[derive(DeriveIden)]
pub enum StageFile {
    Table,
    StageId,
    FileId,
    Path,
    State,
    Reason,
    Updated,
}

#[derive(DeriveIden)]
pub enum PolicyLease {
    Table,
    Name,
    Holder,
    Until,
    BreakerReason,
    BreakerSince,
}

#[derive(DeriveIden)]
pub enum PolicyPass {
    Table,
    Kind,
    Started,
    Ended,
    Outcome,
    Evaluated,
    ArchivedFiles,
    ArchivedBytes,
    EvictedFiles,
    EvictedBytes,
    Errors,
    Breaker,
    Summary,
}

#[derive(DeriveIden)]
pub enum Quota {
    Table,
    Group,
    WarmBytes,
    ColdBytes,
    Files,
    Updated,
}

#[derive(DeriveIden)]
pub enum QuotaReservation {
    Table,
    TransactionId,
    Group,
    WarmBytes,
    Files,
    CheckedBytes,
    CheckedFiles,
    Created,
}

#[derive(DeriveIden)]
pub enum Usage {
    Table,
    Group,
    Tier,
    Bytes,
    Files,
}

fn add_column(table: impl IntoIden, col: ColumnDef) -> TableAlterStatement {
    Table::alter().table(table).add_column(col).take()
}

fn drop_column(table: impl IntoIden, col: impl IntoIden) -> TableAlterStatement {
    Table::alter().table(table).drop_column(col).take()
}

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait's lifetimes cannot be written out in the trait's signature"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        manager
            .alter_table(add_column(
                File::Table,
                ColumnDef::new(Access::LastAccess)
                    .timestamp_with_time_zone()
                    .null()
                    .take(),
            ))
            .await?;
        manager
            .alter_table(add_column(
                File::Table,
                big(Access::AccessCount).default(0).take(),
            ))
            .await?;
        manager
            .alter_table(add_column(
                Holding::Table,
                ColumnDef::new(Access::LastAccess)
                    .timestamp_with_time_zone()
                    .null()
                    .take(),
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Pin::Table)
                    .if_not_exists()
                    .col(id())
                    .col(big(Pin::FileId))
                    .col(text(Pin::Requester))
                    .col(timestamp(Pin::Until))
                    .col(timestamp(Pin::Created))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_pin_file")
                            .from(Pin::Table, Pin::FileId)
                            .to(File::Table, File::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_pin_file_requester",
                Pin::Table,
                vec![Pin::FileId.into_iden(), Pin::Requester.into_iden()],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_pin_requester",
                Pin::Table,
                vec![Pin::Requester.into_iden()],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StageRequest::Table)
                    .if_not_exists()
                    .col(id())
                    .col(text(StageRequest::RequestId).unique_key().take())
                    .col(text(StageRequest::User))
                    .col(text(StageRequest::Group))
                    .col(timestamp(StageRequest::Created))
                    .col(big(StageRequest::LifetimeSecs))
                    .col(timestamp_null(StageRequest::Cancelled))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StageFile::Table)
                    .if_not_exists()
                    .col(id())
                    .col(big(StageFile::StageId))
                    .col(big_null(StageFile::FileId))
                    .col(text(StageFile::Path))
                    .col(text(StageFile::State))
                    .col(ColumnDef::new(StageFile::Reason).text().null().take())
                    .col(timestamp(StageFile::Updated))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_stage_file_request")
                            .from(StageFile::Table, StageFile::StageId)
                            .to(StageRequest::Table, Alias::new("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_stage_file_stage",
                StageFile::Table,
                vec![StageFile::StageId.into_iden()],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_stage_file_file",
                StageFile::Table,
                vec![StageFile::FileId.into_iden()],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PolicyLease::Table)
                    .if_not_exists()
                    .col(text(PolicyLease::Name).primary_key().take())
                    .col(text(PolicyLease::Holder))
                    .col(timestamp(PolicyLease::Until))
                    .col(
                        ColumnDef::new(PolicyLease::BreakerReason)
                            .text()
                            .null()
                            .take(),
                    )
                    .col(timestamp_null(PolicyLease::BreakerSince))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PolicyPass::Table)
                    .if_not_exists()
                    .col(id())
                    .col(text(PolicyPass::Kind))
                    .col(timestamp(PolicyPass::Started))
                    .col(timestamp_null(PolicyPass::Ended))
                    .col(text(PolicyPass::Outcome))
                    .col(big(PolicyPass::Evaluated))
                    .col(big(PolicyPass::ArchivedFiles))
                    .col(big(PolicyPass::ArchivedBytes))
                    .col(big(PolicyPass::EvictedFiles))
                    .col(big(PolicyPass::EvictedBytes))
                    .col(big(PolicyPass::Errors))
                    .col(ColumnDef::new(PolicyPass::Breaker).text().null().take())
                    .col(text(PolicyPass::Summary))
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Quota::Table)
                    .if_not_exists()
                    .col(text(Quota::Group).primary_key().take())
                    .col(big_null(Quota::WarmBytes))
                    .col(big_null(Quota::ColdBytes))
                    .col(big_null(Quota::Files))
                    .col(timestamp(Quota::Updated))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(QuotaReservation::Table)
                    .if_not_exists()
                    .col(text(QuotaReservation::TransactionId).primary_key().take())
                    .col(text(QuotaReservation::Group))
                    .col(big(QuotaReservation::WarmBytes))
                    .col(big(QuotaReservation::Files))
                    .col(big(QuotaReservation::CheckedBytes).default(0).take())
                    .col(big(QuotaReservation::CheckedFiles).default(0).take())
                    .col(timestamp(QuotaReservation::Created))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_quota_reservation_group",
                QuotaReservation::Table,
                vec![QuotaReservation::Group.into_iden()],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Usage::Table)
                    .if_not_exists()
                    .col(text(Usage::Group))
                    .col(text(Usage::Tier))
                    .col(big(Usage::Bytes))
                    .col(big(Usage::Files))
                    .primary_key(Index::create().col(Usage::Group).col(Usage::Tier))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Usage::Table.into_iden(),
            QuotaReservation::Table.into_iden(),
            Quota::Table.into_iden(),
            PolicyPass::Table.into_iden(),
            PolicyLease::Table.into_iden(),
            StageFile::Table.into_iden(),
            StageRequest::Table.into_iden(),
            Pin::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).take())
                .await?;
        }
        manager
            .alter_table(drop_column(Holding::Table, Access::LastAccess))
            .await?;
        manager
            .alter_table(drop_column(File::Table, Access::AccessCount))
            .await?;
        manager
            .alter_table(drop_column(File::Table, Access::LastAccess))
            .await
    }
}
