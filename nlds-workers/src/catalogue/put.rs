//! `catalog-put.start`: recording the files a transfer stored, a path the holding already has as
//! its next version (docs/VERSIONS.md).

use nlds_core::api::Tier;
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::Utc;
use nlds_bus::Outcome;
use nlds_core::{
    Action, Envelope, ErrorCode, FailedFile, FileRecord, PathKind, Payload, RoutingKey, Worker,
};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};

use super::store::{add_locations, ensure_transaction, live_conflict};
use super::{BLAKE3, CHUNK, Catalogue, Result, chunks_of, to_i64, to_u64};
use super::{cancel, guard, quota, usage, versions};

/// How often a put tries the next version number of a path that concurrent puts keep taking.
const MAX_VERSION_ATTEMPTS: usize = 20;
use crate::db::{bad_request, checksum, file, internal, location};

impl Catalogue {
    pub(super) async fn put(
        &self,
        env: &Envelope,
        holding_id: Option<i64>,
        files: &[FileRecord],
        target: &Option<String>,
        overwrite: bool,
    ) -> Result<Outcome> {
        let h = holding_id.ok_or_else(|| bad_request("catalog-put needs a holding id"))?;
        // The batch's objects are stored, its files not catalogued yet (and no database
        // transaction is open: the embedded process has one connection).
        let context = env.transaction_id.to_string();
        nlds_hooks::pause_async(
            nlds_hooks::points::CATALOG_BEFORE_PUT,
            std::path::Path::new(&context),
        )
        .await;
        let txn = self.db.begin().await?;
        // Catalogued before a cancel, or not at all (the cancel waits for this lock).
        if cancel::is_cancelled(&txn, env, true).await? {
            txn.rollback().await?;
            return self.cancelled_put(env, h, files).await;
        }
        let tx = ensure_transaction(&txn, env.transaction_id, h).await?;

        // A path twice in one message is the same file: catalogue it once.
        let mut seen = HashSet::new();
        let files: Vec<&FileRecord> = files.iter().filter(|f| seen.insert(&f.path)).collect();
        let mut failed: BTreeMap<&str, FailedFile> = BTreeMap::new();
        for f in &files {
            if f.kind == PathKind::File && f.object.is_none() {
                failed.insert(
                    &f.path,
                    FailedFile::new(
                        &f.path,
                        ErrorCode::StorageError,
                        format!("{} reached the catalogue without a stored object", f.path),
                    ),
                );
            }
        }
        let candidates: Vec<&FileRecord> = files
            .iter()
            .copied()
            .filter(|f| !failed.contains_key(f.path.as_str()))
            .collect();
        let paths: Vec<&str> = candidates.iter().map(|f| f.path.as_str()).collect();
        let before = versions::newest(&txn, h, &paths, false).await?;
        // Stored by this very put already (a redelivered batch): nothing to insert. Held by
        // another put: without a sync level (the legacy API's 1.0.x semantics) a conflict,
        // else the next version of the path (catalog-check let only changed ones through).
        let mut stored: HashMap<&str, (i64, bool, i32)> = HashMap::new();
        let mut conflicting: Vec<(&FileRecord, i64, String)> = Vec::new();
        let mut pending: Vec<&FileRecord> = Vec::new();
        for f in &candidates {
            match before.get(&f.path) {
                Some(e) if e.transaction_pk == tx.id => {
                    stored.insert(&f.path, (e.file_id, false, e.version));
                }
                Some(e) if env.sync.is_none() => {
                    conflicting.push((f, e.file_id, e.tid.clone()));
                }
                _ => pending.push(f),
            }
        }
        // Each path gets the number after its highest; a number a concurrent put of the same
        // path took first (the live unique index decides) is retried with the next one, so
        // both puts end as versions and neither is lost.
        let mut attempts = 0;
        while !pending.is_empty() {
            attempts += 1;
            if attempts > MAX_VERSION_ATTEMPTS {
                return Err(internal(format!(
                    "{} path(s) of holding {h}, e.g. {}, lost the race for a version number \
                     {MAX_VERSION_ATTEMPTS} times",
                    pending.len(),
                    pending[0].path
                )));
            }
            let names: Vec<&str> = pending.iter().map(|f| f.path.as_str()).collect();
            let highest = versions::highest(&txn, h, &names).await?;
            let want: Vec<(&FileRecord, i32)> = pending
                .iter()
                .map(|f| (*f, highest.get(&f.path).copied().unwrap_or(0) + 1))
                .collect();
            for chunk in want.chunks(CHUNK) {
                let rows = chunk.iter().map(|(f, v)| file::ActiveModel {
                    holding_id: Set(h),
                    transaction_id: Set(tx.id),
                    path: Set(f.path.clone()),
                    kind: Set(f.kind),
                    link_target: Set(f.link_target.clone()),
                    size: Set(to_i64(f.size)),
                    uid: Set(i64::from(f.uid)),
                    gid: Set(i64::from(f.gid)),
                    mode: Set(i64::from(f.mode)),
                    mtime_ns: Set(f.mtime_ns),
                    xattrs: Set(super::xattrs_column(&f.xattrs)),
                    version: Set(*v),
                    ..Default::default()
                });
                file::Entity::insert_many(rows)
                    .on_conflict(live_conflict([
                        file::Column::HoldingId,
                        file::Column::Path,
                        file::Column::Version,
                    ]))
                    .try_insert()
                    .exec_without_returning(&txn)
                    .await?;
            }
            let pairs: Vec<(&str, i32)> = want.iter().map(|(f, v)| (f.path.as_str(), *v)).collect();
            let won = versions::at_version(&txn, h, &pairs).await?;
            pending.clear();
            let mut lost = Vec::new();
            for (f, v) in want {
                match won.get(&(f.path.clone(), v)) {
                    Some((id, t)) if *t == tx.id => {
                        stored.insert(&f.path, (*id, true, v));
                    }
                    _ if env.sync.is_some() => pending.push(f),
                    _ => lost.push(f),
                }
            }
            if !lost.is_empty() {
                let names: Vec<&str> = lost.iter().map(|f| f.path.as_str()).collect();
                let now_held = versions::newest(&txn, h, &names, false).await?;
                for f in lost {
                    let (id, other) = now_held
                        .get(&f.path)
                        .map(|e| (e.file_id, e.tid.clone()))
                        .unwrap_or_default();
                    conflicting.push((f, id, other));
                }
            }
        }

        let now = Utc::now();
        let mut locations = Vec::new();
        let mut checksums = Vec::new();
        let mut done = Vec::new();
        let mut inserted_ids = Vec::new();
        let mut new_versions = Vec::new();
        for f in &candidates {
            let Some(&(file_id, inserted, version)) = stored.get(f.path.as_str()) else {
                continue;
            };
            if version > 1 {
                new_versions.push(f.path.as_str());
            }
            if inserted {
                inserted_ids.push(file_id);
                if let Some(o) = &f.object {
                    locations.push(location::ActiveModel {
                        file_id: Set(file_id),
                        tier: Set(Tier::Warm),
                        bucket: Set(o.bucket.clone()),
                        key: Set(o.key.clone()),
                        created: Set(now),
                        tenancy: Set(o.tenancy.clone()),
                        ..Default::default()
                    });
                }
                if let Some(b) = &f.blake3 {
                    checksums.push(checksum::ActiveModel {
                        file_id: Set(file_id),
                        algorithm: Set(BLAKE3.to_owned()),
                        value: Set(b.clone()),
                        ..Default::default()
                    });
                }
            }
            done.push(f.path.as_str());
        }
        add_locations(&txn, locations).await?;
        for chunk in chunks_of(checksums) {
            checksum::Entity::insert_many(chunk)
                .on_conflict_do_nothing_on([checksum::Column::FileId, checksum::Column::Algorithm])
                .exec_without_returning(&txn)
                .await?;
        }
        // The new files enter the usage counters and leave the put's quota reservation.
        let stored = usage::counted(&txn, &inserted_ids).await?;
        usage::apply(&txn, &stored.delta(&usage::Counts::default())).await?;
        let (warm_bytes, _) = stored.total(usage::WARM);
        let (_, new_files) = stored.total(usage::ALL);
        let stored = nlds_core::quota::SizeHint {
            bytes: to_u64(warm_bytes),
            files: to_u64(new_files),
        };
        quota::settle(&txn, &env.transaction_id.to_string(), stored).await?;
        // `[workers.versions] keep`: versions beyond the newest `keep` are deleted (soft; the
        // purge removes them after the retention period).
        let pruned = versions::prune(
            &txn,
            h,
            &new_versions,
            self.versions.keep,
            &env.transaction_id.to_string(),
        )
        .await?;
        if pruned > 0 {
            tracing::info!(transaction_id = %env.transaction_id, holding_id = h, pruned,
                keep = self.versions.keep, "older versions deleted");
        }

        // Objects uploaded for paths the holding already has are deleted again, unless the
        // catalogued copy is that very object.
        let ids: Vec<i64> = conflicting.iter().map(|(_, id, _)| *id).collect();
        let mut kept: HashSet<(String, String)> = HashSet::new();
        for chunk in ids.chunks(CHUNK) {
            let rows = location::Entity::find()
                .filter(location::Column::FileId.is_in(chunk.iter().copied()))
                .all(&txn)
                .await?;
            kept.extend(rows.into_iter().map(|l| (l.bucket, l.key)));
        }
        txn.commit().await?;
        tracing::info!(transaction_id = %env.transaction_id, sub_id = %env.sub_id, holding_id = h,
            files = files.len(), conflicts = conflicting.len(), "catalogue put batch stored");

        let mut to_delete = Vec::new();
        for (f, _, other) in &conflicting {
            failed.insert(
                &f.path,
                FailedFile::new(
                    &f.path,
                    ErrorCode::Conflict,
                    format!("{} is already in holding {h} (transaction {other})", f.path),
                ),
            );
            if let Some(o) = &f.object
                && !kept.contains(&(o.bucket.clone(), o.key.clone()))
            {
                to_delete.push((*f).clone());
            }
        }
        // Never an object a live file still counts on (the last-copy guard decides).
        let to_delete = guard::removable_uploads(&self.db, to_delete).await?;
        let done: HashSet<&str> = done.into_iter().collect();
        let new_versions: HashSet<&str> = new_versions.into_iter().collect();
        let complete: Vec<FileRecord> = files
            .iter()
            .filter(|f| done.contains(f.path.as_str()))
            .map(|f| FileRecord {
                new_version: new_versions.contains(f.path.as_str()),
                ..(*f).clone()
            })
            .collect();
        let mut out = Outcome::publish(
            RoutingKey::new(Worker::CatalogPut, Action::Complete),
            env.reply(Payload::Files {
                context: Vec::new(),
                failed: failed.into_values().collect(),
                holding_id: Some(h),
                files: complete,
                target: target.clone(),
                overwrite,
            }),
        );
        if !to_delete.is_empty() {
            out = out.and(
                RoutingKey::new(Worker::TransferDel, Action::Start),
                env.reply(Payload::Files {
                    context: Vec::new(),
                    failed: Vec::new(),
                    holding_id: Some(h),
                    files: to_delete,
                    target: None,
                    overwrite: false,
                }),
            );
        }
        Ok(out)
    }

    // ---------------------------------------------------------------------------------------
    // catalog-get.start
}
