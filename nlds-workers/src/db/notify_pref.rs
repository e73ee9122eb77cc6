//! `notify_pref`: a user's notification channels (docs/NOTIFY.md).

use nlds_core::notify::NotifyOn;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notify_pref")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user: String,
    pub email: Option<String>,
    pub webhook_url: Option<String>,
    /// The webhook's signing secret (made by the server; shown to its owner only on request).
    pub webhook_secret: Option<String>,
    pub on: NotifyOn,
    pub updated: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
