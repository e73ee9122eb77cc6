//! Multipart uploads of transfer-put: parts read and sent with a bounded number in flight, the
//! completion confirmed, and the upload aborted on any failure (also when the future is dropped).

use std::fs::File;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::{FutureExt, StreamExt, stream};
use nlds_core::{ErrorCode, FailedFile};
use nlds_hooks::points;
use nlds_storage::s3::{PATH_METADATA, S3Error, Tenant, path_metadata};

use super::{
    ReadResult, TransferPut, UploadError, Version, check_unchanged, part_size, read_parts,
};
use crate::userfs::Meta;
use crate::warm::{Moving, io_failed};

impl TransferPut {
    /// A multipart upload, aborted on any failure.
    pub(super) async fn put_multipart(
        &self,
        t: &Tenant,
        file: File,
        meta: &Meta,
        key: &str,
        path: &str,
        moving: &Moving,
    ) -> Result<ReadResult, UploadError> {
        let mut req = t
            .client
            .create_multipart_upload()
            .bucket(&t.bucket)
            .key(key);
        if let Some(m) = path_metadata(path) {
            req = req.metadata(PATH_METADATA, m);
        }
        let created = req.send().await.map_err(|e| {
            S3Error::from_sdk(
                format!(
                    "starting the multipart upload of {path} to {}/{key}",
                    t.bucket
                ),
                &e,
            )
        })?;
        let Some(upload_id) = created.upload_id().map(str::to_owned) else {
            return Err(S3Error::permanent(
                ErrorCode::StorageError,
                format!("the object store returned no upload id for {path}"),
            )
            .into());
        };
        let guard = AbortGuard {
            upload: Some((
                t.client.clone(),
                t.bucket.clone(),
                key.to_owned(),
                upload_id.clone(),
            )),
        };
        match self
            .upload_parts(t, file, meta, key, &upload_id, path, moving)
            .await
        {
            Ok(read) => {
                guard.disarm();
                Ok(read)
            }
            Err(e) => {
                guard.abort().await;
                Err(e)
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one upload of a batch, with the batch's progress"
    )]
    pub(super) async fn upload_parts(
        &self,
        t: &Tenant,
        file: File,
        meta: &Meta,
        key: &str,
        upload_id: &str,
        path: &str,
        moving: &Moving,
    ) -> Result<ReadResult, UploadError> {
        let store = &self.store;
        let before = Version::of(meta);
        let part_size = part_size(store.cfg.part_size, before.size);
        // The reader hashes each part as it reads it and hands it over; at most one part waits
        // in the channel while `parts_in_flight` are being uploaded.
        let (tx, rx) = tokio::sync::mpsc::channel::<(i32, Bytes)>(1);
        let pool = store.parts.clone();
        let reader = tokio::task::spawn_blocking(move || read_parts(file, part_size, tx, &pool));
        let mut uploads =
            stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) })
                .map(|(number, data)| {
                    self.upload_part(t, key, upload_id, path, number, data, moving)
                        .boxed()
                })
                .buffer_unordered(store.parts_in_flight(part_size))
                .boxed();
        let mut parts = Vec::new();
        let mut failure = None;
        while let Some(r) = uploads.next().await {
            match r {
                Ok(p) => parts.push(p),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Dropping the stream closes the channel, which stops the reader.
        drop(uploads);
        let read = reader.await;
        if let Some(e) = failure {
            return Err(e.into());
        }
        let read = match read {
            Ok(r) => r.map_err(|e| io_failed(path, "cannot read", path, &e))?,
            Err(e) => {
                return Err(FailedFile::new(
                    path,
                    ErrorCode::Internal,
                    format!("reading {path} failed: {e}"),
                )
                .into());
            }
        };
        check_unchanged(path, before, &read)?;
        parts.sort_by_key(|p: &CompletedPart| p.part_number());
        let completed = t
            .client
            .complete_multipart_upload()
            .bucket(&t.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(_) => Ok(read),
            Err(e)
                if unparseable_success(&e)
                    && self.confirm_completed(t, key, upload_id, read.len).await =>
            {
                tracing::debug!(
                    path,
                    key,
                    "the object store answered CompleteMultipartUpload with an unexpected body; \
                     completion confirmed"
                );
                Ok(read)
            }
            Err(e) => Err(S3Error::from_sdk(
                format!(
                    "completing the multipart upload of {path} to {}/{key}",
                    t.bucket
                ),
                &e,
            )
            .into()),
        }
    }

    /// After a successful (2xx) CompleteMultipartUpload whose body did not parse (some
    /// S3-compatible stores name the XML root differently): the upload is complete if it is
    /// gone (ListParts says NoSuchUpload) and the object has the size we uploaded.
    pub(super) async fn confirm_completed(
        &self,
        t: &Tenant,
        key: &str,
        upload_id: &str,
        len: u64,
    ) -> bool {
        let upload_gone = match t
            .client
            .list_parts()
            .bucket(&t.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => false,
            Err(e) => e.raw_response().is_some_and(|r| r.status().as_u16() == 404),
        };
        if !upload_gone {
            return false;
        }
        match t
            .client
            .head_object()
            .bucket(&t.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => head.content_length() == i64::try_from(len).ok(),
            Err(_) => false,
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one part of an upload, with the batch's progress"
    )]
    pub(super) async fn upload_part(
        &self,
        t: &Tenant,
        key: &str,
        upload_id: &str,
        path: &str,
        number: i32,
        data: Bytes,
        moving: &Moving,
    ) -> Result<CompletedPart, S3Error> {
        let len = data.len() as u64;
        let out = t
            .client
            .upload_part()
            .bucket(&t.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(data.len() as i64)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| {
                S3Error::from_sdk(
                    format!("uploading part {number} of {path} to {}/{key}", t.bucket),
                    &e,
                )
            })?;
        // Stored: counted as moved (a part of an upload that fails after all is counted too,
        // until the batch's final state clears the count).
        moving.add(len);
        if number == 1 {
            // A multipart upload is provably in flight: created, one part stored, not completed.
            nlds_hooks::pause_async(points::PUT_PART_UPLOADED, std::path::Path::new(key)).await;
        }
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .build())
    }
}

/// A 2xx answer the SDK could not parse (no error code: not an S3 `<Error>` body).
pub(super) fn unparseable_success<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    match e {
        SdkError::ServiceError(s) => s.raw().status().is_success() && s.err().code().is_none(),
        SdkError::ResponseError(r) => r.raw().status().is_success(),
        _ => false,
    }
}

/// Aborts a multipart upload that did not complete, even if the upload future is dropped.
pub(super) struct AbortGuard {
    upload: Option<(Client, String, String, String)>,
}

impl AbortGuard {
    fn disarm(mut self) {
        self.upload = None;
    }

    async fn abort(mut self) {
        if let Some((client, bucket, key, id)) = self.upload.take() {
            abort_upload(client, bucket, key, id).await;
        }
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if let Some((client, bucket, key, id)) = self.upload.take() {
            // Counted, so a process that stops waits for it (nlds_bus::shutdown).
            nlds_bus::shutdown::spawn_cleanup(abort_upload(client, bucket, key, id));
        }
    }
}

pub(super) async fn abort_upload(client: Client, bucket: String, key: String, upload_id: String) {
    if let Err(e) = client
        .abort_multipart_upload()
        .bucket(&bucket)
        .key(&key)
        .upload_id(&upload_id)
        .send()
        .await
    {
        let e = S3Error::from_sdk(
            format!("aborting the multipart upload {upload_id} of {bucket}/{key}"),
            &e,
        );
        tracing::warn!("{e}");
    }
}
