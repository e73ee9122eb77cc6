use chrono::{DateTime, Utc};
use nlds_core::State as TxState;

use super::init::LegacyInitExt;
use super::reply::iso;
use super::status::state_of;
use super::*;

#[test]
fn lists_are_cleaned_like_upstream_and_blank_lines_are_dropped() {
    let got = clean_list(vec![
        "/a\n".into(),
        "/work/\n".into(), // a blank line the client made absolute
        "\n".into(),
        "/b".into(),
        "/a".into(),
        "/c/".into(),
    ]);
    assert_eq!(got, ["/a", "/b", "/c/"]);
}

#[test]
fn python_booleans_and_params() {
    let p = Params::parse(Some(
        "groupall=True&regex=False&limit=5&holding_id=x&tag=a:1,b:2&user=u",
    ))
    .unwrap();
    assert!(p.bool("groupall").unwrap());
    assert!(!p.bool("regex").unwrap());
    assert!(!p.bool("descending").unwrap());
    assert_eq!(p.limit().unwrap(), 5);
    assert_eq!(
        p.int("holding_id").unwrap_err().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(p.tags().unwrap().get("b").unwrap(), "2");
    assert_eq!(
        p.required("group").unwrap_err().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let p = Params::parse(Some("groupall=maybe")).unwrap();
    assert!(p.bool("groupall").is_err());
}

#[test]
fn states_are_exact_names_or_numbers() {
    assert_eq!(state_of("COMPLETE").unwrap(), TxState::Complete);
    assert_eq!(state_of("101").unwrap(), TxState::Failed);
    let e = state_of("complete").unwrap_err();
    assert!(
        e.body["detail"]
            .as_str()
            .unwrap()
            .contains("Given State: complete is not valid.")
    );
    assert!(state_of("CATALOG_ROLLBACK").is_err());
}

#[test]
fn times_have_no_offset() {
    let t = DateTime::parse_from_rfc3339("2026-11-25T03:04:05.5Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(iso(t), "2026-11-25T03:04:05.500000");
}

#[test]
fn the_init_key_is_a_valid_fernet_key_and_stable() {
    let c = LegacyInit {
        oauth_client_id: "nlds".into(),
        oauth_token_url: "https://id.example/token".into(),
        ..Default::default()
    };
    assert_eq!(c.key(), c.clone().key());
    let f = fernet::Fernet::new(&c.key()).expect("valid key");
    let tok = f.encrypt(b"x");
    assert_eq!(f.decrypt(&tok).unwrap(), b"x");
}
