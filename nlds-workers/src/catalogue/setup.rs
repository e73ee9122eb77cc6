//! `catalog.setup`: creating (or finding) a holding and its transaction, and accepting the put
//! into it (see `submit`), within the group's quota (see `quota`).

use nlds_core::api::Tags;
use nlds_core::error::ApiError;
use nlds_core::message::RpcReply;
use nlds_core::quota::SizeHint;
use nlds_core::{Envelope, Payload};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};

use super::chunks::stage_chunked;
use super::store::{ensure_transaction, get_or_create_holding};
use super::submit::{claim, first_messages};
use super::{Catalogue, Result, quota, validate_label, validate_tag};
use crate::db::{bad_request, holding, tag};

impl Catalogue {
    pub(super) async fn setup(
        &self,
        env: &Envelope,
        label: Option<&str>,
        holding_id: Option<i64>,
        tags: &Tags,
        paths: &[String],
        size_hint: Option<SizeHint>,
    ) -> Result<RpcReply> {
        if let Some(l) = label {
            validate_label(l)?;
        }
        for (k, v) in tags {
            validate_tag(k, v)?;
        }
        let txn = self.db.begin().await?;
        // First, before anything is read: the quota lock (a write, see `quota::lock`).
        let mut limits = if paths.is_empty() && env.chunks == 0 {
            None
        } else {
            quota::lock(&txn, &env.group).await?
        };
        let h = match holding_id {
            Some(id) => {
                // Outside what the caller may read (another group's holding, for anyone but an
                // operator), the answer is the one for an id that does not exist.
                let h = holding::Entity::find_by_id(id)
                    .filter(holding::Column::DeletedAt.is_null())
                    .one(&txn)
                    .await?
                    .filter(|h| h.user == env.user || h.group == env.group || env.role.is_admin())
                    .ok_or_else(|| ApiError::not_found(format!("holding {id} not found")))?;
                if h.user != env.user {
                    return Err(ApiError::forbidden(format!(
                        "holding {id} belongs to another user"
                    ))
                    .into());
                }
                if let Some(l) = label
                    && l != h.label
                {
                    return Err(bad_request(format!(
                        "holding {id} is labelled {:?}, not {l:?}",
                        h.label
                    )));
                }
                h
            }
            None => {
                let default;
                let label = match label {
                    Some(l) => l,
                    None => {
                        default = env.transaction_id.to_string()[..8].to_owned();
                        &default
                    }
                };
                get_or_create_holding(&txn, &env.user, &env.group, label).await?
            }
        };
        let new_tags = tags.iter().map(|(k, v)| tag::ActiveModel {
            holding_id: Set(h.id),
            key: Set(k.clone()),
            value: Set(v.clone()),
            ..Default::default()
        });
        tag::Entity::insert_many(new_tags)
            .on_conflict_do_nothing_on([tag::Column::HoldingId, tag::Column::Key])
            .exec_without_returning(&txn)
            .await?;
        ensure_transaction(&txn, env.transaction_id, h.id).await?;
        // The put is accepted with its holding: its record and submission are staged the first
        // time this transaction id is set up.
        let accepts = !paths.is_empty() || env.chunks > 0;
        let mut chunked = false;
        let messages = if accepts && claim(&txn, env).await? {
            // The put counts for its holding's group; refused, the whole acceptance rolls back
            // (no holding, transaction, claim or message is stored).
            if h.group != env.group {
                limits = quota::lock(&txn, &h.group).await?;
            }
            let tid = env.transaction_id.to_string();
            quota::reserve(&txn, &h.group, limits, &tid, size_hint).await?;
            if env.chunks > 0 {
                // The paths came in chunks: one submission per chunk (the request's own paths
                // were appended as its last chunk by the API).
                chunked = true;
                let holding_id = h.id;
                let put = move |paths| Payload::PutRequest { holding_id, paths };
                stage_chunked(&txn, env, put, Some(h.label.clone()), Some(h.id)).await?;
                Vec::new()
            } else {
                let put = Payload::PutRequest {
                    holding_id: h.id,
                    paths: paths.to_vec(),
                };
                first_messages(env, put, Some(h.label.clone()), Some(h.id))?
            }
        } else {
            Vec::new()
        };
        self.commit_with(txn, messages).await?;
        if chunked {
            self.outbox.wake();
        }
        Ok(RpcReply::Holding {
            id: h.id,
            label: h.label,
        })
    }
}
