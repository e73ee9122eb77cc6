//! The policy role's RPCs (`policy.run`, `policy.dry-run`, `policy.status`, `policy.reload`,
//! `policy.reset`, `policy.explain`) onto a [`PolicyRunner`]. (Owned by the API surfaces; this
//! is the placeholder the role starts with.)

use std::sync::Arc;

use async_trait::async_trait;
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::error::ApiError;
use nlds_core::message::RpcReply;
use nlds_core::{Envelope, ErrorCode, Payload, RoutingKey};

use super::PolicyRunner;

/// The policy role's handler.
pub struct PolicyRpc {
    pub runner: Arc<PolicyRunner>,
}

impl PolicyRpc {
    pub fn new(runner: Arc<PolicyRunner>) -> Self {
        Self { runner }
    }
}

#[async_trait]
impl Handler for PolicyRpc {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let answer = RpcReply::Error(ApiError::new(
            ErrorCode::BadRequest,
            format!("{key}: the policy role does not answer this yet"),
        ));
        Ok(Outcome::reply(Envelope {
            payload: Payload::Reply(answer),
            ..env
        }))
    }
}
