//! The views of `list`: the holdings table and one holding in full.

use nlds_core::api::HoldingSummary;

use crate::format::{
    Align, Fit, INDENT, Zone, col, human_size, kv, last_access, table, tags_text, time,
};

/// The `list` table: user, id, label, ingest time, files, size; with a `width`, the user and
/// label columns are shortened to fit.
pub fn holdings_table(holdings: &[HoldingSummary], zone: Zone, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    let rows: Vec<Vec<String>> = holdings
        .iter()
        .map(|h| {
            vec![
                h.user.clone(),
                h.id.to_string(),
                h.label.clone(),
                time(&h.created, zone),
                h.files.to_string(),
                human_size(h.bytes),
            ]
        })
        .collect();
    table(
        &[
            col("user", Left, End),
            col("id", Right, Keep),
            col("label", Left, End),
            col("ingest time", Left, Keep),
            col("files", Right, Keep),
            col("size", Right, Keep),
        ],
        &rows,
        width,
    )
}

/// One holding in full.
pub fn holding_view(h: &HoldingSummary, zone: Zone) -> String {
    let mut o = String::new();
    kv(&mut o, INDENT, "id", &h.id.to_string());
    kv(&mut o, INDENT, "label", &h.label);
    kv(&mut o, INDENT, "user", &h.user);
    kv(&mut o, INDENT, "group", &h.group);
    kv(&mut o, INDENT, "ingest time", &time(&h.created, zone));
    kv(
        &mut o,
        INDENT,
        "last access",
        &last_access(h.last_access.as_ref(), zone),
    );
    kv(&mut o, INDENT, "files", &h.files.to_string());
    kv(&mut o, INDENT, "size", &human_size(h.bytes));
    kv(&mut o, INDENT, "tags", &tags_text(&h.tags));
    let txs = if h.transactions.is_empty() {
        "(none)".to_owned()
    } else {
        h.transactions
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    kv(&mut o, INDENT, "transaction id", &txs);
    o
}
