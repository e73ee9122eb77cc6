//! `recall`: an aggregation being brought back from the cold store (one per aggregation).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "recall")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub aggregation_id: i64,
    /// When archive-get.start was (last) sent.
    pub created: DateTimeUtc,
    /// archive-get has taken the recall up.
    pub started: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
