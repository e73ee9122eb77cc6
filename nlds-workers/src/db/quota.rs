//! `quota`: a group's limits (warm bytes, cold bytes, files); `None` is unlimited.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "quota")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub group: String,
    pub warm_bytes: Option<i64>,
    pub cold_bytes: Option<i64>,
    pub files: Option<i64>,
    pub updated: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
