//! How a transaction is shown once submitted: accepted, in progress (`--wait` without a
//! terminal) and in full. Shared by `stat`, `wait` and every command that can `--wait`.

use std::fmt::Write as _;

use nlds_core::State;
use nlds_core::api::{Accepted, ApiAction, TransactionStatus};
use uuid::Uuid;

use crate::format::{INDENT, Zone, human_size, kv, opt, printable, state_name, time};

/// An accepted put or get.
pub fn accepted_view(a: &Accepted) -> String {
    let mut o = format!("{} transaction accepted for processing.\n", a.api_action);
    kv(
        &mut o,
        INDENT,
        "transaction id",
        &a.transaction_id.to_string(),
    );
    kv(&mut o, INDENT, "action", a.api_action.as_str());
    kv(&mut o, INDENT, "job label", &a.job_label);
    kv(&mut o, INDENT, "holding id", &opt(a.holding_id));
    kv(&mut o, INDENT, "label", &opt(a.label.as_deref()));
    o
}

/// One transaction in full; `sub_records` (`-S`) adds its sub-records, `errors` (`-E`) its
/// failed files with their reasons.
pub fn transaction_view(
    t: &TransactionStatus,
    sub_records: bool,
    errors: bool,
    zone: Zone,
) -> String {
    let mut o = String::new();
    kv(&mut o, INDENT, "id", &t.id.to_string());
    kv(
        &mut o,
        INDENT,
        "transaction id",
        &t.transaction_id.to_string(),
    );
    kv(&mut o, INDENT, "user", &t.user);
    kv(&mut o, INDENT, "group", &t.group);
    kv(&mut o, INDENT, "action", t.api_action.as_str());
    kv(&mut o, INDENT, "job label", &t.job_label);
    kv(&mut o, INDENT, "label", &opt(t.label.as_deref()));
    kv(&mut o, INDENT, "holding id", &opt(t.holding_id));
    kv(&mut o, INDENT, "creation time", &time(&t.created, zone));
    kv(&mut o, INDENT, "state", state_name(t.state));
    let warnings = if t.warnings.is_empty() {
        "(none)".to_owned()
    } else {
        t.warnings.join("\n")
    };
    kv(&mut o, INDENT, "warnings", &warnings);
    kv(&mut o, INDENT, "last update", &time(&t.updated, zone));
    if let Some(why) = waiting_summary(t, zone) {
        kv(&mut o, INDENT, "waiting", &why);
    }
    kv(&mut o, INDENT, "complete", &format!("{}%", t.percent));
    kv(
        &mut o,
        INDENT,
        "files",
        &format!(
            "{} of {} done, {} failed",
            t.files_done, t.files_total, t.files_failed
        ),
    );
    if let Some(summary) = put_summary(t) {
        kv(&mut o, INDENT, "put", &summary);
    }
    if let Some(of) = t.retry_of {
        kv(&mut o, INDENT, "retry of", &of.to_string());
    }
    if !t.retried_by.is_empty() {
        let by: Vec<String> = t.retried_by.iter().map(Uuid::to_string).collect();
        kv(&mut o, INDENT, "retried by", &by.join("\n"));
    }
    kv(
        &mut o,
        INDENT,
        "size",
        &format!(
            "{} of {}",
            human_size(t.bytes_done),
            human_size(t.bytes_total)
        ),
    );
    if sub_records {
        let subs: Vec<_> = t
            .sub_records
            .iter()
            .filter(|s| s.state != State::Split)
            .collect();
        kv(
            &mut o,
            INDENT,
            "sub records",
            if subs.is_empty() { "(none)" } else { "->" },
        );
        for s in subs {
            kv(&mut o, "        + ", "id", &s.id.to_string());
            let ind = "          ";
            kv(&mut o, ind, "sub id", &s.sub_id.to_string());
            kv(&mut o, ind, "state", state_name(s.state));
            kv(&mut o, ind, "last update", &time(&s.last_updated, zone));
            kv(&mut o, ind, "files", &s.files.to_string());
            kv(&mut o, ind, "size", &human_size(s.bytes));
            if let Some(w) = &s.waiting {
                kv(&mut o, ind, "waiting", &w.describe(|t| time(t, zone)));
            }
        }
    }
    if errors {
        let failed: Vec<_> = t.failed_files().collect();
        kv(
            &mut o,
            INDENT,
            "failed files",
            if failed.is_empty() { "(none)" } else { "->" },
        );
        for f in failed {
            kv(&mut o, "        + ", "path", &printable(&f.path));
            kv(&mut o, "          ", "code", f.code.as_str());
            kv(&mut o, "          ", "reason", &printable(&f.reason));
        }
    }
    o
}

/// Why the unfinished batches of `t` wait, one line per distinct reason with the number of
/// batches it holds (`2 batches: waiting for the tape stage of aggregate ...`); `None` when none
/// waits.
pub fn waiting_summary(t: &TransactionStatus, zone: Zone) -> Option<String> {
    let mut lines: Vec<(String, usize)> = Vec::new();
    for w in t.sub_records.iter().filter_map(|s| s.waiting.as_ref()) {
        let text = w.describe(|t| time(t, zone));
        match lines.iter_mut().find(|(l, _)| *l == text) {
            Some((_, n)) => *n += 1,
            None => lines.push((text, 1)),
        }
    }
    if lines.is_empty() {
        return None;
    }
    let one = lines.len() == 1 && lines[0].1 == 1;
    Some(
        lines
            .into_iter()
            .map(|(text, n)| match (one, n) {
                (true, _) => text,
                (false, 1) => format!("1 batch: {text}"),
                (false, n) => format!("{n} batches: {text}"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The most telling reason a batch of `t` waits, short, for a progress line: a cancel, a retry
/// or a tape stage (a batch merely queued for its next step says nothing new).
pub fn waiting_note(t: &TransactionStatus) -> Option<String> {
    use nlds_core::waiting::Waiting;
    let rank = |w: &Waiting| match w {
        Waiting::Cancelled { .. } => 3,
        Waiting::Retrying(_) => 2,
        Waiting::Tape { .. } => 1,
        Waiting::Queued { .. } => 0,
    };
    let w = t
        .sub_records
        .iter()
        .filter_map(|s| s.waiting.as_ref())
        .max_by_key(|w| rank(w))?;
    match w {
        Waiting::Queued { .. } => None,
        Waiting::Cancelled { .. } => Some("cancelled, ending".to_owned()),
        Waiting::Retrying(r) => Some(format!(
            "retry {} of {} of {} at {} after {}",
            r.retry,
            r.of,
            r.step,
            r.next_try.format("%H:%M:%SZ"),
            r.code.as_str()
        )),
        Waiting::Tape {
            aggregate, staging, ..
        } => Some(format!(
            "waiting for tape ({aggregate}, {})",
            if *staging {
                "staging"
            } else {
                "queued for a slot"
            }
        )),
    }
}

/// What a put did with paths its holding already had (docs/VERSIONS.md), e.g. `2 new, 3 new
/// versions, 95 unchanged (skipped)`; `None` for other actions and for puts of new paths only.
pub fn put_summary(t: &TransactionStatus) -> Option<String> {
    let put = matches!(t.api_action, ApiAction::Put | ApiAction::Putlist);
    if !put || (t.files_skipped == 0 && t.files_new_versions == 0) {
        return None;
    }
    let new = t.files_done.saturating_sub(t.files_new_versions);
    Some(format!(
        "{new} new, {} new version{}, {} unchanged (skipped)",
        t.files_new_versions,
        if t.files_new_versions == 1 { "" } else { "s" },
        t.files_skipped
    ))
}

/// One line of `--wait` progress (without a terminal).
pub fn progress_line(t: &TransactionStatus) -> String {
    let mut line = format!(
        "{}: {} files {}/{}, {}/{}",
        t.transaction_id,
        state_name(t.state),
        t.files_done,
        t.files_total,
        human_size(t.bytes_done),
        human_size(t.bytes_total)
    );
    if t.files_failed > 0 {
        let _ = write!(line, ", {} failed", t.files_failed);
    }
    if let Some(note) = waiting_note(t) {
        let _ = write!(line, ", {note}");
    }
    line
}
