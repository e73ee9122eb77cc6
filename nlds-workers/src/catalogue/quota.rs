//! Quotas per group: limits (`quota`), reservations of running puts (`quota_reservation`) and
//! the RPCs `catalog.quota` and `catalog.quota-set`.
//!
//! A put is checked when it is accepted (`catalog.setup`) and batch by batch (`catalog-check`):
//!
//! 1. [`lock`] first, in the database transaction that accepts or checks: an `UPDATE` of the
//!    group's `quota` row, which locks it on PostgreSQL and takes SQLite's write lock before
//!    anything is read, so two puts of one group check one after the other.
//! 2. [`reserve`] (setup): usage + live reservations + the put's size hint must fit the warm
//!    bytes and file limits, else `quota_exceeded` and the whole acceptance rolls back; then the
//!    hint is reserved for the transaction. Without a hint, a group at or above a limit refuses.
//! 3. [`grow`] (each batch): what a batch needs beyond what is left of the reservation is
//!    added to it, under the same test; a batch that does not fit fails.
//! 4. [`settle`] (catalog-put): what was stored leaves the reservation as it enters the usage
//!    counters, in the same database transaction.
//!
//! A reservation is live while its transaction is not final (its monitor record in
//! `transaction_record`) and less than a day old; others are ignored and deleted when the group
//! is next checked.

use chrono::{Duration, Utc};
use nlds_core::error::ApiError;
use nlds_core::message::RpcReply;
use nlds_core::quota::{
    Amount, GroupQuota, QuotaLimits, QuotaReport, SetQuota, SizeHint, Usage, human_bytes,
    human_count,
};
use nlds_core::{Envelope, ErrorCode, State};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, Statement, TransactionTrait, Value,
};

use super::usage::{ALL, COLD, WARM};
use super::{Catalogue, Result, to_i64, to_u64};
use crate::db::{quota, quota_reservation, usage};

/// How long a reservation lives at most (a put that never reports its end).
const RESERVATION_TTL_HOURS: i64 = 24;

/// Locks `group`'s quota row for the rest of the database transaction (see the module docs) and
/// returns its limits, or `None` when the group has none.
pub(crate) async fn lock(c: &impl ConnectionTrait, group: &str) -> Result<Option<QuotaLimits>> {
    quota::Entity::update_many()
        .col_expr(quota::Column::Updated, Expr::col(quota::Column::Updated))
        .filter(quota::Column::Group.eq(group))
        .exec(c)
        .await?;
    Ok(quota::Entity::find_by_id(group.to_owned())
        .one(c)
        .await?
        .map(|q| limits(&q)))
}

fn limits(q: &quota::Model) -> QuotaLimits {
    QuotaLimits {
        warm_bytes: q.warm_bytes.map(to_u64),
        cold_bytes: q.cold_bytes.map(to_u64),
        files: q.files.map(to_u64),
    }
}

/// A group's warm usage, file count and live reservations, read in one statement (one snapshot,
/// so a put settling meanwhile is counted once, as reservation or as usage).
#[derive(Debug, Default, Clone, Copy, FromQueryResult)]
struct Standing {
    warm_bytes: i64,
    files: i64,
    reserved_bytes: i64,
    reserved_files: i64,
}

/// The states of a sub-record that will not change any more.
fn final_states() -> String {
    State::ALL
        .iter()
        .filter(|s| s.is_final() || s.is_failed())
        .map(|s| s.value().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// SQL true for a reservation `r` whose transaction ended: it has a non-split sub-record and
/// all its sub-records are final.
fn ended(r: &str) -> String {
    let done = final_states();
    let split = State::Split.value();
    format!(
        "EXISTS (SELECT 1 FROM transaction_record t WHERE t.transaction_id = {r}.transaction_id \
         AND EXISTS (SELECT 1 FROM sub_record s WHERE s.transaction_record_id = t.id AND s.state <> {split}) \
         AND NOT EXISTS (SELECT 1 FROM sub_record s WHERE s.transaction_record_id = t.id AND s.state NOT IN ({done})))"
    )
}

/// Placeholders in the backend's spelling, numbered from 1.
fn ph(b: DbBackend, n: usize) -> String {
    match b {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}

async fn standing(c: &impl ConnectionTrait, group: &str) -> Result<Standing> {
    let b = c.get_database_backend();
    let cutoff = Utc::now() - Duration::hours(RESERVATION_TTL_HOURS);
    let live = format!("NOT {}", ended("r"));
    let sql = format!(
        "SELECT \
         CAST((SELECT COALESCE(SUM(bytes), 0) FROM \"usage\" WHERE \"group\" = {p1} AND tier = '{WARM}') AS BIGINT) AS warm_bytes, \
         CAST((SELECT COALESCE(SUM(files), 0) FROM \"usage\" WHERE \"group\" = {p2} AND tier = '{ALL}') AS BIGINT) AS files, \
         CAST((SELECT COALESCE(SUM(r.warm_bytes), 0) FROM quota_reservation r WHERE r.\"group\" = {p3} AND r.created > {p4} AND {live}) AS BIGINT) AS reserved_bytes, \
         CAST((SELECT COALESCE(SUM(r.files), 0) FROM quota_reservation r WHERE r.\"group\" = {p5} AND r.created > {p6} AND {live}) AS BIGINT) AS reserved_files",
        p1 = ph(b, 1),
        p2 = ph(b, 2),
        p3 = ph(b, 3),
        p4 = ph(b, 4),
        p5 = ph(b, 5),
        p6 = ph(b, 6),
    );
    let values: Vec<Value> = vec![
        group.into(),
        group.into(),
        group.into(),
        cutoff.into(),
        group.into(),
        cutoff.into(),
    ];
    Ok(
        Standing::find_by_statement(Statement::from_sql_and_values(b, sql, values))
            .one(c)
            .await?
            .unwrap_or_default(),
    )
}

/// Deletes `group`'s reservations whose transaction ended or that are older than a day.
async fn sweep(c: &impl ConnectionTrait, group: &str) -> Result<()> {
    let b = c.get_database_backend();
    let cutoff = Utc::now() - Duration::hours(RESERVATION_TTL_HOURS);
    let sql = format!(
        "DELETE FROM quota_reservation WHERE \"group\" = {} AND (created < {} OR {})",
        ph(b, 1),
        ph(b, 2),
        ended("quota_reservation")
    );
    c.execute_raw(Statement::from_sql_and_values(
        b,
        sql,
        vec![group.into(), cutoff.into()],
    ))
    .await?;
    Ok(())
}

/// Would `extra` on top of `now` pass a limit? The refusal names the group, the limit, what is
/// used and reserved, the request and what to do.
fn refusal(
    group: &str,
    limits: &QuotaLimits,
    now: &Standing,
    extra: SizeHint,
    what: &str,
) -> Option<ApiError> {
    let fix = format!(
        "delete (and purge) data the group no longer needs, wait for running puts to finish, or \
         ask an operator to raise the quota (nlds admin quota set {group} ...)"
    );
    let used = to_u64(now.warm_bytes);
    let reserved = to_u64(now.reserved_bytes);
    if let Some(limit) = limits.warm_bytes {
        let total = used.saturating_add(reserved).saturating_add(extra.bytes);
        if total > limit || (extra == SizeHint::default() && used.saturating_add(reserved) >= limit)
        {
            return Some(ApiError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "group {group} would exceed its warm quota: {what} needs {}, and of the \
                     {} limit {} is used and {} reserved by running puts ({} free); {fix}",
                    human_bytes(extra.bytes),
                    human_bytes(limit),
                    human_bytes(used),
                    human_bytes(reserved),
                    human_bytes(limit.saturating_sub(used.saturating_add(reserved))),
                ),
            ));
        }
    }
    let used = to_u64(now.files);
    let reserved = to_u64(now.reserved_files);
    if let Some(limit) = limits.files {
        let total = used.saturating_add(reserved).saturating_add(extra.files);
        if total > limit || (extra == SizeHint::default() && used.saturating_add(reserved) >= limit)
        {
            return Some(ApiError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "group {group} would exceed its file quota: {what} needs {} files, and of the \
                     {} file limit {} are used and {} reserved by running puts; {fix}",
                    human_count(extra.files),
                    human_count(limit),
                    human_count(used),
                    human_count(reserved),
                ),
            ));
        }
    }
    None
}

/// At acceptance (after [`lock`]): refuses a put of `hint` (or, without one, into a group at or
/// above a limit) that does not fit `group`'s quota, else reserves `hint` for transaction `tid`.
/// A refusal is an error, so the database transaction rolls back and nothing is stored.
pub(crate) async fn reserve(
    c: &impl ConnectionTrait,
    group: &str,
    limits: Option<QuotaLimits>,
    tid: &str,
    hint: Option<SizeHint>,
) -> Result<()> {
    if let Some(limits) = limits {
        sweep(c, group).await?;
        let now = standing(c, group).await?;
        if let Some(e) = refusal(group, &limits, &now, hint.unwrap_or_default(), "this put") {
            return Err(e.into());
        }
    }
    let hint = hint.unwrap_or_default();
    quota_reservation::Entity::insert(quota_reservation::ActiveModel {
        transaction_id: Set(tid.to_owned()),
        group: Set(group.to_owned()),
        warm_bytes: Set(to_i64(hint.bytes)),
        files: Set(to_i64(hint.files)),
        checked_bytes: Set(0),
        checked_files: Set(0),
        created: Set(Utc::now()),
    })
    .on_conflict_do_nothing_on([quota_reservation::Column::TransactionId])
    .exec_without_returning(c)
    .await?;
    Ok(())
}

/// At `catalog-check` (after [`lock`]): makes room for a batch of `need` in transaction `tid`'s
/// reservation, growing it by what the batch needs beyond what is left of it. `Err` is the
/// refusal when that would pass a limit (nothing is changed).
pub(crate) async fn grow(
    c: &impl ConnectionTrait,
    group: &str,
    limits: &QuotaLimits,
    tid: &str,
    need: SizeHint,
) -> Result<std::result::Result<(), ApiError>> {
    let r = quota_reservation::Entity::find_by_id(tid.to_owned())
        .one(c)
        .await?;
    let (reserved_b, reserved_f, checked_b, checked_f) = r.as_ref().map_or((0, 0, 0, 0), |r| {
        (r.warm_bytes, r.files, r.checked_bytes, r.checked_files)
    });
    let free_b = to_u64(reserved_b - checked_b);
    let free_f = to_u64(reserved_f - checked_f);
    let extra = SizeHint {
        bytes: need.bytes.saturating_sub(free_b),
        files: need.files.saturating_sub(free_f),
    };
    if extra != SizeHint::default() {
        let now = standing(c, group).await?;
        if let Some(e) = refusal(group, limits, &now, extra, "this batch") {
            return Ok(Err(e));
        }
    }
    let row = quota_reservation::ActiveModel {
        transaction_id: Set(tid.to_owned()),
        group: Set(group.to_owned()),
        warm_bytes: Set(reserved_b + to_i64(extra.bytes)),
        files: Set(reserved_f + to_i64(extra.files)),
        checked_bytes: Set(checked_b + to_i64(need.bytes)),
        checked_files: Set(checked_f + to_i64(need.files)),
        created: Set(r.as_ref().map_or_else(Utc::now, |r| r.created)),
    };
    if r.is_some() {
        quota_reservation::Entity::update(row).exec(c).await?;
    } else {
        quota_reservation::Entity::insert(row)
            .exec_without_returning(c)
            .await?;
    }
    Ok(Ok(()))
}

/// At `catalog-put`: `stored` (warm bytes and files) leaves transaction `tid`'s reservation
/// (never below zero); the caller adds it to the usage counters in the same transaction.
pub(crate) async fn settle(c: &impl ConnectionTrait, tid: &str, stored: SizeHint) -> Result<()> {
    let b = to_i64(stored.bytes);
    let f = to_i64(stored.files);
    if b == 0 && f == 0 {
        return Ok(());
    }
    let less = |col: quota_reservation::Column, n: i64| {
        Expr::case(Expr::col(col).gt(n), Expr::col(col).sub(n)).finally(0)
    };
    use quota_reservation::Column as R;
    quota_reservation::Entity::update_many()
        .col_expr(R::WarmBytes, less(R::WarmBytes, b).into())
        .col_expr(R::Files, less(R::Files, f).into())
        .col_expr(R::CheckedBytes, less(R::CheckedBytes, b).into())
        .col_expr(R::CheckedFiles, less(R::CheckedFiles, f).into())
        .filter(R::TransactionId.eq(tid))
        .exec(c)
        .await?;
    Ok(())
}

impl Catalogue {
    /// `catalog.quota`: the quotas of `groups` (limits, usage, live reservations); `None`: every
    /// group with a limit or usage (the server lets only operators ask so).
    pub(super) async fn quota_show(&self, groups: Option<&[String]>) -> Result<RpcReply> {
        let names: Vec<String> = match groups {
            Some(g) => {
                let mut g = g.to_vec();
                g.sort();
                g.dedup();
                g
            }
            None => {
                let mut all: Vec<String> = quota::Entity::find()
                    .all(&self.db)
                    .await?
                    .into_iter()
                    .map(|q| q.group)
                    .chain(
                        usage::Entity::find()
                            .all(&self.db)
                            .await?
                            .into_iter()
                            .map(|u| u.group),
                    )
                    .collect();
                all.sort();
                all.dedup();
                all
            }
        };
        let mut out = Vec::with_capacity(names.len());
        for g in names {
            out.push(self.group_quota(&g).await?);
        }
        Ok(RpcReply::Quota(QuotaReport { groups: out }))
    }

    async fn group_quota(&self, group: &str) -> Result<GroupQuota> {
        let limits = quota::Entity::find_by_id(group.to_owned())
            .one(&self.db)
            .await?
            .map(|q| limits(&q))
            .unwrap_or_default();
        let rows = usage::Entity::find()
            .filter(usage::Column::Group.eq(group))
            .order_by_asc(usage::Column::Tier)
            .all(&self.db)
            .await?;
        let amount = |tier: &str| {
            rows.iter()
                .find(|u| u.tier == tier)
                .map_or_else(Amount::default, |u| Amount {
                    bytes: to_u64(u.bytes),
                    files: to_u64(u.files),
                })
        };
        let now = standing(&self.db, group).await?;
        Ok(GroupQuota {
            group: group.to_owned(),
            limits,
            usage: Usage {
                warm: amount(WARM),
                cold: amount(COLD),
                all: amount(ALL),
            },
            reserved: Amount {
                bytes: to_u64(now.reserved_bytes),
                files: to_u64(now.reserved_files),
            },
        })
    }

    /// `catalog.quota-set`: changes `group`'s limits; answers the group's quota after it.
    pub(super) async fn quota_set(
        &self,
        env: &Envelope,
        group: &str,
        change: &SetQuota,
    ) -> Result<RpcReply> {
        let group = group.trim();
        if group.is_empty() || group.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "a quota needs a group name (without control characters)",
            )
            .into());
        }
        if change.is_empty() {
            return Err(ApiError::bad_request(
                "give at least one limit to change (warm_bytes, cold_bytes, files; null clears one)",
            )
            .into());
        }
        for v in [change.warm_bytes, change.cold_bytes, change.files]
            .into_iter()
            .flatten()
            .flatten()
        {
            if i64::try_from(v).is_err() {
                return Err(ApiError::bad_request(format!(
                    "limit {v} is too large (at most {})",
                    i64::MAX
                ))
                .into());
            }
        }
        let txn = self.db.begin().await?;
        let old = lock(&txn, group).await?;
        let new = change.applied_to(old.unwrap_or_default());
        let row = quota::ActiveModel {
            group: Set(group.to_owned()),
            warm_bytes: Set(new.warm_bytes.map(to_i64)),
            cold_bytes: Set(new.cold_bytes.map(to_i64)),
            files: Set(new.files.map(to_i64)),
            updated: Set(Utc::now()),
        };
        if old.is_some() {
            quota::Entity::update(row).exec(&txn).await?;
        } else {
            quota::Entity::insert(row)
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        tracing::info!(group, user = %env.user, warm_bytes = ?new.warm_bytes,
            cold_bytes = ?new.cold_bytes, files = ?new.files, "quota set");
        Ok(RpcReply::Quota(QuotaReport {
            groups: vec![self.group_quota(group).await?],
        }))
    }
}
