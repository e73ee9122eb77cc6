//! `[policy] file = "..."`: the rules in their own TOML file of `[[rule]]` tables.

use std::io::Write as _;

use crate::*;

fn file_with(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn cfg_for(path: &std::path::Path) -> PolicyConfig {
    PolicyConfig {
        file: Some(path.to_path_buf()),
        ..PolicyConfig::default()
    }
}

#[test]
fn rules_are_read_from_the_named_file() {
    let f = file_with(
        "[[rule]]\nname = \"archive-old\"\naction = \"archive\"\nage = \"30d\"\n[[rule]]\nname = \"pin\"\naction = \"pin\"\nuntil = 2030-01-01T00:00:00Z\n",
    );
    let p = Policy::load(&cfg_for(f.path())).unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p.source(), Some(f.path()));
    assert_eq!(
        rule(&p, &File::default().aged(31)).as_deref(),
        Some("archive-old")
    );
    // The same rules inline give the same fingerprint.
    let inline = policy(
        "[[rule]]\nname = \"archive-old\"\naction = \"archive\"\nage = \"30d\"\n[[rule]]\nname = \"pin\"\naction = \"pin\"\nuntil = 2030-01-01T00:00:00Z\n",
    );
    assert_eq!(p.fingerprint(), inline.fingerprint());
}

#[test]
fn errors_in_a_file_name_the_file_and_the_rule() {
    let f = file_with(
        "[[rule]]\nname = \"r\"\naction = \"archive\"\nage = \"old\"\n[[rule]]\naction = \"evict\"\n",
    );
    let errs = Policy::load(&cfg_for(f.path())).unwrap_err();
    let shown = f.path().display().to_string();
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0].rule, format!("r in {shown}"));
    assert_eq!(errs[0].key, "age");
    assert_eq!(errs[1].rule, format!("#2 in {shown}"));
    assert_eq!(errs[1].key, "name");
    assert!(errs[0].to_string().contains(&shown));
}

#[test]
fn a_missing_or_malformed_file_or_unknown_top_level_key_is_named() {
    let missing = std::path::Path::new("/nonexistent/nlds-policy.toml");
    let errs = Policy::load(&cfg_for(missing)).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].key, "policy.file");
    assert!(
        errs[0].problem.contains("/nonexistent/nlds-policy.toml"),
        "{errs:?}"
    );
    assert!(errs[0].problem.contains("cannot be read"), "{errs:?}");

    let f = file_with("[[rule]\nname = ");
    let errs = Policy::load(&cfg_for(f.path())).unwrap_err();
    assert_eq!(errs[0].key, "policy.file");
    assert!(errs[0].problem.contains("not valid TOML"), "{errs:?}");
    assert!(
        errs[0]
            .to_string()
            .contains(&f.path().display().to_string())
    );

    let f = file_with("[[rules]]\nname = \"a\"\naction = \"archive\"\n");
    let errs = Policy::load(&cfg_for(f.path())).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "rules");
    assert!(
        errs[0].problem.contains("did you mean [[rule]]"),
        "{errs:?}"
    );
}

#[test]
fn a_file_and_inline_rules_together_are_refused() {
    let f = file_with("[[rule]]\nname = \"a\"\naction = \"archive\"\n");
    let mut cfg = config("[[rule]]\nname = \"b\"\naction = \"archive\"\n");
    cfg.file = Some(f.path().to_path_buf());
    let errs = Policy::load(&cfg).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].key, "policy.file");
    assert!(errs[0].problem.contains("one place"), "{errs:?}");
}

#[test]
fn a_file_read_again_after_a_change_gives_the_new_rules() {
    // Reload reads the file again: an edited file gives a new policy, a broken one an error
    // (the caller keeps the old policy).
    let f = file_with("[[rule]]\nname = \"a\"\naction = \"archive\"\n");
    let first = Policy::load(&cfg_for(f.path())).unwrap();
    std::fs::write(
        f.path(),
        "[[rule]]\nname = \"b\"\naction = \"archive\"\nage = \"1d\"\n",
    )
    .unwrap();
    let second = Policy::load(&cfg_for(f.path())).unwrap();
    assert_ne!(first.fingerprint(), second.fingerprint());
    assert_eq!(second.rules()[0].0, "b");
    std::fs::write(
        f.path(),
        "[[rule]]\nname = \"b\"\naction = \"archive\"\nage = 1\n",
    )
    .unwrap();
    assert!(Policy::load(&cfg_for(f.path())).is_err());
}
