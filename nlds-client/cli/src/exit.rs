//! Exit codes of the `nlds` command.
//!
//! | Code | Name                       | When                                                                   |
//! |-----:|----------------------------|------------------------------------------------------------------------|
//! |    0 | [`OK`]                     | success; with `--wait`, the transaction ended `COMPLETE`               |
//! |    1 | [`GENERIC`]                | any other error (a server error, an unexpected answer, ...)            |
//! |    2 | [`USAGE`]                  | bad command line or input (unknown option, empty FILELIST, ...)        |
//! |    3 | [`AUTH`]                   | the server refused the token or the action (HTTP 401 or 403)           |
//! |    4 | [`CONFIG`]                 | nlds is not configured (no server URL or token) or misconfigured       |
//! |    5 | [`NOT_FOUND`]              | the holding, transaction or file does not exist (HTTP 404); a `list` or `find` naming something that matches nothing; a dry run that would transfer or change nothing |
//! |    6 | [`NETWORK`]                | the server cannot be reached, or is unavailable (after retries)        |
//! |    7 | [`TIMEOUT`]                | `--wait` gave up (`--timeout`), no answer within the request timeout, or HTTP 504 |
//! |   10 | [`COMPLETE_WITH_WARNINGS`] | with `--wait`: the transaction ended `COMPLETE_WITH_WARNINGS`          |
//! |   11 | [`COMPLETE_WITH_ERRORS`]   | with `--wait`: the transaction ended `COMPLETE_WITH_ERRORS`            |
//! |   12 | [`FAILED`]                 | with `--wait`: the transaction ended `FAILED`                          |
//! |   13 | [`CANCELLED`]              | with `--wait`: the transaction ended `CANCELLED` (`nlds cancel`)       |
//! |  130 | [`INTERRUPTED`]            | Ctrl-C while waiting (`--wait`, `wait`): the transaction goes on        |

use nlds_core::{ErrorCode, State};

use nlds_client::error::Error;

pub const OK: u8 = 0;
pub const GENERIC: u8 = 1;
pub const USAGE: u8 = 2;
pub const AUTH: u8 = 3;
pub const CONFIG: u8 = 4;
pub const NOT_FOUND: u8 = 5;
pub const NETWORK: u8 = 6;
pub const TIMEOUT: u8 = 7;
pub const COMPLETE_WITH_WARNINGS: u8 = 10;
pub const COMPLETE_WITH_ERRORS: u8 = 11;
pub const FAILED: u8 = 12;
pub const CANCELLED: u8 = 13;
pub const INTERRUPTED: u8 = 130;

/// The exit-code table as a string literal, for `concat!` (`nlds --help`).
#[macro_export]
macro_rules! exit_codes_help {
    () => {
        "\
Exit codes:
   0  success (with --wait: the transaction ended COMPLETE)
   1  other error
   2  usage error
   3  authentication or permission refused (HTTP 401/403)
   4  not configured (no server URL or token: run `nlds init`) or misconfigured
   5  not found (HTTP 404), a list or find naming something that matches nothing,
      or a --dry-run that would transfer or change nothing
   6  network error, server unreachable or unavailable
   7  timeout (--wait --timeout passed, no answer within --request-timeout, or HTTP 504)
  10  ended COMPLETE_WITH_WARNINGS (--wait)
  11  ended COMPLETE_WITH_ERRORS (--wait)
  12  ended FAILED (--wait)
  13  ended CANCELLED (--wait; `nlds cancel`)
 130  interrupted (Ctrl-C) while waiting; the transaction goes on"
    };
}

/// The table above, for `nlds --help`.
pub const HELP: &str = exit_codes_help!();

/// The exit code for a client error.
pub fn for_error(e: &Error) -> u8 {
    match e {
        Error::Api { status, code, .. } => match code {
            ErrorCode::Unauthorized | ErrorCode::Forbidden | ErrorCode::PermissionDenied => AUTH,
            ErrorCode::NotFound => NOT_FOUND,
            ErrorCode::Timeout => TIMEOUT,
            ErrorCode::Unavailable => NETWORK,
            _ => match status {
                401 | 403 => AUTH,
                404 => NOT_FOUND,
                504 => TIMEOUT,
                503 => NETWORK,
                _ => GENERIC,
            },
        },
        e @ Error::Transport(_) if e.is_request_timeout() => TIMEOUT,
        Error::Transport(_) => NETWORK,
        Error::Decode(_) => GENERIC,
        Error::Live(_) => NETWORK,
        Error::Config(_) | Error::NotConfigured(_) => CONFIG,
        Error::Timeout => TIMEOUT,
        Error::Provider { code, .. } => match code {
            ErrorCode::Unavailable => NETWORK,
            _ => AUTH,
        },
    }
}

/// The exit code for the final state of a waited-for transaction.
pub fn for_state(state: State) -> u8 {
    match state {
        State::Complete => OK,
        State::CompleteWithWarnings => COMPLETE_WITH_WARNINGS,
        State::CompleteWithErrors => COMPLETE_WITH_ERRORS,
        State::Cancelled => CANCELLED,
        s if s.is_failed() => FAILED,
        _ => GENERIC,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_refusals_are_auth_and_outages_network() {
        let refused = Error::Provider {
            code: ErrorCode::Unauthorized,
            message: "the OAuth2 provider https://id refused the login: access_denied".into(),
        };
        assert_eq!(for_error(&refused), AUTH);
        assert!(!refused.is_transient());
        assert_eq!(refused.code(), ErrorCode::Unauthorized);
        assert_eq!(refused.status(), None, "not an answer of the NLDS server");
        let down = Error::Provider {
            code: ErrorCode::Unavailable,
            message: "the OAuth2 provider https://id could not be reached".into(),
        };
        assert_eq!(for_error(&down), NETWORK);
        assert!(down.is_transient());
    }

    #[test]
    fn a_login_that_can_no_longer_be_renewed_is_auth() {
        use std::path::PathBuf;

        use nlds_client::ClientOptions;
        use nlds_client::oauth::{AuthSettings, DEFAULT_REFRESH_MARGIN, login_again};

        let s = AuthSettings {
            issuer: "https://idp.example".into(),
            client_id: "nlds-cli".into(),
            scopes: vec![],
            audience: None,
            token_file: PathBuf::from("/home/a/.config/nlds/oauth-token.json"),
            client_secret: None,
            client_secret_problem: None,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            http: ClientOptions::default(),
            config_file: None,
        };
        let e = login_again(&s, "invalid_grant: grant request is invalid", true);
        assert_eq!(for_error(&e), AUTH);
    }
}
