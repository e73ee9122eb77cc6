//! The storage-audit role's RPCs (operators only, checked by the server):
//!
//! | key | payload | answer |
//! |---|---|---|
//! | `storage-audit.run` | `StorageAudit(AuditRequest)` | [`RpcReply::AuditStarted`] at once; the run goes on in the background. Refused (409) while another runs |
//! | `storage-audit.status` | `StorageAuditRuns { runs }` | [`RpcReply::AuditRuns`], newest first |
//! | `storage-audit.purge` | `PurgeQuarantine { before }` | [`RpcReply::QuarantinePurged`] |

use std::sync::Arc;

use async_trait::async_trait;
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::error::ApiError;
use nlds_core::message::RpcReply;
use nlds_core::storage_audit::AuditRuns;
use nlds_core::{Action, Envelope, ErrorCode, Payload, RoutingKey, Worker};

use super::runner::{AuditRunner, OPERATOR};
use super::store;

/// Runs a storage-audit request answers at most.
const MAX_RUNS: u32 = 100;

/// The storage-audit role's handler.
pub struct StorageAuditRpc {
    runner: Arc<AuditRunner>,
}

impl StorageAuditRpc {
    pub fn new(runner: Arc<AuditRunner>) -> Self {
        Self { runner }
    }

    async fn dispatch(&self, key: RoutingKey, env: &Envelope) -> Result<RpcReply, ApiError> {
        match (key.worker, key.action, &env.payload) {
            (Worker::StorageAudit, Action::Run, Payload::StorageAudit(req)) => {
                if !req.warm && !req.cold {
                    return Err(ApiError::bad_request(
                        "a storage audit needs a tier: warm, cold or all",
                    ));
                }
                if req.sample == Some(0) {
                    return Err(ApiError::bad_request(
                        "a scrub sample must be at least 1 (or all)",
                    ));
                }
                tracing::info!(user = %env.user, ?req, "storage audit asked for");
                let id = self.runner.start(OPERATOR, req.clone(), false).await?;
                Ok(RpcReply::AuditStarted {
                    id: id.expect("started unconditionally"),
                })
            }
            (Worker::StorageAudit, Action::Status, Payload::StorageAuditRuns { runs }) => {
                let runs =
                    store::recent(&self.runner.audit.db, u64::from((*runs).clamp(1, MAX_RUNS)))
                        .await
                        .map_err(|e| {
                            ApiError::new(ErrorCode::Internal, format!("storage audit runs: {e}"))
                        })?;
                Ok(RpcReply::AuditRuns(AuditRuns { runs }))
            }
            (Worker::StorageAudit, Action::Purge, Payload::PurgeQuarantine { before }) => {
                tracing::info!(user = %env.user, ?before, "quarantine purge asked for");
                let purged = self
                    .runner
                    .audit
                    .purge_quarantine(*before)
                    .await
                    .map_err(|e| ApiError::new(ErrorCode::StorageError, e.to_string()))?;
                Ok(RpcReply::QuarantinePurged(purged))
            }
            _ => Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("{key} is not a storage-audit request"),
            )),
        }
    }
}

#[async_trait]
impl Handler for StorageAuditRpc {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let answer = match self.dispatch(key, &env).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::info!(%key, user = %env.user, code = %e.code, "{}", e.message);
                RpcReply::Error(e)
            }
        };
        Ok(Outcome::reply(env.reply(Payload::Reply(answer))))
    }
}
