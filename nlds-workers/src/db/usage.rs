//! `usage`: bytes and files per group and tier, changed in the same database transactions as the copies.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub group: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub tier: String,
    pub bytes: i64,
    pub files: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
