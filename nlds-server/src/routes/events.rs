//! `/api/v2/transactions/{transaction_id}/events`: live status (server-sent events).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{KeepAlive, Sse};
use nlds_core::ErrorCode;

use super::parse_tid;
use crate::error::{Result, ServerError};
use crate::extract::Caller;
use crate::live::{self, Reader};
use crate::state::AppState;

/// `GET /api/v2/transactions/{transaction_id}/events`: the transaction's status as it changes,
/// as server-sent events (`text/event-stream`): an event `status` (data: the transaction as
/// `GET /api/v2/transactions/{transaction_id}` returns it; id: the time of its last update in
/// microseconds) at once and after every change, a keep-alive comment every
/// `events_keepalive_secs` in between, and the end of the stream after the final state. A client
/// that reconnects with `Last-Event-ID` gets only a status newer than that.
#[utoipa::path(get, path = "/api/v2/transactions/{transaction_id}/events",
    params(("transaction_id" = String, Path, description = "UUID"),
        ("Last-Event-ID" = Option<String>, Header, description = "the id of the last event the client received")),
    responses((status = 200, content_type = "text/event-stream", description = "server-sent events, each a TransactionStatus as data"),
        (status = 404, body = nlds_core::error::ErrorBody, description = "no such transaction visible to the caller")),
    security(("bearer" = [])))]
pub async fn events(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<
    Sse<
        impl futures::Stream<
            Item = std::result::Result<axum::response::sse::Event, std::convert::Infallible>,
        >,
    >,
> {
    let tid = parse_tid(&id)?;
    let who = Reader::of(&caller, &caller.group(None)?);
    let initial = live::fetch(&s, &who, tid).await?.ok_or_else(|| {
        ServerError::new(ErrorCode::NotFound, format!("transaction {tid} not found"))
    })?;
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let rx = s.live.watch(&s, who, initial);
    let keep_alive = Duration::from_secs(s.cfg.events_keepalive_secs.max(1));
    Ok(Sse::new(live::events(rx, last_seen)).keep_alive(KeepAlive::new().interval(keep_alive)))
}
