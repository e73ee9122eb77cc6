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
    /// A signing secret an earlier version made and stored: still used to sign while
    /// `webhook_nonce` is null (the owner has not rotated since), never shown again.
    pub webhook_secret: Option<String>,
    /// The non-secret input the webhook's secret is derived from (with `[notify]
    /// webhook_key_file`); new with each new URL or rotation.
    pub webhook_nonce: Option<String>,
    pub on: NotifyOn,
    pub updated: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
