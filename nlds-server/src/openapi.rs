//! The OpenAPI document of both APIs (the native `/api/v2` and the legacy `/api/1.0.0`), served
//! at `/api/v2/openapi.json`.
//!
//! The document is not written by hand: it is what [`crate::app::routes`] registered (built by
//! [`crate::app::document`]), each route
//! with its `#[utoipa::path]` annotation, so a route the server answers cannot be missing from it.
//! Every operation that is audited carries its audit action as the extension `x-nlds-audit`
//! (see [`AUDIT_EXTENSION`], written by [`audited`]); the audit middleware reads the actions from
//! the document.

use nlds_core::admin::AuditAction;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::state::AppState;

/// The operation extension that names an endpoint's audit action (`"put"`, `"delete"`, ...).
pub const AUDIT_EXTENSION: &str = "x-nlds-audit";

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// What the document says besides its paths: the title, the shared schemas and the bearer
/// scheme. The paths are added by the route table ([`crate::app::routes`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "nlds-rs",
        description = "Near-line data store: the native API (`/api/v2`) and CEDA NLDS's legacy \
            API (`/api/1.0.0`, every path also served without its trailing slash). An operation \
            whose changes and refusals are written to the audit log names its audit action in \
            `x-nlds-audit`."
    ),
    components(schemas(
        nlds_core::error::ErrorBody,
        nlds_core::api::TransactionPage,
        nlds_core::admin::FailedFilePage,
        nlds_core::admin::FailedFileRow,
        nlds_core::admin::LogPage,
        nlds_core::admin::LogEntry,
        nlds_core::admin::LogLevel,
        nlds_core::admin::AuditPage,
        nlds_core::admin::AuditEvent,
        nlds_core::admin::AuditAction,
        nlds_core::admin::AuditOutcome,
        nlds_core::AccessRole,
        nlds_core::error::ApiError,
        nlds_core::ErrorCode,
        nlds_core::State,
        nlds_core::api::ApiAction,
        nlds_core::message::FailedFile,
        nlds_core::PathKind,
        nlds_core::api::Tier,
        nlds_core::api::FileLocation,
        nlds_core::api::FileXattr,
    )),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

/// Marks every operation of a route as audited with `action`: the audit middleware records its
/// changes and refusals under that action ([`crate::audit::AuditedRoutes`] reads it back from the
/// OpenAPI document, where it is the extension `x-nlds-audit`).
pub fn audited(
    action: AuditAction,
    mut route: UtoipaMethodRouter<AppState>,
) -> UtoipaMethodRouter<AppState> {
    for item in route.1.paths.values_mut() {
        for op in operations_mut(item) {
            op.extensions
                .get_or_insert_with(Default::default)
                .insert(AUDIT_EXTENSION.to_owned(), action.as_str().into());
        }
    }
    route
}

/// Adds to every operation the error answers it can give but does not document itself, each
/// with its body: the native API's [`ErrorBody`](nlds_core::error::ErrorBody), the legacy API's
/// upstream shape (`{"detail": ...}`). They come from the shared layers, not from the handler:
/// - any operation: 400 for a malformed query string, path parameter or JSON body;
/// - an operation that takes a body: 413 when it is larger than `[server] max_body_bytes`;
/// - an operation behind the bearer scheme: 401 without a valid token, 403 when the caller may
///   not do it;
/// - a native operation with a path parameter or behind the bearer scheme: 404 for a holding,
///   transaction, file or request it names that is not there or not the caller's;
/// - a legacy operation: 401 and 403 (the client refreshes its token on them) and FastAPI's 422
///   for a missing or malformed query parameter.
pub fn document_errors(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let legacy = path.starts_with("/api/1.0.0/");
        let has_param = path.contains('{');
        for op in operations_mut(item) {
            let bearer = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let mut codes = vec![(400, "the request is malformed: the message says which part")];
            if op.request_body.is_some() {
                codes.push((413, "the request body is larger than the server accepts"));
            }
            if bearer || legacy {
                codes.push((401, "no valid bearer token"));
                codes.push((403, "the caller may not do this"));
            }
            if (bearer || has_param) && !legacy {
                codes.push((404, "no such resource visible to the caller"));
            }
            if legacy {
                codes.push((422, "a query parameter is missing or malformed"));
            }
            for (code, description) in codes {
                op.responses
                    .responses
                    .entry(code.to_string())
                    .or_insert_with(|| error_response(description, legacy));
            }
        }
    }
}

/// A documented error answer: the native API's shared body, or the legacy API's JSON.
fn error_response(description: &str, legacy: bool) -> RefOr<Response> {
    let schema: Option<RefOr<utoipa::openapi::Schema>> =
        (!legacy).then(|| Ref::from_schema_name("ErrorBody").into());
    let mut response = Response::new(description);
    response.content.insert(
        "application/json".to_owned(),
        RefOr::T(Content::new(schema)),
    );
    RefOr::T(response)
}

/// The operations of a path item, whatever their method.
pub fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests {
    /// The document passes `openapi-spec-validator` (PyPI; scripts/services.sh installs it into
    /// the venv it makes for moto). A missing validator fails, unless skipping was asked for
    /// (`nlds_hooks::skip`).
    #[test]
    fn document_passes_openapi_spec_validator() {
        let venv = std::env::var("NLDS_VENV").unwrap_or_else(|_| {
            format!(
                "{}/.cache/nlds-venv",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        let tool = std::path::Path::new(&venv).join("bin/openapi-spec-validator");
        if !tool.exists()
            && nlds_hooks::skip::missing(
                "",
                &format!("{} is missing", tool.display()),
                "run scripts/services.sh (it installs the validator)",
            )
        {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("openapi.json");
        std::fs::write(
            &file,
            serde_json::to_vec_pretty(crate::app::document()).unwrap(),
        )
        .unwrap();
        let out = std::process::Command::new(&tool)
            .arg("--validation-errors")
            .arg("all")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openapi-spec-validator rejects the document:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
