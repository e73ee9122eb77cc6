//! `tag`: `key = value` metadata of a holding, one value per key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tag")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub holding_id: i64,
    pub key: String,
    pub value: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::holding::Entity",
        from = "Column::HoldingId",
        to = "super::holding::Column::Id",
        on_delete = "Cascade"
    )]
    Holding,
}

impl Related<super::holding::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Holding.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
