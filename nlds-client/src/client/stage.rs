//! Staging files warm (stage, its status, cancel, release) and where copies are (archiveinfo).

use reqwest::Method;
use uuid::Uuid;

use super::Client;
use crate::error::Result;

impl Client {
    /// Asks for files to be made warm and kept so (`POST /stage`); answers the request id.
    pub async fn stage(
        &self,
        req: &nlds_core::stage::StageRequest,
    ) -> Result<nlds_core::stage::StageCreated> {
        self.send(Method::POST, "/stage", None::<&()>, Some(req))
            .await
    }

    /// A stage request's progress, per file; [`Error::Api`] with `not_found` if it is not the
    /// caller's.
    ///
    /// [`Error::Api`]: crate::error::Error::Api
    pub async fn stage_status(&self, request_id: Uuid) -> Result<nlds_core::stage::StageStatus> {
        let path = format!("/stage/{request_id}");
        self.send(Method::GET, &path, None::<&()>, None::<&()>)
            .await
    }

    /// Cancels a stage request's files not yet staged (all, or `paths`).
    pub async fn stage_cancel(
        &self,
        request_id: Uuid,
        paths: Option<Vec<String>>,
    ) -> Result<nlds_core::stage::StageChange> {
        let path = format!("/stage/{request_id}/cancel");
        let body = nlds_core::stage::CancelRequest { paths };
        self.send(Method::POST, &path, None::<&()>, Some(&body))
            .await
    }

    /// Cancels a stage request and forgets it.
    pub async fn stage_delete(&self, request_id: Uuid) -> Result<nlds_core::stage::StageChange> {
        let path = format!("/stage/{request_id}");
        self.send(Method::DELETE, &path, None::<&()>, None::<&()>)
            .await
    }

    /// Drops a stage request's pins (of all its files, or of `paths`).
    pub async fn release(
        &self,
        req: &nlds_core::stage::ReleaseRequest,
    ) -> Result<nlds_core::stage::StageChange> {
        self.send(Method::POST, "/release", None::<&()>, Some(req))
            .await
    }

    /// Where copies of files are (WLCG locality), per path.
    pub async fn archiveinfo(
        &self,
        req: &nlds_core::stage::ArchiveInfoRequest,
    ) -> Result<Vec<nlds_core::stage::FileLocality>> {
        self.send(Method::POST, "/archiveinfo", None::<&()>, Some(req))
            .await
    }
}
