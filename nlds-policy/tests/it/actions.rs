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
