use nlds_core::State as TxState;
use nlds_core::api::StatQuery;

use super::status::status_filter;
use super::*;

fn v(paths: &[&str]) -> std::result::Result<(), String> {
    let p: Vec<String> = paths.iter().map(|s| s.to_string()).collect();
    validate_paths(&p, 3, false).map_err(|e| format!("{} {}", e.0.code, e.0.message))
}

#[test]
fn path_lists_are_checked_with_reasons() {
    assert!(v(&["/a", "/b"]).is_ok());
    assert_eq!(
        v(&[]).unwrap_err(),
        "bad_request no paths given: the request must list at least one path"
    );
    let e = v(&["/a", "  ", "rel/x"]).unwrap_err();
    assert!(
        e.contains("entry 2 is blank") && e.contains("entry 3 (\"rel/x\") is not an absolute path"),
        "{e}"
    );
    let e = v(&["/a", "/a"]).unwrap_err();
    assert!(e.contains("entry 2 repeats entry 1 (\"/a\")"), "{e}");
    let e = v(&["/a", "/b", "/c", "/d"]).unwrap_err();
    assert!(
        e.starts_with("payload_too_large the request lists 4 paths; at most 3"),
        "{e}"
    );
    assert!(validate_paths(&["a.*".into()], 3, true).is_ok());
}

#[test]
fn limits_and_ids_are_validated() {
    assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
    assert!(limit(Some(0)).is_err());
    assert!(limit(Some(MAX_LIMIT + 1)).is_err());
    assert!(
        parse_tid("nope")
            .unwrap_err()
            .0
            .message
            .contains("not a valid transaction id")
    );
    let q = StatQuery {
        state: Some("COMPLETE,101".into()),
        api_action: Some("put,get".into()),
        ..Default::default()
    };
    let f = status_filter(&q).unwrap();
    assert_eq!(f.states, [TxState::Complete, TxState::Failed]);
    assert_eq!(f.api_actions, [ApiAction::Put, ApiAction::Get]);
    let q = StatQuery {
        state: Some("complete".into()),
        ..Default::default()
    };
    assert!(status_filter(&q).is_err());
}
