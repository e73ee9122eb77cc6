//! Reads of many rows, run outside the span of the message being handled.
//!
//! sqlx's row streams are instrumented with the span current when a statement starts
//! (`in_current_span`), and re-enter it for every row they yield, twice (the statement's stream
//! and the connection's). Each enter and exit passes both per-layer filters of the subscriber
//! (`telemetry::init`): for a label's first 1,000 files, with their copies and checksums, that
//! was 11 % of the catalogue's instructions (BENCHMARKS.md). A read run in a task of its own
//! starts its statements with no span current, so its rows enter none.
//!
//! What the read loses is the message's context on events sqlx raises inside it. Statement
//! logging is off (`db::connect`), so those are PostgreSQL's notices only, still logged and
//! forwarded, without the message's transaction id. Our own events stay in the span: only the
//! read itself runs in the task.

use std::future::Future;

/// Runs `read` in a task of its own and returns what it returns; a panic in it is the caller's.
pub async fn read<R: Send + 'static>(read: impl Future<Output = R> + Send + 'static) -> R {
    match tokio::spawn(read).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime that shuts down cancels the task, and the caller goes with it.
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Span;

    /// The span current inside a read: none, whatever the caller is in.
    #[tokio::test]
    async fn a_read_runs_outside_the_callers_span() {
        use tracing::Instrument;
        let _g = tracing::subscriber::set_default(tracing_subscriber::registry());
        async {
            assert!(!Span::current().is_none(), "the caller is in its span");
            let inside = read(async { Span::current().is_none() }).await;
            assert!(inside, "the read starts with no span current");
            assert!(
                !Span::current().is_none(),
                "the caller is in its span again"
            );
        }
        .instrument(tracing::info_span!("handle"))
        .await;
    }

    #[tokio::test]
    async fn a_panic_in_a_read_is_the_callers() {
        let caught = tokio::spawn(read(async { panic!("bad row") })).await;
        let panic = caught.unwrap_err().into_panic();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"bad row"));
    }
}
