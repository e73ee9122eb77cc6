//! The API's HTTP metrics (`nlds_http_requests_total`, `nlds_http_request_duration_seconds`):
//! requests by route template (axum's `MatchedPath`, never the path asked for, which may name
//! a user's files), method and status. The API listener does not serve `/metrics` itself: the
//! process answers it on `[metrics] listen` (docs/METRICS.md).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Counts and times every request.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    nlds_metrics::record::http(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The method as a label: the standard ones by name, any other as `other` (a client chooses the
/// method, so its spelling must not make new series).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn requests_are_counted_by_route_template_never_by_path() {
        let app = Router::new()
            .route("/things/{id}", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(track));
        for uri in ["/things/secret-name", "/things/other", "/no/such/path"] {
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let req = Request::builder()
            .method("BREW")
            .uri("/things/x")
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(req).await.unwrap();
        let text = nlds_metrics::render();
        assert!(
            text.contains(
                "nlds_http_requests_total{route=\"/things/{id}\",method=\"GET\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "nlds_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("method=\"other\""), "{text}");
        assert!(
            text.contains(
                "nlds_http_request_duration_seconds_count{route=\"/things/{id}\",method=\"GET\"}"
            ),
            "{text}"
        );
        assert!(
            !text.contains("secret-name") && !text.contains("BREW"),
            "{text}"
        );
    }
}
