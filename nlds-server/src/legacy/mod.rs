//! `/api/1.0.0`: the wire protocol of CEDA's NLDS server, as the published Python client
//! (nlds-client 1.0.17) speaks it, served as an adapter over the same core as `/api/v2`: every
//! handler here translates the request, calls the functions the native handlers call (the same
//! RPCs and the same router messages), and translates the answer back.
//!
//! The quirks kept, because the Python client depends on them (see docs/LEGACY_API.md):
//! - success is HTTP 202 whose body is a JSON *string* holding JSON (the client does
//!   `json.loads(response.json())`);
//! - errors are `{"detail": "<JSON string of {loc, msg, type}>"}`; the client shows `msg` on 400
//!   and refreshes its token on 401/403;
//! - failures of list, find, meta and stat are answered 202 with `details.failure`;
//! - booleans arrive as Python's `True`/`False`, `status/` takes a JSON body on a GET, and every
//!   path ends in `/` (both spellings are served, so no redirect is needed);
//! - `user` and `group` are required query parameters and must be the caller's own (an admin may
//!   act for anyone), answered 404 otherwise as upstream does;
//! - `access_key` and `secret_key` are accepted and ignored: object-store credentials live on
//!   the server. They never reach a log line, a queue message or an error text. `tenancy` names
//!   the object-store tenancy a put writes to when `[server.legacy_init] select_tenancy` is on
//!   (a name only; the one `init/` advertises, or none, means the default); else it is ignored.
//!
//! Deliberate differences (each a fix an old client cannot notice): a put answers with the
//! holding it resolved; `tag` is echoed as a dictionary on every endpoint; `list -x` matches the
//! label as a regular expression; find's holdings are keyed by label but never collide; stat always

mod catalog;
mod error;
mod files;
mod init;
mod params;
mod reply;
mod status;
mod system;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use nlds_core::admin::AuditAction;
use serde_json::json;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use crate::openapi::audited;
use crate::state::AppState;

pub use error::LegacyError;
pub use files::clean_list;
pub use init::LegacyInit;
pub use params::{Acting, Params};
pub use system::{SERVICES, ServiceHealth, service_roles};

/// The prefix of the legacy API.
pub const PREFIX: &str = "/api/1.0.0";

/// Unknown paths under the prefix: FastAPI's 404.
async fn not_found(headers: HeaderMap) -> Response {
    let _ = headers;
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"detail": "Not Found"})),
    )
        .into_response()
}

/// The query parameters every authenticated legacy endpoint requires (for the OpenAPI document;
/// [`Acting`] reads them).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "only the OpenAPI document reads it; `Acting` parses the query"
)]
struct ActingAs {
    /// The caller (an admin may name anyone).
    user: String,
    /// A group of the caller.
    group: String,
}

/// The answers of an authenticated legacy endpoint (for the OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "only the OpenAPI document reads it; no handler builds it"
)]
enum Answers {
    /// Accepted: a JSON string holding the JSON answer.
    #[response(status = 202)]
    Accepted,
    /// Malformed request: `{"detail": "<JSON of {loc, msg, type}>"}`.
    #[response(status = 400)]
    BadRequest,
    /// The token is invalid or expired.
    #[response(status = 401)]
    Unauthorized,
    /// No token, or the action is not allowed.
    #[response(status = 403)]
    Forbidden,
    /// `user` or `group` is not the caller's own.
    #[response(status = 404)]
    NotFound,
    /// A query parameter is missing or malformed (FastAPI's shape).
    #[response(status = 422)]
    Unprocessable,
}

/// The legacy routes of the route table ([`crate::app::routes`]), each under `/api/1.0.0`
/// served with and without its trailing slash (both spellings are in the OpenAPI document; the
/// one without is an alias with no `operationId`).
pub fn routes() -> OpenApiRouter<AppState> {
    use AuditAction::*;
    use utoipa_axum::routes as r;
    OpenApiRouter::new()
        .routes(both(audited(Put, r!(files::put_files))))
        .routes(both(audited(Get, r!(files::get_file))))
        .routes(both(audited(Delete, r!(files::delete_files))))
        .routes(both(audited(Get, r!(files::getlist))))
        .routes(both(audited(List, r!(catalog::list))))
        .routes(both(audited(Find, r!(catalog::find))))
        .routes(both(audited(Meta, r!(catalog::meta))))
        .routes(both(audited(Stat, r!(status::status))))
        .routes(both(r!(init::init)))
        .routes(both(r!(init::init_token)))
        .routes(both(r!(system::system_page)))
        .routes(r!(system::system_service))
        .routes(r!(system::healthz))
        // Not a route: unknown paths under the prefix get FastAPI's 404, as upstream.
        .route(
            &format!("{PREFIX}/{{*rest}}"),
            axum::routing::any(not_found),
        )
}

/// Adds the spelling without the trailing slash to a route's one path: served by the same
/// handlers, documented as an alias (the same operations without an `operationId`).
fn both(mut route: UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
    let (path, item) = route
        .1
        .paths
        .iter()
        .next()
        .map(|(p, i)| (p.clone(), i.clone()))
        .expect("one path");
    let bare = path.trim_end_matches('/').to_owned();
    assert_ne!(bare, path, "{path} has no trailing slash");
    let mut alias = item;
    for op in crate::openapi::operations_mut(&mut alias) {
        op.operation_id = None;
        op.summary = Some(format!("{path} (without its trailing slash)"));
    }
    route.1.paths.insert(bare, alias);
    route
}

#[cfg(test)]
mod tests;
