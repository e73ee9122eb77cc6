//! Reading the rules as written (figment values): type names for errors, strings and lists,
//! and the error collector that names the rule and the key.

use figment::value::{Dict, Value};

use crate::PolicyError;

/// The key TOML's date-times arrive under when read through figment (an unquoted
/// `until = 2027-06-30T00:00:00Z`).
const TOML_DATETIME: &str = "$__toml_private_datetime";

/// Collects every problem of a policy, each naming the rule and the key.
pub(crate) struct Errors {
    pub(crate) out: Vec<PolicyError>,
    /// How the rule being read is named in errors: `keep-hot`, or `#3` before its name is known.
    pub(crate) rule: String,
}

impl Errors {
    pub(crate) fn new() -> Self {
        Self {
            out: Vec::new(),
            rule: String::new(),
        }
    }

    pub(crate) fn push(&mut self, key: &str, problem: impl Into<String>) {
        self.out.push(PolicyError {
            rule: self.rule.clone(),
            key: key.to_owned(),
            problem: problem.into(),
        });
    }
}

/// "a string", "a list", ... for "must be X, found Y".
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(..) => "a string",
        Value::Char(..) => "a character",
        Value::Bool(..) => "a boolean",
        Value::Num(..) => "a number",
        Value::Empty(..) => "an empty value",
        Value::Dict(_, d) if toml_datetime(d).is_some() => "a date-time",
        Value::Dict(..) => "a table",
        Value::Array(..) => "a list",
    }
}

/// The text of a TOML date-time as figment hands it over, if `d` is one.
pub(crate) fn toml_datetime(d: &Dict) -> Option<&str> {
    match (d.len(), d.get(TOML_DATETIME)) {
        (1, Some(Value::String(_, s))) => Some(s),
        _ => None,
    }
}

/// A string, or the error "must be a string".
pub(crate) fn string<'v>(
    v: &'v Value,
    key: &str,
    what: &str,
    errs: &mut Errors,
) -> Option<&'v str> {
    match v {
        Value::String(_, s) => Some(s),
        other => {
            errs.push(key, format!("must be {what}, found {}", type_name(other)));
            None
        }
    }
}

/// One string or a non-empty list of strings ("any of").
pub(crate) fn strings<'v>(
    v: &'v Value,
    key: &str,
    what: &str,
    errs: &mut Errors,
) -> Option<Vec<&'v str>> {
    match v {
        Value::String(_, s) => Some(vec![s.as_str()]),
        Value::Array(_, items) if items.is_empty() => {
            errs.push(key, "is an empty list, which matches nothing: remove the key or name at least one value");
            None
        }
        Value::Array(_, items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(_, s) => out.push(s.as_str()),
                    other => errs.push(
                        &format!("{key}[{i}]"),
                        format!("must be {what}, found {}", type_name(other)),
                    ),
                }
            }
            (out.len() == items.len()).then_some(out)
        }
        other => {
            errs.push(
                key,
                format!(
                    "must be {what} or a list of them, found {}",
                    type_name(other)
                ),
            );
            None
        }
    }
}

/// The closest of `known` to `key`, if one is close enough to be a likely typo.
pub(crate) fn suggestion<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// A stable text form of a value (keys in order), for the policy's fingerprint.
pub(crate) fn canonical(v: &Value, out: &mut String) {
    use std::fmt::Write as _;
    match v {
        Value::String(_, s) => {
            let _ = write!(out, "{s:?}");
        }
        Value::Char(_, c) => {
            let _ = write!(out, "{c:?}");
        }
        Value::Bool(_, b) => {
            let _ = write!(out, "{b}");
        }
        Value::Num(_, n) => {
            let _ = write!(out, "{n:?}");
        }
        Value::Empty(..) => out.push_str("()"),
        Value::Dict(_, d) => canonical_dict(d, out),
        Value::Array(_, items) => {
            out.push('[');
            for item in items {
                canonical(item, out);
                out.push(',');
            }
            out.push(']');
        }
    }
}

pub(crate) fn canonical_dict(d: &Dict, out: &mut String) {
    out.push('{');
    for (k, v) in d {
        out.push_str(k);
        out.push('=');
        canonical(v, out);
        out.push(',');
    }
    out.push('}');
}
