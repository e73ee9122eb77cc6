//! Every way a policy is refused: the error names the rule, the key and the problem, and all
//! errors are reported at once.

use crate::*;

/// Asserts `e` names `rule` and `key`, and that its problem mentions each of `words`.
#[track_caller]
fn names(e: &PolicyError, rule: &str, key: &str, words: &[&str]) {
    assert_eq!(e.rule, rule, "{e}");
    assert_eq!(e.key, key, "{e}");
    for w in words {
        assert!(e.problem.contains(w), "{e:?} should mention {w:?}");
    }
    let shown = e.to_string();
    assert!(shown.contains(rule) && shown.contains(key), "{shown}");
}

/// A rule named "r" with `body` after its name.
fn rule_with(body: &str) -> String {
    format!("[[rule]]\nname = \"r\"\n{body}\n")
}

#[test]
fn an_unknown_key_is_named_with_a_close_match() {
    let e = the_error(&rule_with("action = \"archive\"\nidel = \"90d\""));
    names(
        &e,
        "r",
        "idel",
        &["not a policy key", "did you mean `idle`"],
    );
    let e = the_error(&rule_with("action = \"archive\"\nzzz = 1"));
    names(&e, "r", "zzz", &["not a policy key", "age", "tiers"]);
    // Inside a combinator, the key's path names where.
    let e = the_error(&rule_with(
        "action = \"archive\"\nany = [ { group = \"a\" }, { gruop = \"b\" } ]",
    ));
    names(&e, "r", "any[1].gruop", &["did you mean `group`"]);
    let e = the_error(&rule_with(
        "action = \"archive\"\nall = [ { action = \"evict\" } ]",
    ));
    names(&e, "r", "all[0].action", &["top of a rule"]);
}

#[test]
fn wrong_types_are_named() {
    let e = the_error(&rule_with("action = \"archive\"\ngroup = 5"));
    names(&e, "r", "group", &["group name", "a number"]);
    let e = the_error(&rule_with("action = \"archive\"\nuser = [\"a\", true]"));
    names(&e, "r", "user[1]", &["user name", "a boolean"]);
    let e = the_error(&rule_with("action = 1"));
    names(&e, "r", "action", &["a number"]);
    let e = the_error(&rule_with("action = \"archive\"\nany = { group = \"a\" }"));
    names(&e, "r", "any", &["list of condition tables", "a table"]);
    let e = the_error(&rule_with("action = \"archive\"\nany = [\"a\"]"));
    names(&e, "r", "any[0]", &["table of conditions", "a string"]);
    let e = the_error("[[rule]]\nname = 3\naction = \"archive\"\n");
    names(&e, "#1", "name", &["a string", "a number"]);
}

#[test]
fn bad_durations_sizes_globs_times_tags_and_tiers_are_named() {
    let e = the_error(&rule_with("action = \"archive\"\nage = \"30 dayz\""));
    names(
        &e,
        "r",
        "age",
        &["\"30 dayz\"", "not a duration", "\"30d\""],
    );
    let e = the_error(&rule_with("action = \"archive\"\nidle = 30"));
    names(&e, "r", "idle", &["duration", "a number"]);
    let e = the_error(&rule_with("action = \"archive\"\nsize_min = \"10 MiBs\""));
    names(&e, "r", "size_min", &["not a size", "10MiB"]);
    let e = the_error(&rule_with("action = \"archive\"\nsize_max = -1"));
    names(&e, "r", "size_max", &["non-negative"]);
    let e = the_error(&rule_with("action = \"archive\"\npath = \"/a/[b\""));
    names(&e, "r", "path", &["not a glob"]);
    let e = the_error(&rule_with("action = \"archive\"\npath = \"gws/*.nc\""));
    names(
        &e,
        "r",
        "path",
        &["does not start with / or **", "/gws/*.nc"],
    );
    let e = the_error(&rule_with("action = \"archive\"\nlabel = \"{a\""));
    names(&e, "r", "label", &["not a glob"]);
    let e = the_error(&rule_with("action = \"pin\"\nuntil = \"next tuesday\""));
    names(&e, "r", "until", &["RFC 3339", "2027-06-30T00:00:00Z"]);
    let e = the_error(&rule_with(
        "action = \"pin\"\nuntil = \"2027-06-30T00:00:00\"",
    ));
    names(&e, "r", "until", &["offset"]);
    let e = the_error(&rule_with("action = \"archive\"\ntag = \"=x\""));
    names(&e, "r", "tag", &["no tag key"]);
    let e = the_error(&rule_with("action = \"none\"\ntiers = \"hot\""));
    names(&e, "r", "tiers", &["\"hot\"", "warm-only"]);
    let e = the_error(&rule_with("action = \"archive\"\ngroup = []"));
    names(&e, "r", "group", &["empty list"]);
}

#[test]
fn a_missing_name_or_action_and_an_unknown_action_are_named() {
    // The first rule has no name: it is named by its position; the second's is empty.
    let errs =
        errors("[[rule]]\naction = \"archive\"\n[[rule]]\naction = \"evict\"\nname = \"\"\n");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    names(&errs[0], "#1", "name", &["missing"]);
    names(&errs[1], "#2", "name", &["empty"]);
    let e = the_error(&rule_with("age = \"1d\""));
    names(&e, "r", "action", &["missing", "archive"]);
    let e = the_error(&rule_with("action = \"archvie\""));
    names(
        &e,
        "r",
        "action",
        &["not an action", "did you mean \"archive\""],
    );
}

#[test]
fn duplicate_names_are_refused() {
    let errs = errors(
        "[[rule]]\nname = \"a\"\naction = \"archive\"\n[[rule]]\nname = \"b\"\naction = \"evict\"\n[[rule]]\nname = \"a\"\naction = \"evict\"\n",
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    names(
        &errs[0],
        "a",
        "name",
        &["also the name of rule #1", "unique", "rule #3"],
    );
}

#[test]
fn until_belongs_to_pin_rules_only_and_pins_need_it() {
    let e = the_error(&rule_with(
        "action = \"archive\"\nuntil = \"2027-01-01T00:00:00Z\"",
    ));
    names(&e, "r", "until", &["only a pin rule", "\"archive\""]);
    let e = the_error(&rule_with("action = \"pin\"\nlabel = \"*-hot\""));
    names(&e, "r", "until", &["missing", "pin"]);
}

#[test]
fn empty_combinators_and_empty_tables_are_refused() {
    let e = the_error(&rule_with("action = \"archive\"\nany = []"));
    names(&e, "r", "any", &["empty list"]);
    let e = the_error(&rule_with("action = \"archive\"\nall = [ {} ]"));
    names(&e, "r", "all[0]", &["empty table", "every file"]);
}

#[test]
fn ranges_that_match_nothing_are_refused() {
    let e = the_error(&rule_with(
        "action = \"archive\"\nsize_min = \"2MiB\"\nsize_max = \"1MiB\"",
    ));
    names(
        &e,
        "r",
        "size_min",
        &["more than size_max", "no file can match"],
    );
    let e = the_error(&rule_with(
        "action = \"archive\"\nage = \"30d\"\nage_max = \"10d\"",
    ));
    names(
        &e,
        "r",
        "age",
        &["not less than age_max", "no file can match"],
    );
    let e = the_error(&rule_with(
        "action = \"archive\"\nany = [ { idle = \"5d\", idle_max = \"5d\" } ]",
    ));
    names(&e, "r", "any[0].idle", &["not less than idle_max"]);
}

#[test]
fn a_rule_that_can_never_apply_is_refused() {
    let e = the_error(&rule_with("action = \"archive\"\ntiers = \"cold-only\""));
    names(
        &e,
        "r",
        "tiers",
        &["can never apply", "warm-only", "cold-only"],
    );
    let e = the_error(&rule_with("action = \"archive\"\ntiers = \"both\""));
    names(&e, "r", "tiers", &["can never apply"]);
    let e = the_error(&rule_with("action = \"evict\"\ntiers = \"warm-only\""));
    names(
        &e,
        "r",
        "tiers",
        &["can never apply", "both a warm and a cold copy"],
    );
    // Through a combinator too.
    let e = the_error(&rule_with(
        "action = \"evict\"\nany = [ { tiers = \"warm-only\" }, { tiers = \"cold-only\", group = \"g\" } ]",
    ));
    names(&e, "r", "tiers", &["can never apply"]);
    let e = the_error(&rule_with(
        "action = \"pin\"\nuntil = \"2027-01-01T00:00:00Z\"\ntiers = \"cold-only\"",
    ));
    names(&e, "r", "tiers", &["warm copy"]);
    let e = the_error(&rule_with(
        "action = \"none\"\ntiers = \"warm\"\nall = [ { tiers = \"cold-only\" } ]",
    ));
    names(&e, "r", "tiers", &["contradict"]);
    // But a rule whose tiers allow it is fine.
    policy(&rule_with("action = \"evict\"\ntiers = \"cold\""));
    policy(&rule_with("action = \"archive\"\ntiers = \"warm\""));
}

#[test]
fn every_error_of_every_rule_is_reported_and_nothing_loads() {
    let errs = errors(
        r#"
        [[rule]]
        name = "ok"
        action = "archive"
        [[rule]]
        action = "evict"
        idle = "soon"
        [[rule]]
        name = "bad"
        action = "pin"
        size_min = "big"
        colour = "red"
        "#,
    );
    let got: Vec<(String, String)> = errs
        .iter()
        .map(|e| (e.rule.clone(), e.key.clone()))
        .collect();
    let want = [
        ("#2", "name"),
        ("#2", "idle"),
        ("bad", "until"),
        ("bad", "size_min"),
        ("bad", "colour"),
    ];
    for (rule, key) in want {
        assert!(
            got.contains(&(rule.to_owned(), key.to_owned())),
            "missing {rule}/{key} in {got:?}"
        );
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
}
