//! `request_paths`: one chunk of the paths of a put or get sent in chunks, kept until the request
//! starts (see `catalogue::chunks`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "request_paths")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub transaction_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub part: i64,
    pub user: String,
    pub group: String,
    /// `putlist` or `getlist`.
    pub api_action: String,
    /// The paths, a JSON array.
    pub paths: String,
    pub count: i64,
    pub created: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
