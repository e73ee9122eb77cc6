//! The metrics of an nlds-rs process: one Prometheus registry per process, owned here.
//!
//! Every metric family is declared once, in [`registry`], and registered in one registry that the
//! whole process shares: the API server's HTTP metrics, the bus runtime's delivery metrics and
//! the roles' metrics all land in it, so the embedded process (API and every role) answers one
//! `/metrics` with all of them. [`record`] has the functions code calls to count something;
//! [`scrape`] renders the registry in the Prometheus text format (0.0.4) after running the
//! refreshers a process registered (queue depths, usage per group, readiness), which read
//! figures that live elsewhere (the broker, the database) only when Prometheus asks.
//!
//! Labels are bounded sets: roles, queues, API actions, states, tiers, route templates, status
//! codes, check names, and at most `[metrics] usage_groups` group names. Never a user name, a
//! path, a transaction id or a token (docs/METRICS.md).
//!
//! This crate depends on no other nlds crate (it is a leaf, like `nlds-hooks`): the contract crate
//! stays free of I/O libraries, and the bus, the workers and the server can all count into it.

pub mod record;
pub mod registry;
pub mod scrape;

pub use registry::{NAMES, metrics};
pub use scrape::{CONTENT_TYPE, on_scrape, render, scrape};
