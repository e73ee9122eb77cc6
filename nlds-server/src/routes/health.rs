//! `/healthz` and `/readyz`: liveness and readiness probes.
//!
//! `/readyz` answers from the [`nlds_bus::health::Readiness`] the router was built with ([`crate::app::router_with`]):
//! by default the bus and the database, which the server (no database of its own in distributed
//! mode) checks by asking the monitor role for a page no transaction is on (an indexed lookup:
//! an answer means a monitor is up and its database answers). The embedded mode adds its object
//! store; each worker process checks its own dependencies on its operations listener
//! (`[workers] ops_listen`). Checks are cached for a few seconds ([`nlds_bus::health`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use nlds_bus::Bus;
use nlds_bus::health::CHECK_TIMEOUT;
use nlds_core::api::{ApiAction, Readiness};
use nlds_core::message::{RpcReply, StatusFilter};
use nlds_core::{Action, Envelope, Payload, RoutingKey, Worker};

use crate::state::AppState;

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the bus, the database (through the monitor) and, in embedded mode, the object
/// store answer.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Readiness, description = "ready: every check is ok"), (status = 503, body = Readiness, description = "not ready: each failing check says why")))]
pub async fn readyz(
    State(s): State<AppState>,
    checks: Option<Extension<nlds_bus::health::Readiness>>,
) -> (StatusCode, Json<Readiness>) {
    let report = match checks {
        Some(Extension(r)) => r.report().await,
        None => default_readiness(&s.bus).report().await,
    };
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}

/// The server's checks: `bus` and `database` (see the module documentation).
pub fn default_readiness(bus: &Arc<dyn Bus>) -> nlds_bus::health::Readiness {
    let monitor = bus.clone();
    nlds_bus::health::Readiness::new()
        .with_bus(bus.clone())
        .with("database", move || {
            database_through_monitor(monitor.clone())
        })
}

/// Asks the monitor for the transactions with the nil id (there are none): it answers only if
/// its database does.
async fn database_through_monitor(bus: Arc<dyn Bus>) -> Result<(), String> {
    let filter = StatusFilter {
        transaction_id: Some(uuid::Uuid::nil()),
        limit: 1,
        ..Default::default()
    };
    let env = Envelope::new(
        uuid::Uuid::new_v4(),
        "nlds-readyz",
        "",
        ApiAction::Put,
        "",
        Payload::Stat { filter },
    );
    let key = RoutingKey::new(Worker::Monitor, Action::Stat);
    // Within the check's own limit, so that the answer says who did not answer.
    let within = CHECK_TIMEOUT.saturating_sub(std::time::Duration::from_millis(500));
    match bus.rpc(key, &env, within).await {
        Ok(reply) => match reply.payload {
            Payload::Reply(RpcReply::Transactions(_)) => Ok(()),
            Payload::Reply(RpcReply::Error(e)) => {
                Err(format!("the monitor answered: {}", e.message))
            }
            _ => Err("the monitor answered something else than a page".into()),
        },
        Err(e) => Err(format!(
            "the monitor did not answer a query ({e}): its database or the monitor role is down"
        )),
    }
}
