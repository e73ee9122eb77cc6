//! `GET /status` (an HTML page) and `GET /api/v2/status` (JSON): the health of the deployment
//! (`nlds_core::system_status` says who sees what).
//!
//! Roles are alive from heartbeats, not pings: every worker process sends one every
//! `[workers] heartbeat_secs` over the bus (`nlds_core::heartbeat`), this process keeps the
//! latest of each ([`watch`], started with the router), and a role with no process heard from
//! within `MISSED_BEATS` intervals (timed by this process's clock, so hosts' clocks do not
//! matter) is down. A role never heard of since this process started watching is unknown until
//! that timeout has passed. The broker is asked by this process; the database, object store and
//! cold store are what the live processes' own readiness checks last said. Nothing here fans
//! out to the workers per request: only operators' pages ask the broker for queue figures and
//! the monitor, catalogue and policy for failures, usage and the runner, each answer reused for
//! a few seconds.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use nlds_bus::Bus;
use nlds_core::admin::{AdminAnswer, AdminQuery, AdminTransactionFilter};
use nlds_core::heartbeat::{Heartbeat, MISSED_BEATS};
use nlds_core::message::RpcReply;
use nlds_core::system_status::{
    ComponentStatus, FailedTransaction, Health, LastPass, PolicySummary, ProcessStatus,
    RecentFailures, RoleStatus, SystemStatus,
};
use nlds_core::{AccessRole, Action, Payload, Role, RoutingKey, Worker};
use uuid::Uuid;

use crate::auth::{Checked, Identity};
use crate::state::AppState;

/// The heartbeat interval assumed before any process was heard of (`[workers] heartbeat_secs`'s
/// default).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// How long the broker's figures and the workers' answers are reused.
const CACHE: Duration = Duration::from_secs(5);

/// How long an operator's page waits for the monitor, the catalogue and the policy.
const ASK_LIMIT: Duration = Duration::from_secs(3);

/// The latest heartbeat of each process this server heard of, with when it came.
struct Registry {
    since: Instant,
    processes: Mutex<HashMap<Uuid, (Instant, Heartbeat)>>,
    broker: Mutex<Option<(Instant, Result<(), String>)>>,
    queues: tokio::sync::Mutex<Option<(Instant, Vec<QueueFigures>)>>,
}

#[derive(Debug, Clone, Default)]
struct QueueFigures {
    depth: Option<u64>,
    consumers: Option<u32>,
    dead: Option<u64>,
}

/// One registry per bus (an address: tests run several servers in one process).
static REGISTRIES: LazyLock<Mutex<HashMap<usize, Arc<Registry>>>> = LazyLock::new(Default::default);

fn registry(bus: &Arc<dyn Bus>) -> Arc<Registry> {
    let key = Arc::as_ptr(bus).cast::<()>() as usize;
    let mut all = REGISTRIES.lock().expect("status registries");
    if let Some(r) = all.get(&key) {
        return r.clone();
    }
    let r = Arc::new(Registry {
        since: Instant::now(),
        processes: Mutex::new(HashMap::new()),
        broker: Mutex::new(None),
        queues: tokio::sync::Mutex::new(None),
    });
    all.insert(key, r.clone());
    let (bus, reg) = (bus.clone(), Arc::downgrade(&r));
    tokio::spawn(async move {
        let mut rx = match bus.heartbeats().await {
            Ok(Some(rx)) => rx,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "status page: cannot follow heartbeats");
                return;
            }
        };
        drop(bus);
        loop {
            let hb = match rx.recv().await {
                Ok(hb) => hb,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let Some(reg) = reg.upgrade() else { return };
            let mut p = reg.processes.lock().expect("heartbeats");
            // Forget processes gone for long (restarted ones come back under a new instance).
            p.retain(|_, (at, h)| at.elapsed() < timeout_of(h) * 10);
            p.insert(hb.instance, (Instant::now(), hb));
        }
    });
    r
}

/// Starts following the heartbeats on `bus` (the router does, so the page knows the processes
/// from the start).
pub fn watch(bus: &Arc<dyn Bus>) {
    if tokio::runtime::Handle::try_current().is_ok() {
        registry(bus);
    }
}

fn timeout_of(hb: &Heartbeat) -> Duration {
    Duration::from_secs(hb.interval_secs.max(1)) * MISSED_BEATS
}

impl Registry {
    /// The live processes' heartbeats, and the timeout of the slowest beating process heard of.
    fn live(&self) -> (Vec<Heartbeat>, Duration) {
        let p = self.processes.lock().expect("heartbeats");
        let timeout = p
            .values()
            .map(|(_, h)| timeout_of(h))
            .max()
            .unwrap_or(DEFAULT_INTERVAL * MISSED_BEATS);
        let mut live: Vec<Heartbeat> = p
            .values()
            .filter(|(at, h)| at.elapsed() < timeout_of(h))
            .map(|(_, h)| h.clone())
            .collect();
        live.sort_by(|a, b| (&a.host, a.pid).cmp(&(&b.host, b.pid)));
        (live, timeout)
    }

    async fn broker(&self, bus: &dyn Bus) -> Result<(), String> {
        if let Some((at, r)) = self.broker.lock().expect("broker").as_ref()
            && at.elapsed() < CACHE
        {
            return r.clone();
        }
        let r = match tokio::time::timeout(ASK_LIMIT, bus.ready()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("the broker did not answer".into()),
        };
        *self.broker.lock().expect("broker") = Some((Instant::now(), r.clone()));
        r
    }

    async fn queues(&self, bus: &dyn Bus) -> Vec<QueueFigures> {
        let mut last = self.queues.lock().await;
        if let Some((at, q)) = last.as_ref()
            && at.elapsed() < CACHE
        {
            return q.clone();
        }
        let mut out = Vec::new();
        for &role in Role::ALL {
            // One read of the counts where the bus has them (the metrics read the same).
            let d = bus.queue_depth(role).await.ok().flatten();
            let consumers = match d {
                Some(d) => Some(d.consumers),
                None => bus.consumers(role).await.ok(),
            };
            let dead = match d.and_then(|d| d.dead) {
                Some(n) => Some(n),
                None => bus.dead_letters(role).await.ok().flatten(),
            };
            out.push(QueueFigures {
                depth: d.map(|d| d.messages),
                consumers,
                dead,
            });
        }
        *last = Some((Instant::now(), out.clone()));
        out
    }
}

/// The caller, if their bearer token is an operator's.
async fn operator(s: &AppState, headers: &HeaderMap) -> Option<Identity> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .or_else(|| {
            headers
                .get(axum::http::header::AUTHORIZATION)?
                .to_str()
                .ok()?
                .strip_prefix("bearer ")
        })?
        .trim()
        .to_owned();
    match s.auth.check(&token).await {
        Checked::Valid(id) if id.admin => Some(id),
        _ => None,
    }
}

/// The status as `who` may see it.
pub async fn status(s: &AppState, who: Option<&Identity>) -> SystemStatus {
    let reg = registry(&s.bus);
    let (live, timeout) = reg.live();
    let warming = reg.since.elapsed() < timeout;
    let detailed = who.is_some();
    let queues = if detailed {
        reg.queues(s.bus.as_ref()).await
    } else {
        Vec::new()
    };
    let roles: Vec<RoleStatus> = Role::ALL
        .iter()
        .enumerate()
        .map(|(i, role)| {
            let procs: Vec<&Heartbeat> = live
                .iter()
                .filter(|h| h.roles.iter().any(|r| r == role.as_str()))
                .collect();
            let health = if !procs.is_empty() {
                Health::Up
            } else if warming {
                Health::Unknown
            } else {
                Health::Down
            };
            let q = queues.get(i).cloned().unwrap_or_default();
            RoleStatus {
                role: role.as_str().to_owned(),
                health,
                drained: procs
                    .iter()
                    .any(|h| h.drained.iter().any(|r| r == role.as_str())),
                processes: detailed.then(|| {
                    procs
                        .iter()
                        .map(|h| ProcessStatus {
                            instance: h.instance,
                            host: h.host.clone(),
                            pid: h.pid,
                            started: h.started,
                            last_seen: h.sent,
                        })
                        .collect()
                }),
                queue_depth: q.depth,
                consumers: q.consumers,
                dead_letters: q.dead,
            }
        })
        .collect();
    let mut components = vec![{
        let r = reg.broker(s.bus.as_ref()).await;
        ComponentStatus {
            name: "broker".into(),
            health: if r.is_ok() { Health::Up } else { Health::Down },
            detail: detailed.then(|| r.err().unwrap_or_else(|| "ok".into())),
        }
    }];
    for name in ["database", "object_store", "cold_store"] {
        components.push(component(name, &live, detailed));
    }
    let overall = if roles.iter().all(|r| r.health == Health::Up)
        && components
            .iter()
            .all(|c| c.health == Health::Up || (c.name == "cold_store" && c.health != Health::Down))
    {
        Health::Up
    } else if roles.iter().any(|r| r.health == Health::Down)
        || components.iter().any(|c| c.health == Health::Down)
    {
        Health::Down
    } else {
        Health::Unknown
    };
    let (recent_failures, tier_usage, policy) = match who {
        Some(id) => tokio::join!(
            recent_failures(s, id),
            tier_usage(s, id),
            policy_summary(s, id)
        ),
        None => (None, None, None),
    };
    SystemStatus {
        generated: Utc::now(),
        overall,
        heartbeat_timeout_secs: timeout.as_secs(),
        roles,
        components,
        detailed,
        recent_failures,
        tier_usage,
        policy,
    }
}

/// A backend, from the live processes' last checks of it.
fn component(name: &str, live: &[Heartbeat], detailed: bool) -> ComponentStatus {
    let checks: Vec<(&Heartbeat, &String)> = live
        .iter()
        .filter_map(|h| h.checks.get(name).map(|c| (h, c)))
        .collect();
    let failed: Vec<String> = checks
        .iter()
        .filter(|(_, c)| c.as_str() != "ok")
        .map(|(h, c)| format!("{} (pid {}): {c}", h.host, h.pid))
        .collect();
    let health = if checks.is_empty() {
        Health::Unknown
    } else if failed.is_empty() {
        Health::Up
    } else {
        Health::Down
    };
    let detail = if checks.is_empty() {
        "no live process checks it".to_owned()
    } else if failed.is_empty() {
        format!("ok for the {} live processes that use it", checks.len())
    } else {
        failed.join("; ")
    };
    ComponentStatus {
        name: name.to_owned(),
        health,
        detail: detailed.then_some(detail),
    }
}

/// An RPC on an operator's behalf, given up after [`ASK_LIMIT`].
async fn ask(s: &AppState, id: &Identity, key: RoutingKey, payload: Payload) -> Option<RpcReply> {
    let group = id.groups.first().cloned().unwrap_or_default();
    let env = crate::routes::rpc_env_role(&id.user, &group, AccessRole::Admin, payload);
    s.rpc_within(key, env, ASK_LIMIT).await.ok()
}

async fn recent_failures(s: &AppState, id: &Identity) -> Option<RecentFailures> {
    let filter = AdminTransactionFilter {
        states: vec![nlds_core::State::Failed],
        created_after: Some(Utc::now() - chrono::Duration::hours(24)),
        limit: 10,
        descending: true,
        ..Default::default()
    };
    let key = RoutingKey::new(Worker::Monitor, Action::Admin);
    match ask(s, id, key, Payload::Admin(AdminQuery::Transactions(filter))).await? {
        RpcReply::Admin(AdminAnswer::Transactions(page)) => Some(RecentFailures {
            total: page.total,
            transactions: page
                .transactions
                .into_iter()
                .map(|t| FailedTransaction {
                    transaction_id: t.transaction_id,
                    user: t.user,
                    api_action: t.api_action.to_string(),
                    created: t.created,
                    files_failed: t.files_failed,
                })
                .collect(),
        }),
        _ => None,
    }
}

async fn tier_usage(s: &AppState, id: &Identity) -> Option<nlds_core::quota::Usage> {
    let key = RoutingKey::new(Worker::Catalog, Action::Quota);
    match ask(s, id, key, Payload::QuotaShow { groups: None }).await? {
        RpcReply::Quota(report) => {
            let mut total = nlds_core::quota::Usage::default();
            for g in report.groups {
                for (sum, add) in [
                    (&mut total.warm, g.usage.warm),
                    (&mut total.cold, g.usage.cold),
                    (&mut total.all, g.usage.all),
                ] {
                    sum.bytes += add.bytes;
                    sum.files += add.files;
                }
            }
            Some(total)
        }
        _ => None,
    }
}

async fn policy_summary(s: &AppState, id: &Identity) -> Option<PolicySummary> {
    let key = RoutingKey::new(Worker::Policy, Action::Status);
    match ask(s, id, key, Payload::PolicyStatus { passes: 1 }).await? {
        RpcReply::PolicyStatus(p) => Some(PolicySummary {
            enabled: p.enabled,
            breaker: p.breaker,
            next_pass: p.next_pass,
            last_pass: p.passes.into_iter().next().map(|pass| LastPass {
                outcome: pass.outcome.to_string(),
                ended: pass.ended,
                archived_bytes: pass.archived_bytes,
                evicted_bytes: pass.evicted_bytes,
            }),
        }),
        _ => None,
    }
}

/// `GET /api/v2/status`: the health of every role and backend; an operator's token adds the
/// detail (see `nlds_core::system_status`).
#[utoipa::path(get, path = "/api/v2/status", tag = "status",
    responses((status = 200, body = SystemStatus, description = "the deployment's health (in detail for an operator)")))]
pub async fn status_json(State(s): State<AppState>, headers: HeaderMap) -> Json<SystemStatus> {
    let who = operator(&s, &headers).await;
    Json(status(&s, who.as_ref()).await)
}

/// `GET /status`: the same as an HTML page (refreshing itself every 10 s).
#[utoipa::path(get, path = "/status", tag = "status",
    responses((status = 200, description = "the deployment's health as an HTML page", content_type = "text/html")))]
pub async fn status_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let who = operator(&s, &headers).await;
    Html(crate::status_html::render(&status(&s, who.as_ref()).await)).into_response()
}
