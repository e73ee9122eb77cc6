//! Put as create or update (docs/VERSIONS.md), end to end with the real `nlds` CLI against an
//! embedded server: a put again skips what is unchanged and stores what changed as new versions
//! (each sync level), get and find select a version by number or time, delete takes the newest
//! (or every version), `[workers.versions] keep` prunes, two puts of the same path racing both
//! end as versions, the dry run says per file what the put would do, and `/api/1.0.0` keeps its
//! 1.0.x conflicts unless `[server] legacy_put_updates` is on.

use std::path::Path;
use std::time::{Duration, SystemTime};

use nlds_core::State;
use nlds_embedded::{Embedded, EmbeddedOptions};
use nlds_server::ServerSettings;
use serde_json::{Value, json};

use crate::cli::{Cli, s};
use crate::helpers::{Api, ServerProcess, temp};

const TOKEN: &str = "versions-alice-token-0123456789";

async fn start(data: &Path, settings: ServerSettings) -> Embedded {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        data.join("tokens.toml"),
        format!("[[token]]\ntoken = \"{TOKEN}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n"),
    )
    .unwrap();
    Embedded::start(EmbeddedOptions {
        data_dir: data.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap()
}

fn cli(e: &Embedded, cwd: &Path) -> Cli {
    Cli {
        url: e.url.clone(),
        token: TOKEN.into(),
        cwd: cwd.to_owned(),
    }
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::symlink_metadata(p).unwrap().modified().unwrap()
}

fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::open(p).unwrap().set_modified(t).unwrap();
}

/// Writes `content` to `p` and gives it back its modification time `t`.
fn rewrite_keeping_mtime(p: &Path, content: &[u8], t: SystemTime) {
    std::fs::write(p, content).unwrap();
    set_mtime(p, t);
}

/// `nlds --json put PATH -l LABEL [--sync LEVEL] --wait`: the final status.
fn put(c: &Cli, path: &Path, label: &str, sync: Option<&str>) -> Value {
    let p = s(path);
    let mut args = vec!["put", &p, "-l", label, "--wait", "--poll", "100ms"];
    if let Some(level) = sync {
        args.extend(["--sync", level]);
    }
    let t = c.json(&args);
    assert_eq!(t["state"], "COMPLETE", "{t:#}");
    assert_eq!(t["files_failed"], 0, "{t:#}");
    t
}

/// (new versions, skipped) of a put's final status.
fn counts(t: &Value) -> (u64, u64) {
    (
        t["files_new_versions"].as_u64().unwrap(),
        t["files_skipped"].as_u64().unwrap(),
    )
}

/// The versions `find --versions` lists for `path` (number, transaction).
fn versions_of(c: &Cli, label: &str, path: &Path) -> Vec<(u64, String)> {
    let page = c.json(&["find", "-l", label, "-p", &s(path), "--versions"]);
    let mut v: Vec<(u64, String)> = page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["version"].as_u64().unwrap(),
                f["transaction_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Gets `path` from holding `label` (with `extra` options) into a fresh directory; its content.
fn get(c: &Cli, label: &str, path: &Path, extra: &[&str]) -> String {
    let target = temp();
    let p = s(path);
    let t = s(target.path());
    let mut args = vec![
        "get", &p, "-l", label, "-r", &t, "--wait", "--poll", "100ms",
    ];
    args.extend_from_slice(extra);
    c.ok(&args);
    std::fs::read_to_string(crate::helpers::restored(target.path(), path)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_again_stores_new_and_changed_files_and_skips_the_rest() {
    let data = temp();
    let e = start(data.path(), ServerSettings::default()).await;
    let src = temp();
    let root = src.path().join("tree");
    let sub = root.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    for i in 0..10 {
        std::fs::write(root.join(format!("f{i}")), format!("first {i}")).unwrap();
    }
    for i in 0..5 {
        std::fs::write(sub.join(format!("g{i}")), format!("first g{i}")).unwrap();
    }
    let c = cli(&e, src.path());
    let first = put(&c, &root, "tree", None);
    // 15 files (the two directories are not counted as files).
    assert_eq!(first["files_done"], 15, "{first:#}");
    assert_eq!(counts(&first), (0, 0));
    let between = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(20));

    // Three files change, two are added (the directories keep their times: only their entries
    // changed, which a put records per file).
    let (root_t, sub_t) = (mtime(&root), mtime(&sub));
    for p in [root.join("f1"), root.join("f2"), sub.join("g3")] {
        std::fs::write(&p, "second, longer content").unwrap();
    }
    std::fs::write(root.join("f10"), "new").unwrap();
    std::fs::write(sub.join("g5"), "new").unwrap();
    set_mtime(&root, root_t);
    set_mtime(&sub, sub_t);

    // The dry run says per entry what the put will do, as the put then does.
    let plan = c.ok(&["put", &s(&root), "-l", "tree", "--dry-run"]);
    for (path, verdict) in [
        (root.join("f1"), "changed (new version)"),
        (sub.join("g5"), "new"),
        (root.join("f0"), "unchanged (skipped)"),
    ] {
        assert!(
            plan.lines()
                .any(|l| l.contains(verdict) && l.ends_with(&s(&path))),
            "{path:?} {verdict}:\n{plan}"
        );
    }
    assert!(
        plan.contains("2 new, 3 changed (new versions), 14 unchanged (skipped)"),
        "{plan}"
    );

    let p = s(&root);
    let text = c.ok(&[
        "put", &p, "-l", "tree", "-b", "again", "--wait", "--poll", "100ms",
    ]);
    assert!(
        text.contains("2 new, 3 new versions, 14 unchanged (skipped)"),
        "{text}"
    );
    let status = c.json(&["stat", "-b", "again"]);
    let t = &status["transactions"][0];
    assert_eq!(t["state"], "COMPLETE", "{t:#}");
    assert_eq!(counts(t), (3, 14), "{t:#}");
    assert_eq!(t["files_done"], 5, "{t:#}");
    assert_eq!(t["files_failed"], 0, "{t:#}");

    // find --versions: both versions of a changed path, one of an unchanged one.
    let f1 = root.join("f1");
    let v = versions_of(&c, "tree", &f1);
    assert_eq!(v.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(versions_of(&c, "tree", &root.join("f0")).len(), 1);
    let list = c.json(&["list", "-l", "tree"]);
    // Each path once (17 + 2 new); the bytes of every version, old ones included (110 bytes
    // first, then 3 x 22 of new versions and 2 x 3 of new files).
    assert_eq!(list["holdings"][0]["files"], 19, "each path once: {list}");
    assert_eq!(
        list["holdings"][0]["bytes"], 182,
        "old versions take space: {list}"
    );

    // Get: the newest, an old version by number, and by time (RFC 3339 and a date).
    assert_eq!(get(&c, "tree", &f1, &[]), "second, longer content");
    assert_eq!(get(&c, "tree", &f1, &["--version", "1"]), "first 1");
    assert_eq!(
        get(&c, "tree", &f1, &["--at", &between.to_rfc3339()]),
        "first 1"
    );
    let today = between.format("%Y-%m-%d").to_string();
    assert_eq!(
        get(&c, "tree", &f1, &["--at", &today]),
        "second, longer content"
    );

    // A version the path does not have, and a time before its first version: the reason says
    // which versions it has, or when the first was stored (not "in none of alice's holdings").
    let target = temp();
    let t = s(target.path());
    let get_args = |extra: &'static str, value: String| {
        let args: Vec<String> = ["get", &s(&f1), "-l", "tree", "-r", &t, "--wait", "--poll"]
            .iter()
            .map(|a| a.to_string())
            .chain(["100ms".to_owned(), extra.to_owned(), value])
            .collect();
        args
    };
    let args = get_args("--version", "9".into());
    let (_, said) = c.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        said.contains(&format!(
            "{} has no version 9: it has versions 1 and 2",
            s(&f1)
        )),
        "{said}"
    );
    assert!(!said.contains("in none of"), "{said}");
    let args = get_args("--at", "2001-01-01".into());
    let (_, said) = c.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        said.contains(&format!(
            "{} has no version stored at or before 2001-01-01T23:59:59",
            s(&f1)
        )) && said.contains("its first version was stored at 20"),
        "{said}"
    );
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);

    // Delete the newest: the previous version is the newest again.
    c.ok(&["del", &s(&f1), "-l", "tree", "--wait", "--poll", "100ms"]);
    assert_eq!(get(&c, "tree", &f1, &[]), "first 1");
    assert_eq!(versions_of(&c, "tree", &f1).len(), 1);
    // Every version.
    let f2 = root.join("f2");
    c.ok(&[
        "del",
        &s(&f2),
        "-l",
        "tree",
        "--all-versions",
        "--wait",
        "--poll",
        "100ms",
    ]);
    let api = Api::new(&e.url, TOKEN);
    let (code, page) = api
        .get(&format!(
            "/api/v2/files?label=tree&versions=true&path={}",
            crate::embedded::urlencode(&s(&f2))
        ))
        .await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["files"], json!([]), "{page}");
    e.stop().await.unwrap();
}

/// Each sync level catches what it compares and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_sync_level_compares_what_it_says() {
    let data = temp();
    let e = start(data.path(), ServerSettings::default()).await;
    let src = temp();
    let root = src.path().join("levels");
    std::fs::create_dir(&root).unwrap();
    let (a, b, cc) = (root.join("a"), root.join("b"), root.join("c"));
    for p in [&a, &b, &cc] {
        std::fs::write(p, "four").unwrap();
    }
    let c = cli(&e, src.path());
    put(&c, &root, "levels", None);
    // a: same content and size, another mtime; b: same size and mtime, other content; c:
    // another size, same mtime.
    let t = mtime(&a);
    set_mtime(&a, t + Duration::from_secs(60));
    rewrite_keeping_mtime(&b, b"FOUR", mtime(&b));
    rewrite_keeping_mtime(&cc, b"five!", mtime(&cc));

    // (new versions, skipped); the directory is unchanged at every level.
    assert_eq!(counts(&put(&c, &root, "levels", Some("exists"))), (0, 4));
    assert_eq!(counts(&put(&c, &root, "levels", Some("size"))), (1, 3), "c");
    assert_eq!(
        counts(&put(&c, &root, "levels", Some("mtime"))),
        (1, 3),
        "a"
    );
    assert_eq!(
        counts(&put(&c, &root, "levels", Some("checksum"))),
        (1, 3),
        "b"
    );
    assert_eq!(counts(&put(&c, &root, "levels", Some("checksum"))), (0, 4));
    assert_eq!(get(&c, "levels", &b, &[]), "FOUR");
    assert_eq!(get(&c, "levels", &b, &["--version", "1"]), "four");
    for (p, n) in [(&a, 2), (&b, 2), (&cc, 2)] {
        assert_eq!(versions_of(&c, "levels", p).len(), n, "{p:?}");
    }
    // The dry run classifies like the put: a changed file and the unchanged rest.
    std::fs::write(&a, "four and more").unwrap();
    let plan = c.json(&[
        "put",
        &s(&root),
        "-l",
        "levels",
        "--dry-run",
        "--sync",
        "checksum",
    ]);
    let verdicts: Vec<(String, String)> = plan["plan"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["path"].as_str().unwrap().to_owned(),
                v["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (p, want) in [
        (&a, "changed"),
        (&b, "unchanged"),
        (&cc, "unchanged"),
        (&root, "unchanged"),
    ] {
        assert!(
            verdicts.contains(&(s(p), want.to_owned())),
            "{p:?}: {verdicts:?}"
        );
    }
    e.stop().await.unwrap();
}

/// `[workers.versions] keep = 2`: a third version deletes the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_prunes_the_oldest_versions() {
    let data = temp();
    let mut settings = ServerSettings::default();
    settings.workers.versions.keep = 2;
    let e = start(data.path(), settings).await;
    let src = temp();
    let f = src.path().join("kept.txt");
    let c = cli(&e, src.path());
    for (i, content) in ["one", "two!", "three"].iter().enumerate() {
        std::fs::write(&f, content).unwrap();
        let t = put(&c, &f, "kept", None);
        assert_eq!(counts(&t), (u64::from(i > 0), 0), "{t:#}");
    }
    let v: Vec<u64> = versions_of(&c, "kept", &f)
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(v, [2, 3]);
    assert_eq!(get(&c, "kept", &f, &["--version", "2"]), "two!");
    e.stop().await.unwrap();
}

/// Two puts of the same changed path at once: the first is held after its check (before it
/// reads the file), the second runs through; both end COMPLETE as versions 2 and 3, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_puts_of_one_path_at_once_end_as_two_versions() {
    use nlds_hooks::{control, points};
    let data = temp();
    let logs = temp();
    let pause = temp();
    let server = ServerProcess::start_with_env(
        data.path(),
        logs.path(),
        None,
        "warn",
        &[(nlds_hooks::ENV, pause.path().as_os_str())],
    )
    .await;
    let tokens = std::fs::read_to_string(data.path().join("tokens.toml")).unwrap();
    let token = tokens
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .and_then(|t| t.strip_suffix('"'))
        .unwrap()
        .to_owned();
    let api = Api::new(&server.url, &token);
    let src = temp();
    let f = src.path().join("raced.txt");
    std::fs::write(&f, "one").unwrap();
    let body = json!({"paths": [f], "label": "raced"});
    let t = api.put_and_wait(body.clone()).await;
    assert_eq!(t.state, State::Complete, "{t:#?}");

    std::fs::write(&f, "two two").unwrap();
    control::arm(pause.path(), points::PUT_BEFORE_OPEN).unwrap();
    let (code, first) = api.post("/api/v2/put", &body).await;
    assert_eq!(code, 202, "{first}");
    let dir = pause.path().to_owned();
    let held = tokio::task::spawn_blocking(move || {
        control::reached(&dir, points::PUT_BEFORE_OPEN, Duration::from_secs(120))
    })
    .await
    .unwrap();
    assert!(held.is_some(), "the first put never reached transfer-put");
    // The second put finds the same change (its check runs before the first put stores it).
    let second = api.put_and_wait(body).await;
    assert_eq!(second.state, State::Complete, "{second:#?}");
    assert_eq!(second.files_new_versions, 1, "{second:#?}");
    control::release(pause.path(), points::PUT_BEFORE_OPEN).unwrap();
    let first = api
        .wait(
            first["transaction_id"].as_str().unwrap(),
            Duration::from_secs(300),
        )
        .await;
    assert_eq!(first.state, State::Complete, "{first:#?}");
    assert_eq!(
        (first.files_new_versions, first.files_failed),
        (1, 0),
        "{first:#?}"
    );
    let (_, page) = api
        .get(&format!(
            "/api/v2/files?label=raced&versions=true&path={}",
            crate::embedded::urlencode(&s(&f))
        ))
        .await;
    let mut got: Vec<(u64, String)> = page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["transaction_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let numbers: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [1, 2, 3], "{page}");
    assert_eq!(
        got[1].1,
        second.transaction_id.to_string(),
        "the second put stored first"
    );
    assert_eq!(got[2].1, first.transaction_id.to_string());
    server.stop();
}

/// `/api/1.0.0`: a put of a stored path is a conflict (1.0.x) by default; with
/// `[server] legacy_put_updates` it is skipped when unchanged and stored as a version when not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn legacy_puts_conflict_unless_updates_are_enabled() {
    for updates in [false, true] {
        let data = temp();
        let mut settings = ServerSettings::default();
        settings.server.legacy_put_updates = updates;
        let e = start(data.path(), settings).await;
        let api = Api::new(&e.url, TOKEN);
        let src = temp();
        let (a, b) = (src.path().join("a.nc"), src.path().join("b.nc"));
        std::fs::write(&a, "alpha").unwrap();
        std::fs::write(&b, "beta").unwrap();
        let legacy_put = async |api: &Api| {
            let tid = uuid::Uuid::new_v4().to_string();
            let r = api
                .http
                .put(format!("{}/api/1.0.0/files/", api.url))
                .bearer_auth(TOKEN)
                .query(&[
                    ("transaction_id", tid.as_str()),
                    ("user", "alice"),
                    ("group", "climate"),
                ])
                .json(
                    &json!({"filelist": [a.to_str().unwrap(), b.to_str().unwrap()],
                              "label": "legacy"}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());
            api.wait(&tid, Duration::from_secs(300)).await
        };
        let t = legacy_put(&api).await;
        assert_eq!(t.state, State::Complete, "{t:#?}");
        std::fs::write(&b, "beta, changed").unwrap();
        let t = legacy_put(&api).await;
        let codes: Vec<&str> = t.failed_files().map(|f| f.code.as_str()).collect();
        if updates {
            assert_eq!(t.state, State::Complete, "{t:#?}");
            assert_eq!((t.files_new_versions, t.files_skipped), (1, 1), "{t:#?}");
            assert!(codes.is_empty(), "{t:#?}");
        } else {
            assert_eq!(t.state, State::Failed, "{t:#?}");
            assert_eq!(codes, ["conflict", "conflict"], "{t:#?}");
        }
        e.stop().await.unwrap();
    }
}
