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

#[cfg(test)]
mod tests {
    use super::*;

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
