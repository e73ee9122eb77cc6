//! The views of `stat`: the table and the failed paths (one record is shown by
//! [`crate::transaction::transaction_view`]).

use nlds_core::api::TransactionStatus;

use crate::format::{Align, Fit, Zone, col, opt, state_name, table, time};

/// The `stat` table: user, id, action, job label, label, done, state, last update. With a
/// `width`, the user, job label and label columns are shortened to fit (see [`shorten`]).
pub fn stat_table(records: &[TransactionStatus], zone: Zone, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|t| {
            vec![
                t.user.clone(),
                t.id.to_string(),
                t.api_action.to_string(),
                t.job_label.clone(),
                opt(t.label.as_deref()),
                format!("{}%", t.percent),
                state_name(t.state).to_owned(),
                time(&t.updated, zone),
            ]
        })
        .collect();
    table(
        &[
            col("user", Left, End),
            col("id", Right, Keep),
            col("action", Left, Keep),
            col("job label", Left, End),
            col("label", Left, End),
            col("done", Right, Keep),
            col("state", Left, Keep),
            col("last update", Left, Keep),
        ],
        &rows,
        width,
    )
}

/// `stat -F`: the failed files' paths, one per line, ready for `putlist`/`getlist`.
pub fn failed_paths(records: &[TransactionStatus]) -> String {
    let mut o = String::new();
    for f in records.iter().flat_map(|t| t.failed_files()) {
        o.push_str(&f.path);
        o.push('\n');
    }
    o
}
