//! `notification`: one notification on one channel, from the moment it is decided (in the
//! database transaction that records what it is about) until it is sent or dead
//! (see [`crate::notify`]).

use nlds_core::notify::{Channel, Delivery};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `transaction:<id>` or `alert:<kind>:<what>`.
    pub subject: String,
    pub channel: Channel,
    /// The e-mail address or webhook URL.
    pub target: String,
    /// Whose webhook secret signs it (`None`: the operators' channels).
    pub user: Option<String>,
    /// The JSON body (webhook) that the e-mail also renders.
    pub payload: String,
    pub state: Delivery,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub last_error: Option<String>,
    pub created: DateTimeUtc,
    pub updated: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
