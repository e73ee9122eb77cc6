//! Loading a policy: the inline `[[policy.rule]]` tables or the file `[policy] file` names,
//! all or nothing, every problem collected.

use std::path::Path;

use figment::Figment;
use figment::providers::{Format as _, Toml};
use figment::value::{Dict, Value};
use nlds_settings::PolicyConfig;

use crate::rule::Rule;
use crate::value::{Errors, canonical_dict, suggestion, type_name};
use crate::{Policy, PolicyError};

pub(crate) fn load(cfg: &PolicyConfig) -> Result<Policy, Vec<PolicyError>> {
    match &cfg.file {
        Some(file) if !cfg.rules.is_empty() => Err(vec![PolicyError {
            rule: String::new(),
            key: "policy.file".to_owned(),
            problem: format!(
                "names {} but [[policy.rule]] tables are set too: keep the rules in one place (the file, or the [[policy.rule]] tables)",
                file.display()
            ),
        }]),
        Some(file) => from_file(file),
        None => compile(&cfg.rules, None),
    }
}

fn file_error(file: &Path, key: &str, problem: String) -> Vec<PolicyError> {
    vec![PolicyError {
        rule: String::new(),
        key: key.to_owned(),
        problem: format!("{}: {problem}", file.display()),
    }]
}

/// A TOML file of `[[rule]]` tables.
fn from_file(file: &Path) -> Result<Policy, Vec<PolicyError>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        file_error(
            file,
            "policy.file",
            format!("cannot be read ({e}): point [policy] file at a TOML file of [[rule]] tables"),
        )
    })?;
    let top: Dict = Figment::from(Toml::string(&text))
        .extract()
        .map_err(|e| file_error(file, "policy.file", format!("is not valid TOML: {e}")))?;
    let mut errs = Vec::new();
    let mut rules = Vec::new();
    for (key, v) in &top {
        match (key.as_str(), v) {
            ("rule", Value::Array(_, items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Dict(_, d) => rules.push(d.clone()),
                        other => errs.push(PolicyError {
                            rule: format!("#{}", i + 1),
                            key: "rule".to_owned(),
                            problem: format!(
                                "must be a table ([[rule]]), found {}",
                                type_name(other)
                            ),
                        }),
                    }
                }
            }
            ("rule", other) => errs.push(PolicyError {
                rule: String::new(),
                key: "rule".to_owned(),
                problem: format!(
                    "must be a list of [[rule]] tables, found {}",
                    type_name(other)
                ),
            }),
            (other, _) => {
                let hint = suggestion(other, &["rule"])
                    .map(|s| format!(" (did you mean [[{s}]]?)"))
                    .unwrap_or_default();
                errs.push(PolicyError {
                    rule: String::new(),
                    key: other.to_owned(),
                    problem: format!(
                        "is not a key of a policy file, which holds [[rule]] tables{hint}"
                    ),
                });
            }
        }
    }
    let compiled = compile(&rules, Some(file));
    match compiled {
        Ok(p) if errs.is_empty() => Ok(p),
        Ok(_) => Err(in_file(errs, file)),
        Err(more) => {
            errs.extend(more);
            Err(in_file(errs, file))
        }
    }
}

/// Names the file in each error.
fn in_file(mut errs: Vec<PolicyError>, file: &Path) -> Vec<PolicyError> {
    for e in &mut errs {
        e.rule = if e.rule.is_empty() {
            format!("in {}", file.display())
        } else {
            format!("{} in {}", e.rule, file.display())
        };
    }
    errs
}

/// Compiles rule tables, in order (`source`: the file they came from; the caller names it in
/// errors).
fn compile(tables: &[Dict], source: Option<&Path>) -> Result<Policy, Vec<PolicyError>> {
    let mut errs = Errors::new();
    let mut rules: Vec<Rule> = Vec::with_capacity(tables.len());
    let mut names: Vec<Option<String>> = Vec::with_capacity(tables.len());
    for (i, table) in tables.iter().enumerate() {
        let rule = Rule::parse(table, i, &mut errs);
        // Duplicate names are checked on the names as written, even of rules with other errors.
        let name = match table.get("name") {
            Some(Value::String(_, n)) if !n.is_empty() => Some(n.clone()),
            _ => None,
        };
        if let Some(n) = &name
            && let Some(first) = names.iter().position(|m| m.as_ref() == Some(n))
        {
            errs.rule = n.clone();
            errs.push(
                "name",
                format!(
                    "is also the name of rule #{}: rule names must be unique (this is rule #{})",
                    first + 1,
                    i + 1
                ),
            );
        }
        names.push(name);
        if let Some(r) = rule {
            rules.push(r);
        }
    }
    if !errs.out.is_empty() {
        return Err(errs.out);
    }
    Ok(Policy {
        rules,
        fingerprint: fingerprint(tables),
        source: source.map(Path::to_path_buf),
    })
}

/// The fingerprint of rule tables as written.
pub(crate) fn fingerprint(tables: &[Dict]) -> u64 {
    let mut text = String::new();
    for t in tables {
        canonical_dict(t, &mut text);
    }
    fnv1a(text.as_bytes())
}

/// FNV-1a, 64 bits: a stable fingerprint of the rules as written.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
