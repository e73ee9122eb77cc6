//! `catalog.find` and `catalog.meta`: finding files, changing labels and tags.

use std::collections::HashMap;

use nlds_core::api::{FilePage, HoldingMeta, MetaChange, MetaResponse, Tags};
use nlds_core::error::ApiError;
use nlds_core::message::HoldingFilter;
use nlds_core::{Envelope, PathKind};
use sea_orm::sea_query::{OnConflict, Order};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use super::authz::may_change;
use super::entries::{FindRow, with_owner};
use super::store::{files_with_owners, find_query, load_tags};
use super::{
    Catalogue, Result, compile, has_selector, id_set, order, page, validate_label, validate_tag,
};
use crate::db::{self, bad_request, conflict, file, holding, tag, untraced};

impl Catalogue {
    // ---------------------------------------------------------------------------------------
    // catalog.find

    pub(super) async fn find(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        path: Option<&str>,
        path_regex: bool,
        files_only: bool,
    ) -> Result<FilePage> {
        let scope = self.scope(env, filter, false).await?;
        let (limit, offset) = page(filter)?;
        let re = match (path, path_regex) {
            (Some(p), true) => Some(compile(p).await?),
            _ => None,
        };
        let query = find_select(scope, filter, path, path_regex, files_only);
        let (total, rows) = match re {
            None => {
                let page = with_owner(query.clone()).limit(limit + 1).offset(offset);
                let db = self.db.clone();
                let mut rows =
                    untraced::read(async move { page.into_model::<FindRow>().all(&db).await })
                        .await?;
                let total = page_total(&mut rows, limit, offset, query, &self.db).await?;
                (total, rows)
            }
            Some(re) => {
                let db = self.db.clone();
                let all: Vec<(i64, String)> = untraced::read(async move {
                    query
                        .select_only()
                        .column(file::Column::Id)
                        .column(file::Column::Path)
                        .into_tuple()
                        .all(&db)
                        .await
                })
                .await?;
                let hits: Vec<i64> = all
                    .into_iter()
                    .filter(|(_, p)| re.is_match(p))
                    .map(|(id, _)| id)
                    .collect();
                let total = hits.len() as u64;
                let page: Vec<i64> = hits
                    .into_iter()
                    .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                    .take(usize::try_from(limit).unwrap_or(usize::MAX))
                    .collect();
                let backend = self.db.get_database_backend();
                let mut by_id: HashMap<i64, FindRow> = HashMap::with_capacity(page.len());
                for part in id_set::parts(backend, &page) {
                    let rows = with_owner(files_with_owners().filter(id_set::any_of(
                        backend,
                        file::Column::Id,
                        part,
                    )));
                    let db = self.db.clone();
                    let rows =
                        untraced::read(async move { rows.into_model::<FindRow>().all(&db).await });
                    by_id.extend(rows.await?.into_iter().map(|r| (r.file.id, r)));
                }
                (
                    total,
                    page.iter().filter_map(|id| by_id.remove(id)).collect(),
                )
            }
        };
        let files = self.entries_of(rows).await?;
        Ok(FilePage {
            files,
            total,
            limit,
            offset,
        })
    }

    // ---------------------------------------------------------------------------------------
    // catalog.meta

    pub(super) async fn meta(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        new_label: Option<&str>,
        new_tags: &Tags,
        del_tags: &Tags,
        dry_run: bool,
    ) -> Result<MetaResponse> {
        if !has_selector(filter) {
            return Err(bad_request("give a holding id, label or tags"));
        }
        if let Some(l) = new_label {
            validate_label(l)?;
        }
        for (k, v) in new_tags {
            validate_tag(k, v)?;
        }
        let scope = self.changeable(env, filter).await?;
        let txn = self.db.begin().await?;
        let holdings = holding::Entity::find()
            .filter(scope)
            .order_by(holding::Column::Id, Order::Asc)
            .all(&txn)
            .await?;
        // Nothing in the caller's read scope: the same answer whether the holding exists
        // elsewhere or not at all (no label, owner or group of another group's holding).
        if holdings.is_empty() {
            return Err(ApiError::not_found(format!("no holding of {} matches", env.user)).into());
        }
        // All or nothing: one holding the caller may not change refuses the whole request.
        if let Some(reason) = holdings.iter().find_map(|h| may_change(env, h).err()) {
            return Err(ApiError::forbidden(reason).into());
        }
        if new_label.is_some() && holdings.len() > 1 {
            return Err(bad_request(format!(
                "{} holdings match, but a new label needs exactly one",
                holdings.len()
            )));
        }
        let ids: Vec<i64> = holdings.iter().map(|h| h.id).collect();
        let mut old_tags = load_tags(&txn, &ids).await?;
        let mut changes = Vec::with_capacity(holdings.len());
        for h in holdings {
            let mut label = h.label.clone();
            if let Some(nl) = new_label
                && nl != h.label
            {
                if let Some(other) = holding::Entity::find()
                    .filter(holding::Column::User.eq(&h.user))
                    .filter(holding::Column::Label.eq(nl))
                    .filter(holding::Column::DeletedAt.is_null())
                    .one(&txn)
                    .await?
                {
                    // Name the other holding only if the caller may read it.
                    return Err(conflict(
                        if other.user == env.user || other.group == env.group {
                            format!("label {nl:?} is already used by holding {}", other.id)
                        } else {
                            format!(
                                "label {nl:?} is already used by another holding of {}",
                                h.user
                            )
                        },
                    ));
                }
                let update = holding::ActiveModel {
                    id: Set(h.id),
                    label: Set(nl.to_owned()),
                    ..Default::default()
                };
                holding::Entity::update(update)
                    .exec(&txn)
                    .await
                    .map_err(|e| {
                        if db::is_unique_violation(&e) {
                            conflict(format!("label {nl:?} is already used by another holding"))
                        } else {
                            e.into()
                        }
                    })?;
                label = nl.to_owned();
            }
            let old = old_tags.remove(&h.id).unwrap_or_default();
            let mut tags = old.clone();
            for (k, v) in del_tags {
                if old.get(k).is_some_and(|cur| v.is_empty() || cur == v) {
                    tag::Entity::delete_many()
                        .filter(tag::Column::HoldingId.eq(h.id))
                        .filter(tag::Column::Key.eq(k))
                        .exec(&txn)
                        .await?;
                    tags.remove(k);
                }
            }
            for (k, v) in new_tags {
                tag::Entity::insert(tag::ActiveModel {
                    holding_id: Set(h.id),
                    key: Set(k.clone()),
                    value: Set(v.clone()),
                    ..Default::default()
                })
                .on_conflict(
                    OnConflict::columns([tag::Column::HoldingId, tag::Column::Key])
                        .update_column(tag::Column::Value)
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
                tags.insert(k.clone(), v.clone());
            }
            changes.push(MetaChange {
                id: h.id,
                user: h.user,
                group: h.group,
                old: HoldingMeta {
                    label: h.label,
                    tags: old,
                },
                new: HoldingMeta { label, tags },
            });
        }
        if dry_run {
            txn.rollback().await?;
        } else {
            txn.commit().await?;
        }
        Ok(MetaResponse {
            holdings: changes,
            dry_run,
        })
    }
}

/// The total of a page fetched with one row more than `limit` (which is dropped): without a
/// `COUNT` when the page is the last one (fewer rows than asked for, the common case of an
/// exact path or a holding's first page), with one otherwise. A page past the end (no row at a
/// non-zero offset) counts too, to report the real total.
pub(super) async fn page_total<E, R>(
    rows: &mut Vec<R>,
    limit: u64,
    offset: u64,
    query: sea_orm::Select<E>,
    db: &sea_orm::DatabaseConnection,
) -> Result<u64>
where
    E: EntityTrait,
    E::Model: Sync,
{
    let fetched = rows.len() as u64;
    if fetched > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    } else if fetched > 0 || offset == 0 {
        return Ok(offset + fetched);
    }
    Ok(query.count(db).await?)
}

/// The statement of `catalog.find`: the files of the holdings in `scope` at `path` (exact, or a
/// regex the caller applies to the rows; one anchored at a literal, `^/dir/...`, is narrowed to
/// that literal's index range here), of the versions `filter` selects (the newest live one by
/// default: [`super::versions::selected_in`]), in ingest order (`filter.descending`: newest
/// first). The plan guard (`plan_tests.rs`) explains this very statement.
pub(super) fn find_select(
    scope: sea_orm::Condition,
    filter: &HoldingFilter,
    path: Option<&str>,
    path_regex: bool,
    files_only: bool,
) -> sea_orm::Select<file::Entity> {
    let versions = super::versions::selected_in(&filter.versions, &scope, filter.names_holding());
    let mut query = find_query(scope, order(filter)).filter(versions);
    match (path, path_regex) {
        (Some(p), false) => query = query.filter(file::Column::Path.eq(p)),
        (Some(p), true) => {
            if let Some(lo) = nlds_core::pattern::anchored_prefix(p) {
                if let Some(hi) = nlds_core::pattern::upper_bound(&lo) {
                    query = query.filter(file::Column::Path.lt(hi));
                }
                query = query.filter(file::Column::Path.gte(lo));
            }
        }
        (None, _) => {}
    }
    if files_only {
        query = query.filter(file::Column::Kind.ne(PathKind::Directory));
    }
    query
}
