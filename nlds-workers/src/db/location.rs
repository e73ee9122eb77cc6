//! `location`: where a copy of a file is kept (`tier` is `warm` or `cold`; a warm copy's
//! `tenancy` names the object-store tenancy it lives under).

use nlds_core::api::Tier;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "location")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub file_id: i64,
    pub tier: Tier,
    pub bucket: String,
    pub key: String,
    pub created: DateTimeUtc,
    /// The object-store tenancy of a warm copy (`None`: the default object store).
    pub tenancy: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::file::Entity",
        from = "Column::FileId",
        to = "super::file::Column::Id",
        on_delete = "Cascade"
    )]
    File,
}

impl Related<super::file::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::File.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
