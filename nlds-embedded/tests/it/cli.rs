//! The real `nlds` CLI against a running embedded server: every command, JSON output, exit codes;
//! setting up (`init`, `renew`, `config show`), completions and manual pages; dry runs,
//! `--no-clobber`/`--overwrite`, FILELISTs on standard input, and tables that fit the terminal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::embedded::start_embedded;
use crate::helpers::{restored, shape, temp};

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

pub(crate) struct Cli {
    pub(crate) url: String,
    pub(crate) token: String,
    pub(crate) cwd: PathBuf,
}

/// Runs `cmd` with `stdin` on its standard input (an empty one without).
fn run_with_stdin(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// `nlds` with none of the variables that configure it, nor $COLUMNS.
fn bare_nlds() -> Command {
    let mut cmd = Command::new(nlds_bin());
    for var in [
        "NLDS_URL",
        "NLDS_TOKEN",
        "NLDS_GROUP",
        "NLDS_CONFIG",
        "NLDS_INSECURE",
        "NLDS_CONNECT_TIMEOUT",
        "NLDS_REQUEST_TIMEOUT",
        "XDG_CONFIG_HOME",
        "COLUMNS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn explain(args: &[&str], o: &Output) -> String {
    format!(
        "nlds {args:?} exited {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

#[track_caller]
fn assert_code(args: &[&str], o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", explain(args, o));
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        self.run_full(args, None, &[])
    }

    /// Runs with `stdin` on standard input and extra environment variables.
    fn run_full(&self, args: &[&str], stdin: Option<&str>, envs: &[(&str, &str)]) -> Output {
        let mut cmd = bare_nlds();
        cmd.args(args)
            .current_dir(&self.cwd)
            .env("NLDS_URL", &self.url)
            .env("NLDS_TOKEN", &self.token)
            .env("HOME", self.cwd.parent().unwrap());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        run_with_stdin(cmd, stdin)
    }

    fn ok_full(&self, args: &[&str], stdin: Option<&str>, envs: &[(&str, &str)]) -> String {
        let out = self.run_full(args, stdin, envs);
        assert!(out.status.success(), "{}", explain(args, &out));
        stdout(&out)
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "nlds {args:?} exited {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail: its exit code, and its standard output and error.
    pub(crate) fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(!out.status.success(), "{}", explain(args, &out));
        let code = out.status.code().unwrap_or(-1);
        (code, format!("{}{}", stdout(&out), stderr(&out)))
    }

    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

pub(crate) fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_cli_command_against_a_running_server() {
    let data = temp();
    let e = start_embedded(data.path()).await;
    let src = temp();
    let root = src.path().join("cli tree");
    std::fs::create_dir(&root).unwrap();
    for i in 0..20 {
        std::fs::write(root.join(format!("f{i}.txt")), format!("content {i}")).unwrap();
    }
    let cli = Cli {
        url: e.url.clone(),
        token: e.token.clone(),
        cwd: root.clone(),
    };
    let whoami = cli.json(&["whoami"]);
    assert!(!whoami["user"].as_str().unwrap().is_empty());

    cli.ok(&[
        "put",
        &s(&root),
        "-l",
        "cli-run",
        "-t",
        "project:ice",
        "--wait",
        "--poll",
        "100ms",
    ]);
    let list = cli.json(&["list", "-l", "cli-run"]);
    assert_eq!(list["holdings"][0]["tags"]["project"], "ice", "{list}");
    assert_eq!(list["holdings"][0]["files"], 21);

    let simple = cli.ok(&["find", "-l", "cli-run", "-1"]);
    let mut listed: Vec<&str> = simple.lines().collect();
    listed.sort();
    let mut want: Vec<String> = (0..20)
        .map(|i| s(&root.join(format!("f{i}.txt"))))
        .collect();
    want.push(s(&root));
    want.sort();
    assert_eq!(listed, want);
    let found = cli.json(&["find", "-p", &s(&root.join("f3.txt"))]);
    assert_eq!(
        found["files"][0]["blake3"],
        blake3::hash(b"content 3").to_hex().to_string()
    );

    cli.ok(&["meta", "-l", "cli-run", "-L", "cli-done", "-T", "status:ok"]);
    let list = cli.json(&["list", "-l", "cli-done"]);
    assert_eq!(list["holdings"][0]["tags"]["status"], "ok", "{list}");

    let tgt = temp();
    cli.ok(&[
        "get",
        &s(&root),
        "-l",
        "cli-done",
        "-r",
        &s(tgt.path()),
        "--wait",
        "--poll",
        "100ms",
    ]);
    assert_eq!(shape(&restored(tgt.path(), &root)), shape(&root));

    // putlist: a blank line and a relative path (made absolute against the current directory).
    let list_file = src.path().join("list.txt");
    std::fs::write(
        &list_file,
        format!("\n{}\n\n   \nf2.txt\n", s(&root.join("f1.txt"))),
    )
    .unwrap();
    cli.ok(&[
        "putlist",
        &s(&list_file),
        "-l",
        "cli-list",
        "--wait",
        "--poll",
        "100ms",
    ]);
    let list = cli.json(&["list", "-l", "cli-list"]);
    assert_eq!(list["holdings"][0]["files"], 2, "{list}");

    // getlist into a target
    let tgt2 = temp();
    let gl = src.path().join("get.txt");
    std::fs::write(
        &gl,
        format!("{}\n{}\n", s(&root.join("f1.txt")), s(&root.join("f2.txt"))),
    )
    .unwrap();
    cli.ok(&[
        "getlist",
        &s(&gl),
        "-l",
        "cli-list",
        "-r",
        &s(tgt2.path()),
        "--wait",
        "--poll",
        "100ms",
    ]);
    assert_eq!(
        std::fs::read(restored(tgt2.path(), &root.join("f2.txt"))).unwrap(),
        b"content 2"
    );

    // A get of something never stored ends FAILED (exit 12) and stat -F names the file.
    let missing = s(&root.join("never-stored"));
    let out = cli.run(&[
        "get",
        &missing,
        "-l",
        "cli-done",
        "-r",
        &s(tgt.path()),
        "--wait",
        "--poll",
        "100ms",
    ]);
    assert_eq!(
        out.status.code(),
        Some(12),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stat = cli.json(&["stat", "-s", "FAILED"]);
    let tid = stat["transactions"][0]["transaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = cli.ok(&["stat", "-n", &tid, "-F"]);
    assert_eq!(failed.trim(), missing);

    let all = cli.json(&["stat"]);
    assert!(all["transactions"].as_array().unwrap().len() >= 5, "{all}");

    // Errors: JSON on stdout with the documented exit codes.
    let out = cli.run(&["--json", "list", "-i", "999999"]);
    assert_eq!(out.status.code(), Some(5));
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "not_found");
    let out = Command::new(nlds_bin())
        .args(["list"])
        .env("NLDS_URL", &e.url)
        .env("NLDS_TOKEN", "not-a-valid-token-000000")
        .env_remove("NLDS_CONFIG")
        .env("HOME", src.path())
        .env("XDG_CONFIG_HOME", src.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("not-a-valid-token"),
        "the token is never printed"
    );
    e.stop().await.unwrap();
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A first run, `init`, `renew`, `config show`, `whoami`, completions and manual pages, with only
/// $HOME set: everything goes through the config file `init` writes.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_setup_init_renew_config_show_completions_and_man() {
    let data = temp();
    let e = start_embedded(data.path()).await;
    let home = temp();
    let h = home.path();
    let cfg = h.join(".config/nlds/config.toml");
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = bare_nlds();
        cmd.args(args).current_dir(h).env("HOME", h);
        run_with_stdin(cmd, stdin)
    };

    // First run: a short message (exit 4), no usage banner, no error dump.
    let out = run(&["list"], None);
    assert_code(&["list"], &out, 4);
    assert_eq!(
        stderr(&out),
        format!(
            "nlds is not configured yet: run `nlds init --url URL` or set NLDS_URL and NLDS_TOKEN; config file would be at {}\n",
            cfg.display()
        )
    );
    assert!(stdout(&out).is_empty());
    let out = run(&["config", "show"], None);
    assert_code(&["config", "show"], &out, 0);
    assert!(
        stdout(&out).contains("(not found)"),
        "{}",
        explain(&[], &out)
    );

    // Who the embedded token belongs to.
    let who: Value = {
        let mut cmd = bare_nlds();
        cmd.args(["-j", "whoami"])
            .env("HOME", h)
            .env("NLDS_URL", &e.url)
            .env("NLDS_TOKEN", &e.token);
        serde_json::from_slice(&run_with_stdin(cmd, None).stdout).unwrap()
    };
    let user = who["user"].as_str().unwrap().to_owned();
    let group = who["groups"][0].as_str().unwrap().to_owned();

    // init: the token from standard input, checked with the server, written 0600.
    let args = ["init", "-U", e.url.as_str(), "-g", group.as_str()];
    let out = run(&args, Some(&format!("{}\n", e.token)));
    assert_code(&args, &out, 0);
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        format!(
            "url = \"{}\"\ntoken = \"{}\"\ngroup = \"{group}\"\n",
            e.url, e.token
        )
    );
    assert_eq!(mode(&cfg), 0o600);
    assert_eq!(mode(cfg.parent().unwrap()), 0o700);
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("Created {} (mode 0600):\n", cfg.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Checked with the server: you are {user}, in group(s) "
        )),
        "{text}"
    );
    assert!(!text.contains(&e.token) && !stderr(&out).contains(&e.token));

    // Every command now works from the config file alone.
    let out = run(&["whoami"], None);
    assert_code(&["whoami"], &out, 0);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("    user            : {user}\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("    group           : {group}\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("    server          : {}\n", e.url)),
        "{text}"
    );
    assert!(text.contains("    token expires   : not known"), "{text}");
    let out = run(&["-j", "list"], None);
    assert_code(&["-j", "list"], &out, 0);

    // Again with -k only: URL, token and group stay (the Python client would reset the URL).
    let out = run(&["init", "-k"], None);
    assert_code(&["init", "-k"], &out, 0);
    let written = std::fs::read_to_string(&cfg).unwrap();
    assert_eq!(
        written,
        format!(
            "url = \"{}\"\ntoken = \"{}\"\ngroup = \"{group}\"\ninsecure = true\n",
            e.url, e.token
        )
    );
    assert!(stdout(&out).contains("(kept)"), "{}", stdout(&out));
    // A group the server says you are not in: exit 4, nothing written.
    let out = run(&["init", "-g", "not-my-group"], None);
    assert_code(&["init", "-g", "not-my-group"], &out, 4);
    assert!(
        stderr(&out).contains("Nothing was written"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), written);

    // renew: a refused token is not stored (exit 3); an accepted one is.
    let out = run(&["renew"], Some("not-a-valid-token-000000\n"));
    assert_code(&["renew"], &out, 3);
    assert!(
        !stderr(&out).contains("not-a-valid-token"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), written);
    let out = run(&["renew"], Some(&format!("{}\n", e.token)));
    assert_code(&["renew"], &out, 0);
    assert!(
        stdout(&out).starts_with(&format!(
            "Renewed the token in {} (mode 0600).",
            cfg.display()
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(mode(&cfg), 0o600);

    // config show: each setting, its value and its source; never the token.
    let mut cmd = bare_nlds();
    cmd.args(["config", "show", "--request-timeout", "45s"])
        .env("HOME", h)
        .env("NLDS_GROUP", "from-env");
    let out = run_with_stdin(cmd, None);
    assert_code(&["config", "show"], &out, 0);
    let text = stdout(&out);
    assert!(!text.contains(&e.token), "{text}");
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let c = cfg.display().to_string();
    assert_eq!(row("url"), format!("url {} config file {c}", e.url));
    assert_eq!(
        row("token"),
        format!(
            "token <hidden, {} characters> config file {c}",
            e.token.len()
        )
    );
    assert_eq!(
        row("group"),
        "group from-env environment variable NLDS_GROUP"
    );
    assert_eq!(row("insecure"), format!("insecure true config file {c}"));
    assert_eq!(
        row("request timeout"),
        "request timeout 45s option --request-timeout"
    );
    assert_eq!(row("connect timeout"), "connect timeout 10s default");

    // Completions and manual pages need neither server nor configuration.
    for (shell, marker) in [
        ("bash", "_nlds()"),
        ("zsh", "#compdef nlds"),
        ("fish", "complete -c nlds"),
    ] {
        let mut cmd = bare_nlds();
        cmd.args(["completions", shell]).env_remove("HOME");
        let out = run_with_stdin(cmd, None);
        assert_code(&["completions", shell], &out, 0);
        let script = stdout(&out);
        assert!(
            script.contains(marker) && script.contains("dry-run"),
            "{shell}"
        );
    }
    let out = run(&["man"], None);
    assert_code(&["man"], &out, 0);
    assert!(stdout(&out).contains(".TH nlds 1"), "{}", stdout(&out));
    let mandir = h.join("man/man1");
    let args = ["man", "--dir", mandir.to_str().unwrap()];
    let out = run(&args, None);
    assert_code(&args, &out, 0);
    for page in ["nlds.1", "nlds-init.1", "nlds-renew.1", "nlds-getlist.1"] {
        assert!(
            mandir.join(page).is_file(),
            "{page} missing: {}",
            stdout(&out)
        );
    }
    e.stop().await.unwrap();
}

/// Dry runs of put, putlist, get, getlist and meta; `--no-clobber` and `--overwrite`; FILELISTs
/// on standard input; tags with spaces, `:` and `,`; tables shortened to the terminal's width.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_dry_runs_no_clobber_stdin_lists_and_narrow_tables() {
    let data = temp();
    let e = start_embedded(data.path()).await;
    let src = temp();
    let root = src.path().join("dry tree");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.txt"), "alpha").unwrap();
    std::fs::write(root.join("sub/b.txt"), "bravo").unwrap();
    std::fs::write(root.join("sub/c.txt"), "charlie").unwrap();
    let long_name =
        "a-very-long-file-name-that-will-need-shortening-in-a-narrow-table-0123456789.txt";
    std::fs::write(root.join(long_name), "long").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    let cli = Cli {
        url: e.url.clone(),
        token: e.token.clone(),
        cwd: root.clone(),
    };
    let r = s(&root);
    // Holdings labelled `label`: 0 when the server says there is none (404, exit 5).
    let count_json = |label: &str| -> u64 {
        let out = cli.run(&["--json", "list", "-l", label]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        match out.status.code() {
            Some(0) => v["total"].as_u64().unwrap(),
            Some(5) if v["error"]["code"] == "not_found" => 0,
            _ => panic!("{}", explain(&["list", "-l", label], &out)),
        }
    };

    // put --dry-run: the local walk and the holding that would be made; nothing is stored.
    let text = cli.ok(&[
        "put",
        &r,
        "-l",
        "dry",
        "-t",
        r"site:Rutherford Appleton\, UK",
        "-t",
        "url:https://x.org:8443",
        "--dry-run",
    ]);
    assert!(
        text.starts_with("Dry run: nothing was sent to be stored.\n"),
        "{text}"
    );
    assert!(
        text.contains("    holding         : new holding labelled \"dry\"\n"),
        "{text}"
    );
    assert!(
        text.contains("    would put       : 4 files, 2 directories, 1 links: 21 B (21 bytes)\n"),
        "{text}"
    );
    assert!(text.contains("site : Rutherford Appleton, UK"), "{text}");
    assert_eq!(count_json("dry"), 0, "a dry run stores nothing");
    let v = cli.json(&["put", &r, "-l", "dry", "--dry-run"]);
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["local"]["files"], 4);
    assert_eq!(v["local"]["links"], 1);
    assert_eq!(v["plan"]["new_label"], "dry");
    assert_eq!(v["plan"]["paths"], serde_json::json!([r]));
    let missing = s(&src.path().join("missing"));
    let out = cli.run(&["put", &missing, "--dry-run"]);
    assert_code(&["put", "missing", "--dry-run"], &out, 5);
    assert!(stdout(&out).contains("no such file or directory (path_missing)"));
    // A real put of a path that is not here is refused before anything is sent: no holding.
    let args = ["put", &missing, "-l", "typo"];
    let out = cli.run(&args);
    assert_code(&args, &out, 5);
    let said = stderr(&out);
    assert!(
        said.contains(&format!("nothing to put: {missing} does not exist here"))
            && said.contains("--no-check"),
        "{said}"
    );
    assert_eq!(count_json("typo"), 0, "no holding for a refused put");
    // With --no-check it goes to the server, which says the same per file.
    let args = [
        "put",
        &missing,
        "-l",
        "typo",
        "--no-check",
        "--wait",
        "--poll",
        "100ms",
    ];
    let out = cli.run(&args);
    assert_code(&args, &out, 12);
    // A putlist with some paths here: a note names the others, the rest is stored.
    let list = src.path().join("some-missing.txt");
    std::fs::write(&list, format!("{r}/a.txt\n{missing}\n")).unwrap();
    let list = s(&list);
    let args = [
        "putlist", &list, "-l", "partly", "--wait", "--poll", "100ms",
    ];
    let out = cli.run(&args);
    assert_code(&args, &out, 11);
    assert!(
        stderr(&out).contains(&format!(
            "1 of 2 paths do not exist here and will fail: {missing}"
        )),
        "{}",
        explain(&args, &out)
    );

    // The real put, with tags holding spaces, `:` and `,`.
    cli.ok(&[
        "put",
        &r,
        "-l",
        "dry",
        "-t",
        r"site:Rutherford Appleton\, UK",
        "-t",
        "url:https://x.org:8443",
        "--wait",
        "--poll",
        "100ms",
    ]);
    let list = cli.json(&["list", "-l", "dry"]);
    let holding = &list["holdings"][0];
    assert_eq!(holding["tags"]["site"], "Rutherford Appleton, UK", "{list}");
    assert_eq!(holding["tags"]["url"], "https://x.org:8443", "{list}");
    let hid = holding["id"].as_i64().unwrap();

    // A dry run of what the holding already has unchanged: the put would skip all of it (exit 5).
    let sub = s(&root.join("sub"));
    let out = cli.run(&["put", &sub, "-l", "dry", "--dry-run"]);
    assert_code(&["put", "sub", "-l", "dry", "--dry-run"], &out, 5);
    assert!(
        stdout(&out).contains("0 new, 0 changed (new versions), 3 unchanged (skipped)"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(&format!("{sub}/b.txt")),
        "{}",
        stdout(&out)
    );
    // And indeed it skips them: a put without --wait, then `nlds wait ID`, whose exit code
    // tells how it ended (0: COMPLETE, every entry skipped, none failed).
    let accepted = cli.json(&["put", &sub, "-l", "dry"]);
    let tid = accepted["transaction_id"].as_str().unwrap().to_owned();
    let out = cli.run(&["wait", &tid, "--poll", "100ms"]);
    assert_code(&["wait", &tid], &out, 0);
    assert!(
        stdout(&out).contains("    state           : COMPLETE\n"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("0 new, 0 new versions, 3 unchanged (skipped)"),
        "{}",
        stdout(&out)
    );
    let accepted = cli.json(&["put", &sub, "-l", "dry-wait"]);
    let tid = accepted["transaction_id"].as_str().unwrap().to_owned();
    let text = cli.ok(&["wait", &tid, "--poll", "100ms"]);
    assert!(text.contains("    state           : COMPLETE\n"), "{text}");
    assert!(
        text.contains(&format!("    transaction id  : {tid}\n")),
        "{text}"
    );

    // Now the dry run names the existing holding and checks what it already has; putlist reads
    // its list from standard input.
    let extra = src.path().join("extra.txt");
    std::fs::write(&extra, "extra").unwrap();
    let text = cli.ok(&["put", &s(&extra), "-l", "dry", "--dry-run"]);
    assert!(
        text.contains(&format!("    holding         : {hid} (dry): existing, ")),
        "{text}"
    );
    assert!(
        text.contains("1 new, 0 changed (new versions), 0 unchanged (skipped)"),
        "{text}"
    );
    let out = cli.run(&["put", &s(&root.join("a.txt")), "-l", "dry", "--dry-run"]);
    assert_code(&["put", "a.txt", "--dry-run"], &out, 5);
    let text = cli.ok_full(
        &["putlist", "-", "-l", "dry", "--dry-run"],
        Some(&format!("{}\nsub/b.txt\n\nnope.txt\n", s(&extra))),
        &[],
    );
    assert!(
        text.contains("    paths           : 3 given: 2 found, 1 missing or unreadable\n"),
        "{text}"
    );
    assert!(
        text.contains("1 new, 0 changed (new versions), 1 unchanged (skipped)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}: no such file or directory",
            s(&root.join("nope.txt"))
        )),
        "{text}"
    );

    // get --dry-run: what would be restored where; nothing is written.
    let tgt = temp();
    let t = s(tgt.path());
    let text = cli.ok(&["get", &r, "-l", "dry", "-r", &t, "--dry-run", "--wide"]);
    assert!(
        text.starts_with("Dry run: nothing was restored.\n"),
        "{text}"
    );
    let a_row = |text: &str| {
        text.lines()
            .find(|l| l.ends_with(&format!("{}/a.txt", r)) || l.contains(&format!("{r}/a.txt  ")))
            .unwrap_or_else(|| panic!("no a.txt row in\n{text}"))
            .to_owned()
    };
    assert!(a_row(&text).ends_with("restore"), "{text}");
    assert_eq!(
        std::fs::read_dir(tgt.path()).unwrap().count(),
        0,
        "a dry run writes nothing"
    );

    // The real get, then a changed file: --no-clobber keeps it, --overwrite replaces it.
    cli.ok(&[
        "get", &r, "-l", "dry", "-r", &t, "--wait", "--poll", "100ms",
    ]);
    assert_eq!(shape(&restored(tgt.path(), &root)), shape(&root));
    let b = restored(tgt.path(), &root.join("sub/b.txt"));
    std::fs::write(&b, "changed").unwrap();
    let text = cli.ok(&["get", &r, "-l", "dry", "-r", &t, "--dry-run", "--wide"]);
    assert!(a_row(&text).ends_with("skip (identical)"), "{text}");
    let b_row = text
        .lines()
        .find(|l| l.contains(&format!("{r}/sub/b.txt  ")))
        .unwrap_or_else(|| panic!("no b.txt row in\n{text}"));
    assert!(b_row.ends_with("conflict"), "{text}");
    assert!(
        text.contains("1 file(s) exist with different content"),
        "{text}"
    );
    let bs = s(&root.join("sub/b.txt"));
    let args = [
        "get",
        bs.as_str(),
        "-l",
        "dry",
        "-r",
        &t,
        "--no-clobber",
        "--wait",
        "--poll",
        "100ms",
    ];
    let out = cli.run(&args);
    assert!(
        matches!(out.status.code(), Some(11 | 12)),
        "{}",
        explain(&args, &out)
    );
    assert_eq!(
        std::fs::read_to_string(&b).unwrap(),
        "changed",
        "--no-clobber kept the file"
    );
    let text = cli.ok(&[
        "get",
        &bs,
        "-l",
        "dry",
        "-r",
        &t,
        "--overwrite",
        "--dry-run",
        "--wide",
    ]);
    assert!(text.lines().any(|l| l.ends_with("overwrite")), "{text}");
    cli.ok(&[
        "get",
        &bs,
        "-l",
        "dry",
        "-r",
        &t,
        "--overwrite",
        "--wait",
        "--poll",
        "100ms",
    ]);
    assert_eq!(
        std::fs::read_to_string(&b).unwrap(),
        "bravo",
        "--overwrite replaced it"
    );

    // getlist from standard input, for real and as a dry run.
    let tgt2 = temp();
    let t2 = s(tgt2.path());
    let list = format!(
        "{}\n\n{}\n",
        s(&root.join("a.txt")),
        s(&root.join("sub/c.txt"))
    );
    cli.ok_full(
        &[
            "getlist", "-", "-l", "dry", "-r", &t2, "--wait", "--poll", "100ms",
        ],
        Some(&list),
        &[],
    );
    assert_eq!(
        std::fs::read_to_string(restored(tgt2.path(), &root.join("sub/c.txt"))).unwrap(),
        "charlie"
    );
    assert!(!restored(tgt2.path(), &root.join("sub/b.txt")).exists());
    let never = s(&root.join("never-stored.txt"));
    let text = cli.ok_full(
        &[
            "getlist",
            "-",
            "-l",
            "dry",
            "-r",
            &t2,
            "--dry-run",
            "--wide",
        ],
        Some(&format!("{}\n{never}\n", s(&root.join("a.txt")))),
        &[],
    );
    assert!(a_row(&text).ends_with("skip (identical)"), "{text}");
    assert!(text.contains("Not found (1)"), "{text}");
    assert!(text.contains(&never), "{text}");
    let out = cli.run(&["get", &never, "-l", "dry", "--dry-run"]);
    assert_code(&["get", "never-stored", "--dry-run"], &out, 5);

    // meta --dry-run changes nothing.
    let text = cli.ok(&[
        "meta",
        "-l",
        "dry",
        "-L",
        "dry2",
        "-T",
        "status:checked",
        "--dry-run",
    ]);
    assert!(
        text.starts_with(
            "Dry run: would change the metadata of 1 holding(s); nothing was changed.\n"
        ),
        "{text}"
    );
    assert!(text.contains("    new label       : dry2\n"), "{text}");
    assert_eq!(count_json("dry"), 1);
    assert_eq!(count_json("dry2"), 0);
    let v = cli.json(&["meta", "-l", "dry", "-L", "dry2", "--dry-run"]);
    assert_eq!(v["dry_run"], true, "{v}");
    let out = cli.run(&["meta", "-l", "no-such-holding", "-L", "x", "--dry-run"]);
    assert_code(&["meta", "no-such-holding", "--dry-run"], &out, 5);

    // Tables fit $COLUMNS, with long paths shortened at their start; --wide shows everything.
    let cols = [("COLUMNS", "100")];
    let text = cli.ok_full(&["find", "-l", "dry", "--utc"], None, &cols);
    for line in text.lines() {
        assert!(
            line.chars().count() <= 100,
            "{line:?} is wider than 100\n{text}"
        );
    }
    assert!(text.contains('\u{2026}'), "nothing shortened:\n{text}");
    assert!(!text.contains(long_name), "{text}");
    assert!(
        text.contains("+00:00"),
        "--utc times carry their offset:\n{text}"
    );
    let text = cli.ok_full(&["find", "-l", "dry", "--wide"], None, &cols);
    assert!(text.contains(&s(&root.join(long_name))), "{text}");
    assert!(!text.contains('\u{2026}'), "{text}");
    e.stop().await.unwrap();
}
