//! The real `nlds` CLI against a running embedded server: every command, JSON output, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

struct Cli {
    url: String,
    token: String,
    cwd: PathBuf,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(nlds_bin())
            .args(args)
            .current_dir(&self.cwd)
            .env("NLDS_URL", &self.url)
            .env("NLDS_TOKEN", &self.token)
            .env_remove("NLDS_CONFIG")
            .env("HOME", self.cwd.parent().unwrap())
            .env("XDG_CONFIG_HOME", self.cwd.parent().unwrap())
            .env_remove("NLDS_GROUP")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
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

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

fn s(p: &Path) -> String {
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
