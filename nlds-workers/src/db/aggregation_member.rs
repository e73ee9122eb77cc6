//! `aggregation_member`: a file's place in an aggregation.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "aggregation_member")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub aggregation_id: i64,
    pub file_id: i64,
    pub position: i64,
    pub data_offset: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
