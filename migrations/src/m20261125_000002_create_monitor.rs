//! The monitor tables: `transaction_record`, `sub_record`, `failed_file`, `warning`.

use sea_orm_migration::prelude::*;

use crate::columns::{big, id, index, text, timestamp};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum TransactionRecord {
    Table,
    Id,
    TransactionId,
    User,
    Group,
    ApiAction,
    JobLabel,
    Label,
    HoldingId,
    Created,
    Updated,
}

#[derive(DeriveIden)]
pub enum SubRecord {
    Table,
    Id,
    TransactionRecordId,
    SubId,
    State,
    Files,
    Bytes,
    LastUpdated,
}

#[derive(DeriveIden)]
pub enum FailedFile {
    Table,
    Id,
    SubRecordId,
    Path,
    Code,
    Reason,
}

#[derive(DeriveIden)]
pub enum Warning {
    Table,
    Id,
    TransactionRecordId,
    Text,
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
                    .table(TransactionRecord::Table)
                    .col(id())
                    .col(text(TransactionRecord::TransactionId).unique_key().take())
                    .col(text(TransactionRecord::User))
                    .col(text(TransactionRecord::Group))
                    .col(text(TransactionRecord::ApiAction))
                    .col(text(TransactionRecord::JobLabel))
                    .col(ColumnDef::new(TransactionRecord::Label).text().null())
                    .col(
                        ColumnDef::new(TransactionRecord::HoldingId)
                            .big_integer()
                            .null(),
                    )
                    .col(timestamp(TransactionRecord::Created))
                    .col(timestamp(TransactionRecord::Updated))
                    .take(),
            )
            .await?;
        for stmt in [
            index(
                "idx_transaction_record_user",
                TransactionRecord::Table,
                vec![TransactionRecord::User.into_iden()],
                false,
            ),
            index(
                "idx_transaction_record_group",
                TransactionRecord::Table,
                vec![TransactionRecord::Group.into_iden()],
                false,
            ),
        ] {
            manager.create_index(stmt).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(SubRecord::Table)
                    .col(id())
                    .col(big(SubRecord::TransactionRecordId))
                    .col(text(SubRecord::SubId))
                    .col(ColumnDef::new(SubRecord::State).integer().not_null())
                    .col(big(SubRecord::Files))
                    .col(big(SubRecord::Bytes))
                    .col(timestamp(SubRecord::LastUpdated))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sub_record_transaction_record")
                            .from(SubRecord::Table, SubRecord::TransactionRecordId)
                            .to(TransactionRecord::Table, TransactionRecord::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "uq_sub_record_transaction_sub",
                SubRecord::Table,
                vec![
                    SubRecord::TransactionRecordId.into_iden(),
                    SubRecord::SubId.into_iden(),
                ],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(FailedFile::Table)
                    .col(id())
                    .col(big(FailedFile::SubRecordId))
                    .col(text(FailedFile::Path))
                    .col(text(FailedFile::Code))
                    .col(text(FailedFile::Reason))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_failed_file_sub_record")
                            .from(FailedFile::Table, FailedFile::SubRecordId)
                            .to(SubRecord::Table, SubRecord::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "uq_failed_file_sub_path",
                FailedFile::Table,
                vec![
                    FailedFile::SubRecordId.into_iden(),
                    FailedFile::Path.into_iden(),
                ],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Warning::Table)
                    .col(id())
                    .col(big(Warning::TransactionRecordId))
                    .col(text(Warning::Text))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_warning_transaction_record")
                            .from(Warning::Table, Warning::TransactionRecordId)
                            .to(TransactionRecord::Table, TransactionRecord::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "uq_warning_transaction_text",
                Warning::Table,
                vec![
                    Warning::TransactionRecordId.into_iden(),
                    Warning::Text.into_iden(),
                ],
                true,
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Warning::Table.into_iden(),
            FailedFile::Table.into_iden(),
            SubRecord::Table.into_iden(),
            TransactionRecord::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
