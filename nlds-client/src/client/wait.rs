//! Waiting for a transaction to finish ([`Client::wait`]): live status first, polling after.

use std::time::{Duration, Instant};

use nlds_core::ErrorCode;
use nlds_core::api::TransactionStatus;
use uuid::Uuid;

use super::Client;
use crate::error::{Error, Result};
use crate::live::{self, Stop};

/// What [`Client::wait`] reports after each poll.
#[derive(Debug, Clone, Copy)]
pub enum WaitProgress<'a> {
    /// The server does not know the transaction yet (404 within the grace period): QUEUED.
    Queued,
    /// The transaction's current status.
    Status(&'a TransactionStatus),
    /// A poll failed with a transient error; waiting goes on.
    Unreachable(&'a Error),
    /// The live status stream could not be opened or broke: waiting goes on by polling every
    /// this long (more after failed polls).
    Polling(&'a Error, Duration),
}

/// The longest pause between two polls of [`Client::wait`] once the server stops answering.
pub const MAX_POLL: Duration = Duration::from_secs(30);

impl Client {
    /// Waits until a transaction's state is final (or failed) and returns that status.
    /// `on_progress` is called with every status seen. With a `timeout`, gives up with
    /// [`Error::Timeout`] once it has passed.
    ///
    /// It follows the transaction's live status (server-sent events), so it returns as soon as
    /// the final state is stored. If the stream cannot be opened or breaks, it says so
    /// ([`WaitProgress::Polling`]; not for a server without live status) and polls every `poll`
    /// instead, backing off up to [`MAX_POLL`] while polls fail.
    ///
    /// A transaction the server does not know is an error at once ([`Error::Api`], not found).
    /// While polling (a server without live status), a 404 within
    /// [`ClientOptions::not_found_grace`] of the start counts as QUEUED; transient failures (connection errors, 502-504) are ridden out up to
    /// [`ClientOptions::wait_transient_failures`] polls in a row.
    ///
    /// [`ClientOptions::not_found_grace`]: super::ClientOptions::not_found_grace
    /// [`ClientOptions::wait_transient_failures`]: super::ClientOptions::wait_transient_failures
    pub async fn wait<F>(
        &self,
        transaction_id: Uuid,
        poll: Duration,
        timeout: Option<Duration>,
        mut on_progress: F,
    ) -> Result<TransactionStatus>
    where
        F: FnMut(WaitProgress<'_>),
    {
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let poll = poll.max(Duration::from_millis(10));
        match self
            .follow_events(transaction_id, deadline, &mut on_progress)
            .await
        {
            Ok(status) => return Ok(status),
            Err(Stop::Timeout) => return Err(Error::Timeout),
            // An older server without live status: polling is the way, nothing to say.
            Err(Stop::Broken { error, .. }) if live::unsupported(&error) => {}
            // A server with live status records a transaction before it accepts it: one it
            // does not know is unknown (or someone else's), not queued.
            Err(Stop::Broken {
                error:
                    e @ Error::Api {
                        code: ErrorCode::NotFound,
                        ..
                    },
                opened: false,
            }) => return Err(e),
            Err(Stop::Broken { error, .. }) => on_progress(WaitProgress::Polling(&error, poll)),
        }
        self.poll_until_final(transaction_id, poll, start, deadline, on_progress)
            .await
    }

    async fn poll_until_final<F>(
        &self,
        transaction_id: Uuid,
        poll: Duration,
        start: Instant,
        deadline: Option<Instant>,
        mut on_progress: F,
    ) -> Result<TransactionStatus>
    where
        F: FnMut(WaitProgress<'_>),
    {
        let mut transient = 0u32;
        loop {
            match self.transaction(transaction_id).await {
                Ok(status) => {
                    transient = 0;
                    on_progress(WaitProgress::Status(&status));
                    if status.state.is_final() || status.state.is_failed() {
                        return Ok(status);
                    }
                }
                Err(Error::Api {
                    code: ErrorCode::NotFound,
                    ..
                }) if start.elapsed() < self.options.not_found_grace => {
                    on_progress(WaitProgress::Queued);
                }
                Err(e) if e.is_transient() && transient < self.options.wait_transient_failures => {
                    transient += 1;
                    on_progress(WaitProgress::Unreachable(&e));
                }
                Err(e) => return Err(e),
            }
            // Back off while the server does not answer.
            let mut pause = poll
                .checked_mul(2u32.pow(transient.min(8)))
                .unwrap_or(MAX_POLL)
                .min(MAX_POLL.max(poll));
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Timeout);
                }
                pause = pause.min(deadline - now);
            }
            tokio::time::sleep(pause).await;
        }
    }
}
