//! The quarantine: dark objects and aggregates moved aside (`quarantine/<date>/<original>`), in
//! the same bucket or cold store, where nothing reads them; only an operator's explicit purge
//! ([`StorageAudit::purge_quarantine`]) deletes them.

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use chrono::{NaiveDate, Utc};
use nlds_core::storage_audit::{QUARANTINE_PREFIX, QuarantinePurged};
use nlds_storage::cold::ColdStore;
use nlds_storage::s3::S3Error;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::warm::s3_error;
use super::{AuditError, StorageAudit};

/// What a copy source may keep unencoded: the unreserved characters and `/`.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Where `original` goes when quarantined today.
pub fn quarantine_name(original: &str) -> String {
    format!(
        "{QUARANTINE_PREFIX}{}/{original}",
        Utc::now().format("%Y-%m-%d")
    )
}

/// Moves object `key` to the quarantine in the same bucket (copy, then delete); its new key.
pub(super) async fn move_object(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<String, String> {
    let dest = quarantine_name(key);
    let source = format!("{bucket}/{}", utf8_percent_encode(key, COPY_SOURCE));
    client
        .copy_object()
        .bucket(bucket)
        .key(&dest)
        .copy_source(source)
        .send()
        .await
        .map_err(|e| {
            S3Error::from_sdk(format!("copying s3://{bucket}/{key} to {dest}"), &e).message
        })?;
    client
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| S3Error::from_sdk(format!("deleting s3://{bucket}/{key}"), &e).message)?;
    Ok(dest)
}

impl StorageAudit {
    /// Deletes what was quarantined (before `before`, if given: the date in its name) from every
    /// warm bucket and the cold store.
    pub async fn purge_quarantine(
        &self,
        before: Option<NaiveDate>,
    ) -> Result<QuarantinePurged, AuditError> {
        let mut purged = QuarantinePurged::default();
        let mut tenants = vec![self.s3.default_tenant()];
        for name in self.s3.names() {
            tenants.push(self.s3.tenant(Some(name)).map_err(s3_error)?);
        }
        for t in tenants {
            let mut pages = t
                .client
                .list_objects_v2()
                .bucket(&t.bucket)
                .prefix(QUARANTINE_PREFIX)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    s3_error(S3Error::from_sdk(
                        format!("listing s3://{}/{QUARANTINE_PREFIX}", t.bucket),
                        &e,
                    ))
                })?;
                let mut batch = Vec::new();
                for o in page.contents() {
                    let Some(key) = o.key() else { continue };
                    if quarantined_before(key, before) {
                        batch.push(
                            ObjectIdentifier::builder()
                                .key(key)
                                .build()
                                .map_err(|e| AuditError::Store(format!("deleting {key}: {e}")))?,
                        );
                        purged.objects += 1;
                        purged.bytes += o.size().unwrap_or(0).max(0) as u64;
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                let delete = Delete::builder()
                    .set_objects(Some(batch))
                    .quiet(true)
                    .build()
                    .map_err(|e| AuditError::Store(format!("purging the quarantine: {e}")))?;
                let out = t
                    .client
                    .delete_objects()
                    .bucket(&t.bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| {
                        s3_error(S3Error::from_sdk(
                            format!("purging s3://{}/{QUARANTINE_PREFIX}", t.bucket),
                            &e,
                        ))
                    })?;
                if let Some(err) = out.errors().first() {
                    return Err(AuditError::Store(format!(
                        "purging s3://{}/{}: {}",
                        t.bucket,
                        err.key().unwrap_or_default(),
                        err.message().unwrap_or("refused")
                    )));
                }
            }
        }
        if let Some(store) = &self.cold
            && let Some(listed) = store.list().await.map_err(cold_error)?
        {
            for (name, size) in listed {
                if name.starts_with(QUARANTINE_PREFIX) && quarantined_before(&name, before) {
                    store.remove(&name).await.map_err(cold_error)?;
                    purged.objects += 1;
                    purged.bytes += size;
                }
            }
        }
        tracing::info!(
            objects = purged.objects,
            bytes = purged.bytes,
            "quarantine purged"
        );
        Ok(purged)
    }
}

/// Was `name` (`quarantine/<date>/...`) quarantined before `before` (always, without a date)?
fn quarantined_before(name: &str, before: Option<NaiveDate>) -> bool {
    let Some(before) = before else { return true };
    name.strip_prefix(QUARANTINE_PREFIX)
        .and_then(|rest| rest.split('/').next())
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .is_some_and(|d| d < before)
}

pub(super) fn cold_error(e: nlds_storage::cold::ColdError) -> AuditError {
    AuditError::Store(e.to_string())
}

/// Moves a dark aggregate to the cold store's quarantine: staged, copied, removed.
pub(super) async fn move_aggregate(
    audit: &StorageAudit,
    store: &dyn ColdStore,
    name: &str,
    size: u64,
) -> Result<String, String> {
    let dest = quarantine_name(name);
    let body = audit.online_read(store, name).await?;
    store
        .write(&dest, size, body)
        .await
        .map_err(|e| format!("writing {dest}: {e}"))?;
    store
        .remove(name)
        .await
        .map_err(|e| format!("removing {name}: {e}"))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_before_a_date_takes_only_what_was_quarantined_earlier() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 5);
        assert!(quarantined_before("quarantine/2026-12-04/tx/a", d));
        assert!(!quarantined_before("quarantine/2026-12-05/tx/a", d));
        assert!(!quarantined_before("quarantine/junk/tx/a", d));
        assert!(quarantined_before("quarantine/junk/tx/a", None));
        assert!(quarantine_name("tx/1/2").starts_with("quarantine/20"));
        assert!(quarantine_name("tx/1/2").ends_with("/tx/1/2"));
    }
}
