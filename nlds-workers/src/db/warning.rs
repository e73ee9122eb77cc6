//! `warning`: a warning attached to a transaction.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "warning")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub transaction_record_id: i64,
    pub text: String,
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
}

impl Related<super::transaction_record::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TransactionRecord.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
