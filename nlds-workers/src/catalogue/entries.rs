//! The API view of file rows ([`FileEntry`]): each row with what it shows of its holding and
//! transaction, its copies, checksum and whether a get is recalling it.
//!
//! A find reads a file's holding and transaction in the statement of its page ([`with_owner`]):
//! that statement joins both already (for the scope and the ingest order), so their columns cost
//! nothing more to read there, where two more statements by id (the page's holdings, its
//! transactions) cost PostgreSQL and the catalogue a round trip each (BENCHMARKS.md, "fewer
//! statements per request").

use chrono::{DateTime, Utc};
use nlds_core::api::{FileEntry, Tier};
use sea_orm::{
    DbErr, FromQueryResult, Iterable, QueryResult, QuerySelect, Select, sea_query::Expr,
};

use super::store::{load_holdings, load_shown_copies, load_transactions};
use super::{Catalogue, Result, dedup, parse_uuid, to_u32, to_u64};
use crate::db::positional::ByPosition;
use crate::db::{file, holding, internal, transaction, untraced};

/// A file row with what its entry shows of its holding and transaction.
pub(super) struct FindRow {
    pub(super) file: file::Model,
    label: String,
    user: String,
    group: String,
    transaction_id: String,
    ingest_time: DateTime<Utc>,
}

/// `select` (of `file` joined with its `holding` and `transaction`, reading `file`'s columns
/// only) with the columns of a [`FindRow`] after them.
pub(super) fn with_owner(select: Select<file::Entity>) -> Select<file::Entity> {
    let columns = [
        (
            Expr::col((holding::Entity, holding::Column::Label)),
            "owner_label",
        ),
        (
            Expr::col((holding::Entity, holding::Column::User)),
            "owner_user",
        ),
        (
            Expr::col((holding::Entity, holding::Column::Group)),
            "owner_group",
        ),
        (
            Expr::col((transaction::Entity, transaction::Column::TransactionId)),
            "owner_transaction",
        ),
        (
            Expr::col((transaction::Entity, transaction::Column::IngestTime)),
            "owner_ingest_time",
        ),
    ];
    columns.into_iter().fold(select, |select, (column, alias)| {
        select.expr_as(column, alias)
    })
}

impl FromQueryResult for FindRow {
    fn from_query_result(res: &QueryResult, prefix: &str) -> std::result::Result<Self, DbErr> {
        let ByPosition(file) = ByPosition::<file::Model>::from_query_result(res, prefix)?;
        let first = file::Column::iter().len();
        let name = |i: usize| ["label", "user", "group", "transaction", "ingest_time"][i];
        let err = |i: usize, e: DbErr| {
            DbErr::Type(format!(
                "a found file's {} (column {}): {e}",
                name(i),
                first + i
            ))
        };
        let text = |i: usize| {
            res.try_get_by_index::<String>(first + i)
                .map_err(|e| err(i, e))
        };
        Ok(Self {
            label: text(0)?,
            user: text(1)?,
            group: text(2)?,
            transaction_id: text(3)?,
            ingest_time: res
                .try_get_by_index::<DateTime<Utc>>(first + 4)
                .map_err(|e| err(4, e))?,
            file,
        })
    }
}

impl Catalogue {
    /// The API view of file rows read without their holding and transaction (a get's plan), in
    /// their order.
    pub(super) async fn entries(&self, models: Vec<file::Model>) -> Result<Vec<FileEntry>> {
        let holding_ids = dedup(&models.iter().map(|m| m.holding_id).collect::<Vec<_>>());
        let tx_ids = dedup(&models.iter().map(|m| m.transaction_id).collect::<Vec<_>>());
        let (holdings, txs) = futures::try_join!(
            load_holdings(&self.db, &holding_ids),
            load_transactions(&self.db, &tx_ids),
        )?;
        let rows = models
            .into_iter()
            .map(|m| {
                let h = holdings.get(&m.holding_id).ok_or_else(|| {
                    internal(format!("holding {} of {} vanished", m.holding_id, m.path))
                })?;
                let t = txs.get(&m.transaction_id).ok_or_else(|| {
                    internal(format!(
                        "transaction {} of {} vanished",
                        m.transaction_id, m.path
                    ))
                })?;
                Ok(FindRow {
                    label: h.label.clone(),
                    user: h.user.clone(),
                    group: h.group.clone(),
                    transaction_id: t.transaction_id.clone(),
                    ingest_time: t.ingest_time,
                    file: m,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.entries_of(rows).await
    }

    /// The API view of found rows, in their order: their copies and checksums read by file id
    /// (outside the message's span: `db::untraced`), beside the files being recalled.
    pub(super) async fn entries_of(&self, rows: Vec<FindRow>) -> Result<Vec<FileEntry>> {
        let ids: Vec<i64> = rows.iter().map(|r| r.file.id).collect();
        let db = self.db.clone();
        let copies = untraced::read(async move { load_shown_copies(&db, &ids).await });
        let ((mut locations, mut checksums), recalling) =
            futures::try_join!(copies, self.recalling_files())?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let m = r.file;
            let mut locs = locations.remove(&m.id).unwrap_or_default();
            locs.sort_by_key(|l| l.tier == Tier::Cold);
            out.push(FileEntry {
                kind: m.kind,
                link_target: m.link_target,
                size: to_u64(m.size),
                uid: to_u32(m.uid),
                gid: to_u32(m.gid),
                mode: to_u32(m.mode),
                mtime: DateTime::from_timestamp_nanos(m.mtime_ns),
                holding_id: m.holding_id,
                label: r.label,
                user: r.user,
                group: r.group,
                transaction_id: parse_uuid("transaction", "transaction_id", &r.transaction_id)?,
                ingest_time: r.ingest_time,
                blake3: checksums.remove(&m.id),
                recalling: recalling.contains(&m.id),
                last_access: m.last_access,
                access_count: to_u64(m.access_count),
                locations: locs,
                xattrs: shown_xattrs(m.xattrs.as_deref()),
                path: m.path,
                version: u32::try_from(m.version).unwrap_or(1),
            });
        }
        Ok(out)
    }
}

/// The extended attributes of a file's `xattrs` column as `find` shows them (an attribute whose
/// value is not valid base64 is shown with an empty value and its stored text).
fn shown_xattrs(column: Option<&str>) -> Vec<nlds_core::api::FileXattr> {
    use base64::Engine as _;
    super::xattrs_of(column)
        .into_iter()
        .map(|x| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&x.value)
                .unwrap_or_default();
            nlds_core::api::FileXattr::new(x.name, &bytes, x.value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use nlds_core::api::ApiAction;
    use nlds_core::message::HoldingFilter;
    use nlds_core::{Envelope, Payload};
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait};
    use uuid::Uuid;

    use super::*;
    use crate::db::{checksum, location, testing};
    use nlds_core::api::FileLocation;

    /// Alice's and bob's holdings in one group, found together: every entry carries its own
    /// holding's label and owner and its own transaction, read in the page's statement (plain
    /// and regex finds) or by id (a get's plan), the same either way.
    async fn scenario(db: DatabaseConnection) {
        let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
        let (a, alpha_files) = testing::holding_with(&db, "alpha", &[1, 2]).await;
        let (b, _) = testing::holding_with(&db, "beta", &[3]).await;
        // alpha's first file: a cold copy besides its warm one (shown after it, as every cold one),
        // its blake3 checksum and another algorithm's, which no entry shows.
        let f0 = alpha_files[0];
        location::Entity::insert(location::ActiveModel {
            file_id: Set(f0),
            tier: Set(Tier::Cold),
            bucket: Set("tape".into()),
            key: Set("agg/7".into()),
            created: Set(chrono::Utc::now()),
            ..Default::default()
        })
        .exec(&db)
        .await
        .unwrap();
        for (algorithm, value) in [("md5", "not shown"), (super::super::BLAKE3, "b3-of-f0")] {
            checksum::Entity::insert(checksum::ActiveModel {
                file_id: Set(f0),
                algorithm: Set(algorithm.into()),
                value: Set(value.into()),
                ..Default::default()
            })
            .exec(&db)
            .await
            .unwrap();
        }
        let mut bob: holding::ActiveModel = holding::Entity::find_by_id(b)
            .one(&db)
            .await
            .unwrap()
            .unwrap()
            .into();
        bob.user = Set("bob".into());
        bob.update(&db).await.unwrap();
        let txs = transaction::Entity::find().all(&db).await.unwrap();
        let tx_of = |h: i64| txs.iter().find(|t| t.holding_id == h).unwrap();
        let env = Envelope::new(
            Uuid::from_u128(7),
            "alice",
            "climate",
            ApiAction::Get,
            "job",
            Payload::Stat {
                filter: Default::default(),
            },
        );
        let all = HoldingFilter {
            groupall: true,
            ..Default::default()
        };
        let check = |files: &[FileEntry]| {
            let mut seen: Vec<(&str, i64, &str)> = Vec::new();
            for f in files {
                let (label, user) = if f.holding_id == a {
                    ("alpha", "alice")
                } else {
                    ("beta", "bob")
                };
                let t = tx_of(f.holding_id);
                assert_eq!(
                    (f.label.as_str(), f.user.as_str(), f.group.as_str()),
                    (label, user, "climate"),
                    "{f:?}"
                );
                assert_eq!(f.transaction_id.to_string(), t.transaction_id, "{f:?}");
                assert_eq!(f.ingest_time, t.ingest_time, "{f:?}");
                let i = f.path.rsplit('f').next().unwrap();
                let mut copies = vec![FileLocation {
                    tier: Tier::Warm,
                    bucket: "nlds".into(),
                    key: format!("tx/{label}/{i}"),
                }];
                if f.path == "/alpha/f0" {
                    copies.push(FileLocation {
                        tier: Tier::Cold,
                        bucket: "tape".into(),
                        key: "agg/7".into(),
                    });
                    assert_eq!(f.blake3.as_deref(), Some("b3-of-f0"));
                } else {
                    assert_eq!(f.blake3, None, "{f:?}");
                }
                assert_eq!(f.locations, copies, "{f:?}");
                seen.push((f.path.as_str(), f.holding_id, f.user.as_str()));
            }
            seen.sort();
            assert_eq!(
                seen,
                [
                    ("/alpha/f0", a, "alice"),
                    ("/alpha/f1", a, "alice"),
                    ("/beta/f0", b, "bob")
                ]
            );
        };
        let page = cat.find(&env, &all, None, false, true).await.unwrap();
        check(&page.files);
        let regex = cat
            .find(&env, &all, Some("f[01]$"), true, true)
            .await
            .unwrap();
        check(&regex.files);
        let models = file::Entity::find().all(&db).await.unwrap();
        let planned = cat.entries(models).await.unwrap();
        check(&planned);
        let mut by_path = page.files.clone();
        by_path.sort_by(|x, y| x.path.cmp(&y.path));
        let mut planned = planned;
        planned.sort_by(|x, y| x.path.cmp(&y.path));
        assert_eq!(by_path, planned, "a find and a plan show the same entries");
    }

    #[tokio::test]
    async fn entries_carry_their_own_holding_and_transaction_sqlite() {
        scenario(testing::memory().await).await;
    }

    #[tokio::test]
    async fn entries_carry_their_own_holding_and_transaction_postgres() {
        let Some(pg) = testing::postgres("entries").await else {
            return;
        };
        scenario(pg.db.clone()).await;
        pg.drop_now().await;
    }
}
