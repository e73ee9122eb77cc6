//! `holding`: a user's named collection of files.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "holding")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub label: String,
    pub user: String,
    pub group: String,
    pub created: DateTimeUtc,
    /// When it was deleted (soft delete; `None`: live).
    pub deleted_at: Option<DateTimeUtc>,
    /// Who deleted it.
    pub deleted_by: Option<String>,
    /// The delete transaction (an undelete of a holding restores the files deleted with it).
    pub delete_transaction: Option<String>,
    /// The latest access of any of its files.
    pub last_access: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::tag::Entity")]
    Tag,
    #[sea_orm(has_many = "super::transaction::Entity")]
    Transaction,
    #[sea_orm(has_many = "super::file::Entity")]
    File,
}

impl Related<super::tag::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tag.def()
    }
}

impl Related<super::transaction::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Transaction.def()
    }
}

impl Related<super::file::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::File.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
