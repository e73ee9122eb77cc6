//! Listing holdings, finding files, and changing holdings' labels and tags.

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
}
