//! The policy role's RPCs onto a [`PolicyRunner`] (operators are checked by the server; `explain`
//! is any user's, within their scope):
//!
//! | key | payload | answer |
//! |---|---|---|
//! | `policy.dry-run` | `Policy` | [`RpcReply::Pass`]: what a pass would do; changes nothing |
//! | `policy.run` | `Policy` | [`RpcReply::PassStarted`] at once; the pass runs in the background. Refused (409) while a pass runs here or another runner holds the lease |
//! | `policy.status` | `PolicyStatus { passes }` | [`RpcReply::PolicyStatus`] |
//! | `policy.reload` | `Policy` | [`RpcReply::Reloaded`] (see [`super::reload`]) |
//! | `policy.reset` | `Policy` | [`RpcReply::PolicyStatus`], the breaker closed |
//! | `policy.explain` | `Explain { filter, path }` | [`RpcReply::Explained`] (see [`super::explain`]) |

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::error::ApiError;
use nlds_core::message::RpcReply;
use nlds_core::policy::PassKind;
use nlds_core::{Action, Envelope, ErrorCode, Payload, RoutingKey, Worker};
use nlds_settings::Settings;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::reload::Reloader;
use super::{PolicyRunner, RunnerError, lease};
use crate::db::policy_pass;

/// Past passes `policy.status` answers at most.
const MAX_PASSES: u32 = 1000;
/// How long `policy.run` waits for its pass to be recorded before it answers.
const START_WAIT: Duration = Duration::from_secs(20);

/// The policy role's handler.
pub struct PolicyRpc {
    pub runner: Arc<PolicyRunner>,
    reloader: Arc<Reloader>,
}

impl PolicyRpc {
    /// The handler of `runner`; reloads read `Settings` built in code (their `[policy] file`,
    /// if any): see [`PolicyRpc::with_settings`].
    pub fn new(runner: Arc<PolicyRunner>) -> Self {
        let reloader = Arc::new(Reloader::new(Settings {
            policy: runner.config().clone(),
            ..Settings::default()
        }));
        Self { runner, reloader }
    }

    /// Reloads read `settings` again from where they came from (file, environment, flags).
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.reloader = Arc::new(Reloader::new(settings));
        self
    }

    async fn dispatch(&self, key: RoutingKey, env: &Envelope) -> Result<RpcReply, ApiError> {
        let r = &self.runner;
        let runner_err = |e: RunnerError| e.to_api();
        match (key.worker, key.action, &env.payload) {
            (Worker::Policy, Action::DryRun, Payload::Policy) => Ok(RpcReply::Pass(
                r.pass(PassKind::DryRun).await.map_err(runner_err)?,
            )),
            (Worker::Policy, Action::Run, Payload::Policy) => Ok(RpcReply::PassStarted {
                id: self.start().await?,
            }),
            (Worker::Policy, Action::Status, Payload::PolicyStatus { passes }) => {
                let n = (*passes).min(MAX_PASSES) as usize;
                Ok(RpcReply::PolicyStatus(
                    r.status(n).await.map_err(runner_err)?,
                ))
            }
            (Worker::Policy, Action::Reload, Payload::Policy) => {
                let why = format!("nlds admin policy reload by {}", env.user);
                Ok(RpcReply::Reloaded(self.reloader.reload(r, &why).await))
            }
            (Worker::Policy, Action::Reset, Payload::Policy) => {
                r.reset_breaker().await.map_err(runner_err)?;
                tracing::info!(user = %env.user, "policy circuit breaker reset");
                Ok(RpcReply::PolicyStatus(
                    r.status(10).await.map_err(runner_err)?,
                ))
            }
            (Worker::Policy, Action::Explain, Payload::Explain { filter, path }) => Ok(
                RpcReply::Explained(super::explain::explain(r, env, filter, path).await?),
            ),
            _ => Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "{key} with a {} payload is not a policy request",
                    payload_name(&env.payload)
                ),
            )),
        }
    }

    /// Starts a manual pass in the background; answers its id once it is recorded. Refuses while
    /// a pass runs in this process or another runner holds the lease (the pass would wait, or
    /// fail, instead of starting now).
    async fn start(&self) -> Result<i64, ApiError> {
        let r = self.runner.clone();
        if r.running.try_lock().is_err() {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "a policy pass is running now: follow it with `nlds admin policy status` and \
                 start another when it has ended",
            ));
        }
        let now = Utc::now();
        if let Some(l) = lease::read(&r.db)
            .await
            .map_err(|e| RunnerError::from(e).to_api())?
            && l.holder != r.holder()
            && l.until > now
        {
            return Err(RunnerError::LeaseHeld {
                holder: l.holder,
                until: l.until,
            }
            .to_api());
        }
        let since = now - chrono::Duration::seconds(1);
        let mut pass = tokio::spawn({
            let r = r.clone();
            async move { r.pass(PassKind::Manual).await }
        });
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            tokio::select! {
                done = &mut pass => {
                    return match done {
                        Ok(Ok(report)) => Ok(report.id),
                        Ok(Err(e)) => Err(e.to_api()),
                        Err(e) => Err(ApiError::new(ErrorCode::Internal, format!("the policy pass crashed: {e}"))),
                    };
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    let row = policy_pass::Entity::find()
                        .filter(policy_pass::Column::Kind.eq(PassKind::Manual.to_string()))
                        .filter(policy_pass::Column::Started.gte(since))
                        .order_by_desc(policy_pass::Column::Id)
                        .one(&r.db)
                        .await
                        .map_err(|e| RunnerError::from(e).to_api())?;
                    if let Some(row) = row {
                        tracing::info!(pass_id = row.id, "manual policy pass started");
                        // The pass goes on in the background (the handle is dropped, not the task).
                        return Ok(row.id);
                    }
                    if tokio::time::Instant::now() > deadline {
                        return Err(ApiError::new(
                            ErrorCode::Timeout,
                            "the policy pass did not start within 20 s; it may still start: see `nlds admin policy status`",
                        ));
                    }
                }
            }
        }
    }
}

fn payload_name(p: &Payload) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

#[async_trait]
impl Handler for PolicyRpc {
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
