//! Draining: this process's view of the drained roles ([`Drained`]) and the consume loop that
//! honours it ([`Drained::consume`]).
//!
//! A role drained by an operator (`nlds admin drain ROLE`, recorded by the monitor:
//! `monitor/drains.rs`) stops consuming in every process that runs it: the consumer stops taking
//! deliveries and lets those in hand finish, exactly as at shutdown (within `[bus]
//! shutdown_grace_secs`; what is still in hand then goes back to the queue). Messages for the role
//! wait in its queue. When the role is resumed, the process consumes it again.
//!
//! A process learns the drained roles by asking the monitor (`monitor.admin`, a list): when it
//! starts, before it consumes a drainable role (at most [`FIRST_ASK_LIMIT`]: if the monitor does
//! not answer by then, it consumes, and stops as soon as an answer says the role is drained),
//! on every announcement that the drains changed ([`nlds_core::Change::drains`]), and every
//! heartbeat interval in case it missed an announcement (they are not stored).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use nlds_bus::{Bus, BusError, ConsumeOptions, Handler};
use nlds_core::access::AccessRole;
use nlds_core::admin::{AdminAnswer, AdminQuery};
use nlds_core::api::ApiAction;
use nlds_core::drain::{DrainRequest, Drains, check_drainable};
use nlds_core::message::RpcReply;
use nlds_core::{Action, Envelope, Payload, Role, RoutingKey, Worker};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a starting process waits for the monitor to say which roles are drained before it
/// consumes anyway.
pub const FIRST_ASK_LIMIT: Duration = Duration::from_secs(10);

/// How long one ask waits for the monitor's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The drained roles as this process knows them (`None`: not known yet).
#[derive(Debug)]
pub struct Drained {
    known: watch::Sender<Option<BTreeSet<Role>>>,
}

impl Default for Drained {
    fn default() -> Self {
        Self {
            known: watch::channel(None).0,
        }
    }
}

impl Drained {
    /// Records the drains `d` (as the monitor answered them).
    pub fn set(&self, d: &Drains) {
        let roles: BTreeSet<Role> = d.drained.iter().filter_map(|r| r.role()).collect();
        self.known.send_if_modified(|known| {
            if known.as_ref() == Some(&roles) {
                return false;
            }
            *known = Some(roles);
            true
        });
    }

    /// Whether `role` is drained, as far as this process knows.
    pub fn contains(&self, role: Role) -> bool {
        self.known
            .borrow()
            .as_ref()
            .is_some_and(|r| r.contains(&role))
    }

    /// Which of `roles` are drained, as far as this process knows (for its heartbeat).
    pub fn of(&self, roles: &[Role]) -> Vec<Role> {
        roles
            .iter()
            .copied()
            .filter(|&r| self.contains(r))
            .collect()
    }

    /// Asks the monitor which roles are drained now. Not while `monitor-rpc` has no consumer:
    /// every process asks now and then, and during a monitor restart the asks would wait in its
    /// queue only to be dropped unanswered when it is back (their callers gave up; the bus's
    /// RPC deadline).
    pub async fn ask(bus: &dyn Bus) -> Result<Drains, String> {
        if bus
            .consumers(Role::MonitorRpc)
            .await
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("monitor-rpc has no consumer now".into());
        }
        let env = Envelope::new(
            Uuid::new_v4(),
            "nlds",
            "nlds",
            ApiAction::Get,
            "drain",
            Payload::Admin(AdminQuery::Drains(DrainRequest::List)),
        )
        .with_role(AccessRole::Admin);
        let key = RoutingKey::new(Worker::Monitor, Action::Admin);
        match bus.rpc(key, &env, ASK_TIMEOUT).await {
            Ok(Envelope {
                payload: Payload::Reply(RpcReply::Admin(AdminAnswer::Drains(d))),
                ..
            }) => Ok(d),
            Ok(Envelope {
                payload: Payload::Reply(RpcReply::Error(e)),
                ..
            }) => Err(e.message),
            Ok(other) => Err(format!("unexpected answer to {key}: {:?}", other.payload)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Keeps this process's view up to date until `stop`: asks at once, on every announcement
    /// that the drains changed, and every `every`.
    pub async fn follow(
        self: Arc<Self>,
        bus: Arc<dyn Bus>,
        every: Duration,
        stop: CancellationToken,
    ) {
        let mut changes = match bus.changes().await {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!("cannot follow drain announcements ({e}); asking every {every:?}");
                None
            }
        };
        let every = every.max(Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first_retry = Duration::from_millis(250);
        loop {
            match Self::ask(bus.as_ref()).await {
                Ok(d) => self.set(&d),
                Err(e) => tracing::debug!("cannot ask which roles are drained: {e}"),
            }
            // Until the first answer, ask again soon (backing off to the tick).
            let retry_soon = self.known.borrow().is_none();
            let soon = first_retry;
            first_retry = (first_retry * 2).min(every);
            let next = async {
                if retry_soon {
                    tokio::time::sleep(soon).await;
                    return;
                }
                match &mut changes {
                    Some(rx) => loop {
                        tokio::select! {
                            _ = tick.tick() => return,
                            c = rx.recv() => match c {
                                Ok(c) if c.drains => return,
                                Ok(_) => {}
                                Err(RecvError::Lagged(_)) => return,
                                Err(RecvError::Closed) => {
                                    tick.tick().await;
                                    return;
                                }
                            },
                        }
                    },
                    None => {
                        tick.tick().await;
                    }
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                () = next => {}
            }
        }
    }

    /// Consumes `role`'s queue with `handler` until `shutdown`, except while the role is
    /// drained: then the consumer stops as at shutdown (the deliveries in hand finish within the
    /// grace) and starts again when the role is resumed.
    pub async fn consume(
        self: Arc<Self>,
        bus: Arc<dyn Bus>,
        role: Role,
        handler: Arc<dyn Handler>,
        options: ConsumeOptions,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        if check_drainable(role).is_err() {
            return bus.consume(role, handler, options, shutdown).await;
        }
        let mut known = self.known.subscribe();
        // Ask first: a drained role's restarted process must not take work.
        let first = tokio::time::timeout(FIRST_ASK_LIMIT, known.wait_for(Option::is_some));
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = first => if r.is_err() {
                tracing::warn!(%role, limit = ?FIRST_ASK_LIMIT,
                    "the monitor did not say which roles are drained; consuming (a drain stops this role as soon as it is heard)");
            },
        }
        loop {
            if self.contains(role) {
                tracing::warn!(%role, "role drained: not taking work until it is resumed");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = known.wait_for(|k| !k.as_ref().is_some_and(|k| k.contains(&role))) => {}
                }
                tracing::info!(%role, "role resumed: taking work again");
                continue;
            }
            let stop = shutdown.child_token();
            let drained = {
                let (mut known, stop) = (known.clone(), stop.clone());
                tokio::spawn(async move {
                    if known
                        .wait_for(|k| k.as_ref().is_some_and(|k| k.contains(&role)))
                        .await
                        .is_ok()
                    {
                        stop.cancel();
                    }
                })
            };
            let consumed = bus
                .consume(role, handler.clone(), options.clone(), stop)
                .await;
            drained.abort();
            consumed?;
            if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use nlds_core::drain::RoleDrain;

    fn drains(roles: &[Role]) -> Drains {
        Drains {
            drained: roles
                .iter()
                .map(|r| RoleDrain {
                    role: r.as_str().into(),
                    since: Utc::now(),
                    by: "op".into(),
                    reason: None,
                })
                .collect(),
        }
    }

    #[test]
    fn nothing_is_drained_until_known_and_then_what_was_said() {
        let d = Drained::default();
        assert!(!d.contains(Role::Indexer));
        d.set(&drains(&[Role::Indexer, Role::TransferPut]));
        assert!(d.contains(Role::Indexer));
        assert_eq!(
            d.of(&[Role::Router, Role::TransferPut]),
            vec![Role::TransferPut]
        );
        d.set(&drains(&[]));
        assert!(!d.contains(Role::Indexer));
    }
}
