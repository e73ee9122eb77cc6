//! `notify_alert`: an operator alert that is open, so that each is sent once per episode.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notify_alert")]
pub struct Model {
    /// `<kind>:<what>`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub opened: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
