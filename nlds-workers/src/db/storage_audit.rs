//! `storage_audit`: the storage audit's runs (migration 000015).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "storage_audit")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `operator` or `schedule`.
    pub trigger: String,
    pub started: DateTimeUtc,
    pub finished: Option<DateTimeUtc>,
    /// The request, as JSON.
    pub request: String,
    /// The report, as JSON; `None` until the run ends.
    pub report: Option<String>,
    /// Why the run stopped early.
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
