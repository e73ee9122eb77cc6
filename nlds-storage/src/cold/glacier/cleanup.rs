//! Undoing a failed write: aborting a multipart upload or deleting a partly written object, also
//! when the writing future is dropped; and, at start, aborting the uploads a killed process left.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Client, ColdError, ColdResult, S3Error, classify, status};

/// Where a multipart upload failed: before CompleteMultipartUpload or in it.
pub(super) enum Failure {
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
pub(super) struct Cleanup {
    armed: Option<(Client, String, String, Option<String>)>,
}

impl Cleanup {
    pub(super) fn abort(client: &Client, bucket: &str, key: &str, upload_id: &str) -> Self {
        Self {
            armed: Some((
                client.clone(),
                bucket.to_owned(),
                key.to_owned(),
                Some(upload_id.to_owned()),
            )),
        }
    }

    pub(super) fn delete(client: &Client, bucket: &str, key: &str) -> Self {
        Self {
            armed: Some((client.clone(), bucket.to_owned(), key.to_owned(), None)),
        }
    }

    pub(super) fn disarm(&mut self) {
        self.armed = None;
    }

    pub(super) async fn run(&mut self) {
        if let Some((client, bucket, key, upload_id)) = self.armed.take() {
            undo(client, bucket, key, upload_id).await;
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((client, bucket, key, upload_id)) = self.armed.take() {
            // Counted, so a process that stops waits for it (nlds_bus::shutdown).
            nlds_bus::shutdown::spawn_cleanup(undo(client, bucket, key, upload_id));
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

/// Aborts the multipart uploads under `prefix` of `bucket` that nothing has written to for
/// `idle`: the last part uploaded (or, without parts or where the parts cannot be listed, the
/// upload's start) is older. A killed
/// archive-put leaves its upload unfinished, and S3 keeps the parts (invisible to listings of
/// objects, billed) until it is completed or aborted; another archive-put still writing adds a
/// part every few seconds, so it is left alone. Returns what was aborted.
pub(super) async fn sweep_uploads(
    client: &Client,
    bucket: &str,
    prefix: &str,
    idle: Duration,
) -> ColdResult<Vec<String>> {
    let cutoff = SystemTime::now()
        .checked_sub(idle)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let uploads = crate::s3::unfinished_uploads(client, bucket, prefix)
        .await
        .map_err(|e| {
            classify(
                format!("listing the unfinished uploads of s3://{bucket}/{prefix}"),
                &e,
            )
        })?;
    let mut aborted = Vec::new();
    for crate::s3::Upload {
        key,
        upload_id: id,
        initiated,
    } in uploads
    {
        let last = match last_part_written(client, bucket, &key, &id).await {
            Ok(Some(t)) => Some(t),
            Ok(None) => initiated,
            // Completed or aborted meanwhile.
            Err(e) if status(&e) == Some(404) => continue,
            // A store whose ListParts cannot be read (moto answers with the wrong XML root):
            // the upload's start is all there is to go by.
            Err(e) => {
                tracing::debug!(bucket, key, upload_id = %id, error = %e, "cannot list the parts of an upload");
                initiated
            }
        };
        // Unknown age: not stale.
        if last.is_none_or(|t| t > cutoff) {
            continue;
        }
        match client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(&key)
            .upload_id(&id)
            .send()
            .await
        {
            Ok(_) => aborted.push(format!("s3://{bucket}/{key} (upload {id})")),
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => {
                return Err(classify(
                    format!("aborting upload {id} of s3://{bucket}/{key}"),
                    &e,
                ));
            }
        }
    }
    Ok(aborted)
}

/// When the newest part of an upload was written (unix seconds); `None` without parts.
async fn last_part_written(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<
    Option<i64>,
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::list_parts::ListPartsError>,
> {
    let mut newest = None;
    let mut marker = None::<String>;
    loop {
        let page = client
            .list_parts()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .set_part_number_marker(marker.clone())
            .send()
            .await?;
        for p in page.parts() {
            newest = newest.max(p.last_modified().map(|t| t.secs()));
        }
        marker = page.next_part_number_marker().map(str::to_owned);
        if page.is_truncated() != Some(true) || marker.is_none() {
            return Ok(newest);
        }
    }
}
