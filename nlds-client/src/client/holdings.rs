//! Listing holdings, finding files, changing holdings' labels and tags, and explaining where a
//! file is and where the policy will move it.

use nlds_core::api::{FilePage, HoldingPage, HoldingQuery, MetaRequest, MetaResponse};
use reqwest::Method;

use super::Client;
use crate::error::Result;

impl Client {
    /// Lists holdings.
    pub async fn list(&self, query: &HoldingQuery) -> Result<HoldingPage> {
        self.send(Method::GET, "/holdings", Some(query), None::<&()>)
            .await
    }

    /// Finds files.
    pub async fn find(&self, query: &HoldingQuery) -> Result<FilePage> {
        self.send(Method::GET, "/files", Some(query), None::<&()>)
            .await
    }

    /// Changes the label or tags of the selected holding(s); with `dry_run` set in the request,
    /// says what would change and changes nothing.
    pub async fn meta(&self, req: &MetaRequest) -> Result<MetaResponse> {
        self.send(Method::POST, "/meta", None::<&()>, Some(req))
            .await
    }

    /// Where one of the caller's files is, which policy rule applies and when it will move.
    pub async fn explain(
        &self,
        query: &nlds_core::policy::ExplainQuery,
    ) -> Result<nlds_core::policy::Explanation> {
        self.send(Method::GET, "/explain", Some(query), None::<&()>)
            .await
    }
}
