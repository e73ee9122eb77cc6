//! A put, get or delete whose paths are sent as they are read ([`Client::path_stream`]): the chunk
//! protocol of docs/PROTOCOL.md ("Chunked requests") driven one chunk at a time, so that a list
//! of any length is never held whole.

use nlds_core::api::{Accepted, ApiAction, DeleteRequest, GetRequest, PathChunk, PutRequest};
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};

/// The paths of one put, get or delete, being sent: see [`Client::path_stream`].
#[derive(Debug)]
pub struct PathStream<'c> {
    client: &'c Client,
    tid: Uuid,
    action: ApiAction,
    group: Option<String>,
    /// Chunks sent (`POST /api/v2/paths`, parts `0..parts`).
    parts: u32,
    /// The newest chunk, not sent yet: the request carries it if no other follows.
    last: Option<Vec<String>>,
}

impl<'c> PathStream<'c> {
    pub(crate) fn new(
        client: &'c Client,
        tid: Uuid,
        action: ApiAction,
        group: Option<String>,
    ) -> Self {
        Self {
            client,
            tid,
            action,
            group,
            parts: 0,
            last: None,
        }
    }

    /// The transaction id the chunks are sent under (and the request will carry).
    pub fn transaction_id(&self) -> Uuid {
        self.tid
    }

    /// Chunks sent so far.
    pub fn parts(&self) -> u32 {
        self.parts
    }

    /// Adds the next chunk of paths (at most [`Client::chunk_paths`] of them): the chunk before
    /// it, if any, is sent now as the next part. An empty chunk is ignored.
    pub async fn push(&mut self, paths: Vec<String>) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        if let Some(previous) = self.last.replace(paths) {
            self.client
                .send_chunk(&PathChunk {
                    transaction_id: self.tid,
                    api_action: self.action,
                    part: self.parts,
                    paths: previous,
                    group: self.group.clone(),
                })
                .await?;
            self.parts += 1;
        }
        Ok(())
    }

    /// The last chunk and how many parts came before it; an error (sending nothing) if no path
    /// was pushed at all.
    fn finish(self, action: ApiAction) -> Result<(Uuid, u32, Vec<String>)> {
        if self.action != action {
            return Err(Error::Config(format!(
                "the paths were sent for a {}, not a {}",
                self.action.as_str(),
                action.as_str()
            )));
        }
        match self.last {
            Some(last) => Ok((self.tid, self.parts, last)),
            None => Err(Error::Config(
                "no paths to send: the list is empty".to_owned(),
            )),
        }
    }

    /// Starts the put: `req` with this stream's transaction id, the last chunk as its paths and
    /// the number of parts sent before it (its own paths and parts are replaced).
    pub async fn put(self, mut req: PutRequest) -> Result<Accepted> {
        let client = self.client;
        let (tid, parts, last) = self.finish(ApiAction::Putlist)?;
        req.transaction_id = Some(tid);
        req.parts = parts;
        req.paths = last;
        client.post_put(&req).await
    }

    /// Starts the get, as [`PathStream::put`] does the put.
    pub async fn get(self, mut req: GetRequest) -> Result<Accepted> {
        let client = self.client;
        let (tid, parts, last) = self.finish(ApiAction::Getlist)?;
        req.transaction_id = Some(tid);
        req.parts = parts;
        req.paths = last;
        client.post_get(&req).await
    }

    /// Starts the delete, as [`PathStream::put`] does the put (never a dry run: a dry run is
    /// asked chunk by chunk, [`Client::delete_plan`]).
    pub async fn delete(self, mut req: DeleteRequest) -> Result<Accepted> {
        let client = self.client;
        let (tid, parts, last) = self.finish(ApiAction::Dellist)?;
        req.transaction_id = Some(tid);
        req.parts = parts;
        req.paths = last;
        req.dry_run = false;
        client.post_delete(&req).await
    }
}
