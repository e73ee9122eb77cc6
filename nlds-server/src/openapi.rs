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
