//! The axum application: state, extractors (authentication, JSON and query with our error
//! envelope) and the router.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::routing::{get, post};
use nlds_bus::Bus;
use nlds_core::error::ApiError;
use nlds_core::message::RpcReply;
use nlds_core::{Envelope, ErrorCode, Payload, RoutingKey};
use serde::de::DeserializeOwned;

use crate::auth::{Authenticator, Checked, Identity};
use crate::config::ServerConfig;
use crate::error::{Result, ServerError};
use crate::routes;

/// Shared state of every request.
#[derive(Clone)]
pub struct AppState {
    pub bus: Arc<dyn Bus>,
    pub auth: Arc<dyn Authenticator>,
    pub cfg: Arc<ServerConfig>,
}

impl AppState {
    /// Sends an RPC and unwraps its typed reply (an error reply becomes the API error).
    pub async fn rpc(&self, key: RoutingKey, env: Envelope) -> Result<RpcReply> {
        let timeout = Duration::from_secs(self.cfg.rpc_timeout_secs.max(1));
        crate::audit::observe_request(key, &env);
        let reply = self.bus.rpc(key, &env, timeout).await?;
        if let Payload::Reply(r) = &reply.payload {
            crate::audit::observe_reply(r);
        }
        match reply.payload {
            Payload::Reply(RpcReply::Error(e)) => Err(e.into()),
            Payload::Reply(r) => Ok(r),
            _ => Err(ServerError::new(
                ErrorCode::Internal,
                format!("{key} answered without a reply"),
            )),
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl Caller {
    /// The group to act in: the one asked for (which the caller must belong to), else their first.
    pub fn group(&self, requested: Option<&str>) -> Result<String> {
        match requested.map(str::trim).filter(|g| !g.is_empty()) {
            // Operators (ADMIN) act in every group, member or not.
            Some(g) if self.0.admin || self.0.groups.iter().any(|x| x == g) => Ok(g.to_owned()),
            Some(g) => Err(ServerError::new(
                ErrorCode::Forbidden,
                format!("user {} is not a member of group {g}", self.0.user),
            )),
            None => self.0.groups.first().cloned().ok_or_else(|| {
                ServerError::new(
                    ErrorCode::Forbidden,
                    format!("user {} has no group", self.0.user),
                )
            }),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| {
                ServerError::new(
                    ErrorCode::Unauthorized,
                    "missing bearer token: send the header 'Authorization: Bearer <token>'",
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ServerError::new(
                    ErrorCode::Unauthorized,
                    "the Authorization header is not 'Bearer <token>'",
                )
            })?;
        match state.auth.check(token).await {
            Checked::Valid(id) => {
                crate::audit::identify(&id);
                Ok(Caller(id))
            }
            Checked::Refused => Err(ServerError::new(
                ErrorCode::Unauthorized,
                "invalid or expired token",
            )),
            // The reason (which names the provider's URL) is in the server log, not the answer.
            Checked::Unavailable(_) => Err(ServerError::new(
                ErrorCode::Unavailable,
                "the identity provider is unavailable; try again later",
            )),
        }
    }
}

/// `Json` whose rejections use our error envelope.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ServerError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ServerError {
    let code = if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ErrorCode::PayloadTooLarge
    } else {
        ErrorCode::BadRequest
    };
    ServerError::new(code, format!("invalid JSON body: {}", e.body_text()))
}

/// `Query` whose rejections use our error envelope.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ServerError {
    ServerError::bad_request(format!("invalid query string: {}", e.body_text()))
}

async fn not_found() -> ServerError {
    ServerError(ApiError::not_found(
        "no such endpoint; see /api/v2/openapi.json",
    ))
}

/// The whole HTTP application.
/// Sets TCP_NODELAY on an accepted API connection (`axum::serve(listener.tap_io(nodelay), ..)`):
/// small replies must not wait for the client's delayed ACK.
pub fn nodelay(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}

pub fn router(state: AppState) -> Router {
    let limit = state.cfg.max_body_bytes;
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/api/v2/openapi.json", get(crate::openapi::serve))
        .route("/api/v2/whoami", get(routes::whoami))
        .route("/api/v2/admin/archive", post(routes::admin_archive))
        .route("/api/v2/admin/evict", post(routes::admin_evict))
        .route(
            "/api/v2/admin/transactions",
            get(crate::admin::transactions),
        )
        .route(
            "/api/v2/admin/transactions/{transaction_id}/failed",
            get(crate::admin::failed_files),
        )
        .route("/api/v2/admin/logs", get(crate::admin::logs))
        .route("/api/v2/admin/audit", get(crate::admin::audit))
        .route("/api/v2/delete", post(crate::delete::delete))
        .route("/api/v2/undelete", post(crate::delete::undelete))
        .route("/api/v2/admin/purge", post(crate::delete::admin_purge))
        .route("/api/v2/put", post(routes::put))
        .route("/api/v2/get", post(routes::get))
        .route("/api/v2/holdings", get(routes::list))
        .route("/api/v2/files", get(routes::find))
        .route("/api/v2/meta", post(routes::meta))
        .route("/api/v2/transactions", get(routes::stat))
        .route(
            "/api/v2/transactions/{transaction_id}",
            get(routes::transaction),
        )
        .merge(crate::legacy::router())
        .fallback(not_found)
        // Every request of both APIs: its audit record (changes carried out, refusals).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::audit::middleware,
        ))
        .layer(DefaultBodyLimit::max(limit))
        // The span names the path only: a query string may hold a legacy client's
        // `secret_key`, which must never reach a log.
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<axum::body::Body>| {
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                    )
                },
            ),
        )
        .with_state(state)
}

#[cfg(test)]
mod caller_tests {
    use super::*;

    #[test]
    fn members_act_in_their_groups_and_operators_in_any() {
        let alice = Caller(Identity::user(
            "alice",
            vec!["climate".into(), "ocean".into()],
        ));
        assert_eq!(alice.group(None).unwrap(), "climate");
        assert_eq!(alice.group(Some(" ocean ")).unwrap(), "ocean");
        let err = alice.group(Some("ice")).unwrap_err().0;
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(
            err.message.contains("alice is not a member of group ice"),
            "{err:?}"
        );
        let mut op = Identity::user("op", vec!["nlds-admin".into()]);
        op.admin = true;
        assert_eq!(Caller(op).group(Some("ice")).unwrap(), "ice");
    }
}
