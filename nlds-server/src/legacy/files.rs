//! `files/`: put, get, delete and getlist.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use nlds_core::ErrorCode;
use nlds_core::api::{ApiAction, GetRequest, PutRequest, Tags};
use nlds_core::versions::SyncLevel;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::routes;
use crate::state::AppState;

use super::error::{LResult, LegacyError};
use super::params::{Acting, Params};
use super::reply::{accepted, tags_value};
use super::{ActingAs, Answers};

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
#[expect(
    clippy::too_many_arguments,
    reason = "the fields of upstream's `FileResponse`"
)]
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
pub(super) async fn put_files(
    State(s): State<AppState>,
    a: Acting,
    body: Bytes,
) -> LResult<Response> {
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
        // Upstream's client measures nothing: its batches are checked as they come.
        size_hint: None,
        parts: 0,
        // 1.0.x: a path the holding has is a conflict, unless the operator enabled updates
        // (`[server] legacy_put_updates`: new versions at the mtime sync level).
        sync: None,
        entries: Vec::new(),
        notify: false,
    };
    let sync = s.cfg.legacy_put_updates.then_some(SyncLevel::Mtime);
    let acc = routes::submit_put(&s, &a.user, &a.group, a.role(), req, sync).await?;
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
        parts: 0,
        version: None,
        at: None,
        notify: false,
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
pub(super) async fn get_file(State(s): State<AppState>, a: Acting) -> LResult<Response> {
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
pub(super) async fn delete_files(
    State(s): State<AppState>,
    a: Acting,
    body: Bytes,
) -> LResult<Response> {
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
        // 1.0.x: a deleted path is gone (with `legacy_put_updates`, every version of it).
        all_versions: true,
        notify: false,
        // 1.0.x sends every list in one body.
        parts: 0,
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
pub(super) async fn getlist(
    State(s): State<AppState>,
    a: Acting,
    body: Bytes,
) -> LResult<Response> {
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
