//! Notifications (docs/NOTIFY.md): what the monitor decides when a transaction ends
//! ([`decide`]), the users' channels (`monitor.notify`, [`prefs`]), and the delivery task that
//! runs beside the monitor role ([`Notifier`]): webhooks ([`webhook`]), e-mail ([`email`]) and
//! the operators' alerts ([`alerts`]).

mod alerts;
pub(crate) mod decide;
mod deliver;
mod email;
pub(crate) mod prefs;
pub mod webhook;

pub use alerts::Probe;
pub use deliver::Notifier;
