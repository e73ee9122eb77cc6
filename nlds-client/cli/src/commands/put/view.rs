//! The view of `put --dry-run`.

use std::fmt::Write as _;

use nlds_core::api::{PutPlan, PutRequest};
use nlds_core::versions::{EntryVerdict, Verdict};

use crate::format::{
    Align, Fit, INDENT, col, human_size, kv, printable, problems_list, table, tags_text,
};
use nlds_client::local::{AlreadyStored, LocalScan};

/// What the put would do with each entry (the server's classification), and the counts:
/// `2 new, 3 changed (new versions), 14 unchanged (skipped)`.
fn verdicts_view(o: &mut String, verdicts: &[EntryVerdict]) {
    let count = |want: &Verdict| verdicts.iter().filter(|v| &v.verdict == want).count();
    kv(
        o,
        INDENT,
        "sync",
        &format!(
            "{} new, {} changed (new versions), {} unchanged (skipped)",
            count(&Verdict::New),
            count(&Verdict::Changed),
            count(&Verdict::Unchanged)
        ),
    );
    for v in verdicts {
        let what = match v.verdict {
            Verdict::Changed => "changed (new version)",
            Verdict::Unchanged => "unchanged (skipped)",
            _ => "new",
        };
        let _ = writeln!(o, "{INDENT}  {what:<26} {}", printable(&v.path));
    }
}

/// `put --dry-run`: what would be sent, the holding the server would use, what the local walk
/// found under each path (counts, sizes, and the entries the put would fail for), and the entries
/// that the holding already has (`already`, when it was asked).
pub fn put_plan_view(
    req: &PutRequest,
    plan: &PutPlan,
    scan: &LocalScan,
    already: Option<&AlreadyStored>,
    width: Option<usize>,
) -> String {
    use Align::*;
    use Fit::*;
    let mut o = String::from("Dry run: nothing was sent to be stored.\n");
    let action = if req.paths.len() == 1 {
        "put"
    } else {
        "putlist"
    };
    kv(&mut o, INDENT, "action", action);
    kv(&mut o, INDENT, "group", &plan.group);
    let holding = match (&plan.holding, &plan.new_label) {
        (Some(h), _) => format!(
            "{} ({}): existing, {} files, {}",
            h.id,
            h.label,
            h.files,
            human_size(h.bytes)
        ),
        (None, Some(l)) if req.label.is_some() => format!("new holding labelled {l:?}"),
        (None, Some(l)) => format!("new holding with a generated label (like {l:?})"),
        (None, None) => "new holding".to_owned(),
    };
    kv(&mut o, INDENT, "holding", &holding);
    if !req.tags.is_empty() {
        kv(&mut o, INDENT, "tags", &tags_text(&req.tags));
    }
    kv(
        &mut o,
        INDENT,
        "job label",
        req.job_label.as_deref().unwrap_or("(default)"),
    );
    let found = scan.found();
    kv(
        &mut o,
        INDENT,
        "paths",
        &format!(
            "{} given: {} found, {} missing or unreadable",
            scan.paths.len(),
            found,
            scan.paths.len() - found
        ),
    );
    let t = &scan.total;
    if !plan.verdicts.is_empty() {
        verdicts_view(&mut o, &plan.verdicts);
    }
    kv(
        &mut o,
        INDENT,
        "would put",
        &format!(
            "{} files, {} directories, {} links: {} ({} bytes)",
            t.files,
            t.directories,
            t.links,
            human_size(t.bytes),
            t.bytes
        ),
    );
    kv(
        &mut o,
        INDENT,
        "problems",
        &if scan.problems.is_empty() {
            "(none)".to_owned()
        } else {
            format!("{} (listed below)", scan.problems.len())
        },
    );
    if let Some(h) = &plan.holding
        && scan.found() > 0
    {
        let text = match already {
            Some(a) if a.total == 0 => "(none)".to_owned(),
            Some(a) => format!(
                "{} of these entries are already in holding {}: the put would fail for them",
                a.total, h.id
            ),
            None => format!(
                "not checked (more than {} paths)",
                nlds_client::local::MAX_CHECKED_PATHS
            ),
        };
        kv(&mut o, INDENT, "already stored", &text);
    }
    o.push('\n');
    let rows: Vec<Vec<String>> = scan
        .paths
        .iter()
        .map(|p| {
            let n = |v: u64| {
                if p.kind.is_found() {
                    v.to_string()
                } else {
                    "-".into()
                }
            };
            vec![
                p.path.clone(),
                p.kind.as_str().to_owned(),
                n(p.counts.files),
                n(p.counts.directories),
                n(p.counts.links),
                if p.kind.is_found() {
                    human_size(p.counts.bytes)
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    o.push_str(&table(
        &[
            col("path", Left, Start),
            col("type", Left, Keep),
            col("files", Right, Keep),
            col("dirs", Right, Keep),
            col("links", Right, Keep),
            col("size", Right, Keep),
        ],
        &rows,
        width,
    ));
    problems_list(
        &mut o,
        &format!(
            "Problems ({}): the put would fail for these",
            scan.problems.len()
        ),
        &scan.problems,
    );
    if let Some(a) = already.filter(|a| a.total > 0) {
        let shown = if (a.examples.len() as u64) < a.total {
            format!(", the first {}", a.examples.len())
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "\nAlready in holding {} ({}{shown}):",
            a.holding_id, a.total
        );
        for p in &a.examples {
            let _ = writeln!(o, "{INDENT}{}", printable(p));
        }
    }
    o
}
