//! The catalogue's side of the audit, read in keyset pages (one query per page, never the
//! whole table): warm locations of one bucket in the order S3 lists keys (bytewise), and
//! aggregations by id.

use nlds_core::api::Tier;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, Value,
};

use crate::db::{aggregation, aggregation_member, checksum, location};

/// Rows per page.
pub(super) const PAGE: u64 = 1000;

/// The prefix every warm object lives under.
pub(super) const TX_PREFIX: &str = "tx/";
/// The first key after every key under [`TX_PREFIX`] (`'/' + 1 == '0'`).
const TX_END: &str = "tx0";

/// A warm location with the file it is a copy of.
#[derive(Debug, Clone)]
pub(super) struct WarmRow {
    pub location_id: i64,
    pub key: String,
    pub file_id: i64,
    pub path: String,
    pub size: i64,
}

/// The warm locations of `bucket` under tenancy `tenancy` (`None`: the default store) whose key
/// is under `tx/`, after `after` (key, location id), ordered by key bytewise (PostgreSQL
/// compares with the `C` collation, as S3 lists) and id.
pub(super) async fn warm_page(
    db: &DatabaseConnection,
    bucket: &str,
    tenancy: Option<&str>,
    after: Option<(&str, i64)>,
) -> Result<Vec<WarmRow>, DbErr> {
    let backend = db.get_database_backend();
    let pg = backend == DbBackend::Postgres;
    let key = if pg {
        r#"l."key" COLLATE "C""#
    } else {
        r#"l."key""#
    };
    let mut values: Vec<Value> = Vec::new();
    let mut bind = |v: Value| {
        values.push(v);
        if pg {
            format!("${}", values.len())
        } else {
            "?".to_owned()
        }
    };
    let mut sql = format!(
        r#"SELECT l.id, l."key", f.id, f.path, f."size" FROM location l JOIN file f ON f.id = l.file_id
           WHERE l.tier = {} AND l.bucket = {} AND {key} >= {} AND {key} < {} AND "#,
        bind(Tier::Warm.to_string().into()),
        bind(bucket.into()),
        bind(TX_PREFIX.into()),
        bind(TX_END.into()),
    );
    match tenancy {
        Some(t) => sql += &format!("l.tenancy = {} ", bind(t.into())),
        None => sql += "l.tenancy IS NULL ",
    }
    if let Some((k, id)) = after {
        let (a, b, c) = (bind(k.into()), bind(k.into()), bind(id.into()));
        sql += &format!(r#"AND ({key} > {a} OR (l."key" = {b} AND l.id > {c})) "#);
    }
    sql += &format!("ORDER BY {key}, l.id LIMIT {PAGE}");
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok(WarmRow {
                location_id: r.try_get_by_index(0)?,
                key: r.try_get_by_index(1)?,
                file_id: r.try_get_by_index(2)?,
                path: r.try_get_by_index(3)?,
                size: r.try_get_by_index(4)?,
            })
        })
        .collect()
}

/// Aggregations with an id above `after`, by id.
pub(super) async fn aggregation_page(
    db: &DatabaseConnection,
    after: i64,
) -> Result<Vec<aggregation::Model>, DbErr> {
    aggregation::Entity::find()
        .filter(aggregation::Column::Id.gt(after))
        .order_by_asc(aggregation::Column::Id)
        .limit(PAGE)
        .all(db)
        .await
}

/// The catalogue's blake3 of a file, if it has one.
pub(super) async fn blake3_of(
    db: &impl ConnectionTrait,
    file_id: i64,
) -> Result<Option<String>, DbErr> {
    Ok(checksum::Entity::find()
        .filter(checksum::Column::FileId.eq(file_id))
        .filter(checksum::Column::Algorithm.eq(BLAKE3))
        .one(db)
        .await?
        .map(|c| c.value))
}

/// The checksum algorithm name the catalogue stores blake3 under.
pub(super) const BLAKE3: &str = "blake3";

/// A file's copy in a stored aggregation: the aggregation and where the member's data starts.
pub(super) async fn cold_copy(
    db: &impl ConnectionTrait,
    file_id: i64,
) -> Result<Option<(aggregation::Model, i64)>, DbErr> {
    let Some(loc) = location::Entity::find()
        .filter(location::Column::FileId.eq(file_id))
        .filter(location::Column::Tier.eq(Tier::Cold))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let Some(agg) = aggregation::Entity::find()
        .filter(aggregation::Column::Name.eq(loc.key))
        .filter(aggregation::Column::State.eq(aggregation::State::Stored))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let member = aggregation_member::Entity::find()
        .filter(aggregation_member::Column::AggregationId.eq(agg.id))
        .filter(aggregation_member::Column::FileId.eq(file_id))
        .one(db)
        .await?;
    Ok(member.map(|m| (agg, m.data_offset)))
}
