//! The HTTP client of the native API (`/api/v2`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nlds_core::ErrorCode;
use nlds_core::api::{
    API_PREFIX, Accepted, ApiAction, ChunkStored, FilePage, GetPlan, GetRequest, HoldingPage,
    HoldingQuery, MetaRequest, MetaResponse, PathChunk, PutPlan, PutRequest, StatQuery,
    TransactionPage, TransactionStatus, WhoAmI,
};
use nlds_core::error::ErrorBody;
use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result, code_for_status};
use crate::live::{self, Stop};
use crate::path_stream::PathStream;

/// How often and how patiently a request is retried after a connection error or a 502/503/504.
/// A 4xx (or any other answer) is never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first included (1 = no retries).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub base_delay: Duration,
    /// Upper bound of a delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (1-based): "equal jitter", i.e. half of the capped
    /// exponential back-off plus a random part of the other half.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(random_fraction())
    }
}

/// A number in `[0, 1)` from the OS randomness behind uuid v4 (no extra dependency needed).
fn random_fraction() -> f64 {
    let bits = (Uuid::new_v4().as_u128() & 0xffff_ffff) as u32;
    f64::from(bits) / (f64::from(u32::MAX) + 1.0)
}

/// Tunables of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, answer included.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// How long [`Client::wait`] takes a 404 for "not recorded yet" (QUEUED) rather than an error:
    /// the monitor records a transaction shortly after the put or get was accepted.
    pub not_found_grace: Duration,
    /// Consecutive transient failures (the server or its broker away) [`Client::wait`] rides
    /// out before giving up. By default there is no limit: a wait lasts through an outage until
    /// its own timeout.
    pub wait_transient_failures: u32,
    /// Do not verify the server's TLS certificate (test servers with self-signed certificates).
    pub insecure: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            not_found_grace: Duration::from_secs(30),
            wait_transient_failures: u32::MAX,
            insecure: false,
        }
    }
}

/// What [`Client::wait`] reports after each poll.
#[derive(Debug, Clone, Copy)]
pub enum WaitProgress<'a> {
    /// The server does not know the transaction yet (404 within the grace period): QUEUED.
    Queued,
    /// The transaction's current status.
    Status(&'a TransactionStatus),
    /// A poll failed with a transient error; waiting goes on.
    Unreachable(&'a Error),
    /// The live status stream could not be opened or broke: waiting goes on by polling every
    /// this long (more after failed polls).
    Polling(&'a Error, Duration),
}

/// [`Client::whoami_full`]: who the server takes the token's bearer to be, and when the token
/// expires if the server (or the token itself) says.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    #[serde(flatten)]
    pub who: WhoAmI,
    /// When the token stops being accepted, if known.
    pub token_expires: Option<DateTime<Utc>>,
}

/// `/whoami` as sent by servers that also say when the token expires.
#[derive(Deserialize)]
struct WhoAmIWire {
    #[serde(flatten)]
    who: WhoAmI,
    #[serde(default, alias = "expires_at", alias = "token_expires_at")]
    token_expires: Option<DateTime<Utc>>,
}

/// Where the bearer token comes from when it can change while the client runs: an OAuth2 login
/// ([`crate::oauth::OAuthSession`]) renews its access token before it expires.
pub trait TokenSource: Send + Sync {
    /// The token to send now. `rejected`: the server has just refused the last one (401), so get
    /// a new one if that is possible.
    fn bearer(&self, rejected: bool) -> Pin<Box<dyn Future<Output = Result<String>> + Send + '_>>;
    /// When the current token expires, if known.
    fn expires_at(&self) -> Option<DateTime<Utc>>;
}

/// A client of one NLDS server, acting with one bearer token. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    /// The server URL without a trailing slash, e.g. `https://nlds.example.org`.
    base: String,
    token: String,
    http: reqwest::Client,
    options: ClientOptions,
    /// Asked for the token before every request, when set ([`Client::with_token_source`]).
    source: Option<Arc<dyn TokenSource>>,
    /// Most paths sent in one request: longer lists go in chunks ([`Client::with_chunk_paths`]).
    chunk_paths: usize,
}

/// The longest pause between two polls of [`Client::wait`] once the server stops answering.
pub const MAX_POLL: Duration = Duration::from_secs(30);

/// Most paths a put or get sends in one request by default; a longer list is sent in chunks of
/// this many (well below the server's default `[server] max_paths` of 50,000, and about 1 MB of
/// JSON for paths of 100 bytes).
pub const CHUNK_PATHS: usize = 10_000;

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .field("options", &self.options)
            .field("token_source", &self.source.is_some())
            .finish()
    }
}

impl Client {
    /// A client with the default [`ClientOptions`].
    pub fn new(base_url: &str, token: impl Into<String>) -> Result<Self> {
        Self::with_options(base_url, token, ClientOptions::default())
    }

    /// `base_url` is the server's root (`https://host` or `https://host/prefix`); the API lives
    /// under `/api/v2` below it.
    pub fn with_options(
        base_url: &str,
        token: impl Into<String>,
        options: ClientOptions,
    ) -> Result<Self> {
        let url = Url::parse(base_url.trim())
            .map_err(|e| Error::Config(format!("server URL {base_url:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::Config(format!(
                "server URL {base_url:?} must be an http:// or https:// URL"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Config(format!(
                "server URL {base_url:?} must not have a query or fragment"
            )));
        }
        let token = token.into();
        if token.trim().is_empty() {
            return Err(Error::Config("the token is empty".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .danger_accept_invalid_certs(options.insecure)
            .user_agent(concat!("nlds-rs-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot set up HTTP: {e}")))?;
        Ok(Self {
            base: url.as_str().trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            http,
            options,
            source: None,
            chunk_paths: CHUNK_PATHS,
        })
    }

    /// The same client, taking its bearer token from `source` before every request (the token
    /// given to [`Client::with_options`] is then only a fallback for `whoami`'s expiry). A 401
    /// answer asks the source for a new token once and repeats the request.
    pub fn with_token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// The server URL this client talks to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Sends at most `n` paths in one request (at least 1): a put or get of more sends them in
    /// chunks first.
    pub fn with_chunk_paths(mut self, n: usize) -> Self {
        self.chunk_paths = n.max(1);
        self
    }

    /// Starts a put. A `transaction_id` is generated when the request has none, so the request
    /// can be retried without starting a second transaction. A list of more paths than one
    /// request carries ([`CHUNK_PATHS`]) is sent in chunks first (`POST /api/v2/paths`), and the
    /// put names them. A list read as it streams is sent with [`Client::path_stream`].
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

    /// Most paths sent in one request ([`Client::with_chunk_paths`]).
    pub fn chunk_paths(&self) -> usize {
        self.chunk_paths
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

    /// Purges deleted files now (service operators).
    pub async fn purge(
        &self,
        req: &nlds_core::api::PurgeRequest,
    ) -> Result<nlds_core::api::PurgeResponse> {
        self.send(Method::POST, "/admin/purge", None::<&()>, Some(req))
            .await
    }

    /// Starts an archive round now (service operators only); answers the round's id.
    pub async fn admin_archive(&self) -> Result<nlds_core::api::ArchiveRequested> {
        self.send(
            Method::POST,
            "/admin/archive",
            None::<&()>,
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// Drops the warm copies of holding `holding_id`'s files that have a verified cold copy
    /// (service operators only).
    pub async fn admin_evict(&self, holding_id: i64) -> Result<nlds_core::api::Evicted> {
        let req = nlds_core::api::EvictRequest { holding_id };
        self.send(Method::POST, "/admin/evict", None::<&()>, Some(&req))
            .await
    }

    /// The roles drained for maintenance now (service operators only).
    pub async fn admin_drains(&self) -> Result<nlds_core::drain::Drains> {
        self.send(Method::GET, "/admin/drains", None::<&()>, None::<&()>)
            .await
    }

    /// Drains `role`: its processes finish what they have in hand and take no new work until
    /// [`Client::admin_resume`] (service operators only); answers the roles drained now.
    pub async fn admin_drain(
        &self,
        role: nlds_core::Role,
        reason: Option<&str>,
    ) -> Result<nlds_core::drain::Drains> {
        let body = nlds_core::drain::DrainBody {
            reason: reason.map(str::to_owned),
        };
        let path = format!("/admin/drains/{}", role.as_str());
        self.send(Method::POST, &path, None::<&()>, Some(&body))
            .await
    }

    /// Lets a drained `role` take work again (service operators only); answers the roles
    /// drained now.
    pub async fn admin_resume(&self, role: nlds_core::Role) -> Result<nlds_core::drain::Drains> {
        let path = format!("/admin/drains/{}", role.as_str());
        self.send(Method::DELETE, &path, None::<&()>, None::<&()>)
            .await
    }

    /// The quotas of the caller's groups (or of `group`): limits, usage, reserved.
    pub async fn quota(&self, group: Option<&str>) -> Result<nlds_core::quota::QuotaReport> {
        let query = group.map(|g| [("group", g)]);
        self.send(Method::GET, "/quota", query.as_ref(), None::<&()>)
            .await
    }

    /// The caller's notification channels (with `secret`, the webhook's signing secret too).
    pub async fn notify_show(&self, secret: bool) -> Result<nlds_core::notify::NotifySettings> {
        let query = secret.then_some([("secret", "true")]);
        self.send(Method::GET, "/notify", query.as_ref(), None::<&()>)
            .await
    }

    /// Sets the caller's notification channels; a new webhook's secret is in the answer.
    pub async fn notify_set(
        &self,
        change: &nlds_core::notify::SetNotify,
    ) -> Result<nlds_core::notify::NotifySettings> {
        self.send(Method::PUT, "/notify", None::<&()>, Some(change))
            .await
    }

    /// Removes the caller's notification channels.
    pub async fn notify_clear(&self) -> Result<nlds_core::notify::NotifySettings> {
        self.send(Method::DELETE, "/notify", None::<&()>, None::<&()>)
            .await
    }

    /// Every notification in `state` (dead letters by default), newest first (service
    /// operators only).
    pub async fn admin_notifications(
        &self,
        state: Option<nlds_core::notify::Delivery>,
        limit: Option<u64>,
    ) -> Result<Vec<nlds_core::notify::NotificationSummary>> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(s) = state {
            query.push(("state", s.to_string()));
        }
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        self.send(
            Method::GET,
            "/admin/notifications",
            Some(&query),
            None::<&()>,
        )
        .await
    }

    /// Every group's quota, or `group`'s (service operators only).
    pub async fn admin_quota(&self, group: Option<&str>) -> Result<nlds_core::quota::QuotaReport> {
        let query = group.map(|g| [("group", g)]);
        self.send(Method::GET, "/admin/quota", query.as_ref(), None::<&()>)
            .await
    }

    /// Changes `group`'s limits (service operators only); answers the group's quota after it.
    pub async fn set_quota(
        &self,
        group: &str,
        change: &nlds_core::quota::SetQuota,
    ) -> Result<nlds_core::quota::QuotaReport> {
        let path = format!("/admin/quota/{}", path_segment(group));
        self.send(Method::PUT, &path, None::<&()>, Some(change))
            .await
    }

    /// Transactions of every user (service operators only).
    pub async fn admin_transactions(
        &self,
        query: &nlds_core::admin::AdminTransactionQuery,
    ) -> Result<TransactionPage> {
        self.send(Method::GET, "/admin/transactions", Some(query), None::<&()>)
            .await
    }

    /// A page of any transaction's failed files (service operators only).
    pub async fn admin_failed_files(
        &self,
        transaction_id: Uuid,
        query: &nlds_core::admin::PageQuery,
    ) -> Result<nlds_core::admin::FailedFilePage> {
        let path = format!("/admin/transactions/{transaction_id}/failed");
        self.send(Method::GET, &path, Some(query), None::<&()>)
            .await
    }

    /// The records the logger collected (service operators only).
    pub async fn admin_logs(
        &self,
        query: &nlds_core::admin::LogQuery,
    ) -> Result<nlds_core::admin::LogPage> {
        self.send(Method::GET, "/admin/logs", Some(query), None::<&()>)
            .await
    }

    /// The audit log (service operators only).
    pub async fn admin_audit(
        &self,
        query: &nlds_core::admin::AuditQuery,
    ) -> Result<nlds_core::admin::AuditPage> {
        self.send(Method::GET, "/admin/audit", Some(query), None::<&()>)
            .await
    }

    /// What a policy pass would do now, per rule and per group (service operators); changes
    /// nothing. It evaluates the whole catalogue: give the client a long enough
    /// `request_timeout`.
    pub async fn policy_dry_run(&self) -> Result<nlds_core::policy::PassReport> {
        self.send(
            Method::POST,
            "/admin/policy/dry-run",
            None::<&()>,
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// Starts a storage audit in the background (service operators): the catalogue against the
    /// warm buckets and the cold store, with a scrub and a repair if asked.
    pub async fn storage_audit_run(
        &self,
        req: &nlds_core::storage_audit::AuditRequest,
    ) -> Result<nlds_core::storage_audit::AuditStarted> {
        self.send(Method::POST, "/admin/audit/storage", None::<&()>, Some(req))
            .await
    }

    /// The latest `runs` storage audits, newest first (service operators).
    pub async fn storage_audit_runs(
        &self,
        runs: Option<u32>,
    ) -> Result<nlds_core::storage_audit::AuditRuns> {
        let q = nlds_core::storage_audit::AuditRunsQuery { runs };
        self.send(Method::GET, "/admin/audit/storage", Some(&q), None::<&()>)
            .await
    }

    /// Deletes what storage audits quarantined (service operators).
    pub async fn purge_quarantine(
        &self,
        req: &nlds_core::storage_audit::PurgeQuarantineRequest,
    ) -> Result<nlds_core::storage_audit::QuarantinePurged> {
        self.send(
            Method::POST,
            "/admin/audit/quarantine/purge",
            None::<&()>,
            Some(req),
        )
        .await
    }

    /// Starts a policy pass now, in the background (service operators).
    pub async fn policy_run(&self) -> Result<nlds_core::policy::PassStarted> {
        self.send(
            Method::POST,
            "/admin/policy/run",
            None::<&()>,
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// The policy runner's state and its last `passes` passes (service operators).
    pub async fn policy_status(
        &self,
        passes: Option<u32>,
    ) -> Result<nlds_core::policy::PolicyStatus> {
        let q = nlds_core::policy::PolicyStatusQuery { passes };
        self.send(Method::GET, "/admin/policy", Some(&q), None::<&()>)
            .await
    }

    /// Reads the policy's rules again (service operators); `loaded` is false, with the errors,
    /// when the new rules were refused (the old ones stay).
    pub async fn policy_reload(&self) -> Result<nlds_core::policy::ReloadReport> {
        self.send(
            Method::POST,
            "/admin/policy/reload",
            None::<&()>,
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// Closes the policy's circuit breaker (service operators).
    pub async fn policy_reset(&self) -> Result<nlds_core::policy::PolicyStatus> {
        self.send(
            Method::POST,
            "/admin/policy/reset",
            None::<&()>,
            Some(&serde_json::json!({})),
        )
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

    /// Lists transactions.
    pub async fn stat(&self, query: &StatQuery) -> Result<TransactionPage> {
        self.send(Method::GET, "/transactions", Some(query), None::<&()>)
            .await
    }

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

    /// Puts the files finished put `transaction_id` failed again, into the same holding, as a
    /// new transaction linked to the first (`retry_of` / `retried_by` in their statuses).
    pub async fn retry(&self, transaction_id: Uuid) -> Result<Accepted> {
        let path = format!("/transactions/{transaction_id}/retry");
        self.send(Method::POST, &path, None::<&()>, None::<&()>)
            .await
    }

    /// Cancels put or get `transaction_id`, which has not ended: it ends CANCELLED once the work
    /// it had in flight has stopped ([`Client::wait`] follows it). `conflict` if it has ended.
    pub async fn cancel(&self, transaction_id: Uuid) -> Result<nlds_core::api::CancelAccepted> {
        let path = format!("/transactions/{transaction_id}/cancel");
        self.send(Method::POST, &path, None::<&()>, None::<&()>)
            .await
    }

    /// One transaction's status; [`Error::Api`] with `not_found` if the server does not know it.
    pub async fn transaction(&self, transaction_id: Uuid) -> Result<TransactionStatus> {
        let path = format!("/transactions/{transaction_id}");
        self.send(Method::GET, &path, None::<&()>, None::<&()>)
            .await
    }

    /// Who the server takes the token's bearer to be.
    pub async fn whoami(&self) -> Result<WhoAmI> {
        self.send(Method::GET, "/whoami", None::<&()>, None::<&()>)
            .await
    }

    /// Like [`Client::whoami`], with the token's expiry when the server (or a JWT token's `exp`
    /// claim) tells it.
    pub async fn whoami_full(&self) -> Result<Identity> {
        let wire: WhoAmIWire = self
            .send(Method::GET, "/whoami", None::<&()>, None::<&()>)
            .await?;
        let token_expires = wire
            .token_expires
            .or_else(|| self.source.as_ref().and_then(|s| s.expires_at()))
            .or_else(|| jwt_expiry(&self.token));
        Ok(Identity {
            who: wire.who,
            token_expires,
        })
    }

    /// Waits until a transaction's state is final (or failed) and returns that status.
    /// `on_progress` is called with every status seen. With a `timeout`, gives up with
    /// [`Error::Timeout`] once it has passed.
    ///
    /// It follows the transaction's live status (server-sent events), so it returns as soon as
    /// the final state is stored. If the stream cannot be opened or breaks, it says so
    /// ([`WaitProgress::Polling`]; not for a server without live status) and polls every `poll`
    /// instead, backing off up to [`MAX_POLL`] while polls fail.
    ///
    /// A transaction the server does not know is an error at once ([`Error::Api`], not found).
    /// While polling (a server without live status), a 404 within
    /// [`ClientOptions::not_found_grace`] of the start counts as QUEUED; transient failures (connection errors, 502-504) are ridden out up to
    /// [`ClientOptions::wait_transient_failures`] polls in a row.
    pub async fn wait<F>(
        &self,
        transaction_id: Uuid,
        poll: Duration,
        timeout: Option<Duration>,
        mut on_progress: F,
    ) -> Result<TransactionStatus>
    where
        F: FnMut(WaitProgress<'_>),
    {
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let poll = poll.max(Duration::from_millis(10));
        match self
            .follow_events(transaction_id, deadline, &mut on_progress)
            .await
        {
            Ok(status) => return Ok(status),
            Err(Stop::Timeout) => return Err(Error::Timeout),
            // An older server without live status: polling is the way, nothing to say.
            Err(Stop::Broken { error, .. }) if live::unsupported(&error) => {}
            // A server with live status records a transaction before it accepts it: one it
            // does not know is unknown (or someone else's), not queued.
            Err(Stop::Broken {
                error:
                    e @ Error::Api {
                        code: ErrorCode::NotFound,
                        ..
                    },
                opened: false,
            }) => return Err(e),
            Err(Stop::Broken { error, .. }) => on_progress(WaitProgress::Polling(&error, poll)),
        }
        self.poll_until_final(transaction_id, poll, start, deadline, on_progress)
            .await
    }

    async fn poll_until_final<F>(
        &self,
        transaction_id: Uuid,
        poll: Duration,
        start: Instant,
        deadline: Option<Instant>,
        mut on_progress: F,
    ) -> Result<TransactionStatus>
    where
        F: FnMut(WaitProgress<'_>),
    {
        let mut transient = 0u32;
        loop {
            match self.transaction(transaction_id).await {
                Ok(status) => {
                    transient = 0;
                    on_progress(WaitProgress::Status(&status));
                    if status.state.is_final() || status.state.is_failed() {
                        return Ok(status);
                    }
                }
                Err(Error::Api {
                    code: ErrorCode::NotFound,
                    ..
                }) if start.elapsed() < self.options.not_found_grace => {
                    on_progress(WaitProgress::Queued);
                }
                Err(e) if e.is_transient() && transient < self.options.wait_transient_failures => {
                    transient += 1;
                    on_progress(WaitProgress::Unreachable(&e));
                }
                Err(e) => return Err(e),
            }
            // Back off while the server does not answer.
            let mut pause = poll
                .checked_mul(2u32.pow(transient.min(8)))
                .unwrap_or(MAX_POLL)
                .min(MAX_POLL.max(poll));
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Timeout);
                }
                pause = pause.min(deadline - now);
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Opens a long-lived `GET` of `path` (a server-sent event stream), bounded by `longest`
    /// instead of the request timeout.
    pub(crate) async fn open_stream(
        &self,
        path: &str,
        longest: Duration,
    ) -> Result<reqwest::Response> {
        let token = match &self.source {
            Some(source) => source.bearer(false).await?,
            None => self.token.clone(),
        };
        self.http
            .get(self.url(path))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .timeout(longest.max(Duration::from_secs(1)))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(Error::Transport)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}{}", self.base, API_PREFIX, path)
    }

    /// Sends one request, retrying as the [`RetryPolicy`] says, and decodes the answer.
    async fn send<T, Q, B>(
        &self,
        method: Method,
        path: &str,
        query: Option<&Q>,
        body: Option<&B>,
    ) -> Result<T>
    where
        T: DeserializeOwned,
        Q: Serialize + ?Sized,
        B: Serialize + ?Sized,
    {
        let resp = self.send_response(method, path, query, body).await?;
        decode(resp).await
    }

    /// Sends one request, retrying as the [`RetryPolicy`] says; the answer is not decoded.
    async fn send_response<Q, B>(
        &self,
        method: Method,
        path: &str,
        query: Option<&Q>,
        body: Option<&B>,
    ) -> Result<reqwest::Response>
    where
        Q: Serialize + ?Sized,
        B: Serialize + ?Sized,
    {
        let mut token = match &self.source {
            Some(source) => source.bearer(false).await?,
            None => self.token.clone(),
        };
        let mut template = self
            .http
            .request(method, self.url(path))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(q) = query {
            template = template.query(q);
        }
        if let Some(b) = body {
            template = template.json(b);
        }
        let attempts = self.options.retry.attempts.max(1);
        let mut attempt = 1;
        let mut renewed = false;
        loop {
            let request = clone_request(&template)?.bearer_auth(&token);
            let retry_allowed = attempt < attempts;
            match request.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // An OAuth2 token the server refuses (revoked, say): renew it once and repeat.
                    if status == 401
                        && !renewed
                        && let Some(source) = &self.source
                    {
                        renewed = true;
                        let fresh = source.bearer(true).await?;
                        if fresh != token {
                            token = fresh;
                            continue;
                        }
                    }
                    if matches!(status, 502..=504) && retry_allowed {
                        tokio::time::sleep(self.options.retry.delay(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
                Err(e) if retry_allowed && is_connection_error(&e) => {
                    tokio::time::sleep(self.options.retry.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(Error::Transport(e)),
            }
        }
    }
}

fn clone_request(template: &RequestBuilder) -> Result<RequestBuilder> {
    // Bodies are always in-memory JSON here, so the clone cannot fail; stay total anyway.
    template
        .try_clone()
        .ok_or_else(|| Error::Config("the request body cannot be replayed".into()))
}

/// A connection could not be opened (refused, reset, or not within the connect timeout), or broke
/// before an answer came. A request timeout is not retried: the request may still be running on
/// the server, and the total wait would multiply.
fn is_connection_error(e: &reqwest::Error) -> bool {
    e.is_connect() || (e.is_request() && !e.is_timeout())
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

/// The `exp` claim of a JWT bearer token, if the token is one.
fn jwt_expiry(token: &str) -> Option<DateTime<Utc>> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let bytes = base64url_decode(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    DateTime::from_timestamp(claims.get("exp")?.as_i64()?, 0)
}

/// Decodes unpadded (or padded) base64url.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

pub(crate) async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
    let status = resp.status();
    let url_path = resp.url().path().to_owned();
    let bytes = resp.bytes().await.map_err(Error::Transport)?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| Error::Decode(format!("{url_path}: {e}")));
    }
    let status = status.as_u16();
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(&bytes) {
        return Err(Error::Api {
            status,
            code: body.error.code,
            message: body.error.message,
        });
    }
    // Not our envelope (a proxy's error page, say): keep a short, single-line excerpt.
    let text: String = String::from_utf8_lossy(&bytes)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error");
    let message = if text.is_empty() {
        format!("HTTP {status} {reason} from {url_path}")
    } else {
        format!("HTTP {status} {reason} from {url_path}: {text}")
    };
    Err(Error::Api {
        status,
        code: code_for_status(status),
        message,
    })
}

/// `s` percent-encoded as one path segment.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_jittered_and_capped() {
        let p = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        for _ in 0..50 {
            let d1 = p.delay(1);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d2 = p.delay(2);
            assert!(
                d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200),
                "{d2:?}"
            );
            let d9 = p.delay(9);
            assert!(
                d9 >= Duration::from_millis(150) && d9 <= Duration::from_millis(300),
                "{d9:?}"
            );
        }
        assert_eq!(RetryPolicy::none().attempts, 1);
    }

    #[test]
    fn jwt_expiry_is_read_from_the_token() {
        assert_eq!(base64url_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64url_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64url_decode("_-8").unwrap(), vec![0xff, 0xef]);
        assert!(base64url_decode("a b").is_none());
        // {"sub":"alice","exp":1800000000}
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTgwMDAwMDAwMH0.c2ln";
        assert_eq!(
            jwt_expiry(token).unwrap().to_rfc3339(),
            "2027-01-15T08:00:00+00:00"
        );
        assert_eq!(jwt_expiry("opaque-token-123"), None);
        assert_eq!(jwt_expiry("a.b.c.d"), None);
    }

    #[test]
    fn urls_and_validation() {
        let c = Client::new("https://nlds.example.org/base/", "t0k3n").unwrap();
        assert_eq!(c.base_url(), "https://nlds.example.org/base");
        assert_eq!(c.url("/put"), "https://nlds.example.org/base/api/v2/put");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("t0k3n"), "{dbg}");
        assert!(matches!(
            Client::new("nlds.example.org", "t"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Client::new("ftp://nlds.example.org", "t"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Client::new("https://h/?a=b", "t"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Client::new("https://h", "  "),
            Err(Error::Config(_))
        ));
    }
}
