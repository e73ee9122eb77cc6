//! Writing an aggregate: one PutObject up to `part_size`, a multipart upload above it (aborted
//! on any failure), every request with the CRC32C of its bytes, and the object verified by a
//! HeadObject once complete (the module documentation of [`super`] says how).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::checksums::{Reported, Written, check_reported, encode_crc};
use super::cleanup::{Cleanup, Failure};
use super::{GlacierStore, MAX_PART_SIZE, MAX_PARTS, classify};
use crate::cold::{ByteReader, ColdError, ColdResult};

impl GlacierStore {
    pub(super) async fn put_single(
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

    pub(super) async fn put_multipart(
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
    pub(super) async fn verify(&self, name: &str, key: &str, written: &Written) -> ColdResult<()> {
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
}

/// The part size for an aggregate of `size` bytes: the configured one, grown (to whole MiB) when
/// the aggregate would need more than S3's 10,000 parts; `None` beyond S3's largest object.
pub(super) fn part_size_for(size: u64, configured: u64) -> Option<u64> {
    const MIB: u64 = 1 << 20;
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    let part = configured.max(needed);
    (part <= MAX_PART_SIZE).then_some(part)
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
