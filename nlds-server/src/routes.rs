//! Handlers of the native API (`/api/v2`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use nlds_core::api::{
    Accepted, ApiAction, DEFAULT_LIMIT, FilePage, GetPlan, GetRequest, HoldingPage, HoldingQuery,
    MAX_LIMIT, MetaRequest, MetaResponse, PutPlan, PutRequest, Readiness, StatQuery,
    TransactionPage, TransactionStatus, WhoAmI, parse_tags,
};
use nlds_core::message::{HoldingFilter, RpcReply, StatusFilter};
use nlds_core::number::{db_count, db_id};
use nlds_core::{
    AccessRole, Action, Envelope, ErrorCode, Payload, RoutingKey, State as TxState, Worker,
};
use uuid::Uuid;

use crate::app::{ApiJson, ApiQuery, AppState, Caller};
use crate::error::{Result, ServerError};

const MAX_PATH_LEN: usize = 4096;

/// Checks the paths of a put or get; names every problem (up to five) by entry number.
pub fn validate_paths(paths: &[String], max: usize, allow_relative: bool) -> Result<()> {
    if paths.is_empty() {
        return Err(ServerError::bad_request(
            "no paths given: the request must list at least one path",
        ));
    }
    if paths.len() > max {
        return Err(ServerError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the request lists {} paths; at most {max} are accepted in one request: split the list",
                paths.len()
            ),
        ));
    }
    let mut problems = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(paths.len());
    for (i, p) in paths.iter().enumerate() {
        let n = i + 1;
        if p.trim().is_empty() {
            problems.push(format!("entry {n} is blank"));
        } else if p.contains('\0') {
            problems.push(format!("entry {n} contains a NUL character"));
        } else if p.len() > MAX_PATH_LEN {
            problems.push(format!("entry {n} is longer than {MAX_PATH_LEN} bytes"));
        } else if !allow_relative && !p.starts_with('/') {
            problems.push(format!("entry {n} ({p:?}) is not an absolute path"));
        } else if let Some(first) = seen.insert(p.as_str(), n) {
            problems.push(format!("entry {n} repeats entry {first} ({p:?})"));
        }
        if problems.len() >= 5 {
            break;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ServerError::bad_request(format!(
            "invalid paths: {}",
            problems.join("; ")
        )))
    }
}

fn job_label(given: Option<&str>, tid: Uuid) -> Result<String> {
    match given.map(str::trim).filter(|s| !s.is_empty()) {
        Some(l) if l.len() > 256 || l.chars().any(char::is_control) => {
            Err(ServerError::bad_request(
                "job label must be at most 256 characters without control characters",
            ))
        }
        Some(l) => Ok(l.to_owned()),
        None => Ok(tid.to_string()[..8].to_owned()),
    }
}

fn limit(l: Option<u64>) -> Result<u64> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ServerError::bad_request("limit must be at least 1")),
        Some(n) if n > MAX_LIMIT => Err(ServerError::bad_request(format!(
            "limit {n} is above the maximum of {MAX_LIMIT}; page with offset instead"
        ))),
        Some(n) => Ok(n),
    }
}

fn parse_tid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s.trim()).map_err(|_| {
        ServerError::bad_request(format!("{s:?} is not a valid transaction id (a UUID)"))
    })
}

fn filter_from(q: &HoldingQuery) -> Result<HoldingFilter> {
    if q.regex
        && let Some(l) = &q.label
    {
        nlds_core::pattern::check(&[l], "label")?;
    }
    Ok(HoldingFilter {
        groupall: q.groupall,
        label: q.label.clone().filter(|l| !l.is_empty()),
        label_regex: q.regex,
        holding_id: q.holding_id.map(|id| db_id("holding_id", id)).transpose()?,
        holding_ids: Vec::new(),
        transaction_id: q.transaction_id.as_deref().map(parse_tid).transpose()?,
        tags: q
            .tag
            .as_deref()
            .map(parse_tags)
            .transpose()?
            .unwrap_or_default(),
        limit: limit(q.limit)?,
        offset: db_count("offset", q.offset.unwrap_or(0))?,
        descending: q.descending.unwrap_or(true),
    })
}

fn rpc_env(caller: &Caller, group: &str, payload: Payload) -> Envelope {
    rpc_env_as(&caller.0.user, group, payload).with_role(caller.0.role_in(group))
}

/// The envelope of a query RPC made on behalf of `user` (as a plain user: see
/// [`rpc_env_role`]).
pub fn rpc_env_as(user: &str, group: &str, payload: Payload) -> Envelope {
    Envelope::new(Uuid::new_v4(), user, group, ApiAction::Get, "rpc", payload)
}

/// The envelope of a query RPC made on behalf of `user`, whose role in `group` is `role`.
pub fn rpc_env_role(user: &str, group: &str, role: AccessRole, payload: Payload) -> Envelope {
    rpc_env_as(user, group, payload).with_role(role)
}

/// Accepts a put or get: records it, hands it to the router, and answers 202 with its status URL.
async fn accept(
    s: &AppState,
    env: Envelope,
    holding_id: Option<i64>,
    label: Option<String>,
) -> Result<Accepted> {
    if let Payload::PutRequest { paths, .. } | Payload::GetRequest { paths, .. } = &env.payload {
        crate::audit::note_paths(paths);
    }
    record(s, &env, label.clone(), holding_id).await?;
    let action = match env.action {
        ApiAction::Put => Action::Put,
        ApiAction::Putlist => Action::Putlist,
        ApiAction::Get => Action::Get,
        _ => Action::Getlist,
    };
    s.bus
        .publish(RoutingKey::new(Worker::Route, action), &env)
        .await?;
    let tid = env.transaction_id;
    Ok(Accepted {
        transaction_id: tid,
        api_action: env.action,
        status_url: format!("{}/api/v2/transactions/{tid}", s.cfg.base_url()),
        job_label: env.job_label,
        holding_id,
        label,
    })
}

/// The API action of a put of `paths`.
pub(crate) fn put_action(paths: &[String]) -> ApiAction {
    if paths.len() == 1 {
        ApiAction::Put
    } else {
        ApiAction::Putlist
    }
}

/// The API action of a get of `paths`.
pub(crate) fn get_action(paths: &[String], regex: bool) -> ApiAction {
    if paths.len() == 1 && !regex {
        ApiAction::Get
    } else {
        ApiAction::Getlist
    }
}

/// A client-chosen transaction id (`transaction_id` of a put, get or delete, on both APIs) must
/// be unknown, or already `user`'s in `group` for the same `action` (a retry, which then finds the
/// existing transaction): else 409 `conflict`, naming the id only (never whose it is). Asked of
/// the monitor before anything starts; the monitor's `init` refuses such an id again,
/// atomically. A server-made id needs no check.
pub(crate) async fn check_transaction_id(
    s: &AppState,
    user: &str,
    group: &str,
    action: ApiAction,
    tid: Uuid,
) -> Result<()> {
    let env = Envelope::new(
        tid,
        user,
        group,
        action,
        "check",
        Payload::CheckTransactionId,
    );
    match s
        .rpc(RoutingKey::new(Worker::Monitor, Action::Init), env)
        .await?
    {
        RpcReply::Available => Ok(()),
        _ => Err(unexpected("monitor.init")),
    }
}

/// Records the transaction with the monitor before it is accepted, so a client polling its id
/// never gets "not found", even if the process stops before the workflow starts.
async fn record(
    s: &AppState,
    env: &Envelope,
    label: Option<String>,
    holding_id: Option<i64>,
) -> Result<()> {
    let init = env.reply(Payload::MonitorInit { label, holding_id });
    match s
        .rpc(RoutingKey::new(Worker::Monitor, Action::Init), init)
        .await?
    {
        RpcReply::Recorded => Ok(()),
        _ => Err(unexpected("monitor.init")),
    }
}

fn unexpected(what: &str) -> ServerError {
    ServerError::new(ErrorCode::Internal, format!("unexpected reply to {what}"))
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the bus is reachable.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Readiness, description = "ready: every check is ok"), (status = 503, body = Readiness, description = "not ready: the failing check says why")))]
pub async fn readyz(State(s): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let mut checks = std::collections::BTreeMap::new();
    let ok = match s.bus.ready().await {
        Ok(()) => {
            checks.insert("bus".into(), "ok".into());
            true
        }
        Err(e) => {
            checks.insert("bus".into(), e.to_string());
            false
        }
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready: ok, checks }))
}

/// `POST /api/v2/admin/archive`: start an archive round now (service operators only).
#[utoipa::path(post, path = "/api/v2/admin/archive", responses((status = 202, description = "round requested"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn admin_archive(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<serde_json::Value>)> {
    if !caller.0.admin {
        return Err(ServerError::new(
            ErrorCode::Forbidden,
            format!("{} is not a service operator (admin)", caller.0.user),
        ));
    }
    // The archive workflow's first message; the catalogue plans the round.
    let (key, env) = nlds_core::workflow::archive_round();
    s.bus.publish(key, &env).await?;
    let round = env.transaction_id;
    tracing::info!(user = %caller.0.user, %round, "archive round requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "round": round })),
    ))
}

/// `POST /api/v2/admin/evict`: drop the warm copies of a holding's files that have a verified
/// cold copy (service operators only; eviction policies use the same path).
#[utoipa::path(post, path = "/api/v2/admin/evict", responses((status = 200, description = "warm copies dropped"), (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn admin_evict(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<serde_json::Value>,
) -> Result<Json<serde_json::Value>> {
    if !caller.0.admin {
        return Err(ServerError::new(
            ErrorCode::Forbidden,
            format!("{} is not a service operator (admin)", caller.0.user),
        ));
    }
    let holding_id = req["holding_id"].as_i64().ok_or_else(|| {
        ServerError::bad_request("give the holding to evict: {\"holding_id\": N}")
    })?;
    let group = caller.group(None)?;
    let env = rpc_env(&caller, &group, Payload::Evict { holding_id });
    let RpcReply::Evicted { files } = s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Evict), env)
        .await?
    else {
        return Err(unexpected("catalog.evict"));
    };
    // The catalogue published the removal of these warm copies' objects with its answer.
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    let n = files.len();
    tracing::info!(user = %caller.0.user, holding_id, files = n, bytes, "warm copies evicted");
    Ok(Json(
        serde_json::json!({ "holding_id": holding_id, "files": n, "bytes": bytes }),
    ))
}

/// `GET /api/v2/whoami`
#[utoipa::path(get, path = "/api/v2/whoami", responses((status = 200, body = WhoAmI, description = "the caller: user, groups, admin and role in each group")), security(("bearer" = [])))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    let roles = caller
        .0
        .groups
        .iter()
        .map(|g| (g.clone(), caller.0.role_in(g)))
        .collect();
    Json(WhoAmI {
        user: caller.0.user,
        groups: caller.0.groups,
        admin: caller.0.admin,
        roles,
    })
}

/// `POST /api/v2/put`: copy files into the store (202), or with `dry_run` say where they would
/// go (200).
#[utoipa::path(post, path = "/api/v2/put", request_body = PutRequest,
    responses((status = 202, body = Accepted, description = "accepted: the transaction to follow"), (status = 200, body = PutPlan, description = "dry run: what would be put"), (status = 400, body = nlds_core::error::ErrorBody, description = "invalid request")), security(("bearer" = [])))]
pub async fn put(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PutRequest>,
) -> Result<axum::response::Response> {
    let group = caller.group(req.group.as_deref())?;
    if req.dry_run {
        let role = caller.0.role_in(&group);
        let plan = plan_put(&s, &caller.0.user, &group, role, req).await?;
        return Ok((StatusCode::OK, Json(plan)).into_response());
    }
    let role = caller.0.role_in(&group);
    let accepted = submit_put(&s, &caller.0.user, &group, role, req).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Starts a put for `user` (whose role in `group` is `role`) in `group` (shared by both APIs).
pub async fn submit_put(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    req: PutRequest,
) -> Result<Accepted> {
    validate_paths(&req.paths, s.cfg.max_paths, false)?;
    let tenancy = tenancy_name(req.tenancy.as_deref())?;
    let tid = req.transaction_id.unwrap_or_else(Uuid::new_v4);
    let job_label = job_label(req.job_label.as_deref(), tid)?;
    let action = put_action(&req.paths);
    if req.transaction_id.is_some() {
        check_transaction_id(s, user, group, action, tid).await?;
    }
    let setup = Envelope::new(
        tid,
        user,
        group,
        action,
        &job_label,
        Payload::SetupHolding {
            label: req.label.clone(),
            holding_id: req.holding_id,
            tags: req.tags.clone(),
        },
    )
    .with_role(role);
    let (holding_id, label) = match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Setup), setup)
        .await?
    {
        RpcReply::Holding { id, label } => (id, label),
        _ => return Err(unexpected("catalog.setup")),
    };
    let env = Envelope::new(
        tid,
        user,
        group,
        action,
        &job_label,
        Payload::PutRequest {
            holding_id,
            paths: req.paths,
        },
    )
    .with_role(role)
    .with_tenancy(tenancy);
    tracing::info!(transaction.id = %tid, user = %user, holding_id, "put accepted");
    accept(s, env, Some(holding_id), Some(label)).await
}

/// The object-store tenancy a put names: `None` (the default) when absent or blank; else a
/// name the workers resolve (only the name travels, never a credential).
fn tenancy_name(t: Option<&str>) -> Result<Option<String>> {
    let Some(t) = t.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if t.len() > 255 || t.chars().any(char::is_control) {
        return Err(ServerError::new(
            ErrorCode::BadRequest,
            "tenancy must be a name of at most 255 characters without control characters",
        ));
    }
    Ok(Some(t.to_owned()))
}

/// What a put would do: the holding it would add to (or the label of the one it would create).
pub async fn plan_put(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    req: PutRequest,
) -> Result<PutPlan> {
    validate_paths(&req.paths, s.cfg.max_paths, false)?;
    let tid = req.transaction_id.unwrap_or_else(Uuid::new_v4);
    let label = req.label.clone().filter(|l| !l.trim().is_empty());
    let mut holding = None;
    if req.holding_id.is_some() || label.is_some() || !req.tags.is_empty() {
        let filter = HoldingFilter {
            label: label.clone(),
            holding_id: req.holding_id,
            tags: req.tags.clone(),
            limit: 2,
            descending: true,
            ..Default::default()
        };
        let env = rpc_env_role(user, group, role, Payload::ListHoldings { filter });
        match s
            .rpc(RoutingKey::new(Worker::Catalog, Action::List), env)
            .await?
        {
            RpcReply::Holdings(page) => holding = page.holdings.into_iter().next(),
            _ => return Err(unexpected("catalog.list")),
        }
        if holding.is_none()
            && let Some(id) = req.holding_id
        {
            return Err(ServerError::new(
                ErrorCode::NotFound,
                format!("holding {id} not found among your holdings"),
            ));
        }
    }
    let new_label = holding
        .is_none()
        .then(|| label.unwrap_or_else(|| tid.to_string()[..8].to_owned()));
    Ok(PutPlan {
        holding,
        new_label,
        group: group.to_owned(),
        paths: req.paths,
    })
}

/// Checks that a named holding exists and is visible, so a get naming a wrong one fails at once.
async fn check_holding(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    filter: &HoldingFilter,
) -> Result<()> {
    if filter.holding_id.is_none() && filter.label.is_none() {
        return Ok(());
    }
    let probe = HoldingFilter {
        limit: 1,
        offset: 0,
        ..filter.clone()
    };
    let env = rpc_env_role(user, group, role, Payload::ListHoldings { filter: probe });
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::List), env)
        .await?
    {
        RpcReply::Holdings(page) if page.total > 0 => Ok(()),
        RpcReply::Holdings(_) => Err(not_visible(filter)),
        _ => Err(unexpected("catalog.list")),
    }
}

/// The 404 for a named holding (id or label) the caller cannot see: one text whether it exists
/// in another group, belongs to a user whose holdings the caller may not read, or does not
/// exist at all, so an answer never tells them apart.
fn not_visible(filter: &HoldingFilter) -> ServerError {
    ServerError::new(
        ErrorCode::NotFound,
        match (&filter.holding_id, &filter.label) {
            (Some(id), _) => format!("holding {id} not found among the holdings you can see"),
            (None, Some(l)) => {
                format!("no holding labelled {l:?} among the holdings you can see")
            }
            _ => "holding not found".into(),
        },
    )
}

/// `POST /api/v2/get`: copy files back to disk (202), or with `dry_run` list what would be
/// restored (200).
#[utoipa::path(post, path = "/api/v2/get", request_body = GetRequest,
    responses((status = 202, body = Accepted, description = "accepted: the transaction to follow"), (status = 200, body = GetPlan, description = "dry run: what would be restored"), (status = 404, body = nlds_core::error::ErrorBody, description = "no such holding or file visible to the caller")), security(("bearer" = [])))]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<GetRequest>,
) -> Result<axum::response::Response> {
    let group = caller.group(req.group.as_deref())?;
    if req.dry_run {
        let role = caller.0.role_in(&group);
        let plan = plan_get(&s, &caller.0.user, &group, role, req).await?;
        return Ok((StatusCode::OK, Json(plan)).into_response());
    }
    let role = caller.0.role_in(&group);
    let accepted = submit_get(&s, &caller.0.user, &group, role, req).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Checks a get and turns it into the holding filter it names.
async fn check_get(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    req: &GetRequest,
) -> Result<HoldingFilter> {
    validate_paths(&req.paths, s.cfg.max_paths, req.regex)?;
    if req.keep_owner && !role.is_admin() {
        return Err(ServerError::new(
            ErrorCode::Forbidden,
            format!(
                "keep_owner (restore files with their recorded owner) is for service operators \
                 (admin); {user} is {role} in group {group}"
            ),
        ));
    }
    if req.regex {
        if req.holding_id.is_none() && req.label.is_none() && req.tags.is_empty() {
            return Err(ServerError::bad_request(
                "a regular expression can only search named holdings: give a holding id, label or tags",
            ));
        }
        nlds_core::pattern::check(&req.paths, "path")?;
    }
    if let Some(id) = req.holding_id {
        db_id("holding_id", id)?;
    }
    if let Some(t) = &req.target
        && !t.starts_with('/')
    {
        return Err(ServerError::bad_request(format!(
            "target {t:?} is not an absolute path"
        )));
    }
    let filter = HoldingFilter {
        groupall: req.groupall,
        label: req.label.clone().filter(|l| !l.is_empty()),
        label_regex: false,
        holding_id: req.holding_id,
        holding_ids: Vec::new(),
        transaction_id: None,
        tags: req.tags.clone(),
        limit: 0,
        offset: 0,
        descending: true,
    };
    check_holding(s, user, group, role, &filter).await?;
    Ok(filter)
}

/// Starts a get for `user` (whose role in `group` is `role`) in `group` (shared by both APIs).
pub async fn submit_get(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    req: GetRequest,
) -> Result<Accepted> {
    let filter = check_get(s, user, group, role, &req).await?;
    let tid = req.transaction_id.unwrap_or_else(Uuid::new_v4);
    let job_label = job_label(req.job_label.as_deref().or(req.label.as_deref()), tid)?;
    let action = get_action(&req.paths, req.regex);
    if req.transaction_id.is_some() {
        check_transaction_id(s, user, group, action, tid).await?;
    }
    let env = Envelope::new(
        tid,
        user,
        group,
        action,
        &job_label,
        Payload::GetRequest {
            filter,
            paths: req.paths,
            regex: req.regex,
            target: req.target,
            overwrite: req.overwrite,
        },
    )
    .with_role(role);
    let env = Envelope {
        keep_owner: req.keep_owner,
        ..env
    };
    accept(s, env, req.holding_id, req.label).await
}

/// What a get would restore, without starting it.
pub async fn plan_get(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    req: GetRequest,
) -> Result<GetPlan> {
    let filter = check_get(s, user, group, role, &req).await?;
    let env = rpc_env_role(
        user,
        group,
        role,
        Payload::PlanGet {
            filter,
            paths: req.paths,
            regex: req.regex,
        },
    );
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Plan), env)
        .await?
    {
        RpcReply::Plan { files, missing } => Ok(GetPlan {
            files_total: files.len() as u64,
            bytes_total: files.iter().map(|f| f.size).sum(),
            files,
            missing,
            target: req.target,
        }),
        _ => Err(unexpected("catalog.plan")),
    }
}

/// `GET /api/v2/holdings`: list holdings.
#[utoipa::path(get, path = "/api/v2/holdings", params(HoldingQuery), responses((status = 200, body = HoldingPage, description = "the holdings visible to the caller")), security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HoldingQuery>,
) -> Result<Json<HoldingPage>> {
    let group = caller.group(q.group.as_deref())?;
    let filter = filter_from(&q)?;
    let named = filter.holding_id.is_some() || (filter.label.is_some() && !filter.label_regex);
    let env = rpc_env(
        &caller,
        &group,
        Payload::ListHoldings {
            filter: filter.clone(),
        },
    );
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::List), env)
        .await?
    {
        RpcReply::Holdings(page) if named && page.total == 0 => Err(not_visible(&filter)),
        RpcReply::Holdings(page) => Ok(Json(page)),
        _ => Err(unexpected("catalog.list")),
    }
}

/// `GET /api/v2/files`: find files.
#[utoipa::path(get, path = "/api/v2/files", params(HoldingQuery), responses((status = 200, body = FilePage, description = "the files found"), (status = 404, body = nlds_core::error::ErrorBody, description = "the named holding is not visible to the caller")), security(("bearer" = [])))]
pub async fn find(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HoldingQuery>,
) -> Result<Json<FilePage>> {
    let group = caller.group(q.group.as_deref())?;
    let filter = filter_from(&q)?;
    if q.regex
        && let Some(p) = &q.path
    {
        nlds_core::pattern::check(&[p], "path")?;
    }
    // A named holding the caller cannot see is not found (as on `GET /api/v2/holdings`), the
    // same whether it is another group's or does not exist.
    if filter.holding_id.is_some() || (filter.label.is_some() && !filter.label_regex) {
        let role = caller.0.role_in(&group);
        check_holding(&s, &caller.0.user, &group, role, &filter).await?;
    }
    let env = rpc_env(
        &caller,
        &group,
        Payload::FindFiles {
            filter,
            path: q.path.clone().filter(|p| !p.is_empty()),
            path_regex: q.regex,
        },
    );
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Find), env)
        .await?
    {
        RpcReply::Files(page) => Ok(Json(page)),
        _ => Err(unexpected("catalog.find")),
    }
}

/// `POST /api/v2/meta`: change a holding's label or tags.
#[utoipa::path(post, path = "/api/v2/meta", request_body = MetaRequest, responses((status = 200, body = MetaResponse, description = "the holdings changed (or, on a dry run, that would be)")), security(("bearer" = [])))]
pub async fn meta(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<MetaRequest>,
) -> Result<Json<MetaResponse>> {
    let group = caller.group(req.group.as_deref())?;
    if req.holding_id.is_none() && req.label.is_none() && req.tags.is_empty() {
        return Err(ServerError::bad_request(
            "give a holding id, label or tags to select the holding to change",
        ));
    }
    if req.new_label.is_none() && req.new_tags.is_empty() && req.del_tags.is_empty() {
        return Err(ServerError::bad_request(
            "nothing to change: give a new label, new tags or tags to delete",
        ));
    }
    let filter = HoldingFilter {
        label: req.label.clone(),
        holding_id: req.holding_id,
        tags: req.tags.clone(),
        limit: MAX_LIMIT,
        descending: true,
        ..Default::default()
    };
    let env = rpc_env(
        &caller,
        &group,
        Payload::ChangeMeta {
            filter,
            new_label: req.new_label,
            new_tags: req.new_tags,
            del_tags: req.del_tags,
            dry_run: req.dry_run,
        },
    );
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Meta), env)
        .await?
    {
        RpcReply::Meta(m) => Ok(Json(m)),
        _ => Err(unexpected("catalog.meta")),
    }
}

fn actions(list: Option<&str>) -> Result<Vec<ApiAction>> {
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|a| {
            ApiAction::parse(a).ok_or_else(|| {
                ServerError::bad_request(format!(
                    "{a:?} is not an api action (put, putlist, get, getlist, archive-put, archive-get)"
                ))
            })
        })
        .collect()
}

fn status_filter(q: &StatQuery) -> Result<StatusFilter> {
    let states = q
        .state
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|st| {
            st.parse::<TxState>()
                .map_err(|e| ServerError::bad_request(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    if q.regex
        && let Some(j) = &q.job_label
    {
        nlds_core::pattern::check(&[j], "job label")?;
    }
    Ok(StatusFilter {
        groupall: q.groupall,
        id: q.id.map(|id| db_id("id", id)).transpose()?,
        transaction_id: q.transaction_id.as_deref().map(parse_tid).transpose()?,
        job_label: q.job_label.clone().filter(|s| !s.is_empty()),
        job_label_regex: q.regex,
        api_actions: actions(q.api_action.as_deref())?,
        exclude_api_actions: actions(q.exclude_api_action.as_deref())?,
        states,
        limit: limit(q.limit)?,
        offset: db_count("offset", q.offset.unwrap_or(0))?,
        descending: q.descending.unwrap_or(true),
    })
}

pub(crate) async fn stat_rpc(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    filter: StatusFilter,
) -> Result<TransactionPage> {
    let groupall = filter.groupall;
    let env = rpc_env_role(user, group, role, Payload::Stat { filter });
    let mut page = match s
        .rpc(RoutingKey::new(Worker::Monitor, Action::Stat), env)
        .await?
    {
        RpcReply::Transactions(page) => page,
        _ => return Err(unexpected("monitor.stat")),
    };
    current_labels(s, user, group, role, groupall, &mut page.transactions).await?;
    Ok(page)
}

/// The monitor records a transaction's holding label when it starts; a holding relabelled since
/// shows its current label (the catalogue owns labels).
async fn current_labels(
    s: &AppState,
    user: &str,
    group: &str,
    role: AccessRole,
    groupall: bool,
    txs: &mut [TransactionStatus],
) -> Result<()> {
    let mut ids: Vec<i64> = txs.iter().filter_map(|t| t.holding_id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    let filter = HoldingFilter {
        groupall,
        holding_ids: ids.clone(),
        limit: ids.len() as u64,
        descending: true,
        ..Default::default()
    };
    let env = rpc_env_role(user, group, role, Payload::ListHoldings { filter });
    let RpcReply::Holdings(page) = s
        .rpc(RoutingKey::new(Worker::Catalog, Action::List), env)
        .await?
    else {
        return Err(unexpected("catalog.list"));
    };
    let labels: HashMap<i64, String> = page.holdings.into_iter().map(|h| (h.id, h.label)).collect();
    for t in txs {
        if let Some(l) = t.holding_id.and_then(|id| labels.get(&id)) {
            t.label = Some(l.clone());
        }
    }
    Ok(())
}

/// `GET /api/v2/transactions`: transaction states.
#[utoipa::path(get, path = "/api/v2/transactions", params(StatQuery), responses((status = 200, body = TransactionPage, description = "the transactions found")), security(("bearer" = [])))]
pub async fn stat(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<StatQuery>,
) -> Result<Json<TransactionPage>> {
    let group = caller.group(q.group.as_deref())?;
    let filter = status_filter(&q)?;
    let role = caller.0.role_in(&group);
    Ok(Json(
        stat_rpc(&s, &caller.0.user, &group, role, filter).await?,
    ))
}

/// `GET /api/v2/transactions/{transaction_id}`: one transaction.
#[utoipa::path(get, path = "/api/v2/transactions/{transaction_id}", params(("transaction_id" = String, Path, description = "UUID")),
    responses((status = 200, body = TransactionStatus, description = "the transaction"), (status = 404, body = nlds_core::error::ErrorBody, description = "no such transaction visible to the caller")), security(("bearer" = [])))]
pub async fn transaction(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TransactionStatus>> {
    let tid = parse_tid(&id)?;
    let group = caller.group(None)?;
    let filter = StatusFilter {
        transaction_id: Some(tid),
        limit: 1,
        descending: true,
        ..Default::default()
    };
    let role = caller.0.role_in(&group);
    stat_rpc(&s, &caller.0.user, &group, role, filter)
        .await?
        .transactions
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| {
            ServerError::new(ErrorCode::NotFound, format!("transaction {tid} not found"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(paths: &[&str]) -> std::result::Result<(), String> {
        let p: Vec<String> = paths.iter().map(|s| s.to_string()).collect();
        validate_paths(&p, 3, false).map_err(|e| format!("{} {}", e.0.code, e.0.message))
    }

    #[test]
    fn path_lists_are_checked_with_reasons() {
        assert!(v(&["/a", "/b"]).is_ok());
        assert_eq!(
            v(&[]).unwrap_err(),
            "bad_request no paths given: the request must list at least one path"
        );
        let e = v(&["/a", "  ", "rel/x"]).unwrap_err();
        assert!(
            e.contains("entry 2 is blank")
                && e.contains("entry 3 (\"rel/x\") is not an absolute path"),
            "{e}"
        );
        let e = v(&["/a", "/a"]).unwrap_err();
        assert!(e.contains("entry 2 repeats entry 1 (\"/a\")"), "{e}");
        let e = v(&["/a", "/b", "/c", "/d"]).unwrap_err();
        assert!(
            e.starts_with("payload_too_large the request lists 4 paths; at most 3"),
            "{e}"
        );
        assert!(validate_paths(&["a.*".into()], 3, true).is_ok());
    }

    #[test]
    fn limits_and_ids_are_validated() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
        assert!(
            parse_tid("nope")
                .unwrap_err()
                .0
                .message
                .contains("not a valid transaction id")
        );
        let q = StatQuery {
            state: Some("COMPLETE,101".into()),
            api_action: Some("put,get".into()),
            ..Default::default()
        };
        let f = status_filter(&q).unwrap();
        assert_eq!(f.states, [TxState::Complete, TxState::Failed]);
        assert_eq!(f.api_actions, [ApiAction::Put, ApiAction::Get]);
        let q = StatQuery {
            state: Some("complete".into()),
            ..Default::default()
        };
        assert!(status_filter(&q).is_err());
    }
}
