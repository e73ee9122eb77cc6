//! Requests of any size: a putlist and a getlist of a very long list through the real `nlds`
//! CLI against the embedded process, run as its own process so that its peak resident memory
//! can be read from /proc (`VmHWM`), and the CLI's too (it reads the FILELIST as it sends it);
//! a FILELIST on standard input sent in chunks; and the chunked request protocol and its safety
//! cap over HTTP.
//!
//! The list is 60,000 empty files by default: the CI-sized form of a 1,000,000-path putlist, six
//! chunks of the client's 10,000 paths and more than the server's 50,000-path cap on one request,
//! so it passes only if both the chunks and the stream of batches work. `NLDS_TEST_STREAM_FILES`
//! sets another count; `bench/lists.sh` measures the long forms (200,000 and 1,000,000 paths) in
//! the release build, where flat memory is the claim (BENCHMARKS.md). At 200,000 files this test
//! took 10 minutes of CI's 45 in the debug build on a quiet machine, and timed out on a loaded
//! one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nlds_core::State;
use nlds_core::api::{ApiAction, TransactionPage};
use serde_json::json;

use crate::helpers::{Api, ServerProcess, restored, temp};

/// Peak resident memory the embedded process may reach during the put and the get, in MiB. A
/// regression guard for these debug binaries, not the project's target (150 MiB in release,
/// whatever the number of files: `bench/lists.sh`, BENCHMARKS.md). At 60,000 files the debug build
/// peaked at 135 MiB after the put and 171 MiB after the get on a quiet machine (2026-12-06), of
/// which about 66 MiB are the debug executable's own pages; the guard is that get peak with about
/// 25% for run-to-run variance. Lower it as the peak comes down; never raise it.
const PEAK_RSS_MIB: u64 = 220;

/// Peak resident memory the `nlds` CLI may reach for the putlist and the getlist of that test, in
/// MiB. It reads its FILELIST a chunk at a time as it sends it, so its peak does not grow with
/// the list: this debug CLI peaked at 25-26 MiB (putlist) and 22 MiB (getlist) of 60,000 paths
/// here, and at 24-27 MiB for a putlist of 60,000 files and 23-24 MiB for a putlist or getlist
/// of 1,000,000 paths against an embedded server (2026-12-06, BENCHMARKS.md "Issue 14: the CLI
/// streams its FILELIST"). The CLI before, which held the list (read whole, parsed, copied into
/// the request, scanned), peaked at 42 MiB for 60,000 files (of shorter paths than these) and
/// 224 MiB for 1,000,000 paths. The guard sits between: 25% over the streaming peak, below the
/// held list's.
pub(crate) const CLI_PEAK_RSS_MIB: u64 = 34;

/// How many files the test puts and gets back.
fn count() -> usize {
    std::env::var("NLDS_TEST_STREAM_FILES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(60_000)
}

fn nlds_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("nlds");
    assert!(
        bin.exists(),
        "{} not built: run the tests with --workspace",
        bin.display()
    );
    bin
}

/// The embedded server in a process of its own ([`ServerProcess`], stopped when dropped), and
/// the token of its operator.
async fn server(base: &Path, sets: &[&str]) -> (ServerProcess, String) {
    let server =
        ServerProcess::start_with_sets(&base.join("data"), &base.join("logs"), "warn", sets).await;
    let token = server.operator_token();
    (server, token)
}

/// The `nlds` CLI against `server` in `cwd`.
pub(crate) fn nlds_command(
    server: &ServerProcess,
    token: &str,
    cwd: &Path,
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(nlds_bin());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("NLDS_CONFIG")
        .env_remove("NLDS_GROUP")
        .env_remove("NLDS_CHUNK_PATHS")
        .env("NLDS_URL", &server.url)
        .env("NLDS_TOKEN", token)
        .env("HOME", cwd);
    cmd
}

pub(crate) fn assert_ok(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "nlds {args:?} exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the `nlds` CLI against `server` in `cwd`; it must succeed.
fn nlds(server: &ServerProcess, token: &str, cwd: &Path, args: &[&str]) -> Output {
    let out = nlds_command(server, token, cwd, args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ok(args, &out);
    out
}

/// Runs the `nlds` CLI as [`nlds`] does, reading its peak resident memory (`VmHWM`) from /proc
/// every 20 ms while it runs; returns its output and that peak in KiB. Its output goes to files
/// in `cwd` (a pipe left unread could stall it).
fn nlds_peak(server: &ServerProcess, token: &str, cwd: &Path, args: &[&str]) -> (Output, u64) {
    let (out, peak) = peak_of(nlds_command(server, token, cwd, args), cwd);
    assert_ok(args, &out);
    (out, peak)
}

/// Runs `cmd` (the `nlds` CLI) as [`nlds_peak`] does, whatever its exit code: its output and
/// its peak resident memory in KiB.
pub(crate) fn peak_of(mut cmd: Command, cwd: &Path) -> (Output, u64) {
    let (out_path, err_path) = (cwd.join("nlds.stdout"), cwd.join("nlds.stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let status = loop {
        // Read before asking whether it ended: a process that has ended has no VmHWM.
        if let Some(kib) = vm_hwm_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    };
    assert!(peak > 0, "no VmHWM read for {cmd:?}");
    (out, peak)
}

/// `VmHWM` of process `pid` in KiB, if it is still running.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Creates `n` empty files in 100 directories under `root`; returns a FILELIST naming each.
fn empty_files(root: &Path, n: usize) -> PathBuf {
    let list = root.join("filelist");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&list).unwrap());
    let src = root.join("src");
    for d in 0..100 {
        std::fs::create_dir_all(src.join(format!("d{d:02}"))).unwrap();
    }
    for i in 0..n {
        let p = src.join(format!("d{:02}/f{i:07}", i % 100));
        std::fs::File::create(&p).unwrap();
        writeln!(w, "{}", p.display()).unwrap();
    }
    w.flush().unwrap();
    list
}

fn files_under(root: &Path) -> usize {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter(|e| e.as_ref().unwrap().file_type().is_file())
        .count()
}

/// The newest transaction of `action`.
async fn newest(api: &Api, action: ApiAction) -> nlds_core::api::TransactionStatus {
    let (s, body) = api.get("/api/v2/transactions?limit=20").await;
    assert_eq!(s, 200, "{body}");
    let page: TransactionPage = serde_json::from_value(body).unwrap();
    page.transactions
        .into_iter()
        .find(|t| t.api_action == action)
        .unwrap_or_else(|| panic!("no {action} transaction"))
}

/// A putlist of `count()` empty files through the CLI completes COMPLETE with every file
/// catalogued, and a getlist of the same list restores every one, while the embedded process
/// stays below [`PEAK_RSS_MIB`] of resident memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn putlist_and_getlist_of_a_long_list_in_bounded_memory() {
    let n = count();
    let base = temp();
    let list = empty_files(base.path(), n);
    let (server, token) = server(base.path(), &[]).await;
    let api = Api::new(&server.url, &token);
    let list_s = list.to_string_lossy().into_owned();

    let (_, put_cli) = nlds_peak(
        &server,
        &token,
        base.path(),
        &["putlist", &list_s, "-l", "stream", "--wait", "--poll", "1s"],
    );
    let put_peak = server.peak_rss_kib();
    let put = newest(&api, ApiAction::Putlist).await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    assert_eq!(put.files_done, n as u64);
    assert_eq!(put.files_failed, 0);
    let (s, holdings) = api.get("/api/v2/holdings?label=stream").await;
    assert_eq!(s, 200, "{holdings}");
    assert_eq!(holdings["holdings"][0]["files"], n, "{holdings}");

    let target = base.path().join("restore");
    std::fs::create_dir(&target).unwrap();
    let target_s = target.to_string_lossy().into_owned();
    let (_, get_cli) = nlds_peak(
        &server,
        &token,
        base.path(),
        &[
            "getlist", &list_s, "-l", "stream", "--target", &target_s, "--wait", "--poll", "1s",
        ],
    );
    let get_peak = server.peak_rss_kib();
    let got = newest(&api, ApiAction::Getlist).await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    assert_eq!(got.files_done, n as u64);
    let src = base.path().join("src");
    assert_eq!(files_under(&restored(&target, &src)), n);

    eprintln!(
        "{n} files: peak RSS of the embedded process {} MiB after the put, {} MiB after the get; \
         of the CLI {} MiB for the putlist, {} MiB for the getlist",
        put_peak / 1024,
        get_peak / 1024,
        put_cli / 1024,
        get_cli / 1024
    );
    // The CLI reads the FILELIST as it sends it: the same peak whatever the list's length.
    for (what, peak) in [("putlist", put_cli), ("getlist", get_cli)] {
        assert!(
            peak <= CLI_PEAK_RSS_MIB * 1024,
            "the nlds CLI reached {} MiB for a {what} of {n} paths; the limit is \
             {CLI_PEAK_RSS_MIB} MiB (is the FILELIST held whole again?)",
            peak / 1024
        );
    }
    assert!(
        get_peak <= PEAK_RSS_MIB * 1024,
        "the embedded process reached {} MiB (put: {} MiB) for {n} files; the limit is \
         {PEAK_RSS_MIB} MiB",
        get_peak / 1024,
        put_peak / 1024
    );
}

/// Runs the `nlds` CLI with `input` on its standard input and chunks of `chunk` paths; returns
/// its output (whatever its exit code).
fn nlds_stdin(
    server: &ServerProcess,
    token: &str,
    cwd: &Path,
    chunk: usize,
    args: &[&str],
    input: &[u8],
) -> Output {
    let mut child = nlds_command(server, token, cwd, args)
        .env("NLDS_CHUNK_PATHS", chunk.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Written by a thread of its own: the CLI sends chunks (and may answer) while it reads.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// A putlist from standard input (`-`) of more paths than one chunk (chunks of 40 paths for
/// 250 files: six sent before the put, which carries the last ten) stores every file in one
/// transaction, and a getlist of the same list from standard input restores every one. A list
/// from standard input none of whose paths is here is refused (exit 5) after its last chunk
/// and before the put: no transaction, no holding.
#[tokio::test]
async fn putlist_and_getlist_from_standard_input_in_chunks() {
    const FILES: usize = 250;
    const CHUNK: usize = 40;
    let base = temp();
    let list = std::fs::read(empty_files(base.path(), FILES)).unwrap();
    let (server, token) = server(base.path(), &[]).await;
    let api = Api::new(&server.url, &token);

    let args = ["putlist", "-", "-l", "piped", "--wait", "--poll", "200ms"];
    let out = nlds_stdin(&server, &token, base.path(), CHUNK, &args, &list);
    assert_ok(&args, &out);
    let put = newest(&api, ApiAction::Putlist).await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    assert_eq!(put.files_done, FILES as u64);
    let (s, holdings) = api.get("/api/v2/holdings?label=piped").await;
    assert_eq!(s, 200, "{holdings}");
    assert_eq!(
        holdings["holdings"].as_array().unwrap().len(),
        1,
        "{holdings}"
    );
    assert_eq!(holdings["holdings"][0]["files"], FILES, "{holdings}");

    let target = base.path().join("restore");
    std::fs::create_dir(&target).unwrap();
    let target_s = target.to_string_lossy().into_owned();
    let args = [
        "getlist", "-", "-l", "piped", "--target", &target_s, "--wait", "--poll", "200ms",
    ];
    let out = nlds_stdin(&server, &token, base.path(), CHUNK, &args, &list);
    assert_ok(&args, &out);
    let got = newest(&api, ApiAction::Getlist).await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    assert_eq!(got.files_done, FILES as u64);
    let src = base.path().join("src");
    assert_eq!(files_under(&restored(&target, &src)), FILES);

    // None of 100 paths here: two chunks go, the last one and the put do not.
    let gone: String = (0..100)
        .map(|i| format!("{}/gone/f{i}\n", base.path().display()))
        .collect();
    let args = ["putlist", "-", "-l", "typo"];
    let out = nlds_stdin(&server, &token, base.path(), CHUNK, &args, gone.as_bytes());
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{said}");
    assert!(
        said.contains("and 95 more do not exist here") && said.contains("--no-check"),
        "{said}"
    );
    let (s, holdings) = api.get("/api/v2/holdings?label=typo").await;
    assert!(
        s == 404 || holdings["holdings"].as_array().is_some_and(Vec::is_empty),
        "no holding for a refused putlist: {s} {holdings}"
    );
    assert_eq!(
        newest(&api, ApiAction::Putlist).await.transaction_id,
        put.transaction_id
    );
}

/// The chunked request over HTTP: chunks are stored under the transaction id, the put that
/// names them stores every path of every chunk; a chunk past the server's cap on one request,
/// and a single request past it, are refused with 413 naming the cap and its setting; a put
/// naming a chunk that never came is refused and starts nothing.
#[tokio::test]
async fn chunked_requests_and_their_cap() {
    let base = temp();
    let src = base.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let paths: Vec<String> = (0..7)
        .map(|i| {
            let p = src.join(format!("f{i}"));
            std::fs::write(&p, format!("{i}")).unwrap();
            p.to_string_lossy().into_owned()
        })
        .collect();
    let (server, token) = server(base.path(), &["server.max_request_paths=7"]).await;
    let api = Api::new(&server.url, &token);

    let tid = uuid::Uuid::new_v4();
    for (part, chunk) in paths[..6].chunks(3).enumerate() {
        let (s, body) = api
            .post(
                "/api/v2/paths",
                &json!({"transaction_id": tid, "api_action": "putlist", "part": part, "paths": chunk}),
            )
            .await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["parts"], part + 1);
        assert_eq!(body["paths"], 3 * (part + 1));
    }
    let t = api
        .put_and_wait(json!({
            "transaction_id": tid, "parts": 2, "paths": [paths[6]], "label": "chunked"
        }))
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    assert_eq!(t.api_action, ApiAction::Putlist);
    assert_eq!(t.files_done, 7);
    let (_, holdings) = api.get("/api/v2/holdings?label=chunked").await;
    assert_eq!(holdings["holdings"][0]["files"], 7, "{holdings}");

    // Past the cap: a chunk that brings the request over it, and one request over it.
    let over = uuid::Uuid::new_v4();
    let (s, _) = api
        .post(
            "/api/v2/paths",
            &json!({"transaction_id": over, "api_action": "putlist", "part": 0, "paths": paths[..4]}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, body) = api
        .post(
            "/api/v2/paths",
            &json!({"transaction_id": over, "api_action": "putlist", "part": 1, "paths": paths[..4]}),
        )
        .await;
    assert_eq!(s, 413, "{body}");
    let msg = body.to_string();
    assert!(
        msg.contains("lists 8 paths; at most 7") && msg.contains("[server] max_request_paths"),
        "{msg}"
    );
    let mut eight = paths.clone();
    eight.push(src.join("f7").to_string_lossy().into_owned());
    let (s, body) = api
        .post("/api/v2/put", &json!({"paths": eight, "label": "over"}))
        .await;
    assert_eq!(s, 413, "{body}");
    assert!(
        body.to_string().contains("[server] max_request_paths"),
        "{body}"
    );

    // A put naming a chunk that was never sent starts nothing.
    let missing = uuid::Uuid::new_v4();
    let (s, body) = api
        .post(
            "/api/v2/put",
            &json!({"transaction_id": missing, "parts": 1, "paths": [paths[0]], "label": "gap"}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body.to_string()
            .contains("names 2 chunks of paths but 1 of them are stored"),
        "{body}"
    );
    let (s, _) = api.get(&format!("/api/v2/transactions/{missing}")).await;
    assert_eq!(s, 404, "nothing was started");
}

/// `put --dry-run` of a directory with more entries than one request carries (the CLI's chunk
/// of 10,000, and the server's `max_paths` set to that): asked in parts, every entry is
/// classified (on a first put and on a put again), where one request of them all was refused.
#[tokio::test]
async fn a_dry_run_of_more_entries_than_one_request_carries() {
    const FILES: usize = 10_500;
    let base = temp();
    let src = base.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..FILES {
        std::fs::File::create(src.join(format!("f{i:05}"))).unwrap();
    }
    let (server, token) = server(base.path(), &["server.max_paths=10000"]).await;
    let src_s = src.to_string_lossy().into_owned();
    let dry = |extra: &[&str]| {
        let mut args = vec!["--json", "put", &src_s, "-l", "big", "--dry-run"];
        args.extend_from_slice(extra);
        let out = nlds(&server, &token, base.path(), &args);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let verdicts = |plan: &serde_json::Value, verdict: &str| {
        plan["plan"]["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["verdict"] == verdict)
            .count()
    };
    // A new holding: every entry (the directory and its files) is new.
    let first = dry(&[]);
    assert_eq!(
        verdicts(&first, "new"),
        FILES + 1,
        "{}",
        first["plan"]["holding"]
    );
    nlds(
        &server,
        &token,
        base.path(),
        &["put", &src_s, "-l", "big", "--wait", "--poll", "200ms"],
    );
    // Again, after one file changed: one changed, the rest unchanged.
    std::fs::write(src.join("f00007"), "changed").unwrap();
    let again = dry(&[]);
    assert_eq!(
        verdicts(&again, "changed"),
        1,
        "{}",
        again["plan"]["holding"]
    );
    assert_eq!(
        verdicts(&again, "unchanged"),
        FILES,
        "{}",
        again["plan"]["holding"]
    );
    assert!(again["plan"]["holding"]["id"].is_i64());
}
