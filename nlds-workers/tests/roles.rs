//! The worker roles are one list: `Role::ALL`. `nlds-workers --help`, the README, the process
//! table of ARCHITECTURE.md and the Helm chart must name exactly those roles.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use nlds_core::Role;

fn roles() -> Vec<&'static str> {
    Role::ALL.iter().map(|r| r.as_str()).collect()
}

fn sorted<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
    names.into_iter().collect()
}

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The text between `<!-- roles:begin ... -->` and `<!-- roles:end -->`.
fn marked(text: &str, file: &str) -> String {
    let begin = text
        .find("<!-- roles:begin")
        .unwrap_or_else(|| panic!("{file}: no <!-- roles:begin --> marker"));
    let body = &text[begin..];
    let body = &body[body.find("-->").expect("marker closes") + 3..];
    let end = body
        .find("<!-- roles:end -->")
        .unwrap_or_else(|| panic!("{file}: no <!-- roles:end --> marker"));
    body[..end].to_owned()
}

/// Every `code span` of `text`.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[test]
fn help_lists_every_role_in_order() {
    let out = Command::new(env!("CARGO_BIN_EXE_nlds-workers"))
        .arg("--help")
        .output()
        .expect("run nlds-workers --help");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).expect("utf-8 help");
    // clap's long help lists the possible values one per line: `- name: help`.
    let listed: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(|l| l.split(':').next().unwrap_or(l).trim())
        .filter(|name| !["all", "migrate"].contains(name))
        .collect();
    assert_eq!(listed, roles(), "nlds-workers --help:\n{help}");
}

#[test]
fn the_readme_lists_every_role() {
    let readme = repo_file("README.md");
    let list = marked(&readme, "README.md");
    let listed = code_spans(&list);
    assert_eq!(sorted(listed.iter().copied()), sorted(roles()));
    assert_eq!(listed.len(), Role::ALL.len(), "README lists a role twice");
}

#[test]
fn the_architecture_process_table_names_every_role() {
    let doc = repo_file("ARCHITECTURE.md");
    let table = marked(&doc, "ARCHITECTURE.md");
    // The first cell of each row names its processes: `nlds-workers router`, `transfer-get`, ...
    let mut named = Vec::new();
    for row in table.lines().filter(|l| l.starts_with('|')) {
        let first = row.split('|').nth(1).unwrap_or_default();
        for span in code_spans(first) {
            if span.starts_with("nlds-server") {
                continue;
            }
            named.push(span.strip_prefix("nlds-workers ").unwrap_or(span));
        }
    }
    assert_eq!(sorted(named.iter().copied()), sorted(roles()));
    assert_eq!(
        named.len(),
        Role::ALL.len(),
        "ARCHITECTURE names a role twice"
    );
}

#[test]
fn the_chart_deploys_every_role() {
    let values = repo_file("charts/nlds/values.yaml");
    // The keys of the top-level `workers:` map (two-space indented), one Deployment each.
    let mut keys = Vec::new();
    let mut inside = false;
    for line in values.lines() {
        if !line.starts_with([' ', '#']) && !line.is_empty() {
            inside = line == "workers:";
            continue;
        }
        if inside
            && let Some(key) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !key.starts_with([' ', '#'])
        {
            keys.push(key);
        }
    }
    assert_eq!(keys, roles(), "charts/nlds/values.yaml workers:");

    // The hot-tier roles are roles too.
    let hot = values
        .split("\nhotTier:\n")
        .nth(1)
        .expect("hotTier in values.yaml");
    let hot = hot.split("\n  roles:\n").nth(1).expect("hotTier.roles");
    for line in hot.lines().take_while(|l| l.starts_with("    - ")) {
        let role = line.trim_start_matches("    - ").trim();
        assert!(roles().contains(&role), "hotTier.roles names {role:?}");
    }
}
