//! `/healthz` and `/readyz`: liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nlds_core::api::Readiness;

use crate::state::AppState;

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the bus is reachable.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Readiness, description = "ready: every check is ok"), (status = 503, body = Readiness, description = "not ready: the failing check says why")))]
pub async fn readyz(State(s): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let mut checks = std::collections::BTreeMap::new();
    let ok = match s.bus.ready().await {
        Ok(()) => {
            checks.insert("bus".into(), "ok".into());
            true
        }
        Err(e) => {
            checks.insert("bus".into(), e.to_string());
            false
        }
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready: ok, checks }))
}
