//! nlds-rs API server (axum). The `nlds-server` binary and the embedded single-process mode,
//! which link the API with the worker roles, are in `nlds-embedded`.
//!
//! The server authenticates, validates, and turns each command into bus messages: put and get are
//! accepted by the catalogue (RPC `catalog.setup` / `catalog.get`, which stages their record and
//! their first message, `nlds-api.route.*`, in its outbox in one database transaction) and
//! answered 202 with a transaction id; list,
//! find, meta and stat are RPCs to the catalogue and monitor with a timeout (504, never a hang).
//! Two APIs share that core: the native `/api/v2` ([`routes`]) and CEDA NLDS's `/api/1.0.0`
//! ([`legacy`]), which the published Python client speaks.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod delete;
pub mod drains;
pub mod error;
pub mod extract;
pub mod legacy;
pub mod live;
pub mod metrics;
pub mod notes;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod status_html;
pub mod system_status;

pub use app::{router, router_with};
pub use config::{ServerConfig, ServerSettings};
pub use state::AppState;
