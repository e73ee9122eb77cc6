//! `holding_stat`: the live files and bytes of a holding, and how many of its live files have a
//! warm and a cold copy. Kept by database triggers on `file` and `location` (migration
//! `m20261205_000011_scale_indexes`), never written by the workers; a holding without a row has
//! no live files.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "holding_stat")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub holding_id: i64,
    pub files: i64,
    pub bytes: i64,
    pub warm_files: i64,
    pub cold_files: i64,
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
