//! Faithful copies (owned by the catalogue role): `file.xattrs` keeps the extended attributes of
//! a file or directory (`user.*` and the POSIX ACLs `system.posix_acl_*`) as put, a JSON array
//! of `{"name": .., "value": <base64>}` (NULL: none). Hard links need no column: a regular file
//! recorded with a `link_target` is a hard link to that path of the same put (see
//! docs/PROTOCOL.md, "Hard links").

use sea_orm_migration::prelude::*;

use crate::m20261125_000001_create_catalogue::File;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum FileXattrs {
    Xattrs,
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
                    .table(File::Table)
                    .add_column(ColumnDef::new(FileXattrs::Xattrs).text().null())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(File::Table)
                    .drop_column(FileXattrs::Xattrs)
                    .take(),
            )
            .await
    }
}
