//! `catalog-check.start`: which of the indexed files a put may add to the holding, within the
//! group's quota (`quota::grow`: a batch that does not fit fails with `quota_exceeded`).

use nlds_bus::Outcome;
use nlds_core::quota::SizeHint;
use nlds_core::{
    Action, Envelope, ErrorCode, FailedFile, FileRecord, PathKind, Payload, RoutingKey, Worker,
};
use sea_orm::{EntityTrait, TransactionTrait};

use super::store::existing_files;
use super::{Catalogue, Result, quota};
use crate::db::{bad_request, holding};

impl Catalogue {
    pub(super) async fn check(
        &self,
        env: &Envelope,
        holding_id: Option<i64>,
        files: &[FileRecord],
        target: &Option<String>,
        overwrite: bool,
    ) -> Result<Outcome> {
        let h = holding_id.ok_or_else(|| bad_request("catalog-check needs a holding id"))?;
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let existing = existing_files(&self.db, h, &paths).await?;
        let tid = env.transaction_id.to_string();
        let mut keep = Vec::with_capacity(files.len());
        let mut failed = Vec::new();
        for f in files {
            match existing.get(&f.path) {
                Some(e) if e.tid != tid => failed.push(FailedFile::new(
                    &f.path,
                    ErrorCode::Conflict,
                    format!(
                        "{} is already in holding {h} (transaction {})",
                        f.path, e.tid
                    ),
                )),
                _ => keep.push(f.clone()),
            }
        }
        if !keep.is_empty()
            && let Some(refused) = self.make_room(env, h, &keep).await?
        {
            failed.extend(keep.drain(..).map(|f| {
                let reason = format!("{}: {}", f.path, refused.message);
                FailedFile::new(&f.path, ErrorCode::QuotaExceeded, reason)
            }));
        }
        let complete = env.reply(Payload::Files {
            failed,
            holding_id: Some(h),
            files: keep,
            target: target.clone(),
            overwrite,
        });
        Ok(Outcome::publish(
            RoutingKey::new(Worker::CatalogCheck, Action::Complete),
            complete,
        ))
    }

    /// Makes room in the transaction's quota reservation for the files `keep` of holding `h`
    /// (one database transaction); `Some` is the refusal when they do not fit.
    async fn make_room(
        &self,
        env: &Envelope,
        h: i64,
        keep: &[FileRecord],
    ) -> Result<Option<nlds_core::error::ApiError>> {
        let need = SizeHint {
            bytes: keep
                .iter()
                .filter(|f| f.kind == PathKind::File)
                .map(|f| f.size)
                .sum(),
            files: keep.len() as u64,
        };
        let txn = self.db.begin().await?;
        let mut limits = quota::lock(&txn, &env.group).await?;
        let Some(group) = holding::Entity::find_by_id(h)
            .one(&txn)
            .await?
            .map(|h| h.group)
        else {
            return Ok(None);
        };
        if group != env.group {
            limits = quota::lock(&txn, &group).await?;
        }
        let Some(limits) = limits else {
            return Ok(None);
        };
        let tid = env.transaction_id.to_string();
        match quota::grow(&txn, &group, &limits, &tid, need).await? {
            Ok(()) => {
                txn.commit().await?;
                Ok(None)
            }
            Err(refused) => Ok(Some(refused)),
        }
    }
}
