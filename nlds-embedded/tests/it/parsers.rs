//! Property tests of the server's request parsers: request paths (`validate_paths`), the legacy
//! query string (`Params::parse`) and file lists (`clean_list`). Never a panic; a refusal names
//! the entry or the problem; accepted input stays what it was.

use nlds_server::legacy::{Params, clean_list};
use nlds_server::routes::validate_paths;
use proptest::prelude::*;

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        "/[a-z0-9 ._/\\-üé]{0,40}",
        "\\PC{0,40}",
        Just(String::new()),
        Just("/a\0b".to_owned()),
    ]
}

proptest! {
    #[test]
    fn paths_are_accepted_or_refused_by_entry(
        paths in proptest::collection::vec(path(), 0..12),
        max in 0usize..16,
        relative in any::<bool>(),
    ) {
        match validate_paths(&paths, max, relative) {
            Ok(()) => {
                prop_assert!(!paths.is_empty() && paths.len() <= max);
                for p in &paths {
                    prop_assert!(!p.trim().is_empty() && !p.contains('\0'));
                    prop_assert!(relative || p.starts_with('/'));
                }
            }
            Err(e) => {
                let m = &e.0.message;
                prop_assert!(
                    m.starts_with("no paths given")
                        || m.contains("at most")
                        || m.starts_with("invalid paths: entry "),
                    "{}", m
                );
            }
        }
    }

    #[test]
    fn legacy_query_strings_never_panic(q in "\\PC{0,80}") {
        let _ = Params::parse(Some(&q));
    }

    #[test]
    fn legacy_query_strings_round_trip(
        pairs in proptest::collection::vec(("[a-z_]{1,10}", "\\PC{0,20}"), 0..6)
    ) {
        let q = serde_urlencoded::to_string(&pairs).unwrap();
        prop_assert!(Params::parse(Some(&q)).is_ok(), "{}", q);
    }

    #[test]
    fn legacy_file_lists_keep_order_without_blanks_or_repeats(
        list in proptest::collection::vec(path(), 0..12)
    ) {
        let cleaned = clean_list(list.clone());
        let mut seen = std::collections::HashSet::new();
        for p in &cleaned {
            prop_assert!(!p.trim().is_empty());
            prop_assert!(seen.insert(p.clone()), "repeated {}", p);
            prop_assert!(list.iter().any(|o| o.trim_end_matches(['\n', '\r']) == p));
        }
        prop_assert_eq!(clean_list(cleaned.clone()), cleaned);
    }
}
