//! The warm tier: each tenancy's bucket listing merged with the catalogue's warm locations.

use std::collections::VecDeque;

use aws_sdk_s3::Client;
use nlds_core::api::Tier;
use nlds_core::storage_audit::{AuditRequest, FindingKind};
use nlds_storage::s3::{S3Error, Tenant};

use super::pages::{self, TX_PREFIX, WarmRow};
use super::scrub::{Pace, Reservoir};
use super::{AuditError, StorageAudit, Tally, finding, s3_url};

impl StorageAudit {
    /// Every configured tenancy's bucket, the default one first.
    pub(super) async fn audit_warm(
        &self,
        req: &AuditRequest,
        tally: &mut Tally,
        pace: &mut Pace,
    ) -> Result<(), AuditError> {
        let mut tenants = vec![self.s3.default_tenant()];
        for name in self.s3.names() {
            tenants.push(self.s3.tenant(Some(name)).map_err(s3_error)?);
        }
        for t in tenants {
            self.audit_bucket(t, req, tally, pace).await?;
        }
        Ok(())
    }

    /// One bucket: its listing under `tx/` and the locations of that bucket and tenancy, both in
    /// bytewise key order, merged a page at a time.
    async fn audit_bucket(
        &self,
        t: &Tenant,
        req: &AuditRequest,
        tally: &mut Tally,
        pace: &mut Pace,
    ) -> Result<(), AuditError> {
        let mut listing = t
            .client
            .list_objects_v2()
            .bucket(&t.bucket)
            .prefix(TX_PREFIX)
            .into_paginator()
            .send();
        let mut objects: VecDeque<(String, u64)> = VecDeque::new();
        let mut listed_all = false;
        let mut rows = Rows::default();
        let mut sample = req
            .sample
            .filter(|_| req.scrub)
            .map(Reservoir::<WarmRow>::new);
        loop {
            if objects.is_empty() && !listed_all {
                match listing.next().await {
                    None => listed_all = true,
                    Some(page) => {
                        let page = page.map_err(|e| {
                            s3_error(S3Error::from_sdk(
                                format!("listing s3://{}/{TX_PREFIX}", t.bucket),
                                &e,
                            ))
                        })?;
                        for o in page.contents() {
                            if let Some(k) = o.key() {
                                objects
                                    .push_back((k.to_owned(), o.size().unwrap_or(0).max(0) as u64));
                            }
                        }
                        continue;
                    }
                }
            }
            rows.refill(&self.db, t).await?;
            let order = match (objects.front(), rows.page.front()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((key, _)), Some(row)) => key.as_bytes().cmp(row.key.as_bytes()),
            };
            match order {
                std::cmp::Ordering::Less => {
                    let (key, size) = objects.pop_front().expect("an object");
                    tally.counts.warm_objects += 1;
                    self.dark_object(t, &key, size, req.repair, tally).await;
                }
                std::cmp::Ordering::Greater => {
                    let row = rows.page.pop_front().expect("a row");
                    tally.counts.warm_locations += 1;
                    let detail = format!(
                        "the catalogue's copy of {} (file {}) is not in the bucket",
                        row.path, row.file_id
                    );
                    self.bad_copy(t, &row, FindingKind::Lost, detail, req.repair, tally)
                        .await;
                }
                std::cmp::Ordering::Equal => {
                    let (key, size) = objects.pop_front().expect("an object");
                    tally.counts.warm_objects += 1;
                    // Every location of this key (normally one).
                    while rows.page.front().is_some_and(|r| r.key == key) {
                        let row = rows.page.pop_front().expect("a row");
                        tally.counts.warm_locations += 1;
                        if size != row.size as u64 {
                            let detail = format!(
                                "{} (file {}) is {} bytes in the catalogue, {size} in the bucket",
                                row.path, row.file_id, row.size
                            );
                            self.bad_copy(
                                t,
                                &row,
                                FindingKind::SizeMismatch,
                                detail,
                                req.repair,
                                tally,
                            )
                            .await;
                        } else if let Some(s) = sample.as_mut() {
                            s.offer(row);
                        } else if req.scrub {
                            self.scrub_copy(t, &row, req.repair, tally, pace).await?;
                        }
                        // More locations of this key may be on the next page.
                        rows.refill(&self.db, t).await?;
                    }
                }
            }
        }
        for row in sample.map(Reservoir::into_items).unwrap_or_default() {
            self.scrub_copy(t, &row, req.repair, tally, pace).await?;
        }
        Ok(())
    }

    /// An object under `tx/` no location names: reported, and quarantined on repair.
    async fn dark_object(&self, t: &Tenant, key: &str, size: u64, repair: bool, tally: &mut Tally) {
        let mut f = finding(
            FindingKind::Dark,
            Tier::Warm,
            s3_url(&t.bucket, key),
            format!("{size} bytes stored, no catalogued file names this object"),
        );
        if repair {
            match super::quarantine::move_object(&t.client, &t.bucket, key).await {
                Ok(moved) => {
                    f.repair = Some(format!("quarantined as {}", s3_url(&t.bucket, &moved)));
                    f.repaired = true;
                }
                Err(e) => f.repair = Some(format!("not quarantined: {e}")),
            }
        }
        tally.add(f);
    }

    /// A catalogued copy that is missing, of the wrong size or corrupt: reported, and restored
    /// from the file's aggregate on repair.
    async fn bad_copy(
        &self,
        t: &Tenant,
        row: &WarmRow,
        kind: FindingKind,
        detail: String,
        repair: bool,
        tally: &mut Tally,
    ) {
        let mut f = finding(kind, Tier::Warm, s3_url(&t.bucket, &row.key), detail);
        f.file_id = Some(row.file_id);
        f.path = Some(row.path.clone());
        if repair {
            match self.restore_warm(t, row).await {
                Ok(done) => {
                    f.repair = Some(done);
                    f.repaired = true;
                }
                Err(why) => f.repair = Some(format!("not repaired: {why}")),
            }
        }
        tally.add(f);
    }

    /// Reads a copy again and compares its blake3 with the catalogue's.
    async fn scrub_copy(
        &self,
        t: &Tenant,
        row: &WarmRow,
        repair: bool,
        tally: &mut Tally,
        pace: &mut Pace,
    ) -> Result<(), AuditError> {
        let Some(expected) = pages::blake3_of(&self.db, row.file_id).await? else {
            return Ok(());
        };
        let body = match open(&t.client, &t.bucket, &row.key).await {
            Ok(Some(b)) => b,
            // Gone since it was listed (deleted, or repaired): the next audit sees it.
            Ok(None) => return Ok(()),
            Err(e) => return Err(s3_error(e)),
        };
        let (got, _) = super::scrub::blake3_of(body, pace).await.map_err(|e| {
            AuditError::Store(format!("re-reading {}: {e}", s3_url(&t.bucket, &row.key)))
        })?;
        tally.counts.scrubbed += 1;
        if got != expected {
            let detail = format!(
                "{} (file {}) reads back with blake3 {got}, the catalogue has {expected}",
                row.path, row.file_id
            );
            self.bad_copy(t, row, FindingKind::Corrupt, detail, repair, tally)
                .await;
        }
        Ok(())
    }
}

/// The catalogue's side of one bucket: the current page of locations and where the next starts.
#[derive(Default)]
struct Rows {
    page: VecDeque<WarmRow>,
    after: Option<(String, i64)>,
    read_all: bool,
}

impl Rows {
    /// Reads the next page once the current one is used up.
    async fn refill(
        &mut self,
        db: &sea_orm::DatabaseConnection,
        t: &Tenant,
    ) -> Result<(), AuditError> {
        if !self.page.is_empty() || self.read_all {
            return Ok(());
        }
        let after = self.after.as_ref().map(|(k, id)| (k.as_str(), *id));
        let page = pages::warm_page(db, &t.bucket, t.name.as_deref(), after).await?;
        self.read_all = (page.len() as u64) < pages::PAGE;
        if let Some(last) = page.last() {
            self.after = Some((last.key.clone(), last.location_id));
        }
        self.page.extend(page);
        Ok(())
    }
}

/// An object's body, or `None` if there is no such object.
pub(super) async fn open(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<Option<impl tokio::io::AsyncRead + Unpin + use<>>, S3Error> {
    match client.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => Ok(Some(o.body.into_async_read())),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(S3Error::from_sdk(
            format!("reading {}", s3_url(bucket, key)),
            &e,
        )),
    }
}

pub(super) fn s3_error(e: S3Error) -> AuditError {
    AuditError::Store(e.message)
}
