//! `failed_file`: a file a sub-record could not handle, with its error code and reason.

use nlds_core::ErrorCode;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "failed_file")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub sub_record_id: i64,
    pub path: String,
    /// Stored in its snake_case spelling.
    pub code: ErrorCode,
    pub reason: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::sub_record::Entity",
        from = "Column::SubRecordId",
        to = "super::sub_record::Column::Id",
        on_delete = "Cascade"
    )]
    SubRecord,
}

impl Related<super::sub_record::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SubRecord.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
