//! A FILELIST longer than one chunk (`NLDS_CHUNK_PATHS`), read from standard input as it is
//! sent: the chunks go to the fake server of this test binary in order under the request's
//! transaction id, the put or get carries the last one; the local check adds up over the
//! chunks; a refused chunk says the transaction id and starts nothing.

use nlds_cli::app::Env;
use nlds_cli::exit;
use serde_json::{Value, json};

use super::{Fake, accepted_body, err_body, fake_server, run_cli_stdin, uuid};

/// The environment of `server_env` with chunks of `chunk` paths, in `cwd`.
fn chunked_env(fake: &Fake, chunk: &str, cwd: &str) -> Env {
    Env::new(
        [
            ("HOME", "/nonexistent-home"),
            ("NLDS_URL", fake.url().as_str()),
            ("NLDS_TOKEN", "env-token"),
            ("NLDS_GROUP", "climate"),
            ("NLDS_CHUNK_PATHS", chunk),
        ],
        cwd,
    )
}

fn stored(parts: u32, paths: u64) -> String {
    json!({"transaction_id": uuid(0x74), "parts": parts, "paths": paths}).to_string()
}

/// The requests the fake server saw: (target, body).
fn requests(fake: &Fake) -> Vec<(String, Value)> {
    fake.seen()
        .into_iter()
        .map(|s| (s.target.clone(), s.json()))
        .collect()
}

#[tokio::test]
async fn putlist_and_getlist_from_standard_input_are_sent_a_chunk_at_a_time() {
    let tid = uuid(0x74);
    let fake = fake_server(vec![
        (200, stored(1, 2)),
        (200, stored(2, 4)),
        (202, accepted_body(tid, "putlist")),
    ])
    .await;
    let env = chunked_env(&fake, "2", "/gws/climate");
    // Five paths (a blank line and a duplicate within its chunk dropped): chunks of 2, 2 and 1.
    let o = run_cli_stdin(
        &["putlist", "-", "-l", "run42", "--no-check"],
        &env,
        "a\n./a\nb\n\nc\n/d\n  e  \n",
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.err);
    let seen = requests(&fake);
    assert_eq!(seen.len(), 3, "{seen:?}");
    let id = seen[2].1["transaction_id"].clone();
    assert!(id.is_string(), "{seen:?}");
    assert_eq!(seen[0].0, "/api/v2/paths");
    assert_eq!(seen[0].1["part"], 0);
    assert_eq!(seen[0].1["api_action"], "putlist");
    assert_eq!(seen[0].1["transaction_id"], id);
    assert_eq!(seen[0].1["group"], "climate");
    assert_eq!(
        seen[0].1["paths"],
        json!(["/gws/climate/a", "/gws/climate/b"])
    );
    assert_eq!(seen[1].0, "/api/v2/paths");
    assert_eq!(seen[1].1["part"], 1);
    assert_eq!(seen[1].1["transaction_id"], id);
    assert_eq!(seen[1].1["paths"], json!(["/gws/climate/c", "/d"]));
    assert_eq!(seen[2].0, "/api/v2/put");
    assert_eq!(seen[2].1["parts"], 2);
    assert_eq!(seen[2].1["paths"], json!(["/gws/climate/e"]));
    assert_eq!(seen[2].1["label"], "run42");
    assert!(seen[2].1.get("size_hint").is_none_or(Value::is_null));

    // getlist the same way; exactly two chunks: the first is sent, the second is the request's.
    let fake = fake_server(vec![
        (200, stored(1, 2)),
        (202, accepted_body(tid, "getlist")),
    ])
    .await;
    let env = chunked_env(&fake, "2", "/gws/climate");
    let o = run_cli_stdin(&["getlist", "-", "-l", "run42"], &env, "a\nb\nc\nd\n\n").await;
    assert_eq!(o.code, 0, "{}", o.err);
    let seen = requests(&fake);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, "/api/v2/paths");
    assert_eq!(seen[0].1["api_action"], "getlist");
    assert_eq!(seen[0].1["transaction_id"], seen[1].1["transaction_id"]);
    assert_eq!(seen[1].0, "/api/v2/get");
    assert_eq!(seen[1].1["parts"], 1);
    assert_eq!(
        seen[1].1["paths"],
        json!(["/gws/climate/c", "/gws/climate/d"])
    );

    // A list of exactly one chunk is one request, as before.
    let fake = fake_server(vec![(202, accepted_body(tid, "getlist"))]).await;
    let env = chunked_env(&fake, "2", "/gws/climate");
    let o = run_cli_stdin(&["getlist", "-"], &env, "a\nb\n").await;
    assert_eq!(o.code, 0, "{}", o.err);
    let seen = requests(&fake);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "/api/v2/get");
    assert_eq!(seen[0].1["parts"].as_u64().unwrap_or(0), 0);
}

#[tokio::test]
async fn a_refused_chunk_names_the_transaction_and_starts_nothing() {
    let fake = fake_server(vec![
        (200, stored(1, 2)),
        (
            413,
            err_body("payload_too_large", "the request lists too many paths"),
        ),
    ])
    .await;
    let env = chunked_env(&fake, "2", "/gws/climate");
    let o = run_cli_stdin(
        &["putlist", "-", "--no-check"],
        &env,
        "/a\n/b\n/c\n/d\n/e\n",
    )
    .await;
    assert_ne!(o.code, 0);
    let seen = requests(&fake);
    assert_eq!(seen.len(), 2, "no put after a refused chunk: {seen:?}");
    let id = seen[1].1["transaction_id"].as_str().unwrap().to_owned();
    assert!(
        o.err.contains("the request lists too many paths")
            && o.err.contains(&format!(
                "sending part 1 of the paths of transaction {id} failed"
            )),
        "{}",
        o.err
    );
}

/// The local check, chunk by chunk: none of the paths here is refused (exit 5) before the put
/// is sent, naming five and counting the rest; some missing is a note with the counts over
/// every chunk, and the size hint adds up the chunks.
#[tokio::test]
async fn the_local_check_adds_up_over_the_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_str().unwrap().to_owned();
    let fake = fake_server(vec![(200, stored(1, 2))]).await;
    let env = chunked_env(&fake, "2", &cwd);
    let list: String = (0..7).map(|i| format!("gone{i}\n")).collect();
    let o = run_cli_stdin(&["putlist", "-", "-l", "typo"], &env, &list).await;
    assert_eq!(o.code, exit::NOT_FOUND, "{}", o.err);
    assert!(
        o.err.contains(&format!(
            "nothing to put: {cwd}/gone0, {cwd}/gone1, {cwd}/gone2, {cwd}/gone3, {cwd}/gone4 \
             and 2 more do not exist here"
        )) && o
            .err
            .contains("the 3 part(s) of the list already sent start nothing"),
        "{}",
        o.err
    );
    let seen = requests(&fake);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.iter().all(|(t, _)| t == "/api/v2/paths"),
        "no put: {seen:?}"
    );

    // Three files of 4 bytes here, two paths not.
    for i in 0..3 {
        std::fs::write(dir.path().join(format!("f{i}")), "data").unwrap();
    }
    let tid = uuid(0x75);
    let fake = fake_server(vec![
        (200, stored(1, 2)),
        (200, stored(2, 4)),
        (202, accepted_body(tid, "putlist")),
    ])
    .await;
    let env = chunked_env(&fake, "2", &cwd);
    let o = run_cli_stdin(&["putlist", "-"], &env, "f0\ngone0\nf1\nf2\ngone1\n").await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        o.err.contains(&format!(
            "2 of 5 paths do not exist here and will fail: {cwd}/gone0, {cwd}/gone1"
        )),
        "{}",
        o.err
    );
    let seen = requests(&fake);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[2].0, "/api/v2/put");
    assert_eq!(seen[2].1["parts"], 2);
    assert_eq!(seen[2].1["size_hint"], json!({"bytes": 12, "files": 3}));
}

/// A FILELIST that is a pipe (`nlds putlist <(find ...)`): read once, never opened again, so
/// what was read ahead of the first chunk is sent too.
#[tokio::test]
async fn a_filelist_that_is_a_pipe_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("list");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let list: String = (0..7).map(|i| format!("/p/f{i}\n")).collect();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, list).unwrap())
    };
    let tid = uuid(0x76);
    let fake = fake_server(vec![
        (200, stored(1, 2)),
        (200, stored(2, 4)),
        (200, stored(3, 6)),
        (202, accepted_body(tid, "putlist")),
    ])
    .await;
    let env = chunked_env(&fake, "2", dir.path().to_str().unwrap());
    let o = run_cli_stdin(&["putlist", "list", "--no-check"], &env, "").await;
    writer.join().unwrap();
    assert_eq!(o.code, 0, "{}", o.err);
    let seen = requests(&fake);
    let sent: Vec<Value> = seen
        .iter()
        .flat_map(|(_, b)| b["paths"].as_array().unwrap().clone())
        .collect();
    let want: Vec<Value> = (0..7).map(|i| json!(format!("/p/f{i}"))).collect();
    assert_eq!(sent, want, "{seen:?}");
    assert_eq!(seen[3].0, "/api/v2/put");
    assert_eq!(seen[3].1["parts"], 3);
}

/// A dellist longer than one chunk: the chunks go first (`api_action` dellist), the delete
/// names them and carries the last; a bad line in a later chunk is a usage error naming its
/// line, and no delete is sent.
#[tokio::test]
async fn dellist_is_sent_a_chunk_at_a_time_and_a_bad_later_line_deletes_nothing() {
    let tid = uuid(0x77);
    let fake = fake_server(vec![
        (200, stored(1, 2)),
        (200, stored(2, 4)),
        (202, accepted_body(tid, "dellist")),
    ])
    .await;
    let env = chunked_env(&fake, "2", "/gws/climate");
    let o = run_cli_stdin(
        &["dellist", "-", "-l", "run42", "--all-versions"],
        &env,
        "a\nb\nc\n/d\ne\n",
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.err);
    let seen = requests(&fake);
    assert_eq!(seen.len(), 3, "{seen:?}");
    let id = seen[2].1["transaction_id"].clone();
    for (k, want) in [
        (0, json!(["/gws/climate/a", "/gws/climate/b"])),
        (1, json!(["/gws/climate/c", "/d"])),
    ] {
        assert_eq!(seen[k].0, "/api/v2/paths");
        assert_eq!(seen[k].1["api_action"], "dellist");
        assert_eq!(seen[k].1["part"], k);
        assert_eq!(seen[k].1["transaction_id"], id);
        assert_eq!(seen[k].1["paths"], want);
    }
    assert_eq!(seen[2].0, "/api/v2/delete");
    assert_eq!(seen[2].1["parts"], 2);
    assert_eq!(seen[2].1["paths"], json!(["/gws/climate/e"]));
    assert_eq!(seen[2].1["label"], "run42");
    assert_eq!(seen[2].1["all_versions"], true);
    assert_eq!(seen[2].1["dry_run"], false);

    // A bad line (a name with a character nlds reserves) in the third chunk: no delete is sent.
    let fake = fake_server(vec![(200, stored(1, 2)), (200, stored(2, 4))]).await;
    let env = chunked_env(&fake, "2", "/gws/climate");
    let o = run_cli_stdin(&["dellist", "-"], &env, "/a\n/b\n/c\n/d\n/x/\u{10FE80}\n").await;
    assert_eq!(o.code, exit::USAGE, "{}", o.err);
    assert!(
        o.err.contains("FILELIST from standard input, line 5") && o.err.contains("reserves"),
        "{}",
        o.err
    );
    let seen = requests(&fake);
    assert!(
        seen.iter().all(|(t, _)| t == "/api/v2/paths"),
        "no delete: {seen:?}"
    );
}

fn delete_plan(files: &[(&str, u64)], failed: &[&str]) -> String {
    json!({
        "holdings": [],
        "files": files.iter().map(|(p, n)| json!({"path": p, "holding_id": 7, "label": "run42", "user": "alice", "size": n})).collect::<Vec<_>>(),
        "files_total": files.len(),
        "bytes_total": files.iter().map(|(_, n)| n).sum::<u64>(),
        "failed": failed.iter().map(|p| json!({"path": p, "code": "not_found", "reason": format!("{p} is in none of the holdings you can delete from")})).collect::<Vec<_>>(),
        "undelete_until": "2026-12-14T00:00:00Z",
        "dry_run": true,
    })
    .to_string()
}

/// The dry run of a dellist longer than one chunk is asked chunk by chunk (no request carries
/// more than one chunk, none is stored) and prints every chunk's lines and the total of them
/// all; with `--json`, one document of the joined answers.
#[tokio::test]
async fn a_dellist_dry_run_is_asked_chunk_by_chunk_and_added_up() {
    let answers = || {
        vec![
            (200, delete_plan(&[("/a", 1), ("/b", 2)], &[])),
            (200, delete_plan(&[("/c", 4)], &["/gone"])),
            (200, delete_plan(&[("/e", 8)], &[])),
        ]
    };
    let fake = fake_server(answers()).await;
    let env = chunked_env(&fake, "2", "/gws/climate");
    let o = run_cli_stdin(
        &["dellist", "-", "--dry-run"],
        &env,
        "/a\n/b\n/c\n/gone\n/e\n",
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.err);
    let seen = requests(&fake);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|(t, b)| t == "/api/v2/delete"
        && b["dry_run"] == true
        && b["paths"].as_array().unwrap().len() <= 2
        && b.get("parts").is_none()));
    assert_eq!(
        o.out,
        "would be deleted: /a (holding 7, 1 bytes)\n\
         would be deleted: /b (holding 7, 2 bytes)\n\
         would be deleted: /c (holding 7, 4 bytes)\n\
         not deleted: /gone (/gone is in none of the holdings you can delete from)\n\
         would be deleted: /e (holding 7, 8 bytes)\n\
         4 file(s), 15 bytes would be deleted; `nlds undelete` can bring them back until \
         2026-12-14T00:00:00+00:00\n"
    );

    let fake = fake_server(answers()).await;
    let env = chunked_env(&fake, "2", "/gws/climate");
    let o = run_cli_stdin(
        &["--json", "dellist", "-", "--dry-run"],
        &env,
        "/a\n/b\n/c\n/gone\n/e\n",
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.err);
    let v: Value = serde_json::from_str(&o.out).unwrap();
    assert_eq!(v["plan"]["files_total"], 4);
    assert_eq!(v["plan"]["bytes_total"], 15);
    assert_eq!(v["plan"]["files"].as_array().unwrap().len(), 4);
    assert_eq!(v["plan"]["failed"][0]["path"], "/gone");
    assert_eq!(v["request"]["paths"].as_array().unwrap().len(), 5);
}
