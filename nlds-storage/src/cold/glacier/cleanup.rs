//! Undoing a failed write: aborting a multipart upload or deleting a partly written object, also
//! when the writing future is dropped.

use super::{Client, ColdError, S3Error, status};

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
