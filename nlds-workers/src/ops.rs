//! The operations listener of a worker process (`[workers] ops_listen`): `GET /healthz` (the
//! process is up) and `GET /readyz` (what its roles depend on answers: the broker always, the
//! database for the roles that keep state, the object store for the roles that move data), each
//! check cheap (a `SELECT 1`, a `HeadBucket`) and cached for a few seconds
//! ([`nlds_bus::health`]). 200 when ready, else 503 with each check's answer. `GET /metrics`:
//! the process's metrics in the Prometheus text format (docs/METRICS.md), also served alone on
//! `[metrics] listen` by [`serve_metrics`].

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use nlds_bus::Bus;
use nlds_bus::health::Readiness;
use nlds_core::Role;
use nlds_core::api::Readiness as Report;
use nlds_settings::ObjectStoreConfig;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

/// One run of a check.
pub type Probe = futures::future::BoxFuture<'static, Result<(), String>>;

/// Roles that read or write the database.
fn needs_database(role: Role) -> bool {
    matches!(
        role,
        Role::Catalogue
            | Role::CatalogueRpc
            | Role::Monitor
            | Role::MonitorRpc
            | Role::Logger
            | Role::Policy
    )
}

/// Roles that read or write the object store.
fn needs_object_store(role: Role) -> bool {
    matches!(
        role,
        Role::TransferPut | Role::TransferGet | Role::ArchivePut | Role::ArchiveGet
    )
}

/// The `database` check: `SELECT 1` (sea-orm's ping).
pub fn database_check(db: DatabaseConnection) -> impl Fn() -> Probe + Send + Sync {
    move || {
        let db = db.clone();
        Box::pin(async move {
            db.ping()
                .await
                .map_err(|e| format!("the database does not answer: {e}"))
        })
    }
}

/// The `object_store` check: `HeadBucket` of the default object store's bucket.
pub fn object_store_check(s3: nlds_storage::s3::S3Clients) -> impl Fn() -> Probe + Send + Sync {
    move || Box::pin(head_bucket(s3.default_tenant().clone()))
}

/// [`object_store_check`] for a process that has not built its clients yet (the embedded API
/// server): they are built on the first check.
pub fn object_store_check_of(cfg: ObjectStoreConfig) -> impl Fn() -> Probe + Send + Sync {
    let clients = Arc::new(tokio::sync::OnceCell::new());
    move || {
        let (clients, cfg) = (clients.clone(), cfg.clone());
        Box::pin(async move {
            let s3: &nlds_storage::s3::S3Clients = clients
                .get_or_try_init(|| async {
                    nlds_storage::s3::S3Clients::build(&cfg)
                        .await
                        .map_err(|e| format!("cannot configure the object store: {e}"))
                })
                .await?;
            head_bucket(s3.default_tenant().clone()).await
        })
    }
}

async fn head_bucket(t: nlds_storage::s3::Tenant) -> Result<(), String> {
    t.client
        .head_bucket()
        .bucket(&t.bucket)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            nlds_storage::s3::S3Error::from_sdk(format!("bucket {}", t.bucket), &e).message
        })
}

/// The checks of a process running `roles`.
pub async fn readiness(
    roles: &[Role],
    bus: Arc<dyn Bus>,
    cfg: &crate::config::WorkerConfig,
    res: &crate::run::Resources,
) -> anyhow::Result<Readiness> {
    let mut r = Readiness::new().with_bus(bus);
    if roles.iter().any(|r| needs_database(*r)) {
        r = r.with("database", database_check(res.db(cfg).await?));
    }
    if roles.iter().any(|r| needs_object_store(*r)) {
        r = r.with("object_store", object_store_check(res.s3(cfg).await?));
    }
    Ok(r)
}

/// The listener's routes.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

/// `GET /metrics`: every metric of the process, after its refreshers ran.
pub async fn metrics() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, nlds_metrics::CONTENT_TYPE)],
        nlds_metrics::scrape().await,
    )
}

/// [`serve_metrics`] on a task of its own, which logs the listener's failure; returns the bound
/// address (the `nlds-workers` and `nlds-server serve` processes).
pub async fn spawn_metrics(
    addr: SocketAddr,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let (bound, serve) = serve_metrics(addr, stop).await?;
    tracing::info!(addr = %bound, "metrics listener: /metrics");
    tokio::spawn(async move {
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(bound)
}

/// Binds `addr` (`[metrics] listen`) and serves `GET /metrics` alone until `stop`; returns the
/// bound address and the task.
pub async fn serve_metrics(
    addr: SocketAddr,
    stop: CancellationToken,
) -> anyhow::Result<(SocketAddr, impl Future<Output = anyhow::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (metrics.listen)"))?;
    let bound = listener.local_addr()?;
    let app = Router::new().route("/metrics", get(metrics));
    let run = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .context("the metrics listener failed")
    };
    Ok((bound, run))
}

async fn readyz(State(r): State<Readiness>) -> (StatusCode, Json<Report>) {
    let report = r.report().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}

/// Binds `addr` and serves [`router`] until `stop`; returns the bound address and the task.
pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    stop: CancellationToken,
) -> anyhow::Result<(SocketAddr, impl Future<Output = anyhow::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (workers.ops_listen)"))?;
    let bound = listener.local_addr()?;
    // nlds_ready and nlds_backend_up, from the same checks, while the listener runs.
    let exported = nlds_bus::metrics::export_readiness(readiness.clone());
    let run = async move {
        let _exported = exported;
        axum::serve(listener, router(readiness))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .context("the operations listener failed")
    };
    Ok((bound, run))
}
