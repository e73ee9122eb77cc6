//! Database helpers of the catalogue: the queries and writes its handlers share.

use nlds_core::api::{FileLocation, Tier};
use std::collections::HashMap;

use chrono::Utc;
use nlds_core::api::Tags;
use sea_orm::sea_query::{Expr, OnConflict, Order};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult,
    JoinType, QueryFilter, QueryOrder, QuerySelect, RelationTrait, Select, TryGetableMany,
    TryInsertResult,
};
use uuid::Uuid;

use super::{BLAKE3, Result, chunks_of, id_set};
use crate::db::{
    checksum, conflict, file, holding, internal, location, positional, tag, transaction,
};

/// Files of the holdings selected by `scope`.
pub(super) fn scoped_files(scope: &Condition) -> sea_orm::Select<file::Entity> {
    file::Entity::find()
        .join(JoinType::InnerJoin, file::Relation::Holding.def())
        .filter(scope.clone())
        .filter(file::Column::DeletedAt.is_null())
}

/// Files joined with their holding and transaction (reading `file`'s columns only).
pub(super) fn files_with_owners() -> sea_orm::Select<file::Entity> {
    file::Entity::find()
        .join(JoinType::InnerJoin, file::Relation::Holding.def())
        .join(JoinType::InnerJoin, file::Relation::Transaction.def())
}

/// Files of the holdings selected by `scope`, ordered by ingest time (then id).
pub(super) fn find_query(scope: Condition, order: Order) -> sea_orm::Select<file::Entity> {
    files_with_owners()
        .filter(scope)
        .filter(file::Column::DeletedAt.is_null())
        .order_by(transaction::Column::IngestTime, order.clone())
        .order_by(file::Column::Id, order)
}

/// `"file"."holding_id" IN (...)` with the ids inlined (integers only).
pub(super) fn holding_file_in(ids: &[i64]) -> Expr {
    if ids.is_empty() {
        return Expr::cust("1 = 0");
    }
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    Expr::cust(format!(r#""file"."holding_id" IN ({})"#, list.join(",")))
}

/// `ON CONFLICT (cols) WHERE deleted_at IS NULL`: the target of the unique indexes that hold
/// among live rows only (deleted rows keep their path or label until they are purged).
pub(super) fn live_conflict<C: sea_orm::sea_query::IntoIden + Copy>(
    cols: impl IntoIterator<Item = C>,
) -> OnConflict {
    OnConflict::columns(cols)
        .target_and_where(sea_orm::sea_query::ExprTrait::is_null(Expr::col(
            sea_orm::sea_query::Alias::new("deleted_at"),
        )))
        .do_nothing()
        .to_owned()
}

/// `"holding"."id" IN (...)` with the ids inlined (integers only), so any number of them fits.
pub(super) fn holding_id_in(ids: &[i64]) -> Expr {
    if ids.is_empty() {
        return Expr::cust("1 = 0");
    }
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    Expr::cust(format!(r#""holding"."id" IN ({})"#, list.join(",")))
}

/// Finds the user's holding labelled `label`, or creates it in `group`. Safe against concurrent
/// creation: the UNIQUE (user, label) index decides, and the loser reads the winner's row.
pub(super) async fn get_or_create_holding(
    c: &impl ConnectionTrait,
    user: &str,
    group: &str,
    label: &str,
) -> Result<holding::Model> {
    for _ in 0..3 {
        if let Some(h) = holding::Entity::find()
            .filter(holding::Column::User.eq(user))
            .filter(holding::Column::Label.eq(label))
            .filter(holding::Column::DeletedAt.is_null())
            .one(c)
            .await?
        {
            if h.group != group {
                return Err(conflict(format!(
                    "{user} already has a holding labelled {label:?} (id {}) in group {}",
                    h.id, h.group
                )));
            }
            return Ok(h);
        }
        let new = holding::ActiveModel {
            label: Set(label.to_owned()),
            user: Set(user.to_owned()),
            group: Set(group.to_owned()),
            created: Set(Utc::now()),
            ..Default::default()
        };
        let res = holding::Entity::insert(new)
            .on_conflict(live_conflict([
                holding::Column::User,
                holding::Column::Label,
            ]))
            .try_insert()
            .exec(c)
            .await?;
        if let TryInsertResult::Inserted(r) = res
            && let Some(h) = holding::Entity::find_by_id(r.last_insert_id).one(c).await?
        {
            return Ok(h);
        }
    }
    Err(internal(format!(
        "cannot create or find holding {label:?} of {user}"
    )))
}

/// The `transaction` row of `tid`, created in holding `h` if missing; a transaction of another
/// holding is a conflict.
pub(super) async fn ensure_transaction(
    c: &impl ConnectionTrait,
    tid: Uuid,
    h: i64,
) -> Result<transaction::Model> {
    let find = || {
        transaction::Entity::find().filter(transaction::Column::TransactionId.eq(tid.to_string()))
    };
    let t = match find().one(c).await? {
        Some(t) => t,
        None => {
            transaction::Entity::insert(transaction::ActiveModel {
                transaction_id: Set(tid.to_string()),
                holding_id: Set(h),
                ingest_time: Set(Utc::now()),
                ..Default::default()
            })
            .on_conflict_do_nothing_on([transaction::Column::TransactionId])
            .exec_without_returning(c)
            .await?;
            find()
                .one(c)
                .await?
                .ok_or_else(|| internal(format!("transaction {tid} cannot be read back")))?
        }
    };
    if t.holding_id != h {
        // Whose it is, and which holding, is not the caller's business.
        return Err(conflict(format!(
            "transaction id {tid} is already in use: choose another (or leave it out to have \
             one made)"
        )));
    }
    Ok(t)
}

/// Rows of a page's lookups by the id of their file, holding or transaction. Hashed with Fx, not
/// SipHash: the keys are the database's own ids, not values a caller chooses, so resistance to
/// chosen keys buys nothing, and SipHash took 4 % of a label page's instructions (BENCHMARKS.md).
pub(super) type ById<V> = HashMap<i64, V, rustc_hash::FxBuildHasher>;

/// An empty [`ById`] with room for `n` keys.
fn by_id<V>(n: usize) -> ById<V> {
    HashMap::with_capacity_and_hasher(n, rustc_hash::FxBuildHasher)
}

/// Each row of `select` (which reads `E`'s columns only) whose `col` is one of `ids`, decoded by
/// position and handed to `each`: one statement on PostgreSQL, one per [`CHUNK`](super::CHUNK)
/// ids on SQLite ([`id_set::parts`]).
async fn each_row_in<E>(
    c: &impl ConnectionTrait,
    select: Select<E>,
    col: E::Column,
    ids: &[i64],
    mut each: impl FnMut(E::Model),
) -> Result<()>
where
    E: EntityTrait,
    positional::ByPosition<E::Model>: FromQueryResult,
{
    let backend = c.get_database_backend();
    for part in id_set::parts(backend, ids) {
        let part = select.clone().filter(id_set::any_of(backend, col, part));
        positional::all(part, c)
            .await?
            .into_iter()
            .for_each(&mut each);
    }
    Ok(())
}

/// [`each_row_in`] for a `select` of chosen columns (`select_only`), each row read as the tuple
/// `T` (by position).
async fn each_tuple_in<E, T>(
    c: &impl ConnectionTrait,
    select: Select<E>,
    col: E::Column,
    ids: &[i64],
    mut each: impl FnMut(T),
) -> Result<()>
where
    E: EntityTrait,
    T: TryGetableMany,
{
    let backend = c.get_database_backend();
    for part in id_set::parts(backend, ids) {
        let part = select.clone().filter(id_set::any_of(backend, col, part));
        part.into_tuple::<T>()
            .all(c)
            .await?
            .into_iter()
            .for_each(&mut each);
    }
    Ok(())
}

/// The `holding` rows of `ids`, by id.
pub(super) async fn load_holdings(
    c: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<ById<holding::Model>> {
    let mut out = by_id(ids.len());
    each_row_in(c, holding::Entity::find(), holding::Column::Id, ids, |h| {
        out.insert(h.id, h);
    })
    .await?;
    Ok(out)
}

/// The `transaction` rows of `ids`, by id.
pub(super) async fn load_transactions(
    c: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<ById<transaction::Model>> {
    let mut out = by_id(ids.len());
    let select = transaction::Entity::find();
    each_row_in(c, select, transaction::Column::Id, ids, |t| {
        out.insert(t.id, t);
    })
    .await?;
    Ok(out)
}

/// The tags of the holdings `ids`, by holding id.
pub(super) async fn load_tags(c: &impl ConnectionTrait, ids: &[i64]) -> Result<HashMap<i64, Tags>> {
    let mut out: HashMap<i64, Tags> = HashMap::new();
    each_row_in(c, tag::Entity::find(), tag::Column::HoldingId, ids, |t| {
        out.entry(t.holding_id).or_default().insert(t.key, t.value);
    })
    .await?;
    Ok(out)
}

/// Locations and blake3 checksums of files, by file id (the two queries at once on a pool).
pub(super) async fn load_copies(
    c: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<(ById<Vec<location::Model>>, ById<String>)> {
    futures::try_join!(load_locations(c, ids), load_checksums(c, ids))
}

/// What a found file shows of its copies and checksum, by file id: each copy's tier, bucket and
/// key, and the blake3 checksum, with none of the other columns of their rows (a page of 1,000
/// files reads 2,000 rows here: their ids, times, tenancies and algorithm names were decoded
/// only to be dropped).
pub(super) async fn load_shown_copies(
    c: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<(ById<Vec<FileLocation>>, ById<String>)> {
    let locations = async {
        let mut out: ById<Vec<FileLocation>> = by_id(ids.len());
        let select = location::Entity::find()
            .select_only()
            .column(location::Column::FileId)
            .column(location::Column::Tier)
            .column(location::Column::Bucket)
            .column(location::Column::Key);
        each_tuple_in(
            c,
            select,
            location::Column::FileId,
            ids,
            |(f, tier, bucket, key)| {
                let l = FileLocation { tier, bucket, key };
                out.entry(f).or_default().push(l);
            },
        )
        .await?;
        Ok(out)
    };
    let checksums = async {
        let mut out = by_id(ids.len());
        let select = checksum::Entity::find()
            .select_only()
            .column(checksum::Column::FileId)
            .column(checksum::Column::Value)
            .filter(checksum::Column::Algorithm.eq(BLAKE3));
        each_tuple_in(c, select, checksum::Column::FileId, ids, |(f, value)| {
            out.insert(f, value);
        })
        .await?;
        Ok(out)
    };
    futures::try_join!(locations, checksums)
}

async fn load_locations(
    c: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<ById<Vec<location::Model>>> {
    let mut out: ById<Vec<location::Model>> = by_id(ids.len());
    let select = location::Entity::find();
    each_row_in(c, select, location::Column::FileId, ids, |l| {
        out.entry(l.file_id).or_default().push(l);
    })
    .await?;
    Ok(out)
}

async fn load_checksums(c: &impl ConnectionTrait, ids: &[i64]) -> Result<ById<String>> {
    let mut out = by_id(ids.len());
    let select = checksum::Entity::find().filter(checksum::Column::Algorithm.eq(BLAKE3));
    each_row_in(c, select, checksum::Column::FileId, ids, |s| {
        out.insert(s.file_id, s.value);
    })
    .await?;
    Ok(out)
}

/// Records copies; a file's existing copy on the same tier is kept (idempotent).
pub(super) async fn add_locations(
    c: &impl ConnectionTrait,
    rows: Vec<location::ActiveModel>,
) -> Result<()> {
    for chunk in chunks_of(rows) {
        location::Entity::insert_many(chunk)
            .on_conflict_do_nothing_on([location::Column::FileId, location::Column::Tier])
            .exec_without_returning(c)
            .await?;
    }
    Ok(())
}

/// A copy of file `file_id` on `tier`, at `bucket`/`key`.
pub(super) fn location_row(
    file_id: i64,
    tier: Tier,
    bucket: &str,
    key: &str,
) -> location::ActiveModel {
    location::ActiveModel {
        file_id: Set(file_id),
        tier: Set(tier),
        bucket: Set(bucket.to_owned()),
        key: Set(key.to_owned()),
        created: Set(Utc::now()),
        ..Default::default()
    }
}
