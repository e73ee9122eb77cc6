//! `log_record`: one record the logger collected.

use nlds_core::admin::LogLevel;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "log_record")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub time: DateTimeUtc,
    pub level: LogLevel,
    pub service: String,
    pub transaction_id: Option<String>,
    pub sub_id: Option<String>,
    pub user: Option<String>,
    pub message: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
