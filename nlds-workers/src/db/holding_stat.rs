//! `holding_stat`: the live files (every live version) and bytes of a holding, how many of its
//! live files have a warm and a cold copy, and how many paths have a live version. Kept by
//! database triggers on `file` and `location` (migrations `m20261205_000011_scale_indexes` and
//! `m20261205_000017_holding_stat_paths`), never written by the workers; a holding without a
//! row has no live files.

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
    /// Paths with a live version (each path once, whatever its number of versions).
    pub paths: i64,
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
