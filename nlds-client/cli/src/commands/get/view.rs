//! The view of `get --dry-run`.

use std::fmt::Write as _;

use nlds_core::PathKind;
use nlds_core::api::{GetPlan, GetRequest};

use crate::format::{
    Align, Fit, INDENT, col, holding_selector, human_size, kv, problems_list, table,
};
use nlds_client::local::{DestAction, Destination};

/// `get --dry-run`: what would be sent, the files the server would restore and what would
/// happen at each destination, and the requested paths that match nothing.
pub fn get_plan_view(
    req: &GetRequest,
    plan: &GetPlan,
    dests: &[Destination],
    width: Option<usize>,
) -> String {
    use Align::*;
    use Fit::*;
    let mut o = String::from("Dry run: nothing was restored.\n");
    let action = if req.paths.len() == 1 && !req.regex {
        "get"
    } else {
        "getlist"
    };
    kv(&mut o, INDENT, "action", action);
    kv(
        &mut o,
        INDENT,
        "group",
        req.group.as_deref().unwrap_or("(your first group)"),
    );
    let mut holding = holding_selector(req.label.as_deref(), req.holding_id, &req.tags)
        .unwrap_or_else(|| "any (the newest copy of each path)".to_owned());
    if req.groupall {
        holding.push_str("; the whole group's holdings");
    }
    kv(&mut o, INDENT, "holding", &holding);
    if req.regex {
        kv(&mut o, INDENT, "regex", &req.paths.join("\n"));
    }
    kv(
        &mut o,
        INDENT,
        "target",
        &plan
            .target
            .clone()
            .or_else(|| req.target.clone())
            .map(|t| format!("{t} (files go to TARGET/original/path)"))
            .unwrap_or_else(|| "(the original paths)".to_owned()),
    );
    kv(
        &mut o,
        INDENT,
        "existing files",
        if req.overwrite {
            "replaced if different (--overwrite)"
        } else {
            "kept (--no-clobber): identical ones are skipped, different ones fail"
        },
    );
    let kind = |k: PathKind| plan.files.iter().filter(|f| f.kind == k).count();
    kv(
        &mut o,
        INDENT,
        "would get",
        &format!(
            "{} entries ({} files, {} directories, {} links): {} ({} bytes)",
            plan.files_total,
            kind(PathKind::File),
            kind(PathKind::Directory),
            kind(PathKind::Link),
            human_size(plan.bytes_total),
            plan.bytes_total
        ),
    );
    let count = |a: DestAction| dests.iter().filter(|d| d.action == a).count();
    kv(
        &mut o,
        INDENT,
        "destinations",
        &format!(
            "{} new, {} identical (skipped), {} different ({}), {} other existing",
            count(DestAction::Restore),
            count(DestAction::Skip),
            count(DestAction::Conflict) + count(DestAction::Overwrite),
            if req.overwrite {
                "overwritten"
            } else {
                "would fail"
            },
            count(DestAction::Exists),
        ),
    );
    kv(
        &mut o,
        INDENT,
        "not found",
        &if plan.missing.is_empty() {
            "(none)".to_owned()
        } else {
            format!("{} path(s) (listed below)", plan.missing.len())
        },
    );
    if !plan.files.is_empty() {
        o.push('\n');
        let rows: Vec<Vec<String>> = plan
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                vec![
                    f.holding_id.to_string(),
                    f.label.clone(),
                    if f.kind == PathKind::File {
                        human_size(f.size)
                    } else {
                        f.kind.as_str().to_owned()
                    },
                    f.path.clone(),
                    dests
                        .get(i)
                        .map(|d| d.action.as_str().to_owned())
                        .unwrap_or_default(),
                ]
            })
            .collect();
        o.push_str(&table(
            &[
                col("h-id", Right, Keep),
                col("h-label", Left, End),
                col("size", Right, Keep),
                col("path", Left, Start),
                col("at destination", Left, Keep),
            ],
            &rows,
            width,
        ));
        if (plan.files.len() as u64) < plan.files_total {
            let _ = writeln!(
                o,
                "(showing {} of {} files)",
                plan.files.len(),
                plan.files_total
            );
        }
    }
    problems_list(
        &mut o,
        &format!(
            "Not found ({}): nothing stored matches these",
            plan.missing.len()
        ),
        &plan.missing,
    );
    let conflicts = count(DestAction::Conflict);
    if conflicts > 0 {
        let _ = writeln!(
            o,
            "\n{conflicts} file(s) exist with different content: the get would fail for them;\n\
             --overwrite replaces them."
        );
    }
    o
}
