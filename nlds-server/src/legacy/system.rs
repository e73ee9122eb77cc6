//! `system/status/` and `probe/healthz`: the health of the microservices.

use std::collections::HashMap;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use nlds_core::message::RpcReply;
use nlds_core::{Payload, Role};
use serde_json::{Value, json};

use crate::routes;
use crate::state::AppState;

/// The upstream microservice names and the roles behind each.
pub fn service_roles(name: &str) -> Option<&'static [Role]> {
    Some(match name.to_ascii_lowercase().as_str() {
        "monitor" => &[Role::Monitor, Role::MonitorRpc],
        "catalog" => &[Role::Catalogue, Role::CatalogueRpc],
        "nlds_worker" => &[Role::Router],
        "index" => &[Role::Indexer],
        "get_transfer" => &[Role::TransferGet],
        "put_transfer" => &[Role::TransferPut],
        "logger" => &[Role::Logger],
        "archive_get" => &[Role::ArchiveGet],
        "archive_put" => &[Role::ArchivePut],
        _ => return None,
    })
}

/// Every microservice name upstream's status page knows, in its order.
pub const SERVICES: &[&str] = &[
    "monitor",
    "catalog",
    "nlds_worker",
    "index",
    "get_transfer",
    "put_transfer",
    "logger",
    "archive_get",
    "archive_put",
];

/// The health of one microservice, as `/system/status/{service}` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceHealth {
    pub microservice_name: String,
    pub total_num: u32,
    pub num_failed: u32,
    pub num_success: u32,
    pub failed_list: Vec<String>,
    pub pid: Vec<u32>,
    pub hostname: Vec<String>,
}

impl ServiceHealth {
    fn colour(&self) -> &'static str {
        if self.total_num == 0 || self.num_success == 0 {
            "RED"
        } else if self.num_failed > 0 {
            "ORANGE"
        } else {
            "GREEN"
        }
    }

    /// The overall answer an anonymous caller gets.
    fn overall(&self) -> &'static str {
        match self.colour() {
            "GREEN" => "up",
            "ORANGE" => "degraded",
            _ => "down",
        }
    }
}

/// How long a status probe's answer is reused: the page is unauthenticated, so N requests must
/// not cause N fan-outs of pings over the bus.
const PROBE_CACHE: std::time::Duration = std::time::Duration::from_secs(5);

type ProbeSlot = std::sync::Arc<tokio::sync::Mutex<Option<(std::time::Instant, ServiceHealth)>>>;

/// The last probe of each service, per bus (an address: one process may serve several
/// instances in tests). One fan-out at a time per service: later callers wait for it and share
/// its answer.
static PROBES: std::sync::LazyLock<std::sync::Mutex<HashMap<(usize, String), ProbeSlot>>> =
    std::sync::LazyLock::new(Default::default);

/// The health of a service, from a probe at most [`PROBE_CACHE`] old.
async fn probe(s: &AppState, name: &str, limit: std::time::Duration) -> ServiceHealth {
    let bus = std::sync::Arc::as_ptr(&s.bus).cast::<()>() as usize;
    let slot = PROBES
        .lock()
        .expect("probe cache lock")
        .entry((bus, name.to_owned()))
        .or_default()
        .clone();
    let mut last = slot.lock().await;
    if let Some((at, h)) = last.as_ref()
        && at.elapsed() < PROBE_CACHE
    {
        return h.clone();
    }
    let h = probe_now(s, name, limit).await;
    *last = Some((std::time::Instant::now(), h.clone()));
    h
}

/// Is the caller of the status page an operator (a valid bearer token with admin)? Only they see
/// consumer counts, process ids and host names.
pub(super) async fn operator(s: &AppState, headers: &HeaderMap) -> bool {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    match token {
        Some(t) => matches!(s.auth.check(t).await, crate::auth::Checked::Valid(id) if id.admin),
        None => false,
    }
}

/// Pings every consumer of the service's roles and counts the answers.
async fn probe_now(s: &AppState, name: &str, limit: std::time::Duration) -> ServiceHealth {
    let mut h = ServiceHealth {
        microservice_name: name.to_owned(),
        total_num: 0,
        num_failed: 0,
        num_success: 0,
        failed_list: Vec::new(),
        pid: Vec::new(),
        hostname: Vec::new(),
    };
    let roles = service_roles(name).unwrap_or(&[]);
    for &role in roles {
        let n = s.bus.consumers(role).await.unwrap_or(0);
        h.total_num += n;
        let pings = (0..n).map(|_| async move {
            let env = routes::rpc_env_as("nlds", "nlds", Payload::SystemStat);
            s.bus.rpc(role.ping_key(), &env, limit).await
        });
        for (i, r) in futures::future::join_all(pings)
            .await
            .into_iter()
            .enumerate()
        {
            match r.map(|e| e.payload) {
                Ok(Payload::Reply(RpcReply::Alive { pid, hostname, .. })) => {
                    h.num_success += 1;
                    if !h.pid.contains(&pid) || !h.hostname.contains(&hostname) {
                        h.pid.push(pid);
                        h.hostname.push(hostname);
                    }
                }
                _ => {
                    h.num_failed += 1;
                    h.failed_list.push(format!("{}#{}", role.queue(), i + 1));
                }
            }
        }
    }
    h
}

fn time_limit(q: &HashMap<String, String>) -> std::time::Duration {
    let t = q
        .get("time-limit")
        .or_else(|| q.get("time_limit"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|t| (1..=15).contains(t))
        .unwrap_or(5);
    std::time::Duration::from_secs(t)
}

/// `GET /system/status/{service}`: JSON health of one microservice (202, as upstream).
#[utoipa::path(
    get, path = "/system/status/{service}", tag = "legacy", operation_id = "legacy_system_service",
    params(("service" = String, Path, description = "a microservice"),
        ("time-limit" = Option<u64>, Query, description = "seconds to wait (1 to 15, default 5)")),
    responses((status = 202, description = "the health of the microservice (in detail for an operator)"),
        (status = 307, description = "not a microservice: to the page of all"))
)]
pub(super) async fn system_service(
    State(s): State<AppState>,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q: HashMap<String, String> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let name = service.to_ascii_lowercase();
    if !SERVICES.contains(&name.as_str()) {
        let to = format!(
            "/system/status/?time-limit={}&microservice=all",
            time_limit(&q).as_secs()
        );
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response();
    }
    let h = probe(&s, &name, time_limit(&q)).await;
    if !operator(&s, &headers).await {
        return (
            StatusCode::ACCEPTED,
            axum::Json(json!({"microservice_name": h.microservice_name, "status": h.overall()})),
        )
            .into_response();
    }
    (StatusCode::ACCEPTED, axum::Json(h)).into_response()
}

/// `GET /system/status/`: an HTML table of the microservices' health.
#[utoipa::path(
    get, path = "/system/status/", tag = "legacy", operation_id = "legacy_system_page",
    params(("microservice" = Option<String>, Query, description = "a microservice, or `all`"),
        ("time-limit" = Option<u64>, Query, description = "seconds to wait for each (1 to 15, default 5)")),
    responses((status = 200, description = "an HTML table of the microservices' health",
        content_type = "text/html"))
)]
pub(super) async fn system_page(
    State(s): State<AppState>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let detail = operator(&s, &headers).await;
    let limit = time_limit(&q.iter().cloned().collect());
    let mut wanted: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "microservice")
        .map(|(_, v)| v.to_ascii_lowercase())
        .collect();
    if wanted.is_empty() || wanted.iter().any(|w| w == "all") {
        wanted = SERVICES.iter().map(|s| s.to_string()).collect();
    }
    wanted.retain(|w| SERVICES.contains(&w.as_str()));
    let probes = wanted.iter().map(|w| probe(&s, w, limit));
    let results = futures::future::join_all(probes).await;
    let mut rows = String::new();
    for h in &results {
        let colour = h.colour();
        let failed = if h.failed_list.is_empty() {
            String::new()
        } else {
            format!(
                " (not answering: {})",
                html_escape(&h.failed_list.join(", "))
            )
        };
        let text = match colour {
            "GREEN" => format!("All {} consumers online", h.total_num),
            "ORANGE" => format!(
                "{} of {} consumers online{failed}",
                h.num_success, h.total_num
            ),
            _ if h.total_num == 0 => "No consumers running".to_owned(),
            _ => format!("All {} consumers offline{failed}", h.total_num),
        };
        // Anonymous callers learn whether a service is up, not how it is deployed.
        let text = if detail { text } else { h.overall().to_owned() };
        rows.push_str(&format!(
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>\n",
            html_escape(&h.microservice_name),
            colour.to_ascii_lowercase(),
            colour,
            text
        ));
    }
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>NLDS system status</title>\n\
         <style>td,th{{padding:4px 12px}} .green{{color:#070}} .orange{{color:#c60}} .red{{color:#b00}}</style>\n\
         </head><body><h1>NLDS system status</h1>\n<p>Each consumer was asked to answer within {} s.</p>\n\
         <table><tr><th>service</th><th>status</th><th>detail</th></tr>\n{rows}</table></body></html>\n",
        limit.as_secs()
    ))
    .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /probe/healthz`: upstream answers the Python set `{"status", "healthy"}`, which FastAPI
/// serialises as a two-element list.
#[utoipa::path(
    get, path = "/probe/healthz", tag = "legacy", operation_id = "legacy_healthz",
    responses((status = 200, description = "`[\"status\", \"healthy\"]`"))
)]
pub(super) async fn healthz() -> axum::Json<Value> {
    axum::Json(json!(["status", "healthy"]))
}
