//! Deleting, undeleting and purging, and the last-copy guard every background removal goes
//! through.
//!
//! **Soft delete** (`catalog.del`): the selected files (or whole holdings) are marked deleted in
//! one database transaction (`deleted_at`, `deleted_by`, `delete_transaction`); from then on no
//! list, find, get, meta or put sees them. A delete whose paths came in chunks is deleted part by
//! part in that one database transaction (`parts.rs`). Who may delete what is decided here from the caller's
//! role in the group (`Envelope::role`, set by the server): a USER deletes only their own
//! holdings' files, a DEPUTY or MANAGER anything in the group, an ADMIN anything.
//!
//! **Undelete** (`catalog.undelete`) clears the marks within the retention period
//! ([`DeleteConfig::retention_secs`]); a path or label taken again since is a conflict.
//!
//! **Purge**: after the retention period (a sweep run with every archive round) or when an
//! operator asks (`catalog.purge`), a deleted file's warm objects are deleted (`transfer-del`),
//! and an aggregate whose members are all deleted is removed from the cold store
//! (`archive-put.del`); then the rows go. A deleted member of an aggregate that still has live
//! members keeps its cold copy (a tar on tape is not rewritten) until the last one goes.
//!
//! **The invariant**: no background action ever removes the last verified copy of a file that is
//! not deleted. [`guard_removals`](super::guard::guard_removals) is the one gate: eviction, the clean-up of objects a put could
//! not catalogue, and purging all propose their removals to it and carry out only what it allows.
//! A verified copy is a warm location (written and checksummed before it was catalogued) or a
//! cold location in a `stored` (written and verified) aggregation.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use nlds_core::api::{DeletePlan, DeletedFile, DeletedHolding};
use nlds_core::error::ApiError;
use nlds_core::message::HoldingFilter;
use nlds_core::versions::VersionSelect;
use nlds_core::workflow::{Effect, Step, Workflow};
use nlds_core::{Action, Envelope, ErrorCode, FailedFile, PathKind, Payload, RoutingKey, Worker};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::{
    CHUNK, Catalogue, Result, SCAN_PAGE, bad_request, compile_set, dedup, has_selector, normalise,
    prefix_range, record, to_u64,
};
use crate::db::{file, holding};

mod parts;
mod purge;

pub use nlds_settings::DeleteConfig;
pub(crate) use purge::removal_messages;

/// [`DeleteConfig`] (defined in `nlds-settings`) in chrono's terms.
trait Retention {
    /// How long deleted files can be undeleted.
    fn retention(&self) -> chrono::Duration;
}

impl Retention for DeleteConfig {
    fn retention(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.retention_secs).unwrap_or(i64::MAX / 4))
    }
}

/// May `env`'s caller delete (or undelete) holding `h`?
fn may_delete(env: &Envelope, h: &holding::Model) -> std::result::Result<(), String> {
    if h.user == env.user
        || env.role.is_admin()
        || (env.role.manages_group() && h.group == env.group)
    {
        return Ok(());
    }
    Err(if h.group == env.group {
        format!(
            "holding {} ({:?}) belongs to {}: a {} may delete only their own holdings; a deputy or \
             manager of group {} may delete it",
            h.id, h.label, h.user, env.role, h.group
        )
    } else {
        // Never selected (another group's holding is outside the caller's scope); if it were,
        // it would be named no more than a missing one.
        format!("holding {} not found", h.id)
    })
}

fn summary(h: &holding::Model) -> DeletedHolding {
    DeletedHolding {
        id: h.id,
        label: h.label.clone(),
        user: h.user.clone(),
        group: h.group.clone(),
    }
}

fn deleted_file(m: &file::Model, h: &holding::Model) -> DeletedFile {
    DeletedFile {
        path: m.path.clone(),
        holding_id: h.id,
        label: h.label.clone(),
        user: h.user.clone(),
        size: to_u64(m.size),
    }
}

fn forbidden(e: impl Into<String>) -> super::Error {
    ApiError::forbidden(e).into()
}

impl Catalogue {
    /// How long deleted files can be undeleted, and how much one purge takes on.
    pub fn with_delete(mut self, cfg: DeleteConfig) -> Self {
        self.delete = cfg;
        self
    }

    /// The holdings `filter` names that the caller could act on (live ones, or with
    /// `deleted` deleted ones too), before the per-holding permission check. A named holding id
    /// is looked for in the whole group (which the caller may read, so that a refusal can say
    /// whose it is), and anywhere for an operator; another group's holding is not selected, so
    /// it is not found, exactly like an id that does not exist.
    async fn candidates(
        &self,
        c: &DatabaseTransaction,
        env: &Envelope,
        filter: &HoldingFilter,
        deleted: bool,
    ) -> Result<Vec<holding::Model>> {
        if env.role.is_admin()
            && let Some(id) = filter.holding_id
        {
            let mut q = holding::Entity::find_by_id(id);
            if !deleted {
                q = q.filter(holding::Column::DeletedAt.is_null());
            }
            return Ok(q.all(c).await?);
        }
        let widened = HoldingFilter {
            groupall: filter.groupall || filter.holding_id.is_some(),
            ..filter.clone()
        };
        let scope = self.scope_of(env, &widened, false, !deleted).await?;
        Ok(holding::Entity::find()
            .filter(scope)
            .order_by(holding::Column::Id, sea_orm::Order::Asc)
            .all(c)
            .await?)
    }

    /// `catalog.del`: soft-deletes what the request selects, as far as the caller may.
    pub(super) async fn delete(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        paths: &[String],
        regex: bool,
        dry_run: bool,
    ) -> Result<DeletePlan> {
        if env.chunks > 0 {
            return self
                .delete_in_parts(env, filter, paths, regex, dry_run)
                .await;
        }
        check_selection(
            filter,
            paths,
            regex,
            "give the holding to delete (holding id, label or tags), or the paths to delete",
        )?;
        let now = Utc::now();
        let tid = env.transaction_id.to_string();
        let txn = self.db.begin().await?;
        // A retried delete (same transaction) answers with what it deleted the first time.
        if !dry_run && let Some(plan) = self.replay(&txn, &tid, &env.user, now).await? {
            txn.rollback().await?;
            return Ok(plan);
        }
        let holdings = self.candidates(&txn, env, filter, false).await?;
        let (allowed, refused): (Vec<_>, Vec<_>) = holdings
            .into_iter()
            .map(|h| {
                let verdict = may_delete(env, &h);
                (h, verdict)
            })
            .partition(|(_, v)| v.is_ok());
        let allowed: Vec<holding::Model> = allowed.into_iter().map(|(h, _)| h).collect();
        let refused: Vec<(holding::Model, String)> = refused
            .into_iter()
            .map(|(h, v)| (h, v.err().unwrap_or_default()))
            .collect();
        let named = filter.holding_id.is_some() || filter.label.is_some();
        if allowed.is_empty() && !refused.is_empty() && (paths.is_empty() || named) {
            let why: Vec<&str> = refused.iter().map(|(_, r)| r.as_str()).collect();
            return Err(forbidden(format!(
                "{} may not delete this: {}",
                env.user,
                why.join("; ")
            )));
        }
        let mut failed = Vec::new();
        let mut deleted_holdings = Vec::new();
        let mut files: Vec<(file::Model, &holding::Model)> = Vec::new();
        let by_id: HashMap<i64, &holding::Model> = allowed.iter().map(|h| (h.id, h)).collect();
        if paths.is_empty() {
            if allowed.is_empty() {
                return Err(ApiError::not_found(format!(
                    "no holding of {} matches{}",
                    env.user,
                    if filter.groupall {
                        format!(" in group {}", env.group)
                    } else {
                        String::new()
                    }
                ))
                .into());
            }
            for (h, why) in &refused {
                failed.push(FailedFile::new(
                    format!("holding {} ({})", h.id, h.label),
                    ErrorCode::Forbidden,
                    why.clone(),
                ));
            }
            let ids: Vec<i64> = allowed.iter().map(|h| h.id).collect();
            for chunk in ids.chunks(CHUNK) {
                for m in file::Entity::find()
                    .filter(file::Column::HoldingId.is_in(chunk.iter().copied()))
                    .filter(file::Column::DeletedAt.is_null())
                    .order_by(file::Column::Path, sea_orm::Order::Asc)
                    .all(&txn)
                    .await?
                {
                    if let Some(h) = by_id.get(&m.holding_id) {
                        files.push((m, h));
                    }
                }
            }
            deleted_holdings = allowed.iter().map(summary).collect();
            mark_holdings(&txn, &ids, Some((now, &env.user, &tid))).await?;
        } else {
            let all_ids: Vec<i64> = allowed
                .iter()
                .map(|h| h.id)
                .chain(refused.iter().map(|(h, _)| h.id))
                .collect();
            let (matched, unmatched) =
                select_files(&txn, &all_ids, paths, regex, false, &filter.versions).await?;
            let refused_by: HashMap<i64, &String> =
                refused.iter().map(|(h, r)| (h.id, r)).collect();
            for m in matched {
                if let Some(h) = by_id.get(&m.holding_id) {
                    files.push((m, h));
                } else if let Some(why) = refused_by.get(&m.holding_id) {
                    failed.push(FailedFile::new(
                        &m.path,
                        ErrorCode::Forbidden,
                        format!("{}: {why}", m.path),
                    ));
                }
            }
            for p in unmatched {
                failed.push(FailedFile::new(
                    &p,
                    ErrorCode::NotFound,
                    format!("{p} is in none of the holdings you can delete from"),
                ));
            }
        }
        let ids: Vec<i64> = files.iter().map(|(m, _)| m.id).collect();
        mark_files(&txn, &ids, Some((now, &env.user, &tid))).await?;
        let plan = DeletePlan {
            holdings: deleted_holdings,
            files_total: files.len() as u64,
            bytes_total: files.iter().map(|(m, _)| to_u64(m.size)).sum(),
            files: files.iter().map(|(m, h)| deleted_file(m, h)).collect(),
            failed,
            undelete_until: Some(now + self.delete.retention()),
            dry_run,
        };
        if dry_run {
            txn.rollback().await?;
        } else {
            self.commit_with(txn, recorded(env, filter, &plan)).await?;
            tracing::info!(transaction_id = %env.transaction_id, user = %env.user,
                role = %env.role, files = plan.files_total, holdings = plan.holdings.len(),
                refused = plan.failed.len(), "deleted (soft)");
        }
        Ok(plan)
    }

    /// The plan of a delete transaction that already ran, if it did.
    /// Only the caller's own deletions count: another user's transaction id never replays
    /// their delete under the caller's name.
    async fn replay(
        &self,
        c: &DatabaseTransaction,
        tid: &str,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DeletePlan>> {
        let holdings = holding::Entity::find()
            .filter(holding::Column::DeleteTransaction.eq(tid))
            .filter(holding::Column::DeletedBy.eq(user))
            .all(c)
            .await?;
        let files = file::Entity::find()
            .filter(file::Column::DeleteTransaction.eq(tid))
            .filter(file::Column::DeletedBy.eq(user))
            .order_by(file::Column::Path, sea_orm::Order::Asc)
            .all(c)
            .await?;
        if holdings.is_empty() && files.is_empty() {
            return Ok(None);
        }
        let ids = dedup(&files.iter().map(|f| f.holding_id).collect::<Vec<_>>());
        let owners: HashMap<i64, holding::Model> = holding::Entity::find()
            .filter(holding::Column::Id.is_in(ids))
            .all(c)
            .await?
            .into_iter()
            .map(|h| (h.id, h))
            .collect();
        let when = files
            .iter()
            .filter_map(|f| f.deleted_at)
            .chain(holdings.iter().filter_map(|h| h.deleted_at))
            .min()
            .unwrap_or(now);
        Ok(Some(DeletePlan {
            holdings: holdings.iter().map(summary).collect(),
            files_total: files.len() as u64,
            bytes_total: files.iter().map(|m| to_u64(m.size)).sum(),
            files: files
                .iter()
                .filter_map(|m| owners.get(&m.holding_id).map(|h| deleted_file(m, h)))
                .collect(),
            failed: Vec::new(),
            undelete_until: Some(when + self.delete.retention()),
            dry_run: false,
        }))
    }

    /// `catalog.undelete`: brings back deleted files (or holdings) within the retention period.
    pub(super) async fn undelete(
        &self,
        env: &Envelope,
        filter: &HoldingFilter,
        paths: &[String],
        regex: bool,
        dry_run: bool,
    ) -> Result<DeletePlan> {
        check_selection(
            filter,
            paths,
            regex,
            "give the holding to undelete (holding id, label or tags), or the paths",
        )?;
        let now = Utc::now();
        let cutoff = now - self.delete.retention();
        let txn = self.db.begin().await?;
        let holdings = self.candidates(&txn, env, filter, true).await?;
        let mut failed = Vec::new();
        let mut allowed = Vec::new();
        for h in holdings {
            match may_delete(env, &h) {
                Ok(()) => allowed.push(h),
                Err(why) if paths.is_empty() => failed.push(FailedFile::new(
                    format!("holding {} ({})", h.id, h.label),
                    ErrorCode::Forbidden,
                    why.replace("may delete", "may undelete"),
                )),
                Err(_) => {}
            }
        }
        let by_id: HashMap<i64, &holding::Model> = allowed.iter().map(|h| (h.id, h)).collect();
        let mut restore_holdings: Vec<&holding::Model> = Vec::new();
        let mut candidates: Vec<file::Model> = Vec::new();
        if paths.is_empty() {
            let deleted: Vec<&holding::Model> =
                allowed.iter().filter(|h| h.deleted_at.is_some()).collect();
            if deleted.is_empty() && failed.is_empty() {
                return Err(ApiError::not_found(format!(
                    "no deleted holding of {} matches",
                    env.user
                ))
                .into());
            }
            if deleted.is_empty() {
                let why: Vec<&str> = failed.iter().map(|f| f.reason.as_str()).collect();
                return Err(forbidden(why.join("; ")));
            }
            for h in deleted {
                restore_holdings.push(h);
                if let Some(t) = &h.delete_transaction {
                    candidates.extend(
                        file::Entity::find()
                            .filter(file::Column::HoldingId.eq(h.id))
                            .filter(file::Column::DeleteTransaction.eq(t.as_str()))
                            .order_by(file::Column::Path, sea_orm::Order::Asc)
                            .all(&txn)
                            .await?,
                    );
                }
            }
        } else {
            let ids: Vec<i64> = allowed.iter().map(|h| h.id).collect();
            let (matched, unmatched) =
                select_files(&txn, &ids, paths, regex, true, &VersionSelect::All).await?;
            for p in unmatched {
                failed.push(FailedFile::new(
                    &p,
                    ErrorCode::NotFound,
                    format!("{p} matches no deleted file you can undelete"),
                ));
            }
            let mut owners: HashSet<i64> = HashSet::new();
            for m in &matched {
                if let Some(h) = by_id.get(&m.holding_id)
                    && h.deleted_at.is_some()
                    && owners.insert(h.id)
                {
                    restore_holdings.push(h);
                }
            }
            candidates = matched;
        }
        // A holding past its retention, or whose label was taken again, stays deleted.
        let mut holding_ok: HashMap<i64, bool> = HashMap::new();
        let mut restored_holdings = Vec::new();
        for h in restore_holdings {
            let ok = if h.deleted_at.is_some_and(|t| t < cutoff) {
                failed.push(FailedFile::new(
                    format!("holding {} ({})", h.id, h.label),
                    ErrorCode::Conflict,
                    format!(
                        "holding {} ({:?}) was deleted more than {} ago: it is being purged",
                        h.id,
                        h.label,
                        humantime(self.delete.retention_secs)
                    ),
                ));
                false
            } else if let Some(other) = holding::Entity::find()
                .filter(holding::Column::User.eq(h.user.as_str()))
                .filter(holding::Column::Label.eq(h.label.as_str()))
                .filter(holding::Column::DeletedAt.is_null())
                .one(&txn)
                .await?
            {
                failed.push(FailedFile::new(
                    format!("holding {} ({})", h.id, h.label),
                    ErrorCode::Conflict,
                    format!(
                        "{} has a holding labelled {:?} again (id {}): relabel it first",
                        h.user, h.label, other.id
                    ),
                ));
                false
            } else {
                restored_holdings.push(summary(h));
                true
            };
            holding_ok.insert(h.id, ok);
        }
        let ok_ids: Vec<i64> = holding_ok
            .iter()
            .filter(|(_, ok)| **ok)
            .map(|(id, _)| *id)
            .collect();
        mark_holdings(&txn, &ok_ids, None).await?;
        let mut files = Vec::new();
        for m in candidates {
            let Some(h) = by_id.get(&m.holding_id) else {
                continue;
            };
            if holding_ok.get(&h.id) == Some(&false) {
                failed.push(FailedFile::new(
                    &m.path,
                    ErrorCode::Conflict,
                    format!("{}: holding {} stays deleted", m.path, h.id),
                ));
                continue;
            }
            if m.deleted_at.is_some_and(|t| t < cutoff) {
                failed.push(FailedFile::new(
                    &m.path,
                    ErrorCode::Conflict,
                    format!(
                        "{} was deleted more than {} ago: it is being purged",
                        m.path,
                        humantime(self.delete.retention_secs)
                    ),
                ));
                continue;
            }
            // Versions keep their numbers: only the same version live again is in the way.
            let again = file::Entity::find()
                .filter(file::Column::HoldingId.eq(m.holding_id))
                .filter(file::Column::Path.eq(m.path.as_str()))
                .filter(file::Column::Version.eq(m.version))
                .filter(file::Column::DeletedAt.is_null())
                .one(&txn)
                .await?;
            if again.is_some()
                || files.iter().any(|(f, _): &(file::Model, _)| {
                    f.holding_id == m.holding_id && f.path == m.path && f.version == m.version
                })
            {
                failed.push(FailedFile::new(
                    &m.path,
                    ErrorCode::Conflict,
                    format!(
                        "{} version {} is in holding {} again: it cannot be undeleted beside it",
                        m.path, m.version, h.id
                    ),
                ));
                continue;
            }
            files.push((m, *h));
        }
        let ids: Vec<i64> = files.iter().map(|(m, _)| m.id).collect();
        mark_files(&txn, &ids, None).await?;
        let plan = DeletePlan {
            holdings: restored_holdings,
            files_total: files.len() as u64,
            bytes_total: files.iter().map(|(m, _)| to_u64(m.size)).sum(),
            files: files.iter().map(|(m, h)| deleted_file(m, h)).collect(),
            failed,
            undelete_until: None,
            dry_run,
        };
        if dry_run {
            txn.rollback().await?;
        } else {
            txn.commit().await?;
            tracing::info!(transaction_id = %env.transaction_id, user = %env.user,
                files = plan.files_total, holdings = plan.holdings.len(), "undeleted");
        }
        Ok(plan)
    }
}

/// The monitor messages that record a committed delete: the transaction (under the holding it
/// acted on) and its end state, as [`nlds_core::workflow::next`] reports it after the
/// catalogue's delete step, with the files deleted and those refused or not found. Staged in the
/// outbox with the delete.
pub(crate) fn recorded(
    env: &Envelope,
    filter: &HoldingFilter,
    plan: &DeletePlan,
) -> Vec<(RoutingKey, Envelope)> {
    let (holding_id, label) = plan.transaction_holding(filter.holding_id, filter.label.clone());
    let mut out = vec![(
        RoutingKey::new(Worker::MonitorPut, Action::Init),
        env.reply(Payload::MonitorInit { label, holding_id }),
    )];
    let effects = nlds_core::workflow::next(
        Workflow::Delete,
        Step::CatalogDelete,
        nlds_core::workflow::delete_outcome(plan),
    )
    .unwrap_or_default();
    for effect in effects {
        if let Effect::Report(state) = effect {
            out.push((
                RoutingKey::new(Worker::MonitorPut, Action::Start),
                env.reply(Payload::MonitorUpdate {
                    state,
                    files: plan.files_total + plan.failed.len() as u64,
                    bytes: plan.bytes_total,
                    failed: plan.failed.clone(),
                    warnings: Vec::new(),
                    versions: 0,
                }),
            ));
        }
    }
    out
}

/// A delete or undelete must name holdings or paths (`missing` says so), and a regular
/// expression only searches named holdings.
fn check_selection(
    filter: &HoldingFilter,
    paths: &[String],
    regex: bool,
    missing: &str,
) -> Result<()> {
    if paths.is_empty() && !has_selector(filter) {
        return Err(bad_request(missing));
    }
    if regex && !has_selector(filter) {
        return Err(bad_request(
            "a regular expression can only search named holdings: \
             give a holding id, label, transaction id or tags",
        ));
    }
    Ok(())
}

/// Marks holdings deleted (`Some((when, by, transaction))`) or live again (`None`).
async fn mark_holdings(
    c: &DatabaseTransaction,
    ids: &[i64],
    mark: Option<(DateTime<Utc>, &str, &str)>,
) -> Result<()> {
    use holding::Column as H;
    mark_rows::<holding::Entity>(
        c,
        ids,
        mark,
        [H::DeletedAt, H::DeletedBy, H::DeleteTransaction, H::Id],
    )
    .await
}

/// Marks files deleted (`Some((when, by, transaction))`) or live again (`None`).
async fn mark_files(
    c: &DatabaseTransaction,
    ids: &[i64],
    mark: Option<(DateTime<Utc>, &str, &str)>,
) -> Result<()> {
    use file::Column as F;
    // Deleted files no longer count against their group's quota; undeleted ones count again.
    let before = super::usage::counted(c, ids).await?;
    mark_rows::<file::Entity>(
        c,
        ids,
        mark,
        [F::DeletedAt, F::DeletedBy, F::DeleteTransaction, F::Id],
    )
    .await?;
    super::usage::settle(c, ids, &before).await
}

/// Sets (or clears) the soft-delete columns `[deleted_at, deleted_by, delete_transaction]` of
/// the rows of `E` whose id column (the fourth) is in `ids`.
async fn mark_rows<E: EntityTrait>(
    c: &DatabaseTransaction,
    ids: &[i64],
    mark: Option<(DateTime<Utc>, &str, &str)>,
    [at_col, by_col, tx_col, id_col]: [E::Column; 4],
) -> Result<()> {
    let (at, by, t) = match mark {
        Some((at, by, t)) => (Some(at), Some(by.to_owned()), Some(t.to_owned())),
        None => (None, None, None),
    };
    for chunk in ids.chunks(CHUNK) {
        E::update_many()
            .col_expr(at_col, Expr::value(at))
            .col_expr(by_col, Expr::value(by.clone()))
            .col_expr(tx_col, Expr::value(t.clone()))
            .filter(id_col.is_in(chunk.iter().copied()))
            .exec(c)
            .await?;
    }
    Ok(())
}

/// The files of holdings `ids` that `paths` select (live ones, or with `deleted` deleted ones):
/// an exact path, everything under a directory path (unless the path names only plain files and
/// links), or with `regex` every path a pattern matches. Also the paths that select nothing.
async fn select_files(
    c: &DatabaseTransaction,
    ids: &[i64],
    paths: &[String],
    regex: bool,
    deleted: bool,
    versions: &VersionSelect,
) -> Result<(Vec<file::Model>, Vec<String>)> {
    if paths.iter().any(|p| p.trim().is_empty()) {
        return Err(bad_request("a path must not be empty"));
    }
    let state = if deleted {
        file::Column::DeletedAt.is_not_null()
    } else {
        file::Column::DeletedAt.is_null()
    };
    // Live files: the versions the delete selects (by default the newest of each path, so the
    // one before it becomes the newest; docs/DELETE.md).
    let base = || {
        let q = file::Entity::find()
            .filter(super::holding_file_in(ids))
            .filter(state.clone());
        if deleted {
            q
        } else {
            q.filter(super::versions::selected(versions))
        }
    };
    if ids.is_empty() {
        return Ok((Vec::new(), paths.to_vec()));
    }
    let mut matched: BTreeMap<i64, file::Model> = BTreeMap::new();
    let unmatched = if regex {
        let set = compile_set(paths).await?;
        let mut hit = vec![false; set.len()];
        let mut last = 0i64;
        loop {
            let page = base()
                .filter(file::Column::Id.gt(last))
                .order_by(file::Column::Id, sea_orm::Order::Asc)
                .limit(SCAN_PAGE)
                .all(c)
                .await?;
            let Some(l) = page.last() else { break };
            last = l.id;
            let n = page.len() as u64;
            for m in page {
                let matches = set.matches(&m.path);
                if matches.matched_any() {
                    for i in matches.iter() {
                        hit[i] = true;
                    }
                    matched.insert(m.id, m);
                }
            }
            if n < SCAN_PAGE {
                break;
            }
        }
        paths
            .iter()
            .zip(hit)
            .filter(|(_, h)| !h)
            .map(|(p, _)| p.clone())
            .collect()
    } else {
        select_by_path(c, base, paths, &mut matched).await?
    };
    Ok((in_path_order(matched), unmatched))
}

/// Adds to `matched` the files of `base()` (a query of the candidate files) that `paths` select:
/// a path's own files, looked up [`CHUNK`] paths at a time, and everything under it when it names
/// a directory or no file at all. Returns the paths that select nothing. A path given twice (`/a`
/// and `/a/`) finds its files twice, and they are kept once.
async fn select_by_path<F>(
    c: &DatabaseTransaction,
    base: F,
    paths: &[String],
    matched: &mut BTreeMap<i64, file::Model>,
) -> Result<Vec<String>>
where
    F: Fn() -> sea_orm::Select<file::Entity>,
{
    let norms: Vec<String> = paths.iter().map(|p| normalise(p)).collect();
    let mut exact: HashMap<String, Vec<file::Model>> = HashMap::new();
    for batch in norms.chunks(CHUNK) {
        for m in base()
            .filter(file::Column::Path.is_in(batch.iter().map(String::as_str)))
            .all(c)
            .await?
        {
            exact.entry(m.path.clone()).or_default().push(m);
        }
    }
    let mut unmatched = Vec::new();
    for (p, norm) in paths.iter().zip(&norms) {
        let hits = exact.get(norm).cloned().unwrap_or_default();
        let directory = hits.is_empty() || hits.iter().any(|m| m.kind == PathKind::Directory);
        let mut any = !hits.is_empty();
        for m in hits {
            matched.insert(m.id, m);
        }
        if directory {
            let (lo, hi) = prefix_range(norm);
            for m in base()
                .filter(file::Column::Path.gt(lo))
                .filter(file::Column::Path.lt(hi))
                .all(c)
                .await?
            {
                any = true;
                matched.insert(m.id, m);
            }
        }
        if !any {
            unmatched.push(p.clone());
        }
    }
    Ok(unmatched)
}

/// The files of `matched` by holding, then path.
fn in_path_order(matched: BTreeMap<i64, file::Model>) -> Vec<file::Model> {
    let mut files: Vec<file::Model> = matched.into_values().collect();
    files.sort_by(|a, b| (a.holding_id, &a.path).cmp(&(b.holding_id, &b.path)));
    files
}

/// `604800` → `7 days`.
fn humantime(secs: u64) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} day(s)", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{} hour(s)", s / 3600),
        s => format!("{s} second(s)"),
    }
}

#[cfg(test)]
mod tests;
