//! Showing the progress of `--wait`: a progress bar on a terminal, one line per change otherwise.

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use uuid::Uuid;

use crate::format::{human_size, state_name};
use crate::transaction::progress_line;
use nlds_client::client::WaitProgress;
use nlds_core::api::TransactionStatus;

enum Mode {
    /// A bar drawn on standard error.
    Bar(ProgressBar),
    /// Plain lines, written when something changed.
    Lines,
    Silent,
}

/// The bar before the transaction's size is known: a spinner, no bar (a bar of length 0 would
/// show full).
const SPINNER: &str = "{spinner} {elapsed_precise} {wide_msg}";
/// The bar once it is: how far (bytes, or files when there are no bytes to move), then files,
/// bytes, rate and ETA in the message.
const BAR: &str = "{spinner} {elapsed_precise} [{bar:20}] {wide_msg}";

/// How far a transaction is, as the bar shows it: bytes done of its bytes when it has bytes to
/// move (so one big file of many small ones moves the bar as it moves), files done of its files
/// otherwise; `None` while nothing is counted yet (queued, indexing), when a bar would show full.
pub(crate) fn measure(s: &TransactionStatus) -> Option<(u64, u64)> {
    let (done, total) = if s.bytes_total > 0 {
        (s.bytes_done, s.bytes_total)
    } else {
        (s.files_done, s.files_total)
    };
    (total > 0).then_some((done.min(total), total))
}

/// The percentage of [`measure`], rounded down: 100 only when all is done.
pub(crate) fn percent(s: &TransactionStatus) -> Option<u64> {
    measure(s).map(|(done, total)| (u128::from(done) * 100 / u128::from(total)) as u64)
}

/// The message beside the bar: the percentage, files and bytes done of all, the rate and time
/// left, the state and what is wrong or waited for.
pub(crate) fn bar_message(s: &TransactionStatus, speed: Option<(f64, Duration)>) -> String {
    let mut msg = String::new();
    if let Some(p) = percent(s) {
        msg.push_str(&format!("{p:>3}%  "));
    }
    msg.push_str(&format!(
        "{}/{} files  {}/{}",
        s.files_done,
        s.files_total,
        human_size(s.bytes_done),
        human_size(s.bytes_total)
    ));
    if let Some((rate, eta)) = speed {
        msg.push_str(&format!(
            "  {}/s  ETA {}",
            human_size(rate as u64),
            short_duration(eta)
        ));
    }
    msg.push_str(&format!("  {}", state_name(s.state)));
    if s.files_failed > 0 {
        msg.push_str(&format!("  {} failed", s.files_failed));
    }
    if let Some(note) = crate::transaction::waiting_note(s) {
        msg.push_str(&format!("  {note}"));
    }
    msg
}

/// Receives [`WaitProgress`] reports and shows them.
pub struct Reporter {
    mode: Mode,
    transaction_id: Uuid,
    last: Option<String>,
    /// When the first status with bytes to move came, and the bytes done then.
    first: Option<(Instant, u64)>,
    sized: bool,
}

impl Reporter {
    /// A bar when standard error is a `terminal`, plain lines when not, nothing when `silent`.
    pub fn new(transaction_id: Uuid, terminal: bool, silent: bool) -> Self {
        let mode = if silent {
            Mode::Silent
        } else if terminal {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(style(SPINNER));
            bar.set_message("QUEUED");
            bar.enable_steady_tick(Duration::from_millis(200));
            Mode::Bar(bar)
        } else {
            Mode::Lines
        };
        Self {
            mode,
            transaction_id,
            last: None,
            first: None,
            sized: false,
        }
    }

    /// The transfer rate and the time left, from the bytes done since the first status
    /// (`None` until bytes have moved).
    fn rate_and_eta(&mut self, s: &TransactionStatus) -> Option<(f64, Duration)> {
        let now = Instant::now();
        let (t0, b0) = *self.first.get_or_insert((now, s.bytes_done));
        let secs = now.duration_since(t0).as_secs_f64();
        let moved = s.bytes_done.saturating_sub(b0);
        if secs < 0.5 || moved == 0 {
            return None;
        }
        let rate = moved as f64 / secs;
        let left = s.bytes_total.saturating_sub(s.bytes_done) as f64 / rate;
        Some((rate, Duration::from_secs_f64(left.min(1e7))))
    }

    /// Shows one report; plain lines go to `err`.
    pub fn update(&mut self, p: WaitProgress<'_>, err: &mut dyn Write) {
        let speed = match p {
            WaitProgress::Status(s) => self.rate_and_eta(s),
            _ => None,
        };
        match &self.mode {
            Mode::Silent => {}
            Mode::Bar(bar) => match p {
                WaitProgress::Queued => bar.set_message("QUEUED"),
                WaitProgress::Status(s) => {
                    if let Some((done, total)) = measure(s) {
                        if !self.sized {
                            bar.set_style(style(BAR));
                            self.sized = true;
                        }
                        bar.set_length(total);
                        bar.set_position(done);
                    }
                    bar.set_message(bar_message(s, speed));
                }
                WaitProgress::Unreachable(e) => {
                    bar.set_message(format!("server unreachable, still waiting ({e})"))
                }
                WaitProgress::Polling(e, poll) => bar.set_message(format!(
                    "no live status ({e}); asking every {}",
                    format_poll(poll)
                )),
            },
            Mode::Lines => {
                let line = match p {
                    WaitProgress::Queued => format!("{}: QUEUED", self.transaction_id),
                    WaitProgress::Status(s) => {
                        let mut line = progress_line(s);
                        if let Some((rate, eta)) = speed {
                            line.push_str(&format!(
                                ", {}/s, ETA {}",
                                human_size(rate as u64),
                                short_duration(eta)
                            ));
                        }
                        line
                    }
                    WaitProgress::Unreachable(e) => {
                        format!(
                            "{}: server unreachable, still waiting: {e}",
                            self.transaction_id
                        )
                    }
                    WaitProgress::Polling(e, poll) => format!(
                        "{}: no live status ({e}); asking the server every {} instead",
                        self.transaction_id,
                        format_poll(poll)
                    ),
                };
                if self.last.as_deref() != Some(line.as_str()) {
                    let _ = writeln!(err, "{line}");
                    self.last = Some(line);
                }
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A duration to the second, as `1h02m`, `3m05s` or `42s`.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A poll interval as people write it: `200ms`, `5s`.
fn format_poll(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A put of `files_total` files of `bytes_total` bytes with `files_done` and `bytes_done`.
    fn put(state: &str, files: (u64, u64), bytes: (u64, u64)) -> TransactionStatus {
        serde_json::from_value(serde_json::json!({
            "id": 1,
            "transaction_id": "11111111-1111-1111-1111-111111111111",
            "user": "alice",
            "group": "climate",
            "api_action": "put",
            "job_label": "j",
            "state": state,
            // What a server deriving it per batch says (1 of 2 batches done): not shown.
            "percent": 50,
            "created": "2026-05-01T10:00:00Z",
            "updated": "2026-05-01T10:00:05Z",
            "files_done": files.0,
            "files_total": files.1,
            "files_failed": 0,
            "bytes_done": bytes.0,
            "bytes_total": bytes.1,
            "warnings": [],
            "sub_records": []
        }))
        .unwrap()
    }

    /// 1 file of 308 done, one batch of two: the bar is at 0 %, not 50 %, and says 1/308 files.
    #[test]
    fn one_file_of_308_is_not_half_way() {
        let s = put("TRANSFER_PUTTING", (1, 308), (1 << 20, 308 << 20));
        assert_eq!(measure(&s), Some((1 << 20, 308 << 20)));
        assert_eq!(percent(&s), Some(0));
        let msg = bar_message(&s, None);
        assert!(
            msg.starts_with("  0%  1/308 files  1.0 MiB/308.0 MiB  TRANSFER_PUTTING"),
            "{msg}"
        );
        // Half the bytes moved (some of them of a batch still in flight): half way, whatever
        // the files say.
        let s = put("TRANSFER_PUTTING", (1, 308), (154 << 20, 308 << 20));
        assert_eq!(percent(&s), Some(50));
        assert!(bar_message(&s, None).starts_with(" 50%  1/308 files"));
        // All done: 100.
        let s = put("COMPLETE", (308, 308), (308 << 20, 308 << 20));
        assert_eq!(percent(&s), Some(100));
    }

    /// Nothing counted yet (`0/0 files QUEUED`): no bar, so it cannot start full.
    #[test]
    fn a_queued_transaction_has_no_bar() {
        let s = put("ROUTING", (0, 0), (0, 0));
        assert_eq!(measure(&s), None);
        assert_eq!(percent(&s), None);
        assert!(bar_message(&s, None).starts_with("0/0 files  0 B/0 B  ROUTING"));
        // Empty files only: the bar counts files.
        let s = put("TRANSFER_PUTTING", (1, 4), (0, 0));
        assert_eq!(measure(&s), Some((1, 4)));
        assert_eq!(percent(&s), Some(25));
    }
}
