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
//! every archive-put process may run one. With `[policy] enabled`, the policy decides what is
//! archived: the scheduler then asks only for a round's upkeep (purge sweep, stale recalls).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nlds_bus::{Bus, Handler, HandlerError, Outcome};
use nlds_core::message::{AggregateSums, ArchiveMember};
use nlds_core::{Action, Envelope, ErrorCode, FailedFile, Payload, RoutingKey, Worker};
use nlds_storage::cold::aggregate::{self, Checksums, member_of};
use nlds_storage::cold::{ByteReader, ColdError, ColdStore, StoredChecksum};
use nlds_storage::s3::{S3Clients, S3Error};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The archive-put handler.
pub struct ArchivePut {
    /// Warm copies are read with the client of the tenancy their object reference names.
    s3: S3Clients,
    cold: Arc<dyn ColdStore>,
    /// Accept an aggregate the store reports no checksum for (`[workers.archive]
    /// accept_unverified`); refused otherwise, unless the store verifies its writes itself.
    accept_unverified: bool,
}

impl ArchivePut {
    /// Reads warm copies from the default object store only.
    pub fn new(s3: aws_sdk_s3::Client, cold: Arc<dyn ColdStore>) -> Self {
        Self::with_clients(S3Clients::single(s3, String::new()), cold)
    }

    /// Reads each warm copy with the client of the tenancy its object reference names.
    pub fn with_clients(s3: S3Clients, cold: Arc<dyn ColdStore>) -> Self {
        Self {
            s3,
            cold,
            accept_unverified: false,
        }
    }

    /// Accepts aggregates the store reports no checksum for (see [`ColdStore::verifies_writes`]).
    pub fn accept_unverified(mut self, accept: bool) -> Self {
        self.accept_unverified = accept;
        self
    }

    /// `archive-put.del`: removes an aggregate whose members were all deleted and purged (the
    /// catalogue has forgotten it already). Removing a missing one is not an error.
    async fn remove(&self, env: &Envelope, name: &str) -> Result<Outcome, HandlerError> {
        match self.cold.remove(name).await {
            Ok(()) => {
                tracing::info!(aggregation = %name, transaction_id = %env.transaction_id,
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
                        let s3 = s3.map_err(nlds_storage::cold::from_s3)?;
                        if size > SMALL_OBJECT {
                            // Large members are read with several ranged GETs at once.
                            return nlds_storage::ranged::open(
                                &s3,
                                &bucket,
                                &key,
                                size,
                                nlds_storage::ranged::Ranges::default(),
                                &format!("reading the warm copy of {path}"),
                            )
                            .await
                            .map_err(nlds_storage::cold::from_s3);
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
                Err(ColdError::Corrupt(format!(
                    "aggregate {name} failed verification: the {} store reports adler32 {got:08x}, {:08x} was written",
                    self.cold.kind(),
                    sent.adler32
                )))
            }
            Some(StoredChecksum::Crc32c(got)) if got != sent.crc32c => {
                Err(ColdError::Corrupt(format!(
                    "aggregate {name} failed verification: the {} store reports crc32c {got:08x}, {:08x} was written",
                    self.cold.kind(),
                    sent.crc32c
                )))
            }
            Some(_) => Ok(()),
            None if self.cold.verifies_writes() => Ok(()),
            None if self.accept_unverified => {
                tracing::warn!(aggregation = %name, store = self.cold.kind(),
                    "the cold store reports no checksum: aggregate accepted unverified (accept_unverified)");
                Ok(())
            }
            None => Err(ColdError::Failed(format!(
                "aggregate {name} cannot be verified: the {} store reports no checksum of what it \
                 holds (refused; [workers.archive] accept_unverified = true accepts such copies)",
                self.cold.kind()
            ))),
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
                    // A copy that does not verify says so; any other failure is a storage error.
                    match e {
                        ColdError::Corrupt(_) => ErrorCode::ChecksumMismatch,
                        _ => ErrorCode::StorageError,
                    },
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
        Err(e) => Err(nlds_storage::cold::from_s3(S3Error::from_sdk(
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

#[cfg(test)]
mod tests;

/// Asks the catalogue for an archive round now.
pub async fn request_round(bus: &dyn Bus) -> Result<Uuid, nlds_bus::BusError> {
    let (key, env) = nlds_core::workflow::archive_round();
    bus.publish(key, &env).await?;
    Ok(env.transaction_id)
}

/// Asks the catalogue for a round's upkeep only (the purge sweep, stale recalls): what the
/// scheduler asks for when the policy decides what is archived.
pub async fn request_upkeep(bus: &dyn Bus) -> Result<Uuid, nlds_bus::BusError> {
    let (key, mut env) = nlds_core::workflow::archive_round();
    env.payload = Payload::ArchiveSelect {
        file_ids: Vec::new(),
    };
    bus.publish(key, &env).await?;
    Ok(env.transaction_id)
}

/// Requests a round every `interval` until `shutdown` (nothing when `interval` is zero); with
/// `upkeep_only` (`[policy] enabled`), a round that archives nothing (the policy archives).
pub async fn run_scheduler(
    bus: Arc<dyn Bus>,
    interval: Duration,
    upkeep_only: bool,
    shutdown: CancellationToken,
) {
    if interval.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let asked = if upkeep_only {
                    request_upkeep(bus.as_ref()).await
                } else {
                    request_round(bus.as_ref()).await
                };
                if let Err(e) = asked {
                    tracing::warn!(error = %e, "could not request an archive round; will try at the next tick");
                }
            }
        }
    }
}
