//! `transaction`: one put into a holding (`transaction_id` is the UUID as text).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "transaction")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub transaction_id: String,
    pub holding_id: i64,
    pub ingest_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::holding::Entity",
        from = "Column::HoldingId",
        to = "super::holding::Column::Id"
    )]
    Holding,
    #[sea_orm(has_many = "super::file::Entity")]
    File,
}

impl Related<super::holding::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Holding.def()
    }
}

impl Related<super::file::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::File.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
