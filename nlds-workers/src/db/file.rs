//! `file`: one catalogued path of a holding (`transaction_id` references `transaction.id`).

use nlds_core::PathKind;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "file")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub holding_id: i64,
    pub transaction_id: i64,
    pub path: String,
    /// Stored as `file`, `directory` or `link`.
    pub kind: PathKind,
    pub link_target: Option<String>,
    pub size: i64,
    pub uid: i64,
    pub gid: i64,
    pub mode: i64,
    pub mtime_ns: i64,
    /// The version of the path in its holding (1, 2, ...; docs/VERSIONS.md).
    pub version: i32,
    /// When it was deleted (soft delete; `None`: live).
    pub deleted_at: Option<DateTimeUtc>,
    /// Who deleted it.
    pub deleted_by: Option<String>,
    /// The delete transaction (an undelete of a holding restores the files deleted with it).
    pub delete_transaction: Option<String>,
    /// When a get, recall or stage last resolved this file.
    pub last_access: Option<DateTimeUtc>,
    pub access_count: i64,
    /// The extended attributes as put: a JSON array of `nlds_core::message::Xattr` (NULL: none).
    pub xattrs: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::holding::Entity",
        from = "Column::HoldingId",
        to = "super::holding::Column::Id"
    )]
    Holding,
    #[sea_orm(
        belongs_to = "super::transaction::Entity",
        from = "Column::TransactionId",
        to = "super::transaction::Column::Id"
    )]
    Transaction,
    #[sea_orm(has_many = "super::location::Entity")]
    Location,
    #[sea_orm(has_many = "super::checksum::Entity")]
    Checksum,
}

impl Related<super::holding::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Holding.def()
    }
}

impl Related<super::transaction::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Transaction.def()
    }
}

impl Related<super::location::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Location.def()
    }
}

impl Related<super::checksum::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Checksum.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
