//! The `-t/--tag` syntax.
//!
//! A tag option holds one or more tags, `key:value[,key:value...]`, and may be repeated; all the
//! tags are merged (a later value for the same key wins). The rules:
//!
//! * `,` separates tags and the **first** `:` separates a key from its value, so a value may
//!   contain `:` (`-t url:https://example.org` is key `url`, value `https://example.org`);
//! * whitespace around keys and values is trimmed, whitespace inside them is kept
//!   (`-t "site: Rutherford Appleton "` is key `site`, value `Rutherford Appleton`);
//! * to put a `,` in a value (or a `:` in a key) escape it with a backslash: `\,`, `\:`; `\\` is a
//!   backslash. So `-t "site:Rutherford Appleton, UK"` is an error (` UK` is not `key:value`)
//!   and `-t "site:Rutherford Appleton\, UK"` is the tag `site` = `Rutherford Appleton, UK`;
//! * a pair of braces around the whole option, as the Python client's users sometimes type
//!   (`-t "{a:1,b:2}"`), is ignored.
//!
//! `put`, `get` and `meta` send tags as a JSON object, so any value goes through. `list` and
//! `find` send them in the query string as `k:v,k:v`, where a `,`, `{` or `}` in a value (or a
//! `:` in a key) cannot be expressed: those are refused with a clear error.

use nlds_core::api::Tags;

/// Parses one `-t` option value.
pub fn parse_tag_arg(s: &str) -> Result<Tags, String> {
    parse(s, false)
}

/// Parses one `meta -D/--del-tag` value: like [`parse_tag_arg`], but a bare `key` (no `:`) is
/// allowed and means "whatever its value" (sent as an empty value).
pub fn parse_del_tag_arg(s: &str) -> Result<Tags, String> {
    parse(s, true)
}

fn parse(s: &str, bare_keys: bool) -> Result<Tags, String> {
    let trimmed = s.trim();
    let inner = match trimmed.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        Some(inner) => inner,
        None => trimmed,
    };
    let mut tags = Tags::new();
    for item in split_unescaped(inner) {
        if item.iter().all(|(c, _)| c.is_whitespace()) {
            continue;
        }
        let shown: String = item.iter().map(|(c, _)| *c).collect::<String>();
        let shown = shown.trim().to_owned();
        let Some(colon) = item.iter().position(|(c, esc)| *c == ':' && !esc) else {
            if bare_keys {
                tags.insert(shown, String::new());
                continue;
            }
            return Err(format!(
                "tag {shown:?} is not key:value (tags are separated by ','; write \\, for a comma inside a value)"
            ));
        };
        let key: String = item[..colon].iter().map(|(c, _)| *c).collect();
        let value: String = item[colon + 1..].iter().map(|(c, _)| *c).collect();
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("tag {shown:?} has an empty key"));
        }
        tags.insert(key.to_owned(), value.trim().to_owned());
    }
    if tags.is_empty() {
        return Err("a tag must be key:value".into());
    }
    Ok(tags)
}

/// Merges repeated `-t` options; a later value for a key wins.
pub fn merge(all: &[Tags]) -> Tags {
    let mut merged = Tags::new();
    for t in all {
        merged.extend(t.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    merged
}

/// The `k:v,k:v` query-string form used by `list` and `find`; `None` for no tags.
pub fn query_form(tags: &Tags) -> Result<Option<String>, String> {
    if tags.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::with_capacity(tags.len());
    for (k, v) in tags {
        if k.contains([':', ',', '{', '}']) {
            return Err(format!(
                "tag key {k:?} cannot be used to select holdings: it contains ':', ',', '{{' or '}}'"
            ));
        }
        if v.contains([',', '{', '}']) {
            return Err(format!(
                "tag value {v:?} cannot be used to select holdings: it contains ',', '{{' or '}}'"
            ));
        }
        parts.push(format!("{k}:{v}"));
    }
    Ok(Some(parts.join(",")))
}

/// Splits on unescaped commas; each char is marked with whether it was escaped.
fn split_unescaped(s: &str) -> Vec<Vec<(char, bool)>> {
    let mut items = vec![Vec::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        let current = items.last_mut().expect("never empty");
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | ':' | '\\')) => current.push((n, true)),
                Some(n) => {
                    current.push(('\\', false));
                    current.push((n, false));
                }
                None => current.push(('\\', false)),
            },
            ',' => items.push(Vec::new()),
            c => current.push((c, false)),
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn plain_and_several() {
        assert_eq!(parse_tag_arg("a:1").unwrap(), t(&[("a", "1")]));
        assert_eq!(
            parse_tag_arg(" a : 1 , b:two words ").unwrap(),
            t(&[("a", "1"), ("b", "two words")])
        );
        assert_eq!(
            parse_tag_arg("{a:1,b:2}").unwrap(),
            t(&[("a", "1"), ("b", "2")])
        );
        assert_eq!(parse_tag_arg("a:1,,").unwrap(), t(&[("a", "1")]));
    }

    #[test]
    fn first_colon_splits_and_commas_separate() {
        assert_eq!(
            parse_tag_arg("url:https://x.org:8443/a").unwrap(),
            t(&[("url", "https://x.org:8443/a")])
        );
        let e = parse_tag_arg("site:Rutherford Appleton, UK").unwrap_err();
        assert!(e.contains("\"UK\" is not key:value"), "{e}");
        assert!(e.contains("\\,"), "{e}");
        assert_eq!(
            parse_tag_arg(r"site:Rutherford Appleton\, UK").unwrap(),
            t(&[("site", "Rutherford Appleton, UK")])
        );
        assert_eq!(parse_tag_arg(r"a\:b:c").unwrap(), t(&[("a:b", "c")]));
        assert_eq!(
            parse_tag_arg(r"p:C:\\dir\x").unwrap(),
            t(&[("p", r"C:\dir\x")])
        );
        assert_eq!(parse_tag_arg("empty:").unwrap(), t(&[("empty", "")]));
    }

    #[test]
    fn bare_keys_for_deletes() {
        assert_eq!(
            parse_del_tag_arg("a, b:2").unwrap(),
            t(&[("a", ""), ("b", "2")])
        );
        assert!(parse_tag_arg("a").is_err());
    }

    #[test]
    fn errors() {
        assert!(parse_tag_arg("").is_err());
        assert!(parse_tag_arg(":v").unwrap_err().contains("empty key"));
        assert!(parse_tag_arg("novalue").is_err());
    }

    #[test]
    fn merging_and_query_form() {
        let m = merge(&[t(&[("a", "1"), ("b", "2")]), t(&[("a", "3")])]);
        assert_eq!(m, t(&[("a", "3"), ("b", "2")]));
        assert_eq!(query_form(&m).unwrap().as_deref(), Some("a:3,b:2"));
        assert_eq!(query_form(&Tags::new()).unwrap(), None);
        assert_eq!(
            query_form(&t(&[("url", "a:b")])).unwrap().as_deref(),
            Some("url:a:b")
        );
        assert!(query_form(&t(&[("site", "A, UK")])).is_err());
        assert!(query_form(&t(&[("a:b", "c")])).is_err());
    }
}
