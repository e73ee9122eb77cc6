//! Repairs: a warm copy restored from the file's aggregate, an aggregate written again from the
//! warm copies of its members.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use nlds_core::api::Tier;
use nlds_storage::cold::{ByteReader, ColdStore};
use nlds_storage::s3::{S3Error, Tenant};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::StorageAudit;
use super::pages::{self, WarmRow};
use crate::catalogue::usage;
use crate::db::{OpError, aggregation, aggregation_member, file, location};

impl StorageAudit {
    /// Restores the warm copy `row` from the file's stored aggregate: the member is read at its
    /// offset, spooled, checked against the catalogue's blake3 and uploaded to its key.
    pub(super) async fn restore_warm(&self, t: &Tenant, row: &WarmRow) -> Result<String, String> {
        let Some(store) = &self.cold else {
            return Err("no other copy (no cold store is configured)".into());
        };
        let (agg, offset) = pages::cold_copy(&self.db, row.file_id)
            .await
            .map_err(|e| format!("the catalogue: {e}"))?
            .ok_or("no other copy: the file is in no stored aggregation")?;
        let expected = pages::blake3_of(&self.db, row.file_id)
            .await
            .map_err(|e| format!("the catalogue: {e}"))?
            .ok_or("the catalogue has no blake3 of the file to verify a restored copy with")?;
        let was_online = store
            .stat(&agg.name)
            .await
            .map_err(|e| e.to_string())?
            .is_some_and(|s| s.online);
        let mut body = self.online_read(store.as_ref(), &agg.name).await?;
        let spool = match &self.spool {
            Some(dir) => tempfile::NamedTempFile::new_in(dir.path()),
            None => tempfile::NamedTempFile::new(),
        }
        .map_err(|e| format!("creating a spool file: {e}"))?;
        let size = u64::try_from(row.size).unwrap_or(0);
        let copied = async {
            tokio::io::copy(
                &mut (&mut body).take(offset.max(0) as u64),
                &mut tokio::io::sink(),
            )
            .await?;
            let mut out = tokio::fs::File::create(spool.path()).await?;
            let mut member = (&mut body).take(size);
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0u64;
            loop {
                let n = member.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).await?;
                got += n as u64;
            }
            out.sync_all().await?;
            Ok::<_, std::io::Error>((got, hasher.finalize().to_hex().to_string()))
        }
        .await;
        drop(body);
        if !was_online && let Err(e) = store.evict(&agg.name).await {
            tracing::warn!(aggregation = %agg.name, error = %e, "could not release a staged aggregate");
        }
        let (got, hash) = copied.map_err(|e| format!("reading aggregate {}: {e}", agg.name))?;
        if got != size || hash != expected {
            return Err(format!(
                "the copy in aggregate {} is not whole either ({got} of {size} bytes, blake3 {hash})",
                agg.name
            ));
        }
        let stream = ByteStream::from_path(spool.path())
            .await
            .map_err(|e| format!("reading the spooled copy: {e}"))?;
        t.client
            .put_object()
            .bucket(&t.bucket)
            .key(&row.key)
            .body(stream)
            .send()
            .await
            .map_err(|e| {
                S3Error::from_sdk(format!("uploading s3://{}/{}", t.bucket, row.key), &e).message
            })?;
        Ok(format!(
            "restored from aggregate {} (blake3 verified)",
            agg.name
        ))
    }

    /// Aggregate `name` as a stream, staged first if it is offline (waiting at most
    /// `stage_wait`).
    pub(super) async fn online_read(
        &self,
        store: &dyn ColdStore,
        name: &str,
    ) -> Result<ByteReader, String> {
        let deadline = Instant::now() + self.stage_wait;
        let mut asked = false;
        loop {
            match store.stat(name).await.map_err(|e| e.to_string())? {
                None => return Err(format!("aggregate {name} is not in the cold store")),
                Some(s) if s.online => break,
                Some(_) if !asked => {
                    store
                        .stage(&[name.to_owned()])
                        .await
                        .map_err(|e| format!("staging {name}: {e}"))?;
                    asked = true;
                }
                Some(_) if Instant::now() >= deadline => {
                    return Err(format!(
                        "aggregate {name} was not staged within {} s",
                        self.stage_wait.as_secs()
                    ));
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        store
            .read(name)
            .await
            .map_err(|e| format!("reading {name}: {e}"))
    }

    /// Forgets aggregation `agg` so that its members are archived again, if every member has a
    /// whole warm copy (present, of the file's size): its cold locations and its row go in one
    /// database transaction (usage settled), then its remains are removed from the store.
    pub(super) async fn rearchive(
        &self,
        store: &dyn ColdStore,
        agg: &aggregation::Model,
    ) -> Result<String, String> {
        let db_err = |e: sea_orm::DbErr| format!("the catalogue: {e}");
        let members: Vec<i64> = aggregation_member::Entity::find()
            .filter(aggregation_member::Column::AggregationId.eq(agg.id))
            .all(&self.db)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|m| m.file_id)
            .collect();
        for &id in &members {
            self.whole_warm_copy(id).await?;
        }
        let txn = self.db.begin().await.map_err(db_err)?;
        let before = usage::counted(&txn, &members).await.map_err(op_err)?;
        location::Entity::delete_many()
            .filter(location::Column::Tier.eq(Tier::Cold))
            .filter(location::Column::Key.eq(&agg.name))
            .filter(location::Column::FileId.is_in(members.iter().copied()))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        aggregation::Entity::delete_by_id(agg.id)
            .exec(&txn)
            .await
            .map_err(db_err)?;
        usage::settle(&txn, &members, &before)
            .await
            .map_err(op_err)?;
        txn.commit().await.map_err(db_err)?;
        store
            .remove(&agg.name)
            .await
            .map_err(|e| format!("removing what is left of {}: {e}", agg.name))?;
        Ok(format!(
            "aggregation {} forgotten: its {} files keep their warm copies (present, of their size) and are archived again by the next round",
            agg.id,
            members.len()
        ))
    }

    /// Checks that file `id` has a warm copy in a bucket this worker reaches, of the file's size.
    async fn whole_warm_copy(&self, id: i64) -> Result<(), String> {
        let db_err = |e: sea_orm::DbErr| format!("the catalogue: {e}");
        let f = file::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(db_err)?
            .ok_or_else(|| format!("file {id} is no longer catalogued"))?;
        let copies = location::Entity::find()
            .filter(location::Column::FileId.eq(id))
            .filter(location::Column::Tier.eq(Tier::Warm))
            .all(&self.db)
            .await
            .map_err(db_err)?;
        for c in copies {
            let Ok(client) = self.s3.for_tenancy(c.tenancy.as_deref()) else {
                continue;
            };
            match client
                .head_object()
                .bucket(&c.bucket)
                .key(&c.key)
                .send()
                .await
            {
                Ok(h) if h.content_length() == Some(f.size) => return Ok(()),
                _ => continue,
            }
        }
        Err(format!(
            "{} (file {id}) has no whole warm copy to archive again",
            f.path
        ))
    }
}

fn op_err(e: OpError) -> String {
    match e {
        OpError::Api(e) => e.message,
        OpError::Db(e) => format!("the catalogue: {e}"),
    }
}
