//! Rows of `file`, `location`, `checksum`, `holding`, `transaction`, `tag` and `holding_stat`
//! decoded by column position.
//!
//! sea-orm's derived decoder finds each column of each row by a name it formats anew
//! (`format!("{prefix}{column}")`), then searches the row's columns for it. For a page of 1,000
//! files with their copies and checksums, that was about a fifth of the catalogue's CPU time
//! (BENCHMARKS.md, "Rows decoded by position"); for a list of 100 holdings with their
//! transactions, tags and counts, the holdings alone took 15 %. A `Select<E>` that adds no column of its own
//! reads `E::Column::iter()` in order, the order of `Model`'s fields, so [`ByPosition`] reads
//! the row's columns in that order instead. Use it only on such a select ([`all`]); the
//! tests below hold it equal to the derived decoder on SQLite and PostgreSQL.

use sea_orm::{
    ConnectionTrait, DbErr, EntityTrait, FromQueryResult, IdenStatic, Iterable, QueryResult,
    Select, TryGetable,
};

use super::{checksum, file, holding, holding_stat, location, tag, transaction};

/// A model read by column position (see the module's documentation).
#[derive(Debug, PartialEq, Eq)]
pub struct ByPosition<M>(pub M);

/// The rows of `select`, which reads `E`'s columns only, decoded by position.
pub async fn all<E>(select: Select<E>, c: &impl ConnectionTrait) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    ByPosition<E::Model>: FromQueryResult,
{
    let rows = select.into_model::<ByPosition<E::Model>>().all(c).await?;
    Ok(rows.into_iter().map(|ByPosition(m)| m).collect())
}

/// Reads the columns of `E` one after the other: `next()` is the next column's value, and an
/// error names the table and the column, as the derived decoder's does, with the value that did
/// not decode.
struct Columns<'a, E> {
    res: &'a QueryResult,
    i: usize,
    entity: std::marker::PhantomData<E>,
}

impl<'a, E: EntityTrait> Columns<'a, E> {
    fn of(res: &'a QueryResult) -> Self {
        Self {
            res,
            i: 0,
            entity: std::marker::PhantomData,
        }
    }

    fn next<T: TryGetable>(&mut self) -> Result<T, DbErr> {
        let i = self.i;
        self.i += 1;
        self.res.try_get_by_index(i).map_err(|e| {
            let column = E::Column::iter().nth(i).map_or("?", |c| c.as_str());
            DbErr::Type(format!(
                "{}.{column} (column {i}): {e}",
                E::default().table_name()
            ))
        })
    }
}

/// `FromQueryResult` for `ByPosition<$table::Model>`, its fields listed in the model's
/// declaration order (a struct expression evaluates its fields in the order written).
macro_rules! by_position {
    ($table:ident { $($field:ident),+ $(,)? }) => {
        impl FromQueryResult for ByPosition<$table::Model> {
            fn from_query_result(res: &QueryResult, _prefix: &str) -> Result<Self, DbErr> {
                let mut c = Columns::<$table::Entity>::of(res);
                Ok(Self($table::Model { $($field: c.next()?),+ }))
            }
        }
    };
}

by_position!(file {
    id,
    holding_id,
    transaction_id,
    path,
    kind,
    link_target,
    size,
    uid,
    gid,
    mode,
    mtime_ns,
    version,
    deleted_at,
    deleted_by,
    delete_transaction,
    last_access,
    access_count,
    xattrs,
});

by_position!(location {
    id,
    file_id,
    tier,
    bucket,
    key,
    created,
    tenancy,
});

by_position!(checksum {
    id,
    file_id,
    algorithm,
    value,
});

by_position!(holding {
    id,
    label,
    user,
    group,
    created,
    deleted_at,
    deleted_by,
    delete_transaction,
    last_access,
});

by_position!(transaction {
    id,
    transaction_id,
    holding_id,
    ingest_time,
});

by_position!(tag {
    id,
    holding_id,
    key,
    value,
});

by_position!(holding_stat {
    holding_id,
    files,
    bytes,
    warm_files,
    cold_files,
    paths,
});

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use sea_orm::{
        ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
        QuerySelect,
    };

    use super::*;
    use crate::db::testing;

    /// Rows whose columns all differ, NULLs and non-NULLs both, read by name and by position.
    async fn same_as_derived(db: &DatabaseConnection) {
        let (h, ids) = testing::holding_with(db, "positional", &[7, 9]).await;
        let t = Utc.with_ymd_and_hms(2026, 12, 7, 13, 14, 15).unwrap();
        file::Entity::update_many()
            .col_expr(file::Column::LinkTarget, "/target".into())
            .col_expr(file::Column::DeletedBy, "someone".into())
            .col_expr(file::Column::DeleteTransaction, "tx-9".into())
            .col_expr(file::Column::LastAccess, t.into())
            .col_expr(file::Column::AccessCount, 11.into())
            .col_expr(file::Column::Xattrs, "[]".into())
            .col_expr(file::Column::Uid, 1001.into())
            .col_expr(file::Column::Gid, 1002.into())
            .col_expr(file::Column::MtimeNs, 1_765_000_000_123_456_789_i64.into())
            .filter(file::Column::Id.eq(ids[1]))
            .exec(db)
            .await
            .unwrap();
        // `holding_with` gave each file a warm copy; a cold one each too.
        for (i, id) in ids.iter().enumerate() {
            location::Entity::insert(location::ActiveModel {
                file_id: Set(*id),
                tier: Set(nlds_core::api::Tier::Cold),
                bucket: Set(format!("b{i}")),
                key: Set(format!("k{i}")),
                created: Set(t),
                tenancy: Set((i == 1).then(|| "t1".to_owned())),
                ..Default::default()
            })
            .exec(db)
            .await
            .unwrap();
            checksum::Entity::insert(checksum::ActiveModel {
                file_id: Set(*id),
                algorithm: Set("blake3".into()),
                value: Set(format!("v{i}")),
                ..Default::default()
            })
            .exec(db)
            .await
            .unwrap();
        }
        let files = file::Entity::find()
            .filter(file::Column::HoldingId.eq(h))
            .order_by_asc(file::Column::Id);
        let by_name = files.clone().all(db).await.unwrap();
        let by_position = all(files, db).await.unwrap();
        assert_eq!(by_name.len(), 2);
        assert_eq!(by_position, by_name);
        let locs = location::Entity::find()
            .filter(location::Column::FileId.is_in(ids.clone()))
            .order_by_asc(location::Column::Id);
        let by_name = locs.clone().all(db).await.unwrap();
        let by_position = all(locs, db).await.unwrap();
        assert_eq!(by_name.len(), 4);
        assert_eq!(by_position, by_name);
        let sums = checksum::Entity::find()
            .filter(checksum::Column::FileId.is_in(ids.clone()))
            .order_by_asc(checksum::Column::Id);
        let by_name = sums.clone().all(db).await.unwrap();
        let by_position = all(sums, db).await.unwrap();
        assert_eq!(by_name.len(), 2);
        assert_eq!(by_position, by_name);

        // Holdings, one with every nullable column NULL and one with none; their transaction,
        // tags and counts.
        let other = testing::holding_with(db, "positional-2", &[3]).await.0;
        holding::Entity::update_many()
            .col_expr(holding::Column::DeletedAt, t.into())
            .col_expr(holding::Column::DeletedBy, "someone".into())
            .col_expr(holding::Column::DeleteTransaction, "tx-9".into())
            .col_expr(holding::Column::LastAccess, t.into())
            .filter(holding::Column::Id.eq(other))
            .exec(db)
            .await
            .unwrap();
        for (k, v) in [("project", "ice"), ("run", "42")] {
            tag::Entity::insert(tag::ActiveModel {
                holding_id: Set(h),
                key: Set(k.into()),
                value: Set(v.into()),
                ..Default::default()
            })
            .exec(db)
            .await
            .unwrap();
        }
        let holdings = holding::Entity::find()
            .filter(holding::Column::Id.is_in([h, other]))
            .order_by_asc(holding::Column::Id);
        let by_name = holdings.clone().all(db).await.unwrap();
        let by_position = all(holdings, db).await.unwrap();
        assert_eq!(by_name.len(), 2);
        assert!(by_name[0].deleted_at.is_none() && by_name[1].deleted_at.is_some());
        assert_eq!(by_position, by_name);
        let txs = transaction::Entity::find()
            .filter(transaction::Column::HoldingId.is_in([h, other]))
            .order_by_asc(transaction::Column::Id);
        let by_name = txs.clone().all(db).await.unwrap();
        assert_eq!(by_name.len(), 2);
        assert_eq!(all(txs, db).await.unwrap(), by_name);
        let tags = tag::Entity::find()
            .filter(tag::Column::HoldingId.eq(h))
            .order_by_asc(tag::Column::Id);
        let by_name = tags.clone().all(db).await.unwrap();
        assert_eq!(by_name.len(), 2);
        assert_eq!(all(tags, db).await.unwrap(), by_name);
        let stats = holding_stat::Entity::find()
            .filter(holding_stat::Column::HoldingId.is_in([h, other]))
            .order_by_asc(holding_stat::Column::HoldingId);
        let by_name = stats.clone().all(db).await.unwrap();
        assert_eq!(by_name.len(), 2);
        assert!(by_name.iter().all(|s| s.files > 0 && s.bytes > 0));
        assert_eq!(all(stats, db).await.unwrap(), by_name);

        // A select that reads other columns is not what it decodes: an error, not a wrong row.
        let path_only = file::Entity::find()
            .select_only()
            .column(file::Column::Path);
        let err = all(path_only, db).await.unwrap_err().to_string();
        assert!(err.contains("file.id (column 0)"), "{err}");
    }

    #[tokio::test]
    async fn by_position_is_the_derived_decoder_on_sqlite() {
        same_as_derived(&testing::memory().await).await;
    }

    #[tokio::test]
    async fn by_position_is_the_derived_decoder_on_postgres() {
        let Some(pg) = testing::postgres("positional").await else {
            return;
        };
        same_as_derived(&pg.db).await;
        pg.drop_now().await;
    }
}
