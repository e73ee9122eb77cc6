//! The OpenAPI document of the native API, served at `/api/v2/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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

/// The native API.
#[derive(OpenApi)]
#[openapi(
    info(title = "nlds-rs", description = "Near-line data store: native API"),
    paths(
        crate::routes::healthz,
        crate::routes::readyz,
        crate::routes::whoami,
        crate::routes::put,
        crate::routes::get,
        crate::routes::list,
        crate::routes::find,
        crate::routes::meta,
        crate::routes::stat,
        crate::routes::transaction,
        crate::routes::admin_archive,
        crate::routes::admin_evict,
        crate::admin::transactions,
        crate::admin::failed_files,
        crate::admin::logs,
        crate::admin::audit,
        crate::delete::delete,
        crate::delete::undelete,
        crate::delete::admin_purge,
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
    )),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
