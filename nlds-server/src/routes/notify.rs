//! `/api/v2/notify`: the caller's notification channels (docs/NOTIFY.md), and
//! `/api/v2/admin/notifications`: notifications that could not be delivered, for operators. The
//! monitor keeps them (`monitor.notify`); the webhook's signing secret is made there and only
//! passes through here in the answer to its owner.

use axum::Json;
use axum::extract::State;
use nlds_core::message::RpcReply;
use nlds_core::notify::{Delivery, NotificationSummary, NotifyRequest, NotifySettings, SetNotify};
use nlds_core::{Action, ErrorCode, Payload, RoutingKey, Worker};
use serde::Deserialize;

use super::{rpc_env, unexpected};
use crate::error::{Result, ServerError};
use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::state::AppState;

async fn ask(s: &AppState, caller: &Caller, req: NotifyRequest) -> Result<RpcReply> {
    let group = caller.group(None).unwrap_or_default();
    s.rpc(
        RoutingKey::new(Worker::Monitor, Action::Notify),
        rpc_env(caller, &group, Payload::Notify(req)),
    )
    .await
}

async fn settings(s: &AppState, caller: &Caller, req: NotifyRequest) -> Result<NotifySettings> {
    match ask(s, caller, req).await? {
        RpcReply::Notify(n) => Ok(n),
        _ => Err(unexpected("monitor.notify")),
    }
}

/// `?secret=true`: include the webhook's signing secret.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShowQuery {
    /// Include the webhook's signing secret.
    #[serde(default)]
    pub secret: bool,
}

/// `GET /api/v2/notify`: the caller's channels, when they are used, and the caller's recent
/// notifications that could not be delivered.
#[utoipa::path(get, path = "/api/v2/notify", params(ShowQuery),
    responses((status = 200, body = NotifySettings, description = "the caller's channels")),
    security(("bearer" = [])))]
pub async fn notify_show(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> Result<Json<NotifySettings>> {
    Ok(Json(
        settings(&s, &caller, NotifyRequest::Show { secret: q.secret }).await?,
    ))
}

/// `PUT /api/v2/notify`: sets the caller's channels (an absent field is kept, an empty one
/// removed). A new webhook URL gets a new signing secret, in this answer only.
#[utoipa::path(put, path = "/api/v2/notify", request_body = SetNotify,
    responses((status = 200, body = NotifySettings, description = "the caller's channels after the change"),
        (status = 400, body = nlds_core::error::ErrorBody, description = "an address or URL that is refused, or nothing to set")),
    security(("bearer" = [])))]
pub async fn notify_set(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(change): ApiJson<SetNotify>,
) -> Result<Json<NotifySettings>> {
    Ok(Json(
        settings(&s, &caller, NotifyRequest::Set(change)).await?,
    ))
}

/// `DELETE /api/v2/notify`: removes the caller's channels.
#[utoipa::path(delete, path = "/api/v2/notify",
    responses((status = 200, body = NotifySettings, description = "no channels left")),
    security(("bearer" = [])))]
pub async fn notify_clear(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<NotifySettings>> {
    Ok(Json(settings(&s, &caller, NotifyRequest::Clear).await?))
}

/// `?state=dead&limit=N`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `dead` (the default), `pending` or `sent`.
    #[serde(default = "dead")]
    #[param(value_type = Option<Delivery>)]
    pub state: Delivery,
    /// At most this many, newest first (default 100).
    #[serde(default)]
    pub limit: Option<u64>,
}

fn dead() -> Delivery {
    Delivery::Dead
}

/// `GET /api/v2/admin/notifications`: every user's and the operators' notifications in a
/// state (dead letters by default), newest first, for operators.
#[utoipa::path(get, path = "/api/v2/admin/notifications", params(ListQuery),
    responses((status = 200, body = Vec<NotificationSummary>, description = "the notifications"),
        (status = 403, body = nlds_core::error::ErrorBody, description = "not a service operator")),
    security(("bearer" = [])))]
pub async fn admin_notifications(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<NotificationSummary>>> {
    if !caller.0.admin {
        return Err(ServerError::new(
            ErrorCode::Forbidden,
            format!("{} is not a service operator (admin)", caller.0.user),
        ));
    }
    let req = NotifyRequest::List {
        state: q.state,
        limit: q.limit.unwrap_or(100),
    };
    match ask(&s, &caller, req).await? {
        RpcReply::Notifications(l) => Ok(Json(l)),
        _ => Err(unexpected("monitor.notify")),
    }
}
