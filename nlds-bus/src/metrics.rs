//! What a process exports about its bus and its readiness when scraped (`nlds-metrics`).

use std::sync::Arc;

use nlds_core::Role;
use nlds_metrics::scrape::Registration;

use crate::Bus;
use crate::health::Readiness;

/// Exports the depth and consumers of `roles`' queues (`nlds_queue_messages`,
/// `nlds_queue_consumers`, and the dead-letter queues' depth on RabbitMQ), read from `bus` at
/// every scrape until the registration is dropped. A worker process exports the queues of the
/// roles it runs (several processes of a role export the same queue: aggregate with `max`).
pub fn export_queue_depths(bus: Arc<dyn Bus>, roles: &[Role]) -> Registration {
    let roles: Arc<[Role]> = roles.into();
    nlds_metrics::on_scrape(move || {
        let (bus, roles) = (bus.clone(), roles.clone());
        async move {
            for &role in roles.iter() {
                match bus.queue_depth(role).await {
                    Ok(Some(d)) => {
                        let queue = role.queue();
                        nlds_metrics::record::queue(&queue, d.messages, Some(d.consumers));
                        if let Some(dead) = d.dead {
                            nlds_metrics::record::queue(&format!("{queue}.dead"), dead, None);
                        }
                    }
                    Ok(None) => {}
                    // The broker's absence shows in nlds_backend_up{backend="bus"}.
                    Err(e) => tracing::debug!(%role, error = %e, "cannot read the queue's depth"),
                }
            }
        }
    })
}

/// Exports the readiness checks of the process (`nlds_ready`, `nlds_backend_up{backend}`) as
/// `/readyz` reports them (cached for a few seconds), at every scrape until the registration is
/// dropped.
pub fn export_readiness(readiness: Readiness) -> Registration {
    nlds_metrics::on_scrape(move || {
        let r = readiness.clone();
        async move {
            let report = r.report().await;
            nlds_metrics::record::readiness(
                report.checks.iter().map(|(k, v)| (k.as_str(), v == "ok")),
            );
        }
    })
}
