//! Who may see and change which holdings: the scope of a request and the per-holding check.

use nlds_core::Envelope;
use nlds_core::message::HoldingFilter;
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect};

use super::store::holding_id_in;
use super::{Catalogue, Result, compile};
use crate::db::{holding, tag, transaction};

impl Catalogue {
    /// The condition selecting the live holdings a `catalog.meta` request names, before the
    /// per-holding permission check ([`may_change`]): the caller's own; with a holding id, that
    /// holding if it is in the group (which the caller may read), so a refusal can say whose it
    /// is, and anywhere for an operator; with `groupall`, the group's. Another group's holding is
    /// never selected, so it is not found, exactly like an id that does not exist.
    pub(super) async fn changeable(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
    ) -> Result<Condition> {
        if env.role.is_admin()
            && let Some(id) = filter.holding_id
        {
            return Ok(Condition::all()
                .add(holding::Column::Id.eq(id))
                .add(holding::Column::DeletedAt.is_null()));
        }
        let widened = HoldingFilter {
            groupall: filter.groupall || filter.holding_id.is_some(),
            ..filter.clone()
        };
        self.scope(env, &widened, false).await
    }

    /// Whether the caller sees a live holding `filter` selects (an empty find of a named
    /// holding asks, to tell "no such file" from "no such holding").
    pub(super) async fn sees_holding(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
    ) -> Result<bool> {
        let scope = self.scope(env, filter, false).await?;
        Ok(holding::Entity::find()
            .select_only()
            .column(holding::Column::Id)
            .filter(scope)
            .into_tuple::<i64>()
            .one(&self.db)
            .await?
            .is_some())
    }

    // ---------------------------------------------------------------------------------------
    // Holding selection

    /// The condition (on `holding` columns) selecting the holdings `filter` names that `env.user`
    /// may see: their own, and with `groupall` (unless `own_only`) those of `env.group`.
    pub(super) async fn scope(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        own_only: bool,
    ) -> Result<Condition> {
        self.scope_of(env, filter, own_only, true).await
    }

    /// [`Catalogue::scope`], of live holdings only (`live_only`) or of deleted ones too.
    pub(super) async fn scope_of(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        own_only: bool,
        live_only: bool,
    ) -> Result<Condition> {
        let mut visible = Condition::any().add(holding::Column::User.eq(&env.user));
        if filter.groupall && !own_only {
            visible = visible.add(holding::Column::Group.eq(&env.group));
        }
        let mut cond = Condition::all().add(visible);
        if live_only {
            cond = cond.add(holding::Column::DeletedAt.is_null());
        }
        if let Some(id) = filter.holding_id {
            cond = cond.add(holding::Column::Id.eq(id));
        }
        if !filter.holding_ids.is_empty() {
            cond = cond.add(holding_id_in(&filter.holding_ids));
        }
        if let Some(t) = filter.transaction_id {
            cond = cond.add(
                holding::Column::Id.in_subquery(
                    Query::select()
                        .column((transaction::Entity, transaction::Column::HoldingId))
                        .from(transaction::Entity)
                        .and_where(transaction::Column::TransactionId.eq(t.to_string()))
                        .to_owned(),
                ),
            );
        }
        for (k, v) in &filter.tags {
            cond = cond.add(
                holding::Column::Id.in_subquery(
                    Query::select()
                        .column((tag::Entity, tag::Column::HoldingId))
                        .from(tag::Entity)
                        .and_where(tag::Column::Key.eq(k.as_str()))
                        .and_where(tag::Column::Value.eq(v.as_str()))
                        .to_owned(),
                ),
            );
        }
        match &filter.label {
            Some(l) if filter.label_regex => {
                let re = compile(l).await?;
                let labels: Vec<(i64, String)> = holding::Entity::find()
                    .select_only()
                    .column(holding::Column::Id)
                    .column(holding::Column::Label)
                    .filter(cond)
                    .into_tuple()
                    .all(&self.db)
                    .await?;
                let ids: Vec<i64> = labels
                    .into_iter()
                    .filter(|(_, label)| re.is_match(label))
                    .map(|(id, _)| id)
                    .collect();
                Ok(Condition::all().add(holding_id_in(&ids)))
            }
            Some(l) => Ok(cond.add(holding::Column::Label.eq(l.as_str()))),
            None => Ok(cond),
        }
    }
}

/// May `env`'s caller change the label or tags of holding `h`? A USER changes only their own
/// holdings, a DEPUTY or MANAGER any of their group's, an ADMIN (operator) any. A refusal of a
/// holding of the caller's group names the holding, its owner and the reason: what a member of
/// the group can read anyway (`groupall`). A holding of another group is never named (the
/// selection leaves those out; this is the belt to its braces).
pub(super) fn may_change(env: &Envelope, h: &holding::Model) -> std::result::Result<(), String> {
    if h.user == env.user
        || env.role.is_admin()
        || (env.role.manages_group() && h.group == env.group)
    {
        return Ok(());
    }
    Err(if h.group == env.group {
        format!(
            "holding {} ({:?}) belongs to {}: {} is a {} of group {} and may change only their \
             own holdings (a deputy or manager of the group may change it)",
            h.id, h.label, h.user, env.user, env.role, h.group
        )
    } else {
        format!("holding {} not found", h.id)
    })
}
