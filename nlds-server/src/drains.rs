//! `/api/v2/admin/drains`: draining a role for maintenance and resuming it (service operators
//! only; docs/ADMIN.md, "Draining a role"). The monitor records the drains (`monitor.admin`,
//! `nlds_core::drain`) and tells every worker process.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use nlds_core::admin::{AdminAnswer, AdminQuery};
use nlds_core::drain::{DrainBody, DrainRequest, Drains, check_drainable, parse_role};
use nlds_core::{ErrorCode, Role};

use crate::admin::{ask, mismatch, require_admin};
use crate::error::{Result, ServerError};
use crate::extract::Caller;
use crate::state::AppState;

/// `GET /api/v2/admin/drains`: the roles drained now.
#[utoipa::path(get, path = "/api/v2/admin/drains",
    responses((status = 200, body = Drains, description = "the roles drained now"),
        (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn list_drains(State(s): State<AppState>, caller: Caller) -> Result<Json<Drains>> {
    require_admin(&caller)?;
    drains(&s, &caller, DrainRequest::List).await
}

/// `POST /api/v2/admin/drains/{role}`: drain a role: its processes finish what they have in hand
/// and take no new work until it is resumed; its messages wait in its queue. Draining a drained
/// role changes nothing.
#[utoipa::path(post, path = "/api/v2/admin/drains/{role}",
    params(("role" = String, Path, description = "the role's command-line name (transfer-put, ...)")),
    request_body(content = DrainBody, description = "optional: why", content_type = "application/json"),
    responses((status = 200, body = Drains, description = "drained; the roles drained now"),
        (status = 400, body = nlds_core::error::ErrorBody, description = "unknown role, a role that cannot be drained, or a bad body"),
        (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn drain_role(
    State(s): State<AppState>,
    caller: Caller,
    Path(role): Path<String>,
    body: Bytes,
) -> Result<Json<Drains>> {
    require_admin(&caller)?;
    let role = role_of(&role)?;
    check_drainable(role).map_err(|e| ServerError::new(ErrorCode::BadRequest, e))?;
    let DrainBody { reason } = if body.iter().all(u8::is_ascii_whitespace) {
        DrainBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ServerError::new(
                ErrorCode::BadRequest,
                format!("the body must be JSON like {{\"reason\": \"...\"}} (or empty): {e}"),
            )
        })?
    };
    let by = caller.0.user.clone();
    tracing::warn!(%role, %by, "drain requested");
    drains(&s, &caller, DrainRequest::Drain { role, by, reason }).await
}

/// `DELETE /api/v2/admin/drains/{role}`: resume a drained role: its processes take work again.
/// Resuming a role that is not drained changes nothing.
#[utoipa::path(delete, path = "/api/v2/admin/drains/{role}",
    params(("role" = String, Path, description = "the role's command-line name (transfer-put, ...)")),
    responses((status = 200, body = Drains, description = "resumed; the roles drained now"),
        (status = 400, body = nlds_core::error::ErrorBody, description = "unknown role"),
        (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")), security(("bearer" = [])))]
pub async fn resume_role(
    State(s): State<AppState>,
    caller: Caller,
    Path(role): Path<String>,
) -> Result<Json<Drains>> {
    require_admin(&caller)?;
    let role = role_of(&role)?;
    tracing::warn!(%role, by = %caller.0.user, "resume requested");
    drains(&s, &caller, DrainRequest::Resume { role }).await
}

fn role_of(name: &str) -> Result<Role> {
    parse_role(name).map_err(|e| ServerError::new(ErrorCode::BadRequest, e))
}

async fn drains(s: &AppState, caller: &Caller, req: DrainRequest) -> Result<Json<Drains>> {
    match ask(s, caller, AdminQuery::Drains(req)).await? {
        AdminAnswer::Drains(d) => Ok(Json(d)),
        _ => Err(mismatch()),
    }
}
