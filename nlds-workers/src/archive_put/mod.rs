//! The archive-put role: writes an aggregate to the cold store, streaming its members from the
//! warm tier (no local copy), and verifies it with the store before reporting it stored.
//!
//! `archive-put.start` ([`Payload::ArchiveAggregate`]) → tar stream ([`aggregate::stream`]) →
//! [`ColdStore::write`] → [`ColdStore::checksum`] compared with the checksums of the bytes sent →
//! `archive-put.complete` ([`Payload::ArchiveStored`]). A store that cannot be reached is a
//! transient failure (the bus retries with back-off; the catalogue's lease frees the files if the
//! retries run out); a write that fails or does not verify is removed from the store and reported
//! as `archive-put.failed`, which makes the catalogue forget the aggregation.
//!
//! `archive-put.del` ([`Payload::ArchiveRemove`]) removes an aggregate whose members were all
//! deleted and purged (see `catalogue::delete`).
//!
//! The scheduler ([`run_scheduler`]) also lives here: every `archive.interval_secs` it asks the
//! catalogue for a round (`catalog-archive-next.start`). Rounds are safe to run concurrently, so
//! every archive-put process may run one.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nlds_bus::{Bus, Handler, HandlerError, Outcome};
use nlds_core::message::{AggregateSums, ArchiveMember, RecallMember};
use nlds_core::{Action, Envelope, ErrorCode, FailedFile, Payload, RoutingKey, Worker};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::catalogue::member_of;
use crate::cold::aggregate::{self, Checksums};
use crate::cold::{ByteReader, ColdError, ColdStore, StoredChecksum};
use crate::s3::{S3Clients, S3Error};

/// The archive-put handler.
pub struct ArchivePut {
    /// Warm copies are read with the client of the tenancy their object reference names.
    s3: S3Clients,
    cold: Arc<dyn ColdStore>,
}

impl ArchivePut {
    /// Reads warm copies from the default object store only.
    pub fn new(s3: aws_sdk_s3::Client, cold: Arc<dyn ColdStore>) -> Self {
        Self::with_clients(S3Clients::single(s3, String::new()), cold)
    }

    /// Reads each warm copy with the client of the tenancy its object reference names.
    pub fn with_clients(s3: S3Clients, cold: Arc<dyn ColdStore>) -> Self {
        Self { s3, cold }
    }

    /// `archive-put.del`: removes an aggregate whose members were all deleted and purged (the
    /// catalogue has forgotten it already). Removing a missing one is not an error.
    async fn remove(&self, env: &Envelope, name: &str) -> Result<Outcome, HandlerError> {
        match self.cold.remove(name).await {
            Ok(()) => {
                tracing::info!(aggregation = %name, transaction.id = %env.transaction_id,
                    "aggregate removed from the cold store (every member deleted)");
                Ok(Outcome::none())
            }
            Err(e) if e.is_transient() => Err(HandlerError::transient(
                e.code(),
                format!("removing aggregate {name}: {e}"),
            )),
            Err(e) => Err(HandlerError::permanent(
                e.code(),
                format!("removing aggregate {name}: {e}"),
            )),
        }
    }

    async fn write(
        &self,
        env: &Envelope,
        aggregation_id: i64,
        name: &str,
        members: &[ArchiveMember],
    ) -> Result<Outcome, HandlerError> {
        let tar: Vec<aggregate::Member> = members.iter().map(member_of).collect();
        let layout = aggregate::layout(&tar).map_err(|e| fail(name, &e))?;
        // Each member's client is picked by the tenancy its warm copy lives under.
        let objects: Vec<(Result<aws_sdk_s3::Client, S3Error>, String, String, String)> = members
            .iter()
            .map(|m| {
                let client = self
                    .s3
                    .for_tenancy(m.object.tenancy.as_deref())
                    .cloned()
                    .map_err(|e| S3Error {
                        message: format!("reading the warm copy of {}: {}", m.path, e.message),
                        ..e
                    });
                (
                    client,
                    m.object.bucket.clone(),
                    m.object.key.clone(),
                    m.path.clone(),
                )
            })
            .collect();
        // Members are opened ahead of the tar writer, PREFETCH at a time, in order: small
        // objects are read whole (at most PREFETCH x SMALL_OBJECT bytes buffered), large ones
        // stream. One GET after the other would make small files latency-bound.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<ByteReader, ColdError>>(PREFETCH);
        let sizes: Vec<u64> = members.iter().map(|m| m.size).collect();
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut opened = futures::stream::iter(objects.into_iter().zip(sizes).map(
                |((s3, bucket, key, path), size)| {
                    async move {
                        let s3 = s3.map_err(crate::cold::from_s3)?;
                        if size > SMALL_OBJECT {
                            // Large members are read with several ranged GETs at once.
                            return crate::ranged::open(
                                &s3,
                                &bucket,
                                &key,
                                size,
                                crate::ranged::Ranges::default(),
                                &format!("reading the warm copy of {path}"),
                            )
                            .await
                            .map_err(crate::cold::from_s3);
                        }
                        let body = open_object(&s3, &bucket, &key, &path).await?;
                        let mut buf = Vec::with_capacity(size as usize);
                        let mut body = body;
                        tokio::io::AsyncReadExt::read_to_end(&mut body, &mut buf)
                            .await
                            .map_err(|e| {
                                ColdError::Unavailable(format!(
                                    "reading the warm copy of {path}: {e}"
                                ))
                            })?;
                        Ok(aggregate::from_bytes(buf))
                    }
                },
            ))
            .buffered(PREFETCH);
            while let Some(r) = opened.next().await {
                if tx.send(r).await.is_err() {
                    break;
                }
            }
        });
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let (reader, sums) =
            aggregate::stream(tar, move |_| {
                let rx = rx.clone();
                async move {
                    rx.lock().await.recv().await.unwrap_or_else(|| {
                        Err(ColdError::Failed("the member prefetch stopped".into()))
                    })
                }
            });
        let written = self.cold.write(name, layout.size, reader).await;
        let streamed = sums
            .await
            .unwrap_or_else(|_| Err(ColdError::Failed("the aggregate stream was dropped".into())));
        let sums = match (streamed, written) {
            (Ok(sums), Ok(())) => sums,
            // A store that went away is retried, whatever the stream saw.
            (_, Err(w)) if w.is_transient() => return self.failed(env, name, w).await,
            // A store that stopped reading explains the stream's broken pipe...
            (Err(ColdError::ReaderGone(_)), Err(w)) => {
                return self.failed(env, name, w).await;
            }
            // ...and a member that could not be read explains a short write.
            (Err(e), _) | (Ok(_), Err(e)) => return self.failed(env, name, e).await,
        };
        if let Err(e) = self.verify(name, &sums).await {
            return self.failed(env, name, e).await;
        }
        tracing::info!(aggregation = %name, bytes = sums.size, adler32 = format!("{:08x}", sums.adler32),
            "aggregate written and verified");
        Ok(Outcome::publish(
            RoutingKey::new(Worker::ArchivePut, Action::Complete),
            env.reply(Payload::ArchiveStored {
                aggregation_id,
                name: name.to_owned(),
                sums: AggregateSums {
                    size: sums.size,
                    adler32: sums.adler32,
                    crc32c: sums.crc32c,
                    blake3: sums.blake3,
                },
            }),
        ))
    }

    /// Compares the store's own checksum of what it holds with the checksums of what was sent.
    async fn verify(&self, name: &str, sent: &Checksums) -> Result<(), ColdError> {
        match self.cold.checksum(name).await? {
            Some(StoredChecksum::Adler32(got)) if got != sent.adler32 => {
                Err(ColdError::Failed(format!(
                    "aggregate {name} failed verification: the {} store reports adler32 {got:08x}, {:08x} was written",
                    self.cold.kind(),
                    sent.adler32
                )))
            }
            Some(StoredChecksum::Crc32c(got)) if got != sent.crc32c => {
                Err(ColdError::Failed(format!(
                    "aggregate {name} failed verification: the {} store reports crc32c {got:08x}, {:08x} was written",
                    self.cold.kind(),
                    sent.crc32c
                )))
            }
            _ => Ok(()),
        }
    }

    /// A transient failure goes back to the bus (retried with back-off); any other removes what
    /// was written and reports the aggregate failed.
    async fn failed(
        &self,
        env: &Envelope,
        name: &str,
        e: ColdError,
    ) -> Result<Outcome, HandlerError> {
        if e.is_transient() {
            return Err(HandlerError::transient(e.code(), e.to_string()));
        }
        if let Err(rm) = self.cold.remove(name).await {
            tracing::warn!(aggregation = %name, error = %rm, "could not remove a failed aggregate");
        }
        tracing::warn!(aggregation = %name, error = %e, "aggregate not archived");
        Ok(Outcome::publish(
            RoutingKey::new(Worker::ArchivePut, Action::Failed),
            env.reply(Payload::Failed {
                files: vec![FailedFile::new(
                    format!("aggregate {name}"),
                    ErrorCode::StorageError,
                    e.to_string(),
                )],
            }),
        ))
    }
}

/// Members opened ahead of the tar writer.
const PREFETCH: usize = 32;
/// Members up to this size are read whole when prefetched.
const SMALL_OBJECT: u64 = 1 << 20;

/// Staging checks between two repeated stage requests.
const STAGE_REPEAT: u32 = 10;

fn fail(name: &str, e: &ColdError) -> HandlerError {
    HandlerError::permanent(ErrorCode::Internal, format!("aggregate {name}: {e}"))
}

/// A warm object as a stream.
async fn open_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    path: &str,
) -> Result<ByteReader, ColdError> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => Ok(Box::pin(o.body.into_async_read())),
        Err(e) => Err(crate::cold::from_s3(S3Error::from_sdk(
            format!("reading the warm copy of {path}"),
            &e,
        ))),
    }
}

#[async_trait]
impl Handler for ArchivePut {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        match (key.worker, key.action, &env.payload) {
            (
                Worker::ArchivePut,
                Action::Start,
                Payload::ArchiveAggregate {
                    aggregation_id,
                    name,
                    members,
                    ..
                },
            ) => self.write(&env, *aggregation_id, name, members).await,
            (Worker::ArchivePut, Action::Del, Payload::ArchiveRemove { name, .. }) => {
                self.remove(&env, name).await
            }
            _ => Err(HandlerError::permanent(
                ErrorCode::BadRequest,
                format!("archive-put does not handle {key}"),
            )),
        }
    }
}

/// Asks the catalogue for an archive round now.
pub async fn request_round(bus: &dyn Bus) -> Result<Uuid, nlds_bus::BusError> {
    let (key, env) = nlds_core::workflow::archive_round();
    bus.publish(key, &env).await?;
    Ok(env.transaction_id)
}

/// Requests a round every `interval` until `shutdown` (nothing when `interval` is zero).
pub async fn run_scheduler(bus: Arc<dyn Bus>, interval: Duration, shutdown: CancellationToken) {
    if interval.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = request_round(bus.as_ref()).await {
                    tracing::warn!(error = %e, "could not request an archive round; will try at the next tick");
                }
            }
        }
    }
}

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
    spool: std::path::PathBuf,
}

impl ArchiveGet {
    pub fn new(
        s3: aws_sdk_s3::Client,
        bucket: String,
        cold: Arc<dyn ColdStore>,
        bus: Arc<dyn Bus>,
        cfg: &crate::catalogue::ArchiveConfig,
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
            spool: cfg.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
        }
    }

    async fn recall(
        &self,
        env: &Envelope,
        name: &str,
        aggregation_id: i64,
        members: &[RecallMember],
        sums: &AggregateSums,
        checks: u32,
    ) -> Result<Outcome, HandlerError> {
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
                    state: nlds_core::State::ArchiveGetting,
                }),
            )
            .await
        {
            tracing::warn!(error = %e, "could not report recall progress");
        }
        let spool = self.spool.join(format!(
            "nlds-recall-{aggregation_id}-{}",
            Uuid::new_v4().simple()
        ));
        let result = self.restore(name, members, sums, &spool).await;
        let _ = tokio::fs::remove_dir_all(&spool).await;
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
                state: nlds_core::State::ArchivePreparing,
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
            let key = crate::s3::object_key(m.transaction_id, &m.path);
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
                    crate::cold::from_s3(S3Error::from_sdk(
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
                Payload::ArchiveRecall {
                    aggregation_id,
                    name,
                    members,
                    sums,
                    checks,
                },
            ) => {
                self.recall(&env, name, *aggregation_id, members, sums, *checks)
                    .await
            }
            _ => Err(HandlerError::permanent(
                ErrorCode::BadRequest,
                format!("archive-get does not handle {key}"),
            )),
        }
    }
}
