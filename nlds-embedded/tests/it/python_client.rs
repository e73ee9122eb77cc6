//! The published Python client (`nlds` of nlds-client 1.0.17 from PyPI) against `/api/1.0.0` of
//! an embedded nlds-server run as a child process: every command the client has, asserted on what
//! it prints and on the files it restores. Skipped unless NLDS_TEST_PYCLIENT names the client's
//! `nlds` script (scripts/services.sh installs it, scripts/test.sh sets the variable; under CI a
//! missing client fails the tests).

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    Api, ServerProcess, Shape, files_containing, python_client, restored, shape, temp,
};

const GROUP: &str = "farmers";
const ALICE_TOKEN: &str = "alice-legacy-token-0123456789";
const BOB_TOKEN: &str = "bob-legacy-token-9876543210ab";
/// Object-store credentials in the client's config: the client sends them as query parameters of
/// every put and get; the server must never write them anywhere.
const SECRET_KEY: &str = "SeKrEt-4b1d-9f3c-PyClient-NeverLogged";
const ACCESS_KEY: &str = "AcCeSs-77e2-PyClient-NeverLogged";
const TENANCY: &str = "tenancy.legacy.example";
/// How long a transaction may take to finish.
const SETTLE: Duration = Duration::from_secs(60);

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A data directory whose tokens file holds alice and bob, both in `farmers`.
fn data_dir(base: &Path) -> PathBuf {
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("tokens.toml"),
        format!(
            "[[token]]\ntoken = \"{ALICE_TOKEN}\"\nuser = \"alice\"\ngroups = [\"{GROUP}\"]\nadmin = false\n\n\
             [[token]]\ntoken = \"{BOB_TOKEN}\"\nuser = \"bob\"\ngroups = [\"{GROUP}\"]\nadmin = false\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        data.join("tokens.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    data
}

/// A token endpoint nobody listens on: the client's token refresh fails at once.
fn refused_token_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/token")
}

/// What one run of the client gave.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// One user of the Python client: a HOME of its own with `.nlds-config` and `.nlds-token`, and a
/// working directory of its own.
struct PyClient {
    bin: PathBuf,
    home: PathBuf,
    cwd: PathBuf,
}

impl PyClient {
    /// A client for `user` with its HOME and working directory under `dir`.
    fn new(bin: &Path, dir: &Path, user: &str, url: &str, token: &str, token_url: &str) -> Self {
        let home = dir.join("home");
        let cwd = dir.join("cwd");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&cwd).unwrap();
        let token_file = home.join(".nlds-token");
        let config = json!({
            "server": {"url": url, "api": "api/1.0.0"},
            "user": {"default_user": user, "default_group": GROUP},
            "authentication": {
                "oauth_client_id": "nlds-test-client",
                "oauth_client_secret": "not-a-real-client-secret",
                "oauth_token_url": token_url,
                "oauth_scopes": "nlds",
                "oauth_token_file_location": s(&token_file),
            },
            "object_storage": {
                "tenancy": TENANCY,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
            },
            "options": {"verify_certificates": false},
        });
        std::fs::write(
            home.join(".nlds-config"),
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .unwrap();
        let c = Self {
            bin: bin.to_owned(),
            home,
            cwd,
        };
        c.set_token(token);
        c
    }

    fn token_file(&self) -> PathBuf {
        self.home.join(".nlds-token")
    }

    fn set_token(&self, access_token: &str) {
        let token = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "x-refresh",
        });
        std::fs::write(self.token_file(), token.to_string()).unwrap();
    }

    fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .current_dir(&self.cwd)
            .env("HOME", &self.home)
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null());
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "PYTHONPATH",
            "PYTHONHOME",
        ] {
            cmd.env_remove(var);
        }
        let out = cmd.output().expect("run the Python nlds client");
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A run that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.code == Some(0) && !out.stderr.contains("Traceback"),
            "nlds {args:?} failed: {out:#?}"
        );
        out.stdout
    }

    /// A run the client must refuse the way it refuses a failed request: click's usage error,
    /// exit 2, the reason on stderr. Returns stderr.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.code == Some(2) && out.stderr.contains("Error: ") && out.stdout.is_empty(),
            "nlds {args:?} should be refused with a usage error: {out:#?}"
        );
        assert!(!out.stderr.contains("Traceback"), "{out:#?}");
        out.stderr
    }

    /// `-j` output: the server's answer plus `"success": true`.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("-j");
        let out = self.ok(&all);
        let v: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("nlds {all:?} printed no JSON ({e}): {out}"));
        assert_eq!(v["success"], true, "nlds {all:?}: {v:#}");
        v
    }

    /// Polls `nlds stat -n TID -j` until every sub-record is final; returns the state the client
    /// derives from them, and the record. The native API then confirms the same final state.
    async fn settle(&self, api: &Api, tid: &str) -> (String, Value) {
        let start = Instant::now();
        loop {
            let out = self.run(&["stat", "-n", tid, "-j"]);
            let mut seen = String::new();
            if out.code == Some(0) {
                let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
                assert_eq!(v["success"], true, "{v:#}");
                let records = v["data"]["records"].as_array().unwrap();
                assert_eq!(records.len(), 1, "one record per transaction id: {v:#}");
                let r = &records[0];
                assert_eq!(r["transaction_id"], tid, "{v:#}");
                if let Some(state) = final_state(r) {
                    let native = api.wait(tid, Duration::from_secs(10)).await;
                    assert_eq!(
                        native.state.name(),
                        state,
                        "the Python client derives the native state: {r:#} vs {native:#?}"
                    );
                    return (state, r.clone());
                }
                seen = r["sub_records"].to_string();
            } else {
                // Not recorded yet: the client reports an empty result as a usage error.
                assert!(
                    out.code == Some(2) && out.stderr.contains("no transaction records found"),
                    "nlds stat -n {tid}: {out:#?}"
                );
            }
            assert!(
                start.elapsed() < SETTLE,
                "transaction {tid} not final after {SETTLE:?}: {seen}"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

/// The overall state as nlds-client's `get_transaction_state` derives it, once every sub-record
/// is final (`None` before).
fn final_state(record: &Value) -> Option<String> {
    let subs: Vec<&str> = record["sub_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .filter(|s| *s != "SPLIT")
        .collect();
    if subs.is_empty() || subs.iter().any(|s| !matches!(*s, "COMPLETE" | "FAILED")) {
        return None;
    }
    let failed = subs.iter().filter(|s| **s == "FAILED").count();
    let warned = record["warnings"].as_array().is_some_and(|w| !w.is_empty());
    Some(
        if failed == subs.len() {
            "FAILED"
        } else if failed > 0 {
            "COMPLETE_WITH_ERRORS"
        } else if warned {
            "COMPLETE_WITH_WARNINGS"
        } else {
            "COMPLETE"
        }
        .to_owned(),
    )
}

/// The value of a `    key             : value` line the client prints (first one).
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("    {key:<16}: ");
    out.lines().find_map(|l| l.strip_prefix(prefix.as_str()))
}

fn must<'a>(out: &'a str, key: &str) -> &'a str {
    field(out, key).unwrap_or_else(|| panic!("no `{key}` line in:\n{out}"))
}

fn lines(out: &str) -> BTreeSet<String> {
    out.lines().map(str::to_owned).collect()
}

fn paths(ps: &[&Path]) -> BTreeSet<String> {
    ps.iter().map(|p| s(p)).collect()
}

/// Every path under `root` that is not a directory, as `find -1` lists a put directory: the
/// directory records nlds-rs keeps (to restore modes and empty directories) are not files, and
/// 1.0.x servers never listed them.
fn tree_files(root: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| !e.file_type().is_dir())
        .map(|e| s(e.path()))
        .collect()
}

/// [`shape`] of the files (not directories) under `root`.
fn file_shape(root: &Path) -> Shape {
    shape(root)
        .into_iter()
        .filter(|(_, e)| e.0 != 'd')
        .collect()
}

fn write_random(path: &Path, len: usize, mode: u32) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    std::fs::write(path, &data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    data
}

/// Rows of the client's multi-holding `list` table: (user, id, label).
fn list_rows(out: &str) -> BTreeSet<(String, i64, String)> {
    out.lines()
        .skip(2)
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(w.len(), 5, "user id label date time: {l:?}");
            (w[0].to_owned(), w[1].parse().unwrap(), w[2].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_python_client_drives_every_command() {
    let Some(bin) = python_client() else {
        return;
    };
    let base = temp();
    let root = base.path();
    let data = data_dir(root);
    // Debug logging, so that the secrets check below covers every request line the server logs.
    let server = ServerProcess::start(&data, &root.join("logs"), None, "debug").await;
    let token_url = refused_token_url();
    let alice = PyClient::new(
        &bin,
        &root.join("alice"),
        "alice",
        &server.url,
        ALICE_TOKEN,
        &token_url,
    );
    let bob = PyClient::new(
        &bin,
        &root.join("bob"),
        "bob",
        &server.url,
        BOB_TOKEN,
        &token_url,
    );
    let api = Api::new(&server.url, ALICE_TOKEN);
    std::fs::write(alice.cwd.join("cwd-marker.txt"), b"must never be stored").unwrap();

    // The data: a single file, a tree (nested, unusual modes, a name with a space), a list.
    let src = root.join("src");
    let tree = src.join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    let single = src.join("single file.dat");
    let single_bytes = write_random(&single, 1500, 0o640);
    write_random(&tree.join("a.nc"), 2100, 0o644);
    write_random(&tree.join("x y.nc"), 10, 0o444);
    write_random(&tree.join("notes.txt"), 300, 0o600);
    write_random(&tree.join("sub/b.nc"), 5000, 0o600);
    write_random(&tree.join("sub/deeper/c.txt"), 0, 0o755);
    std::fs::set_permissions(tree.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    // An empty directory: catalogued as a directory record, never listed by `find` as a file.
    std::fs::create_dir_all(tree.join("sub/empty")).unwrap();
    let plist_dir = src.join("plist");
    std::fs::create_dir_all(&plist_dir).unwrap();
    let listed: Vec<PathBuf> = ["one.dat", "two.dat", "three.dat"]
        .iter()
        .map(|n| plist_dir.join(n))
        .collect();
    for p in &listed {
        write_random(p, 64, 0o644);
    }
    let missing1 = src.join("never-existed-1.dat");
    let missing2 = src.join("never-existed-2.dat");

    // ---- put: a single file, then a directory tree, each with a label and tags.
    let out = alice.ok(&[
        "put",
        &s(&single),
        "-l",
        "single-label",
        "-t",
        "kind:single",
    ]);
    assert!(
        out.starts_with("put transaction accepted for processing.\n"),
        "{out}"
    );
    assert_eq!(must(&out, "action"), "put");
    assert_eq!(must(&out, "user"), "alice");
    assert_eq!(must(&out, "group"), GROUP);
    assert_eq!(must(&out, "label"), "single-label");
    assert_eq!(must(&out, "tags"), "kind : single");
    let put_single = must(&out, "transaction id").to_owned();
    uuid::Uuid::parse_str(&put_single).unwrap();
    assert_eq!(must(&out, "job label"), &put_single[..8]);
    let single_hid: i64 = must(&out, "id").parse().unwrap();
    assert!(single_hid > 0, "{out}");

    let out = alice.ok(&[
        "put",
        &s(&tree),
        "-l",
        "tree-label",
        "-t",
        "project:ice,site:halley",
        "-b",
        "treejob",
    ]);
    assert!(
        out.starts_with("put transaction accepted for processing.\n"),
        "{out}"
    );
    let put_tree = must(&out, "transaction id").to_owned();
    assert_eq!(must(&out, "job label"), "treejob");
    assert_eq!(must(&out, "label"), "tree-label");
    assert!(
        out.contains("    tags            : project : ice\n                      site : halley\n"),
        "{out}"
    );
    let tree_hid: i64 = must(&out, "id").parse().unwrap();
    assert_ne!(tree_hid, single_hid);
    for tid in [&put_single, &put_tree] {
        let (state, _) = alice.settle(&api, tid).await;
        assert_eq!(state, "COMPLETE", "put {tid}");
    }
    let out = alice.ok(&["stat", "-n", &put_tree]);
    assert!(
        out.starts_with(&format!(
            "State of transaction for user:alice, group:{GROUP}, transaction_id:{put_tree}\n"
        )),
        "{out}"
    );
    assert_eq!(must(&out, "state"), "COMPLETE");
    assert_eq!(must(&out, "complete"), "100%");
    assert_eq!(must(&out, "label"), "tree-label");
    assert_eq!(must(&out, "action"), "put");

    // ---- putlist: blank lines (one, then two in a row) must not put the working directory.
    let list_file = root.join("putlist.txt");
    std::fs::write(
        &list_file,
        format!(
            "{}\n\n{}\n\n\n{}\n\n",
            s(&listed[0]),
            s(&listed[1]),
            s(&listed[2])
        ),
    )
    .unwrap();
    let out = alice.ok(&["putlist", &s(&list_file), "-l", "plist-label"]);
    assert!(
        out.starts_with("putlist transaction accepted for processing.\n"),
        "{out}"
    );
    assert_eq!(must(&out, "action"), "putlist");
    let put_list = must(&out, "transaction id").to_owned();
    let (state, record) = alice.settle(&api, &put_list).await;
    assert_eq!(state, "COMPLETE", "a blank line became a path: {record:#}");
    let found = alice.ok(&["find", "-l", "plist-label", "-1"]);
    assert_eq!(
        lines(&found),
        paths(&[&listed[0], &listed[1], &listed[2]]),
        "every listed file, and nothing else, is catalogued"
    );
    let everything = alice.ok(&["find", "-x", "-p", ".*", "-1"]);
    let cwd = s(&alice.cwd);
    assert!(
        !everything.lines().any(|l| l.starts_with(&cwd)),
        "the client's working directory was put: {everything}"
    );
    let out = alice.refused(&["find", "-x", "-p", ".*cwd-marker.*"]);
    assert!(out.contains("Reason: No files found"), "{out}");

    // ---- get: one file (selected by tag) into a target directory.
    let tgt1 = root.join("target-get");
    std::fs::create_dir_all(&tgt1).unwrap();
    let out = alice.ok(&["get", &s(&single), "-r", &s(&tgt1), "-t", "kind:single"]);
    assert!(
        out.starts_with("GET transaction accepted for processing.\n"),
        "{out}"
    );
    assert_eq!(must(&out, "action"), "get");
    let get_single = must(&out, "transaction id").to_owned();
    assert_eq!(alice.settle(&api, &get_single).await.0, "COMPLETE");
    let back = restored(&tgt1, &single);
    assert_eq!(std::fs::read(&back).unwrap(), single_bytes);
    assert_eq!(
        std::fs::metadata(&back).unwrap().mode() & 0o7777,
        0o640,
        "mode restored"
    );

    // ---- getlist: the list `find -1` prints, into a target directory.
    let found = alice.ok(&["find", "-l", "tree-label", "-1"]);
    assert_eq!(
        lines(&found),
        tree_files(&tree),
        "find -1 lists the tree's files, as many lines as files, no directories"
    );
    assert_eq!(found.lines().count(), tree_files(&tree).len(), "{found}");
    let get_list_file = root.join("getlist.txt");
    std::fs::write(&get_list_file, &found).unwrap();
    let tgt2 = root.join("target-getlist");
    std::fs::create_dir_all(&tgt2).unwrap();
    let out = alice.ok(&[
        "getlist",
        &s(&get_list_file),
        "-r",
        &s(&tgt2),
        "-l",
        "tree-label",
    ]);
    assert!(
        out.starts_with("GETLIST transaction accepted for processing.\n"),
        "{out}"
    );
    assert_eq!(must(&out, "action"), "getlist");
    assert_eq!(must(&out, "job label"), "tree-label");
    let get_list = must(&out, "transaction id").to_owned();
    assert_eq!(alice.settle(&api, &get_list).await.0, "COMPLETE");
    // A list of files restores those files (upstream semantics: empty directories are not
    // part of a file list, cedadev/nlds#32).
    assert_eq!(
        file_shape(&restored(&tgt2, &tree)),
        file_shape(&tree),
        "the restored files differ (content or modes)"
    );

    // ---- get without a target: back to the original path (the file was deleted meanwhile).
    let notes = tree.join("notes.txt");
    let notes_bytes = std::fs::read(&notes).unwrap();
    std::fs::remove_file(&notes).unwrap();
    let out = alice.ok(&["get", &s(&notes), "-l", "tree-label", "-b", "backjob"]);
    assert!(
        out.starts_with("GET transaction accepted for processing.\n"),
        "{out}"
    );
    assert_eq!(must(&out, "job label"), "backjob");
    let get_back = must(&out, "transaction id").to_owned();
    assert_eq!(alice.settle(&api, &get_back).await.0, "COMPLETE");
    assert_eq!(std::fs::read(&notes).unwrap(), notes_bytes);
    assert_eq!(std::fs::metadata(&notes).unwrap().mode() & 0o7777, 0o600);

    // ---- list: one holding (single view), several (table).
    let out = alice.ok(&["list", "-l", "tree-label"]);
    assert!(
        out.starts_with(&format!(
            "Listing holding for user:alice, group:{GROUP}, label:tree-label\n"
        )),
        "{out}"
    );
    assert_eq!(must(&out, "user"), "alice");
    assert_eq!(must(&out, "group"), GROUP);
    assert_eq!(must(&out, "id"), tree_hid.to_string());
    assert_eq!(must(&out, "label"), "tree-label");
    assert_eq!(must(&out, "transaction id"), put_tree);
    assert!(
        out.ends_with("    tags            : project : ice\n                      site : halley\n"),
        "{out}"
    );
    let out = alice.ok(&["list"]);
    assert!(
        out.starts_with(&format!("Listing holdings for user:alice, group:{GROUP}\n")),
        "{out}"
    );
    let rows = list_rows(&out);
    let plist_hid = rows
        .iter()
        .find(|r| r.2 == "plist-label")
        .map(|r| r.1)
        .unwrap();
    let expected = BTreeSet::from([
        ("alice".to_owned(), single_hid, "single-label".to_owned()),
        ("alice".to_owned(), tree_hid, "tree-label".to_owned()),
        ("alice".to_owned(), plist_hid, "plist-label".to_owned()),
    ]);
    assert_eq!(rows, expected, "{out}");

    // ---- list as bob: his own holdings (none), then the group's with -A.
    let err = bob.refused(&["list"]);
    assert!(
        err.contains(&format!(
            "Reason: No holdings found for user:bob and group:{GROUP}."
        )),
        "{err}"
    );
    let out = bob.ok(&["list", "-A"]);
    assert!(
        out.starts_with(&format!(
            "Listing holdings for user:bob, group:{GROUP}, groupall:True\n"
        )),
        "{out}"
    );
    assert_eq!(list_rows(&out), expected, "{out}");

    // ---- find: regular expressions for label and path, paths only, URLs, the table, bob.
    let nc = alice.ok(&["find", "-l", "tree-lab.*", "-x", "-p", r".*\.nc$", "-1"]);
    assert_eq!(
        lines(&nc),
        paths(&[
            &tree.join("a.nc"),
            &tree.join("x y.nc"),
            &tree.join("sub/b.nc")
        ]),
        "{nc}"
    );
    let urls = alice.ok(&[
        "find",
        "-l",
        "tree-label",
        "-x",
        "-p",
        r".*\.nc$",
        "-1",
        "-U",
    ]);
    let urls = lines(&urls);
    assert_eq!(urls.len(), 3, "{urls:?}");
    assert!(urls.iter().all(|u| u.starts_with("s3://")), "{urls:?}");
    let out = alice.ok(&["find", "-p", &s(&single), "-U"]);
    assert!(
        out.starts_with(&format!(
            "Listing files for holding for user:alice, group:{GROUP}\n"
        )),
        "{out}"
    );
    assert_eq!(must(&out, "path"), s(&single));
    assert_eq!(must(&out, "type"), "FILE");
    assert_eq!(must(&out, "size"), "1500.0B");
    assert_eq!(must(&out, "permissions"), "rw-r-----");
    assert_eq!(must(&out, "storage location"), "OBJECT_STORAGE");
    assert!(must(&out, "url").starts_with("s3://"), "{out}");
    let out = alice.ok(&["find", "-l", "tree-label"]);
    let mut table = out.lines();
    assert_eq!(
        table.next(),
        Some(
            format!("Listing files for holding for user:alice, group:{GROUP}, label:tree-label")
                .as_str()
        )
    );
    assert_eq!(
        table
            .next()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>),
        Some(vec![
            "user", "h-id", "h-label", "size", "date", "storage", "path"
        ])
    );
    let rows: Vec<&str> = table.collect();
    assert_eq!(rows.len(), tree_files(&tree).len(), "{out}");
    let b_nc = s(&tree.join("sub/b.nc"));
    let row = rows.iter().find(|r| r.ends_with(&b_nc)).unwrap();
    let row = &row[..row.len() - b_nc.len()];
    let w: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(w[0], "alice", "{row}");
    assert_eq!(w[1], tree_hid.to_string(), "{row}");
    assert_eq!(w[2], "tree-label", "{row}");
    assert_eq!(w[3], "4.88K", "{row}");
    assert_eq!(w[5], "O", "object storage: {row}");
    let err = bob.refused(&["find", "-l", "tree-label", "-1"]);
    assert!(err.contains("Reason: No files found"), "{err}");
    let out = bob.ok(&["find", "-A", "-l", "tree-label", "-1"]);
    assert_eq!(lines(&out), tree_files(&tree));

    // ---- meta: relabel, add a tag, delete a tag.
    let out = alice.ok(&[
        "meta",
        "-l",
        "tree-label",
        "-L",
        "tree-final",
        "-T",
        "status:done",
        "-D",
        "site:halley",
    ]);
    let expected_meta = format!(
        "Changed metadata for holding for user:alice, group:{GROUP}, label:tree-label\n\
         \x20   id  : {tree_hid}\n\
         \x20       old metadata: \n\
         \x20           label   : tree-label\n\
         \x20           tags    : {{'project': 'ice', 'site': 'halley'}}\n\
         \x20       new metadata: \n\
         \x20           label   : tree-final\n\
         \x20           tags    : {{'project': 'ice', 'status': 'done'}}\n"
    );
    assert_eq!(out, expected_meta);
    let out = alice.ok(&["list", "-l", "tree-final"]);
    assert_eq!(must(&out, "id"), tree_hid.to_string());
    assert!(
        out.ends_with("    tags            : project : ice\n                      status : done\n"),
        "{out}"
    );
    assert!(!out.contains("site"), "the deleted tag is gone: {out}");
    let err = alice.refused(&["list", "-l", "tree-label"]);
    assert!(err.contains("Reason: No holdings found"), "{err}");

    // ---- stat: failures with their reasons, sub-records, filters, JSON, the whole group.
    let v = alice.json(&["put", &s(&missing1), "-l", "broken-label"]);
    assert_eq!(
        v["msg"], "put transaction accepted for processing.",
        "{v:#}"
    );
    assert_eq!(v["api_action"], "put");
    assert_eq!(v["user"], "alice");
    assert_eq!(v["group"], GROUP);
    assert_eq!(v["label"], "broken-label");
    assert_eq!(v["tag"], json!({}));
    assert_eq!(
        v["tenancy"], TENANCY,
        "the credentials' query parameters reached the server"
    );
    let put_broken = v["transaction_id"].as_str().unwrap().to_owned();
    assert_eq!(v["job_label"], put_broken[..8]);
    let mix_file = root.join("mixed.txt");
    std::fs::write(&mix_file, format!("{}\n{}\n", s(&single), s(&missing2))).unwrap();
    let out = alice.ok(&[
        "putlist",
        &s(&mix_file),
        "-l",
        "mixed-label",
        "-b",
        "mixjob",
    ]);
    let put_mixed = must(&out, "transaction id").to_owned();
    assert_eq!(alice.settle(&api, &put_broken).await.0, "FAILED");
    let (state, _) = alice.settle(&api, &put_mixed).await;
    assert_eq!(state, "COMPLETE_WITH_ERRORS");
    let native = api.wait(&put_mixed, Duration::from_secs(5)).await;
    let native_reason = native
        .failed_files()
        .find(|f| f.path == s(&missing2))
        .map(|f| f.reason.clone())
        .unwrap_or_else(|| panic!("{native:#?}"));

    let out = alice.ok(&["stat", "-n", &put_mixed, "-S", "-E"]);
    assert_eq!(must(&out, "state"), "COMPLETE_WITH_ERRORS", "{out}");
    assert_eq!(must(&out, "label"), "mixed-label");
    assert_eq!(must(&out, "action"), "putlist");
    assert!(out.contains("    sub records     ->\n"), "{out}");
    assert!(out.contains("         state        : COMPLETE\n"), "{out}");
    assert!(out.contains("         state        : FAILED\n"), "{out}");
    assert!(out.contains("    errors in sub records ->\n"), "{out}");
    assert!(
        out.contains(&format!(
            "         +    filepath : {}\n              reason   : {native_reason}\n",
            s(&missing2)
        )),
        "{out}"
    );
    assert!(
        native_reason.contains("no such file"),
        "the reason names the problem: {native_reason}"
    );
    assert_eq!(
        alice.ok(&["stat", "-n", &put_mixed, "-F"]),
        format!("{}\n", s(&missing2))
    );
    let out = alice.ok(&["stat", "-s", "FAILED"]);
    assert!(
        out.starts_with(&format!(
            "State of transaction for user:alice, group:{GROUP}, state:('FAILED',)\n"
        )),
        "{out}"
    );
    assert_eq!(must(&out, "transaction id"), put_broken);
    assert_eq!(must(&out, "state"), "FAILED");
    assert_eq!(must(&out, "complete"), "  0%");
    assert_eq!(
        alice.ok(&["stat", "-s", "FAILED", "-F"]),
        format!("{}\n", s(&missing1))
    );
    let v = alice.json(&["stat", "-s", "COMPLETE"]);
    let complete: BTreeSet<String> = v["data"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(final_state(r).as_deref(), Some("COMPLETE"), "{r:#}");
            r["transaction_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let expected_complete: BTreeSet<String> = [
        &put_single,
        &put_tree,
        &put_list,
        &get_single,
        &get_list,
        &get_back,
    ]
    .into_iter()
    .cloned()
    .collect();
    assert_eq!(complete, expected_complete, "{v:#}");
    let all = alice.ok(&["stat"]);
    let mut table = all.lines();
    assert_eq!(
        table.next(),
        Some(format!("State of transactions for user:alice, group:{GROUP}").as_str())
    );
    assert_eq!(
        table
            .next()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>),
        Some(vec![
            "user", "id", "action", "job", "label", "label", "done", "state", "last", "update"
        ])
    );
    let rows: Vec<&str> = table.collect();
    assert_eq!(rows.len(), 8, "{all}");
    let mix_row = rows.iter().find(|r| r.contains("mixjob")).unwrap();
    assert!(
        mix_row.contains("mixed-label") && mix_row.contains("COMPLETE_WITH_ERRORS"),
        "{mix_row}"
    );
    let tree_row = rows.iter().find(|r| r.contains("treejob")).unwrap();
    assert!(tree_row.contains("100%  COMPLETE "), "{tree_row}");
    let err = bob.refused(&["stat"]);
    assert!(
        err.contains(&format!(
            "no transaction records found for user:bob and group:{GROUP}"
        )),
        "{err}"
    );
    let v = bob.json(&["stat", "-A"]);
    let records = v["data"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 8, "{v:#}");
    assert!(records.iter().all(|r| r["user"] == "alice"), "{v:#}");
    assert_eq!(
        bob.ok(&["stat", "-A", "-s", "FAILED", "-F"]),
        format!("{}\n", s(&missing1))
    );

    // ---- secrets: the object-store keys the client sent with every put and get were never
    // logged or stored. The server logged at debug level, request lines included.
    server.stop();
    let output = std::fs::read_to_string(root.join("logs/server.stderr")).unwrap();
    for request in [
        "method=PUT path=/api/1.0.0/files/}",
        "method=GET path=/api/1.0.0/files/}",
        "method=PUT path=/api/1.0.0/files/getlist/}",
    ] {
        assert!(
            output.contains(request),
            "the server's request log has no {request}: nothing to check"
        );
    }
    assert!(
        !files_containing(&root.join("logs"), "path=/api/1.0.0/files/").is_empty(),
        "the scan finds what the server did log"
    );
    for secret in [SECRET_KEY, ACCESS_KEY] {
        let leaked = files_containing(&root.join("logs"), secret);
        assert!(
            leaked.is_empty(),
            "{secret} in the server's output: {leaked:?}"
        );
        let leaked = files_containing(&data, secret);
        assert!(
            leaked.is_empty(),
            "{secret} in the data directory: {leaked:?}"
        );
    }
}

/// Upstream's status router asks the catalogue for each transaction's holding and shows the
/// holding's label as it is now, so a relabelled holding shows its new label in `nlds stat`.
/// (nlds-rs answers with the label the monitor recorded when the transaction started.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_shows_the_current_label_of_a_relabelled_holding() {
    let Some(bin) = python_client() else {
        return;
    };
    let base = temp();
    let root = base.path();
    let data = data_dir(root);
    let server = ServerProcess::start(&data, &root.join("logs"), None, "info").await;
    let alice = PyClient::new(
        &bin,
        &root.join("alice"),
        "alice",
        &server.url,
        ALICE_TOKEN,
        &refused_token_url(),
    );
    let api = Api::new(&server.url, ALICE_TOKEN);
    let file = root.join("relabel.txt");
    std::fs::write(&file, b"relabel").unwrap();
    let out = alice.ok(&["put", &s(&file), "-l", "old-label", "-b", "relabeljob"]);
    let tid = must(&out, "transaction id").to_owned();
    assert_eq!(alice.settle(&api, &tid).await.0, "COMPLETE");
    alice.ok(&["meta", "-l", "old-label", "-L", "new-label"]);
    assert_eq!(
        must(&alice.ok(&["list", "-l", "new-label"]), "transaction id"),
        tid
    );
    let out = alice.ok(&["stat", "-n", &tid]);
    assert_eq!(must(&out, "label"), "new-label", "{out}");
    let v = alice.json(&["stat", "-n", &tid]);
    assert_eq!(v["data"]["records"][0]["label"], "new-label", "{v:#}");
    assert_eq!(v["data"]["transactions"][&tid], "new-label", "{v:#}");
    server.stop();
}

/// A stand-in OAuth token endpoint: records each request and answers 200 with `reply`.
struct TokenEndpoint {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn token_endpoint(reply: Value) -> TokenEndpoint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let body = reply.to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf).into_owned());
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    TokenEndpoint { url, requests }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_is_refused_with_a_wrong_token_or_identity() {
    let Some(bin) = python_client() else {
        return;
    };
    let base = temp();
    let root = base.path();
    let data = data_dir(root);
    let server = ServerProcess::start(&data, &root.join("logs"), None, "info").await;
    let file = root.join("auth.txt");
    std::fs::write(&file, b"auth").unwrap();

    // A wrong token: 401, which the client reports as "Authentication failed" and answers by
    // trying its refresh grant; the token endpoint is down, so the client stops there (with a
    // traceback: nlds-client does not catch the connection error of the refresh).
    let wrong = PyClient::new(
        &bin,
        &root.join("wrong"),
        "alice",
        &server.url,
        "wrong-token-0000000000000000",
        &refused_token_url(),
    );
    let out = wrong.run(&["list"]);
    let msg = format!(
        "Authentication failed.  Check that the token in the {} file is a valid token (HTTP_401)",
        s(&wrong.token_file())
    );
    assert!(
        out.code == Some(1) && out.stderr.contains(&msg) && out.stdout.is_empty(),
        "{out:#?}"
    );
    // No token at all: 403, the same path.
    wrong.set_token("");
    let out = wrong.run(&["stat"]);
    assert!(
        out.code == Some(1) && out.stderr.contains(&msg.replace("HTTP_401", "HTTP_403")),
        "{out:#?}"
    );

    // The 401 drives the client's token refresh: with a token endpoint that hands out a valid
    // token, the same command goes through on its second attempt.
    let endpoint = token_endpoint(json!({
        "access_token": ALICE_TOKEN,
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": "x-refresh-2",
    }))
    .await;
    let refreshing = PyClient::new(
        &bin,
        &root.join("refreshing"),
        "alice",
        &server.url,
        "expired-token-000000000000000",
        &endpoint.url,
    );
    let out = tokio::task::block_in_place(|| refreshing.ok(&["put", &s(&file), "-l", "auth"]));
    assert!(
        out.starts_with("put transaction accepted for processing.\n"),
        "{out}"
    );
    assert_eq!(must(&out, "user"), "alice");
    let requests = endpoint.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0].starts_with("POST /token ")
            && requests[0].contains("grant_type=refresh_token")
            && requests[0].contains("refresh_token=x-refresh"),
        "{requests:?}"
    );
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(refreshing.token_file()).unwrap()).unwrap();
    assert_eq!(saved["access_token"], ALICE_TOKEN);

    // A valid token acting as someone else, or in a group the user is not in: 404, as upstream.
    let alice = PyClient::new(
        &bin,
        &root.join("alice"),
        "alice",
        &server.url,
        ALICE_TOKEN,
        &refused_token_url(),
    );
    let err = alice.refused(&["list", "-u", "bob"]);
    assert!(
        err.contains("User bob could not be found.") && err.contains("(HTTP_404)"),
        "{err}"
    );
    let err = alice.refused(&["put", &s(&file), "-u", "bob"]);
    assert!(err.contains("User bob could not be found."), "{err}");
    let err = alice.refused(&["stat", "-g", "ranchers"]);
    assert!(
        err.contains("User is not a member of the group ranchers.") && err.contains("(HTTP_404)"),
        "{err}"
    );
    // Nothing was done in bob's name.
    let bob = PyClient::new(
        &bin,
        &root.join("bob"),
        "bob",
        &server.url,
        BOB_TOKEN,
        &refused_token_url(),
    );
    let err = bob.refused(&["stat"]);
    assert!(err.contains("no transaction records found"), "{err}");

    // This server has no [server.legacy_init]: `nlds init` gets a 500 naming what is missing.
    let http = reqwest::Client::new();
    for path in ["/api/1.0.0/init/", "/api/1.0.0/init/token/"] {
        let r = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 500, "{path}");
        let body: Value = r.json().await.unwrap();
        let detail: Value = serde_json::from_str(body["detail"].as_str().unwrap()).unwrap();
        let msg = detail["msg"].as_str().unwrap();
        assert!(
            msg.contains("[server.legacy_init]") && msg.contains("oauth_client_id"),
            "{path}: {body}"
        );
    }
    server.stop();
}

/// What nlds-client's `init` does with the two answers: base64-decode the key and decrypt the
/// settings with Fernet.
const DECRYPT: &str = r#"
import base64, json, sys
from cryptography.fernet import Fernet
answers = json.load(sys.stdin)
key = base64.b64decode(answers["init/token"]["token"])
print(Fernet(key).decrypt(answers["init"]["encrypted_keys"]).decode())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_serves_the_public_client_settings_the_python_client_decrypts() {
    let Some(bin) = python_client() else {
        return;
    };
    let python = bin.parent().unwrap().join("python");
    assert!(python.exists(), "{} missing", python.display());
    let base = temp();
    let root = base.path();
    let data = data_dir(root);
    let config = root.join("server.toml");
    std::fs::write(
        &config,
        "[server.legacy_init]\n\
         oauth_client_id = \"nlds-public-client\"\n\
         oauth_token_url = \"https://auth.legacy.example/oauth/token\"\n\
         oauth_scopes = \"nlds.read nlds.write\"\n\
         tenancy = \"tenancy.legacy.example\"\n",
    )
    .unwrap();
    let server = ServerProcess::start(&data, &root.join("logs"), Some(&config), "info").await;

    // The URLs the client builds (construct_server_url appends a slash), unauthenticated.
    let http = reqwest::Client::new();
    let mut answers = serde_json::Map::new();
    for (name, path) in [
        ("init", "/api/1.0.0/init/"),
        ("init/token", "/api/1.0.0/init/token/"),
    ] {
        let r = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "{path}");
        // A JSON string holding JSON: the client does json.loads(response.json()).
        let outer: Value = r.json().await.unwrap();
        let inner: Value = serde_json::from_str(outer.as_str().expect("a JSON string")).unwrap();
        answers.insert(name.to_owned(), inner);
    }
    // Upstream's own spelling of the token route has no trailing slash.
    let r = http
        .get(format!("{}/api/1.0.0/init/token", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let outer: Value = r.json().await.unwrap();
    let inner: Value = serde_json::from_str(outer.as_str().unwrap()).unwrap();
    assert_eq!(inner, answers["init/token"]);

    let mut child = Command::new(&python)
        .arg("-c")
        .arg(DECRYPT)
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Object(answers).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "decryption failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plain,
        json!({
            "authentication": {
                "oauth_client_id": "nlds-public-client",
                "oauth_client_secret": "",
                "oauth_token_url": "https://auth.legacy.example/oauth/token",
                "oauth_scopes": "nlds.read nlds.write",
            },
            "object_storage": {"tenancy": "tenancy.legacy.example"},
        }),
        "only public settings, and no client secret"
    );
    server.stop();
}
