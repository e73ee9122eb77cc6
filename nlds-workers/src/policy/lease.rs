//! The runner's lease: the `policy_lease` row named `policy`. Whoever holds it (and renews it
//! before `until`) is the one active runner; the row also carries the circuit breaker.
//!
//! Taking it is one statement whichever way it goes, so two runners racing never both win: an
//! `INSERT ... ON CONFLICT DO NOTHING` when there is no row yet, else an `UPDATE ... WHERE until
//! < now OR holder = me` (on PostgreSQL the second of two concurrent updates re-checks its `WHERE`
//! on the row the first committed, and matches nothing).

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::Expr,
};

use super::RunnerError;
use crate::db::policy_lease;

/// The lease row's name.
pub const NAME: &str = "policy";

/// The lease row, if any.
pub async fn read<C: ConnectionTrait>(db: &C) -> Result<Option<policy_lease::Model>, DbErr> {
    policy_lease::Entity::find_by_id(NAME.to_owned())
        .one(db)
        .await
}

/// Takes (or renews) the lease for `holder` until `now + secs`, or says who holds it.
pub async fn acquire<C: ConnectionTrait>(
    db: &C,
    holder: &str,
    secs: u64,
) -> Result<DateTime<Utc>, RunnerError> {
    if let Some(until) = take(db, NAME, holder, secs).await? {
        return Ok(until);
    }
    match read(db).await? {
        Some(l) => Err(RunnerError::LeaseHeld {
            holder: l.holder,
            until: l.until,
        }),
        // Removed between the two statements: try once more from the start.
        None => Box::pin(acquire(db, holder, secs)).await,
    }
}

/// Takes (or renews) the lease row `name` for `holder` until `now + secs`; `None` if another
/// holder has it. Other single-runner tasks (the scheduled storage scrub) lease rows of their own
/// name in the same table.
pub async fn take<C: ConnectionTrait>(
    db: &C,
    name: &str,
    holder: &str,
    secs: u64,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let now = Utc::now();
    let until = now + Duration::seconds(secs.max(1) as i64);
    let inserted = policy_lease::Entity::insert(policy_lease::ActiveModel {
        name: Set(name.into()),
        holder: Set(holder.into()),
        until: Set(until),
        breaker_reason: Set(None),
        breaker_since: Set(None),
    })
    .on_conflict(
        OnConflict::column(policy_lease::Column::Name)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    if inserted == 1 {
        return Ok(Some(until));
    }
    let updated = policy_lease::Entity::update_many()
        .col_expr(policy_lease::Column::Holder, Expr::value(holder))
        .col_expr(policy_lease::Column::Until, Expr::value(until))
        .filter(policy_lease::Column::Name.eq(name))
        .filter(
            Condition::any()
                .add(policy_lease::Column::Until.lt(now))
                .add(policy_lease::Column::Holder.eq(holder)),
        )
        .exec(db)
        .await?;
    Ok((updated.rows_affected == 1).then_some(until))
}

/// Extends the lease `holder` holds; `false` if it no longer holds it (it expired and another
/// runner took it).
pub async fn renew<C: ConnectionTrait>(db: &C, holder: &str, secs: u64) -> Result<bool, DbErr> {
    let until = Utc::now() + Duration::seconds(secs.max(1) as i64);
    let r = policy_lease::Entity::update_many()
        .col_expr(policy_lease::Column::Until, Expr::value(until))
        .filter(policy_lease::Column::Name.eq(NAME))
        .filter(policy_lease::Column::Holder.eq(holder))
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

/// Gives the lease up (it expires now), if `holder` holds it.
pub async fn release<C: ConnectionTrait>(db: &C, holder: &str) -> Result<(), DbErr> {
    give_up(db, NAME, holder).await
}

/// Gives the lease row `name` up (it expires now), if `holder` holds it.
pub async fn give_up<C: ConnectionTrait>(db: &C, name: &str, holder: &str) -> Result<(), DbErr> {
    policy_lease::Entity::update_many()
        .col_expr(policy_lease::Column::Until, Expr::value(Utc::now()))
        .filter(policy_lease::Column::Name.eq(name))
        .filter(policy_lease::Column::Holder.eq(holder))
        .exec(db)
        .await?;
    Ok(())
}

/// The open breaker's reason and since when, if it is open.
pub async fn breaker<C: ConnectionTrait>(db: &C) -> Result<Option<(String, DateTime<Utc>)>, DbErr> {
    Ok(read(db)
        .await?
        .and_then(|l| match (l.breaker_reason, l.breaker_since) {
            (Some(r), Some(s)) => Some((r, s)),
            (Some(r), None) => Some((r, Utc::now())),
            _ => None,
        }))
}

/// Opens the breaker with `reason` (the lease row exists: the pass that opens it holds it).
pub async fn open_breaker<C: ConnectionTrait>(db: &C, reason: &str) -> Result<(), DbErr> {
    policy_lease::Entity::update_many()
        .col_expr(policy_lease::Column::BreakerReason, Expr::value(reason))
        .col_expr(policy_lease::Column::BreakerSince, Expr::value(Utc::now()))
        .filter(policy_lease::Column::Name.eq(NAME))
        .exec(db)
        .await?;
    Ok(())
}

/// Closes the breaker.
pub async fn close_breaker<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    policy_lease::Entity::update_many()
        .col_expr(
            policy_lease::Column::BreakerReason,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            policy_lease::Column::BreakerSince,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(policy_lease::Column::Name.eq(NAME))
        .exec(db)
        .await?;
    Ok(())
}
