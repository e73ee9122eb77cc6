//! What a killed process leaves behind, removed when its role starts again (before it consumes
//! anything), and logged:
//!
//! * transfer-put: multipart uploads under `tx/` older than `[workers.transfer]
//!   stale_upload_secs`, aborted ([`crate::transfer_put::sweep`]);
//! * transfer-get: the temporary files its journals recorded in users' restore targets, removed
//!   as those users ([`crate::userfs::journal`]);
//! * archive-put: partial aggregates on the cold store not written to for `[workers.archive]
//!   stale_partial_secs` ([`nlds_storage::cold::ColdStore::sweep_partials`]);
//! * archive-get: the recall spool directories of dead processes ([`crate::workdir`]).
//!
//! Failures, each role's own clean-up on failure and cancellation aside, are what these are for;
//! a sweep that cannot finish is a warning, not a reason to refuse to start.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use nlds_storage::cold::ColdStore;
use nlds_storage::s3::S3Clients;

use crate::posix::PosixPolicy;
use crate::workdir::{self, ProcessDir};

/// The subdirectory of `[workers] work_dir` where transfer-get processes keep their journals.
pub const RESTORE_JOURNALS: &str = "restore";

/// transfer-put: aborts the multipart uploads killed processes left (see
/// [`crate::transfer_put::sweep::abort_stale_uploads`]); returns how many.
pub async fn transfer_put(clients: &S3Clients, stale_upload_secs: u64) -> usize {
    let aborted = crate::transfer_put::sweep::abort_stale_uploads(
        clients,
        Duration::from_secs(stale_upload_secs),
    )
    .await;
    if !aborted.is_empty() {
        tracing::warn!(
            aborted = aborted.len(),
            "transfer-put aborted unfinished multipart uploads left by stopped processes"
        );
    }
    aborted.len()
}

/// transfer-get: removes the temporary files recorded by dead processes' journals under
/// `<work_dir>/restore`, then their directories; returns this process's (locked) directory.
pub async fn transfer_get(work_dir: &Path, policy: PosixPolicy) -> anyhow::Result<ProcessDir> {
    let base = work_dir.join(RESTORE_JOURNALS);
    let b = base.clone();
    tokio::task::spawn_blocking(move || {
        let orphans = match workdir::orphans(&b) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(dir = %b.display(), "cannot look for restore journals: {e}");
                Vec::new()
            }
        };
        for o in orphans {
            match crate::userfs::journal::sweep(&o.path, policy) {
                Ok(swept) => {
                    for p in &swept.removed {
                        tracing::warn!(file = %p.display(), "removed a temporary file a stopped transfer-get left");
                    }
                    for (p, why) in &swept.kept {
                        tracing::warn!(file = %p.display(), "left a recorded temporary file alone: {why}");
                    }
                    if let Err(e) = o.remove() {
                        tracing::warn!("cannot remove a stopped transfer-get's journals: {e}");
                    }
                }
                Err(e) => tracing::warn!(
                    dir = %o.path.display(),
                    "cannot read a stopped transfer-get's journals (kept for the next start): {e}"
                ),
            }
        }
        ProcessDir::create(&b)
    })
    .await?
    .with_context(|| {
        format!(
            "cannot create transfer-get's journal directory under {} (workers.work_dir)",
            base.display()
        )
    })
}

/// archive-get: removes dead processes' spool directories under `spool`; returns this process's.
pub async fn archive_get(spool: &Path) -> anyhow::Result<ProcessDir> {
    process_spool(
        spool,
        "archive-get's recall spool (workers.archive.spool_dir, workers.work_dir)",
    )
    .await
}

/// storage-audit: removes dead processes' spool directories under `spool`; returns this
/// process's.
pub async fn storage_audit(spool: &Path) -> anyhow::Result<ProcessDir> {
    process_spool(
        spool,
        "the storage audit's spool (workers.audit.spool_dir, workers.work_dir)",
    )
    .await
}

/// Removes the spool directories of stopped processes under `base` and creates this process's
/// (locked while it lives); `what` names the spool and its settings in messages.
async fn process_spool(base: &Path, what: &'static str) -> anyhow::Result<ProcessDir> {
    let base = base.to_path_buf();
    let b = base.clone();
    tokio::task::spawn_blocking(move || {
        match workdir::sweep(&b) {
            Ok(removed) => {
                for p in removed {
                    tracing::warn!(dir = %p.display(), "removed {what} of a stopped process");
                }
            }
            Err(e) => tracing::warn!(dir = %b.display(), "cannot sweep {what}: {e}"),
        }
        ProcessDir::create(&b)
    })
    .await?
    .with_context(|| format!("cannot create {what} under {}", base.display()))
}

/// archive-put: removes partial aggregates not written to for `stale_partial_secs`; returns
/// how many.
pub async fn archive_put(cold: &dyn ColdStore, stale_partial_secs: u64) -> usize {
    match cold
        .sweep_partials(Duration::from_secs(stale_partial_secs))
        .await
    {
        Ok(removed) => {
            for p in &removed {
                tracing::warn!(file = %p, "removed a partial aggregate a stopped archive-put left");
            }
            removed.len()
        }
        Err(e) => {
            tracing::warn!(
                "cannot sweep partial aggregates on the {} cold store: {e}",
                cold.kind()
            );
            0
        }
    }
}
