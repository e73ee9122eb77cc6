//! `transaction_record`: the monitor's view of one transaction.

use nlds_core::api::ApiAction;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "transaction_record")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub transaction_id: String,
    pub user: String,
    pub group: String,
    pub api_action: ApiAction,
    pub job_label: String,
    pub label: Option<String>,
    pub holding_id: Option<i64>,
    pub created: DateTimeUtc,
    pub updated: DateTimeUtc,
    /// The transaction (id) whose failed files this one retries.
    pub retry_of: Option<String>,
    /// The request asked to be notified when it ends, whatever its owner's account says.
    pub notify: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::sub_record::Entity")]
    SubRecord,
    #[sea_orm(has_many = "super::warning::Entity")]
    Warning,
}

impl Related<super::sub_record::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SubRecord.def()
    }
}

impl Related<super::warning::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Warning.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
