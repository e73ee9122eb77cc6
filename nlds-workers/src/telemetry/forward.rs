//! A tracing layer that turns every warning and error of the process into a `log.<level>` record
//! for the logger role (which stores it in `log_record` and `log_dir/<service>.log`, where
//! `nlds admin logs` finds it).
//!
//! A record names the role whose message was being handled (`transfer-put`; else the process's
//! service name), the transaction, batch and user of that message (fields of the bus runtime's
//! `handle` span), the event's target, message and fields. Queuing never blocks the caller: records
//! go through [`nlds_bus::notices`], which drops and counts them when its queue is full.
//! Skipped: events logged while the notices are being published (they would feed themselves),
//! events of the logger role's own messages (the logger failing to store a record must not make
//! another record), and events with a field `forward = false` (their record is already published
//! another way: the bus runtime's failure reports carry one).

use std::fmt::Write as _;

use nlds_core::api::ApiAction;
use nlds_core::{Action, Envelope, Payload, RoutingKey, Worker};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use uuid::Uuid;

/// The span of the bus runtime that handles one message.
const HANDLE_SPAN: &str = "handle";

/// The layer (see the module documentation).
pub struct Forward {
    service: String,
}

impl Forward {
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
        }
    }
}

/// What a `handle` span says about its message.
#[derive(Debug, Default, Clone)]
struct MessageContext {
    key: Option<RoutingKey>,
    transaction_id: Option<Uuid>,
    sub_id: Option<Uuid>,
    user: Option<String>,
}

impl Visit for MessageContext {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "key" => self.key = text.parse().ok(),
            "transaction_id" => self.transaction_id = Uuid::parse_str(&text).ok(),
            "sub_id" => self.sub_id = Uuid::parse_str(&text).ok(),
            "user" => self.user = Some(text),
            _ => {}
        }
    }
}

/// An event's message and its other fields, as one line.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
    skip: bool,
}

impl Visit for Text {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "forward" && !value {
            self.skip = true;
        }
        self.record_debug(field, &value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else if field.name() != "forward" {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for Forward
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != HANDLE_SPAN {
            return;
        }
        let mut mc = MessageContext::default();
        attrs.record(&mut mc);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(mc);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        let action = match level {
            Level::ERROR => Action::Error,
            Level::WARN => Action::Warning,
            _ => return,
        };
        let mut mc = None;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if span.name() == nlds_bus::notices::SPAN {
                    return;
                }
                if mc.is_none() {
                    mc = span.extensions().get::<MessageContext>().cloned();
                }
            }
        }
        let mc = mc.unwrap_or_default();
        if mc.key.is_some_and(|k| k.worker == Worker::Log) {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        if text.skip {
            return;
        }
        let service = mc
            .key
            .map(|k| k.worker.as_str().to_owned())
            .unwrap_or_else(|| self.service.clone());
        let message = format!(
            "{}{} [{}]",
            text.message,
            text.fields,
            event.metadata().target()
        );
        nlds_bus::notices::send(
            RoutingKey::new(Worker::Log, action),
            record(&mc, service, action, message),
        );
    }
}

/// The `log.<level>` envelope of one record: the message's transaction, batch and user if the
/// event was about one (else the nil transaction and no user, which the logger stores as none).
fn record(mc: &MessageContext, service: String, level: Action, message: String) -> Envelope {
    let tid = mc.transaction_id.unwrap_or_else(Uuid::nil);
    let env = Envelope::new(
        tid,
        mc.user.clone().unwrap_or_default(),
        "",
        ApiAction::Put,
        "",
        Payload::Log {
            service,
            level: level.as_str().to_owned(),
            message,
        },
    );
    match mc.sub_id {
        Some(sub) => Envelope { sub_id: sub, ..env },
        None => env,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn warnings_and_errors_become_records_naming_their_transaction_and_nothing_feeds_itself() {
        let mut rx = nlds_bus::notices::queue();
        let (tid, sub) = (Uuid::new_v4(), Uuid::new_v4());
        let subscriber = tracing_subscriber::registry().with(Forward::new("nlds-test"));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("an info line is no record");
            let put = RoutingKey::new(Worker::TransferPut, Action::Start);
            tracing::info_span!("handle", key = %put, transaction_id = %tid, sub_id = %sub, user = %"alice", attempt = 1)
                .in_scope(|| tracing::warn!(error = %"S3 down", "transient failure, will retry"));
            tracing::error!(forward = false, "published another way");
            tracing::info_span!(nlds_bus::notices::SPAN)
                .in_scope(|| tracing::warn!("the broker refused a notice"));
            let log = RoutingKey::new(Worker::Log, Action::Warning);
            tracing::info_span!("handle", key = %log, transaction_id = %tid, sub_id = %sub, user = %"alice", attempt = 1)
                .in_scope(|| tracing::warn!("the logger cannot store a record"));
            tracing::error!(bucket = "nlds", "no transaction here");
        });
        let mut got = Vec::new();
        while let Ok((key, env)) = rx.try_recv() {
            let Payload::Log {
                service,
                level,
                message,
            } = env.payload
            else {
                continue; // another test's retry note
            };
            got.push((
                key.to_string(),
                env.transaction_id,
                env.sub_id,
                env.user,
                service,
                level,
                message,
            ));
        }
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(
            got[0],
            (
                "nlds-api.log.warning".into(),
                tid,
                sub,
                "alice".into(),
                "transfer-put".into(),
                "warning".into(),
                format!(
                    "transient failure, will retry error=S3 down [{}]",
                    module_path!()
                )
            )
        );
        assert_eq!(
            (
                got[1].0.as_str(),
                got[1].1,
                got[1].3.as_str(),
                got[1].4.as_str(),
                got[1].5.as_str()
            ),
            ("nlds-api.log.error", Uuid::nil(), "", "nlds-test", "error")
        );
        assert!(
            got[1].6.starts_with("no transaction here bucket=nlds ["),
            "{}",
            got[1].6
        );
    }

    /// A bus that refuses every message while `down`, and keeps those it takes.
    #[derive(Default)]
    struct FlakyBus {
        down: std::sync::atomic::AtomicBool,
        taken: std::sync::Mutex<Vec<Envelope>>,
    }

    #[async_trait::async_trait]
    impl nlds_bus::Bus for FlakyBus {
        async fn publish(&self, _: RoutingKey, env: &Envelope) -> Result<(), nlds_bus::BusError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(nlds_bus::BusError::Unavailable("down".into()));
            }
            self.taken.lock().unwrap().push(env.clone());
            Ok(())
        }
        async fn rpc(
            &self,
            _: RoutingKey,
            _: &Envelope,
            _: std::time::Duration,
        ) -> Result<Envelope, nlds_bus::BusError> {
            unreachable!("notices are published, never asked")
        }
        async fn consume(
            &self,
            _: nlds_core::Role,
            _: std::sync::Arc<dyn nlds_bus::Handler>,
            _: nlds_bus::ConsumeOptions,
            _: tokio_util::sync::CancellationToken,
        ) -> Result<(), nlds_bus::BusError> {
            unreachable!("notices are published, never consumed")
        }
        async fn ready(&self) -> Result<(), nlds_bus::BusError> {
            Ok(())
        }
        async fn publish_delayed(
            &self,
            _: RoutingKey,
            _: &Envelope,
            _: std::time::Duration,
        ) -> Result<(), nlds_bus::BusError> {
            unreachable!("notices are never delayed")
        }
        async fn consumers(&self, _: nlds_core::Role) -> Result<u32, nlds_bus::BusError> {
            Ok(0)
        }
    }

    #[test]
    fn records_lost_while_the_bus_was_down_are_reported_once_it_is_back() {
        use std::sync::atomic::Ordering::SeqCst;
        let subscriber = tracing_subscriber::registry().with(Forward::new("nlds-test"));
        tracing::subscriber::with_default(subscriber, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let bus = std::sync::Arc::new(FlakyBus::default());
                bus.down.store(true, SeqCst);
                let stop = tokio_util::sync::CancellationToken::new();
                let publisher =
                    tokio::spawn(nlds_bus::notices::install(bus.clone()).run(stop.clone()));
                let before = nlds_bus::notices::failed();
                for i in 0..3 {
                    tracing::warn!("S3 unreachable, try {i}");
                }
                let settle = || tokio::time::sleep(std::time::Duration::from_millis(100));
                settle().await;
                assert!(bus.taken.lock().unwrap().is_empty());
                assert!(nlds_bus::notices::failed() >= before + 3);
                bus.down.store(false, SeqCst);
                tracing::warn!("S3 is back");
                settle().await;
                let messages: Vec<String> = bus
                    .taken
                    .lock()
                    .unwrap()
                    .iter()
                    .filter_map(|e| match &e.payload {
                        Payload::Log { message, .. } => Some(message.clone()),
                        _ => None,
                    })
                    .collect();
                assert!(
                    messages[0].starts_with("S3 is back"),
                    "the record that got through: {messages:?}"
                );
                let report = messages
                    .iter()
                    .find(|m| m.contains("were lost"))
                    .unwrap_or_else(|| panic!("no report of the lost records: {messages:?}"));
                // Three here (more only if another test of this process lost some meanwhile).
                let lost: u64 = report
                    .split("lost=")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no count in {report}"));
                assert!(lost >= 3, "{report}");
                assert!(report.contains("refused by the bus"), "{report}");
                // Reported once: another record brings no second report.
                tracing::warn!("still fine");
                settle().await;
                let reports = bus
                    .taken
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|e| matches!(&e.payload, Payload::Log { message, .. } if message.contains("were lost")))
                    .count();
                assert_eq!(reports, 1);
                stop.cancel();
                publisher.await.unwrap();
            });
        });
    }
}
