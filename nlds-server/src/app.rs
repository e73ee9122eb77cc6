//! The axum application: the route table (and the OpenAPI document it makes) and the router
//! with the layers every request passes. Its state is in [`crate::state`], its extractors in
//! [`crate::extract`].

use std::sync::{Arc, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::{Json, Router};
use nlds_core::admin::AuditAction;
use nlds_core::error::ApiError;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::audit::AuditedRoutes;
use crate::error::ServerError;
use crate::openapi::audited;
use crate::routes;
use crate::state::AppState;

async fn not_found() -> ServerError {
    ServerError(ApiError::not_found(
        "no such endpoint; see /api/v2/openapi.json",
    ))
}

/// Sets TCP_NODELAY on an accepted API connection (`axum::serve(listener.tap_io(nodelay), ..)`):
/// small replies must not wait for the client's delayed ACK.
pub fn nodelay(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}

/// The audited routes of the table, read from its document (built once).
fn audited_routes() -> Arc<AuditedRoutes> {
    static ROUTES: OnceLock<Arc<AuditedRoutes>> = OnceLock::new();
    ROUTES
        .get_or_init(|| Arc::new(AuditedRoutes::of(document())))
        .clone()
}

/// The route table: every route the server answers, registered once with
/// [`OpenApiRouter::routes`] so that its handler, its OpenAPI operation (from the handler's
/// `#[utoipa::path]`) and its audit action (given with [`audited`]; none for a route that is
/// never audited) come from the same line. A mutating route (POST, PUT, PATCH, DELETE) must be
/// audited (a test checks). The only answers outside the table are the not-found fallbacks.
pub fn routes() -> OpenApiRouter<AppState> {
    use AuditAction::*;
    use utoipa_axum::routes as r;
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(r!(routes::healthz))
        .routes(r!(routes::readyz))
        .routes(r!(crate::system_status::status_json))
        .routes(r!(crate::system_status::status_page))
        .routes(r!(openapi_json))
        .routes(r!(routes::whoami))
        .routes(audited(Admin, r!(routes::admin_archive)))
        .routes(audited(Admin, r!(routes::admin_evict)))
        .routes(audited(Admin, r!(routes::admin_quota)))
        .routes(audited(Admin, r!(routes::admin_set_quota)))
        .routes(audited(Stat, r!(routes::quota)))
        .routes(audited(Admin, r!(routes::policy_dry_run)))
        .routes(audited(Admin, r!(routes::policy_run)))
        .routes(audited(Admin, r!(routes::policy_status)))
        .routes(audited(Admin, r!(routes::policy_reload)))
        .routes(audited(Admin, r!(routes::policy_reset)))
        .routes(audited(Find, r!(routes::explain)))
        .routes(audited(Admin, r!(crate::admin::transactions)))
        .routes(audited(Admin, r!(crate::admin::failed_files)))
        .routes(audited(Admin, r!(crate::admin::logs)))
        .routes(audited(Admin, r!(crate::admin::audit)))
        .routes(audited(Admin, r!(crate::drains::list_drains)))
        .routes(audited(
            Admin,
            r!(crate::drains::drain_role, crate::drains::resume_role),
        ))
        .routes(audited(
            Admin,
            r!(routes::storage_audit_run, routes::storage_audit_runs),
        ))
        .routes(audited(Admin, r!(routes::storage_audit_purge)))
        .routes(audited(Delete, r!(crate::delete::delete)))
        .routes(audited(Undelete, r!(crate::delete::undelete)))
        .routes(audited(Purge, r!(crate::delete::admin_purge)))
        .routes(audited(Put, r!(routes::put)))
        .routes(audited(Put, r!(routes::append_paths)))
        .routes(audited(Get, r!(routes::get)))
        .routes(audited(List, r!(routes::list)))
        .routes(audited(Find, r!(routes::find)))
        .routes(audited(Meta, r!(routes::meta)))
        .routes(audited(Stat, r!(routes::stat)))
        .routes(audited(Stat, r!(routes::transaction)))
        .routes(audited(Stat, r!(routes::events)))
        .routes(audited(Put, r!(routes::retry)))
        .routes(audited(Cancel, r!(routes::cancel)))
        .routes(audited(Stage, r!(routes::stage)))
        .routes(audited(
            Stage,
            r!(routes::stage_status, routes::stage_delete),
        ))
        .routes(audited(Stage, r!(routes::stage_cancel)))
        .routes(audited(Release, r!(routes::release)))
        .routes(audited(Locality, r!(routes::archiveinfo)))
        .routes(audited(
            Notify,
            r!(
                routes::notify_show,
                routes::notify_set,
                routes::notify_clear
            ),
        ))
        .routes(audited(Admin, r!(routes::admin_notifications)))
        .merge(crate::legacy::routes())
}

/// The OpenAPI document of the route table, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = routes().into_openapi();
        crate::openapi::document_errors(&mut doc);
        doc
    })
}

/// `GET /api/v2/openapi.json`: the document of both APIs.
#[utoipa::path(get, path = "/api/v2/openapi.json",
    responses((status = 200, description = "the OpenAPI 3.1 document of both APIs")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document().clone())
}

/// The whole HTTP application: the route table ([`routes`]), the not-found fallback and the
/// layers every request passes.
pub fn router(state: AppState) -> Router {
    let ready = crate::routes::default_readiness(&state.bus);
    router_with(state, ready)
}

/// [`router`] with the checks `/readyz` runs (the embedded mode adds its object store).
pub fn router_with(state: AppState, ready: nlds_bus::health::Readiness) -> Router {
    // The status page knows the processes from their heartbeats, heard from now on.
    crate::system_status::watch(&state.bus);
    let limit = state.cfg.max_body_bytes;
    let (table, _doc) = routes().split_for_parts();
    table
        .fallback(not_found)
        // Every request of both APIs: its audit record (changes carried out, refusals).
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), audited_routes()),
            crate::audit::middleware,
        ))
        .layer(DefaultBodyLimit::max(limit))
        // The span names the path only: a query string may hold a legacy client's
        // `secret_key`, which must never reach a log. Each response's latency is logged in
        // microseconds at debug level (`RUST_LOG=tower_http::trace::on_response=debug`;
        // bench/scale.sh reads it).
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                    )
                })
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .latency_unit(tower_http::LatencyUnit::Micros),
                ),
        )
        // Requests by route template and status (docs/METRICS.md).
        .layer(axum::middleware::from_fn(crate::metrics::track))
        // nlds_ready and nlds_backend_up from the same checks as /readyz, exported while this
        // router lives.
        .layer(axum::Extension(std::sync::Arc::new(
            nlds_bus::metrics::export_readiness(ready.clone()),
        )))
        .layer(axum::Extension(ready))
        .with_state(state)
}

#[cfg(test)]
mod route_table_tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Method, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::auth::StaticTokens;

    const METHODS: [Method; 5] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];

    fn app() -> Router {
        router(AppState {
            bus: Arc::new(nlds_bus::memory::MemoryBus::new()),
            auth: Arc::new(StaticTokens::from_toml("").unwrap()),
            cfg: Arc::new(crate::config::ServerConfig::default()),
            live: Default::default(),
            webhook_key: None,
        })
    }

    /// The documented operations: (method, path template, audit action).
    fn documented() -> Vec<(Method, String, Option<AuditAction>)> {
        let doc = document();
        let mut out = Vec::new();
        for (path, item) in doc.paths.paths.iter() {
            for (m, op) in [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
                (Method::HEAD, &item.head),
                (Method::OPTIONS, &item.options),
                (Method::TRACE, &item.trace),
            ] {
                if let Some(op) = op {
                    out.push((m, path.clone(), crate::audit::audit_action(op)));
                }
            }
        }
        out
    }

    /// A concrete path for a template (`{name}` filled in).
    fn concrete(template: &str) -> String {
        template
            .split('/')
            .map(|s| {
                if s.starts_with('{') {
                    "00000000-0000-0000-0000-000000000000"
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Whether the application answered from a route (not a not-found fallback, not 405).
    async fn routed(app: &Router, method: &Method, path: &str) -> bool {
        // The status page waits for each microservice: not long here.
        let uri = if path.starts_with("/system/status") {
            format!("{path}?time-limit=1")
        } else {
            path.to_owned()
        };
        let req = axum::http::Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
            return false;
        }
        if resp.status() != StatusCode::NOT_FOUND {
            return true;
        }
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let fallback = v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no such endpoint"))
            || v == serde_json::json!({"detail": "Not Found"});
        !fallback
    }

    #[test]
    fn every_change_is_audited() {
        let ops = documented();
        assert!(ops.len() > 40, "{} operations", ops.len());
        for (m, path, action) in &ops {
            if [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(m) {
                assert!(
                    action.is_some(),
                    "{m} {path} changes things but has no audit action"
                );
                assert_eq!(
                    audited_routes().action_of(m, &concrete(path)),
                    *action,
                    "{m} {path}"
                );
            }
        }
    }

    /// Every documented operation is answered by its route, and every route the server answers
    /// (on a documented path, with any method, and every route it served before the table) is
    /// documented.
    #[tokio::test]
    async fn every_route_is_documented_and_served() {
        let app = app();
        let ops = documented();
        let is_documented = |m: &Method, p: &str| ops.iter().any(|(om, op, _)| om == m && op == p);
        for (m, path, _) in &ops {
            assert!(
                routed(&app, m, &concrete(path)).await,
                "{m} {path} is documented but not served"
            );
        }
        let mut paths: Vec<&String> = ops.iter().map(|(_, p, _)| p).collect();
        paths.dedup();
        for path in paths {
            for m in &METHODS {
                if !is_documented(m, path) {
                    assert!(
                        !routed(&app, m, &concrete(path)).await,
                        "{m} {path} is served but not documented"
                    );
                }
            }
        }
        // The routes the server answered when the tables were written by hand.
        let mut before: Vec<(Method, String)> = [
            (Method::GET, "/healthz"),
            (Method::GET, "/readyz"),
            (Method::GET, "/api/v2/openapi.json"),
            (Method::GET, "/api/v2/whoami"),
            (Method::POST, "/api/v2/admin/archive"),
            (Method::POST, "/api/v2/admin/evict"),
            (Method::GET, "/api/v2/admin/transactions"),
            (
                Method::GET,
                "/api/v2/admin/transactions/{transaction_id}/failed",
            ),
            (Method::GET, "/api/v2/admin/logs"),
            (Method::GET, "/api/v2/admin/audit"),
            (Method::POST, "/api/v2/delete"),
            (Method::POST, "/api/v2/undelete"),
            (Method::POST, "/api/v2/admin/purge"),
            (Method::POST, "/api/v2/put"),
            (Method::POST, "/api/v2/get"),
            (Method::GET, "/api/v2/holdings"),
            (Method::GET, "/api/v2/files"),
            (Method::POST, "/api/v2/meta"),
            (Method::GET, "/api/v2/transactions"),
            (Method::GET, "/api/v2/transactions/{transaction_id}"),
            (Method::GET, "/api/v2/transactions/{transaction_id}/events"),
            (Method::POST, "/api/v2/transactions/{transaction_id}/retry"),
            (Method::POST, "/api/v2/transactions/{transaction_id}/cancel"),
            (Method::GET, "/system/status/"),
            (Method::GET, "/system/status"),
            (Method::GET, "/system/status/{service}"),
            (Method::GET, "/probe/healthz"),
        ]
        .into_iter()
        .map(|(m, p)| (m, p.to_owned()))
        .collect();
        for (m, p) in [
            (Method::PUT, "/files/"),
            (Method::GET, "/files/"),
            (Method::DELETE, "/files/"),
            (Method::PUT, "/files/getlist/"),
            (Method::GET, "/catalog/list/"),
            (Method::GET, "/catalog/find/"),
            (Method::POST, "/catalog/meta/"),
            (Method::GET, "/status/"),
            (Method::GET, "/init/"),
            (Method::GET, "/init/token/"),
        ] {
            before.push((m.clone(), format!("/api/1.0.0{p}")));
            before.push((m, format!("/api/1.0.0{}", p.trim_end_matches('/'))));
        }
        for (m, p) in &before {
            assert!(is_documented(m, p), "{m} {p} is not documented");
            assert!(routed(&app, m, &concrete(p)).await, "{m} {p} is not served");
        }
    }

    /// Routes are registered in the table only: no module adds one to the router behind its back
    /// (the legacy API's not-found catch-all, in `legacy/mod.rs`, is the one exception). Every
    /// non-test source file of this crate and of the composition crate (`nlds-embedded`) is read.
    #[test]
    fn no_route_outside_the_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in [root.join("src"), root.join("../nlds-embedded/src")] {
            let mut stack = vec![dir];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("tests.rs") {
                        files.push(p);
                    }
                }
            }
        }
        assert!(
            files.len() > 10,
            "source files not found under {}",
            root.display()
        );
        let mut catch_all = 0;
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let n = code.matches(".route(").count()
                + code.matches(".nest(").count()
                + code.matches(".route_service(").count()
                + code.matches(".nest_service(").count();
            let legacy = file.ends_with("legacy.rs") || file.ends_with("legacy/mod.rs");
            if legacy {
                catch_all += n;
            } else {
                assert_eq!(
                    n,
                    0,
                    "{} registers a route outside the table",
                    file.display()
                );
            }
        }
        assert_eq!(
            catch_all, 1,
            "the legacy API registers exactly its catch-all"
        );
    }
}
