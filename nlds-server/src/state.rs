//! The state every request handler shares: the bus (and the RPCs over it), the authenticator and
//! the server's settings.

use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use nlds_bus::{Bus, RpcAnswer};
use nlds_core::message::RpcReply;
use nlds_core::raw_page::{PageKind, RawPage};
use nlds_core::{Envelope, ErrorCode, Payload, RoutingKey};

use crate::auth::Authenticator;
use crate::config::ServerConfig;
use crate::error::{Result, ServerError};

/// Shared state of every request.
#[derive(Clone)]
pub struct AppState {
    pub bus: Arc<dyn Bus>,
    pub auth: Arc<dyn Authenticator>,
    pub cfg: Arc<ServerConfig>,
    /// The transactions followed for live status ([`crate::live`]).
    pub live: Arc<crate::live::Live>,
    /// The key users' webhook secrets are derived from (`[notify] webhook_key_file`): the
    /// server shows a user their secret without it crossing the bus; `None`: webhooks cannot be
    /// set.
    pub webhook_key: Option<nlds_core::notify::WebhookKey>,
}

impl AppState {
    /// Sends an RPC and unwraps its typed reply (an error reply becomes the API error).
    pub async fn rpc(&self, key: RoutingKey, env: Envelope) -> Result<RpcReply> {
        let timeout = Duration::from_secs(self.cfg.rpc_timeout_secs.max(1));
        self.rpc_within(key, env, timeout).await
    }

    /// [`AppState::rpc`] waiting at most `timeout` (a policy dry run takes longer than a query).
    pub async fn rpc_within(
        &self,
        key: RoutingKey,
        env: Envelope,
        timeout: Duration,
    ) -> Result<RpcReply> {
        crate::notes::observe_request(key, &env);
        let reply = self.bus.rpc(key, &env, timeout).await?;
        Self::reply_of(key, reply)
    }

    /// Sends an RPC answered with a page of kind `kind` and returns the page's JSON: as the
    /// worker wrote it, without decoding its items, where the bus delivered bytes (RabbitMQ);
    /// encoded here from the decoded reply otherwise (the in-process bus's values). Any other
    /// reply (an error) is decoded and becomes the API error, as with [`AppState::rpc`].
    pub async fn rpc_page(&self, key: RoutingKey, env: Envelope, kind: PageKind) -> Result<Page> {
        let timeout = Duration::from_secs(self.cfg.rpc_timeout_secs.max(1));
        crate::notes::observe_request(key, &env);
        let reply = match self.bus.rpc_answer(key, &env, timeout).await? {
            RpcAnswer::Encoded(bytes) => {
                if let Some(page) = RawPage::of(&bytes, kind) {
                    crate::notes::observe_total(page.total);
                    return Ok(Page {
                        total: page.total,
                        json: page.to_json(),
                    });
                }
                RpcAnswer::Encoded(bytes).decode()?
            }
            RpcAnswer::Decoded(env) => *env,
        };
        let (total, json) = match (kind, Self::reply_of(key, reply)?) {
            (PageKind::Files, RpcReply::Files(p)) => (p.total, serde_json::to_vec(&p)),
            (PageKind::Holdings, RpcReply::Holdings(p)) => (p.total, serde_json::to_vec(&p)),
            (PageKind::Transactions, RpcReply::Transactions(p)) => {
                (p.total, serde_json::to_vec(&p))
            }
            _ => {
                let text = format!("unexpected reply to {key}");
                return Err(ServerError::new(ErrorCode::Internal, text));
            }
        };
        let json = json.map_err(|e| {
            let text = format!("cannot encode the reply to {key}: {e}");
            ServerError::new(ErrorCode::Internal, text)
        })?;
        Ok(Page { total, json })
    }

    /// The typed reply of an RPC's answer (an error reply becomes the API error).
    fn reply_of(key: RoutingKey, reply: Envelope) -> Result<RpcReply> {
        if let Payload::Reply(r) = &reply.payload {
            crate::notes::observe_reply(r);
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

/// A page an RPC answered with ([`AppState::rpc_page`]): its total and its JSON.
pub struct Page {
    pub total: u64,
    json: Vec<u8>,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            self.json,
        )
            .into_response()
    }
}
