//! Access tracking through the real `nlds` CLI against an embedded server: a get records, per
//! file, the last access and an access count, and the holding's last access; `find` and `list`
//! show them (in `--json`, the native API's answer, and in the full views).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::cli::{Cli, s};
use crate::embedded::start_embedded;
use crate::helpers::{restored, temp};

/// `t` (an RFC 3339 time in a JSON answer) is within `[lo, hi]`, allowing for rounding.
fn within(t: &Value, lo: DateTime<Utc>, hi: DateTime<Utc>) -> bool {
    let slack = TimeDelta::seconds(1);
    t.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t >= lo - slack && t <= hi + slack)
}

fn files(found: &Value) -> &Vec<Value> {
    found["files"].as_array().expect("a page of files")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_get_is_recorded_and_find_and_list_show_it() {
    let data = temp();
    let e = start_embedded(data.path()).await;
    let src = temp();
    let root = src.path().join("tracked");
    std::fs::create_dir(&root).unwrap();
    for i in 0..3 {
        std::fs::write(root.join(format!("f{i}.txt")), format!("content {i}")).unwrap();
    }
    let cli = Cli {
        url: e.url.clone(),
        token: e.token.clone(),
        cwd: root.clone(),
    };
    let root_s = s(&root);
    let wait = ["--wait", "--poll", "100ms"];
    cli.ok(&[&["put", &root_s, "-l", "tracked"], &wait[..]].concat());

    // Stored, never read.
    let found = cli.json(&["find", "-l", "tracked"]);
    assert_eq!(files(&found).len(), 4, "{found}");
    for f in files(&found) {
        assert_eq!(f["access_count"], 0, "{f}");
        assert!(f["last_access"].is_null(), "{f}");
    }
    let list = cli.json(&["list", "-l", "tracked"]);
    assert!(list["holdings"][0]["last_access"].is_null(), "{list}");
    let full = cli.ok(&["list", "-l", "tracked"]);
    assert!(full.contains("last access     : never"), "{full}");

    // A get: every file it restored counted once, at the time of the get.
    let get = |cli: &Cli, target: &std::path::Path| {
        let t = s(target);
        cli.ok(&[&["get", &root_s, "-l", "tracked", "-r", &t], &wait[..]].concat());
    };
    let tgt = temp();
    let before = Utc::now();
    get(&cli, tgt.path());
    let after = Utc::now();
    assert_eq!(
        std::fs::read(restored(tgt.path(), &root.join("f1.txt"))).unwrap(),
        b"content 1"
    );
    let found = cli.json(&["find", "-l", "tracked"]);
    for f in files(&found) {
        assert_eq!(f["access_count"], 1, "{f}");
        assert!(within(&f["last_access"], before, after), "{f}");
    }
    let first = &files(&found)[0]["last_access"];
    let list = cli.json(&["list", "-l", "tracked"]);
    let holding = &list["holdings"][0];
    assert!(within(&holding["last_access"], before, after), "{list}");
    assert_eq!(
        &holding["last_access"], first,
        "the holding's last access is its files'"
    );

    // The full views say it too.
    let f1 = s(&root.join("f1.txt"));
    let one = cli.ok(&["find", "-p", &f1]);
    assert!(one.contains("access count    : 1"), "{one}");
    assert!(one.contains("last access     : 20"), "{one}");
    let full = cli.ok(&["list", "-l", "tracked"]);
    assert!(full.contains("last access     : 20"), "{full}");

    // A second get counts again.
    let tgt2 = temp();
    get(&cli, tgt2.path());
    let found = cli.json(&["find", "-l", "tracked"]);
    for f in files(&found) {
        assert_eq!(f["access_count"], 2, "{f}");
    }
    let again = cli.json(&["list", "-l", "tracked"]);
    assert!(
        within(&again["holdings"][0]["last_access"], after, Utc::now()),
        "{again}"
    );
}
