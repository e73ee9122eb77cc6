//! The warning a transaction carries while one of its steps is being retried after a transient
//! fault: "retry 2 of 4 at 12:01:07Z (transfer-put): unavailable: cannot reach S3 ...".
//!
//! It is kept as history once the step succeeds (`nlds stat` still shows that the outage was
//! met), but it does not make a completed transaction COMPLETE_WITH_WARNINGS: the step it is about
//! did complete ([`is_retry_note`] tells it from other warnings).

use chrono::{DateTime, Utc};

use crate::error::ErrorCode;

const PREFIX: &str = "retry ";

/// Longest error message a note keeps (an object-store error can be long).
pub const MESSAGE_MAX: usize = 300;

/// The note for retry `retry` of `of` of `step` (a worker's name), due `at`, after `code`:
/// `message`.
pub fn retry_note(
    step: &str,
    retry: u32,
    of: usize,
    at: DateTime<Utc>,
    code: ErrorCode,
    message: &str,
) -> String {
    let message = clip(message);
    format!(
        "{PREFIX}{retry} of {of} at {} ({step}): {}: {message}",
        at.format("%H:%M:%SZ"),
        code.as_str()
    )
}

/// `message` on one line and at most [`MESSAGE_MAX`] bytes (then ending in `…`).
pub fn clip(message: &str) -> String {
    let mut message = message.replace('\n', " ");
    if message.len() > MESSAGE_MAX {
        let mut end = MESSAGE_MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// Is `warning` a [`retry_note`]?
pub fn is_retry_note(warning: &str) -> bool {
    let Some(rest) = warning.strip_prefix(PREFIX) else {
        return false;
    };
    let mut words = rest.split(' ');
    words.next().is_some_and(|n| n.parse::<u32>().is_ok())
        && words.next() == Some("of")
        && words.next().is_some_and(|n| n.parse::<u32>().is_ok())
        && words.next() == Some("at")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_name_the_retry_the_time_and_the_error_and_are_told_from_other_warnings() {
        let at = DateTime::parse_from_rfc3339("2026-12-05T12:01:07.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let n = retry_note(
            "transfer-put",
            2,
            4,
            at,
            ErrorCode::Unavailable,
            "S3 down\nconnection refused",
        );
        assert_eq!(
            n,
            "retry 2 of 4 at 12:01:07Z (transfer-put): unavailable: S3 down connection refused"
        );
        assert!(is_retry_note(&n));
        for other in ["retry later", "slow disk", "retry x of 4 at", ""] {
            assert!(!is_retry_note(other), "{other}");
        }
        let long = retry_note("index", 1, 4, at, ErrorCode::Timeout, &"é".repeat(400));
        assert!(
            long.len() < MESSAGE_MAX + 60 && long.ends_with('…'),
            "{long}"
        );
    }
}
