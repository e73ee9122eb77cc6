//! `role_drain`: a role drained for maintenance (`nlds admin drain ROLE`), while it is.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "role_drain")]
pub struct Model {
    /// The role's command-line name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub role: String,
    pub since: DateTimeUtc,
    /// The operator who drained it.
    pub by: String,
    pub reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl From<Model> for nlds_core::drain::RoleDrain {
    fn from(r: Model) -> Self {
        Self {
            role: r.role,
            since: r.since,
            by: r.by,
            reason: r.reason,
        }
    }
}
