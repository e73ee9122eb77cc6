//! The drained roles (`monitor.admin` with [`DrainRequest`], service operators only: the server
//! checks): recorded in `role_drain`, and announced on the bus when they change, so every worker
//! process stops or starts consuming the role at once (`crate::drain`).

use chrono::Utc;
use nlds_core::Change;
use nlds_core::drain::{DrainRequest, Drains, REASON_MAX, RoleDrain, check_drainable};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::{Monitor, Result};
use crate::db::{bad_request, role_drain};

impl Monitor {
    /// Lists, drains or resumes; answers the roles drained afterwards.
    pub(super) async fn drains(&self, req: &DrainRequest) -> Result<Drains> {
        let changed = match req {
            DrainRequest::List => false,
            DrainRequest::Drain { role, by, reason } => {
                check_drainable(*role).map_err(bad_request)?;
                let reason = reason
                    .as_deref()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned);
                if reason.as_ref().is_some_and(|r| r.len() > REASON_MAX) {
                    return Err(bad_request(format!(
                        "the reason is longer than {REASON_MAX} bytes: shorten it"
                    )));
                }
                // A second drain keeps the first one's time, operator and reason.
                let inserted = role_drain::Entity::insert(role_drain::ActiveModel {
                    role: Set(role.as_str().to_owned()),
                    since: Set(Utc::now()),
                    by: Set(by.clone()),
                    reason: Set(reason),
                })
                .on_conflict(
                    OnConflict::column(role_drain::Column::Role)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await?;
                if inserted > 0 {
                    tracing::warn!(%role, %by, "role drained: its processes stop taking work");
                }
                inserted > 0
            }
            DrainRequest::Resume { role } => {
                let gone = role_drain::Entity::delete_many()
                    .filter(role_drain::Column::Role.eq(role.as_str()))
                    .exec(&self.db)
                    .await?
                    .rows_affected;
                if gone > 0 {
                    tracing::warn!(%role, "role resumed: its processes take work again");
                }
                gone > 0
            }
        };
        let drained = role_drain::Entity::find()
            .order_by_asc(role_drain::Column::Role)
            .all(&self.db)
            .await?
            .into_iter()
            .map(RoleDrain::from)
            .collect();
        if changed {
            // Best effort: a process that misses it asks again within its heartbeat interval.
            self.announce_change(Change::drains()).await;
        }
        Ok(Drains { drained })
    }
}
