//! Conditions: what a rule (or a table inside its `all`/`any`) asks of a file. The keys of one
//! table are ANDed; `all` is a list of tables that must all match, `any` a list of which one
//! must match. A list value (`group = ["a", "b"]`) matches any of its values.

use chrono::{DateTime, TimeDelta, Utc};
use figment::value::{Dict, Value};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::FileFacts;
use crate::units;
use crate::value::{Errors, strings, suggestion, type_name};

/// The condition keys, in the order docs/POLICY.md lists them.
pub(crate) const CONDITION_KEYS: &[&str] = &[
    "age", "age_max", "idle", "idle_max", "size_min", "size_max", "path", "label", "tag", "user",
    "group", "tenancy", "tiers", "all", "any",
];

/// The keys a rule has besides its conditions (not allowed inside `all`/`any`).
pub(crate) const RULE_KEYS: &[&str] = &["name", "action", "until", "description"];

/// Which tiers hold a copy of a file, as a bit set of the four states (for `tiers` and for
/// telling whether a rule can ever apply).
pub(crate) type Tiers = u8;
pub(crate) const WARM_ONLY: Tiers = 1;
pub(crate) const COLD_ONLY: Tiers = 2;
pub(crate) const BOTH: Tiers = 4;
pub(crate) const NEITHER: Tiers = 8;
pub(crate) const ANY_TIERS: Tiers = WARM_ONLY | COLD_ONLY | BOTH | NEITHER;

/// The tier state of a file.
pub(crate) fn tiers_of(f: &FileFacts<'_>) -> Tiers {
    match (f.warm, f.cold) {
        (true, false) => WARM_ONLY,
        (false, true) => COLD_ONLY,
        (true, true) => BOTH,
        (false, false) => NEITHER,
    }
}

/// The words of `tiers = ...`.
const TIER_WORDS: &[(&str, Tiers)] = &[
    ("warm-only", WARM_ONLY),
    ("cold-only", COLD_ONLY),
    ("both", BOTH),
    ("warm", WARM_ONLY | BOTH),
    ("cold", COLD_ONLY | BOTH),
];

/// Names a tier set for errors: "warm-only, both".
pub(crate) fn tiers_text(t: Tiers) -> String {
    let mut out = Vec::new();
    for (word, bit) in [
        ("warm-only", WARM_ONLY),
        ("cold-only", COLD_ONLY),
        ("both", BOTH),
        ("no copy", NEITHER),
    ] {
        if t & bit != 0 {
            out.push(word);
        }
    }
    if out.is_empty() {
        "no".to_owned()
    } else {
        out.join(", ")
    }
}

/// `tag = "key=value"` (that value) or `tag = "key"` (present with any value).
#[derive(Debug, Clone)]
struct TagTest {
    key: String,
    value: Option<String>,
}

/// One table of conditions, compiled: every present key must hold.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    /// The tier states this table accepts (`ANY_TIERS` without `tiers`).
    tiers: Tiers,
    size_min: Option<u64>,
    size_max: Option<u64>,
    /// Time since ingest: at least `age`, less than `age_max`.
    age_min: Option<TimeDelta>,
    age_max: Option<TimeDelta>,
    /// Time since the last access (since ingest if never accessed).
    idle_min: Option<TimeDelta>,
    idle_max: Option<TimeDelta>,
    users: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    tenancies: Option<Vec<String>>,
    tags: Option<Vec<TagTest>>,
    path: Option<GlobSet>,
    label: Option<GlobSet>,
    all: Vec<Condition>,
    /// Empty: no `any` key (an empty `any` list is refused when loading).
    any: Vec<Condition>,
}

impl Condition {
    /// Reads the condition keys of `table`. `extra` are the other keys allowed at this level
    /// (a rule's `name`, `action`, ...), skipped here; `at` prefixes key names in errors
    /// (`any[1].`).
    pub(crate) fn parse(table: &Dict, extra: &[&str], at: &str, errs: &mut Errors) -> Self {
        let mut c = Condition {
            tiers: ANY_TIERS,
            size_min: None,
            size_max: None,
            age_min: None,
            age_max: None,
            idle_min: None,
            idle_max: None,
            users: None,
            groups: None,
            tenancies: None,
            tags: None,
            path: None,
            label: None,
            all: Vec::new(),
            any: Vec::new(),
        };
        for (key, v) in table {
            let k = format!("{at}{key}");
            let k = k.as_str();
            match key.as_str() {
                "age" => c.age_min = units::duration(v, k, errs),
                "age_max" => c.age_max = units::duration(v, k, errs),
                "idle" => c.idle_min = units::duration(v, k, errs),
                "idle_max" => c.idle_max = units::duration(v, k, errs),
                "size_min" => c.size_min = units::size(v, k, errs),
                "size_max" => c.size_max = units::size(v, k, errs),
                "user" => c.users = owned(strings(v, k, "a user name", errs)),
                "group" => c.groups = owned(strings(v, k, "a group name", errs)),
                "tenancy" => {
                    c.tenancies = owned(strings(
                        v,
                        k,
                        "a tenancy name (\"default\" for the default object store)",
                        errs,
                    ))
                }
                "tag" => {
                    c.tags = strings(v, k, "a tag (\"key=value\" or \"key\")", errs)
                        .and_then(|t| tags(&t, k, errs))
                }
                "path" => {
                    c.path =
                        strings(v, k, "a path glob", errs).and_then(|g| path_globs(&g, k, errs))
                }
                "label" => {
                    c.label =
                        strings(v, k, "a label glob", errs).and_then(|g| globs(&g, k, false, errs))
                }
                "tiers" => {
                    if let Some(t) = strings(
                        v,
                        k,
                        "one of \"warm-only\", \"cold-only\", \"both\", \"warm\", \"cold\"",
                        errs,
                    )
                    .and_then(|w| tiers(&w, k, errs))
                    {
                        c.tiers = t;
                    }
                }
                "all" => c.all = nested(v, k, errs),
                "any" => c.any = nested(v, k, errs),
                _ if extra.contains(&key.as_str()) => {}
                _ if RULE_KEYS.contains(&key.as_str()) => {
                    errs.push(
                        k,
                        format!(
                            "belongs at the top of a rule, not inside {}",
                            at.trim_end_matches('.')
                        ),
                    );
                }
                _ => {
                    let mut known: Vec<&str> = CONDITION_KEYS.to_vec();
                    known.extend_from_slice(extra);
                    let hint = match suggestion(key, &known) {
                        Some(s) => format!(" (did you mean `{s}`?)"),
                        None => format!(" (the keys are {})", known.join(", ")),
                    };
                    errs.push(k, format!("is not a policy key{hint}"));
                }
            }
        }
        if let (Some(lo), Some(hi)) = (c.size_min, c.size_max)
            && lo > hi
        {
            errs.push(
                &format!("{at}size_min"),
                format!("{lo} bytes is more than size_max ({hi} bytes): no file can match"),
            );
        }
        for (lo, hi, lo_key, hi_key) in [
            (c.age_min, c.age_max, "age", "age_max"),
            (c.idle_min, c.idle_max, "idle", "idle_max"),
        ] {
            if let (Some(lo), Some(hi)) = (lo, hi)
                && lo >= hi
            {
                errs.push(
                    &format!("{at}{lo_key}"),
                    format!(
                        "{} is not less than {hi_key} ({}): no file can match",
                        human(lo),
                        human(hi)
                    ),
                );
            }
        }
        c
    }

    /// Whether `f` meets every key at `now`. Cheap tests first; no allocation.
    #[inline]
    pub(crate) fn matches(&self, f: &FileFacts<'_>, now: DateTime<Utc>) -> bool {
        if self.tiers & tiers_of(f) == 0 {
            return false;
        }
        if self.size_min.is_some_and(|m| f.size < m) || self.size_max.is_some_and(|m| f.size > m) {
            return false;
        }
        if self.age_min.is_some() || self.age_max.is_some() {
            let age = now - f.ingested;
            if self.age_min.is_some_and(|m| age < m) || self.age_max.is_some_and(|m| age >= m) {
                return false;
            }
        }
        if self.idle_min.is_some() || self.idle_max.is_some() {
            let idle = now - f.last_access.unwrap_or(f.ingested);
            if self.idle_min.is_some_and(|m| idle < m) || self.idle_max.is_some_and(|m| idle >= m) {
                return false;
            }
        }
        if let Some(users) = &self.users
            && !users.iter().any(|u| u == f.user)
        {
            return false;
        }
        if let Some(groups) = &self.groups
            && !groups.iter().any(|g| g == f.group)
        {
            return false;
        }
        if let Some(tenancies) = &self.tenancies {
            let t = f.tenancy.unwrap_or("default");
            if !tenancies.iter().any(|x| x == t) {
                return false;
            }
        }
        if let Some(tests) = &self.tags
            && !tests.iter().any(|t| {
                f.tags
                    .iter()
                    .any(|(k, v)| *k == t.key && t.value.as_ref().is_none_or(|want| want == v))
            })
        {
            return false;
        }
        if let Some(g) = &self.label
            && !g.is_match(f.label)
        {
            return false;
        }
        if let Some(g) = &self.path
            && !g.is_match(f.path)
        {
            return false;
        }
        if !self.all.iter().all(|c| c.matches(f, now)) {
            return false;
        }
        self.any.is_empty() || self.any.iter().any(|c| c.matches(f, now))
    }

    /// The tier states in which this table can match at all.
    pub(crate) fn feasible_tiers(&self) -> Tiers {
        let mut t = self.tiers;
        for c in &self.all {
            t &= c.feasible_tiers();
        }
        if !self.any.is_empty() {
            t &= self.any.iter().fold(0, |acc, c| acc | c.feasible_tiers());
        }
        t
    }

    /// The times after `now` at which a time condition of this table (or a nested one) flips
    /// for `f` if nothing else changes: an age or idle threshold is crossed.
    pub(crate) fn thresholds(
        &self,
        f: &FileFacts<'_>,
        now: DateTime<Utc>,
        out: &mut Vec<DateTime<Utc>>,
    ) {
        let last = f.last_access.unwrap_or(f.ingested);
        for (from, d) in [
            (f.ingested, self.age_min),
            (f.ingested, self.age_max),
            (last, self.idle_min),
            (last, self.idle_max),
        ] {
            if let Some(t) = d.and_then(|d| from.checked_add_signed(d))
                && t > now
            {
                out.push(t);
            }
        }
        for c in self.all.iter().chain(&self.any) {
            c.thresholds(f, now, out);
        }
    }
}

fn owned(v: Option<Vec<&str>>) -> Option<Vec<String>> {
    v.map(|v| v.into_iter().map(str::to_owned).collect())
}

/// A duration for errors: "30days".
fn human(d: TimeDelta) -> String {
    d.to_std()
        .map(|d| humantime::format_duration(d).to_string())
        .unwrap_or_else(|_| format!("{d}"))
}

fn tags(items: &[&str], key: &str, errs: &mut Errors) -> Option<Vec<TagTest>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (*item, None),
        };
        if k.is_empty() {
            errs.push(
                key,
                format!("{item:?} has no tag key: write \"key=value\" or \"key\""),
            );
            return None;
        }
        out.push(TagTest {
            key: k.to_owned(),
            value: v,
        });
    }
    Some(out)
}

/// Path globs: `*` and `?` stay within one path component, `**` crosses them. A pattern without
/// a `/` matches the file's name in any directory; one with a `/` matches the whole path, so it
/// must start with `/` or `**`.
fn path_globs(items: &[&str], key: &str, errs: &mut Errors) -> Option<GlobSet> {
    let mut patterns = Vec::with_capacity(items.len());
    for item in items {
        if !item.contains('/') {
            patterns.push(format!("**/{item}"));
        } else if item.starts_with('/') || item.starts_with("**") {
            patterns.push((*item).to_owned());
        } else {
            errs.push(
                key,
                format!(
                    "{item:?} has a / but does not start with / or **: a pattern with a / matches the whole path, which is absolute (write \"/{item}\" or \"**/{item}\")"
                ),
            );
            return None;
        }
    }
    let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
    globs(&refs, key, true, errs)
}

fn globs(items: &[&str], key: &str, literal_separator: bool, errs: &mut Errors) -> Option<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for item in items {
        match GlobBuilder::new(item)
            .literal_separator(literal_separator)
            .backslash_escape(true)
            .build()
        {
            Ok(g) => {
                set.add(g);
            }
            Err(e) => {
                errs.push(key, format!("{item:?} is not a glob: {}", e.kind()));
                return None;
            }
        }
    }
    match set.build() {
        Ok(s) => Some(s),
        Err(e) => {
            errs.push(key, format!("the globs cannot be compiled: {e}"));
            None
        }
    }
}

fn tiers(words: &[&str], key: &str, errs: &mut Errors) -> Option<Tiers> {
    let mut t = 0;
    for w in words {
        match TIER_WORDS.iter().find(|(word, _)| word == w) {
            Some((_, bits)) => t |= bits,
            None => {
                errs.push(
                    key,
                    format!(
                        "{w:?} is not a tier state: use \"warm-only\", \"cold-only\", \"both\", \"warm\" (a warm copy, with or without a cold one) or \"cold\""
                    ),
                );
                return None;
            }
        }
    }
    Some(t)
}

/// `all = [ {...}, ... ]` / `any = [...]`: a non-empty list of non-empty tables.
fn nested(v: &Value, key: &str, errs: &mut Errors) -> Vec<Condition> {
    let Value::Array(_, items) = v else {
        errs.push(
            key,
            format!(
                "must be a list of condition tables, such as [ {{ group = \"a\" }}, {{ tag = \"x\" }} ], found {}",
                type_name(v)
            ),
        );
        return Vec::new();
    };
    if items.is_empty() {
        errs.push(
            key,
            "is an empty list: name at least one table of conditions, or remove the key",
        );
        return Vec::new();
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{key}[{i}]");
        match item {
            Value::Dict(_, d) if d.is_empty() => errs.push(
                &at,
                "is an empty table, which matches every file: give it conditions or remove it",
            ),
            Value::Dict(_, d) if crate::value::toml_datetime(d).is_none() => {
                out.push(Condition::parse(d, &[], &format!("{at}."), errs));
            }
            other => errs.push(
                &at,
                format!("must be a table of conditions, found {}", type_name(other)),
            ),
        }
    }
    out
}
