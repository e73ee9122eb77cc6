//! `policy_pass`: one policy pass (or dry run): when, what it moved, its errors and why it stopped.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "policy_pass")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub kind: String,
    pub started: DateTimeUtc,
    pub ended: Option<DateTimeUtc>,
    pub outcome: String,
    pub evaluated: i64,
    pub archived_files: i64,
    pub archived_bytes: i64,
    pub evicted_files: i64,
    pub evicted_bytes: i64,
    pub errors: i64,
    pub breaker: Option<String>,
    /// JSON: per rule and per group, files, bytes and examples.
    pub summary: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
