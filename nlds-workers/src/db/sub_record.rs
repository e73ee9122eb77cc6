//! `sub_record`: one batch of a transaction and its state (the NLDS number).

use nlds_core::State;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sub_record")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub transaction_record_id: i64,
    pub sub_id: String,
    /// Stored as its NLDS number.
    pub state: State,
    pub files: i64,
    pub bytes: i64,
    pub last_updated: DateTimeUtc,
    /// Of `files`, the new versions of paths their holding had (a put).
    pub versions: i64,
    /// The last retry the bus runtime reported for this batch (JSON of
    /// `nlds_core::waiting::Retrying`), until its state changes.
    pub retrying: Option<String>,
    /// The bytes a transfer role reported moved of this batch while it is still being uploaded
    /// or restored (`monitor-put.progress`); 0 once the batch is final.
    pub bytes_moving: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::transaction_record::Entity",
        from = "Column::TransactionRecordId",
        to = "super::transaction_record::Column::Id",
        on_delete = "Cascade"
    )]
    TransactionRecord,
    #[sea_orm(has_many = "super::failed_file::Entity")]
    FailedFile,
}

impl Related<super::transaction_record::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TransactionRecord.def()
    }
}

impl Related<super::failed_file::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::FailedFile.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
