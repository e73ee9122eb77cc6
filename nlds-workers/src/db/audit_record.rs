//! `audit_record`: one audited request or refusal.

use nlds_core::admin::{AuditAction, AuditOutcome};
use nlds_core::{AccessRole, ErrorCode};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_record")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub event_id: String,
    pub time: DateTimeUtc,
    pub user: String,
    pub group: String,
    pub role: AccessRole,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    pub endpoint: String,
    pub holding_id: Option<i64>,
    pub label: Option<String>,
    pub transaction_id: Option<String>,
    pub target_user: Option<String>,
    pub code: Option<ErrorCode>,
    pub detail: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
