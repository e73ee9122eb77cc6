//! The state every request handler shares: the bus (and the RPCs over it), the authenticator and
//! the server's settings.

use std::sync::Arc;
use std::time::Duration;

use nlds_bus::Bus;
use nlds_core::message::RpcReply;
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
