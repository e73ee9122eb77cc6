//! The deadline an RPC request carries on RabbitMQ, instead of an AMQP `expiration`.
//!
//! Every role's queue dead-letters to `nlds.<role>.dead`, and RabbitMQ dead-letters a message
//! that expires in its queue like one that is rejected. A request that waited past its caller's
//! timeout (its role restarting, or every consumer busy through a database outage) would
//! therefore pile up in the dead-letter queue, where operators look for messages that need them,
//! although its caller had already given up and nothing is left to do. So the caller stamps the
//! request with the time it gives up (`x-nlds-deadline`, milliseconds since the Unix epoch) and a
//! consumer that receives it later acks it unhandled: nothing expires in a queue, nothing is
//! dead-lettered, and a late request does no work whose answer nobody reads.
//!
//! The publisher's and the consumer's clocks are compared, so hosts must keep time (NTP); a
//! consumer whose clock runs ahead drops requests early, and its callers see timeouts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::types::{AMQPValue, FieldTable};

/// The header holding the deadline.
pub(crate) const DEADLINE_HEADER: &str = "x-nlds-deadline";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Headers for a request whose caller waits `timeout` from now.
pub(crate) fn stamp(timeout: Duration) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        DEADLINE_HEADER.into(),
        AMQPValue::LongLongInt(now_ms().saturating_add(timeout.as_millis() as i64)),
    );
    headers
}

/// How long ago the deadline in `headers` passed, if it has (`None` for a message without one).
pub(crate) fn overdue(headers: Option<&FieldTable>) -> Option<Duration> {
    let deadline = match headers?.inner().get(DEADLINE_HEADER)? {
        AMQPValue::LongLongInt(ms) => *ms,
        AMQPValue::LongInt(ms) => i64::from(*ms),
        _ => return None,
    };
    let late = now_ms() - deadline;
    (late > 0).then(|| Duration::from_millis(late as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_within_its_deadline_is_not_overdue() {
        assert_eq!(overdue(Some(&stamp(Duration::from_secs(30)))), None);
    }

    #[test]
    fn a_request_past_its_deadline_is_overdue_by_the_time_since() {
        let mut headers = FieldTable::default();
        headers.insert(
            DEADLINE_HEADER.into(),
            AMQPValue::LongLongInt(now_ms() - 5_000),
        );
        let late = overdue(Some(&headers)).expect("overdue");
        assert!(late >= Duration::from_secs(5) && late < Duration::from_secs(60));
    }

    #[test]
    fn a_message_without_a_deadline_is_never_overdue() {
        assert_eq!(overdue(None), None);
        assert_eq!(overdue(Some(&FieldTable::default())), None);
        let mut other = FieldTable::default();
        other.insert(DEADLINE_HEADER.into(), AMQPValue::LongString("x".into()));
        assert_eq!(overdue(Some(&other)), None);
    }
}
