//! `nlds dellist` of a FILELIST longer than one chunk, and the dry runs of `putlist`, `getlist`
//! and `dellist` of such lists, through the real `nlds` CLI against the embedded process
//! (docs/PROTOCOL.md, "Chunked requests"): the chunks are sent first and the delete names them;
//! exactly the listed paths go (a directory with everything under it), as the same list in one
//! body deletes them; the dry runs, asked chunk by chunk, print what one request of the whole
//! list prints, and change nothing; another user naming the chunks gets 404; the CLI's memory
//! stays flat over a long list.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use nlds_core::api::{ApiAction, FilePage, TransactionPage, TransactionStatus};
use serde_json::{Value, json};

use crate::helpers::{Api, ServerProcess, temp};
use crate::streaming::{CLI_PEAK_RSS_MIB, assert_ok, nlds_command, peak_of};

const ALICE: &str = "dellist-alice-token-0123456789";
const BOB: &str = "dellist-bob-token-0123456789ab";
const CAROL: &str = "dellist-carol-token-012345678";

/// The chunk the CLI sends lists in here; a list of at most [`ONE_BODY`] paths is one chunk.
const CHUNK: usize = 50;
const ONE_BODY: usize = 100_000;

/// The embedded server in a process of its own, with users alice, bob and carol (group
/// climate).
async fn server(base: &Path) -> ServerProcess {
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("tokens.toml"),
        format!(
            "[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{BOB}\"\nuser = \"bob\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{CAROL}\"\nuser = \"carol\"\ngroups = [\"climate\"]\n"
        ),
    )
    .unwrap();
    ServerProcess::start(&data, &base.join("logs"), None, "warn").await
}

/// Runs `nlds ARGS` as alice in `cwd` with chunks of `chunk` paths; its output, whatever its
/// exit code.
fn nlds(server: &ServerProcess, cwd: &Path, chunk: usize, args: &[&str]) -> Output {
    nlds_command(server, ALICE, cwd, args)
        .env("NLDS_CHUNK_PATHS", chunk.to_string())
        .env("NLDS_GROUP", "climate")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Six directories `d0`..`d5` of 50 files each under `root`; returns every file's path.
fn tree(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for d in 0..6 {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..50 {
            let p = dir.join(format!("f{i:02}"));
            std::fs::write(&p, format!("{d}/{i}")).unwrap();
            files.push(p.to_string_lossy().into_owned());
        }
    }
    files
}

fn write_list(path: &Path, lines: &[String]) -> String {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    path.to_string_lossy().into_owned()
}

/// The list to delete from a tree at `root`: every other file of `d0`..`d3` (100 files), the
/// directory `d4` (its 50 files and itself) and a path that does not exist, spread over the
/// list; with `dup`, the first file once more at the end (in another chunk).
fn delete_list(root: &Path, dup: bool) -> (Vec<String>, BTreeSet<String>) {
    let mut picked: Vec<String> = Vec::new();
    for d in 0..4 {
        for i in (0..50).step_by(2) {
            picked.push(
                root.join(format!("d{d}/f{i:02}"))
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    let mut gone: BTreeSet<String> = picked.iter().cloned().collect();
    for i in 0..50 {
        gone.insert(
            root.join(format!("d4/f{i:02}"))
                .to_string_lossy()
                .into_owned(),
        );
    }
    let mut lines = picked[..40].to_vec();
    lines.push(root.join("nope").to_string_lossy().into_owned());
    lines.extend_from_slice(&picked[40..70]);
    lines.push(root.join("d4").to_string_lossy().into_owned());
    lines.extend_from_slice(&picked[70..]);
    if dup {
        lines.push(picked[0].clone());
    }
    (lines, gone)
}

/// The live files (not directories) of holding `label`.
async fn files_of(api: &Api, label: &str) -> BTreeSet<String> {
    let (s, b) = api
        .get(&format!("/api/v2/files?label={label}&limit=10000"))
        .await;
    assert_eq!(s, 200, "{b}");
    let page: FilePage = serde_json::from_value(b).unwrap();
    page.files
        .into_iter()
        .filter(|f| f.kind == nlds_core::PathKind::File)
        .map(|f| f.path)
        .collect()
}

async fn transactions(api: &Api) -> Vec<TransactionStatus> {
    let (s, body) = api.get("/api/v2/transactions?limit=100").await;
    assert_eq!(s, 200, "{body}");
    serde_json::from_value::<TransactionPage>(body)
        .unwrap()
        .transactions
}

async fn newest(api: &Api, action: ApiAction) -> TransactionStatus {
    transactions(api)
        .await
        .into_iter()
        .find(|t| t.api_action == action)
        .unwrap_or_else(|| panic!("no {action} transaction"))
}

/// Puts the tree at `root` as holding `label` (alice's).
fn put_tree(server: &ServerProcess, cwd: &Path, root: &Path, label: &str) {
    let root_s = root.to_string_lossy().into_owned();
    let args = ["put", &root_s, "-l", label, "--wait", "--poll", "200ms"];
    assert_ok(&args, &nlds(server, cwd, CHUNK, &args));
}

/// Runs a dry run with chunks of [`CHUNK`] and with one chunk: both must exit alike and print
/// the same (with `lines`, the same lines, in any order, and without the time a deleted file
/// can be undeleted until); returns the output of the chunked one.
fn same_dry_run(server: &ServerProcess, cwd: &Path, lines: bool, args: &[&str]) -> String {
    let chunked = nlds(server, cwd, CHUNK, args);
    let whole = nlds(server, cwd, ONE_BODY, args);
    assert_eq!(
        chunked.status.code(),
        whole.status.code(),
        "{args:?}\nchunked: {}\none chunk: {}",
        text(&chunked),
        text(&whole)
    );
    let shown = |o: &Output| {
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        if !lines {
            return out;
        }
        let mut v: Vec<String> = out
            .lines()
            .map(|l| l.split("; `nlds undelete`").next().unwrap_or(l).to_owned())
            .collect();
        v.sort();
        v.join("\n")
    };
    assert_eq!(shown(&chunked), shown(&whole), "{args:?}");
    text(&chunked)
}

/// A dellist of 103 lines in chunks of 50 (two sent before the delete, which carries the last)
/// deletes exactly the listed files, a directory with everything under it, a path listed twice
/// once, and names the path that does not exist, ending as the same list deleted in one body
/// does (state, counts, exit code). Before it, the dry runs of dellist, putlist and getlist of
/// lists of several chunks print what one request prints (their totals) and change nothing.
#[tokio::test]
async fn dellist_in_chunks_deletes_exactly_the_listed_paths_and_dry_runs_add_up() {
    let base = temp();
    let server = server(base.path()).await;
    let api = Api::new(&server.url, ALICE);
    let (a_root, b_root) = (base.path().join("a"), base.path().join("b"));
    let a_files = tree(&a_root);
    let b_files = tree(&b_root);
    put_tree(&server, base.path(), &a_root, "a");
    put_tree(&server, base.path(), &b_root, "b");
    assert_eq!(files_of(&api, "a").await.len(), 300);
    let before = transactions(&api).await.len();

    // The dry runs of lists of several chunks.
    let (lines, gone) = delete_list(&b_root, false);
    let list = write_list(&base.path().join("dry.list"), &lines);
    let said = same_dry_run(&server, base.path(), true, &["dellist", &list, "--dry-run"]);
    assert!(
        said.contains("\n151 file(s), ") && said.contains("bytes would be deleted"),
        "{said}"
    );
    assert!(
        said.contains(&format!("not deleted: {}/nope", b_root.display())),
        "{said}"
    );
    let all = write_list(&base.path().join("all.list"), &b_files);
    let said = same_dry_run(
        &server,
        base.path(),
        false,
        &["putlist", &all, "-l", "fresh", "--dry-run"],
    );
    assert!(
        said.contains("300 given: 300 found, 0 missing")
            && said.contains("300 files, 0 directories"),
        "{said}"
    );
    let target = base.path().join("restore");
    std::fs::create_dir(&target).unwrap();
    let target_s = target.to_string_lossy().into_owned();
    let said = same_dry_run(
        &server,
        base.path(),
        false,
        &[
            "getlist",
            &all,
            "-l",
            "b",
            "--target",
            &target_s,
            "--dry-run",
        ],
    );
    let json = nlds(
        &server,
        base.path(),
        CHUNK,
        &[
            "--json",
            "getlist",
            &all,
            "-l",
            "b",
            "--target",
            &target_s,
            "--dry-run",
        ],
    );
    assert!(said.contains("300"), "{said}");
    assert_ok(&["getlist", "--dry-run"], &json);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v["plan"]["files_total"], 300,
        "{}",
        v["plan"]["files_total"]
    );
    assert_eq!(v["request"]["paths"].as_array().unwrap().len(), 300);
    // Nothing changed: no transaction, no file gone, nothing restored.
    assert_eq!(transactions(&api).await.len(), before);
    assert_eq!(files_of(&api, "b").await.len(), 300);
    assert!(std::fs::read_dir(&target).unwrap().next().is_none());

    // The delete in chunks, and the same list in one body on the other tree.
    let (lines, gone_a) = delete_list(&a_root, true);
    let list = write_list(&base.path().join("a.list"), &lines);
    let chunked = nlds(
        &server,
        base.path(),
        CHUNK,
        &["dellist", &list, "-l", "a", "--wait", "--poll", "200ms"],
    );
    let chunked_t = newest(&api, ApiAction::Dellist).await;
    let (lines, _) = delete_list(&b_root, true);
    let list = write_list(&base.path().join("b.list"), &lines);
    let whole = nlds(
        &server,
        base.path(),
        ONE_BODY,
        &["dellist", &list, "-l", "b", "--wait", "--poll", "200ms"],
    );
    let whole_t = newest(&api, ApiAction::Dellist).await;
    assert_ne!(chunked_t.transaction_id, whole_t.transaction_id);

    let said = text(&chunked);
    assert!(
        said.contains(&format!("{}/nope", a_root.display())),
        "the missing path is named: {said}"
    );
    assert_eq!(
        chunked.status.code(),
        whole.status.code(),
        "{said}\n{}",
        text(&whole)
    );
    assert_eq!(
        (
            chunked_t.state,
            chunked_t.files_done,
            chunked_t.files_failed
        ),
        (whole_t.state, whole_t.files_done, whole_t.files_failed),
        "{chunked_t:#?}\n{whole_t:#?}"
    );
    assert_eq!(chunked_t.files_failed, 1, "{chunked_t:#?}");
    assert_eq!(
        chunked_t.state,
        nlds_core::State::CompleteWithErrors,
        "{chunked_t:#?}"
    );
    // Every part's sub-record ended with the delete (three parts: two chunks and the request's).
    assert_eq!(chunked_t.sub_records.len(), 3, "{chunked_t:#?}");
    assert_eq!(chunked_t.label.as_deref(), Some("a"));
    let kept: BTreeSet<String> = a_files
        .iter()
        .filter(|f| !gone_a.contains(*f))
        .cloned()
        .collect();
    assert_eq!(files_of(&api, "a").await, kept);
    assert_eq!(files_of(&api, "a").await.len(), 150);
    assert_eq!(
        files_of(&api, "b").await,
        b_files
            .iter()
            .filter(|f| !gone.contains(*f))
            .cloned()
            .collect::<BTreeSet<_>>()
    );
}

/// The chunks of a dellist are their sender's: another user naming them in a delete gets 404
/// (the same as for chunks that were never sent, naming no one), and nothing is deleted; the
/// sender's delete then deletes them.
#[tokio::test]
async fn another_users_chunks_are_not_found() {
    let base = temp();
    let server = server(base.path()).await;
    let alice = Api::new(&server.url, ALICE);
    let bob = Api::new(&server.url, BOB);
    let root = base.path().join("a");
    let files = tree(&root);
    put_tree(&server, base.path(), &root, "a");

    let tid = uuid::Uuid::new_v4();
    let (s, body) = alice
        .post(
            "/api/v2/paths",
            &json!({"transaction_id": tid, "api_action": "dellist", "part": 0, "paths": files[..10]}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let steal =
        json!({"transaction_id": tid, "parts": 1, "paths": [], "label": "a", "groupall": true});
    let (s, body) = bob.post("/api/v2/delete", &steal).await;
    assert_eq!(s, 404, "{body}");
    let said = body.to_string();
    assert!(!said.contains("alice"), "{said}");
    // Exactly what a transaction with no chunks gets.
    let other = uuid::Uuid::new_v4();
    let (s2, body2) = bob
        .post(
            "/api/v2/delete",
            &json!({"transaction_id": other, "parts": 1, "paths": [], "label": "a", "groupall": true}),
        )
        .await;
    assert_eq!(s2, 404, "{body2}");
    assert_eq!(
        said.replace(&tid.to_string(), "T"),
        body2.to_string().replace(&other.to_string(), "T")
    );
    assert_eq!(files_of(&alice, "a").await.len(), 300);
    let (s, _) = bob.get(&format!("/api/v2/transactions/{tid}")).await;
    assert_eq!(s, 404);

    let (s, body) = alice
        .post(
            "/api/v2/delete",
            &json!({"transaction_id": tid, "parts": 1, "paths": [files[10]], "label": "a"}),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["api_action"], "dellist");
    let t = alice
        .wait(&tid.to_string(), std::time::Duration::from_secs(60))
        .await;
    assert_eq!(t.files_done, 11, "{t:#?}");
    assert_eq!(files_of(&alice, "a").await.len(), 289);
}

/// How many paths the long dry run lists (`NLDS_TEST_DELLIST_PATHS` sets another count).
fn long_count() -> usize {
    std::env::var("NLDS_TEST_DELLIST_PATHS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(200_000)
}

/// The dry run of a dellist of 200,000 paths (none stored: carol has no holding, so the server
/// answers each chunk at once) is asked in chunks of the client's 10,000 and printed as it
/// goes: the CLI's peak resident memory stays under [`CLI_PEAK_RSS_MIB`]. Measured with these
/// debug binaries (2026-12-07, a loaded 2-core machine): 30.7 MiB, 10-26 s; the CLI before,
/// which read the list whole into one request, peaked at 65.7 MiB and was refused (413: 200,000
/// paths are more than `[server] max_paths` in one body).
#[tokio::test]
async fn a_long_dellist_dry_run_in_flat_memory() {
    let n = long_count();
    let base = temp();
    let server = server(base.path()).await;
    let list: PathBuf = base.path().join("long.list");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&list).unwrap());
        for i in 0..n {
            writeln!(w, "/gws/climate/project/run{:03}/file{i:07}.nc", i % 1000).unwrap();
        }
        w.flush().unwrap();
    }
    let list_s = list.to_string_lossy().into_owned();
    let mut cmd = nlds_command(
        &server,
        CAROL,
        base.path(),
        &["dellist", &list_s, "--dry-run"],
    );
    cmd.env("NLDS_GROUP", "climate");
    let started = std::time::Instant::now();
    let (out, peak) = peak_of(cmd, base.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Nothing would be deleted (exit 5), every path said so, and the total at the end.
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("not deleted: "))
            .count(),
        n
    );
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("0 file(s), 0 bytes would be deleted")),
        "{:?}",
        stdout.lines().last()
    );
    eprintln!(
        "dellist --dry-run of {n} paths: peak RSS of the CLI {} MiB, {:.1} s",
        peak / 1024,
        started.elapsed().as_secs_f64()
    );
    assert!(
        peak <= CLI_PEAK_RSS_MIB * 1024,
        "the nlds CLI reached {} MiB for a dellist --dry-run of {n} paths; the limit is \
         {CLI_PEAK_RSS_MIB} MiB (is the FILELIST held whole again?)",
        peak / 1024
    );
}
