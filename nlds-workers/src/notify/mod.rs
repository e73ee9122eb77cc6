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

/// The key users' webhook secrets are derived from (`[notify] webhook_key_file`), if set; the
/// error names the file and what is wrong. The API server (to show a secret) and the delivery
/// task (to sign) read it the same way.
pub fn webhook_key(
    cfg: &nlds_settings::NotifyConfig,
) -> anyhow::Result<Option<nlds_core::notify::WebhookKey>> {
    let Some(text) = cfg.webhook_key()? else {
        return Ok(None);
    };
    let key = nlds_core::notify::WebhookKey::new(text).map_err(|e| {
        anyhow::anyhow!(
            "{e}: [notify] webhook_key_file {}",
            cfg.webhook_key_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )
    })?;
    Ok(Some(key))
}
