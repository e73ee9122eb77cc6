//! `s3-glacier`: the cloud user's tape. Aggregates are objects of ONE S3 bucket, written with a
//! cold storage class (`GLACIER` or `DEEP_ARCHIVE`) and recalled with RestoreObject.
//!
//! # Layout
//! Aggregate `name` is the object `<prefix><name>` of [`GlacierConfig::store`]`.bucket` (default
//! prefix `cold/`, so the cold tier can share the warm tier's bucket: the warm tier lives under
//! `tx/`).
//!
//! # Writing and verifying
//! The aggregate is streamed, never held whole: at most `part_size` bytes are in memory, two
//! parts while a part uploads and the next one is read.
//! - up to `part_size` bytes: one PutObject;
//! - above: a multipart upload (parts of `part_size`, grown when an aggregate would need more
//!   than 10,000 parts), aborted on any failure.
//!
//! Every request carries the CRC32C of its bytes (`x-amz-checksum-crc32c`, computed here while
//! streaming), so S3 rejects bytes damaged in transit. After completion a HeadObject with checksum
//! mode checks the size and S3's checksum: for a single PutObject the full-object CRC32C; for a
//! multipart upload S3's composite value `crc32c(crc(part 1) ‖ … ‖ crc(part N))-N`, recomputed
//! here (turn that check off with `verify_multipart_checksum` for stores that compute it wrongly,
//! see below; the parts stay validated one by one). A store that reports no checksum is accepted:
//! it validated the checksum of every request. Any failure after the object became visible
//! removes it, so a failed write leaves nothing under the name. A write that fails before
//! completion never replaced the previous object (S3 writes are atomic), which stays untouched.
//!
//! # Online state, staging, evicting
//! An object is online when its class is not an archive class (and no Intelligent-Tiering archive
//! tier holds it), or when `x-amz-restore` says `ongoing-request="false"` with an expiry date in
//! the future (a restored copy exists). [`ColdStore::stage`] asks for a restored copy of
//! `restore_days` days at `restore_tier`; a restore already in progress, an already restored copy
//! and an object that is not archived at all are all success. S3 cannot drop a restored copy
//! before it expires, so [`ColdStore::evict`] is a no-op: the copy expires after `restore_days`.
//!
//! # Checksums reported
//! [`ColdStore::checksum`] is the full-object CRC32C S3 holds for a single-part object (S3
//! validated it against the bytes at write time), `None` for a multipart object: S3 only keeps a
//! composite of the part checksums, which is not a checksum of the bytes a reader computes; those
//! parts were validated one by one, and the composite checked, when they were written.
//!
//! # moto (the test server)
//! moto 5.2 keeps the storage class, fails GetObject on an unrestored archived object with
//! `InvalidObjectState` and restores at once (the first HeadObject after RestoreObject shows
//! `ongoing-request="false"`). It does NOT validate checksums: it stores the CRC32C a PutObject
//! sends and reports it back, ignores part checksums, and computes a multipart object's composite
//! itself, with CRC32 in place of CRC32C unless its optional `crc32c` Python package is
//! installed (it is not in `scripts/services.sh`). HeadObject omits the `-N` suffix and the
//! checksum type of a multipart object (GetObject has them). The tests probe the server and
//! turn `verify_multipart_checksum` off when its composite is wrong.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    ArchiveStatus, ChecksumMode, ChecksumType, GlacierJobParameters, RestoreRequest, StorageClass,
    Tier,
};
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};

use super::{
    AggregateStat, ByteReader, ColdError, ColdResult, ColdStore, StoredChecksum, check_name,
    from_s3,
};
use crate::s3::{self, S3Error};

/// S3's smallest part (but the last).
const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's largest part, and largest single PutObject.
const MAX_PART_SIZE: u64 = 5 << 30;
/// S3's most parts per upload.
const MAX_PARTS: u64 = 10_000;
/// Restore requests in flight per [`ColdStore::stage`] call.
const STAGE_CONCURRENCY: usize = 8;

mod checksums;
mod cleanup;
mod write;

use checksums::{decode_crc, is_multipart_etag, split_part_count};
use cleanup::Cleanup;
#[cfg(test)]
use write::part_size_for;

pub use nlds_settings::GlacierConfig;

/// The checks of [`GlacierConfig`] (defined in `nlds-settings`) that need the S3 SDK's types.
trait GlacierChecks {
    /// Checks the settings without contacting the store.
    #[cfg(test)]
    fn validate(&self) -> ColdResult<()>;
    fn settings(&self) -> ColdResult<Settings>;
}

impl GlacierChecks for GlacierConfig {
    #[cfg(test)]
    fn validate(&self) -> ColdResult<()> {
        self.settings().map(|_| ())
    }

    fn settings(&self) -> ColdResult<Settings> {
        let bad = |m: String| ColdError::Failed(format!("invalid [workers.cold.glacier]: {m}"));
        if self.store.bucket.trim().is_empty() {
            return Err(bad("bucket is empty".into()));
        }
        if self.prefix.starts_with('/') {
            return Err(bad(format!(
                "prefix {:?} must not start with '/'",
                self.prefix
            )));
        }
        let storage_class = match self.storage_class.to_ascii_uppercase().as_str() {
            "GLACIER" => StorageClass::Glacier,
            "DEEP_ARCHIVE" => StorageClass::DeepArchive,
            other => {
                return Err(bad(format!(
                    "storage_class {other:?}: expected GLACIER or DEEP_ARCHIVE"
                )));
            }
        };
        let tier = match self.restore_tier.to_ascii_lowercase().as_str() {
            "standard" => Tier::Standard,
            "bulk" => Tier::Bulk,
            "expedited" if storage_class == StorageClass::DeepArchive => {
                return Err(bad(
                    "restore_tier Expedited is not available for DEEP_ARCHIVE".into(),
                ));
            }
            "expedited" => Tier::Expedited,
            other => {
                return Err(bad(format!(
                    "restore_tier {other:?}: expected Standard, Bulk or Expedited"
                )));
            }
        };
        let days = i32::try_from(self.restore_days)
            .ok()
            .filter(|d| *d >= 1)
            .ok_or_else(|| bad(format!("restore_days {} is not >= 1", self.restore_days)))?;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(bad(format!(
                "part_size {} is outside S3's limits (5 MiB to 5 GiB)",
                self.part_size
            )));
        }
        let job = GlacierJobParameters::builder()
            .tier(tier)
            .build()
            .map_err(|e| bad(format!("restore parameters: {e}")))?;
        Ok(Settings {
            prefix: self.prefix.clone(),
            storage_class,
            restore: RestoreRequest::builder()
                .days(days)
                .glacier_job_parameters(job)
                .build(),
            part_size: self.part_size,
            verify_multipart_checksum: self.verify_multipart_checksum,
        })
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
struct Settings {
    prefix: String,
    storage_class: StorageClass,
    restore: RestoreRequest,
    part_size: u64,
    verify_multipart_checksum: bool,
}

/// The `s3-glacier` backend (see the module docs).
pub struct GlacierStore {
    client: Client,
    bucket: String,
    s: Settings,
}

impl fmt::Debug for GlacierStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlacierStore")
            .field("bucket", &self.bucket)
            .field("prefix", &self.s.prefix)
            .field("storage_class", &self.s.storage_class)
            .field("part_size", &self.s.part_size)
            .finish_non_exhaustive()
    }
}

impl GlacierStore {
    /// A store on the S3 client [`s3::client`] builds from `cfg.store`. Does not contact the store.
    pub async fn new(cfg: &GlacierConfig) -> ColdResult<Self> {
        let settings = cfg.settings()?;
        let client = s3::client(&cfg.store).await.map_err(|e| {
            from_s3(S3Error {
                message: format!("s3-glacier: {}", e.message),
                ..e
            })
        })?;
        Ok(Self {
            client,
            bucket: cfg.store.bucket.clone(),
            s: settings,
        })
    }

    /// A store on an existing client (its endpoint and credentials win over `cfg.store`'s).
    pub fn with_client(client: Client, cfg: &GlacierConfig) -> ColdResult<Self> {
        Ok(Self {
            client,
            bucket: cfg.store.bucket.clone(),
            s: cfg.settings()?,
        })
    }

    /// Creates the bucket if it is missing.
    pub async fn ensure_bucket(&self) -> ColdResult<()> {
        s3::ensure_bucket(&self.client, &self.bucket)
            .await
            .map_err(from_s3)
    }

    /// The object key of aggregate `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.s.prefix)
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn stage_one(&self, name: &str) -> ColdResult<()> {
        let key = self.key(name);
        let result = self
            .client
            .restore_object()
            .bucket(&self.bucket)
            .key(&key)
            .restore_request(self.s.restore.clone())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match error_code(&e) {
                // Staging is idempotent: a recall already under way is what we asked for.
                Some("RestoreAlreadyInProgress") => Ok(()),
                // Not archived (e.g. put in another class by hand): readable as it is.
                Some("InvalidObjectState" | "ObjectAlreadyInActiveTierError") => Ok(()),
                Some("NoSuchKey") => Err(ColdError::NotFound(name.to_owned())),
                _ if status(&e) == Some(404) && error_code(&e) != Some("NoSuchBucket") => {
                    Err(ColdError::NotFound(name.to_owned()))
                }
                _ => Err(classify(
                    format!("staging aggregate {name} from {}", self.url(&key)),
                    &e,
                )),
            },
        }
    }
}

#[async_trait]
impl ColdStore for GlacierStore {
    fn kind(&self) -> &'static str {
        "s3-glacier"
    }

    /// S3 validates the CRC32C sent with every part (or the whole object) of a write.
    fn verifies_writes(&self) -> bool {
        true
    }

    /// The multipart uploads of aggregates under the prefix nobody has added a part to for
    /// `idle` (a killed archive-put's): aborted.
    async fn sweep_partials(&self, idle: std::time::Duration) -> ColdResult<Vec<String>> {
        cleanup::sweep_uploads(&self.client, &self.bucket, &self.s.prefix, idle).await
    }

    async fn list(&self) -> ColdResult<Option<Vec<(String, u64)>>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.s.prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| classify(format!("listing {}", self.url(&self.s.prefix)), &e))?;
            for o in page.contents() {
                let Some(name) = o.key().and_then(|k| k.strip_prefix(self.s.prefix.as_str()))
                else {
                    continue;
                };
                if check_name(name).is_ok() {
                    out.push((name.to_owned(), o.size().unwrap_or(0).max(0) as u64));
                }
            }
        }
        out.sort();
        Ok(Some(out))
    }

    async fn write(&self, name: &str, size: u64, mut body: ByteReader) -> ColdResult<()> {
        check_name(name)?;
        let key = self.key(name);
        let written = if size <= self.s.part_size {
            self.put_single(name, &key, size, &mut body).await?
        } else {
            self.put_multipart(name, &key, size, &mut body).await?
        };
        // The object is visible now: whatever goes wrong (or if this future is dropped), remove it.
        let mut cleanup = Cleanup::delete(&self.client, &self.bucket, &key);
        match self.verify(name, &key, &written).await {
            Ok(()) => {
                cleanup.disarm();
                tracing::debug!(
                    name,
                    key,
                    size,
                    parts = written.parts.len(),
                    "aggregate written"
                );
                Ok(())
            }
            Err(e) => {
                cleanup.run().await;
                Err(e)
            }
        }
    }

    async fn stat(&self, name: &str) -> ColdResult<Option<AggregateStat>> {
        check_name(name)?;
        let key = self.key(name);
        let head = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(h) => h,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => {
                return Err(classify(
                    format!("stat of aggregate {name} at {}", self.url(&key)),
                    &e,
                ));
            }
        };
        let size = head
            .content_length()
            .and_then(|l| u64::try_from(l).ok())
            .ok_or_else(|| {
                ColdError::Failed(format!(
                    "the store reported no size for aggregate {name} at {}",
                    self.url(&key)
                ))
            })?;
        Ok(Some(AggregateStat {
            size,
            online: is_online(
                head.storage_class(),
                head.archive_status(),
                head.restore(),
                Utc::now(),
            ),
        }))
    }

    async fn checksum(&self, name: &str) -> ColdResult<Option<StoredChecksum>> {
        check_name(name)?;
        let key = self.key(name);
        let head = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(h) => h,
            Err(e) if is_not_found(&e) => return Err(ColdError::NotFound(name.to_owned())),
            Err(e) => {
                return Err(classify(
                    format!(
                        "reading the checksum of aggregate {name} at {}",
                        self.url(&key)
                    ),
                    &e,
                ));
            }
        };
        let Some(value) = head.checksum_crc32_c() else {
            return Ok(None);
        };
        let (encoded, parts) = split_part_count(value);
        let full_object = match head.checksum_type() {
            Some(ChecksumType::FullObject) => parts.is_none(),
            Some(ChecksumType::Composite) => false,
            // Untyped: a `-N` suffix or a multipart ETag (`"…-N"`) marks a composite.
            _ => parts.is_none() && !is_multipart_etag(head.e_tag()),
        };
        if !full_object {
            return Ok(None);
        }
        decode_crc(encoded)
            .map(|c| Some(StoredChecksum::Crc32c(c)))
            .ok_or_else(|| {
                ColdError::Failed(format!(
                    "the store reported an unreadable CRC32C {value:?} for aggregate {name}"
                ))
            })
    }

    async fn stage(&self, names: &[String]) -> ColdResult<()> {
        for name in names {
            check_name(name)?;
        }
        // Collected first: a lazy `map` closure inside the boxed future trips a higher-ranked
        // lifetime error of the Send check.
        let requests: Vec<_> = names.iter().map(|n| self.stage_one(n)).collect();
        let results: Vec<ColdResult<()>> = stream::iter(requests)
            .buffer_unordered(STAGE_CONCURRENCY)
            .collect()
            .await;
        let mut errors: Vec<ColdError> = results.into_iter().filter_map(Result::err).collect();
        // A transient failure first: the caller retries the whole (idempotent) request.
        match errors.iter().position(ColdError::is_transient) {
            Some(i) => Err(errors.swap_remove(i)),
            None if errors.is_empty() => Ok(()),
            None => Err(errors.swap_remove(0)),
        }
    }

    async fn read(&self, name: &str) -> ColdResult<ByteReader> {
        check_name(name)?;
        let key = self.key(name);
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(out) => Ok(Box::pin(out.body.into_async_read())),
            Err(e) => Err(match e.as_service_error() {
                Some(s) if s.is_invalid_object_state() => ColdError::Offline(name.to_owned()),
                Some(s) if s.is_no_such_key() => ColdError::NotFound(name.to_owned()),
                _ => classify(
                    format!("reading aggregate {name} from {}", self.url(&key)),
                    &e,
                ),
            }),
        }
    }

    /// A no-op: S3 cannot drop a restored copy early; it expires after `restore_days`.
    async fn evict(&self, name: &str) -> ColdResult<()> {
        check_name(name)
    }

    async fn remove(&self, name: &str) -> ColdResult<()> {
        check_name(name)?;
        let key = self.key(name);
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) && error_code(&e) != Some("NoSuchBucket") => Ok(()),
            Err(e) => Err(classify(
                format!("removing aggregate {name} at {}", self.url(&key)),
                &e,
            )),
        }
    }
}

/// Readable without a restore, or restored.
fn is_online(
    class: Option<&StorageClass>,
    archive_status: Option<&ArchiveStatus>,
    restore: Option<&str>,
    now: DateTime<Utc>,
) -> bool {
    let archived = archive_status.is_some()
        || matches!(
            class,
            Some(StorageClass::Glacier | StorageClass::DeepArchive)
        );
    !archived || restore.is_some_and(|r| restored_copy_available(r, now))
}

/// `x-amz-restore: ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"` means a
/// restored copy until the expiry date; `ongoing-request="true"` a restore under way.
fn restored_copy_available(header: &str, now: DateTime<Utc>) -> bool {
    if restore_field(header, "ongoing-request") != Some("false") {
        return false;
    }
    match restore_field(header, "expiry-date").map(DateTime::parse_from_rfc2822) {
        Some(Ok(expiry)) => expiry > now,
        // No (readable) expiry: trust the store's "not ongoing".
        _ => true,
    }
}

fn restore_field<'a>(header: &'a str, field: &str) -> Option<&'a str> {
    let start = header.find(&format!("{field}=\""))? + field.len() + 2;
    let rest = &header[start..];
    Some(&rest[..rest.find('"')?])
}

/// Connection failures, timeouts, 5xx and throttling are [`ColdError::Unavailable`].
fn classify<E>(context: impl fmt::Display, err: &SdkError<E>) -> ColdError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    from_s3(S3Error::from_sdk(context, err))
}

fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    err.as_service_error().and_then(|e| e.code())
}

fn status<E>(err: &SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// HeadObject answers a missing key with a bare 404.
fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    status(err) == Some(404) && error_code(err) != Some("NoSuchBucket")
}

#[cfg(test)]
mod tests;
