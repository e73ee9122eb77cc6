//! `quota_reservation`: what a running put reserved against its group's quota, settled when it ends.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "quota_reservation")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub transaction_id: String,
    pub group: String,
    /// Warm bytes reserved and not yet settled (counted against the quota).
    pub warm_bytes: i64,
    /// Files reserved and not yet settled.
    pub files: i64,
    /// Of the reservation, the bytes of batches that passed `catalog-check` and are not yet
    /// settled: what is left of it for later batches is `warm_bytes - checked_bytes`.
    pub checked_bytes: i64,
    /// Of the reservation, the files of batches that passed `catalog-check`.
    pub checked_files: i64,
    pub created: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
