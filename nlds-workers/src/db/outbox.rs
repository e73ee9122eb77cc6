//! `outbox`: a message a committed change implies, waiting for the relay to publish it
//! (see [`crate::outbox`]).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `nlds-api.<worker>.<action>`.
    pub routing_key: String,
    /// The envelope as JSON.
    pub envelope: String,
    pub created: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
