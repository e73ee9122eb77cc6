//! Showing the progress of `--wait`: a progress bar on a terminal, one line per change otherwise.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use uuid::Uuid;

use crate::format::{human_size, state_name};
use crate::transaction::progress_line;
use nlds_client::client::WaitProgress;

enum Mode {
    /// A bar drawn on standard error.
    Bar(ProgressBar),
    /// Plain lines, written when something changed.
    Lines,
    Silent,
}

/// Receives [`WaitProgress`] reports and shows them.
pub struct Reporter {
    mode: Mode,
    transaction_id: Uuid,
    last: Option<String>,
}

impl Reporter {
    /// A bar when standard error is a `terminal`, plain lines when not, nothing when `silent`.
    pub fn new(transaction_id: Uuid, terminal: bool, silent: bool) -> Self {
        let mode = if silent {
            Mode::Silent
        } else if terminal {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:20}] {pos}/{len} files  {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
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
        }
    }

    /// Shows one report; plain lines go to `err`.
    pub fn update(&mut self, p: WaitProgress<'_>, err: &mut dyn Write) {
        match &self.mode {
            Mode::Silent => {}
            Mode::Bar(bar) => match p {
                WaitProgress::Queued => bar.set_message("QUEUED"),
                WaitProgress::Status(s) => {
                    bar.set_length(s.files_total);
                    bar.set_position(s.files_done.min(s.files_total));
                    let mut msg = format!(
                        "{}/{}  {}",
                        human_size(s.bytes_done),
                        human_size(s.bytes_total),
                        state_name(s.state)
                    );
                    if s.files_failed > 0 {
                        msg.push_str(&format!("  {} failed", s.files_failed));
                    }
                    bar.set_message(msg);
                }
                WaitProgress::Unreachable(e) => {
                    bar.set_message(format!("server unreachable, still waiting ({e})"))
                }
            },
            Mode::Lines => {
                let line = match p {
                    WaitProgress::Queued => format!("{}: QUEUED", self.transaction_id),
                    WaitProgress::Status(s) => progress_line(s),
                    WaitProgress::Unreachable(e) => {
                        format!(
                            "{}: server unreachable, still waiting: {e}",
                            self.transaction_id
                        )
                    }
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

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}
