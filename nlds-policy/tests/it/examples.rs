//! The worked examples of docs/POLICY.md: each is a file in nlds-policy/examples/, loaded here
//! as `[policy] file` names it, checked for what the doc says it does, and found verbatim in
//! the doc (so the doc cannot drift from what loads).

use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Format as _, Toml};

use crate::*;

fn example(name: &str) -> Policy {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let cfg = PolicyConfig {
        file: Some(path.clone()),
        ..PolicyConfig::default()
    };
    Policy::load(&cfg).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

#[test]
fn every_example_file_is_in_the_doc_verbatim() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../docs/POLICY.md")).unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                doc.contains(text.trim_end()),
                "docs/POLICY.md should include {} verbatim",
                path.display()
            );
            example(path.file_name().unwrap().to_str().unwrap());
            seen += 1;
        }
    }
    assert_eq!(seen, 4, "the examples");
}

#[test]
fn archive_then_evict() {
    let p = example("archive-then-evict.toml");
    assert_eq!(rule(&p, &File::default().aged(29)), None);
    assert_eq!(
        rule(&p, &File::default().aged(30)).as_deref(),
        Some("archive-after-30d")
    );
    assert_eq!(rule(&p, &File::default().aged(200).idle(89).both()), None);
    assert_eq!(
        rule(&p, &File::default().aged(200).idle(90).both()).as_deref(),
        Some("evict-after-90d-idle")
    );
}

#[test]
fn keep_hot() {
    let p = example("keep-hot.toml");
    let hot = File {
        label: "ocean-hot".into(),
        ..File::default().aged(200)
    };
    // Archived like any other file, even while pinned.
    assert_eq!(rule(&p, &hot).as_deref(), Some("archive-after-30d"));
    // Archived: pinned now, kept by the exception after the pin.
    let hot = hot.both();
    assert_eq!(rule(&p, &hot).as_deref(), Some("hot-until-summer"));
    assert!(!p.watermark_eligible(&hot.facts(), now()));
    let later = Utc.with_ymd_and_hms(2028, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(
        p.evaluate(&hot.facts(), later).unwrap().name,
        "hot-stays-warm"
    );
    assert!(!p.watermark_eligible(&hot.facts(), later));
    // Other labels are evicted.
    let cold = File {
        label: "ocean".into(),
        ..hot
    };
    assert_eq!(rule(&p, &cold).as_deref(), Some("evict-after-90d-idle"));
}

#[test]
fn group_never_tape() {
    let p = example("group-never-tape.toml");
    let x = File {
        group: "gws-x".into(),
        ..File::default().aged(400)
    };
    assert_eq!(
        decide(&p, &x),
        Some(("gws-x-stays-on-disk".into(), Action::None))
    );
    assert_eq!(
        rule(&p, &File::default().aged(400)).as_deref(),
        Some("archive-after-30d")
    );
}

#[test]
fn combined() {
    let p = example("combined.toml");
    let scratch = File {
        path: "/gws/a/scratch/x/y.nc".into(),
        ..File::default().aged(400)
    };
    assert_eq!(rule(&p, &scratch).as_deref(), Some("scratch-stays"));
    let big = File {
        group: "gws-model-a".into(),
        size: 2 << 30,
        ..File::default().aged(8)
    };
    assert_eq!(rule(&p, &big).as_deref(), Some("big-model-output"));
    let b_untagged = File {
        group: "gws-model-b".into(),
        tags: vec![],
        ..big.clone()
    };
    assert_eq!(rule(&p, &b_untagged), None);
    let small = File {
        size: 1000,
        ..File::default().aged(400)
    };
    assert_eq!(rule(&p, &small), None);
    assert_eq!(
        rule(&p, &File::default().aged(40)).as_deref(),
        Some("archive-old")
    );
    let old_nc = File::default().aged(400).both();
    assert_eq!(rule(&p, &old_nc).as_deref(), Some("evict-cold-nc"));
    let elsewhere = File {
        tenancy: Some("t1".into()),
        ..old_nc.clone()
    };
    assert_eq!(rule(&p, &elsewhere), None);
    let arctic = File {
        tags: vec![("campaign".into(), "arctic".into())],
        ..old_nc
    };
    assert_eq!(rule(&p, &arctic).as_deref(), Some("campaign"));
}

#[test]
fn the_settings_example_policy_loads() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../nlds.example.toml");
    let cfg: PolicyConfig = Figment::from(Toml::file_exact(&file))
        .focus("policy")
        .extract()
        .unwrap();
    let p = Policy::load(&cfg).unwrap();
    assert_eq!(
        p.rules()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["archive-after-30d", "evict-after-90d-idle"]
    );
    assert!(cfg.watermarks.contains_key("default"));
}
