//! `catalog-check.start`: which of the indexed files a put may add to the holding.

use nlds_bus::Outcome;
use nlds_core::{Action, Envelope, ErrorCode, FailedFile, FileRecord, Payload, RoutingKey, Worker};

use super::store::existing_files;
use super::{Catalogue, Result};
use crate::db::bad_request;

impl Catalogue {
    pub(super) async fn check(
        &self,
        env: &Envelope,
        holding_id: Option<i64>,
        files: &[FileRecord],
        target: &Option<String>,
        overwrite: bool,
    ) -> Result<Outcome> {
        let h = holding_id.ok_or_else(|| bad_request("catalog-check needs a holding id"))?;
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let existing = existing_files(&self.db, h, &paths).await?;
        let tid = env.transaction_id.to_string();
        let mut keep = Vec::with_capacity(files.len());
        let mut failed = Vec::new();
        for f in files {
            match existing.get(&f.path) {
                Some(e) if e.tid != tid => failed.push(FailedFile::new(
                    &f.path,
                    ErrorCode::Conflict,
                    format!(
                        "{} is already in holding {h} (transaction {})",
                        f.path, e.tid
                    ),
                )),
                _ => keep.push(f.clone()),
            }
        }
        let complete = env.reply(Payload::Files {
            failed,
            holding_id: Some(h),
            files: keep,
            target: target.clone(),
            overwrite,
        });
        Ok(Outcome::publish(
            RoutingKey::new(Worker::CatalogCheck, Action::Complete),
            complete,
        ))
    }
}
