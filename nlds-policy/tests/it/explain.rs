//! `explain`: the decision now and the next move, if nothing else changes.

use crate::*;

const CLASSIC: &str = r#"
[[rule]]
name = "archive-old"
action = "archive"
age = "30d"
[[rule]]
name = "evict-idle"
action = "evict"
idle = "90d"
"#;

#[test]
fn next_is_when_the_age_threshold_is_crossed() {
    let p = policy(CLASSIC);
    let f = File::default().aged(10);
    let e = p.explain(&f.facts(), now());
    assert_eq!(e.now, None);
    let (at, d) = e.next.unwrap();
    assert_eq!(at, f.ingested + days(30));
    assert_eq!(
        (d.name.as_str(), d.action),
        ("archive-old", Action::Archive)
    );
}

#[test]
fn next_is_when_the_idle_threshold_is_crossed_from_the_last_access() {
    let p = policy(CLASSIC);
    let f = File::default().aged(100).idle(20).both();
    let e = p.explain(&f.facts(), now());
    assert_eq!(e.now, None);
    let (at, d) = e.next.unwrap();
    assert_eq!(at, f.last_access.unwrap() + days(90));
    assert_eq!(d.name, "evict-idle");
    // Never accessed: counted from ingest.
    let f = File::default().aged(50).both();
    let (at, _) = p.explain(&f.facts(), now()).next.unwrap();
    assert_eq!(at, f.ingested + days(90));
}

#[test]
fn a_file_moving_now_has_the_rule_now_and_no_other_move_ahead() {
    let p = policy(CLASSIC);
    let f = File::default().aged(100);
    let e = p.explain(&f.facts(), now());
    assert_eq!(e.now.unwrap().name, "archive-old");
    // Warm-only: the evict rule never applies while nothing else changes.
    assert_eq!(e.next, None);
}

#[test]
fn next_is_when_the_pin_ends() {
    let p = policy(
        r#"
        [[rule]]
        name = "keep-hot"
        action = "pin"
        until = "2026-09-01T00:00:00Z"
        label = "*-hot"
        [[rule]]
        name = "evict-idle"
        action = "evict"
        idle = "90d"
        "#,
    );
    let until = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
    let f = File {
        label: "x-hot".into(),
        ..File::default().aged(200).both()
    };
    let e = p.explain(&f.facts(), now());
    assert_eq!(e.now.unwrap().action, Action::Pin { until });
    let (at, d) = e.next.unwrap();
    assert_eq!(at, until);
    assert_eq!(d.name, "evict-idle");
}

#[test]
fn next_skips_changes_that_do_not_move_the_file() {
    // At 30 days the exception starts (nothing moves); at 60 days it ends and the archive
    // rule decides.
    let p = policy(
        r#"
        [[rule]]
        name = "grace"
        action = "none"
        age = "30d"
        age_max = "60d"
        [[rule]]
        name = "archive-old"
        action = "archive"
        age = "45d"
        "#,
    );
    let f = File::default().aged(1);
    let e = p.explain(&f.facts(), now());
    assert_eq!(e.now, None);
    let (at, d) = e.next.unwrap();
    assert_eq!(at, f.ingested + days(60));
    assert_eq!(d.name, "archive-old");
}

#[test]
fn a_file_no_rule_will_ever_move_has_no_next() {
    let p = policy(
        r#"
        [[rule]]
        name = "never-tape-b"
        action = "none"
        group = "gws-b"
        [[rule]]
        name = "archive-old"
        action = "archive"
        age = "30d"
        "#,
    );
    let f = File {
        group: "gws-b".into(),
        ..File::default()
    };
    let e = p.explain(&f.facts(), now());
    assert_eq!(e.now.unwrap().action, Action::None);
    assert_eq!(e.next, None);
}
