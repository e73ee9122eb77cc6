//! `submission`: a put or get the catalogue accepted (its first messages staged in the outbox),
//! and whether it was cancelled since.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "submission")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub transaction_id: String,
    pub created: DateTimeUtc,
    /// When the transaction was cancelled (`catalog.cancel`), if it was.
    pub cancelled_at: Option<DateTimeUtc>,
    /// Who cancelled it.
    pub cancelled_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
