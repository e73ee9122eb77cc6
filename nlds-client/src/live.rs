//! Live status: following a transaction through `GET /api/v2/transactions/{id}/events`
//! (server-sent events), which [`Client::wait`] uses before it falls back to polling.

use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use nlds_core::api::TransactionStatus;
use uuid::Uuid;

use crate::client::{Client, WaitProgress, decode};
use crate::error::Error;

/// The server sends a keep-alive every 15 s by default (`[server] events_keepalive_secs`): a
/// stream silent for this long is taken as broken.
pub const SILENCE: Duration = Duration::from_secs(60);

/// Why following the live status stopped before the final state.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The deadline passed.
    Timeout,
    /// The stream could not be opened, or broke: poll instead. `opened` says whether it had
    /// delivered a status.
    Broken { error: Error, opened: bool },
}

impl Client {
    /// Follows `transaction_id`'s live status until it is final (returned) or `deadline`;
    /// `on_progress` gets every status as it comes.
    pub(crate) async fn follow_events<F>(
        &self,
        transaction_id: Uuid,
        deadline: Option<Instant>,
        on_progress: &mut F,
    ) -> std::result::Result<TransactionStatus, Stop>
    where
        F: FnMut(WaitProgress<'_>),
    {
        let broken = |error, opened| Stop::Broken { error, opened };
        let path = format!("/transactions/{transaction_id}/events");
        // The client's request timeout would cut a long wait: the wait's own deadline bounds it.
        let longest = deadline.map_or(Duration::from_secs(7 * 24 * 3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        let resp = self
            .open_stream(&path, longest)
            .await
            .map_err(|e| broken(e, false))?;
        if !resp.status().is_success() {
            return Err(broken(decode_error(resp).await, false));
        }
        let mut events = std::pin::pin!(resp.bytes_stream().eventsource());
        let mut opened = false;
        loop {
            let mut silence = SILENCE;
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Stop::Timeout);
                }
                silence = silence.min(left);
            }
            let next = match tokio::time::timeout(silence, events.next()).await {
                Ok(next) => next,
                Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(Stop::Timeout);
                }
                Err(_) => {
                    return Err(broken(
                        Error::Live(format!(
                            "the live status stream sent nothing for {}s",
                            SILENCE.as_secs()
                        )),
                        opened,
                    ));
                }
            };
            let event = match next {
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    return Err(broken(
                        Error::Live(format!("the live status stream broke: {e}")),
                        opened,
                    ));
                }
                None => {
                    return Err(broken(
                        Error::Live("the live status stream ended before the final state".into()),
                        opened,
                    ));
                }
            };
            if event.event != "status" {
                continue;
            }
            let status: TransactionStatus = serde_json::from_str(&event.data).map_err(|e| {
                broken(
                    Error::Live(format!("{path}: a status event does not decode: {e}")),
                    opened,
                )
            })?;
            opened = true;
            on_progress(WaitProgress::Status(&status));
            if status.state.is_final() || status.state.is_failed() {
                return Ok(status);
            }
        }
    }
}

/// Whether the stream's failure means this server has no live status (an older server): then
/// polling is the normal way, not a fallback worth a word.
pub(crate) fn unsupported(e: &Error) -> bool {
    match e {
        Error::Api { status: 405, .. } => true,
        Error::Api {
            status: 404,
            message,
            ..
        } => message.contains("no such endpoint"),
        _ => false,
    }
}

/// The error an unsuccessful answer carries.
async fn decode_error(resp: reqwest::Response) -> Error {
    match decode::<serde_json::Value>(resp).await {
        Err(e) => e,
        Ok(_) => Error::Live("the server answered the live status request without a stream".into()),
    }
}
