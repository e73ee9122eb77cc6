//! The cold tier: the store's aggregates against the catalogue's aggregations.

use std::collections::BTreeMap;
use std::sync::Arc;

use nlds_core::api::Tier;
use nlds_core::storage_audit::{AuditRequest, FindingKind, QUARANTINE_PREFIX};
use nlds_storage::cold::{ColdError, ColdStore, StoredChecksum};

use super::pages;
use super::quarantine::{cold_error, move_aggregate};
use super::scrub::{Pace, Reservoir};
use super::{AuditError, StorageAudit, Tally, cold_name, finding};
use crate::db::aggregation;

impl StorageAudit {
    pub(super) async fn audit_cold(
        &self,
        store: &Arc<dyn ColdStore>,
        req: &AuditRequest,
        tally: &mut Tally,
        pace: &mut Pace,
    ) -> Result<(), AuditError> {
        let mut listed: Option<BTreeMap<String, u64>> =
            store.list().await.map_err(cold_error)?.map(|all| {
                all.into_iter()
                    .filter(|(n, _)| !n.starts_with(QUARANTINE_PREFIX))
                    .collect()
            });
        match &listed {
            Some(l) => tally.counts.aggregates = l.len() as u64,
            None => tally.notes.push(format!(
                "the {} store cannot list its aggregates: dark aggregates were not looked for",
                store.kind()
            )),
        }
        let mut sample = req
            .sample
            .filter(|_| req.scrub)
            .map(Reservoir::<aggregation::Model>::new);
        let mut after = 0;
        loop {
            let page = pages::aggregation_page(&self.db, after).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for agg in page {
                tally.counts.aggregations += 1;
                let in_listing = listed.as_mut().map(|l| l.remove(&agg.name));
                // A write in progress is neither lost nor dark.
                if agg.state != aggregation::State::Stored {
                    continue;
                }
                let size = match in_listing {
                    Some(size) => size,
                    None => store
                        .stat(&agg.name)
                        .await
                        .map_err(cold_error)?
                        .map(|s| s.size),
                };
                let what = format!(
                    "aggregation {} of holding {} ({} files)",
                    agg.id, agg.holding_id, agg.members
                );
                match size {
                    None => {
                        let detail = format!("{what} is not in the {} store", store.kind());
                        self.bad_aggregate(
                            store,
                            &agg,
                            FindingKind::Lost,
                            detail,
                            req.repair,
                            tally,
                        )
                        .await;
                    }
                    Some(s) if s != agg.size as u64 => {
                        let detail = format!(
                            "{what} is {} bytes in the catalogue, {s} in the store",
                            agg.size
                        );
                        self.bad_aggregate(
                            store,
                            &agg,
                            FindingKind::SizeMismatch,
                            detail,
                            req.repair,
                            tally,
                        )
                        .await;
                    }
                    Some(_) => match sample.as_mut() {
                        Some(s) => s.offer(agg),
                        None if req.scrub => {
                            self.scrub_aggregate(store, &agg, req.repair, tally, pace)
                                .await?
                        }
                        None => {}
                    },
                }
            }
        }
        for agg in sample.map(Reservoir::into_items).unwrap_or_default() {
            self.scrub_aggregate(store, &agg, req.repair, tally, pace)
                .await?;
        }
        for (name, size) in listed.unwrap_or_default() {
            let mut f = finding(
                FindingKind::Dark,
                Tier::Cold,
                cold_name(&name),
                format!("{size} bytes stored, no aggregation names this aggregate"),
            );
            if req.repair {
                match move_aggregate(self, store.as_ref(), &name, size).await {
                    Ok(dest) => {
                        f.repair = Some(format!("quarantined as {}", cold_name(&dest)));
                        f.repaired = true;
                    }
                    Err(e) => f.repair = Some(format!("not quarantined: {e}")),
                }
            }
            tally.add(f);
        }
        Ok(())
    }

    /// The store checksums the aggregate itself; compared with the one recorded at its write.
    async fn scrub_aggregate(
        &self,
        store: &Arc<dyn ColdStore>,
        agg: &aggregation::Model,
        repair: bool,
        tally: &mut Tally,
        pace: &mut Pace,
    ) -> Result<(), AuditError> {
        let (algorithm, got, recorded) = match store.checksum(&agg.name).await {
            Ok(Some(StoredChecksum::Adler32(got))) => ("adler32", got, agg.adler32),
            Ok(Some(StoredChecksum::Crc32c(got))) => ("crc32c", got, agg.crc32c),
            Ok(None) => {
                tally.notes.push(format!(
                    "aggregate {}: the store gives no checksum, not scrubbed",
                    agg.name
                ));
                return Ok(());
            }
            Err(ColdError::Offline(_)) => {
                tally.notes.push(format!(
                    "aggregate {}: offline, the store checksums only online copies: not scrubbed",
                    agg.name
                ));
                return Ok(());
            }
            Err(e) => return Err(cold_error(e)),
        };
        tally.counts.scrubbed += 1;
        pace.spent(agg.size.max(0) as u64).await;
        let Some(recorded) = recorded else {
            return Ok(());
        };
        if i64::from(got) != recorded {
            let detail = format!(
                "aggregation {} of holding {}: the store reports {algorithm} {got:08x}, {:08x} was written",
                agg.id, agg.holding_id, recorded
            );
            self.bad_aggregate(store, agg, FindingKind::Corrupt, detail, repair, tally)
                .await;
        }
        Ok(())
    }

    async fn bad_aggregate(
        &self,
        store: &Arc<dyn ColdStore>,
        agg: &aggregation::Model,
        kind: FindingKind,
        detail: String,
        repair: bool,
        tally: &mut Tally,
    ) {
        let mut f = finding(kind, Tier::Cold, cold_name(&agg.name), detail);
        if repair {
            match self.rearchive(store.as_ref(), agg).await {
                Ok(done) => {
                    f.repair = Some(done);
                    f.repaired = true;
                }
                Err(why) => f.repair = Some(format!("not repaired: {why}")),
            }
        }
        tally.add(f);
    }
}
