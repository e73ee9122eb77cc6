//! Property tests of the parsers of request input: tags (`key:value`), regular expressions and
//! their limits, paging numbers and ids, states, api actions and routing keys. Whatever the
//! input, they never panic: they accept it, or refuse it with a clear error; where a printed form
//! exists, parsing it gives the value back.

use nlds_core::api::{ApiAction, Tags, parse_tags};
use nlds_core::number::{DB_MAX, db_count, db_id, parse_db};
use nlds_core::pattern::{self, MAX_PATTERN_LEN, MAX_PATTERNS};
use nlds_core::{Action, RoutingKey, State, Worker};
use proptest::prelude::*;

/// Tag keys and values the `k:v,k2:v2` syntax can carry (no separators, no braces, trimmed).
fn tag_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_ .\\-/éü]{0,12}".prop_map(|s| s.trim().to_owned())
}

proptest! {
    #[test]
    fn tags_never_panic_and_errors_name_the_item(s in "\\PC{0,64}") {
        match parse_tags(&s) {
            Ok(tags) => {
                for k in tags.keys() {
                    prop_assert!(!k.trim().is_empty());
                }
            }
            Err(e) => prop_assert!(e.message.starts_with("tag "), "{}", e.message),
        }
    }

    #[test]
    fn tags_round_trip(tags in proptest::collection::btree_map(
        tag_text().prop_filter("non-empty key", |k| !k.is_empty()), tag_text(), 0..6)) {
        let text = tags
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",");
        let parsed: Tags = parse_tags(&text).unwrap();
        prop_assert_eq!(&parsed, &tags);
        // With the braces the Python client writes, too.
        prop_assert_eq!(parse_tags(&format!("{{{text}}}")).unwrap(), tags);
    }

    #[test]
    fn patterns_never_panic_and_refusals_name_the_index(
        ps in proptest::collection::vec("\\PC{0,40}|[()\\[\\]{}*+?|\\\\a-z0-9^$.]{0,40}", 0..8)
    ) {
        match pattern::check(&ps, "path") {
            Ok(()) => {
                // Checked patterns compile, or are refused as too expensive: never a panic.
                for p in &ps {
                    if let Err(e) = pattern::compile(p) {
                        prop_assert!(e.message.contains("too expensive"), "{}", e.message);
                    }
                }
            }
            Err(e) => prop_assert!(
                e.message.contains("path regular expression "),
                "{}", e.message
            ),
        }
    }

    #[test]
    fn pattern_limits_hold(n in 0usize..=2 * MAX_PATTERNS, len in 0usize..=2 * MAX_PATTERN_LEN) {
        let ps = vec!["a".repeat(len); n];
        let r = pattern::check(&ps, "path");
        if n > MAX_PATTERNS {
            prop_assert!(r.unwrap_err().message.contains("at most 100"));
        } else if n > 0 && len > MAX_PATTERN_LEN {
            prop_assert!(r.unwrap_err().message.contains("regular expression 0 is"));
        } else {
            prop_assert!(r.is_ok());
        }
    }

    #[test]
    fn paging_numbers_are_in_range_or_named(v in any::<u64>()) {
        match db_count("offset", v) {
            Ok(x) => {
                prop_assert!(v <= DB_MAX);
                prop_assert_eq!(x, v);
                prop_assert!(i64::try_from(x).is_ok());
            }
            Err(e) => {
                prop_assert!(v > DB_MAX);
                prop_assert_eq!(
                    e.message,
                    format!("offset {v} is out of range (0..=9223372036854775807)")
                );
            }
        }
    }

    #[test]
    fn ids_are_in_range_or_named(v in any::<i64>()) {
        match db_id("holding_id", v) {
            Ok(x) => prop_assert!(x >= 0 && x == v),
            Err(e) => {
                let want = format!("holding_id {v} ");
                prop_assert!(v < 0 && e.message.starts_with(&want));
            }
        }
    }

    #[test]
    fn number_text_round_trips(v in any::<i128>(), junk in "\\PC{0,12}") {
        let text = v.to_string();
        match parse_db("limit", &text) {
            Ok(Some(x)) => prop_assert!(v >= 0 && i128::from(x) == v),
            Ok(None) => prop_assert!(false, "{text} is an integer"),
            Err(e) => {
                prop_assert!(v < 0 || v > i128::from(i64::MAX));
                let want = format!("limit {text} is out of range");
                prop_assert!(e.message.starts_with(&want));
            }
        }
        // Anything else: no panic, and an integer is never taken for "not an integer".
        let r = parse_db("limit", &junk);
        if let Ok(Some(x)) = r {
            prop_assert_eq!(junk.trim().trim_start_matches('+').parse::<i64>().ok(), Some(x));
        }
    }

    #[test]
    fn states_actions_and_keys_never_panic(s in "\\PC{0,24}") {
        let _ = s.parse::<State>();
        let _ = ApiAction::parse(&s);
        let _ = s.parse::<RoutingKey>();
    }
}

#[test]
fn printed_forms_parse_back() {
    for st in State::ALL {
        assert_eq!(st.to_string().parse::<State>().unwrap(), st);
        assert_eq!(st.value().to_string().parse::<State>().unwrap(), st);
    }
    for a in [
        ApiAction::Put,
        ApiAction::Putlist,
        ApiAction::Get,
        ApiAction::Getlist,
        ApiAction::ArchivePut,
        ApiAction::ArchiveGet,
        ApiAction::Del,
        ApiAction::Dellist,
    ] {
        assert_eq!(ApiAction::parse(a.as_str()), Some(a));
    }
    for &w in Worker::ALL {
        for &a in Action::ALL {
            let k = RoutingKey::new(w, a);
            assert_eq!(k.to_string().parse::<RoutingKey>().unwrap(), k);
        }
    }
}
