//! `/api/v2/notify`: the caller's notification channels (docs/NOTIFY.md), and
//! `/api/v2/admin/notifications`: notifications that could not be delivered, for operators. The
//! monitor keeps them (`monitor.notify`) with a non-secret nonce per webhook; the webhook's
//! signing secret is derived here from that nonce under `[notify] webhook_key_file` (as the
//! delivery task derives it to sign), so it never crosses the bus.

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
    let asked = matches!(req, NotifyRequest::Show { secret: true });
    if let NotifyRequest::Set(change) = &req
        && (change.rotate_secret
            || change
                .webhook
                .as_deref()
                .is_some_and(|w| !w.trim().is_empty()))
        && s.webhook_key.is_none()
    {
        return Err(no_key());
    }
    let mut n = match ask(s, caller, req).await? {
        RpcReply::Notify(n) => n,
        _ => return Err(unexpected("monitor.notify")),
    };
    if (asked || n.webhook_secret_new)
        && let Some(nonce) = &n.webhook_nonce
    {
        let key = s.webhook_key.as_ref().ok_or_else(no_key)?;
        n.webhook_secret = Some(key.secret_for(&caller.0.user, nonce));
    }
    Ok(n)
}

fn no_key() -> ServerError {
    ServerError::new(
        ErrorCode::Unavailable,
        "webhooks cannot be signed: this server has no [notify] webhook_key_file (ask the \
         operators to set it on the API servers and the monitor)",
    )
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
/// removed). A new webhook URL (or `rotate_secret`) gets a new signing secret, in this answer.
#[utoipa::path(put, path = "/api/v2/notify", request_body = SetNotify,
    responses((status = 200, body = NotifySettings, description = "the caller's channels after the change"),
        (status = 400, body = nlds_core::error::ErrorBody, description = "an address or URL that is refused, or nothing to set"),
        (status = 503, body = nlds_core::error::ErrorBody, description = "a webhook, but no [notify] webhook_key_file to derive its secret")),
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
