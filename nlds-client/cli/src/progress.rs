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
/// The bar once it is: files done of all, then bytes, rate and ETA in the message.
const BAR: &str = "{spinner} {elapsed_precise} [{bar:20}] {pos}/{len} files  {wide_msg}";

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
                    if s.files_total > 0 && !self.sized {
                        bar.set_style(style(BAR));
                        self.sized = true;
                    }
                    if s.files_total > 0 {
                        bar.set_length(s.files_total);
                        bar.set_position(s.files_done.min(s.files_total));
                    }
                    let mut msg =
                        format!("{}/{}", human_size(s.bytes_done), human_size(s.bytes_total));
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
                    bar.set_message(msg);
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
