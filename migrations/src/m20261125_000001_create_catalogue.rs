//! The catalogue tables: `holding`, `tag`, `transaction`, `file`, `location`, `checksum`.

use sea_orm_migration::prelude::*;

use crate::columns::{big, id, index, text, timestamp};
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Holding {
    Table,
    Id,
    Label,
    User,
    Group,
    Created,
}

#[derive(DeriveIden)]
pub enum Tag {
    Table,
    Id,
    HoldingId,
    Key,
    Value,
}

#[derive(DeriveIden)]
pub enum Transaction {
    Table,
    Id,
    TransactionId,
    HoldingId,
    IngestTime,
}

#[derive(DeriveIden)]
pub enum File {
    Table,
    Id,
    HoldingId,
    TransactionId,
    Path,
    Kind,
    LinkTarget,
    Size,
    Uid,
    Gid,
    Mode,
    MtimeNs,
}

#[derive(DeriveIden)]
pub enum Location {
    Table,
    Id,
    FileId,
    Tier,
    Bucket,
    Key,
    Created,
}

#[derive(DeriveIden)]
pub enum Checksum {
    Table,
    Id,
    FileId,
    Algorithm,
    Value,
}

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait does not accept `SchemaManager<'_>` here"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let pg = manager.get_database_backend() == DbBackend::Postgres;

        manager
            .create_table(
                Table::create()
                    .table(Holding::Table)
                    .col(id())
                    .col(text(Holding::Label))
                    .col(text(Holding::User))
                    .col(text(Holding::Group))
                    .col(timestamp(Holding::Created))
                    .take(),
            )
            .await?;
        for stmt in [
            index(
                "uq_holding_user_label",
                Holding::Table,
                vec![Holding::User.into_iden(), Holding::Label.into_iden()],
                true,
            ),
            index(
                "idx_holding_user",
                Holding::Table,
                vec![Holding::User.into_iden()],
                false,
            ),
            index(
                "idx_holding_group",
                Holding::Table,
                vec![Holding::Group.into_iden()],
                false,
            ),
        ] {
            manager.create_index(stmt).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Tag::Table)
                    .col(id())
                    .col(big(Tag::HoldingId))
                    .col(text(Tag::Key))
                    .col(text(Tag::Value))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tag_holding")
                            .from(Tag::Table, Tag::HoldingId)
                            .to(Holding::Table, Holding::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "uq_tag_holding_key",
                Tag::Table,
                vec![Tag::HoldingId.into_iden(), Tag::Key.into_iden()],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Transaction::Table)
                    .col(id())
                    .col(text(Transaction::TransactionId).unique_key().take())
                    .col(big(Transaction::HoldingId))
                    .col(timestamp(Transaction::IngestTime))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_transaction_holding")
                            .from(Transaction::Table, Transaction::HoldingId)
                            .to(Holding::Table, Holding::Id),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_transaction_holding",
                Transaction::Table,
                vec![Transaction::HoldingId.into_iden()],
                false,
            ))
            .await?;

        // Paths are compared byte by byte (`COLLATE "C"` on PostgreSQL; SQLite's default BINARY),
        // so the directory range scan `path > 'p/' AND path < 'p0'` uses the index and is exact.
        let mut path = text(File::Path);
        if pg {
            path.extra("COLLATE \"C\"");
        }
        manager
            .create_table(
                Table::create()
                    .table(File::Table)
                    .col(id())
                    .col(big(File::HoldingId))
                    .col(big(File::TransactionId))
                    .col(path)
                    .col(text(File::Kind))
                    .col(ColumnDef::new(File::LinkTarget).text().null())
                    .col(big(File::Size))
                    .col(big(File::Uid))
                    .col(big(File::Gid))
                    .col(big(File::Mode))
                    .col(big(File::MtimeNs))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_file_holding")
                            .from(File::Table, File::HoldingId)
                            .to(Holding::Table, Holding::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_file_transaction")
                            .from(File::Table, File::TransactionId)
                            .to(Transaction::Table, Transaction::Id),
                    )
                    .take(),
            )
            .await?;
        for stmt in [
            index(
                "uq_file_holding_path",
                File::Table,
                vec![File::HoldingId.into_iden(), File::Path.into_iden()],
                true,
            ),
            index(
                "idx_file_path",
                File::Table,
                vec![File::Path.into_iden()],
                false,
            ),
            index(
                "idx_file_transaction",
                File::Table,
                vec![File::TransactionId.into_iden()],
                false,
            ),
        ] {
            manager.create_index(stmt).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Location::Table)
                    .col(id())
                    .col(big(Location::FileId))
                    .col(text(Location::Tier))
                    .col(text(Location::Bucket))
                    .col(text(Location::Key))
                    .col(timestamp(Location::Created))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_location_file")
                            .from(Location::Table, Location::FileId)
                            .to(File::Table, File::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "uq_location_file_tier",
                Location::Table,
                vec![Location::FileId.into_iden(), Location::Tier.into_iden()],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Checksum::Table)
                    .col(id())
                    .col(big(Checksum::FileId))
                    .col(text(Checksum::Algorithm))
                    .col(text(Checksum::Value))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_checksum_file")
                            .from(Checksum::Table, Checksum::FileId)
                            .to(File::Table, File::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "uq_checksum_file_algorithm",
                Checksum::Table,
                vec![
                    Checksum::FileId.into_iden(),
                    Checksum::Algorithm.into_iden(),
                ],
                true,
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Children first; dropping a table drops its indexes.
        for table in [
            Checksum::Table.into_iden(),
            Location::Table.into_iden(),
            File::Table.into_iden(),
            Transaction::Table.into_iden(),
            Tag::Table.into_iden(),
            Holding::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
