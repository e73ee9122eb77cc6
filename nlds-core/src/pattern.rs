//! Regular expressions from requests (get/delete paths, find paths, holding labels, job labels):
//! the limits every request is held to, the cheap check the API makes, and the one place the
//! workers compile them.
//!
//! The API never compiles a pattern: it checks the count, the length and the syntax (the
//! `regex-syntax` parser, linear in the pattern's length). Compiling is the workers' job, with an
//! explicit size limit ([`SIZE_LIMIT`]), off the async runtime, several patterns as one
//! [`RegexSet`].

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::error::ApiError;

/// At most this many regular expressions in one request.
pub const MAX_PATTERNS: usize = 100;
/// At most this many bytes in one regular expression.
pub const MAX_PATTERN_LEN: usize = 1024;
/// The compiled size limit of a pattern (or of a set of patterns), and of its lazy DFA cache.
pub const SIZE_LIMIT: usize = 1 << 20;

/// Checks the count, lengths and syntax of the regular expressions of a request, without
/// compiling them. `what` names them in the error ("path", "label", ...); the error names the
/// limit and the offending pattern's index (from 0).
pub fn check<S: AsRef<str>>(patterns: &[S], what: &str) -> Result<(), ApiError> {
    check_count(patterns.len())?;
    for (i, p) in patterns.iter().enumerate() {
        check_one(p.as_ref(), what, i)?;
    }
    Ok(())
}

fn check_count(n: usize) -> Result<(), ApiError> {
    if n > MAX_PATTERNS {
        return Err(ApiError::bad_request(format!(
            "the request gives {n} regular expressions; at most {MAX_PATTERNS} are accepted in one request"
        )));
    }
    Ok(())
}

fn check_len(p: &str, what: &str, index: usize) -> Result<(), ApiError> {
    if p.len() > MAX_PATTERN_LEN {
        return Err(ApiError::bad_request(format!(
            "{what} regular expression {index} is {} bytes long; at most {MAX_PATTERN_LEN} bytes are accepted",
            p.len()
        )));
    }
    Ok(())
}

fn check_one(p: &str, what: &str, index: usize) -> Result<(), ApiError> {
    check_len(p, what, index)?;
    regex_syntax::ParserBuilder::new()
        .build()
        .parse(p)
        .map(|_| ())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "invalid regular expression {p:?} ({what} regular expression {index}): {e}"
            ))
        })
}

fn limits_error(pattern: &str, e: regex::Error) -> ApiError {
    match e {
        regex::Error::CompiledTooBig(limit) => ApiError::bad_request(format!(
            "regular expression {pattern:?} is too expensive: it compiles to more than the limit of {limit} bytes"
        )),
        e => ApiError::bad_request(format!("invalid regular expression {pattern:?}: {e}")),
    }
}

/// Compiles one pattern with the request limits (length, [`SIZE_LIMIT`]). This is CPU work of up
/// to tens of milliseconds: call it off the async runtime (`spawn_blocking`).
pub fn compile(pattern: &str) -> Result<Regex, ApiError> {
    check_len(pattern, "the", 0)?;
    RegexBuilder::new(pattern)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| limits_error(pattern, e))
}

/// The compiled size limit of a set of patterns: [`SIZE_LIMIT`] for each, at most
/// [`MAX_SET_SIZE`] in all.
pub const MAX_SET_SIZE: usize = 8 * SIZE_LIMIT;

/// Compiles several patterns as one set with the request limits (count, length, a size limit of
/// [`SIZE_LIMIT`] a pattern, [`MAX_SET_SIZE`] in all): one pass over a candidate says which
/// patterns match it. CPU work: call it off the async runtime.
pub fn compile_set<S: AsRef<str>>(patterns: &[S]) -> Result<RegexSet, ApiError> {
    check_count(patterns.len())?;
    for (i, p) in patterns.iter().enumerate() {
        check_len(p.as_ref(), "the", i)?;
    }
    let limit = SIZE_LIMIT
        .saturating_mul(patterns.len().max(1))
        .min(MAX_SET_SIZE);
    RegexSetBuilder::new(patterns.iter().map(AsRef::as_ref))
        .size_limit(limit)
        .dfa_size_limit(limit)
        .build()
        .map_err(|e| {
            limits_error(
                &patterns
                    .iter()
                    .map(AsRef::as_ref)
                    .collect::<Vec<_>>()
                    .join(" | "),
                e,
            )
        })
}

/// The text every match of `pattern` starts with, if the pattern is anchored at the start of the
/// text (`^` without the multi-line flag) and a literal follows the anchor: `"/data/run 1/"` for
/// `^/data/run 1/.*\.nc$`. A catalogue narrows a path regex to the index range of this prefix
/// ([`upper_bound`]) before it applies the regex itself; `None` (no narrowing) for anything else,
/// e.g. an alternation at the top (`^/a|^/b`), a case-insensitive literal or an unparsable pattern.
pub fn anchored_prefix(pattern: &str) -> Option<String> {
    use regex_syntax::hir::{HirKind, Look};
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let (first, rest) = parts.split_first()?;
    if *first.kind() != HirKind::Look(Look::Start) {
        return None;
    }
    let mut prefix = Vec::new();
    for part in rest {
        match part.kind() {
            HirKind::Literal(lit) => prefix.extend_from_slice(&lit.0),
            _ => break,
        }
    }
    String::from_utf8(prefix).ok().filter(|p| !p.is_empty())
}

/// The least string greater than every string that starts with `prefix`, in byte order (UTF-8
/// byte order is code-point order): `prefix` with its last character replaced by the next one,
/// so `path >= prefix AND path < upper_bound(prefix)` is an exact index range. `None` when there
/// is no such bound (every character of `prefix` is `char::MAX`).
pub fn upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_prefixes_narrow_only_what_every_match_starts_with() {
        assert_eq!(
            anchored_prefix(r"^/data/run 1/.*\.nc$").as_deref(),
            Some("/data/run 1/")
        );
        assert_eq!(anchored_prefix(r"^/a/b\.c/").as_deref(), Some("/a/b.c/"));
        // A quantifier binds to the last character only.
        assert_eq!(anchored_prefix("^/a/bc*").as_deref(), Some("/a/b"));
        assert_eq!(anchored_prefix("^/a/b?").as_deref(), Some("/a/"));
        for none in [
            "/a/b",      // not anchored
            "(?m)^/a/b", // anchored at a line, not the text
            "^/a|^/b",   // alternation at the top
            "(?i)^abc",  // case-insensitive: not one literal
            "^.*/a",     // no literal after the anchor
            "(unclosed", // not a pattern
        ] {
            assert_eq!(anchored_prefix(none), None, "{none}");
        }
        assert_eq!(upper_bound("/a/b/").as_deref(), Some("/a/b0"));
        assert_eq!(upper_bound("/a/\u{d7ff}").as_deref(), Some("/a/\u{e000}"));
        assert_eq!(
            upper_bound("/a\u{10ffff}").as_deref(),
            Some("/b"),
            "char::MAX is dropped and the one before it moves on"
        );
        assert_eq!(upper_bound("\u{10ffff}"), None);
        let (lo, hi) = ("/a/b/".to_owned(), upper_bound("/a/b/").unwrap());
        for inside in ["/a/b/", "/a/b/c", "/a/b/\u{10ffff}\u{10ffff}"] {
            assert!(lo.as_str() <= inside && inside < hi.as_str(), "{inside}");
        }
        for outside in ["/a/b", "/a/b0", "/a/c", "/a/b.c"] {
            assert!(
                !(lo.as_str() <= outside && outside < hi.as_str()),
                "{outside}"
            );
        }
    }

    #[test]
    fn limits_are_checked_and_named() {
        let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("a{i}")).collect();
        let e = check(&many, "path").unwrap_err();
        assert!(e.message.contains("at most 100"), "{e:?}");
        let long = vec!["a".to_owned(), "b".repeat(MAX_PATTERN_LEN + 1)];
        let e = check(&long, "path").unwrap_err();
        assert!(e.message.contains("path regular expression 1"), "{e:?}");
        assert!(e.message.contains("1024"), "{e:?}");
        let e = check(&["ok", "(unclosed"], "label").unwrap_err();
        assert!(e.message.contains("label regular expression 1"), "{e:?}");
        check(&[r"^/data/.*\.nc$", "a|b"], "path").unwrap();
    }

    #[test]
    fn expensive_patterns_hit_the_size_limit_quickly() {
        let t = std::time::Instant::now();
        let e = compile(r"\w{1000}{1000}").unwrap_err();
        assert!(e.message.contains("too expensive"), "{e:?}");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        let set = compile_set(&["^/a/", r"\.nc$"]).unwrap();
        assert_eq!(
            set.matches("/a/x.nc").into_iter().collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert!(compile("^/a/").unwrap().is_match("/a/b"));
    }
}
