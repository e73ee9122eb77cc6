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
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ArchiveStatus, ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload,
    CompletedPart, GlacierJobParameters, RestoreRequest, StorageClass, Tier,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use tokio::io::AsyncReadExt;

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

    async fn put_single(
        &self,
        name: &str,
        key: &str,
        size: u64,
        body: &mut ByteReader,
    ) -> ColdResult<Written> {
        let data = read_part(name, body, size, 0, size).await?;
        expect_end(name, body, size).await?;
        let crc = crc32c::crc32c(&data);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .storage_class(self.s.storage_class.clone())
            .content_length(content_length(size)?)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .checksum_crc32_c(encode_crc(crc))
            .body(ByteStream::from(Bytes::from(data)))
            .send()
            .await
            .map_err(|e| classify(format!("writing aggregate {name} to {}", self.url(key)), &e))?;
        Ok(Written {
            size,
            full: crc,
            parts: Vec::new(),
        })
    }

    async fn put_multipart(
        &self,
        name: &str,
        key: &str,
        size: u64,
        body: &mut ByteReader,
    ) -> ColdResult<Written> {
        let part_size = part_size_for(size, self.s.part_size).ok_or_else(|| {
            ColdError::Failed(format!(
                "aggregate {name} of {size} bytes is larger than S3 allows"
            ))
        })?;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .storage_class(self.s.storage_class.clone())
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .checksum_type(ChecksumType::Composite)
            .send()
            .await
            .map_err(|e| {
                classify(
                    format!(
                        "starting the multipart upload of aggregate {name} to {}",
                        self.url(key)
                    ),
                    &e,
                )
            })?;
        let upload_id = created.upload_id().map(str::to_owned).ok_or_else(|| {
            ColdError::Failed(format!(
                "the store returned no upload id for aggregate {name}"
            ))
        })?;
        let mut cleanup = Cleanup::abort(&self.client, &self.bucket, key, &upload_id);
        let result = self
            .upload_parts(name, key, &upload_id, size, part_size, body)
            .await;
        match result {
            Ok(written) => {
                cleanup.disarm();
                Ok(written)
            }
            Err(Failure::BeforeCompletion(e)) => {
                cleanup.run().await;
                Err(e)
            }
            Err(Failure::Completion(e)) => {
                cleanup.run().await;
                // An ambiguous answer (connection cut, timeout, 5xx) may hide a completed
                // upload: make sure no unverified object stays under the name.
                if e.is_transient() {
                    Cleanup::delete(&self.client, &self.bucket, key).run().await;
                }
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        name: &str,
        key: &str,
        upload_id: &str,
        size: u64,
        part_size: u64,
        body: &mut ByteReader,
    ) -> Result<Written, Failure> {
        let total = size.div_ceil(part_size);
        let len_of = |number: u64| part_size.min(size - (number - 1) * part_size);
        let mut completed = Vec::new();
        let mut crcs = Vec::new();
        let mut full = 0u32;
        let mut next = Some(read_part(name, body, len_of(1), 0, size).await?);
        let mut number = 1u64;
        // Part `number` uploads while part `number + 1` is read.
        while let Some(data) = next.take() {
            let crc = crc32c::crc32c(&data);
            full = crc32c::crc32c_combine(full, crc, data.len());
            crcs.push(crc);
            let upload = self.upload_part(name, key, upload_id, number, crc, data);
            if number < total {
                let read = read_part(name, body, len_of(number + 1), number * part_size, size);
                let (part, data) = tokio::try_join!(upload, read)?;
                completed.push(part);
                next = Some(data);
            } else {
                completed.push(upload.await?);
            }
            number += 1;
        }
        expect_end(name, body, size).await?;
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                Failure::Completion(classify(
                    format!(
                        "completing the multipart upload of aggregate {name} to {}",
                        self.url(key)
                    ),
                    &e,
                ))
            })?;
        Ok(Written {
            size,
            full,
            parts: crcs,
        })
    }

    async fn upload_part(
        &self,
        name: &str,
        key: &str,
        upload_id: &str,
        number: u64,
        crc: u32,
        data: Vec<u8>,
    ) -> ColdResult<CompletedPart> {
        let number = i32::try_from(number)
            .map_err(|_| ColdError::Failed(format!("part number {number} is out of range")))?;
        let checksum = encode_crc(crc);
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(content_length(data.len() as u64)?)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .checksum_crc32_c(&checksum)
            .body(ByteStream::from(Bytes::from(data)))
            .send()
            .await
            .map_err(|e| {
                classify(
                    format!(
                        "uploading part {number} of aggregate {name} to {}",
                        self.url(key)
                    ),
                    &e,
                )
            })?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .checksum_crc32_c(checksum)
            .build())
    }

    /// After a write: the object has the size and the checksum we computed over the stream.
    async fn verify(&self, name: &str, key: &str, written: &Written) -> ColdResult<()> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| {
                classify(
                    format!(
                        "checking aggregate {name} at {} after writing it",
                        self.url(key)
                    ),
                    &e,
                )
            })?;
        let reported = Reported {
            size: head.content_length(),
            crc32c: head.checksum_crc32_c(),
            checksum_type: head.checksum_type(),
        };
        check_reported(&reported, written, self.s.verify_multipart_checksum).map_err(|m| {
            tracing::warn!(
                name,
                key,
                "aggregate failed verification after writing: {m}"
            );
            ColdError::Failed(format!(
                "aggregate {name} at {} failed verification after writing: {m}",
                self.url(key)
            ))
        })
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

/// What a write sent: its size, the CRC32C of all its bytes and of each part (none for a single
/// PutObject).
#[derive(Debug)]
struct Written {
    size: u64,
    full: u32,
    parts: Vec<u32>,
}

/// What HeadObject (checksum mode) reports after a write.
#[derive(Debug)]
struct Reported<'a> {
    size: Option<i64>,
    crc32c: Option<&'a str>,
    checksum_type: Option<&'a ChecksumType>,
}

/// Compares what the store reports with what was written; the error says what differs.
fn check_reported(
    reported: &Reported<'_>,
    written: &Written,
    verify_multipart: bool,
) -> Result<(), String> {
    if reported.size.and_then(|s| u64::try_from(s).ok()) != Some(written.size) {
        return Err(format!(
            "the store holds {} bytes, {} were written",
            reported
                .size
                .map_or_else(|| "an unknown number of".to_owned(), |s| s.to_string()),
            written.size
        ));
    }
    // A store that keeps no checksum validated the one sent with every request.
    let Some(value) = reported.crc32c else {
        return Ok(());
    };
    let (encoded, count) = split_part_count(value);
    let actual = decode_crc(encoded).ok_or_else(|| format!("unreadable CRC32C {value:?}"))?;
    let full_object = written.parts.is_empty()
        || matches!(reported.checksum_type, Some(ChecksumType::FullObject));
    let expected = if full_object {
        if count.is_some() {
            return Err(format!(
                "the store reports a multipart checksum {value:?} for a full-object one"
            ));
        }
        written.full
    } else {
        if !verify_multipart {
            return Ok(());
        }
        if let Some(n) = count
            && n != written.parts.len()
        {
            return Err(format!(
                "the store reports {n} part(s), {} were written",
                written.parts.len()
            ));
        }
        composite_crc32c(&written.parts)
    };
    if actual == expected {
        Ok(())
    } else {
        Err(format!(
            "the store reports CRC32C {value:?}, {} was computed over the stream{}",
            encode_crc(expected),
            if full_object {
                ""
            } else {
                " (composite of the parts)"
            }
        ))
    }
}

/// S3's composite checksum of a multipart object: the CRC32C of the big-endian part CRC32Cs.
fn composite_crc32c(parts: &[u32]) -> u32 {
    let bytes: Vec<u8> = parts.iter().flat_map(|c| c.to_be_bytes()).collect();
    crc32c::crc32c(&bytes)
}

/// `"abcd==-3"` → (`"abcd=="`, `Some(3)`); a value without a part count is returned whole.
fn split_part_count(value: &str) -> (&str, Option<usize>) {
    match value.rsplit_once('-') {
        Some((encoded, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (encoded, n.parse().ok())
        }
        _ => (value, None),
    }
}

/// A multipart upload's ETag: `"<hex>-<parts>"`.
fn is_multipart_etag(etag: Option<&str>) -> bool {
    etag.is_some_and(|e| split_part_count(e.trim_matches('"')).1.is_some())
}

fn encode_crc(crc: u32) -> String {
    aws_smithy_types::base64::encode(crc.to_be_bytes())
}

fn decode_crc(encoded: &str) -> Option<u32> {
    let bytes = aws_smithy_types::base64::decode(encoded).ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// The part size for an aggregate of `size` bytes: the configured one, grown (to whole MiB) when
/// the aggregate would need more than S3's 10,000 parts; `None` beyond S3's largest object.
fn part_size_for(size: u64, configured: u64) -> Option<u64> {
    const MIB: u64 = 1 << 20;
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    let part = configured.max(needed);
    (part <= MAX_PART_SIZE).then_some(part)
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

/// Reads exactly `len` bytes (the part at `offset` of an aggregate of `size`).
async fn read_part(
    name: &str,
    body: &mut ByteReader,
    len: u64,
    offset: u64,
    size: u64,
) -> ColdResult<Vec<u8>> {
    let len = usize::try_from(len)
        .map_err(|_| ColdError::Failed(format!("a part of {len} bytes does not fit in memory")))?;
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let n = body.read(&mut buf[filled..]).await.map_err(|e| {
            ColdError::Failed(format!("reading the stream of aggregate {name}: {e}"))
        })?;
        if n == 0 {
            return Err(ColdError::Failed(format!(
                "the stream of aggregate {name} ended after {} of its {size} bytes",
                offset + filled as u64
            )));
        }
        filled += n;
    }
    Ok(buf)
}

/// The stream must end after its declared size.
async fn expect_end(name: &str, body: &mut ByteReader, size: u64) -> ColdResult<()> {
    let mut probe = [0u8; 1];
    match body.read(&mut probe).await {
        Ok(0) => Ok(()),
        Ok(_) => Err(ColdError::Failed(format!(
            "the stream of aggregate {name} is longer than its declared {size} bytes"
        ))),
        Err(e) => Err(ColdError::Failed(format!(
            "reading the stream of aggregate {name}: {e}"
        ))),
    }
}

fn content_length(len: u64) -> ColdResult<i64> {
    i64::try_from(len).map_err(|_| ColdError::Failed(format!("{len} bytes is too large")))
}

/// Where a multipart upload failed: before CompleteMultipartUpload or in it.
enum Failure {
    BeforeCompletion(ColdError),
    Completion(ColdError),
}

impl From<ColdError> for Failure {
    fn from(e: ColdError) -> Self {
        Failure::BeforeCompletion(e)
    }
}

/// Undoes a write that did not finish: aborts its multipart upload or deletes its object. Run
/// explicitly on failure; if the write future is dropped first, runs in the background.
struct Cleanup {
    armed: Option<(Client, String, String, Option<String>)>,
}

impl Cleanup {
    fn abort(client: &Client, bucket: &str, key: &str, upload_id: &str) -> Self {
        Self {
            armed: Some((
                client.clone(),
                bucket.to_owned(),
                key.to_owned(),
                Some(upload_id.to_owned()),
            )),
        }
    }

    fn delete(client: &Client, bucket: &str, key: &str) -> Self {
        Self {
            armed: Some((client.clone(), bucket.to_owned(), key.to_owned(), None)),
        }
    }

    fn disarm(&mut self) {
        self.armed = None;
    }

    async fn run(&mut self) {
        if let Some((client, bucket, key, upload_id)) = self.armed.take() {
            undo(client, bucket, key, upload_id).await;
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((client, bucket, key, upload_id)) = self.armed.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(undo(client, bucket, key, upload_id));
        }
    }
}

async fn undo(client: Client, bucket: String, key: String, upload_id: Option<String>) {
    let failed = match &upload_id {
        Some(id) => client
            .abort_multipart_upload()
            .bucket(&bucket)
            .key(&key)
            .upload_id(id)
            .send()
            .await
            .err()
            .filter(|e| status(e) != Some(404))
            .map(|e| S3Error::from_sdk(format!("aborting upload {id} of s3://{bucket}/{key}"), &e)),
        None => client
            .delete_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .err()
            .filter(|e| status(e) != Some(404))
            .map(|e| S3Error::from_sdk(format!("removing s3://{bucket}/{key}"), &e)),
    };
    if let Some(e) = failed {
        tracing::warn!("cleaning up a failed cold write: {e}");
    }
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
mod tests {
    //! Unit tests, and tests against a real S3 endpoint (moto, ...) named by
    //! `NLDS_TEST_S3_ENDPOINT`: without it those are skipped loudly, or fail when `CI` is set.
    //! Each uses its own bucket.

    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use aws_sdk_s3::config::retry::RetryConfig;
    use aws_sdk_s3::config::timeout::TimeoutConfig;
    use tokio::io::{AsyncRead, ReadBuf};
    use uuid::Uuid;

    use super::*;

    const ENDPOINT_VAR: &str = "NLDS_TEST_S3_ENDPOINT";
    const MIB: u64 = 1 << 20;

    /// The test endpoint, or `None` (after a loud notice) when it is not configured outside CI.
    fn endpoint(test: &str) -> Option<String> {
        match std::env::var(ENDPOINT_VAR) {
            Ok(e) if !e.trim().is_empty() => Some(e),
            _ if std::env::var_os("CI").is_some() => panic!(
                "{ENDPOINT_VAR} is not set but CI is: the s3-glacier tests need an S3 endpoint \
                 (e.g. `moto_server -H 127.0.0.1 -p 9321` and {ENDPOINT_VAR}=http://127.0.0.1:9321)"
            ),
            _ => {
                eprintln!(
                    "\n!!!!!!!! SKIPPED {test}: {ENDPOINT_VAR} is not set; start an S3 endpoint \
                     (e.g. `moto_server -H 127.0.0.1 -p 9321`) and set \
                     {ENDPOINT_VAR}=http://127.0.0.1:9321 to run it !!!!!!!!\n"
                );
                None
            }
        }
    }

    fn config(endpoint: &str, bucket: &str) -> GlacierConfig {
        GlacierConfig {
            store: crate::config::ObjectStoreConfig {
                endpoint: endpoint.into(),
                region: "us-east-1".into(),
                access_key: "nlds-test".into(),
                secret_key: "nlds-test-secret".into(),
                secret_key_file: None,
                bucket: bucket.into(),
                ..Default::default()
            },
            part_size: 5 * MIB,
            ..GlacierConfig::default()
        }
    }

    struct Fixture {
        store: GlacierStore,
        /// The same bucket, for looking behind the store's back.
        client: Client,
        bucket: String,
    }

    impl Fixture {
        /// A store on a fresh bucket; `tune` adjusts its configuration.
        async fn new(test: &str, tune: impl FnOnce(&mut GlacierConfig)) -> Option<Fixture> {
            let endpoint = endpoint(test)?;
            let bucket = format!("nlds-test-{}", &Uuid::new_v4().simple().to_string()[..16]);
            let mut cfg = config(&endpoint, &bucket);
            tune(&mut cfg);
            let store = GlacierStore::new(&cfg).await.unwrap();
            store.ensure_bucket().await.unwrap();
            let client = s3::client(&cfg.store).await.unwrap();
            Some(Fixture {
                store,
                client,
                bucket,
            })
        }

        async fn head(&self, name: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(self.store.key(name))
                .send()
                .await
                .unwrap()
        }

        /// Nothing under the name, and no multipart upload left behind.
        async fn assert_nothing_left(&self, name: &str) {
            assert_eq!(self.store.stat(name).await.unwrap(), None, "{name}");
            let uploads = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .send()
                .await
                .unwrap();
            assert!(
                uploads.uploads().is_empty(),
                "multipart uploads left behind: {:?}",
                uploads.uploads()
            );
        }

        /// Stages `name` and waits until the store says it is online.
        async fn stage_and_wait(&self, name: &str) -> AggregateStat {
            self.store.stage(&[name.to_owned()]).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let stat = self.store.stat(name).await.unwrap().expect(name);
                if stat.online {
                    return stat;
                }
                assert!(Instant::now() < deadline, "{name} not restored in 60 s");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }

        /// Does the store compute CRC32C composites correctly? (moto without its optional
        /// `crc32c` package computes CRC32 instead.)
        async fn composite_crc32c_is_right(&self) -> bool {
            let key = "probe/composite";
            let data = b"composite checksum probe";
            let crc = crc32c::crc32c(data);
            let created = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .checksum_type(ChecksumType::Composite)
                .send()
                .await
                .unwrap();
            let id = created.upload_id().unwrap();
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(id)
                .part_number(1)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .checksum_crc32_c(encode_crc(crc))
                .body(ByteStream::from_static(data))
                .send()
                .await
                .unwrap();
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .parts(
                            CompletedPart::builder()
                                .part_number(1)
                                .set_e_tag(part.e_tag().map(str::to_owned))
                                .checksum_crc32_c(encode_crc(crc))
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .unwrap();
            let head = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .unwrap();
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            let reported = head.checksum_crc32_c().map(|v| split_part_count(v).0);
            let right = reported.and_then(decode_crc) == Some(composite_crc32c(&[crc]));
            if !right {
                eprintln!(
                    "note: this S3 endpoint reports the composite CRC32C {reported:?} for one \
                     part, not {} (moto without the crc32c package computes CRC32)",
                    encode_crc(composite_crc32c(&[crc]))
                );
            }
            right
        }
    }

    /// A deterministic pseudo-random stream of `len` bytes, handed out in odd-sized pieces,
    /// failing with an I/O error at `fail_at` if set. Nothing is held in memory.
    struct Generated {
        seed: u64,
        pos: u64,
        len: u64,
        fail_at: Option<u64>,
    }

    impl Generated {
        fn reader(seed: u64, len: u64) -> ByteReader {
            Box::pin(Generated {
                seed,
                pos: 0,
                len,
                fail_at: None,
            })
        }

        fn failing(seed: u64, len: u64, fail_at: u64) -> ByteReader {
            Box::pin(Generated {
                seed,
                pos: 0,
                len,
                fail_at: Some(fail_at),
            })
        }

        fn byte(seed: u64, pos: u64) -> u8 {
            // splitmix64 of the 8-byte word holding `pos`.
            let mut z = seed
                .wrapping_add(pos / 8)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> (8 * (pos % 8))) as u8
        }

        fn bytes(seed: u64, len: u64) -> Vec<u8> {
            (0..len).map(|p| Self::byte(seed, p)).collect()
        }
    }

    impl AsyncRead for Generated {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.fail_at.is_some_and(|f| self.pos >= f) {
                return Poll::Ready(Err(io::Error::other("the source broke")));
            }
            let limit = self.fail_at.unwrap_or(self.len).min(self.len);
            let n = (limit - self.pos).min(buf.remaining() as u64).min(100_003);
            for _ in 0..n {
                let b = Self::byte(self.seed, self.pos);
                buf.put_slice(&[b]);
                self.pos += 1;
            }
            Poll::Ready(Ok(()))
        }
    }

    async fn read_all(mut r: ByteReader) -> Vec<u8> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        out
    }

    fn name(tag: &str) -> String {
        format!("h000001/{tag}-{}.tar", Uuid::new_v4().simple())
    }

    // ------------------------------------------------------------------ unit tests

    #[test]
    fn composite_checksum_matches_an_independently_computed_value() {
        // Values computed with a bit-by-bit CRC32C (reflected 0x82F63B78) outside this crate.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let parts = [
            &b"The quick brown fox "[..],
            &b"jumps over the lazy dog"[..],
        ];
        let crcs: Vec<u32> = parts.iter().map(|p| crc32c::crc32c(p)).collect();
        assert_eq!(crcs, [0x4667_5bb9, 0x1fd9_2d92]);
        assert_eq!(composite_crc32c(&crcs), 0x895c_f16b);
        assert_eq!(encode_crc(composite_crc32c(&crcs)), "iVzxaw==");
        // The running full-object CRC the writer keeps while streaming the parts.
        let full = crc32c::crc32c_combine(
            crc32c::crc32c_combine(0, crcs[0], parts[0].len()),
            crcs[1],
            parts[1].len(),
        );
        assert_eq!(full, 0x2262_0404);
        assert_eq!(full, crc32c::crc32c(&parts.concat()));
        assert_eq!(decode_crc("ImIEBA=="), Some(0x2262_0404));
        assert_eq!(decode_crc("not base64!"), None);
        assert_eq!(decode_crc("AAAAAAA="), None, "5 bytes");
    }

    #[test]
    fn reported_checksums_are_checked() {
        let multipart = Written {
            size: 43,
            full: 0x2262_0404,
            parts: vec![0x4667_5bb9, 0x1fd9_2d92],
        };
        let single = Written {
            size: 43,
            full: 0x2262_0404,
            parts: vec![],
        };
        let rep = |crc32c, checksum_type| Reported {
            size: Some(43),
            crc32c,
            checksum_type,
        };
        let composite = Some(&ChecksumType::Composite);
        let full_object = Some(&ChecksumType::FullObject);
        // Matches.
        assert_eq!(
            check_reported(&rep(Some("iVzxaw==-2"), composite), &multipart, true),
            Ok(())
        );
        assert_eq!(
            check_reported(&rep(Some("iVzxaw=="), None), &multipart, true),
            Ok(())
        );
        assert_eq!(
            check_reported(&rep(Some("ImIEBA=="), full_object), &multipart, true),
            Ok(())
        );
        assert_eq!(
            check_reported(&rep(Some("ImIEBA=="), None), &single, true),
            Ok(())
        );
        assert_eq!(
            check_reported(&rep(None, None), &single, true),
            Ok(()),
            "no checksum kept"
        );
        // Mismatches.
        for (r, w) in [
            (rep(Some("iVzxaA==-2"), composite), &multipart), // one bit off
            (rep(Some("iVzxaw==-3"), composite), &multipart), // part count
            (rep(Some("ImIEBA=="), composite), &multipart),   // the full CRC is not the composite
            (rep(Some("iVzxaw=="), full_object), &multipart), // nor the other way round
            (rep(Some("ImIEBQ=="), None), &single),
            (rep(Some("ImIEBA==-1"), None), &single),
            (rep(Some("garbage"), None), &single),
        ] {
            let err = check_reported(&r, w, true).unwrap_err();
            assert!(err.contains("CRC32C") || err.contains("part"), "{err}");
        }
        let short = Reported {
            size: Some(42),
            crc32c: Some("ImIEBA=="),
            checksum_type: None,
        };
        assert!(
            check_reported(&short, &single, true)
                .unwrap_err()
                .contains("42 bytes")
        );
        // Composite verification off: a wrong composite passes, a wrong size or full CRC does not.
        assert_eq!(
            check_reported(&rep(Some("AAAAAA==-2"), composite), &multipart, false),
            Ok(())
        );
        assert!(check_reported(&rep(Some("AAAAAA=="), full_object), &multipart, false).is_err());
        assert!(check_reported(&short, &multipart, false).is_err());
    }

    #[test]
    fn part_counts_and_multipart_etags_are_recognised() {
        assert_eq!(split_part_count("iVzxaw==-2"), ("iVzxaw==", Some(2)));
        assert_eq!(split_part_count("iVzxaw=="), ("iVzxaw==", None));
        assert_eq!(split_part_count("a-"), ("a-", None));
        assert!(is_multipart_etag(Some(
            "\"d0952dc3292725341ab21c3e3c62dd13-2\""
        )));
        assert!(!is_multipart_etag(Some(
            "\"7b8c0097041de5d22d96344c3f3bef44\""
        )));
        assert!(!is_multipart_etag(None));
    }

    #[test]
    fn part_size_grows_to_stay_within_ten_thousand_parts() {
        assert_eq!(part_size_for(12 * MIB, 5 * MIB), Some(5 * MIB));
        assert_eq!(part_size_for(10_000 * 5 * MIB, 5 * MIB), Some(5 * MIB));
        let big = 10_000 * 5 * MIB + 1;
        let part = part_size_for(big, 5 * MIB).unwrap();
        assert_eq!(part, 6 * MIB);
        assert!(big.div_ceil(part) <= MAX_PARTS);
        assert_eq!(part_size_for(MAX_PARTS * MAX_PART_SIZE + 1, 5 * MIB), None);
    }

    #[test]
    fn online_state_follows_class_and_restore_header() {
        let now = DateTime::parse_from_rfc2822("Wed, 25 Nov 2026 04:00:00 GMT")
            .unwrap()
            .with_timezone(&Utc);
        let glacier = Some(&StorageClass::Glacier);
        let restored = r#"ongoing-request="false", expiry-date="Thu, 26 Nov 2026 04:16:57 GMT""#;
        let expired = r#"ongoing-request="false", expiry-date="Tue, 24 Nov 2026 04:16:57 GMT""#;
        let ongoing = r#"ongoing-request="true""#;
        assert!(is_online(None, None, None, now), "STANDARD is not reported");
        assert!(is_online(Some(&StorageClass::StandardIa), None, None, now));
        assert!(is_online(Some(&StorageClass::GlacierIr), None, None, now));
        assert!(!is_online(glacier, None, None, now));
        assert!(!is_online(
            Some(&StorageClass::DeepArchive),
            None,
            None,
            now
        ));
        assert!(!is_online(glacier, None, Some(ongoing), now));
        assert!(is_online(glacier, None, Some(restored), now));
        assert!(!is_online(glacier, None, Some(expired), now));
        assert!(is_online(
            glacier,
            None,
            Some(r#"ongoing-request="false""#),
            now
        ));
        let tiering = Some(&StorageClass::IntelligentTiering);
        assert!(is_online(tiering, None, None, now));
        assert!(!is_online(
            tiering,
            Some(&ArchiveStatus::ArchiveAccess),
            None,
            now
        ));
        assert!(is_online(
            tiering,
            Some(&ArchiveStatus::ArchiveAccess),
            Some(restored),
            now
        ));
    }

    #[test]
    fn configuration_is_validated_and_parsed_and_keeps_the_secret() {
        let cfg = GlacierConfig::default();
        cfg.validate().unwrap();
        assert_eq!(cfg.prefix, "cold/");
        assert_eq!(cfg.restore_days, 1);
        let bad = [
            GlacierConfig {
                storage_class: "STANDARD".into(),
                ..GlacierConfig::default()
            },
            GlacierConfig {
                storage_class: "DEEP_ARCHIVE".into(),
                restore_tier: "Expedited".into(),
                ..GlacierConfig::default()
            },
            GlacierConfig {
                restore_tier: "Fast".into(),
                ..GlacierConfig::default()
            },
            GlacierConfig {
                restore_days: 0,
                ..GlacierConfig::default()
            },
            GlacierConfig {
                part_size: MIN_PART_SIZE - 1,
                ..GlacierConfig::default()
            },
            GlacierConfig {
                part_size: MAX_PART_SIZE + 1,
                ..GlacierConfig::default()
            },
            GlacierConfig {
                prefix: "/cold/".into(),
                ..GlacierConfig::default()
            },
        ];
        for cfg in bad {
            assert!(
                matches!(cfg.validate(), Err(ColdError::Failed(_))),
                "{cfg:?} accepted"
            );
        }
        let cfg: GlacierConfig = toml::from_str(
            r#"
            endpoint = "https://s3.example.org"
            bucket = "archive"
            secret_key = "very-secret-value"
            storage_class = "DEEP_ARCHIVE"
            restore_tier = "Bulk"
            restore_days = 3
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.store.endpoint, "https://s3.example.org");
        assert_eq!(cfg.store.bucket, "archive");
        assert_eq!(cfg.store.region, "us-east-1", "defaulted");
        assert_eq!(cfg.prefix, "cold/", "defaulted");
        assert_eq!(cfg.part_size, 64 * MIB, "defaulted");
        assert_eq!(cfg.restore_days, 3);
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("very-secret-value"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    // ------------------------------------------------------------------ against S3

    #[tokio::test]
    async fn small_aggregate_is_written_cold_staged_and_read_back() {
        let Some(fx) = Fixture::new(
            "small_aggregate_is_written_cold_staged_and_read_back",
            |_| {},
        )
        .await
        else {
            return;
        };
        let name = name("small");
        let len = 100_000;
        fx.store
            .write(&name, len, Generated::reader(1, len))
            .await
            .unwrap();
        let head = fx.head(&name).await;
        assert_eq!(head.storage_class(), Some(&StorageClass::Glacier));
        assert!(!is_multipart_etag(head.e_tag()), "{:?}", head.e_tag());
        assert_eq!(
            fx.store.stat(&name).await.unwrap(),
            Some(AggregateStat {
                size: len,
                online: false
            })
        );
        let expected = Generated::bytes(1, len);
        assert_eq!(
            fx.store.checksum(&name).await.unwrap(),
            Some(StoredChecksum::Crc32c(crc32c::crc32c(&expected)))
        );
        match fx.store.read(&name).await {
            Err(ColdError::Offline(n)) => assert_eq!(n, name),
            Err(e) => panic!("expected Offline, got {e:?}"),
            Ok(_) => panic!("an unrestored GLACIER object was readable"),
        }
        let stat = fx.stage_and_wait(&name).await;
        assert_eq!(stat.size, len);
        // Staging a restored (or restoring) aggregate again is fine; so is evicting it.
        fx.store.stage(&[name.clone(), name.clone()]).await.unwrap();
        assert!(read_all(fx.store.read(&name).await.unwrap()).await == expected);
        fx.store.evict(&name).await.unwrap();
        // Replacing it: the new bytes, cold again.
        let len2 = 4321;
        fx.store
            .write(&name, len2, Generated::reader(2, len2))
            .await
            .unwrap();
        assert_eq!(
            fx.store.stat(&name).await.unwrap(),
            Some(AggregateStat {
                size: len2,
                online: false
            })
        );
        fx.stage_and_wait(&name).await;
        assert!(read_all(fx.store.read(&name).await.unwrap()).await == Generated::bytes(2, len2));
        // An empty aggregate is an object too.
        let empty = self::name("empty");
        fx.store
            .write(&empty, 0, Generated::reader(3, 0))
            .await
            .unwrap();
        assert_eq!(
            fx.store.stat(&empty).await.unwrap().map(|s| s.size),
            Some(0)
        );
    }

    #[tokio::test]
    async fn multipart_aggregate_is_written_cold_staged_and_read_back() {
        let Some(mut fx) = Fixture::new(
            "multipart_aggregate_is_written_cold_staged_and_read_back",
            |_| {},
        )
        .await
        else {
            return;
        };
        let verify = fx.composite_crc32c_is_right().await;
        fx.store.s.verify_multipart_checksum = verify;
        let name = name("multi");
        let len = 12 * MIB + 12_345; // three parts of 5, 5 and 2 MiB + 12,345 bytes
        fx.store
            .write(&name, len, Generated::reader(7, len))
            .await
            .unwrap();
        let head = fx.head(&name).await;
        assert_eq!(head.storage_class(), Some(&StorageClass::Glacier));
        assert!(
            head.e_tag()
                .is_some_and(|e| e.trim_matches('"').ends_with("-3")),
            "not a 3-part upload: {:?}",
            head.e_tag()
        );
        assert_eq!(
            fx.store.stat(&name).await.unwrap(),
            Some(AggregateStat {
                size: len,
                online: false
            })
        );
        assert_eq!(
            fx.store.checksum(&name).await.unwrap(),
            None,
            "a multipart object has no full-object checksum"
        );
        assert!(matches!(
            fx.store.read(&name).await,
            Err(ColdError::Offline(_))
        ));
        fx.stage_and_wait(&name).await;
        let back = read_all(fx.store.read(&name).await.unwrap()).await;
        assert_eq!(back.len() as u64, len);
        assert!(back == Generated::bytes(7, len), "read back differs");
        fx.assert_nothing_left(&self::name("absent")).await;
    }

    #[tokio::test]
    async fn deep_archive_class_is_written_and_restored_in_bulk() {
        let Some(fx) = Fixture::new("deep_archive_class_is_written_and_restored_in_bulk", |c| {
            c.storage_class = "DEEP_ARCHIVE".into();
            c.restore_tier = "Bulk".into();
            c.restore_days = 2;
        })
        .await
        else {
            return;
        };
        let name = name("deep");
        fx.store
            .write(&name, 1000, Generated::reader(4, 1000))
            .await
            .unwrap();
        assert_eq!(
            fx.head(&name).await.storage_class(),
            Some(&StorageClass::DeepArchive)
        );
        assert!(matches!(
            fx.store.read(&name).await,
            Err(ColdError::Offline(_))
        ));
        fx.stage_and_wait(&name).await;
        let restore = fx.head(&name).await.restore().map(str::to_owned);
        let expiry = restore
            .as_deref()
            .and_then(|r| restore_field(r, "expiry-date"))
            .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
            .unwrap_or_else(|| panic!("no expiry date in {restore:?}"));
        assert!(
            expiry > Utc::now() + chrono::Duration::hours(36),
            "restored for less than restore_days = 2: {restore:?}"
        );
        assert!(read_all(fx.store.read(&name).await.unwrap()).await == Generated::bytes(4, 1000));
    }

    #[tokio::test]
    async fn a_wrong_composite_checksum_fails_the_write_and_leaves_nothing() {
        let Some(mut fx) = Fixture::new(
            "a_wrong_composite_checksum_fails_the_write_and_leaves_nothing",
            |_| {},
        )
        .await
        else {
            return;
        };
        let name = name("composite");
        let len = 10 * MIB + 1;
        if fx.composite_crc32c_is_right().await {
            // A store that computes it right: the check passes end to end.
            fx.store
                .write(&name, len, Generated::reader(5, len))
                .await
                .unwrap();
            assert_eq!(
                fx.store.stat(&name).await.unwrap().map(|s| s.size),
                Some(len)
            );
            eprintln!("note: the composite CRC32C of this store matched: verified end to end");
            return;
        }
        // A store whose composite differs from ours (moto computing CRC32): the write is refused
        // and the completed object removed.
        match fx.store.write(&name, len, Generated::reader(5, len)).await {
            Err(ColdError::Failed(m)) => {
                assert!(
                    m.contains("failed verification") && m.contains("CRC32C"),
                    "{m}"
                )
            }
            other => panic!("expected a verification failure, got {other:?}"),
        }
        fx.assert_nothing_left(&name).await;
        // With the check off, the same write succeeds (the parts are still validated).
        fx.store.s.verify_multipart_checksum = false;
        fx.store
            .write(&name, len, Generated::reader(5, len))
            .await
            .unwrap();
        assert_eq!(
            fx.store.stat(&name).await.unwrap().map(|s| s.size),
            Some(len)
        );
    }

    #[tokio::test]
    async fn a_short_long_or_broken_stream_fails_and_leaves_nothing() {
        let Some(fx) = Fixture::new(
            "a_short_long_or_broken_stream_fails_and_leaves_nothing",
            |c| {
                c.verify_multipart_checksum = false;
            },
        )
        .await
        else {
            return;
        };
        let cases: [(&str, u64, ByteReader, &str); 6] = [
            (
                "short-single",
                1000,
                Generated::reader(1, 500),
                "ended after 500 of its 1000",
            ),
            (
                "long-single",
                100,
                Generated::reader(1, 200),
                "longer than its declared 100",
            ),
            (
                "short-multi",
                12 * MIB,
                Generated::reader(1, 7 * MIB),
                "ended after 7340032 of its 12582912",
            ),
            (
                "long-multi",
                11 * MIB,
                Generated::reader(1, 12 * MIB),
                "longer than",
            ),
            (
                "broken-single",
                1000,
                Generated::failing(1, 1000, 10),
                "the source broke",
            ),
            (
                "broken-multi",
                12 * MIB,
                Generated::failing(1, 12 * MIB, 6 * MIB),
                "the source broke",
            ),
        ];
        for (tag, size, body, expected) in cases {
            let name = name(tag);
            match fx.store.write(&name, size, body).await {
                Err(ColdError::Failed(m)) => assert!(m.contains(expected), "{tag}: {m}"),
                other => panic!("{tag}: expected Failed, got {other:?}"),
            }
            fx.assert_nothing_left(&name).await;
        }
        // A failed replacement leaves the previous aggregate as it was.
        let name = name("kept");
        fx.store
            .write(&name, 300, Generated::reader(9, 300))
            .await
            .unwrap();
        assert!(
            fx.store
                .write(&name, 300, Generated::reader(10, 299))
                .await
                .is_err()
        );
        assert_eq!(
            fx.store.checksum(&name).await.unwrap(),
            Some(StoredChecksum::Crc32c(crc32c::crc32c(&Generated::bytes(
                9, 300
            ))))
        );
    }

    #[tokio::test]
    async fn remove_is_idempotent_and_missing_aggregates_are_not_found() {
        let Some(fx) = Fixture::new(
            "remove_is_idempotent_and_missing_aggregates_are_not_found",
            |_| {},
        )
        .await
        else {
            return;
        };
        let name = name("gone");
        fx.store
            .write(&name, 10, Generated::reader(1, 10))
            .await
            .unwrap();
        assert!(fx.store.stat(&name).await.unwrap().is_some());
        fx.store.remove(&name).await.unwrap();
        assert_eq!(fx.store.stat(&name).await.unwrap(), None);
        fx.store.remove(&name).await.unwrap();
        assert!(matches!(fx.store.read(&name).await, Err(ColdError::NotFound(n)) if n == name));
        assert!(matches!(fx.store.checksum(&name).await, Err(ColdError::NotFound(n)) if n == name));
        assert!(matches!(
            fx.store.stage(std::slice::from_ref(&name)).await,
            Err(ColdError::NotFound(n)) if n == name
        ));
        // Bad names never reach the store.
        for bad in ["../escape", "/abs", "UPPER"] {
            assert!(matches!(
                fx.store.remove(bad).await,
                Err(ColdError::Failed(_))
            ));
            assert!(matches!(
                fx.store.write(bad, 1, Generated::reader(1, 1)).await,
                Err(ColdError::Failed(_))
            ));
        }
        assert_eq!(fx.store.kind(), "s3-glacier");
    }

    #[tokio::test]
    async fn an_object_outside_the_cold_classes_is_online_and_staging_it_is_fine() {
        let Some(fx) = Fixture::new(
            "an_object_outside_the_cold_classes_is_online_and_staging_it_is_fine",
            |_| {},
        )
        .await
        else {
            return;
        };
        let name = name("standard");
        fx.client
            .put_object()
            .bucket(&fx.bucket)
            .key(fx.store.key(&name))
            .body(ByteStream::from_static(b"standard class"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            fx.store.stat(&name).await.unwrap(),
            Some(AggregateStat {
                size: 14,
                online: true
            })
        );
        fx.store.stage(std::slice::from_ref(&name)).await.unwrap();
        assert_eq!(
            read_all(fx.store.read(&name).await.unwrap()).await,
            b"standard class"
        );
        // Stored without a checksum: nothing to report.
        assert_eq!(fx.store.checksum(&name).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_unavailable_quickly() {
        let cfg = config("http://127.0.0.1:1", "nlds-test-unreachable");
        let base = s3::client(&cfg.store).await.unwrap();
        let client = Client::from_conf(
            base.config()
                .to_builder()
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(1))
                        .operation_timeout(Duration::from_secs(5))
                        .build(),
                )
                .build(),
        );
        let store = GlacierStore::with_client(client, &cfg).unwrap();
        let started = Instant::now();
        let name = "h000001/x.tar";
        let results = [
            store.write(name, 10, Generated::reader(1, 10)).await.err(),
            store
                .write(name, 6 * MIB, Generated::reader(1, 6 * MIB))
                .await
                .err(),
            store.stat(name).await.err(),
            store.checksum(name).await.err(),
            store.stage(&[name.to_owned()]).await.err(),
            store.read(name).await.err(),
            store.remove(name).await.err(),
            store.ensure_bucket().await.err(),
        ];
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Some(e @ ColdError::Unavailable(_)) => assert!(e.is_transient()),
                other => panic!("operation {i}: expected Unavailable, got {other:?}"),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
}
