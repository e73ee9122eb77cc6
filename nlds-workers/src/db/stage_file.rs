//! `stage_file`: one file of a stage request and its state (SUBMITTED, STARTED, COMPLETED, FAILED, CANCELLED).

use sea_orm::entity::prelude::*;

/// The states in which a stage request still waits for its file (WLCG Tape REST).
pub const WAITING: [&str; 2] = ["SUBMITTED", "STARTED"];

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stage_file")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub stage_id: i64,
    pub file_id: Option<i64>,
    pub path: String,
    pub state: String,
    pub reason: Option<String>,
    pub updated: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
