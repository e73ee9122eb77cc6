//! Access tracking and pins, in batches: the last access and access count of files (and their
//! holdings), and the pins that keep files warm for a requester (`get:<transaction id>`,
//! `stage:<request id>`) until a time. One statement per chunk of ids, never one per file.
//! A leaf module: handlers of any catalogue module call it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use uuid::Uuid;

use super::CHUNK;
use crate::db::{file, holding, pin};

/// Records an access at `now` to each of `file_ids` (count + 1) and to their holdings.
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
        holding::Entity::update_many()
            .col_expr(holding::Column::LastAccess, Expr::value(now))
            .filter(
                holding::Column::Id.in_subquery(
                    Query::select()
                        .distinct()
                        .column(file::Column::HoldingId)
                        .from(file::Entity)
                        .and_where(file::Column::Id.is_in(chunk.iter().copied()))
                        .to_owned(),
                ),
            )
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Pins `file_ids` warm for `requester` until `until` (a longer existing pin of the same
/// requester stays).
pub(crate) async fn pin(
    conn: &impl ConnectionTrait,
    file_ids: &[i64],
    requester: &str,
    until: DateTime<Utc>,
) -> Result<(), DbErr> {
    let now = Utc::now();
    for chunk in file_ids.chunks(CHUNK) {
        let rows = chunk.iter().map(|id| pin::ActiveModel {
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
                        Expr::case(
                            Expr::col((pin::Entity, pin::Column::Until)).gt(until),
                            Expr::col((pin::Entity, pin::Column::Until)),
                        )
                        .finally(Expr::value(until)),
                    )
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Drops `requester`'s pins (of `file_ids` only, if given); returns how many were dropped.
/// Other requesters' pins of the same files stay.
pub(crate) async fn unpin(
    conn: &impl ConnectionTrait,
    requester: &str,
    file_ids: Option<&[i64]>,
) -> Result<u64, DbErr> {
    let Some(ids) = file_ids else {
        return Ok(pin::Entity::delete_many()
            .filter(pin::Column::Requester.eq(requester))
            .exec(conn)
            .await?
            .rows_affected);
    };
    let mut n = 0;
    for chunk in ids.chunks(CHUNK) {
        n += pin::Entity::delete_many()
            .filter(pin::Column::Requester.eq(requester))
            .filter(pin::Column::FileId.is_in(chunk.iter().copied()))
            .exec(conn)
            .await?
            .rows_affected;
    }
    Ok(n)
}

/// The files of `file_ids` with a live pin (any requester's, until after `now`).
pub(crate) async fn pinned(
    conn: &impl ConnectionTrait,
    file_ids: &[i64],
    now: DateTime<Utc>,
) -> Result<HashSet<i64>, DbErr> {
    let mut out = HashSet::new();
    for chunk in file_ids.chunks(CHUNK) {
        out.extend(
            pin::Entity::find()
                .filter(pin::Column::FileId.is_in(chunk.iter().copied()))
                .filter(pin::Column::Until.gt(now))
                .all(conn)
                .await?
                .into_iter()
                .map(|p| p.file_id),
        );
    }
    Ok(out)
}

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
