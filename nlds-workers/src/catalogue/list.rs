//! `catalog.list`: a page of the holdings a request selects, each with its counts, tags and
//! transactions.
//!
//! The page is one statement: the holdings, and for each row of the page three correlated
//! subqueries the database runs after the sort and limit (an index probe each): the counts the
//! triggers keep (`holding_stat`), the tags as one JSON object and the transaction ids in ingest
//! order. Read as four statements (the page, then three lookups by id at once), a list of 100
//! holdings took PostgreSQL 2.6 ms of work against 1.4 ms, and the tags' lookup by an array of
//! ids scanned the whole `tag` table (BENCHMARKS.md, "a list in one statement").

use std::collections::HashMap;

use nlds_core::Envelope;
use nlds_core::api::{HoldingPage, HoldingSummary, Tags};
use nlds_core::message::HoldingFilter;
use sea_orm::sea_query::{Condition, Expr, Order};
use sea_orm::{
    DbBackend, DbErr, EntityTrait, FromQueryResult, Iterable, QueryFilter, QueryOrder, QueryResult,
    QuerySelect, Select,
};
use uuid::Uuid;

use super::query::page_total;
use super::{Catalogue, Result, id_set, order, page, to_u64};
use crate::db::positional::ByPosition;
use crate::db::{file, holding, internal};

/// A holding's counts: `paths,bytes,warm_files,cold_files` (`||` joins numbers as text on both
/// backends); NULL without a `holding_stat` row (no live files).
const COUNTS: &str = r#"(SELECT "s"."paths" || ',' || "s"."bytes" || ',' || "s"."warm_files" || ',' || "s"."cold_files" FROM "holding_stat" AS "s" WHERE "s"."holding_id" = "holding"."id")"#;

/// A holding's transaction ids in ingest order, joined by commas (a UUID has none); NULL
/// without transactions. `string_agg ... ORDER BY` is PostgreSQL's and SQLite's (3.44 on).
const TRANSACTIONS: &str = r#"(SELECT string_agg("t"."transaction_id", ',' ORDER BY "t"."ingest_time", "t"."id") FROM "transaction" AS "t" WHERE "t"."holding_id" = "holding"."id")"#;

/// A holding's tags as one JSON object (NULL or `{}` without tags), in `backend`'s dialect.
fn tags_sql(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => {
            r#"(SELECT CAST(json_object_agg("g"."key", "g"."value") AS TEXT) FROM "tag" AS "g" WHERE "g"."holding_id" = "holding"."id")"#
        }
        _ => {
            r#"(SELECT json_group_object("g"."key", "g"."value") FROM "tag" AS "g" WHERE "g"."holding_id" = "holding"."id")"#
        }
    }
}

/// The statement of a list's page: the holdings in `scope` in creation order (`order`), from
/// `offset`, at most `rows`, each with its [`COUNTS`], tags and [`TRANSACTIONS`]. The plan guard
/// (`plan_tests.rs`) explains this very statement.
pub(super) fn list_select(
    scope: Condition,
    order: Order,
    rows: u64,
    offset: u64,
    backend: DbBackend,
) -> Select<holding::Entity> {
    holding::Entity::find()
        .filter(scope)
        .order_by(holding::Column::Created, order.clone())
        .order_by(holding::Column::Id, order)
        .limit(rows)
        .offset(offset)
        .expr_as(Expr::cust(COUNTS), "counts")
        .expr_as(Expr::cust(tags_sql(backend)), "tags")
        .expr_as(Expr::cust(TRANSACTIONS), "transactions")
}

/// A row of [`list_select`]: the holding's columns by position, then the three aggregates.
struct ListRow {
    holding: holding::Model,
    counts: Option<String>,
    tags: Option<String>,
    transactions: Option<String>,
}

impl FromQueryResult for ListRow {
    fn from_query_result(res: &QueryResult, prefix: &str) -> std::result::Result<Self, DbErr> {
        let ByPosition(holding) = ByPosition::<holding::Model>::from_query_result(res, prefix)?;
        let first = holding::Column::iter().len();
        let column = |i: usize, name: &str| {
            res.try_get_by_index::<Option<String>>(first + i)
                .map_err(|e| DbErr::Type(format!("a list row's {name}: {e}")))
        };
        Ok(Self {
            counts: column(0, "counts")?,
            tags: column(1, "tags")?,
            transactions: column(2, "transactions")?,
            holding,
        })
    }
}

impl ListRow {
    /// The holding's summary, with `recalling` of its files being recalled now.
    fn summary(self, recalling: u64) -> Result<HoldingSummary> {
        let h = self.holding;
        let malformed = |what: &str, value: &str| {
            internal(format!("holding {}: malformed {what} {value:?}", h.id))
        };
        let [files, bytes, warm_files, cold_files] = match &self.counts {
            None => [0; 4],
            Some(text) => {
                let mut n = [0_u64; 4];
                let mut parts = text.split(',');
                for slot in &mut n {
                    let part = parts.next().ok_or_else(|| malformed("counts", text))?;
                    *slot = to_u64(part.parse().map_err(|_| malformed("counts", text))?);
                }
                if parts.next().is_some() {
                    return Err(malformed("counts", text));
                }
                n
            }
        };
        let tags: Tags = match &self.tags {
            None => Tags::new(),
            Some(json) => serde_json::from_str(json).map_err(|_| malformed("tags", json))?,
        };
        let transactions = match &self.transactions {
            None => Vec::new(),
            Some(ids) => ids
                .split(',')
                .map(|id| Uuid::parse_str(id).map_err(|_| malformed("transaction id", id)))
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(HoldingSummary {
            warm_files,
            cold_files,
            recalling_files: recalling,
            tags,
            transactions,
            id: h.id,
            label: h.label,
            user: h.user,
            group: h.group,
            created: h.created,
            files,
            bytes,
            last_access: h.last_access,
        })
    }
}

impl Catalogue {
    pub(super) async fn list(&self, env: &Envelope, filter: &HoldingFilter) -> Result<HoldingPage> {
        let scope = self.scope(env, filter, false).await?;
        let (limit, offset) = page(filter)?;
        let backend = self.db.get_database_backend();
        let select = list_select(scope.clone(), order(filter), limit + 1, offset, backend);
        // The recalls do not depend on the page: both at once, on the pool's connections.
        let (mut rows, recalling) = futures::try_join!(
            async { Ok(select.into_model::<ListRow>().all(&self.db).await?) },
            self.recalling_by_holding(),
        )?;
        let query = holding::Entity::find().filter(scope);
        let total = page_total(&mut rows, limit, offset, query, &self.db).await?;
        let holdings = rows
            .into_iter()
            .map(|row| {
                let recalling = recalling.get(&row.holding.id).copied().unwrap_or(0);
                row.summary(recalling)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(HoldingPage {
            holdings,
            total,
            limit,
            offset,
        })
    }

    /// How many files of each holding a get is waiting to recall now.
    async fn recalling_by_holding(&self) -> Result<HashMap<i64, u64>> {
        let recalling = self.recalling_files().await?;
        let mut m = HashMap::new();
        let files: Vec<i64> = recalling.into_iter().collect();
        let backend = self.db.get_database_backend();
        for part in id_set::parts(backend, &files) {
            for (h,) in file::Entity::find()
                .select_only()
                .column(file::Column::HoldingId)
                .filter(id_set::any_of(backend, file::Column::Id, part))
                .into_tuple::<(i64,)>()
                .all(&self.db)
                .await?
            {
                *m.entry(h).or_insert(0) += 1;
            }
        }
        Ok(m)
    }
}
