//! `/api/1.0.0`: the wire protocol of CEDA's NLDS server, as the published Python client
//! (nlds-client 1.0.17) speaks it, served as an adapter over the same core as `/api/v2`: every
//! handler here translates the request, calls the functions the native handlers call (the same
//! RPCs and the same router messages), and translates the answer back.
//!
//! The quirks kept, because the Python client depends on them (see docs/LEGACY_API.md):
//! - success is HTTP 202 whose body is a JSON *string* holding JSON (the client does
//!   `json.loads(response.json())`);
//! - errors are `{"detail": "<JSON string of {loc, msg, type}>"}`; the client shows `msg` on 400
//!   and refreshes its token on 401/403;
//! - failures of list, find, meta and stat are answered 202 with `details.failure`;
//! - booleans arrive as Python's `True`/`False`, `status/` takes a JSON body on a GET, and every
//!   path ends in `/` (both spellings are served, so no redirect is needed);
//! - `user` and `group` are required query parameters and must be the caller's own (an admin may
//!   act for anyone), answered 404 otherwise as upstream does;
//! - `access_key` and `secret_key` are accepted and ignored: object-store credentials live on
//!   the server. They never reach a log line, a queue message or an error text. `tenancy` names
//!   the object-store tenancy a put writes to when `[server.legacy_init] select_tenancy` is on
//!   (a name only; the one `init/` advertises, or none, means the default); else it is ignored.
//!
//! Deliberate differences (each a fix an old client cannot notice): a put answers with the
//! holding it resolved; `tag` is echoed as a dictionary on every endpoint; `list -x` matches the
//! label as a regular expression; find's holdings are keyed by label but never collide; stat always
//! carries `failed_files`; a malformed body is a 400 naming the problem rather than a 500.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use nlds_core::admin::AuditAction;
use nlds_core::api::{
    ApiAction, FileEntry, GetRequest, HoldingSummary, MAX_LIMIT, PutRequest, Tags, Tier,
    TransactionStatus, parse_tags,
};
use nlds_core::message::{HoldingFilter, PathKind, RpcReply, StatusFilter};
use nlds_core::{Action, ErrorCode, Payload, Role, RoutingKey, State as TxState, Worker};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use uuid::Uuid;

use crate::app::{AppState, audited};
use crate::auth::Identity;
use crate::error::ServerError;
use crate::routes;

/// The prefix of the legacy API.
pub const PREFIX: &str = "/api/1.0.0";

// -------------------------------------------------------------------------------------------
// Errors

/// An error in the legacy shape: `{"detail": "<json of {loc, msg, type}>"}`, or FastAPI's
/// validation shape for 422.
#[derive(Debug)]
pub struct LegacyError {
    status: StatusCode,
    body: Value,
}

impl LegacyError {
    fn new(status: StatusCode, loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        let detail = json!({"loc": loc, "msg": msg.into(), "type": kind}).to_string();
        Self {
            status,
            body: json!({ "detail": detail }),
        }
    }

    fn bad_request(msg: impl Into<String>, kind: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, &["None"], msg, kind)
    }

    /// FastAPI's answer to a missing or malformed query parameter.
    fn unprocessable(name: &str, msg: &str, kind: &str) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"detail": [{"loc": ["query", name], "msg": msg, "type": kind}]}),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for LegacyError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// Errors of the shared core, in the legacy shape. The Python client prints `msg` only for 400,
/// so every "your request cannot be done" error is a 400 with its reason; authentication keeps
/// 401/403 (they drive the client's token refresh) and server-side faults keep their status.
impl From<ServerError> for LegacyError {
    fn from(e: ServerError) -> Self {
        let e = e.0;
        crate::audit::observe_error(&e);
        let (status, kind) = match e.code {
            ErrorCode::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized."),
            ErrorCode::Forbidden => (StatusCode::FORBIDDEN, "Forbidden."),
            ErrorCode::Timeout => (StatusCode::GATEWAY_TIMEOUT, "Request timed out."),
            ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Service unavailable."),
            ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error."),
            ErrorCode::NotFound => (StatusCode::BAD_REQUEST, "Resources not found."),
            _ => (StatusCode::BAD_REQUEST, "Request could not be processed."),
        };
        Self::new(status, &["None"], e.message, kind)
    }
}

type LResult<T> = Result<T, LegacyError>;

// -------------------------------------------------------------------------------------------
// Query parameters

/// Query parameters that carry credentials (the Python client sends its object-store keys).
const CREDENTIAL_PARAMS: &[&str] = &["access_key", "secret_key"];

/// The query string, parsed the way FastAPI reads it: the last value of a name wins, booleans
/// are pydantic's (`True`, `true`, `1`, `yes`, `on`, ...).
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(raw: Option<&str>) -> LResult<Self> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|_| {
                LegacyError::bad_request("the query string is not URL-encoded", "Bad request.")
            })?;
        // Object-store credentials of old clients are accepted and dropped here, so they can
        // never reach a message, a log line or an error text.
        Ok(Self(
            pairs
                .into_iter()
                .filter(|(k, _)| !CREDENTIAL_PARAMS.contains(&k.as_str()))
                .collect(),
        ))
    }

    /// A present, non-empty value.
    fn str(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn required(&self, name: &str) -> LResult<&str> {
        self.0.get(name).map(String::as_str).ok_or_else(|| {
            LegacyError::unprocessable(name, "field required", "value_error.missing")
        })
    }

    fn bool(&self, name: &str) -> LResult<bool> {
        match self.0.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) => match v.as_str() {
                "true" | "1" | "yes" | "on" | "y" | "t" => Ok(true),
                "false" | "0" | "no" | "off" | "n" | "f" | "" => Ok(false),
                _ => Err(LegacyError::unprocessable(
                    name,
                    "value could not be parsed to a boolean",
                    "type_error.bool",
                )),
            },
        }
    }

    fn int(&self, name: &str) -> LResult<Option<i64>> {
        self.str(name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    // An integer the database cannot hold is out of range, not "not an integer".
                    if let Err(e) = nlds_core::number::parse_db(name, v) {
                        return LegacyError::from(ServerError::from(e));
                    }
                    LegacyError::unprocessable(
                        name,
                        "value is not a valid integer",
                        "type_error.integer",
                    )
                })
            })
            .transpose()
    }

    fn uuid(&self, name: &str) -> LResult<Option<Uuid>> {
        self.str(name)
            .map(|v| {
                Uuid::parse_str(v.trim()).map_err(|_| {
                    LegacyError::unprocessable(name, "value is not a valid uuid", "type_error.uuid")
                })
            })
            .transpose()
    }

    /// `tag=k:v,k2:v2` (braces allowed), as the client's `tag_to_string` writes it.
    fn tags(&self) -> LResult<Tags> {
        match self.str("tag") {
            None => Ok(Tags::new()),
            Some(t) => parse_tags(t).map_err(|e| {
                LegacyError::bad_request(
                    format!("tag cannot be processed: {}", e.message),
                    "Bad tag.",
                )
            }),
        }
    }

    fn limit(&self) -> LResult<u64> {
        match self.int("limit")? {
            None => Ok(MAX_LIMIT),
            Some(n) if n < 1 => Err(LegacyError::bad_request(
                format!("limit must be at least 1, not {n}"),
                "Bad limit.",
            )),
            Some(n) => Ok((n as u64).min(MAX_LIMIT)),
        }
    }
}

// -------------------------------------------------------------------------------------------
// Identity

/// The authenticated caller and the `user`/`group` the request acts as.
#[derive(Debug)]
pub struct Acting {
    pub caller: Identity,
    pub user: String,
    pub group: String,
    pub params: Params,
}

impl FromRequestParts<AppState> for Acting {
    type Rejection = LegacyError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> LResult<Self> {
        let params = Params::parse(parts.uri.query())?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(LegacyError::new(
                StatusCode::FORBIDDEN,
                &["None"],
                "OAuth token not supplied.",
                "Forbidden.",
            ));
        };
        let caller = match s.auth.check(token).await {
            crate::auth::Checked::Valid(id) => id,
            crate::auth::Checked::Refused => {
                return Err(LegacyError::new(
                    StatusCode::UNAUTHORIZED,
                    &["None"],
                    "OAuth token invalid or could not be found.",
                    "Unauthorized.",
                ));
            }
            crate::auth::Checked::Unavailable(_) => {
                return Err(LegacyError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &["None"],
                    "The OAuth token could not be checked: the identity provider did not answer.",
                    "Service unavailable.",
                ));
            }
        };
        crate::audit::identify(&caller);
        let user = params.required("user")?.trim().to_owned();
        let group = params.required("group")?.trim().to_owned();
        if user != caller.user && !caller.admin {
            return Err(LegacyError::new(
                StatusCode::NOT_FOUND,
                &["None"],
                format!("User {user} could not be found."),
                "Resource not found.",
            ));
        }
        if !caller.groups.contains(&group) && !caller.admin {
            return Err(LegacyError::new(
                StatusCode::NOT_FOUND,
                &["None"],
                format!("User is not a member of the group {group}."),
                "Resource not found.",
            ));
        }
        Ok(Acting {
            caller,
            user,
            group,
            params,
        })
    }
}

impl Acting {
    /// The caller's role in the group the request acts in (ADMIN for operators).
    pub fn role(&self) -> nlds_core::AccessRole {
        self.caller.role_in(&self.group)
    }
}

// -------------------------------------------------------------------------------------------
// Responses

/// 202 with the body as a JSON string holding JSON, as the upstream routers answer.
fn accepted(v: Value) -> Response {
    let body = serde_json::to_string(&v.to_string()).unwrap_or_else(|_| "\"{}\"".into());
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A time as upstream writes it: ISO 8601 in UTC without an offset (the Python client compares
/// it with naive datetimes, so an offset would crash it).
fn iso(t: DateTime<Utc>) -> String {
    t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

fn tags_value(t: &Tags) -> Value {
    json!(t)
}

/// The body of the list/find/meta/stat answers: the message upstream's catalogue sends back.
fn rpc_message(details: Value, data: Value, meta: Value) -> Value {
    json!({"details": details, "data": data, "meta": meta, "type": "standard"})
}

fn with_failure(mut details: Value, failure: impl Into<String>) -> Value {
    details["failure"] = Value::String(failure.into());
    details
}

/// Failures of an RPC endpoint are answered 202 with `details.failure`; faults of the service
/// (timeouts, a broken bus) keep their HTTP status.
fn rpc_failure(e: ServerError, details: Value, data: Value, meta: Value) -> Response {
    match e.0.code {
        ErrorCode::Timeout | ErrorCode::Unavailable | ErrorCode::Internal => {
            LegacyError::from(e).into_response()
        }
        _ => accepted(rpc_message(with_failure(details, e.0.message), data, meta)),
    }
}

// -------------------------------------------------------------------------------------------
// files/

/// `FileModel`, the body of `PUT files/` and `PUT files/getlist/`.
#[derive(Debug, Deserialize)]
struct FileModel {
    filelist: Vec<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    tag: Option<Tags>,
    #[serde(default)]
    holding_id: Option<i64>,
}

fn file_model(body: &Bytes, missing: &str) -> LResult<FileModel> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(LegacyError::bad_request(missing, "Resources not found."));
    }
    serde_json::from_slice(body).map_err(|e| {
        LegacyError::bad_request(
            format!("the request body is not a valid file list ({{\"filelist\": [paths], \"label\", \"tag\", \"holding_id\"}}): {e}"),
            "Bad request.",
        )
    })
}

/// Upstream strips the newline the client leaves on list entries and drops an empty entry.
/// We drop every blank entry, and every entry that is a blank line the client made absolute
/// (nlds-client ≤ 1.0.17 turns a blank line of a putlist file into `<cwd>/\n`, which upstream
/// then indexes as the whole working directory). Repeated entries are sent once.
pub fn clean_list(list: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    list.into_iter()
        .filter(|p| {
            let last = p.rsplit('/').next().unwrap_or("");
            !(p.contains('/') && !last.is_empty() && last.trim().is_empty())
        })
        .map(|p| p.trim_end_matches(['\n', '\r']).to_owned())
        .filter(|p| !p.trim().is_empty())
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

fn job_label_of(p: &Params, tid: Uuid) -> String {
    p.str("job_label")
        .map(str::to_owned)
        .unwrap_or_else(|| tid.to_string()[..8].to_owned())
}

/// `FileResponse`.
#[allow(clippy::too_many_arguments)]
fn file_response(
    a: &Acting,
    tid: Uuid,
    msg: String,
    action: ApiAction,
    job_label: &str,
    label: Option<String>,
    holding_id: Option<i64>,
    tags: &Tags,
) -> Value {
    json!({
        "transaction_id": tid.to_string(),
        "msg": msg,
        "user": a.user,
        "group": a.group,
        "api_action": action.as_str(),
        "job_label": job_label,
        "tenancy": a.params.str("tenancy").unwrap_or(""),
        "label": label.unwrap_or_default(),
        "holding_id": holding_id.unwrap_or(-1),
        "tag": tags_value(tags),
    })
}

/// The tenancy a legacy put writes to: with `[server.legacy_init] select_tenancy = true`, the
/// `tenancy` parameter the client sends from its config, except the one `init/` advertises
/// (`[server.legacy_init] tenancy`); otherwise, or without one, the default object store.
fn legacy_tenancy(s: &AppState, p: &Params) -> Option<String> {
    let init = &s.cfg.legacy_init;
    let t = p.str("tenancy")?.trim();
    (init.select_tenancy && !t.is_empty() && t != init.tenancy.trim()).then(|| t.to_owned())
}

/// Refuses a transaction id the client chose that is another user's (or group's, or action's)
/// with 409 and the reason, which names the id only. A 409, not the 400 of other refusals: the
/// request is fine, the id is taken (the Python client prints it as `Response was: ...`).
async fn check_tid(s: &AppState, a: &Acting, action: ApiAction, tid: Uuid) -> LResult<()> {
    match routes::check_transaction_id(s, &a.user, &a.group, action, tid).await {
        Err(e) if e.0.code == ErrorCode::Conflict => Err(LegacyError::new(
            StatusCode::CONFLICT,
            &["query", "transaction_id"],
            e.0.message,
            "Conflict.",
        )),
        r => r.map_err(Into::into),
    }
}

/// `PUT files/`: put a list of files (`put` for one entry, `putlist` for more).
#[utoipa::path(
    put, path = "/api/1.0.0/files/", tag = "legacy", operation_id = "legacy_put_files",
    params(ActingAs),
    request_body(content = serde_json::Value, description = "the legacy client's JSON body"),
    responses(Answers),
    security(("bearer" = []))
)]
async fn put_files(State(s): State<AppState>, a: Acting, body: Bytes) -> LResult<Response> {
    let tid = a.params.uuid("transaction_id")?.ok_or_else(|| {
        LegacyError::unprocessable("transaction_id", "field required", "value_error.missing")
    })?;
    let model = file_model(&body, "body data is incomplete")?;
    let paths = clean_list(model.filelist);
    check_tid(&s, &a, routes::put_action(&paths), tid).await?;
    let job_label = job_label_of(&a.params, tid);
    let tags = model.tag.unwrap_or_default();
    let req = PutRequest {
        transaction_id: Some(tid),
        paths,
        label: model.label.filter(|l| !l.is_empty()),
        holding_id: model.holding_id,
        tags: tags.clone(),
        job_label: Some(job_label.clone()),
        group: None,
        dry_run: false,
        tenancy: legacy_tenancy(&s, &a.params),
    };
    let acc = routes::submit_put(&s, &a.user, &a.group, a.role(), req).await?;
    let verb = acc.api_action.as_str();
    Ok(accepted(file_response(
        &a,
        tid,
        format!("{verb} transaction accepted for processing."),
        acc.api_action,
        &acc.job_label,
        acc.label,
        acc.holding_id,
        &tags,
    )))
}

async fn submit_get(
    s: &AppState,
    a: &Acting,
    paths: Vec<String>,
    label: Option<String>,
    holding_id: Option<i64>,
    tags: Tags,
    getlist: bool,
) -> LResult<Response> {
    let p = &a.params;
    let tid = p.uuid("transaction_id")?.ok_or_else(|| {
        LegacyError::unprocessable("transaction_id", "field required", "value_error.missing")
    })?;
    let regex = p.bool("regex")?;
    check_tid(s, a, routes::get_action(&paths, regex), tid).await?;
    let job_label = job_label_of(p, tid);
    let req = GetRequest {
        transaction_id: Some(tid),
        paths,
        label: label.filter(|l| !l.is_empty()),
        holding_id,
        tags: tags.clone(),
        regex,
        target: p.str("target").map(str::to_owned),
        // Upstream replaces existing files, and the Python client has no way to ask otherwise.
        // The replacement is atomic (a temporary file renamed over the old one).
        overwrite: true,
        groupall: p.bool("groupall")?,
        job_label: Some(job_label),
        group: None,
        dry_run: false,
        keep_owner: false,
    };
    let acc = routes::submit_get(s, &a.user, &a.group, a.role(), req).await?;
    let (msg, action) = if getlist {
        ("GETLIST", ApiAction::Getlist)
    } else {
        ("GET", ApiAction::Get)
    };
    Ok(accepted(file_response(
        a,
        tid,
        format!("{msg} transaction accepted for processing."),
        action,
        &acc.job_label,
        acc.label,
        acc.holding_id.or(Some(-1)),
        &tags,
    )))
}

/// `GET files/`: get one file (`filepath`), or the files a regular expression matches.
#[utoipa::path(
    get, path = "/api/1.0.0/files/", tag = "legacy", operation_id = "legacy_get_file",
    params(ActingAs),
    responses(Answers),
    security(("bearer" = []))
)]
async fn get_file(State(s): State<AppState>, a: Acting) -> LResult<Response> {
    let Some(path) = a.params.str("filepath").map(str::to_owned) else {
        return Err(LegacyError::bad_request(
            "filepath not supplied.",
            "Incomplete request.",
        ));
    };
    let paths = clean_list(vec![path]);
    if paths.is_empty() {
        return Err(LegacyError::bad_request(
            "filepath not supplied.",
            "Incomplete request.",
        ));
    }
    let tags = a.params.tags()?;
    let label = a.params.str("label").map(str::to_owned);
    let holding_id = a.params.int("holding_id")?;
    submit_get(&s, &a, paths, label, holding_id, tags, false).await
}

/// `DELETE files/`: delete the files of the body's `filelist` (`del` for one entry, `dellist`
/// for more), or with an empty or missing list the holding named by `label`, `holding_id` or
/// `tag` (in the body or the query) as a whole: the body and parameters of `PUT files/`, as the
/// NLDS specification planned. The caller's role in `group` decides whose holdings may go.
#[utoipa::path(
    delete, path = "/api/1.0.0/files/", tag = "legacy", operation_id = "legacy_delete_files",
    params(ActingAs),
    request_body(content = serde_json::Value, description = "the legacy client's JSON body"),
    responses(Answers),
    security(("bearer" = []))
)]
async fn delete_files(State(s): State<AppState>, a: Acting, body: Bytes) -> LResult<Response> {
    let p = &a.params;
    let chosen = p.uuid("transaction_id")?;
    let tid = chosen.unwrap_or_else(Uuid::new_v4);
    let model = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(file_model(&body, "body data is incomplete")?)
    };
    let (paths, label, holding_id, tags) = match model {
        Some(m) => (
            clean_list(m.filelist),
            m.label.filter(|l| !l.is_empty()),
            m.holding_id,
            m.tag.unwrap_or_default(),
        ),
        None => (Vec::new(), None, None, Tags::new()),
    };
    let label = label.or_else(|| p.str("label").map(str::to_owned));
    let holding_id = holding_id.or(p.int("holding_id")?);
    let tags = if tags.is_empty() { p.tags()? } else { tags };
    let regex = p.bool("regex")?;
    if chosen.is_some() {
        check_tid(&s, &a, crate::delete::delete_action(&paths, regex), tid).await?;
    }
    let job_label = job_label_of(p, tid);
    let req = nlds_core::api::DeleteRequest {
        transaction_id: Some(tid),
        paths,
        label,
        holding_id,
        tags: tags.clone(),
        regex,
        groupall: p.bool("groupall")?,
        job_label: Some(job_label),
        group: None,
        dry_run: false,
    };
    let role = a.caller.role_in(&a.group);
    let (acc, _) = crate::delete::submit_delete(&s, &a.user, &a.group, role, req).await?;
    let verb = acc.api_action.as_str().to_ascii_uppercase();
    Ok(accepted(file_response(
        &a,
        tid,
        format!("{verb} transaction accepted for processing."),
        acc.api_action,
        &acc.job_label,
        acc.label,
        acc.holding_id,
        &tags,
    )))
}

/// `PUT files/getlist/`: get a list of files.
#[utoipa::path(
    put, path = "/api/1.0.0/files/getlist/", tag = "legacy", operation_id = "legacy_getlist",
    params(ActingAs),
    request_body(content = serde_json::Value, description = "the legacy client's JSON body"),
    responses(Answers),
    security(("bearer" = []))
)]
async fn getlist(State(s): State<AppState>, a: Acting, body: Bytes) -> LResult<Response> {
    let model = file_model(&body, "filelist not supplied.")?;
    let paths = clean_list(model.filelist);
    submit_get(
        &s,
        &a,
        paths,
        model.label,
        model.holding_id,
        model.tag.unwrap_or_default(),
        true,
    )
    .await
}

// -------------------------------------------------------------------------------------------
// catalog/

fn holding_filter(a: &Acting) -> LResult<HoldingFilter> {
    let p = &a.params;
    Ok(HoldingFilter {
        groupall: p.bool("groupall")?,
        label: p.str("label").map(str::to_owned),
        label_regex: p.bool("regex")?,
        holding_id: p
            .int("holding_id")?
            .map(|id| nlds_core::number::db_id("holding_id", id).map_err(ServerError::from))
            .transpose()?,
        holding_ids: Vec::new(),
        transaction_id: match p.str("transaction_id") {
            None => None,
            Some(t) => Some(Uuid::parse_str(t.trim()).map_err(|_| {
                LegacyError::bad_request(
                    format!("Given transaction_id: {t} is not a valid uuid-4."),
                    "Bad transaction id.",
                )
            })?),
        },
        tags: p.tags()?,
        limit: p.limit()?,
        offset: 0,
        descending: p.bool("descending")?,
    })
}

fn catalog_details(a: &Acting, action: &str) -> LResult<Value> {
    Ok(json!({
        "user": a.user,
        "group": a.group,
        "groupall": a.params.bool("groupall")?,
        "api_action": action,
    }))
}

fn catalog_meta(a: &Acting) -> Value {
    let p = &a.params;
    let mut m = serde_json::Map::new();
    for k in [
        "label",
        "holding_id",
        "transaction_id",
        "limit",
        "descending",
        "path",
        "regex",
    ] {
        if let Some(v) = p.str(k) {
            m.insert(k.into(), Value::String(v.to_owned()));
        }
    }
    if let Ok(t) = p.tags()
        && !t.is_empty()
    {
        m.insert("tag".into(), tags_value(&t));
    }
    Value::Object(m)
}

fn whose(a: &Acting, groupall: bool) -> String {
    if groupall {
        format!("user:{} and group:{} (whole group)", a.user, a.group)
    } else {
        format!("user:{} and group:{}", a.user, a.group)
    }
}

fn holding_value(h: &HoldingSummary) -> Value {
    json!({
        "id": h.id,
        "label": h.label,
        "user": h.user,
        "group": h.group,
        "tags": tags_value(&h.tags),
        "transactions": h.transactions.iter().map(Uuid::to_string).collect::<Vec<_>>(),
        "date": iso(h.created),
    })
}

/// `GET catalog/list/`: list holdings.
#[utoipa::path(
    get, path = "/api/1.0.0/catalog/list/", tag = "legacy", operation_id = "legacy_list",
    params(ActingAs),
    responses(Answers),
    security(("bearer" = []))
)]
async fn list(State(s): State<AppState>, a: Acting) -> LResult<Response> {
    let details = catalog_details(&a, "list")?;
    let meta = catalog_meta(&a);
    let filter = holding_filter(&a)?;
    let groupall = filter.groupall;
    let env = routes::rpc_env_role(
        &a.user,
        &a.group,
        a.role(),
        Payload::ListHoldings { filter },
    );
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::List), env)
        .await
    {
        Ok(RpcReply::Holdings(page)) if page.holdings.is_empty() => Ok(accepted(rpc_message(
            with_failure(
                details,
                format!("No holdings found for {}.", whose(&a, groupall)),
            ),
            json!({"holdings": []}),
            meta,
        ))),
        Ok(RpcReply::Holdings(page)) => Ok(accepted(rpc_message(
            details,
            json!({"holdings": page.holdings.iter().map(holding_value).collect::<Vec<_>>()}),
            meta,
        ))),
        Ok(_) => Err(unexpected("catalog.list")),
        Err(e) => Ok(rpc_failure(e, details, json!({"holdings": []}), meta)),
    }
}

fn unexpected(what: &str) -> LegacyError {
    LegacyError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        &["None"],
        format!("unexpected reply to {what}"),
        "Internal error.",
    )
}

fn file_value(f: &FileEntry) -> Value {
    let locations: Vec<Value> = f
        .locations
        .iter()
        .map(|l| match l.tier {
            Tier::Warm => json!({
                "storage_type": "OBJECT_STORAGE",
                "url_scheme": "s3",
                "root": l.bucket,
                "path": l.key,
                "access_time": iso(f.ingest_time),
                "url": format!("s3://{}/{}", l.bucket, l.key),
            }),
            Tier::Cold => json!({
                "storage_type": "TAPE",
                "url_scheme": "tape",
                "root": l.bucket,
                "path": l.key,
                "access_time": iso(f.ingest_time),
                "url": "",
            }),
        })
        .collect();
    json!({
        "original_path": f.path,
        "path_type": match f.kind {
            PathKind::File => "FILE",
            PathKind::Directory => "DIRECTORY",
            PathKind::Link => "LINK",
        },
        "link_path": f.link_target.clone().unwrap_or_default(),
        "size": f.size,
        "user": f.uid,
        "group": f.gid,
        "permissions": f.mode & 0o777,
        "holding_id": f.holding_id,
        "checksum": f.blake3.as_ref().map(|c| json!({"blake3": c})).unwrap_or(Value::Null),
        "locations": locations,
    })
}

/// Groups files by holding and transaction, keyed by label as upstream does (two holdings with
/// one label, possible across users with `groupall`, get distinct keys instead of colliding).
fn find_holdings(files: &[FileEntry]) -> Value {
    let mut by_holding: BTreeMap<i64, Vec<&FileEntry>> = BTreeMap::new();
    for f in files {
        by_holding.entry(f.holding_id).or_default().push(f);
    }
    let mut out = serde_json::Map::new();
    for (id, fs) in by_holding {
        let first = fs[0];
        let mut txs = serde_json::Map::new();
        for f in &fs {
            let t = txs.entry(f.transaction_id.to_string()).or_insert_with(|| {
                json!({
                    "transaction_id": f.transaction_id.to_string(),
                    "ingest_time": iso(f.ingest_time),
                    "filelist": [],
                })
            });
            if let Some(list) = t["filelist"].as_array_mut() {
                list.push(file_value(f));
            }
        }
        let key = if out.contains_key(&first.label) {
            format!("{} (holding {id})", first.label)
        } else {
            first.label.clone()
        };
        out.insert(
            key,
            json!({
                "label": first.label,
                "holding_id": id,
                "user": first.user,
                "group": first.group,
                "transactions": txs,
            }),
        );
    }
    Value::Object(out)
}

/// `GET catalog/find/`: find files.
#[utoipa::path(
    get, path = "/api/1.0.0/catalog/find/", tag = "legacy", operation_id = "legacy_find",
    params(ActingAs),
    responses(Answers),
    security(("bearer" = []))
)]
async fn find(State(s): State<AppState>, a: Acting) -> LResult<Response> {
    let details = catalog_details(&a, "find")?;
    let meta = catalog_meta(&a);
    let mut filter = holding_filter(&a)?;
    let path_regex = filter.label_regex;
    if let Some(l) = &filter.label
        && path_regex
        && let Err(e) = nlds_core::pattern::check(&[l], "label")
    {
        return Err(LegacyError::bad_request(e.message, "Bad regex."));
    }
    let path = a.params.str("path").map(str::to_owned);
    if path_regex
        && let Some(p) = &path
        && let Err(e) = nlds_core::pattern::check(&[p], "path")
    {
        return Err(LegacyError::bad_request(e.message, "Bad regex."));
    }
    if a.params.str("limit").is_none() {
        filter.limit = nlds_core::api::DEFAULT_LIMIT;
    }
    let groupall = filter.groupall;
    let env = routes::rpc_env_role(
        &a.user,
        &a.group,
        a.role(),
        Payload::FindFiles {
            filter,
            path,
            path_regex,
        },
    );
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Find), env)
        .await
    {
        Ok(RpcReply::Files(page)) if page.files.is_empty() => Ok(accepted(rpc_message(
            with_failure(
                details,
                format!("No files found for {}.", whose(&a, groupall)),
            ),
            json!({"holdings": {}}),
            meta,
        ))),
        Ok(RpcReply::Files(page)) => Ok(accepted(rpc_message(
            details,
            json!({"holdings": find_holdings(&page.files)}),
            meta,
        ))),
        Ok(_) => Err(unexpected("catalog.find")),
        Err(e) => Ok(rpc_failure(e, details, json!({"holdings": {}}), meta)),
    }
}

/// `MetaModel`, the body of `POST catalog/meta/`.
#[derive(Debug, Default, Deserialize)]
struct MetaModel {
    #[serde(default)]
    new_label: Option<String>,
    #[serde(default)]
    new_tag: Option<Tags>,
    #[serde(default)]
    del_tag: Option<Tags>,
}

/// `POST catalog/meta/`: change the label or tags of the selected holding(s).
#[utoipa::path(
    post, path = "/api/1.0.0/catalog/meta/", tag = "legacy", operation_id = "legacy_meta",
    params(ActingAs),
    request_body(content = serde_json::Value, description = "the legacy client's JSON body"),
    responses(Answers),
    security(("bearer" = []))
)]
async fn meta(State(s): State<AppState>, a: Acting, body: Bytes) -> LResult<Response> {
    let details = json!({"user": a.user, "group": a.group, "api_action": "meta"});
    let model: MetaModel = if body.iter().all(u8::is_ascii_whitespace) {
        return Err(LegacyError::bad_request(
            "body data is incomplete",
            "Resources not found.",
        ));
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            LegacyError::bad_request(
                format!("the request body is not valid metadata ({{\"new_label\", \"new_tag\", \"del_tag\"}}): {e}"),
                "Bad request.",
            )
        })?
    };
    let label = a.params.str("label").map(str::to_owned);
    let holding_id = a.params.int("holding_id")?;
    let tags = a.params.tags()?;
    let mut meta = catalog_meta(&a);
    meta["new_meta"] = json!({
        "label": model.new_label,
        "tag": model.new_tag,
        "del_tag": model.del_tag,
    });
    if label.is_none() && holding_id.is_none() && tags.is_empty() {
        return Ok(accepted(rpc_message(
            with_failure(
                details,
                "Holding not found: holding_id or label or tag(s) not specified.",
            ),
            json!({"holdings": []}),
            meta,
        )));
    }
    let new_tags = model.new_tag.unwrap_or_default();
    let del_tags = model.del_tag.unwrap_or_default();
    let new_label = model.new_label.filter(|l| !l.is_empty());
    if new_label.is_none() && new_tags.is_empty() && del_tags.is_empty() {
        return Ok(accepted(rpc_message(
            with_failure(
                details,
                "Nothing to change: give a new label, new tags or tags to delete.",
            ),
            json!({"holdings": []}),
            meta,
        )));
    }
    let filter = HoldingFilter {
        label,
        holding_id,
        tags,
        limit: MAX_LIMIT,
        descending: true,
        ..Default::default()
    };
    let env = routes::rpc_env_role(
        &a.user,
        &a.group,
        a.role(),
        Payload::ChangeMeta {
            filter,
            new_label,
            new_tags,
            del_tags,
            dry_run: false,
        },
    );
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Meta), env)
        .await
    {
        Ok(RpcReply::Meta(m)) => {
            let holdings: Vec<Value> = m
                .holdings
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "user": c.user,
                        "group": c.group,
                        "old_meta": {"label": c.old.label, "tags": tags_value(&c.old.tags)},
                        "new_meta": {"label": c.new.label, "tags": tags_value(&c.new.tags)},
                    })
                })
                .collect();
            Ok(accepted(rpc_message(
                details,
                json!({ "holdings": holdings }),
                meta,
            )))
        }
        Ok(_) => Err(unexpected("catalog.meta")),
        Err(e) => Ok(rpc_failure(e, details, json!({"holdings": []}), meta)),
    }
}

// -------------------------------------------------------------------------------------------
// status/

/// `StatBody`, the JSON body `GET status/` carries.
#[derive(Debug, Default, Deserialize)]
struct StatBody {
    #[serde(default)]
    api_action: Option<Vec<String>>,
    #[serde(default)]
    exclude_api_action: Option<Vec<String>>,
    #[serde(default)]
    state: Option<Vec<String>>,
}

fn api_actions(list: Option<Vec<String>>) -> LResult<Vec<ApiAction>> {
    list.unwrap_or_default()
        .iter()
        .map(|a| {
            ApiAction::parse(a.trim()).ok_or_else(|| {
                LegacyError::bad_request(
                    format!("Given api_action: {a} is not valid."),
                    "Bad api action.",
                )
            })
        })
        .collect()
}

/// A state filter: an exact state name (as upstream), or its number.
fn state_of(s: &str) -> LResult<TxState> {
    let t = s.trim();
    let by_name = TxState::ALL.iter().copied().find(|st| st.name() == t);
    let by_number = t
        .parse::<i32>()
        .ok()
        .and_then(|n| TxState::ALL.iter().copied().find(|st| st.value() == n));
    by_name.or(by_number).ok_or_else(|| {
        LegacyError::bad_request(format!("Given State: {s} is not valid."), "Bad state.")
    })
}

/// A transaction as a `records[]` element. A batch that finished with some files failed is shown
/// as two sub-records, one COMPLETE and one FAILED holding the failed files, so the client's own
/// state derivation gives COMPLETE_WITH_ERRORS as ours does.
fn record_value(t: &TransactionStatus) -> Value {
    let mut subs = Vec::new();
    for sr in &t.sub_records {
        let failed: Vec<Value> = sr
            .failed_files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                json!({
                    "id": i + 1,
                    "filepath": f.path,
                    "reason": f.reason,
                    "sub_record_id": sr.id,
                })
            })
            .collect();
        let sub = |state: TxState, failed_files: Vec<Value>| {
            json!({
                "id": sr.id,
                "sub_id": sr.sub_id.to_string(),
                "state": state.name(),
                "last_updated": iso(sr.last_updated),
                "retry_count": 0,
                "failed_files": failed_files,
            })
        };
        if !failed.is_empty() && !sr.state.is_failed() {
            subs.push(sub(sr.state, Vec::new()));
            let mut twin = sub(TxState::Failed, failed);
            twin["sub_id"] = json!(Uuid::new_v5(&sr.sub_id, b"failed-files").to_string());
            subs.push(twin);
        } else {
            subs.push(sub(sr.state, failed));
        }
    }
    json!({
        "id": t.id,
        "transaction_id": t.transaction_id.to_string(),
        "user": t.user,
        "group": t.group,
        "job_label": t.job_label,
        "api_action": t.api_action.as_str(),
        "creation_time": iso(t.created),
        "warnings": t.warnings,
        "label": t.label.clone().unwrap_or_default(),
        "sub_records": subs,
    })
}

/// `GET status/`: transaction states, filtered by the query and by the JSON body.
#[utoipa::path(
    get, path = "/api/1.0.0/status/", tag = "legacy", operation_id = "legacy_status",
    params(ActingAs),
    request_body(content = serde_json::Value, description = "the legacy client's JSON body"),
    responses(Answers),
    security(("bearer" = []))
)]
async fn status(State(s): State<AppState>, a: Acting, body: Bytes) -> LResult<Response> {
    let p = &a.params;
    let body: StatBody = if body.iter().all(u8::is_ascii_whitespace) {
        StatBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            LegacyError::bad_request(
                format!("the request body is not a valid status filter ({{\"api_action\", \"exclude_api_action\", \"state\"}}): {e}"),
                "Bad request.",
            )
        })?
    };
    let uuid_param = |name: &str| -> LResult<Option<Uuid>> {
        p.str(name)
            .map(|t| {
                Uuid::parse_str(t.trim()).map_err(|_| {
                    LegacyError::bad_request(
                        format!("Given {name}: {t} is not a valid uuid-4."),
                        "Bad transaction id.",
                    )
                })
            })
            .transpose()
    };
    let transaction_id = uuid_param("transaction_id")?;
    let sub_id = uuid_param("sub_id")?;
    let states = body
        .state
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|st| state_of(st))
        .collect::<LResult<Vec<_>>>()?;
    let api = api_actions(body.api_action.clone())?;
    let mut exclude = api_actions(body.exclude_api_action.clone())?;
    if !a.caller.admin && !api.contains(&ApiAction::ArchivePut) {
        exclude.push(ApiAction::ArchivePut);
    }
    let filter = StatusFilter {
        groupall: p.bool("groupall")?,
        id: p
            .int("id")?
            .map(|id| nlds_core::number::db_id("id", id).map_err(ServerError::from))
            .transpose()?,
        transaction_id,
        job_label: p.str("job_label").map(str::to_owned),
        job_label_regex: p.bool("regex")?,
        api_actions: api,
        exclude_api_actions: exclude,
        states: states.clone(),
        limit: p.limit()?,
        offset: 0,
        descending: p.bool("descending")?,
    };
    if filter.job_label_regex
        && let Some(j) = &filter.job_label
        && let Err(e) = nlds_core::pattern::check(&[j], "job label")
    {
        return Err(LegacyError::bad_request(e.message, "Bad regex."));
    }
    let details = json!({
        "user": a.user,
        "group": a.group,
        "groupall": filter.groupall,
        "id": filter.id,
        "api_action": "stat",
        "transaction_id": transaction_id.map(|t| t.to_string()),
        "job_label": filter.job_label,
        "sub_id": sub_id.map(|t| t.to_string()),
    });
    let meta = json!({
        "regex": filter.job_label_regex,
        "api_action": body.api_action,
        "exclude_api_action": body.exclude_api_action,
        "state": states.iter().map(|s| s.value()).collect::<Vec<_>>(),
        "limit": p.int("limit")?,
        "descending": filter.descending,
    });
    let groupall = filter.groupall;
    match routes::stat_rpc(&s, &a.user, &a.group, a.role(), filter).await {
        Ok(page) => {
            let txs: Vec<&TransactionStatus> = page
                .transactions
                .iter()
                .filter(|t| sub_id.is_none_or(|sid| t.sub_records.iter().any(|r| r.sub_id == sid)))
                .collect();
            if txs.is_empty() {
                return Ok(accepted(rpc_message(
                    with_failure(
                        details,
                        format!("no transaction records found for {}", whose(&a, groupall)),
                    ),
                    json!({"records": []}),
                    meta,
                )));
            }
            let labels: serde_json::Map<String, Value> = txs
                .iter()
                .map(|t| {
                    (
                        t.transaction_id.to_string(),
                        Value::String(t.label.clone().unwrap_or_default()),
                    )
                })
                .collect();
            Ok(accepted(rpc_message(
                details,
                json!({
                    "records": txs.iter().map(|t| record_value(t)).collect::<Vec<_>>(),
                    "transactions": labels,
                }),
                meta,
            )))
        }

        Err(e) => Ok(rpc_failure(e, details, json!({"records": []}), meta)),
    }
}

// -------------------------------------------------------------------------------------------
// init/

pub use nlds_settings::LegacyInit;

/// What `init/` derives from [`LegacyInit`] (defined in `nlds-settings`).
trait LegacyInitExt {
    fn key(&self) -> String;
    fn missing(&self) -> Vec<&'static str>;
}

impl LegacyInitExt for LegacyInit {
    /// The Fernet key: derived from the public settings, so every replica serves the same one
    /// without sharing a secret (it protects nothing secret).
    fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"nlds-rs legacy init key v1\0");
        h.update(self.oauth_client_id.as_bytes());
        h.update(b"\0");
        h.update(self.oauth_token_url.as_bytes());
        h.update(b"\0");
        h.update(self.oauth_scopes.as_bytes());
        h.update(b"\0");
        h.update(self.tenancy.as_bytes());
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE.encode(h.finalize().as_bytes())
    }

    fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.oauth_client_id.is_empty() {
            m.push("oauth_client_id");
        }
        if self.oauth_token_url.is_empty() {
            m.push("oauth_token_url");
        }
        m
    }
}

fn init_unconfigured(cfg: &LegacyInit) -> LegacyError {
    LegacyError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        &["None"],
        format!(
            "Unable to get api keys. The operator has not configured [server.legacy_init] {}.",
            cfg.missing().join(" and ")
        ),
        "Internal error.",
    )
}

/// `GET init/`: `{"encrypted_keys": Fernet(json)}` of the public client settings.
#[utoipa::path(
    get, path = "/api/1.0.0/init/", tag = "legacy", operation_id = "legacy_init",
    responses((status = 202,
            description = "`{\"encrypted_keys\": ...}`: the public client settings, Fernet-encrypted"),
        (status = 500, description = "`[server.legacy_init]` is not configured"))
)]
async fn init(State(s): State<AppState>) -> LResult<Response> {
    let cfg = &s.cfg.legacy_init;
    if !cfg.missing().is_empty() {
        return Err(init_unconfigured(cfg));
    }
    let plain = json!({
        "authentication": {
            "oauth_client_id": cfg.oauth_client_id,
            "oauth_client_secret": "",
            "oauth_token_url": cfg.oauth_token_url,
            "oauth_scopes": cfg.oauth_scopes,
        },
        "object_storage": {"tenancy": cfg.tenancy},
    });
    let fernet = fernet::Fernet::new(&cfg.key()).ok_or_else(|| {
        LegacyError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            &["None"],
            "Unable to get api keys.",
            "Internal error.",
        )
    })?;
    let token = fernet.encrypt(plain.to_string().as_bytes());
    Ok(accepted(json!({ "encrypted_keys": token })))
}

/// `GET init/token`: the Fernet key, base64-encoded once more as upstream does.
#[utoipa::path(
    get, path = "/api/1.0.0/init/token/", tag = "legacy", operation_id = "legacy_init_token",
    responses((status = 202, description = "`{\"token\": ...}`: the Fernet key"),
        (status = 500, description = "`[server.legacy_init]` is not configured"))
)]
async fn init_token(State(s): State<AppState>) -> LResult<Response> {
    let cfg = &s.cfg.legacy_init;
    if !cfg.missing().is_empty() {
        return Err(init_unconfigured(cfg));
    }
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(cfg.key());
    Ok(accepted(json!({ "token": token })))
}

// -------------------------------------------------------------------------------------------
// system/ and probe/

/// The upstream microservice names and the roles behind each.
pub fn service_roles(name: &str) -> Option<&'static [Role]> {
    Some(match name.to_ascii_lowercase().as_str() {
        "monitor" => &[Role::Monitor, Role::MonitorRpc],
        "catalog" => &[Role::Catalogue, Role::CatalogueRpc],
        "nlds_worker" => &[Role::Router],
        "index" => &[Role::Indexer],
        "get_transfer" => &[Role::TransferGet],
        "put_transfer" => &[Role::TransferPut],
        "logger" => &[Role::Logger],
        _ => return None,
    })
}

/// Every microservice name upstream's status page knows, in its order.
pub const SERVICES: &[&str] = &[
    "monitor",
    "catalog",
    "nlds_worker",
    "index",
    "get_transfer",
    "put_transfer",
    "logger",
    "archive_get",
    "archive_put",
];

/// The health of one microservice, as `/system/status/{service}` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceHealth {
    pub microservice_name: String,
    pub total_num: u32,
    pub num_failed: u32,
    pub num_success: u32,
    pub failed_list: Vec<String>,
    pub pid: Vec<u32>,
    pub hostname: Vec<String>,
}

impl ServiceHealth {
    fn colour(&self) -> &'static str {
        if self.total_num == 0 || self.num_success == 0 {
            "RED"
        } else if self.num_failed > 0 {
            "ORANGE"
        } else {
            "GREEN"
        }
    }

    /// The overall answer an anonymous caller gets.
    fn overall(&self) -> &'static str {
        match self.colour() {
            "GREEN" => "up",
            "ORANGE" => "degraded",
            _ => "down",
        }
    }
}

/// How long a status probe's answer is reused: the page is unauthenticated, so N requests must
/// not cause N fan-outs of pings over the bus.
const PROBE_CACHE: std::time::Duration = std::time::Duration::from_secs(5);

type ProbeSlot = std::sync::Arc<tokio::sync::Mutex<Option<(std::time::Instant, ServiceHealth)>>>;

/// The last probe of each service, per bus (an address: one process may serve several
/// instances in tests). One fan-out at a time per service: later callers wait for it and share
/// its answer.
static PROBES: std::sync::LazyLock<std::sync::Mutex<HashMap<(usize, String), ProbeSlot>>> =
    std::sync::LazyLock::new(Default::default);

/// The health of a service, from a probe at most [`PROBE_CACHE`] old.
async fn probe(s: &AppState, name: &str, limit: std::time::Duration) -> ServiceHealth {
    let bus = std::sync::Arc::as_ptr(&s.bus).cast::<()>() as usize;
    let slot = PROBES
        .lock()
        .expect("probe cache lock")
        .entry((bus, name.to_owned()))
        .or_default()
        .clone();
    let mut last = slot.lock().await;
    if let Some((at, h)) = last.as_ref()
        && at.elapsed() < PROBE_CACHE
    {
        return h.clone();
    }
    let h = probe_now(s, name, limit).await;
    *last = Some((std::time::Instant::now(), h.clone()));
    h
}

/// Is the caller of the status page an operator (a valid bearer token with admin)? Only they see
/// consumer counts, process ids and host names.
async fn operator(s: &AppState, headers: &HeaderMap) -> bool {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    match token {
        Some(t) => matches!(s.auth.check(t).await, crate::auth::Checked::Valid(id) if id.admin),
        None => false,
    }
}

/// Pings every consumer of the service's roles and counts the answers.
async fn probe_now(s: &AppState, name: &str, limit: std::time::Duration) -> ServiceHealth {
    let mut h = ServiceHealth {
        microservice_name: name.to_owned(),
        total_num: 0,
        num_failed: 0,
        num_success: 0,
        failed_list: Vec::new(),
        pid: Vec::new(),
        hostname: Vec::new(),
    };
    // Services of the cold tier have no roles yet: nothing runs, so they report RED.
    let roles = service_roles(name).unwrap_or(&[]);
    for &role in roles {
        let n = s.bus.consumers(role).await.unwrap_or(0);
        h.total_num += n;
        let pings = (0..n).map(|_| async move {
            let env = routes::rpc_env_as("nlds", "nlds", Payload::SystemStat);
            s.bus.rpc(role.ping_key(), &env, limit).await
        });
        for (i, r) in futures::future::join_all(pings)
            .await
            .into_iter()
            .enumerate()
        {
            match r.map(|e| e.payload) {
                Ok(Payload::Reply(RpcReply::Alive { pid, hostname, .. })) => {
                    h.num_success += 1;
                    if !h.pid.contains(&pid) || !h.hostname.contains(&hostname) {
                        h.pid.push(pid);
                        h.hostname.push(hostname);
                    }
                }
                _ => {
                    h.num_failed += 1;
                    h.failed_list.push(format!("{}#{}", role.queue(), i + 1));
                }
            }
        }
    }
    h
}

fn time_limit(q: &HashMap<String, String>) -> std::time::Duration {
    let t = q
        .get("time-limit")
        .or_else(|| q.get("time_limit"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|t| (1..=15).contains(t))
        .unwrap_or(5);
    std::time::Duration::from_secs(t)
}

/// `GET /system/status/{service}`: JSON health of one microservice (202, as upstream).
#[utoipa::path(
    get, path = "/system/status/{service}", tag = "legacy", operation_id = "legacy_system_service",
    params(("service" = String, Path, description = "a microservice"),
        ("time-limit" = Option<u64>, Query, description = "seconds to wait (1 to 15, default 5)")),
    responses((status = 202, description = "the health of the microservice (in detail for an operator)"),
        (status = 307, description = "not a microservice: to the page of all"))
)]
async fn system_service(
    State(s): State<AppState>,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q: HashMap<String, String> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let name = service.to_ascii_lowercase();
    if !SERVICES.contains(&name.as_str()) {
        let to = format!(
            "/system/status/?time-limit={}&microservice=all",
            time_limit(&q).as_secs()
        );
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response();
    }
    let h = probe(&s, &name, time_limit(&q)).await;
    if !operator(&s, &headers).await {
        return (
            StatusCode::ACCEPTED,
            axum::Json(json!({"microservice_name": h.microservice_name, "status": h.overall()})),
        )
            .into_response();
    }
    (StatusCode::ACCEPTED, axum::Json(h)).into_response()
}

/// `GET /system/status/`: an HTML table of the microservices' health.
#[utoipa::path(
    get, path = "/system/status/", tag = "legacy", operation_id = "legacy_system_page",
    params(("microservice" = Option<String>, Query, description = "a microservice, or `all`"),
        ("time-limit" = Option<u64>, Query, description = "seconds to wait for each (1 to 15, default 5)")),
    responses((status = 200, description = "an HTML table of the microservices' health",
        content_type = "text/html"))
)]
async fn system_page(
    State(s): State<AppState>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let detail = operator(&s, &headers).await;
    let limit = time_limit(&q.iter().cloned().collect());
    let mut wanted: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "microservice")
        .map(|(_, v)| v.to_ascii_lowercase())
        .collect();
    if wanted.is_empty() || wanted.iter().any(|w| w == "all") {
        wanted = SERVICES.iter().map(|s| s.to_string()).collect();
    }
    wanted.retain(|w| SERVICES.contains(&w.as_str()));
    let probes = wanted.iter().map(|w| probe(&s, w, limit));
    let results = futures::future::join_all(probes).await;
    let mut rows = String::new();
    for h in &results {
        let colour = h.colour();
        let failed = if h.failed_list.is_empty() {
            String::new()
        } else {
            format!(
                " (not answering: {})",
                html_escape(&h.failed_list.join(", "))
            )
        };
        let text = match colour {
            "GREEN" => format!("All {} consumers online", h.total_num),
            "ORANGE" => format!(
                "{} of {} consumers online{failed}",
                h.num_success, h.total_num
            ),
            _ if h.total_num == 0 => "No consumers running".to_owned(),
            _ => format!("All {} consumers offline{failed}", h.total_num),
        };
        // Anonymous callers learn whether a service is up, not how it is deployed.
        let text = if detail { text } else { h.overall().to_owned() };
        rows.push_str(&format!(
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>\n",
            html_escape(&h.microservice_name),
            colour.to_ascii_lowercase(),
            colour,
            text
        ));
    }
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>NLDS system status</title>\n\
         <style>td,th{{padding:4px 12px}} .green{{color:#070}} .orange{{color:#c60}} .red{{color:#b00}}</style>\n\
         </head><body><h1>NLDS system status</h1>\n<p>Each consumer was asked to answer within {} s.</p>\n\
         <table><tr><th>service</th><th>status</th><th>detail</th></tr>\n{rows}</table></body></html>\n",
        limit.as_secs()
    ))
    .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /probe/healthz`: upstream answers the Python set `{"status", "healthy"}`, which FastAPI
/// serialises as a two-element list.
#[utoipa::path(
    get, path = "/probe/healthz", tag = "legacy", operation_id = "legacy_healthz",
    responses((status = 200, description = "`[\"status\", \"healthy\"]`"))
)]
async fn healthz() -> axum::Json<Value> {
    axum::Json(json!(["status", "healthy"]))
}

/// Unknown paths under the prefix: FastAPI's 404.
async fn not_found(headers: HeaderMap) -> Response {
    let _ = headers;
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"detail": "Not Found"})),
    )
        .into_response()
}

/// The query parameters every authenticated legacy endpoint requires (for the OpenAPI document;
/// [`Acting`] reads them).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ActingAs {
    /// The caller (an admin may name anyone).
    user: String,
    /// A group of the caller.
    group: String,
}

/// The answers of an authenticated legacy endpoint (for the OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum Answers {
    /// Accepted: a JSON string holding the JSON answer.
    #[response(status = 202)]
    Accepted,
    /// Malformed request: `{"detail": "<JSON of {loc, msg, type}>"}`.
    #[response(status = 400)]
    BadRequest,
    /// The token is invalid or expired.
    #[response(status = 401)]
    Unauthorized,
    /// No token, or the action is not allowed.
    #[response(status = 403)]
    Forbidden,
    /// `user` or `group` is not the caller's own.
    #[response(status = 404)]
    NotFound,
    /// A query parameter is missing or malformed (FastAPI's shape).
    #[response(status = 422)]
    Unprocessable,
}

/// The legacy routes of the route table ([`crate::app::routes`]), each under `/api/1.0.0`
/// served with and without its trailing slash (both spellings are in the OpenAPI document; the
/// one without is an alias with no `operationId`).
pub fn routes() -> OpenApiRouter<AppState> {
    use AuditAction::*;
    use utoipa_axum::routes as r;
    OpenApiRouter::new()
        .routes(both(audited(Put, r!(put_files))))
        .routes(both(audited(Get, r!(get_file))))
        .routes(both(audited(Delete, r!(delete_files))))
        .routes(both(audited(Get, r!(getlist))))
        .routes(both(audited(List, r!(list))))
        .routes(both(audited(Find, r!(find))))
        .routes(both(audited(Meta, r!(meta))))
        .routes(both(audited(Stat, r!(status))))
        .routes(both(r!(init)))
        .routes(both(r!(init_token)))
        .routes(both(r!(system_page)))
        .routes(r!(system_service))
        .routes(r!(healthz))
        // Not a route: unknown paths under the prefix get FastAPI's 404, as upstream.
        .route(
            &format!("{PREFIX}/{{*rest}}"),
            axum::routing::any(not_found),
        )
}

/// Adds the spelling without the trailing slash to a route's one path: served by the same
/// handlers, documented as an alias (the same operations without an `operationId`).
fn both(mut route: UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
    let (path, item) = route
        .1
        .paths
        .iter()
        .next()
        .map(|(p, i)| (p.clone(), i.clone()))
        .expect("one path");
    let bare = path.trim_end_matches('/').to_owned();
    assert_ne!(bare, path, "{path} has no trailing slash");
    let mut alias = item;
    for op in crate::app::operations_mut(&mut alias) {
        op.operation_id = None;
        op.summary = Some(format!("{path} (without its trailing slash)"));
    }
    route.1.paths.insert(bare, alias);
    route
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_cleaned_like_upstream_and_blank_lines_are_dropped() {
        let got = clean_list(vec![
            "/a\n".into(),
            "/work/\n".into(), // a blank line the client made absolute
            "\n".into(),
            "/b".into(),
            "/a".into(),
            "/c/".into(),
        ]);
        assert_eq!(got, ["/a", "/b", "/c/"]);
    }

    #[test]
    fn python_booleans_and_params() {
        let p = Params::parse(Some(
            "groupall=True&regex=False&limit=5&holding_id=x&tag=a:1,b:2&user=u",
        ))
        .unwrap();
        assert!(p.bool("groupall").unwrap());
        assert!(!p.bool("regex").unwrap());
        assert!(!p.bool("descending").unwrap());
        assert_eq!(p.limit().unwrap(), 5);
        assert_eq!(
            p.int("holding_id").unwrap_err().status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(p.tags().unwrap().get("b").unwrap(), "2");
        assert_eq!(
            p.required("group").unwrap_err().status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let p = Params::parse(Some("groupall=maybe")).unwrap();
        assert!(p.bool("groupall").is_err());
    }

    #[test]
    fn states_are_exact_names_or_numbers() {
        assert_eq!(state_of("COMPLETE").unwrap(), TxState::Complete);
        assert_eq!(state_of("101").unwrap(), TxState::Failed);
        let e = state_of("complete").unwrap_err();
        assert!(
            e.body["detail"]
                .as_str()
                .unwrap()
                .contains("Given State: complete is not valid.")
        );
        assert!(state_of("CATALOG_ROLLBACK").is_err());
    }

    #[test]
    fn times_have_no_offset() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T03:04:05.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(iso(t), "2026-11-25T03:04:05.500000");
    }

    #[test]
    fn the_init_key_is_a_valid_fernet_key_and_stable() {
        let c = LegacyInit {
            oauth_client_id: "nlds".into(),
            oauth_token_url: "https://id.example/token".into(),
            ..Default::default()
        };
        assert_eq!(c.key(), c.clone().key());
        let f = fernet::Fernet::new(&c.key()).expect("valid key");
        let tok = f.encrypt(b"x");
        assert_eq!(f.decrypt(&tok).unwrap(), b"x");
    }
}
