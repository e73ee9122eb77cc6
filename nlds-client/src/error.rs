//! The client library's error type.

use nlds_core::ErrorCode;

/// Everything that can go wrong talking to an NLDS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-2xx status and (usually) an `{"error": {code, message}}` body.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's error code (guessed from the status when the body has none).
        code: ErrorCode,
        message: String,
    },
    /// The server could not be reached, or the connection broke (after retries).
    #[error("{}", transport_message(.0))]
    Transport(reqwest::Error),
    /// The server answered 2xx with a body we do not understand.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    /// The client is misconfigured, or was given something it cannot send.
    #[error("{0}")]
    Config(String),
    /// No server URL or no token is configured at all (a first run): the text says how to fix it.
    #[error("{0}")]
    NotConfigured(String),
    /// The live status stream of a transaction could not be read or broke (the wait then polls).
    #[error("{0}")]
    Live(String),
    /// The transaction did not reach a final state in time.
    #[error("timed out waiting for the transaction to finish")]
    Timeout,
    /// The OAuth2 provider refused a login or renewal (`code` Unauthorized), or could not be
    /// asked (`code` Unavailable); the message says which provider and why.
    #[error("{message}")]
    Provider { code: ErrorCode, message: String },
}

impl Error {
    /// The stable code this error is reported with (`{"error": {"code": ...}}` in `--json` output).
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Api { code, .. } => *code,
            Error::Transport(_) => ErrorCode::Unavailable,
            Error::Decode(_) => ErrorCode::Internal,
            Error::Live(_) => ErrorCode::Unavailable,
            Error::Config(_) | Error::NotConfigured(_) => ErrorCode::BadRequest,
            Error::Timeout => ErrorCode::Timeout,
            Error::Provider { code, .. } => *code,
        }
    }

    /// The request was sent (or a connection attempted) but no answer came in time.
    pub fn is_request_timeout(&self) -> bool {
        matches!(self, Error::Transport(e) if e.is_timeout() && !e.is_connect())
    }

    /// A failure that may go away by itself: a broken connection or a 502/503/504.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport(_) => true,
            Error::Api { status, .. } => matches!(status, 502..=504),
            Error::Provider { code, .. } => *code == ErrorCode::Unavailable,
            _ => false,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// reqwest's own message is terse ("error sending request for url (...)"); the reason is in the
/// source chain, so show all of it.
fn transport_message(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() && !e.is_connect() {
        String::from(
            "the NLDS server did not answer in time (raise the limit with --request-timeout or request_timeout in the config file): ",
        )
    } else {
        String::from("cannot talk to the NLDS server: ")
    };
    msg.push_str(&e.to_string());
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    msg
}

/// The code to report for a status whose body carried none.
pub(crate) fn code_for_status(status: u16) -> ErrorCode {
    match status {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        502 | 503 => ErrorCode::Unavailable,
        504 => ErrorCode::Timeout,
        400..=499 => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    }
}

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_transience() {
        let e = Error::Api {
            status: 503,
            code: ErrorCode::Unavailable,
            message: "down".into(),
        };
        assert!(e.is_transient());
        assert_eq!(e.code(), ErrorCode::Unavailable);
        assert_eq!(e.to_string(), "down");
        let e = Error::Api {
            status: 404,
            code: ErrorCode::NotFound,
            message: "gone".into(),
        };
        assert!(!e.is_transient());
        assert_eq!(e.status(), Some(404));
        assert_eq!(Error::Timeout.code(), ErrorCode::Timeout);
        assert_eq!(Error::Config("x".into()).code(), ErrorCode::BadRequest);
        assert_eq!(code_for_status(404), ErrorCode::NotFound);
        assert_eq!(code_for_status(418), ErrorCode::BadRequest);
        assert_eq!(code_for_status(504), ErrorCode::Timeout);
        assert_eq!(code_for_status(500), ErrorCode::Internal);
    }
}
