//! Each condition, matching and not matching.

use crate::*;

/// A one-rule policy: archive files meeting `cond` (TOML key/value lines).
fn archive_when(cond: &str) -> Policy {
    policy(&format!(
        "[[rule]]\nname = \"r\"\naction = \"archive\"\n{cond}\n"
    ))
}

fn hit(p: &Policy, f: &File) -> bool {
    rule(p, f).as_deref() == Some("r")
}

#[test]
fn a_rule_without_conditions_matches_every_file() {
    let p = archive_when("");
    assert!(hit(&p, &File::default()));
}

#[test]
fn age_is_at_least_the_time_since_ingest_and_age_max_less_than() {
    let p = archive_when("age = \"30d\"");
    assert!(hit(&p, &File::default().aged(30)));
    assert!(hit(&p, &File::default().aged(31)));
    assert!(!hit(&p, &File::default().aged(29)));
    // An access does not make a file younger.
    assert!(hit(&p, &File::default().aged(31).idle(0)));

    let p = archive_when("age_max = \"30d\"");
    assert!(hit(&p, &File::default().aged(29)));
    assert!(!hit(&p, &File::default().aged(30)));

    let p = archive_when("age = \"10d\"\nage_max = \"20d\"");
    assert!(!hit(&p, &File::default().aged(5)));
    assert!(hit(&p, &File::default().aged(15)));
    assert!(!hit(&p, &File::default().aged(25)));
}

#[test]
fn idle_counts_from_the_last_access_or_from_ingest_when_never_accessed() {
    let p = archive_when("idle = \"90d\"");
    assert!(hit(&p, &File::default().aged(100)));
    assert!(!hit(&p, &File::default().aged(100).idle(10)));
    assert!(hit(&p, &File::default().aged(200).idle(95)));
    assert!(!hit(&p, &File::default().aged(80)));

    let p = archive_when("idle_max = \"7d\"");
    assert!(hit(&p, &File::default().aged(100).idle(3)));
    assert!(!hit(&p, &File::default().aged(100).idle(8)));
}

#[test]
fn durations_take_units_from_seconds_to_years() {
    let p = archive_when("age = \"1w 2d\"");
    assert!(hit(&p, &File::default().aged(9)));
    assert!(!hit(&p, &File::default().aged(8)));
    let p = archive_when("age = \"36h\"");
    assert!(hit(&p, &File::default().aged(2)));
    assert!(!hit(&p, &File::default().aged(1)));
}

#[test]
fn size_min_and_size_max_bound_the_size_inclusively_with_units() {
    let p = archive_when("size_min = \"10MiB\"\nsize_max = \"1GB\"");
    let sized = |size| File {
        size,
        ..File::default()
    };
    assert!(!hit(&p, &sized(10 * 1024 * 1024 - 1)));
    assert!(hit(&p, &sized(10 * 1024 * 1024)));
    assert!(hit(&p, &sized(1_000_000_000)));
    assert!(!hit(&p, &sized(1_000_000_001)));

    let p = archive_when("size_min = 4096");
    assert!(hit(&p, &sized(4096)));
    assert!(!hit(&p, &sized(4095)));
    let p = archive_when("size_max = \"1.5 KiB\"");
    assert!(hit(&p, &sized(1536)));
    assert!(!hit(&p, &sized(1537)));
}

#[test]
fn path_globs_match_names_anywhere_or_whole_paths() {
    let at = |path: &str| File {
        path: path.into(),
        ..File::default()
    };
    // No slash: the file's name, in any directory.
    let p = archive_when("path = \"*.nc\"");
    assert!(hit(&p, &at("/gws/a/b/x.nc")));
    assert!(hit(&p, &at("/x.nc")));
    assert!(!hit(&p, &at("/gws/a/x.nc.tmp")));
    // A slash: the whole path; `*` stays in one directory, `**` crosses them.
    let p = archive_when("path = \"/gws/*/raw/*.dat\"");
    assert!(hit(&p, &at("/gws/a/raw/1.dat")));
    assert!(!hit(&p, &at("/gws/a/b/raw/1.dat")));
    assert!(!hit(&p, &at("/gws/a/raw/sub/1.dat")));
    let p = archive_when("path = \"/gws/**/raw/**\"");
    assert!(hit(&p, &at("/gws/a/b/raw/sub/1.dat")));
    assert!(!hit(&p, &at("/home/a/raw/1.dat")));
    // A list: any of them.
    let p = archive_when("path = [\"*.nc\", \"/scratch/**\"]");
    assert!(hit(&p, &at("/scratch/a/b")));
    assert!(hit(&p, &at("/gws/a.nc")));
    assert!(!hit(&p, &at("/gws/a.txt")));
}

#[test]
fn label_globs_match_the_whole_label() {
    let labelled = |label: &str| File {
        label: label.into(),
        ..File::default()
    };
    let p = archive_when("label = \"*-hot\"");
    assert!(hit(&p, &labelled("run-hot")));
    assert!(hit(&p, &labelled("a/b-hot")));
    assert!(!hit(&p, &labelled("run-hot-not")));
    assert!(!hit(&p, &labelled("Run-HOT")));
    let p = archive_when("label = [\"run-?\", \"exact\"]");
    assert!(hit(&p, &labelled("run-1")));
    assert!(hit(&p, &labelled("exact")));
    assert!(!hit(&p, &labelled("run-10")));
}

#[test]
fn tags_match_by_key_and_value_or_by_key_alone() {
    let tagged = |tags: &[(&str, &str)]| File {
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        ..File::default()
    };
    let p = archive_when("tag = \"project=x\"");
    assert!(hit(&p, &tagged(&[("a", "b"), ("project", "x")])));
    assert!(!hit(&p, &tagged(&[("project", "y")])));
    assert!(!hit(&p, &tagged(&[])));
    let p = archive_when("tag = \"project\"");
    assert!(hit(&p, &tagged(&[("project", "")])));
    assert!(hit(&p, &tagged(&[("project", "y")])));
    assert!(!hit(&p, &tagged(&[("projects", "y")])));
    // `key=` is the empty value, not presence.
    let p = archive_when("tag = \"project=\"");
    assert!(hit(&p, &tagged(&[("project", "")])));
    assert!(!hit(&p, &tagged(&[("project", "x")])));
    // A list: any of them.
    let p = archive_when("tag = [\"keep\", \"project=z\"]");
    assert!(hit(&p, &tagged(&[("project", "z")])));
    assert!(hit(&p, &tagged(&[("keep", "1")])));
    assert!(!hit(&p, &tagged(&[("project", "x")])));
}

#[test]
fn user_group_and_tenancy_match_exactly_or_any_of_a_list() {
    let p = archive_when("user = \"alice\"");
    assert!(hit(&p, &File::default()));
    assert!(!hit(
        &p,
        &File {
            user: "alicia".into(),
            ..File::default()
        }
    ));
    let p = archive_when("group = [\"gws-b\", \"gws-a\"]");
    assert!(hit(&p, &File::default()));
    assert!(!hit(
        &p,
        &File {
            group: "gws-c".into(),
            ..File::default()
        }
    ));
    // The default object store is the tenancy "default".
    let p = archive_when("tenancy = \"default\"");
    assert!(hit(&p, &File::default()));
    assert!(!hit(
        &p,
        &File {
            tenancy: Some("t1".into()),
            ..File::default()
        }
    ));
    let p = archive_when("tenancy = [\"t1\", \"t2\"]");
    assert!(hit(
        &p,
        &File {
            tenancy: Some("t2".into()),
            ..File::default()
        }
    ));
    assert!(!hit(&p, &File::default()));
}

#[test]
fn tiers_select_files_by_which_tiers_hold_a_copy() {
    // Tested with `none` rules, which apply to every file.
    let when = |tiers: &str| {
        policy(&format!(
            "[[rule]]\nname = \"r\"\naction = \"none\"\ntiers = {tiers}\n"
        ))
    };
    let warm = File::default();
    let both = File::default().both();
    let cold = File::default().cold_only();
    let table = [
        ("\"warm-only\"", [true, false, false]),
        ("\"cold-only\"", [false, false, true]),
        ("\"both\"", [false, true, false]),
        ("\"warm\"", [true, true, false]),
        ("\"cold\"", [false, true, true]),
        ("[\"warm-only\", \"cold-only\"]", [true, false, true]),
    ];
    for (tiers, want) in table {
        let p = when(tiers);
        let got = [&warm, &both, &cold].map(|f| hit(&p, f));
        assert_eq!(got, want, "tiers = {tiers}");
    }
}

#[test]
fn keys_of_one_table_are_all_required() {
    let p = archive_when("group = \"gws-a\"\nage = \"30d\"\nsize_min = \"1MiB\"");
    assert!(hit(&p, &File::default().aged(31)));
    assert!(!hit(&p, &File::default().aged(29)));
    assert!(!hit(
        &p,
        &File {
            group: "gws-b".into(),
            ..File::default().aged(31)
        }
    ));
    assert!(!hit(
        &p,
        &File {
            size: 10,
            ..File::default().aged(31)
        }
    ));
}

#[test]
fn any_needs_one_table_and_all_needs_every_table_nested_at_any_depth() {
    let p = archive_when(
        r#"any = [ { group = "gws-b" }, { tag = "project=x", all = [ { size_min = 100 }, { any = [ { user = "alice" }, { user = "bob" } ] } ] } ]"#,
    );
    // gws-b alone is enough.
    assert!(hit(
        &p,
        &File {
            group: "gws-b".into(),
            tags: vec![],
            ..File::default()
        }
    ));
    // project=x, big enough, alice or bob.
    assert!(hit(&p, &File::default()));
    assert!(hit(
        &p,
        &File {
            user: "bob".into(),
            ..File::default()
        }
    ));
    assert!(!hit(
        &p,
        &File {
            user: "carol".into(),
            ..File::default()
        }
    ));
    assert!(!hit(
        &p,
        &File {
            size: 99,
            ..File::default()
        }
    ));
    assert!(!hit(
        &p,
        &File {
            tags: vec![],
            ..File::default()
        }
    ));

    let p = archive_when(r#"all = [ { label = "a*" }, { label = "*z" } ]"#);
    assert!(hit(
        &p,
        &File {
            label: "abcz".into(),
            ..File::default()
        }
    ));
    assert!(!hit(
        &p,
        &File {
            label: "abc".into(),
            ..File::default()
        }
    ));
}
