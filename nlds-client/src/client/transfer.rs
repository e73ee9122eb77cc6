//! Puts, gets, deletes and undeletes, their dry runs, and long path lists sent in chunks.

use nlds_core::api::{
    Accepted, ApiAction, ChunkStored, GetPlan, GetRequest, PathChunk, PutPlan, PutRequest,
};
use reqwest::Method;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{Client, decode};
use crate::error::{Error, Result};
use crate::path_stream::PathStream;

impl Client {
    /// Starts a put. A `transaction_id` is generated when the request has none, so the request
    /// can be retried without starting a second transaction. A list of more paths than one
    /// request carries ([`CHUNK_PATHS`]) is sent in chunks first (`POST /api/v2/paths`), and the
    /// put names them. A list read as it streams is sent with [`Client::path_stream`].
    ///
    /// [`CHUNK_PATHS`]: super::CHUNK_PATHS
    pub async fn put(&self, req: &PutRequest) -> Result<Accepted> {
        let mut req = req.clone();
        let tid = *req.transaction_id.get_or_insert_with(Uuid::new_v4);
        if req.parts == 0 && req.paths.len() > self.chunk_paths {
            let paths = std::mem::take(&mut req.paths);
            let mut stream = self.path_stream(tid, ApiAction::Putlist, req.group.clone());
            for chunk in paths.chunks(self.chunk_paths) {
                stream.push(chunk.to_vec()).await?;
            }
            return stream.put(req).await;
        }
        self.post_put(&req).await
    }

    /// `POST /api/v2/put` of `req` as it is.
    pub(crate) async fn post_put(&self, req: &PutRequest) -> Result<Accepted> {
        self.send(Method::POST, "/put", None::<&()>, Some(req))
            .await
    }

    /// `POST /api/v2/get` of `req` as it is.
    pub(crate) async fn post_get(&self, req: &GetRequest) -> Result<Accepted> {
        self.send(Method::POST, "/get", None::<&()>, Some(req))
            .await
    }

    /// The paths of the put, get or delete `tid` (`action`: putlist, getlist or dellist, in
    /// `group`), sent as they are read: each chunk [`PathStream::push`]ed is sent as the next
    /// part (`POST /api/v2/paths`) once the one after it comes, and the last is carried by the
    /// request itself ([`PathStream::put`], [`PathStream::get`], [`PathStream::delete`]), which
    /// names how many parts came before.
    /// Nothing is sent for a list of one chunk but the request. No more than two chunks are held
    /// at a time, however long the list.
    pub fn path_stream(
        &self,
        tid: Uuid,
        action: ApiAction,
        group: Option<String>,
    ) -> PathStream<'_> {
        PathStream::new(self, tid, action, group)
    }

    /// Stores one chunk of the paths of a put or get (`POST /api/v2/paths`); sending it again
    /// replaces it.
    pub async fn send_chunk(&self, chunk: &PathChunk) -> Result<ChunkStored> {
        self.send(Method::POST, "/paths", None::<&()>, Some(chunk))
            .await
    }

    /// What a put would do (`dry_run`): nothing is started or changed. A request with more
    /// paths or entries than one request carries ([`CHUNK_PATHS`]) is asked in parts of at most
    /// that many of each (with the same transaction id, so a new holding's label is the same),
    /// and the answers are joined: the holding of the first, every verdict in order, every path.
    ///
    /// [`CHUNK_PATHS`]: super::CHUNK_PATHS
    pub async fn put_plan(&self, req: &PutRequest) -> Result<PutPlan> {
        let mut req = req.clone();
        req.dry_run = true;
        req.transaction_id.get_or_insert_with(Uuid::new_v4);
        let n = self.chunk_paths;
        if req.paths.len() <= n && req.entries.len() <= n {
            return self.put_plan_part(&req).await;
        }
        let paths = std::mem::take(&mut req.paths);
        let entries = std::mem::take(&mut req.entries);
        let parts = paths.len().div_ceil(n).max(entries.len().div_ceil(n));
        let mut joined: Option<PutPlan> = None;
        for k in 0..parts {
            // A part past the last chunk of paths carries the first one again (a put names at
            // least one path); the joined plan lists each path once.
            let part_paths = paths.chunks(n).nth(k).or_else(|| paths.chunks(n).next());
            let ask = PutRequest {
                paths: part_paths.map(<[String]>::to_vec).unwrap_or_default(),
                entries: entries
                    .chunks(n)
                    .nth(k)
                    .map(<[_]>::to_vec)
                    .unwrap_or_default(),
                ..req.clone()
            };
            let plan = self.put_plan_part(&ask).await?;
            match joined.as_mut() {
                None => joined = Some(plan),
                Some(j) => j.verdicts.extend(plan.verdicts),
            }
        }
        let mut plan = joined.ok_or_else(|| Error::Decode("a dry run of no parts".into()))?;
        plan.paths = paths;
        Ok(plan)
    }

    async fn put_plan_part(&self, req: &PutRequest) -> Result<PutPlan> {
        let resp = self
            .send_response(Method::POST, "/put", None::<&()>, Some(req))
            .await?;
        plan_answer(resp).await
    }

    /// What a get would restore (`dry_run`): nothing is started or written.
    pub async fn get_plan(&self, req: &GetRequest) -> Result<GetPlan> {
        let mut req = req.clone();
        req.dry_run = true;
        let resp = self
            .send_response(Method::POST, "/get", None::<&()>, Some(&req))
            .await?;
        plan_answer(resp).await
    }

    /// Starts a get; see [`Client::put`] about the `transaction_id` and long lists.
    pub async fn get(&self, req: &GetRequest) -> Result<Accepted> {
        let mut req = req.clone();
        let tid = *req.transaction_id.get_or_insert_with(Uuid::new_v4);
        if req.parts == 0 && req.paths.len() > self.chunk_paths {
            let paths = std::mem::take(&mut req.paths);
            let mut stream = self.path_stream(tid, ApiAction::Getlist, req.group.clone());
            for chunk in paths.chunks(self.chunk_paths) {
                stream.push(chunk.to_vec()).await?;
            }
            return stream.get(req).await;
        }
        self.post_get(&req).await
    }

    /// Deletes files or whole holdings (soft: undeletable within the retention period); see
    /// [`Client::put`] about the `transaction_id` and long lists (more paths than
    /// [`Client::chunk_paths`], not regular expressions, are sent in chunks first).
    pub async fn delete(&self, req: &nlds_core::api::DeleteRequest) -> Result<Accepted> {
        let mut req = req.clone();
        req.dry_run = false;
        let tid = *req.transaction_id.get_or_insert_with(Uuid::new_v4);
        if req.parts == 0 && !req.regex && req.paths.len() > self.chunk_paths {
            let paths = std::mem::take(&mut req.paths);
            let mut stream = self.path_stream(tid, ApiAction::Dellist, req.group.clone());
            for chunk in paths.chunks(self.chunk_paths) {
                stream.push(chunk.to_vec()).await?;
            }
            return stream.delete(req).await;
        }
        self.post_delete(&req).await
    }

    /// `POST /api/v2/delete` of `req` as it is.
    pub(crate) async fn post_delete(
        &self,
        req: &nlds_core::api::DeleteRequest,
    ) -> Result<Accepted> {
        self.send(Method::POST, "/delete", None::<&()>, Some(req))
            .await
    }

    /// What a delete would delete (`dry_run`): nothing is changed.
    pub async fn delete_plan(
        &self,
        req: &nlds_core::api::DeleteRequest,
    ) -> Result<nlds_core::api::DeletePlan> {
        let mut req = req.clone();
        req.dry_run = true;
        let resp = self
            .send_response(Method::POST, "/delete", None::<&()>, Some(&req))
            .await?;
        plan_answer(resp).await
    }

    /// Brings back deleted files or holdings (or with `dry_run`, says what it would).
    pub async fn undelete(
        &self,
        req: &nlds_core::api::UndeleteRequest,
    ) -> Result<nlds_core::api::DeletePlan> {
        self.send(Method::POST, "/undelete", None::<&()>, Some(req))
            .await
    }
}

/// The answer to a dry run: 200 with the plan. A 202 means the server does not know `dry_run`
/// and started a real transaction: say so rather than pretend.
async fn plan_answer<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
    if resp.status() == reqwest::StatusCode::ACCEPTED {
        let accepted: Accepted = decode(resp).await?;
        let id = accepted.transaction_id;
        return Err(Error::Decode(format!(
            "this server does not support dry runs and started transaction {id} instead; follow it with `nlds stat -n {id}`"
        )));
    }
    decode(resp).await
}
