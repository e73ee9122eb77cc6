//! What a process logs, and where it goes: every event on standard error (plain text, coloured
//! only on a terminal; JSON lines with `NLDS_LOG_JSON=1`), filtered by `RUST_LOG` (default
//! `info`), and every warning and error also to the logger role (see [`forward`]), whatever
//! `RUST_LOG` says.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

pub mod forward;

/// The default filter of standard error: our info lines, the libraries' warnings.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,aws=warn,lapin=warn";

/// Is `NLDS_LOG_JSON` set to ask for JSON lines (`1`, `true`, `yes`; `0`, `false` or empty: no)?
pub fn json_requested() -> bool {
    std::env::var("NLDS_LOG_JSON").is_ok_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        !matches!(v.as_str(), "" | "0" | "false" | "no" | "off")
    })
}

/// Installs the process's subscriber; `service` names the process's records when no role's
/// message is being handled (`nlds-server`, `nlds-workers`). Warnings and errors are queued for
/// the logger once the binary installs the notice publisher (`nlds_bus::notices::install`).
pub fn init(service: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let stderr = if json_requested() {
        stderr.json().with_filter(filter).boxed()
    } else {
        stderr.with_filter(filter).boxed()
    };
    // Warnings and errors, and the spans they may be in (a message's transaction).
    let forward = forward::Forward::new(service).with_filter(filter_fn(|m| {
        if m.is_span() {
            *m.level() <= Level::INFO
        } else {
            *m.level() <= Level::WARN
        }
    }));
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(forward)
        .try_init();
}
