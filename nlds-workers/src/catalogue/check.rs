//! `catalog-check.start`: which of the indexed files a put may add to the holding, within the
//! group's quota (`quota::grow`: a batch that does not fit fails with `quota_exceeded`).
//!
//! A path the holding already has is compared with its newest live version at the put's sync
//! level (docs/VERSIONS.md): changed, it goes on as a new version; unchanged, it is skipped
//! (reported with code `unchanged`, not failed); at the `checksum` level a file of the same size
//! goes on with the stored blake3, which transfer-put compares with the local content before
//! uploading. A put without a sync level (the legacy API's default) fails such a path as a
//! conflict, as NLDS 1.0.x did.

use nlds_bus::Outcome;
use nlds_core::quota::SizeHint;
use nlds_core::{
    Action, Envelope, ErrorCode, FailedFile, FileRecord, PathKind, Payload, RoutingKey, Worker,
};
use sea_orm::{EntityTrait, TransactionTrait};

use nlds_core::versions::Verdict;

use super::{Catalogue, Result, cancel, quota, versions};
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
        if cancel::is_cancelled(&self.db, env, false).await? {
            let paths = files.iter().map(|f| f.path.as_str());
            let (k, e) = cancel::cancelled_update(env, cancel::cancelled_files(paths, "stored"));
            return Ok(Outcome::publish(k, e));
        }
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let checksums = env.sync == Some(nlds_core::versions::SyncLevel::Checksum);
        let existing = versions::newest(&self.db, h, &paths, checksums).await?;
        let tid = env.transaction_id.to_string();
        let mut keep = Vec::with_capacity(files.len());
        let mut failed = Vec::new();
        for f in files {
            let Some(e) = existing.get(&f.path).filter(|e| e.tid != tid) else {
                // New, or stored by this very put (a redelivered batch).
                keep.push(f.clone());
                continue;
            };
            let Some(level) = env.sync else {
                failed.push(FailedFile::new(
                    &f.path,
                    ErrorCode::Conflict,
                    format!(
                        "{} is already in holding {h} (transaction {})",
                        f.path, e.tid
                    ),
                ));
                continue;
            };
            match e.classify(level, f) {
                Verdict::New | Verdict::Changed => keep.push(FileRecord {
                    new_version: true,
                    ..f.clone()
                }),
                Verdict::CompareChecksum { blake3 } => keep.push(FileRecord {
                    new_version: true,
                    blake3: Some(blake3),
                    ..f.clone()
                }),
                Verdict::Unchanged => failed.push(FailedFile::new(
                    &f.path,
                    ErrorCode::Unchanged,
                    format!(
                        "{} is unchanged (sync level {level}): holding {h} has it as version {}",
                        f.path, e.version
                    ),
                )),
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
            context: Vec::new(),
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
