//! Access tracking and pins: when a get, recall or stage last touched a file (and how often), and
//! which requesters keep a file warm until when.
//!
//! Every function here works on any number of files with a bounded number of statements: ids go
//! in chunks of [`CHUNK`], one statement (two for [`record`]) per chunk, never one per file. They
//! take any connection, so a caller can run them inside its own database transaction.
//!
//! * [`record`]: a get or stage resolved these files (`file.last_access`, `file.access_count`,
//!   and `holding.last_access` of their holdings);
//! * [`touch`]: these files became warm again (a recall restored them): the last access moves,
//!   the count does not (the get or stage that asked for them already counted);
//! * [`pin`], [`unpin`], [`pinned`]: one `pin` row per (file, requester), so one requester's
//!   release never drops another's pin. Requesters are `get:<transaction id>` and
//!   `stage:<request id>` ([`get_requester`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
};
use uuid::Uuid;

use crate::db::{file, holding, pin};

/// Ids per statement: far below the bind-parameter limits of SQLite and PostgreSQL.
pub(crate) const CHUNK: usize = 500;

/// The requester of the pins a get's transaction holds.
pub(crate) fn get_requester(transaction_id: Uuid) -> String {
    format!("get:{transaction_id}")
}

/// Those of `file_ids` that `requester` holds no pin on (in their order). One statement per
/// [`CHUNK`] ids.
pub(crate) async fn not_pinned_by(
    conn: &impl ConnectionTrait,
    file_ids: &[i64],
    requester: &str,
) -> Result<Vec<i64>, DbErr> {
    let mut pinned = HashSet::new();
    for chunk in file_ids.chunks(CHUNK) {
        let ids: Vec<i64> = pin::Entity::find()
            .select_only()
            .column(pin::Column::FileId)
            .filter(pin::Column::Requester.eq(requester))
            .filter(pin::Column::FileId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(conn)
            .await?;
        pinned.extend(ids);
    }
    Ok(file_ids
        .iter()
        .copied()
        .filter(|id| !pinned.contains(id))
        .collect())
}

/// Records an access of `file_ids` at `now`: their last access becomes `now` and their access
/// count grows by one, and their holdings' last access becomes `now`. Two statements per
/// [`CHUNK`] ids.
pub(crate) async fn record(
    conn: &impl ConnectionTrait,
    file_ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for chunk in file_ids.chunks(CHUNK) {
        file::Entity::update_many()
            .col_expr(file::Column::LastAccess, Expr::value(now))
            .col_expr(
                file::Column::AccessCount,
                Expr::col(file::Column::AccessCount).add(1),
            )
            .filter(file::Column::Id.is_in(chunk.iter().copied()))
            .exec(conn)
            .await?;
        touch_holdings(conn, chunk, now).await?;
    }
    Ok(())
}

/// Moves the last access of `file_ids` (and of their holdings) to `now` without counting an
/// access: for files a recall restored, whose get or stage counted when it asked for them, so
/// that a file just made warm is not the least recently accessed one. Two statements per
/// [`CHUNK`] ids.
pub(crate) async fn touch(
    conn: &impl ConnectionTrait,
    file_ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for chunk in file_ids.chunks(CHUNK) {
        file::Entity::update_many()
            .col_expr(file::Column::LastAccess, Expr::value(now))
            .filter(file::Column::Id.is_in(chunk.iter().copied()))
            .exec(conn)
            .await?;
        touch_holdings(conn, chunk, now).await?;
    }
    Ok(())
}

/// `UPDATE holding SET last_access = now WHERE id IN (SELECT DISTINCT holding_id FROM file
/// WHERE id IN (chunk))`.
async fn touch_holdings(
    conn: &impl ConnectionTrait,
    chunk: &[i64],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let holdings = Query::select()
        .distinct()
        .column(file::Column::HoldingId)
        .from(file::Entity)
        .and_where(file::Column::Id.is_in(chunk.iter().copied()))
        .to_owned();
    holding::Entity::update_many()
        .col_expr(holding::Column::LastAccess, Expr::value(now))
        .filter(holding::Column::Id.in_subquery(holdings))
        .exec(conn)
        .await?;
    Ok(())
}

/// Pins `file_ids` warm for `requester` until `until`; a pin the requester already holds on a
/// file is extended to `until`, never shortened. One statement per [`CHUNK`] ids.
pub(crate) async fn pin(
    conn: &impl ConnectionTrait,
    file_ids: &[i64],
    requester: &str,
    until: DateTime<Utc>,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let excluded = || Expr::col((Alias::new("excluded"), pin::Column::Until));
    let existing = || Expr::col((pin::Entity, pin::Column::Until));
    for chunk in file_ids.chunks(CHUNK) {
        // The same file twice in one statement would hit its own conflict on PostgreSQL.
        let mut seen = HashSet::new();
        let rows = chunk
            .iter()
            .filter(|id| seen.insert(**id))
            .map(|id| pin::ActiveModel {
                file_id: Set(*id),
                requester: Set(requester.to_owned()),
                until: Set(until),
                created: Set(now),
                ..Default::default()
            });
        pin::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([pin::Column::FileId, pin::Column::Requester])
                    .value(
                        pin::Column::Until,
                        Expr::case(excluded().gt(existing()), excluded()).finally(existing()),
                    )
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Drops `requester`'s pins: all of them, or those on `file_ids`. Returns how many it dropped.
/// Other requesters' pins on the same files stay.
#[allow(
    dead_code,
    reason = "for stage requests (release, cancel) and the policy runner's eviction guard"
)]
pub(crate) async fn unpin(
    conn: &impl ConnectionTrait,
    requester: &str,
    file_ids: Option<&[i64]>,
) -> Result<u64, DbErr> {
    let by_requester = || pin::Entity::delete_many().filter(pin::Column::Requester.eq(requester));
    let Some(ids) = file_ids else {
        return Ok(by_requester().exec(conn).await?.rows_affected);
    };
    let mut dropped = 0;
    for chunk in ids.chunks(CHUNK) {
        dropped += by_requester()
            .filter(pin::Column::FileId.is_in(chunk.iter().copied()))
            .exec(conn)
            .await?
            .rows_affected;
    }
    Ok(dropped)
}

/// Which of `file_ids` some requester keeps warm after `now` (a pin whose `until` is later). One
/// query per [`CHUNK`] ids.
#[allow(
    dead_code,
    reason = "for stage requests (release, cancel) and the policy runner's eviction guard"
)]
pub(crate) async fn pinned(
    conn: &impl ConnectionTrait,
    file_ids: &[i64],
    now: DateTime<Utc>,
) -> Result<HashSet<i64>, DbErr> {
    let mut out = HashSet::new();
    for chunk in file_ids.chunks(CHUNK) {
        let ids: Vec<i64> = pin::Entity::find()
            .select_only()
            .column(pin::Column::FileId)
            .distinct()
            .filter(pin::Column::FileId.is_in(chunk.iter().copied()))
            .filter(pin::Column::Until.gt(now))
            .into_tuple()
            .all(conn)
            .await?;
        out.extend(ids);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

/// The requester of a stage request's pins, and the waiter name of its recalls.
pub(crate) fn stage_requester(request_id: Uuid) -> String {
    format!("stage:{request_id}")
}

/// The stage request a recall waiter (or pin requester) names, if it is a stage's.
pub(crate) fn stage_waiter(waiter: &str) -> Option<Uuid> {
    waiter
        .strip_prefix("stage:")
        .and_then(|id| Uuid::parse_str(id).ok())
}
