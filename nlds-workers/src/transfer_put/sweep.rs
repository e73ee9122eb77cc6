//! The start-up sweep of transfer-put: multipart uploads that a killed process left unfinished
//! are aborted, so their parts stop taking space (S3 keeps them, invisible to listings of
//! objects, until an upload is completed or aborted).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use nlds_storage::s3::{S3Clients, S3Error, Tenant};

/// The prefix of every key transfer-put writes ([`nlds_storage::s3::object_key`]).
pub const KEY_PREFIX: &str = "tx/";

/// An unfinished upload that was aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aborted {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
}

/// Aborts, in the bucket of the default object store and of every tenancy, the multipart uploads
/// under [`KEY_PREFIX`] initiated more than `older_than` ago. Each one aborted is logged; a
/// bucket that cannot be listed (a store without ListMultipartUploads) is a warning, not a
/// failure to start.
pub async fn abort_stale_uploads(clients: &S3Clients, older_than: Duration) -> Vec<Aborted> {
    let mut tenants: Vec<&Tenant> = vec![clients.default_tenant()];
    tenants.extend(clients.names().filter_map(|n| clients.tenant(Some(n)).ok()));
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut aborted = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for t in tenants {
        if !seen.insert((t.name.clone(), t.bucket.clone())) {
            continue;
        }
        match sweep_bucket(&t.client, &t.bucket, cutoff).await {
            Ok(found) => aborted.extend(found),
            Err(e) => tracing::warn!(
                bucket = %t.bucket,
                "cannot sweep unfinished multipart uploads: {}",
                e.message
            ),
        }
    }
    aborted
}

/// An upload initiated at `initiated` (unix seconds; unknown: not stale) is stale at `cutoff`.
/// (moto reports every upload as initiated in 2010: there, every upload is stale.)
fn is_stale(initiated: Option<i64>, cutoff: i64) -> bool {
    initiated.is_some_and(|t| t <= cutoff)
}

/// Aborts the uploads of `bucket` under [`KEY_PREFIX`] initiated at or before `cutoff` (unix
/// seconds).
async fn sweep_bucket(client: &Client, bucket: &str, cutoff: i64) -> Result<Vec<Aborted>, S3Error> {
    let stale: Vec<(String, String)> =
        nlds_storage::s3::unfinished_uploads(client, bucket, KEY_PREFIX)
            .await
            .map_err(|e| {
                S3Error::from_sdk(format!("listing the unfinished uploads of {bucket}"), &e)
            })?
            .into_iter()
            .filter(|u| is_stale(u.initiated, cutoff))
            .map(|u| (u.key, u.upload_id))
            .collect();
    let mut aborted = Vec::new();
    for (key, upload_id) in stale {
        match client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(&key)
            .upload_id(&upload_id)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(
                    bucket,
                    key,
                    upload_id,
                    "aborted an unfinished multipart upload left by a stopped transfer-put"
                );
                aborted.push(Aborted {
                    bucket: bucket.to_owned(),
                    key,
                    upload_id,
                });
            }
            // Completed or aborted meanwhile (another process's sweep): nothing left.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {}
            Err(e) => {
                let e = S3Error::from_sdk(
                    format!("aborting the multipart upload {upload_id} of {bucket}/{key}"),
                    &e,
                );
                tracing::warn!("{}", e.message);
            }
        }
    }
    Ok(aborted)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_uploads_initiated_before_the_cutoff_are_stale() {
        assert!(super::is_stale(Some(100), 100));
        assert!(super::is_stale(Some(99), 100));
        assert!(!super::is_stale(Some(101), 100));
        assert!(!super::is_stale(None, 100));
    }
}
