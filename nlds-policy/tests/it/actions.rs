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

const CLASSIC_REVERSED: &str = r#"
[[rule]]
name = "evict-idle"
action = "evict"
idle = "90d"
[[rule]]
name = "archive-old"
action = "archive"
age = "30d"
"#;

#[test]
fn the_classic_site_works_with_its_rules_in_either_order() {
    for rules in [CLASSIC, CLASSIC_REVERSED] {
        let p = policy(rules);
        // Young: nothing.
        assert_eq!(decide(&p, &File::default().aged(10)), None);
        // Old, warm-only: archived (the evict rule matches idle but cannot apply: no cold copy).
        assert_eq!(
            decide(&p, &File::default().aged(100)),
            Some(("archive-old".into(), Action::Archive))
        );
        // Old, archived, idle: evicted.
        assert_eq!(
            decide(&p, &File::default().aged(100).both()),
            Some(("evict-idle".into(), Action::Evict))
        );
        // Old, archived, read last week: stays warm.
        assert_eq!(decide(&p, &File::default().aged(100).idle(7).both()), None);
        // Cold only: nothing left to do.
        assert_eq!(decide(&p, &File::default().aged(100).cold_only()), None);
    }
}

#[test]
fn a_pin_with_a_toml_date_time_or_a_string_protects_until_then() {
    for until in ["2026-07-01T00:00:00Z", "\"2026-07-01T00:00:00Z\""] {
        let p = policy(&format!(
            r#"
            [[rule]]
            name = "keep-hot"
            action = "pin"
            until = {until}
            label = "*-hot"
            [[rule]]
            name = "evict-all"
            action = "evict"
            "#
        ));
        let hot = File {
            label: "run-hot".into(),
            ..File::default().both()
        };
        let until = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        assert_eq!(
            decide(&p, &hot),
            Some(("keep-hot".into(), Action::Pin { until }))
        );
        assert!(!p.watermark_eligible(&hot.facts(), now()));
        // After the pin ends, the evict rule takes it.
        let d = p.evaluate(&hot.facts(), until).unwrap();
        assert_eq!((d.name.as_str(), d.action), ("evict-all", Action::Evict));
        assert!(p.watermark_eligible(&hot.facts(), until));
    }
}

#[test]
fn archive_applies_only_to_warm_only_files() {
    let p = policy("[[rule]]\nname = \"a\"\naction = \"archive\"\n");
    assert_eq!(
        decide(&p, &File::default()),
        Some(("a".into(), Action::Archive))
    );
    assert_eq!(decide(&p, &File::default().both()), None);
    assert_eq!(decide(&p, &File::default().cold_only()), None);
}

#[test]
fn evict_applies_only_to_files_with_a_warm_and_a_cold_copy() {
    let p = policy("[[rule]]\nname = \"e\"\naction = \"evict\"\n");
    assert_eq!(
        decide(&p, &File::default().both()),
        Some(("e".into(), Action::Evict))
    );
    assert_eq!(decide(&p, &File::default()), None);
    assert_eq!(decide(&p, &File::default().cold_only()), None);
}

#[test]
fn the_first_matching_rule_that_applies_decides() {
    let p = policy(
        r#"
        [[rule]]
        name = "big"
        action = "archive"
        size_min = "1GiB"
        [[rule]]
        name = "gws-a"
        action = "archive"
        group = "gws-a"
        [[rule]]
        name = "everything"
        action = "archive"
        "#,
    );
    let big = File {
        size: 2 << 30,
        ..File::default()
    };
    assert_eq!(rule(&p, &big).as_deref(), Some("big"));
    assert_eq!(rule(&p, &File::default()).as_deref(), Some("gws-a"));
    assert_eq!(
        rule(
            &p,
            &File {
                group: "gws-b".into(),
                ..File::default()
            }
        )
        .as_deref(),
        Some("everything")
    );
    // The decision carries the rule's position.
    let d = p.evaluate(&File::default().facts(), now()).unwrap();
    assert_eq!(d.rule, 1);
    assert_eq!(p.decide(&File::default().facts(), now()).unwrap().rule, 1);
    assert_eq!(p.rule_name(1), "gws-a");
}

#[test]
fn a_none_rule_stops_evaluation_for_the_files_it_matches() {
    let p = policy(
        r#"
        [[rule]]
        name = "never-tape-b"
        action = "none"
        group = "gws-b"
        [[rule]]
        name = "archive-all"
        action = "archive"
        [[rule]]
        name = "evict-all"
        action = "evict"
        "#,
    );
    let b = File {
        group: "gws-b".into(),
        ..File::default()
    };
    assert_eq!(decide(&p, &b), Some(("never-tape-b".into(), Action::None)));
    assert_eq!(
        decide(&p, &b.clone().both()),
        Some(("never-tape-b".into(), Action::None))
    );
    assert!(!p.watermark_eligible(&b.clone().both().facts(), now()));
    assert_eq!(rule(&p, &File::default()).as_deref(), Some("archive-all"));
    assert_eq!(
        rule(&p, &File::default().both()).as_deref(),
        Some("evict-all")
    );
    assert!(p.watermark_eligible(&File::default().both().facts(), now()));
}

#[test]
fn a_pinned_file_is_still_archived_but_never_evicted() {
    let p = policy(
        r#"
        [[rule]]
        name = "pin-x"
        action = "pin"
        until = "2030-01-01T00:00:00Z"
        tag = "project=x"
        [[rule]]
        name = "evict-idle"
        action = "evict"
        idle = "1d"
        [[rule]]
        name = "archive-all"
        action = "archive"
        "#,
    );
    let until = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    // Warm-only and pinned: the archive rule below the pin still applies.
    assert_eq!(
        decide(&p, &File::default().aged(10)),
        Some(("archive-all".into(), Action::Archive))
    );
    // Archived and pinned: the evict rule is passed over, the pin is the answer.
    let both = File::default().aged(10).both();
    assert_eq!(
        decide(&p, &both),
        Some(("pin-x".into(), Action::Pin { until }))
    );
    assert!(!p.watermark_eligible(&both.facts(), now()));
    // Not pinned: evicted.
    let other = File {
        tags: vec![],
        ..both.clone()
    };
    assert_eq!(rule(&p, &other).as_deref(), Some("evict-idle"));
    // The pin ends at `until`: evicted from then on.
    assert_eq!(
        p.evaluate(&both.facts(), until - Duration::seconds(1))
            .unwrap()
            .name,
        "pin-x"
    );
    assert_eq!(p.evaluate(&both.facts(), until).unwrap().name, "evict-idle");
}

#[test]
fn a_pin_then_a_none_rule_still_reports_the_pin_and_an_expired_pin_nothing() {
    let p = policy(
        r#"
        [[rule]]
        name = "pin-all"
        action = "pin"
        until = "2026-06-02T00:00:00Z"
        [[rule]]
        name = "stop"
        action = "none"
        [[rule]]
        name = "evict-all"
        action = "evict"
        "#,
    );
    let f = File::default().both();
    assert_eq!(rule(&p, &f).as_deref(), Some("pin-all"));
    let after = Utc.with_ymd_and_hms(2026, 6, 3, 0, 0, 0).unwrap();
    assert_eq!(p.evaluate(&f.facts(), after).unwrap().name, "stop");
    // A pin holds warm copies: a cold-only file is not pinned.
    assert_eq!(
        rule(&p, &File::default().cold_only()).as_deref(),
        Some("stop")
    );
}

#[test]
fn a_file_no_rule_applies_to_stays_where_it_is_and_the_watermark_may_take_it() {
    let p = policy(
        r#"
        [[rule]]
        name = "archive-old"
        action = "archive"
        age = "30d"
        "#,
    );
    let f = File::default().aged(40).both();
    assert_eq!(decide(&p, &f), None);
    assert!(p.watermark_eligible(&f.facts(), now()));
    // The watermark evicts only files with both copies.
    assert!(!p.watermark_eligible(&File::default().aged(40).facts(), now()));
    assert!(!p.watermark_eligible(&File::default().cold_only().facts(), now()));
    // An empty policy decides nothing.
    let empty = Policy::load(&PolicyConfig::default()).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.fingerprint(), Policy::default().fingerprint());
    assert_eq!(empty.evaluate(&f.facts(), now()), None);
    assert!(empty.watermark_eligible(&f.facts(), now()));
}

#[test]
fn the_watermark_follows_the_first_rule_that_decides() {
    // An evict rule above the exception decides first: eligible.
    let p = policy(
        r#"
        [[rule]]
        name = "evict-scratch"
        action = "evict"
        path = "/scratch/**"
        [[rule]]
        name = "keep"
        action = "none"
        "#,
    );
    let scratch = File {
        path: "/scratch/a".into(),
        ..File::default().both()
    };
    assert!(p.watermark_eligible(&scratch.facts(), now()));
    assert!(!p.watermark_eligible(&File::default().both().facts(), now()));
}

#[test]
fn rules_len_and_fingerprint_describe_the_policy() {
    let p = policy(CLASSIC);
    assert_eq!(
        p.rules(),
        vec![
            ("archive-old".to_owned(), Action::Archive),
            ("evict-idle".to_owned(), Action::Evict)
        ]
    );
    assert_eq!(p.len(), 2);
    assert_eq!(p.fingerprint(), policy(CLASSIC).fingerprint());
    assert_eq!(p.fingerprint().len(), 16);
    assert_ne!(p.fingerprint(), policy(CLASSIC_REVERSED).fingerprint());
    assert_eq!(Action::Archive.to_string(), "archive");
    assert!(Action::Evict.moves() && !Action::None.moves());
}

#[test]
fn a_relative_keep_warm_is_a_none_rule_with_idle_max() {
    // docs/POLICY.md: the relative form of a pin.
    let p = policy(
        r#"
        [[rule]]
        name = "warm-after-read"
        action = "none"
        tiers = "both"
        idle_max = "30d"
        [[rule]]
        name = "evict-all"
        action = "evict"
        "#,
    );
    let read = File::default().aged(100).idle(10).both();
    assert_eq!(rule(&p, &read).as_deref(), Some("warm-after-read"));
    assert!(!p.watermark_eligible(&read.facts(), now()));
    let unread = File::default().aged(100).idle(40).both();
    assert_eq!(rule(&p, &unread).as_deref(), Some("evict-all"));
    assert!(p.watermark_eligible(&unread.facts(), now()));
    // explain: protected until 30 days after the read.
    let (at, d) = p.explain(&read.facts(), now()).next.unwrap();
    assert_eq!(
        (at, d.name.as_str()),
        (read.last_access.unwrap() + days(30), "evict-all")
    );
}
