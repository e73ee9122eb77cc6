//! The archive-get role: brings an aggregate back from the cold store and restores its members
//! that have no warm copy (see [`ArchiveGet`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nlds_bus::{Bus, Handler, HandlerError, Outcome};
use nlds_core::message::{AggregateSums, RecallMember};
use nlds_core::workflow::recall::RecallPhase;
use nlds_core::{Action, Envelope, ErrorCode, FailedFile, Payload, RoutingKey, Worker};
use nlds_storage::cold::aggregate;
use nlds_storage::cold::{ColdError, ColdStore};
use nlds_storage::s3::S3Error;
use uuid::Uuid;

/// A recall's spool directory, removed when the recall ends, fails, or its future is dropped.
struct Spool(std::path::PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(spool = %self.0.display(), "cannot remove a recall's spool: {e}");
        }
    }
}

/// Staging checks between two repeated stage requests.
const STAGE_REPEAT: u32 = 10;

/// The archive-get role: brings an aggregate back from the cold store and restores its members
/// that have no warm copy.
///
/// `archive-get.start` / `.prepare-check` ([`Payload::ArchiveRecall`]): an offline aggregate is
/// staged once, then checked again every `recall_poll_secs` through a durable delayed message
/// (so a restarted worker loses nothing); an online one is read in one pass
/// ([`aggregate::extract`]): each member to restore is spooled to local disk and checked against
/// its catalogued blake3, the whole aggregate against its recorded adler32 and blake3, and only
/// when everything matches are the members uploaded to the warm tier and the staged copy
/// released. A corrupt aggregate fails the recall with its name and the files it affects, and
/// changes nothing in the catalogue.
pub struct ArchiveGet {
    s3: aws_sdk_s3::Client,
    bucket: String,
    cold: Arc<dyn ColdStore>,
    bus: Arc<dyn Bus>,
    poll: Duration,
    max_checks: u32,
    /// This process's spool directory (locked while it lives; see [`crate::workdir`]).
    spool: Arc<crate::workdir::ProcessDir>,
}

impl ArchiveGet {
    pub fn new(
        s3: aws_sdk_s3::Client,
        bucket: String,
        cold: Arc<dyn ColdStore>,
        bus: Arc<dyn Bus>,
        cfg: &nlds_settings::ArchiveConfig,
        spool: crate::workdir::ProcessDir,
    ) -> Self {
        let poll = Duration::from_secs(cfg.recall_poll_secs.max(1));
        Self {
            s3,
            bucket,
            cold,
            bus,
            poll,
            max_checks: u32::try_from(cfg.recall_timeout_secs / poll.as_secs().max(1))
                .unwrap_or(u32::MAX)
                .max(1),
            spool: Arc::new(spool),
        }
    }

    /// `archive-get.start` / `prepare-check` of the recall in `env` ([`Payload::ArchiveRecall`]).
    async fn recall(&self, env: &Envelope) -> Result<Outcome, HandlerError> {
        let Payload::ArchiveRecall {
            aggregation_id,
            name,
            members,
            sums,
            checks,
            restore_tag,
        } = &env.payload
        else {
            return Err(HandlerError::permanent(
                ErrorCode::BadRequest,
                "archive-get.start needs an archive recall".to_owned(),
            ));
        };
        let (aggregation_id, checks, tag) = (*aggregation_id, *checks, restore_tag.as_deref());
        let stat = match self.cold.stat(name).await {
            Ok(s) => s,
            Err(e) => return self.recall_failed(env, name, e),
        };
        let Some(stat) = stat else {
            return self.recall_failed(env, name, ColdError::NotFound(name.to_owned()));
        };
        if !stat.online {
            return self.wait_for_stage(env, name, checks).await;
        }
        if let Err(e) = self
            .bus
            .publish(
                RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start),
                &env.reply(Payload::RecallProgress {
                    aggregation_id,
                    state: RecallPhase::Reading.state(),
                }),
            )
            .await
        {
            tracing::warn!(error = %e, "could not report recall progress");
        }
        let spool = Spool(self.spool.path().join(format!(
            "nlds-recall-{aggregation_id}-{}",
            Uuid::new_v4().simple()
        )));
        let result = self.restore(name, members, sums, &spool.0, tag).await;
        drop(spool);
        match result {
            Ok(restored) => {
                if let Err(e) = self.cold.evict(name).await {
                    tracing::warn!(aggregation = %name, error = %e, "could not release the staged copy");
                }
                tracing::info!(aggregation = %name, restored = restored.len(), "recall restored");
                Ok(Outcome::publish(
                    RoutingKey::new(Worker::ArchiveGet, Action::Complete),
                    env.reply(Payload::ArchiveRestored {
                        aggregation_id,
                        restored,
                    }),
                ))
            }
            // Staged copies can be released between stat and read: wait for staging again.
            Err(ColdError::Offline(_)) => self.wait_for_stage(env, name, checks).await,
            Err(e) => self.recall_failed(env, name, e),
        }
    }

    /// Stages (first time) and checks again later through a durable delayed message.
    async fn wait_for_stage(
        &self,
        env: &Envelope,
        name: &str,
        checks: u32,
    ) -> Result<Outcome, HandlerError> {
        // Staging is asked for at once, and again every STAGE_REPEAT checks: a tape system may
        // drop a request (a restart of its front end), and asking again is harmless.
        if checks.is_multiple_of(STAGE_REPEAT)
            && let Err(e) = self.cold.stage(&[name.to_owned()]).await
        {
            return self.recall_failed(env, name, e);
        }
        if checks == 0
            && let Payload::ArchiveRecall { aggregation_id, .. } = &env.payload
        {
            // Tells the catalogue the recall is taken up (so it is not sent again).
            let taken = env.reply(Payload::RecallProgress {
                aggregation_id: *aggregation_id,
                state: RecallPhase::Staging.state(),
            });
            if let Err(e) = self
                .bus
                .publish(
                    RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start),
                    &taken,
                )
                .await
            {
                return Err(HandlerError::transient(
                    ErrorCode::Unavailable,
                    e.to_string(),
                ));
            }
        }
        if checks >= self.max_checks {
            return self.recall_failed(
                env,
                name,
                ColdError::Failed(format!(
                    "staging aggregate {name} did not finish after {checks} checks"
                )),
            );
        }
        let mut next = env.clone();
        if let Payload::ArchiveRecall { checks: c, .. } = &mut next.payload {
            *c = checks + 1;
        }
        self.bus
            .publish_delayed(
                RoutingKey::new(Worker::ArchiveGet, Action::PrepareCheck),
                &next,
                self.poll,
            )
            .await
            .map_err(|e| HandlerError::transient(ErrorCode::Unavailable, e.to_string()))?;
        Ok(Outcome::none())
    }

    fn recall_failed(
        &self,
        env: &Envelope,
        name: &str,
        e: ColdError,
    ) -> Result<Outcome, HandlerError> {
        if e.is_transient() {
            return Err(HandlerError::transient(e.code(), e.to_string()));
        }
        tracing::warn!(aggregation = %name, error = %e, "recall failed");
        let code = e.code();
        Ok(Outcome::publish(
            RoutingKey::new(Worker::ArchiveGet, Action::Failed),
            env.reply(Payload::Failed {
                files: vec![FailedFile::new(
                    format!("aggregate {name}"),
                    code,
                    e.to_string(),
                )],
            }),
        ))
    }

    /// Reads the aggregate, spools and verifies the members to restore, verifies the aggregate,
    /// then uploads them. Nothing is uploaded unless everything verified.
    async fn restore(
        &self,
        name: &str,
        members: &[RecallMember],
        sums: &AggregateSums,
        spool: &std::path::Path,
        tag: Option<&str>,
    ) -> Result<Vec<nlds_core::message::RestoredFile>, ColdError> {
        tokio::fs::create_dir_all(spool).await.map_err(|e| {
            ColdError::Failed(format!("cannot create spool {}: {e}", spool.display()))
        })?;
        let tar: Vec<aggregate::Member> = members
            .iter()
            .map(|m| aggregate::Member::new(&m.path, m.size, m.mode, m.mtime_ns, m.uid, m.gid))
            .collect();
        let wanted: std::collections::HashSet<usize> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.restore)
            .map(|(i, _)| i)
            .collect();
        let reader = self.cold.read(name).await?;
        let spool_dir = spool.to_owned();
        let expect: Vec<(String, Option<String>)> = members
            .iter()
            .map(|m| (m.path.clone(), m.blake3.clone()))
            .collect();
        let agg = name.to_owned();
        let got = aggregate::extract(name, reader, &tar, &wanted, move |i, mut body| {
            let file = spool_dir.join(i.to_string());
            let (path, want) = expect[i].clone();
            let agg = agg.clone();
            async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut out = tokio::fs::File::create(&file)
                    .await
                    .map_err(|e| ColdError::Failed(format!("spooling {path}: {e}")))?;
                let mut h = blake3::Hasher::new();
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = body.read(&mut buf).await.map_err(|e| {
                        ColdError::Failed(format!("reading {path} from {agg}: {e}"))
                    })?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    out.write_all(&buf[..n])
                        .await
                        .map_err(|e| ColdError::Failed(format!("spooling {path}: {e}")))?;
                }
                out.flush()
                    .await
                    .map_err(|e| ColdError::Failed(format!("spooling {path}: {e}")))?;
                let hash = h.finalize().to_hex().to_string();
                match want {
                    Some(w) if w != hash => Err(ColdError::Corrupt(format!(
                        "aggregate {agg} is corrupt: member {path} fails its blake3 checksum"
                    ))),
                    _ => Ok(()),
                }
            }
        })
        .await;
        let affected = || {
            let mut v: Vec<&str> = members
                .iter()
                .filter(|m| m.restore)
                .map(|m| m.path.as_str())
                .collect();
            v.truncate(20);
            v.join(", ")
        };
        let got = got.map_err(|e| match e {
            ColdError::Failed(m) => {
                ColdError::Failed(format!("{m}; files affected: {}", affected()))
            }
            ColdError::Corrupt(m) => {
                ColdError::Corrupt(format!("{m}; files affected: {}", affected()))
            }
            other => other,
        })?;
        if got.size != sums.size || got.adler32 != sums.adler32 || got.blake3 != sums.blake3 {
            return Err(ColdError::Corrupt(format!(
                "aggregate {name} is corrupt: read {} bytes with adler32 {:08x}, recorded {} bytes with adler32 {:08x}; files affected: {}",
                got.size,
                got.adler32,
                sums.size,
                sums.adler32,
                affected()
            )));
        }
        let mut restored = Vec::new();
        for (i, m) in members.iter().enumerate().filter(|(_, m)| m.restore) {
            let key = nlds_storage::s3::restored_key(m.transaction_id, &m.path, tag);
            let body = aws_sdk_s3::primitives::ByteStream::from_path(spool.join(i.to_string()))
                .await
                .map_err(|e| ColdError::Failed(format!("reading the spooled {}: {e}", m.path)))?;
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    nlds_storage::cold::from_s3(S3Error::from_sdk(
                        format!("restoring {} to the warm tier", m.path),
                        &e,
                    ))
                })?;
            restored.push(nlds_core::message::RestoredFile {
                file_id: m.file_id,
                object: nlds_core::message::ObjectRef {
                    bucket: self.bucket.clone(),
                    key,
                    tenancy: None,
                },
            });
        }
        Ok(restored)
    }
}

#[async_trait]
impl Handler for ArchiveGet {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        match (key.worker, key.action, &env.payload) {
            (
                Worker::ArchiveGet,
                Action::Start | Action::PrepareCheck,
                Payload::ArchiveRecall { .. },
            ) => self.recall(&env).await,
            _ => Err(HandlerError::permanent(
                ErrorCode::BadRequest,
                format!("archive-get does not handle {key}"),
            )),
        }
    }
}
