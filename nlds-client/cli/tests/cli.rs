//! Integration tests of the `nlds` client: command-line parsing, FILELISTs, golden outputs, exit
//! codes, and the library and the CLI against a fake HTTP server.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{CommandFactory, Parser};
use nlds_cli::app::{self, Env, Failure, Io, Plan};
use nlds_cli::cli::{Cli, Command};
use nlds_cli::exit;
use nlds_cli::render::{self, Zone};
use nlds_client::local::{DestAction, Destination};
use nlds_client::{Client, ClientOptions, Error, Identity, RetryPolicy, WaitProgress};
use nlds_core::api::{
    ApiAction, FileEntry, FileLocation, GetPlan, GetRequest, HoldingMeta, HoldingQuery,
    HoldingSummary, MetaChange, MetaResponse, PutPlan, PutRequest, StatQuery, SubRecordStatus,
    Tags, Tier, TransactionStatus, WhoAmI,
};
use nlds_core::{ErrorCode, FailedFile, PathKind, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// helpers

fn parse(args: &[&str]) -> Cli {
    let mut all = vec!["nlds"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn parse_err(args: &[&str]) -> clap::Error {
    let mut all = vec!["nlds"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).expect_err("should not parse")
}

fn env_in(cwd: &str) -> Env {
    Env::new([("HOME", "/home/alice")], cwd)
}

fn plan(args: &[&str], env: &Env) -> Result<Plan, Failure> {
    plan_with_stdin(args, env, "")
}

fn plan_with_stdin(args: &[&str], env: &Env, stdin: &str) -> Result<Plan, Failure> {
    let cli = parse(args);
    let mut input = stdin.as_bytes();
    app::prepare(cli.command.as_ref().unwrap(), env, &mut input)
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ts(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn uuid(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

// ---------------------------------------------------------------------------------------------
// command line

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn snake_case_aliases_and_kebab_case_names() {
    for (jl, hid) in [
        ("--job-label", "--holding-id"),
        ("--job_label", "--holding_id"),
    ] {
        let cli = parse(&["put", jl, "nightly", hid, "42", "/data/f.nc"]);
        let Some(Command::Put(a)) = cli.command else {
            panic!("not put")
        };
        assert_eq!(a.job_label.as_deref(), Some("nightly"));
        assert_eq!(a.holding.holding_id, Some(42));
        assert_eq!(a.path, "/data/f.nc");
    }
    let cli = parse(&[
        "stat",
        "--transaction_id",
        "01010101-0101-0101-0101-010101010101",
        "--api_action",
        "put",
        "--exclude_api_action",
        "get",
        "--sub_records",
        "--failed_files",
    ]);
    let Some(Command::Stat(a)) = cli.command else {
        panic!("not stat")
    };
    assert_eq!(a.transaction_id, Some(uuid(1)));
    assert_eq!(a.api_action, vec![ApiAction::Put]);
    assert_eq!(a.exclude_api_action, vec![ApiAction::Get]);
    assert!(a.sub_records && a.failed_files);
    let cli = parse(&[
        "meta",
        "-l",
        "old",
        "--new_label",
        "new",
        "--new_tag",
        "a:1",
        "--del_tag",
        "b",
    ]);
    let Some(Command::Meta(a)) = cli.command else {
        panic!("not meta")
    };
    assert_eq!(a.new_label.as_deref(), Some("new"));
    assert_eq!(a.new_tag, vec![tags(&[("a", "1")])]);
    assert_eq!(a.del_tag, vec![tags(&[("b", "")])]);
}

#[test]
fn python_short_letters() {
    let cli = parse(&[
        "get", "-A", "-r", "/tmp", "-l", "L", "-b", "B", "-i", "7", "-t", "k:v", "-x", "a.*",
    ]);
    let Some(Command::Get(a)) = cli.command else {
        panic!("not get")
    };
    assert!(a.groupall && a.regex && !a.clobber.overwrite && !a.clobber.no_clobber);
    assert_eq!(a.target.as_deref(), Some(std::ffi::OsStr::new("/tmp")));
    assert_eq!(
        (
            a.holding.label.as_deref(),
            a.job_label.as_deref(),
            a.holding.holding_id
        ),
        (Some("L"), Some("B"), Some(7))
    );

    let cli = parse(&[
        "find", "-A", "-l", "L", "-i", "3", "-p", "/a", "-1", "-U", "-x", "-L", "5", "-9",
    ]);
    let Some(Command::Find(a)) = cli.command else {
        panic!("not find")
    };
    assert!(a.groupall && a.simple && a.url && a.regex);
    assert_eq!((a.limit, a.order.descending()), (5, Some(true)));
    assert_eq!(a.path.as_deref(), Some("/a"));

    let cli = parse(&[
        "stat",
        "-A",
        "-i",
        "12",
        "-b",
        "job",
        "-a",
        "put",
        "-a",
        "getlist,get",
        "-c",
        "archive-put",
        "-s",
        "complete",
        "-s",
        "QUEUED",
        "-s",
        "101",
        "-x",
        "-S",
        "-E",
        "-L",
        "20",
        "-0",
    ]);
    let Some(Command::Stat(a)) = cli.command else {
        panic!("not stat")
    };
    assert_eq!(a.id, Some(12));
    assert_eq!(
        a.api_action,
        vec![ApiAction::Put, ApiAction::Getlist, ApiAction::Get]
    );
    assert_eq!(a.exclude_api_action, vec![ApiAction::ArchivePut]);
    assert_eq!(
        a.state,
        vec![State::Complete, State::Searching, State::Failed]
    );
    assert!(a.regex && a.sub_records && a.errors && !a.failed_files);
    assert_eq!((a.limit, a.order.descending()), (Some(20), Some(false)));
}

#[test]
fn global_options_go_anywhere_and_user_is_accepted() {
    let cli = parse(&[
        "put", "-u", "bob", "-g", "gws1", "-j", "--token", "s3cr3t", "/f",
    ]);
    assert_eq!(cli.global.user.as_deref(), Some("bob"));
    assert_eq!(cli.global.group.as_deref(), Some("gws1"));
    assert!(cli.global.json);
    assert_eq!(cli.global.token.as_ref().unwrap().expose(), "s3cr3t");
    assert!(
        !format!("{cli:?}").contains("s3cr3t"),
        "the token leaks through Debug"
    );

    let cli = parse(&["-g", "gws2", "--url", "https://nlds.example", "find", "-U"]);
    assert_eq!(cli.url.as_deref(), Some("https://nlds.example"));
    assert_eq!(cli.global.group.as_deref(), Some("gws2"));
    let Some(Command::Find(a)) = cli.command else {
        panic!("not find")
    };
    assert!(a.url, "find -U is the object-store URL flag");
    assert_eq!(a.limit, 1000, "find's default limit");
}

#[test]
fn order_flags_last_one_wins() {
    let order = |args: &[&str]| {
        let Some(Command::List(a)) = parse(args).command else {
            panic!("not list")
        };
        a.order.descending()
    };
    assert_eq!(order(&["list"]), None);
    assert_eq!(order(&["list", "-9"]), Some(true));
    assert_eq!(order(&["list", "--ascending"]), Some(false));
    assert_eq!(order(&["list", "-9", "-0"]), Some(false));
    assert_eq!(order(&["list", "-0", "-9"]), Some(true));
}

#[test]
fn bad_options_are_usage_errors() {
    use clap::error::ErrorKind;
    assert_eq!(
        parse_err(&["find", "-L", "0"]).kind(),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        parse_err(&["list", "-L", "10001"]).kind(),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        parse_err(&["stat", "-s", "CATALOG_ROLLBACK"]).kind(),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        parse_err(&["stat", "-a", "dance"]).kind(),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        parse_err(&["stat", "-n", "not-a-uuid"]).kind(),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        parse_err(&["put", "--poll", "5", "/f"]).kind(),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        parse_err(&["getlist", "-x", "f"]).kind(),
        ErrorKind::UnknownArgument
    );
    assert_eq!(parse_err(&["put"]).exit_code(), 2);
    let e = parse_err(&["put", "-t", "site:Rutherford Appleton, UK", "/f"]);
    assert_eq!(e.kind(), ErrorKind::ValueValidation);
    let text = e.to_string();
    assert!(text.contains(r#"tag "UK" is not key:value"#), "{text}");
}

#[test]
fn help_documents_exit_codes_and_hides_the_token() {
    let help = Cli::command().render_long_help().to_string();
    assert!(help.contains("Exit codes:"), "{help}");
    assert!(help.contains("12  ended FAILED"), "{help}");
    assert!(help.contains("--token <TOKEN>"), "{help}");
    let mut cmd = Cli::command();
    cmd.build(); // propagates the global options to the subcommands
    let put_help = cmd
        .find_subcommand_mut("put")
        .unwrap()
        .render_long_help()
        .to_string();
    for opt in [
        "--label",
        "--job-label",
        "--holding-id",
        "--tag",
        "--wait",
        "--group",
        "--json",
    ] {
        assert!(put_help.contains(opt), "{opt} missing from\n{put_help}");
    }
}

#[test]
fn repeated_tags_merge_and_values_keep_spaces_colons_and_escaped_commas() {
    let env = env_in("/gws/proj");
    let p = plan(
        &[
            "put",
            "-t",
            "a:1,b:2",
            "-t",
            "site: Rutherford Appleton\\, UK ",
            "-t",
            "url:https://x.org:8443/p",
            "-t",
            "a:3",
            "f.nc",
        ],
        &env,
    )
    .unwrap();
    let Plan::Put(req, None, _, _) = p else {
        panic!("{p:?}")
    };
    assert_eq!(
        req.tags,
        tags(&[
            ("a", "3"),
            ("b", "2"),
            ("site", "Rutherford Appleton, UK"),
            ("url", "https://x.org:8443/p")
        ])
    );
    assert_eq!(req.paths, vec!["/gws/proj/f.nc"]);
    assert!(req.transaction_id.is_some());

    // list and find send tags in the query string, where a ',' in a value cannot be expressed.
    let Plan::List(q) = plan(&["list", "-t", "b:2", "-t", "a:1"], &env).unwrap() else {
        panic!()
    };
    assert_eq!(q.tag.as_deref(), Some("a:1,b:2"));
    let err = plan(&["find", "-t", "site:A\\, B"], &env).unwrap_err();
    assert_eq!(err.exit_code(), exit::USAGE);
    assert!(
        err.message().contains("cannot be used to select holdings"),
        "{}",
        err.message()
    );
}

#[test]
fn requests_built_from_options() {
    let env = env_in("/gws/proj");
    let Plan::Get(req, Some(w), _) = plan(
        &[
            "get",
            "-x",
            "--overwrite",
            "-l",
            "L",
            ".*\\.nc",
            "--wait",
            "--poll",
            "2s",
            "--timeout",
            "1h",
        ],
        &env,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(req.paths, vec![".*\\.nc"], "regexes are sent untouched");
    assert!(req.regex && req.overwrite && !req.groupall);
    assert_eq!(
        (w.poll, w.timeout),
        (Duration::from_secs(2), Some(Duration::from_secs(3600)))
    );

    let Plan::Get(req, None, _) = plan(&["get", "../other/./f.nc"], &env).unwrap() else {
        panic!()
    };
    assert_eq!(req.paths, vec!["/gws/other/f.nc"]);

    let err = plan(&["get", "-r", "/definitely/not/here", "f"], &env).unwrap_err();
    assert_eq!(err.exit_code(), exit::USAGE);
    assert!(
        err.message()
            .contains("/definitely/not/here does not exist")
    );

    let Plan::Find { query, simple, url } = plan(
        &[
            "find",
            "-p",
            "sub/f.nc",
            "-n",
            "01010101-0101-0101-0101-010101010101",
        ],
        &env,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(query.path.as_deref(), Some("/gws/proj/sub/f.nc"));
    assert_eq!(
        query.transaction_id.as_deref(),
        Some("01010101-0101-0101-0101-010101010101")
    );
    assert_eq!(query.limit, Some(1000));
    assert!(!simple && !url);

    let Plan::Stat { query, .. } = plan(
        &[
            "stat",
            "-a",
            "put",
            "-a",
            "putlist",
            "-c",
            "archive-put",
            "-s",
            "failed",
            "-s",
            "queued",
        ],
        &env,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(query.api_action.as_deref(), Some("put,putlist"));
    assert_eq!(query.exclude_api_action.as_deref(), Some("archive-put"));
    assert_eq!(query.state.as_deref(), Some("FAILED,SEARCHING"));

    let Plan::Meta(m) = plan(
        &["meta", "-i", "3", "-L", "new", "-T", "k:v", "-D", "old,x:1"],
        &env,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(m.holding_id, Some(3));
    assert_eq!(m.new_label.as_deref(), Some("new"));
    assert_eq!(m.new_tags, tags(&[("k", "v")]));
    assert_eq!(m.del_tags, tags(&[("old", ""), ("x", "1")]));
    let err = plan(&["meta", "-L", "new"], &env).unwrap_err();
    assert_eq!(err.exit_code(), exit::USAGE);
    let err = plan(&["meta", "-l", "x"], &env).unwrap_err();
    assert!(err.message().contains("nothing to change"));
}

// ---------------------------------------------------------------------------------------------
// FILELIST

#[test]
fn putlist_filelist_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    let list = cwd.join("files.txt");
    std::fs::write(
        &list,
        "  /abs/one.nc  \n\n\t\nrel/two.nc\n./rel/two.nc\n/abs/one.nc\n../up.nc\r\nname with spaces.nc\n",
    )
    .unwrap();
    let cwd_s = cwd.to_str().unwrap().to_owned();
    let env = env_in(&cwd_s);
    let Plan::Put(req, ..) = plan(&["putlist", "files.txt"], &env).unwrap() else {
        panic!()
    };
    let parent = dir.path().to_str().unwrap();
    assert_eq!(
        req.paths,
        vec![
            "/abs/one.nc".to_owned(),
            format!("{cwd_s}/rel/two.nc"),
            format!("{parent}/up.nc"),
            format!("{cwd_s}/name with spaces.nc"),
        ]
    );

    // `-` reads standard input; getlist parses the same way.
    let Plan::Get(req, ..) = plan_with_stdin(&["getlist", "-"], &env, "b\n\na\nb\n").unwrap()
    else {
        panic!()
    };
    assert_eq!(req.paths, vec![format!("{cwd_s}/b"), format!("{cwd_s}/a")]);

    std::fs::write(&list, "\n   \n\t\n").unwrap();
    let err = plan(&["putlist", "files.txt"], &env).unwrap_err();
    assert_eq!(err.message(), "FILELIST contains no paths");
    assert_eq!(err.exit_code(), exit::USAGE);

    let err = plan(&["putlist", "missing.txt"], &env).unwrap_err();
    assert!(
        err.message()
            .starts_with("cannot read FILELIST missing.txt"),
        "{}",
        err.message()
    );
    assert_eq!(err.exit_code(), exit::USAGE);
}

// ---------------------------------------------------------------------------------------------
// golden outputs

fn sample_transactions() -> Vec<TransactionStatus> {
    let t1 = TransactionStatus {
        id: 41,
        transaction_id: uuid(0x11),
        user: "alice".into(),
        group: "climate".into(),
        api_action: ApiAction::Putlist,
        job_label: "nightly-backup".into(),
        label: Some("run42".into()),
        holding_id: Some(7),
        state: State::CompleteWithErrors,
        percent: 50,
        created: ts("2026-05-01T10:00:00Z"),
        updated: ts("2026-05-01T10:05:30Z"),
        files_total: 4,
        files_done: 3,
        files_failed: 1,
        bytes_total: 3 * 1024 * 1024,
        bytes_done: 2 * 1024 * 1024 + 512 * 1024,
        warnings: vec!["2 files were empty".into()],
        sub_records: vec![
            SubRecordStatus {
                id: 1,
                sub_id: uuid(0x21),
                state: State::Split,
                last_updated: ts("2026-05-01T10:00:01Z"),
                files: 0,
                bytes: 0,
                failed_files: vec![],
                skipped_files: Vec::new(),
                new_versions: 0,
                waiting: None,
                bytes_moving: 0,
            },
            SubRecordStatus {
                id: 2,
                sub_id: uuid(0x22),
                state: State::Complete,
                last_updated: ts("2026-05-01T10:05:30Z"),
                files: 3,
                bytes: 2 * 1024 * 1024 + 512 * 1024,
                failed_files: vec![],
                skipped_files: Vec::new(),
                new_versions: 0,
                waiting: None,
                bytes_moving: 0,
            },
            SubRecordStatus {
                id: 3,
                sub_id: uuid(0x23),
                state: State::Failed,
                last_updated: ts("2026-05-01T10:03:00Z"),
                files: 1,
                bytes: 0,
                failed_files: vec![FailedFile::new(
                    "/gws/climate/run42/missing.nc",
                    ErrorCode::PathMissing,
                    "no such file or directory",
                )],
                skipped_files: Vec::new(),
                new_versions: 0,
                waiting: None,
                bytes_moving: 0,
            },
        ],
        files_skipped: 0,
        files_new_versions: 0,
        retry_of: None,
        retried_by: Vec::new(),
    };
    let t2 = TransactionStatus {
        id: 42,
        transaction_id: uuid(0x12),
        user: "bob".into(),
        group: "climate".into(),
        api_action: ApiAction::Get,
        job_label: "restore".into(),
        label: None,
        holding_id: None,
        state: State::Searching,
        percent: 0,
        created: ts("2026-05-02T08:00:00Z"),
        updated: ts("2026-05-02T08:00:00Z"),
        files_total: 0,
        files_done: 0,
        files_failed: 0,
        bytes_total: 0,
        bytes_done: 0,
        warnings: vec![],
        sub_records: vec![],
        files_skipped: 0,
        files_new_versions: 0,
        retry_of: None,
        retried_by: Vec::new(),
    };
    let mut t3 = t2.clone();
    t3.id = 1043;
    t3.transaction_id = uuid(0x13);
    t3.state = State::TransferGetting;
    t3.percent = 67;
    t3.label = Some("a-much-longer-holding-label".into());
    t3.updated = ts("2026-05-02T09:30:15Z");
    vec![t1, t2, t3]
}

fn sample_holdings() -> Vec<HoldingSummary> {
    vec![
        HoldingSummary {
            id: 7,
            label: "run42".into(),
            user: "alice".into(),
            group: "climate".into(),
            tags: tags(&[
                ("experiment", "ssp585"),
                ("site", "Rutherford Appleton, UK"),
            ]),
            transactions: vec![uuid(0x11), uuid(0x14)],
            created: ts("2026-05-01T10:00:00Z"),
            files: 1234,
            bytes: 5 * 1024 * 1024 * 1024 + 300 * 1024 * 1024,
            warm_files: 0,
            cold_files: 0,
            recalling_files: 0,
            last_access: Some(ts("2026-05-03T08:15:00Z")),
        },
        HoldingSummary {
            id: 12,
            label: "b".into(),
            user: "bob".into(),
            group: "climate".into(),
            tags: Tags::new(),
            transactions: vec![uuid(0x15)],
            created: ts("2026-04-30T23:59:59Z"),
            files: 1,
            bytes: 999,
            warm_files: 0,
            cold_files: 0,
            recalling_files: 0,
            last_access: None,
        },
    ]
}

fn sample_files() -> Vec<FileEntry> {
    let base = FileEntry {
        path: "/gws/climate/run42/tas_day.nc".into(),
        kind: PathKind::File,
        link_target: None,
        size: 1536 * 1024,
        uid: 1001,
        gid: 2001,
        mode: 0o640,
        mtime: ts("2026-04-28T17:45:00Z"),
        holding_id: 7,
        label: "run42".into(),
        user: "alice".into(),
        group: "climate".into(),
        transaction_id: uuid(0x11),
        ingest_time: ts("2026-05-01T10:02:00Z"),
        blake3: Some("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262".into()),
        locations: vec![
            FileLocation {
                tier: Tier::Warm,
                bucket: "nlds-climate".into(),
                key: "7/tas_day.nc".into(),
            },
            FileLocation {
                tier: Tier::Cold,
                bucket: "tape".into(),
                key: "agg-0001".into(),
            },
        ],
        recalling: false,
        last_access: Some(ts("2026-05-03T08:15:00Z")),
        access_count: 3,
        version: 1,
        xattrs: Vec::new(),
    };
    let mut warm = base.clone();
    warm.path = "/gws/climate/run42/pr_day.nc".into();
    warm.size = 100;
    warm.locations.truncate(1);
    warm.locations[0].key = "7/pr_day.nc".into();
    let mut cold = base.clone();
    cold.path = "/gws/climate/old/psl.nc".into();
    cold.holding_id = 3;
    cold.label = "archive-2019".into();
    cold.size = 7 * 1024 * 1024 * 1024 * 1024;
    cold.locations.remove(0);
    let mut link = base.clone();
    link.path = "/gws/climate/run42/latest".into();
    link.kind = PathKind::Link;
    link.link_target = Some("tas_day.nc".into());
    link.size = 10;
    link.mode = 0o777;
    link.locations.clear();
    vec![base, warm, cold, link]
}

#[test]
fn golden_stat_outputs() {
    let txs = sample_transactions();
    insta::assert_snapshot!("stat_table", render::stat_table(&txs, Zone::Utc, None));
    insta::assert_snapshot!(
        "stat_single",
        render::transaction_view(&txs[0], false, false, Zone::Utc)
    );
    insta::assert_snapshot!(
        "stat_single_sub_records_errors",
        render::transaction_view(&txs[0], true, true, Zone::Utc)
    );
    assert_eq!(
        render::failed_paths(&txs),
        "/gws/climate/run42/missing.nc\n"
    );
    assert_eq!(
        render::progress_line(&txs[0]),
        "11111111-1111-1111-1111-111111111111: COMPLETE_WITH_ERRORS files 3/4, 2.5 MiB/3.0 MiB, 1 failed"
    );
}

#[test]
fn stat_and_progress_say_why_batches_wait() {
    use nlds_core::waiting::{Retrying, Waiting};
    let mut t = sample_transactions().remove(0);
    t.state = State::ArchiveGetting;
    let tape = Waiting::Tape {
        aggregate: "nlds.agg1.tar".into(),
        since: ts("2026-05-01T10:01:00Z"),
        staging: true,
    };
    t.sub_records[0].state = State::ArchivePreparing;
    t.sub_records[0].waiting = Some(tape.clone());
    t.sub_records[1].state = State::ArchivePreparing;
    t.sub_records[1].waiting = Some(tape);
    t.sub_records[2].state = State::TransferGetting;
    t.sub_records[2].waiting = Some(Waiting::Retrying(Retrying {
        step: "transfer-get".into(),
        retry: 2,
        of: 4,
        next_try: ts("2026-05-01T10:06:00Z"),
        code: ErrorCode::Unavailable,
        error: "cannot reach S3".into(),
    }));
    let view = render::transaction_view(&t, false, false, Zone::Utc);
    assert!(
        view.contains(
            "2 batches: waiting for the tape stage of aggregate nlds.agg1.tar (staging since 2026-05-01T10:01:00+00:00)"
        ) && view.contains(
            "1 batch: retry 2 of 4 of transfer-get at 2026-05-01T10:06:00+00:00"
        ) && view.contains("after unavailable: cannot reach S3"),
        "{view}"
    );
    let subs = render::transaction_view(&t, true, false, Zone::Utc);
    assert_eq!(
        subs.matches("waiting for the tape stage").count(),
        3,
        "{subs}"
    );
    // The progress line names the most telling: the retry.
    let line = render::progress_line(&t);
    assert!(
        line.ends_with(", retry 2 of 4 of transfer-get at 10:06:00Z after unavailable"),
        "{line}"
    );
    // Nothing waiting, nothing said.
    let done = &sample_transactions()[0];
    assert!(!render::transaction_view(done, true, false, Zone::Utc).contains("waiting"));
}

#[test]
fn golden_list_outputs() {
    let hs = sample_holdings();
    insta::assert_snapshot!("list_table", render::holdings_table(&hs, Zone::Utc, None));
    insta::assert_snapshot!("list_single", render::holding_view(&hs[0], Zone::Utc));
}

#[test]
fn golden_find_outputs() {
    let fs = sample_files();
    insta::assert_snapshot!(
        "find_table",
        render::files_table(&fs, false, Zone::Utc, None)
    );
    insta::assert_snapshot!(
        "find_table_urls",
        render::files_table(&fs, true, Zone::Utc, None)
    );
    insta::assert_snapshot!("find_single", render::file_view(&fs[0], true, Zone::Utc));
    insta::assert_snapshot!(
        "find_single_link",
        render::file_view(&fs[3], false, Zone::Utc)
    );
    assert_eq!(
        render::simple_paths(&fs, false),
        "/gws/climate/run42/tas_day.nc\n/gws/climate/run42/pr_day.nc\n/gws/climate/old/psl.nc\n/gws/climate/run42/latest\n"
    );
    assert_eq!(
        render::simple_paths(&fs, true),
        "s3://nlds-climate/7/tas_day.nc\ns3://nlds-climate/7/pr_day.nc\n"
    );
}

#[test]
fn golden_meta_output() {
    let mut m = MetaResponse {
        dry_run: false,
        holdings: vec![MetaChange {
            id: 7,
            user: "alice".into(),
            group: "climate".into(),
            old: HoldingMeta {
                label: "run42".into(),
                tags: tags(&[("a", "1")]),
            },
            new: HoldingMeta {
                label: "run42-final".into(),
                tags: tags(&[("a", "1"), ("b", "x:y")]),
            },
        }],
    };
    insta::assert_snapshot!("meta", render::meta_view(&m));
    m.dry_run = true;
    insta::assert_snapshot!("meta_dry_run", render::meta_view(&m));
}

// ---------------------------------------------------------------------------------------------
// exit codes

fn api(status: u16, code: ErrorCode) -> Error {
    Error::Api {
        status,
        code,
        message: "m".into(),
    }
}

#[tokio::test]
async fn exit_code_mapping() {
    assert_eq!(exit::for_error(&api(401, ErrorCode::Unauthorized)), 3);
    assert_eq!(exit::for_error(&api(403, ErrorCode::Forbidden)), 3);
    assert_eq!(exit::for_error(&api(403, ErrorCode::PermissionDenied)), 3);
    assert_eq!(exit::for_error(&api(404, ErrorCode::NotFound)), 5);
    assert_eq!(exit::for_error(&api(504, ErrorCode::Timeout)), 7);
    assert_eq!(exit::for_error(&api(503, ErrorCode::Unavailable)), 6);
    assert_eq!(exit::for_error(&api(400, ErrorCode::BadRequest)), 1);
    assert_eq!(exit::for_error(&api(409, ErrorCode::Conflict)), 1);
    assert_eq!(exit::for_error(&api(502, ErrorCode::StorageError)), 1);
    assert_eq!(exit::for_error(&api(500, ErrorCode::Internal)), 1);
    assert_eq!(exit::for_error(&Error::Decode("x".into())), 1);
    assert_eq!(exit::for_error(&Error::Config("x".into())), 4);
    assert_eq!(exit::for_error(&Error::Timeout), 7);

    let closed = closed_port().await;
    let client = fast_client(&format!("http://{closed}"));
    let e = client.whoami().await.unwrap_err();
    assert!(matches!(e, Error::Transport(_)), "{e:?}");
    assert_eq!(exit::for_error(&e), 6);
    assert!(
        e.to_string().starts_with("cannot talk to the NLDS server"),
        "{e}"
    );

    assert_eq!(exit::for_state(State::Complete), 0);
    assert_eq!(exit::for_state(State::CompleteWithWarnings), 10);
    assert_eq!(exit::for_state(State::CompleteWithErrors), 11);
    assert_eq!(exit::for_state(State::Failed), 12);
    assert_eq!(exit::for_state(State::CatalogRemoving), 12);
    assert_eq!(
        (
            exit::OK,
            exit::GENERIC,
            exit::USAGE,
            exit::AUTH,
            exit::CONFIG,
            exit::NOT_FOUND
        ),
        (0, 1, 2, 3, 4, 5)
    );
    assert_eq!((exit::NETWORK, exit::TIMEOUT), (6, 7));
}

// ---------------------------------------------------------------------------------------------
// fake server

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query, as sent.
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A fake answer: close the connection without answering.
const DROP: u16 = 0;
/// A fake answer: never answer (within any test's request timeout).
const STALL: u16 = 1;

/// Answers requests, in order, with `answers` (status, JSON body); the last answer repeats.
/// [`DROP`] and [`STALL`] are not answers but misbehaviours.
async fn fake_server(answers: Vec<(u16, String)>) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let queue = Arc::new(Mutex::new(VecDeque::from(answers)));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let Some(req) = read_request(&mut sock).await else {
                continue;
            };
            seen2.lock().unwrap().push(req);
            let (status, body) = {
                let mut q = queue.lock().unwrap();
                if q.len() > 1 {
                    q.pop_front().unwrap()
                } else {
                    q.front().cloned().unwrap_or((500, "{}".into()))
                }
            };
            match status {
                // Hang up without answering.
                DROP => continue,
                // Answer far too late.
                STALL => {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        drop(sock);
                    });
                    continue;
                }
                _ => {}
            }
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    Fake { addr, seen }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

fn fast_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(10),
        },
        ..ClientOptions::default()
    }
}

fn fast_client(url: &str) -> Client {
    Client::with_options(url, "tok-123", fast_options()).unwrap()
}

fn err_body(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}

fn accepted_body(tid: Uuid, action: &str) -> String {
    serde_json::json!({
        "transaction_id": tid,
        "api_action": action,
        "status_url": format!("/api/v2/transactions/{tid}"),
        "job_label": "job1",
        "holding_id": 7,
        "label": "run42",
    })
    .to_string()
}

fn status_body(tid: Uuid, state: State, done: u64) -> String {
    let mut t = sample_transactions()[0].clone();
    t.transaction_id = tid;
    t.state = state;
    t.files_done = done;
    if state == State::Complete {
        t.files_failed = 0;
        t.sub_records.retain(|s| s.state != State::Failed);
    }
    serde_json::to_string(&t).unwrap()
}

// ---------------------------------------------------------------------------------------------
// library against the fake server

#[tokio::test]
async fn library_requests_retries_and_errors() {
    let tid = uuid(0x31);
    let holdings = serde_json::json!({
        "holdings": sample_holdings(), "total": 2, "limit": 10, "offset": 0
    });
    let files =
        serde_json::json!({"files": sample_files(), "total": 4, "limit": 1000, "offset": 0});
    let txs = serde_json::json!({
        "transactions": sample_transactions(), "total": 3, "limit": 20, "offset": 0
    });
    let fake = fake_server(vec![
        (503, err_body("unavailable", "the bus is down")),
        (202, accepted_body(tid, "put")),
        (200, holdings.to_string()),
        (200, files.to_string()),
        (200, txs.to_string()),
        (404, err_body("not_found", "transaction 31313131 not found")),
        (
            200,
            r#"{"user":"alice","groups":["climate","cmip"]}"#.into(),
        ),
        (
            400,
            err_body("bad_request", "label and holding_id disagree"),
        ),
        (502, "<html>bad gateway</html>".into()),
    ])
    .await;
    let client = fast_client(&format!("{}/", fake.url()));

    // put: 503 then 202, the retry carrying the same transaction id.
    let req = PutRequest {
        transaction_id: Some(tid),
        paths: vec!["/gws/a.nc".into()],
        label: Some("run42".into()),
        tags: tags(&[("k", "v w")]),
        group: Some("climate".into()),
        ..PutRequest::default()
    };
    let acc = client.put(&req).await.unwrap();
    assert_eq!(acc.transaction_id, tid);
    assert_eq!(acc.api_action, ApiAction::Put);
    assert_eq!(acc.holding_id, Some(7));

    // list, find, stat with their query strings.
    let page = client
        .list(&HoldingQuery {
            groupall: true,
            label: Some("run 42".into()),
            tag: Some("a:1,b:x y".into()),
            limit: Some(10),
            descending: Some(true),
            ..HoldingQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.holdings, sample_holdings());
    let fpage = client
        .find(&HoldingQuery {
            path: Some("/gws/a.nc".into()),
            holding_id: Some(7),
            limit: Some(1000),
            ..HoldingQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(fpage.files, sample_files());
    let tpage = client
        .stat(&StatQuery {
            group: Some("climate".into()),
            state: Some("FAILED,SEARCHING".into()),
            api_action: Some("put,get".into()),
            limit: Some(20),
            ..StatQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(tpage.total, 3);
    assert_eq!(tpage.transactions, sample_transactions());

    // 404 with the error envelope.
    match client.transaction(tid).await.unwrap_err() {
        Error::Api {
            status,
            code,
            message,
        } => {
            assert_eq!((status, code), (404, ErrorCode::NotFound));
            assert_eq!(message, "transaction 31313131 not found");
        }
        other => panic!("{other:?}"),
    }
    let who = client.whoami().await.unwrap();
    assert_eq!((who.user.as_str(), who.groups.len()), ("alice", 2));

    // A 4xx is not retried.
    let e = client.put(&PutRequest::default()).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Api {
                status: 400,
                code: ErrorCode::BadRequest,
                ..
            }
        ),
        "{e:?}"
    );
    // A 502 without our envelope is retried (3 attempts), then reported with a guessed code.
    let e = client.whoami().await.unwrap_err();
    match &e {
        Error::Api {
            status,
            code,
            message,
        } => {
            assert_eq!((*status, *code), (502, ErrorCode::Unavailable));
            assert!(
                message
                    .contains("HTTP 502 Bad Gateway from /api/v2/whoami: <html>bad gateway</html>"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }

    let seen = fake.seen();
    let summary: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.target.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("POST", "/api/v2/put"),
            ("POST", "/api/v2/put"),
            (
                "GET",
                "/api/v2/holdings?groupall=true&label=run+42&tag=a%3A1%2Cb%3Ax+y&regex=false&limit=10&descending=true"
            ),
            (
                "GET",
                "/api/v2/files?groupall=false&holding_id=7&path=%2Fgws%2Fa.nc&regex=false&limit=1000"
            ),
            (
                "GET",
                "/api/v2/transactions?group=climate&groupall=false&api_action=put%2Cget&state=FAILED%2CSEARCHING&regex=false&limit=20"
            ),
            (
                "GET",
                "/api/v2/transactions/31313131-3131-3131-3131-313131313131"
            ),
            ("GET", "/api/v2/whoami"),
            ("POST", "/api/v2/put"),
            ("GET", "/api/v2/whoami"),
            ("GET", "/api/v2/whoami"),
            ("GET", "/api/v2/whoami"),
        ]
    );
    for s in &seen {
        assert_eq!(s.header("authorization"), Some("Bearer tok-123"), "{s:?}");
    }
    assert_eq!(
        seen[0].body, seen[1].body,
        "a retried put is the same request"
    );
    let body = seen[0].json();
    assert_eq!(body["transaction_id"], tid.to_string());
    assert_eq!(body["paths"], serde_json::json!(["/gws/a.nc"]));
    assert_eq!(body["tags"], serde_json::json!({"k": "v w"}));
    assert_eq!(body["group"], "climate");
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    // A put without an id gets a fresh v4 one.
    let generated: Uuid = seen[7].json()["transaction_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(generated.get_version_num(), 4);
}

#[tokio::test]
async fn retries_give_up_after_the_policy() {
    let fake = fake_server(vec![(503, err_body("unavailable", "still down"))]).await;
    let client = fast_client(&fake.url());
    let e = client.whoami().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Api {
                status: 503,
                code: ErrorCode::Unavailable,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "still down");
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test]
async fn wait_treats_an_early_404_as_queued_and_stops_at_a_final_state() {
    let tid = uuid(0x41);
    let fake = fake_server(vec![
        // A server without live status: waiting polls, and says nothing about it.
        (
            404,
            err_body("not_found", "no such endpoint; see /api/v2/openapi.json"),
        ),
        (404, err_body("not_found", "no such transaction")),
        (503, err_body("unavailable", "blip")),
        (200, status_body(tid, State::TransferPutting, 1)),
        (200, status_body(tid, State::TransferPutting, 2)),
        (200, status_body(tid, State::Complete, 4)),
    ])
    .await;
    let client = Client::with_options(
        &fake.url(),
        "tok-123",
        ClientOptions {
            retry: RetryPolicy::none(),
            ..fast_options()
        },
    )
    .unwrap();
    let (status, events) = wait_recording(
        &client,
        tid,
        Duration::from_millis(5),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status.state, State::Complete);
    assert_eq!(
        events,
        vec![
            "queued",
            "unreachable blip",
            "TRANSFER_PUTTING 1",
            "TRANSFER_PUTTING 2",
            "COMPLETE 4"
        ]
    );
    let seen = fake.seen();
    assert_eq!(
        seen[0].target,
        "/api/v2/transactions/41414141-4141-4141-4141-414141414141/events"
    );
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.target == "/api/v2/transactions/41414141-4141-4141-4141-414141414141")
    );
}

/// Waits for `tid` and returns its final status and what the wait reported, as text.
async fn wait_recording(
    client: &Client,
    tid: Uuid,
    poll: Duration,
    timeout: Duration,
) -> (nlds_core::api::TransactionStatus, Vec<String>) {
    let mut events = Vec::new();
    let status = client
        .wait(tid, poll, Some(timeout), |p| events.push(progress_text(p)))
        .await
        .unwrap();
    (status, events)
}

/// What a test records of one report of `Client::wait`.
fn progress_text(p: WaitProgress<'_>) -> String {
    match p {
        WaitProgress::Queued => "queued".to_owned(),
        WaitProgress::Status(s) => format!("{} {}", s.state, s.files_done),
        WaitProgress::Unreachable(e) => format!("unreachable {e}"),
        WaitProgress::Polling(e, poll) => format!("polling every {poll:?}: {e}"),
    }
}

/// A server-sent event carrying `status` (what `GET .../events` streams).
fn status_event(tid: Uuid, state: State, done: u64, id: u64) -> String {
    format!(
        "event: status\nid: {id}\ndata: {}\n\n",
        status_body(tid, state, done)
    )
}

#[tokio::test]
async fn wait_follows_the_live_status_and_asks_nothing_else() {
    let tid = uuid(0x43);
    let stream = format!(
        ": keep-alive\n\n{}{}",
        status_event(tid, State::TransferPutting, 1, 10),
        status_event(tid, State::Complete, 4, 11)
    );
    let fake = fake_server(vec![(200, stream)]).await;
    let client = fast_client(&fake.url());
    let mut seen_states = Vec::new();
    // Polling every hour: only the live status can end this wait in time.
    let status = client
        .wait(
            tid,
            Duration::from_secs(3600),
            Some(Duration::from_secs(30)),
            |p| {
                if let WaitProgress::Status(s) = p {
                    seen_states.push(s.state);
                }
            },
        )
        .await
        .unwrap();
    assert_eq!(status.state, State::Complete);
    assert_eq!(seen_states, vec![State::TransferPutting, State::Complete]);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].target,
        "/api/v2/transactions/43434343-4343-4343-4343-434343434343/events"
    );
}

#[tokio::test]
async fn wait_says_when_the_live_status_breaks_and_polls_instead() {
    let tid = uuid(0x44);
    // The stream ends (the connection closes) before the final state.
    let fake = fake_server(vec![
        (200, status_event(tid, State::TransferPutting, 1, 10)),
        (200, status_body(tid, State::Complete, 4)),
    ])
    .await;
    let client = fast_client(&fake.url());
    let (status, events) = wait_recording(
        &client,
        tid,
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(status.state, State::Complete);
    assert_eq!(
        events,
        vec![
            "TRANSFER_PUTTING 1".to_owned(),
            "polling every 10ms: the live status stream ended before the final state".to_owned(),
            "COMPLETE 4".to_owned(),
        ]
    );
}

#[tokio::test]
async fn wait_times_out_and_a_late_404_is_an_error() {
    let tid = uuid(0x42);
    let fake = fake_server(vec![(200, status_body(tid, State::ArchiveGetting, 0))]).await;
    let client = fast_client(&fake.url());
    let e = client
        .wait(
            tid,
            Duration::from_millis(10),
            Some(Duration::from_millis(60)),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    assert!(fake.seen().len() >= 3, "polled {} times", fake.seen().len());

    let fake = fake_server(vec![(404, err_body("not_found", "unknown transaction"))]).await;
    let client = Client::with_options(
        &fake.url(),
        "tok-123",
        ClientOptions {
            not_found_grace: Duration::ZERO,
            ..fast_options()
        },
    )
    .unwrap();
    let e = client
        .wait(tid, Duration::from_millis(5), None, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Api {
                status: 404,
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// the CLI against the fake server

struct Outcome {
    code: u8,
    out: String,
    err: String,
}

async fn run_cli(args: &[&str], env: &Env) -> Outcome {
    run_cli_stdin(args, env, "").await
}

async fn run_cli_stdin(args: &[&str], env: &Env, input: &str) -> Outcome {
    let mut all = vec!["nlds"];
    all.extend_from_slice(args);
    let cli = Cli::try_parse_from(all).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdin: &[u8] = input.as_bytes();
    let code = {
        let mut io = Io {
            out: &mut out,
            err: &mut err,
            stdin: &mut stdin,
        };
        app::run(cli, env, &mut io).await
    };
    Outcome {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn server_env(fake: &Fake) -> Env {
    Env::new(
        [
            ("HOME", "/nonexistent-home"),
            ("NLDS_URL", fake.url().as_str()),
            ("NLDS_TOKEN", "env-token"),
            ("NLDS_GROUP", "climate"),
        ],
        "/gws/climate",
    )
}

#[tokio::test]
async fn cli_put_wait_reports_the_final_state_in_the_exit_code() {
    let tid = uuid(0x51);
    // The live status: two events, the second final.
    let stream = format!(
        "{}{}",
        status_event(tid, State::TransferPutting, 2, 1),
        status_event(tid, State::CompleteWithErrors, 3, 2)
    );
    let fake = fake_server(vec![(202, accepted_body(tid, "put")), (200, stream)]).await;
    let env = server_env(&fake);
    let o = run_cli(
        &[
            "put",
            "-l",
            "run42",
            "-b",
            "job1",
            "-t",
            r"site:RAL\, UK",
            "run42/f.nc",
            "--no-check",
            "--wait",
            "--poll",
            "5ms",
            "--utc",
        ],
        &env,
    )
    .await;
    assert_eq!(
        o.code,
        exit::COMPLETE_WITH_ERRORS,
        "out: {}\nerr: {}",
        o.out,
        o.err
    );
    assert!(
        o.out
            .starts_with("put transaction accepted for processing.\n"),
        "{}",
        o.out
    );
    assert!(
        o.out
            .contains("    state           : COMPLETE_WITH_ERRORS\n"),
        "{}",
        o.out
    );
    assert!(
        o.out
            .contains("        + path            : /gws/climate/run42/missing.nc\n"),
        "{}",
        o.out
    );
    assert!(
        o.err.contains("COMPLETE_WITH_ERRORS files 3/4"),
        "{}",
        o.err
    );
    assert!(
        o.err.contains(&format!(
            "error: transaction {tid} ended COMPLETE_WITH_ERRORS"
        )),
        "{}",
        o.err
    );

    let seen = fake.seen();
    assert_eq!(seen[0].target, "/api/v2/put");
    assert_eq!(seen[0].header("authorization"), Some("Bearer env-token"));
    let body = seen[0].json();
    assert_eq!(
        body["paths"],
        serde_json::json!(["/gws/climate/run42/f.nc"])
    );
    assert_eq!(body["tags"], serde_json::json!({"site": "RAL, UK"}));
    assert_eq!(body["label"], "run42");
    assert_eq!(body["job_label"], "job1");
    assert_eq!(body["group"], "climate");
    assert_eq!(seen[1].target, format!("/api/v2/transactions/{tid}/events"));
    assert_eq!(seen[1].header("accept"), Some("text/event-stream"));
    assert_eq!(seen.len(), 2, "no poll: the live status ended the wait");
}

#[tokio::test]
async fn cli_list_and_stat_tables_and_json() {
    let holdings =
        serde_json::json!({"holdings": sample_holdings(), "total": 5, "limit": 2, "offset": 0});
    let txs = serde_json::json!({"transactions": sample_transactions(), "total": 3, "limit": 1000, "offset": 0});
    let fake = fake_server(vec![
        (200, holdings.to_string()),
        (200, txs.to_string()),
        (200, txs.to_string()),
    ])
    .await;
    let env = server_env(&fake);
    let o = run_cli(&["list", "-L", "2", "-A", "--utc", "-g", "cmip"], &env).await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        render::holdings_table(&sample_holdings(), Zone::Utc, None)
    );
    assert!(o.err.contains("note: showing 2 of 5 holdings"), "{}", o.err);

    let o = run_cli(&["stat", "-F"], &env).await;
    assert_eq!(
        (o.code, o.out.as_str()),
        (0, "/gws/climate/run42/missing.nc\n")
    );

    let o = run_cli(&["-j", "stat"], &env).await;
    assert_eq!(o.code, 0);
    let v: serde_json::Value = serde_json::from_str(o.out.trim()).unwrap();
    assert_eq!(v["total"], 3);
    assert_eq!(v["transactions"][0]["state"], "COMPLETE_WITH_ERRORS");
    assert!(o.err.is_empty(), "{}", o.err);

    let seen = fake.seen();
    assert_eq!(
        seen[0].target, "/api/v2/holdings?group=cmip&groupall=true&regex=false&limit=2",
        "--group overrides NLDS_GROUP"
    );
    assert_eq!(
        seen[1].target,
        "/api/v2/transactions?group=climate&groupall=false&regex=false"
    );
}

#[tokio::test]
async fn cli_errors_are_plain_or_json_with_their_exit_codes() {
    let fake = fake_server(vec![
        (
            404,
            err_body(
                "not_found",
                "no transaction 61616161-6161-6161-6161-616161616161",
            ),
        ),
        (
            404,
            err_body(
                "not_found",
                "no transaction 61616161-6161-6161-6161-616161616161",
            ),
        ),
        (403, err_body("forbidden", "you are not in group cmip")),
    ])
    .await;
    let env = server_env(&fake);
    let id = "61616161-6161-6161-6161-616161616161";

    let o = run_cli(&["stat", "-n", id], &env).await;
    assert_eq!(o.code, exit::NOT_FOUND);
    assert_eq!(o.err, format!("error: no transaction {id} (not_found)\n"));
    assert!(o.out.is_empty());
    assert!(
        !o.err.contains("Usage"),
        "no usage banner for a server error"
    );

    let o = run_cli(&["-j", "stat", "-n", id], &env).await;
    assert_eq!(o.code, exit::NOT_FOUND);
    assert_eq!(
        o.out,
        format!("{{\"error\":{{\"code\":\"not_found\",\"message\":\"no transaction {id}\"}}}}\n")
    );
    assert!(o.err.is_empty());

    let o = run_cli(&["list", "-g", "cmip"], &env).await;
    assert_eq!(o.code, exit::AUTH);
    assert_eq!(o.err, "error: you are not in group cmip (forbidden)\n");

    // Nothing reachable: network error, exit 6, and a put says how to check it was not accepted.
    let closed = closed_port().await;
    let env = Env::new(
        [
            ("NLDS_URL", format!("http://{closed}")),
            ("NLDS_TOKEN", "t".into()),
        ],
        "/",
    );
    let o = run_cli(&["put", "/f", "--no-check"], &env).await;
    assert_eq!(o.code, exit::NETWORK, "{}", o.err);
    assert!(
        o.err.starts_with("error: cannot talk to the NLDS server"),
        "{}",
        o.err
    );
    assert!(o.err.contains("check with `nlds stat -n "), "{}", o.err);
}

#[tokio::test]
async fn cli_without_configuration_says_how_to_configure() {
    let home = tempfile::tempdir().unwrap();
    let env = Env::new([("HOME", home.path().to_str().unwrap())], "/");
    let o = run_cli(&["list"], &env).await;
    assert_eq!(o.code, exit::CONFIG);
    let path = home.path().join(".config/nlds/config.toml");
    assert_eq!(
        o.err,
        format!(
            "nlds is not configured yet: run `nlds init --url URL` or set NLDS_URL and NLDS_TOKEN; config file would be at {}\n",
            path.display()
        ),
        "a short first-run message, not an error dump"
    );
    assert!(o.out.is_empty());

    let o = run_cli(&["-j", "list"], &env).await;
    assert_eq!(o.code, exit::CONFIG);
    let v: serde_json::Value = serde_json::from_str(o.out.trim()).unwrap();
    assert_eq!(v["error"]["code"], "bad_request");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("NLDS_TOKEN")
    );
}

#[test]
fn the_binary_exits_4_unconfigured_and_never_prints_the_token() {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nlds"))
        .args(["stat"])
        .env_clear()
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nlds is not configured"), "{stderr}");
    assert!(stderr.contains(".config/nlds/config.toml"), "{stderr}");

    // A token given but no URL: the message names what is missing and not the token.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nlds"))
        .args(["--token", "super-secret-token", "list"])
        .env_clear()
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("nlds does not know the server's URL"), "{all}");
    assert!(!all.contains("super-secret-token"), "{all}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nlds"))
        .args(["put"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

// ---------------------------------------------------------------------------------------------
// tables that fit the terminal

fn long_holdings() -> Vec<HoldingSummary> {
    let mut hs = sample_holdings();
    hs[0].label = "ice-core-isotopes-2026-campaign-halley-station-final-v2".into();
    hs[1].user = "alexandra-with-a-long-name".into();
    hs[1].label = "b".into();
    hs
}

fn long_files() -> Vec<FileEntry> {
    let mut fs = sample_files();
    fs[0].path =
        "/gws/nopw/j04/climate-project/run42/atmos/daily/tas/tas_day_UKESM1_ssp585_r1i1p1f2_20150101-20491230.nc"
            .into();
    fs[2].label = "archive-2019-with-a-much-longer-label".into();
    fs
}

/// Every line fits in `width` cells, and the columns still line up under the header.
fn assert_fits(table: &str, width: usize) {
    for line in table.lines() {
        assert!(
            render::text_width(line) <= width,
            "{line:?} is {} cells wide, more than {width}\n{table}",
            render::text_width(line)
        );
    }
    assert!(
        table.contains('\u{2026}'),
        "nothing was shortened:\n{table}"
    );
}

#[test]
fn golden_narrow_and_wide_tables() {
    let hs = long_holdings();
    let narrow = render::holdings_table(&hs, Zone::Utc, Some(70));
    assert_fits(&narrow, 70);
    insta::assert_snapshot!("list_table_narrow", narrow);
    let wide = render::holdings_table(&hs, Zone::Utc, None);
    assert!(wide.contains("ice-core-isotopes-2026-campaign-halley-station-final-v2"));
    assert!(!wide.contains('\u{2026}'));
    insta::assert_snapshot!("list_table_wide", wide);
    // A table that fits is never shortened.
    assert_eq!(
        render::holdings_table(&sample_holdings(), Zone::Utc, Some(200)),
        render::holdings_table(&sample_holdings(), Zone::Utc, None)
    );

    let fs = long_files();
    let narrow = render::files_table(&fs, false, Zone::Utc, Some(100));
    assert_fits(&narrow, 100);
    assert!(
        narrow.contains("20491230.nc"),
        "a path keeps its end:\n{narrow}"
    );
    insta::assert_snapshot!("find_table_narrow", narrow);
    insta::assert_snapshot!(
        "find_table_wide",
        render::files_table(&fs, false, Zone::Utc, None)
    );

    let txs = sample_transactions();
    let narrow = render::stat_table(&txs, Zone::Utc, Some(110));
    assert_fits(&narrow, 110);
    insta::assert_snapshot!("stat_table_narrow", narrow);
}

// ---------------------------------------------------------------------------------------------
// dry-run summaries, whoami, config show

fn sample_scan() -> nlds_client::local::LocalScan {
    use nlds_client::local::{Counts, LocalScan, PathScan, ScanKind};
    let counts = |files, directories, links, bytes| Counts {
        files,
        directories,
        links,
        bytes,
    };
    LocalScan {
        paths: vec![
            PathScan {
                path: "/gws/climate/run42/atmos/daily/a-rather-long-directory-name-for-the-table"
                    .into(),
                kind: ScanKind::Directory,
                counts: counts(1230, 12, 2, 5 * 1024 * 1024 * 1024),
            },
            PathScan {
                path: "/gws/climate/x.nc".into(),
                kind: ScanKind::File,
                counts: counts(1, 0, 0, 1024),
            },
            PathScan {
                path: "/gws/climate/missing.nc".into(),
                kind: ScanKind::Missing,
                counts: Counts::default(),
            },
        ],
        total: counts(1231, 12, 2, 5 * 1024 * 1024 * 1024 + 1024),
        problems: vec![
            FailedFile::new(
                "/gws/climate/missing.nc",
                ErrorCode::PathMissing,
                "no such file or directory",
            ),
            FailedFile::new(
                "/gws/climate/run42/atmos/daily/a-rather-long-directory-name-for-the-table/private",
                ErrorCode::PermissionDenied,
                "permission denied: cannot read directory",
            ),
        ],
    }
}

fn sample_put_request() -> PutRequest {
    PutRequest {
        transaction_id: Some(uuid(0x71)),
        paths: sample_scan().paths.iter().map(|p| p.path.clone()).collect(),
        label: Some("run42".into()),
        tags: tags(&[("site", "Rutherford Appleton, UK")]),
        job_label: Some("nightly".into()),
        group: Some("climate".into()),
        dry_run: true,
        ..PutRequest::default()
    }
}

fn sample_get_plan() -> (GetRequest, GetPlan, Vec<Destination>) {
    let fs = long_files();
    let req = GetRequest {
        transaction_id: Some(uuid(0x72)),
        paths: vec!["/gws/.*".into()],
        label: Some("run42".into()),
        regex: true,
        target: Some("/tmp/restore".into()),
        group: Some("climate".into()),
        dry_run: true,
        ..GetRequest::default()
    };
    let plan = GetPlan {
        files: fs[..3].to_vec(),
        missing: vec![FailedFile::new(
            "/gws/climate/never-stored.nc",
            ErrorCode::NotFound,
            "no stored file has this path",
        )],
        files_total: 3,
        bytes_total: fs[..3].iter().map(|f| f.size).sum(),
        target: Some("/tmp/restore".into()),
    };
    let actions = [DestAction::Restore, DestAction::Skip, DestAction::Conflict];
    let dests = plan
        .files
        .iter()
        .zip(actions)
        .map(|(f, action)| Destination {
            path: f.path.clone(),
            destination: format!("/tmp/restore{}", f.path),
            action,
        })
        .collect();
    (req, plan, dests)
}

#[test]
fn golden_dry_run_summaries() {
    let scan = sample_scan();
    let req = sample_put_request();
    let new_holding = PutPlan {
        holding: None,
        new_label: Some("run42".into()),
        group: "climate".into(),
        paths: req.paths.clone(),
        verdicts: Vec::new(),
    };
    let narrow = render::put_plan_view(&req, &new_holding, &scan, None, Some(72));
    for line in narrow.lines().filter(|l| !l.starts_with("    ")) {
        assert!(render::text_width(line) <= 72, "{line:?}");
    }
    insta::assert_snapshot!("put_dry_run_narrow", narrow);
    let existing = PutPlan {
        holding: Some(sample_holdings()[0].clone()),
        new_label: None,
        ..new_holding.clone()
    };
    let already = nlds_client::local::AlreadyStored {
        holding_id: 7,
        total: 12,
        examples: vec![
            "/gws/climate/x.nc".into(),
            "/gws/climate/run42/atmos".into(),
        ],
    };
    let wide = render::put_plan_view(&req, &existing, &scan, Some(&already), None);
    assert!(
        wide.contains("    already stored  : 12 of these entries are already in holding 7: the put would fail for them\n"),
        "{wide}"
    );
    assert!(wide.contains("a-rather-long-directory-name-for-the-table  directory"));
    assert!(wide.contains("    holding         : 7 (run42): existing, 1234 files, 5.3 GiB\n"));
    insta::assert_snapshot!("put_dry_run_wide", wide);

    let (req, plan, dests) = sample_get_plan();
    let narrow = render::get_plan_view(&req, &plan, &dests, Some(80));
    for line in narrow.lines().filter(|l| !l.starts_with("    ")) {
        assert!(render::text_width(line) <= 80, "{line:?}");
    }
    insta::assert_snapshot!("get_dry_run_narrow", narrow);
    let wide = render::get_plan_view(&req, &plan, &dests, None);
    assert!(wide.contains("tas_day_UKESM1_ssp585_r1i1p1f2_20150101-20491230.nc  restore"));
    insta::assert_snapshot!("get_dry_run_wide", wide);
}

#[test]
fn golden_whoami_and_config_show() {
    use nlds_client::config::{Effective, Secret, Source, Sourced};
    use std::path::PathBuf;
    let id = Identity {
        who: WhoAmI {
            user: "alice".into(),
            groups: vec!["climate".into(), "cmip".into()],
            admin: false,
            roles: [("cmip".to_string(), nlds_core::AccessRole::Manager)].into(),
        },
        token_expires: Some(ts("2027-01-15T08:00:00Z")),
    };
    insta::assert_snapshot!(
        "whoami",
        render::whoami_view(&id, "https://nlds.example.org", None, Zone::Utc)
    );
    let no_expiry = Identity {
        token_expires: None,
        ..id.clone()
    };
    let text = render::whoami_view(&no_expiry, "https://x", Some("cmip"), Zone::Utc);
    assert!(text.contains("    group           : cmip\n"), "{text}");
    assert!(text.contains("token expires   : not known"), "{text}");

    let file = PathBuf::from("/home/alice/.config/nlds/config.toml");
    let e = Effective {
        config_file: Some(file.clone()),
        config_file_source: Source::Default,
        config_file_found: true,
        url: Some(Sourced {
            value: "https://nlds.example.org".into(),
            source: Source::Env("NLDS_URL"),
        }),
        token: Some(Sourced {
            value: Secret::new("very-secret-token-0123"),
            source: Source::File(file.clone()),
        }),
        group: Some(Sourced {
            value: "climate".into(),
            source: Source::Flag("--group"),
        }),
        user: None,
        insecure: Sourced {
            value: false,
            source: Source::Default,
        },
        connect_timeout: Sourced {
            value: Duration::from_secs(10),
            source: Source::Default,
        },
        request_timeout: Sourced {
            value: Duration::from_secs(45),
            source: Source::Env("NLDS_REQUEST_TIMEOUT"),
        },
        file_has_url: false,
        file_has_token: true,
        token_problem: None,
        warnings: vec![],
    };
    let shown = render::config_view(&e, None);
    assert!(!shown.contains("very-secret-token"), "{shown}");
    insta::assert_snapshot!("config_show", shown);
}

// ---------------------------------------------------------------------------------------------
// more of the command line

#[test]
fn new_commands_and_options_parse() {
    let cli = parse(&[
        "init",
        "-U",
        "https://nlds.example.org",
        "-u",
        "alice",
        "-g",
        "gws1",
        "-k",
    ]);
    let Some(Command::Init(a)) = &cli.command else {
        panic!("not init")
    };
    assert_eq!(a.url.as_deref(), Some("https://nlds.example.org"));
    assert!(cli.global.insecure && !a.no_insecure && !a.no_verify);
    assert_eq!(
        (cli.global.user.as_deref(), cli.global.group.as_deref()),
        (Some("alice"), Some("gws1"))
    );
    assert!(matches!(parse(&["renew"]).command, Some(Command::Renew(_))));
    assert!(matches!(
        parse(&["config", "show"]).command,
        Some(Command::Config(_))
    ));
    let cli = parse(&[
        "--connect-timeout",
        "3s",
        "list",
        "--request-timeout",
        "1m",
        "-w",
    ]);
    assert_eq!(cli.global.connect_timeout, Some(Duration::from_secs(3)));
    assert_eq!(cli.global.request_timeout, Some(Duration::from_secs(60)));
    assert!(cli.global.wide);

    use clap::error::ErrorKind;
    assert_eq!(
        parse_err(&["get", "--no-clobber", "--overwrite", "/f"]).kind(),
        ErrorKind::ArgumentConflict
    );
    assert_eq!(
        parse_err(&["getlist", "--overwrite", "--no-clobber", "l"]).kind(),
        ErrorKind::ArgumentConflict
    );
    assert_eq!(
        parse_err(&["put", "--dry-run", "--wait", "/f"]).kind(),
        ErrorKind::ArgumentConflict
    );
    assert_eq!(
        parse_err(&["init", "-k", "--no-insecure"]).kind(),
        ErrorKind::ArgumentConflict
    );
    assert_eq!(
        parse_err(&["completions", "tcsh"]).kind(),
        ErrorKind::InvalidValue
    );
    assert_eq!(
        parse_err(&["man", "put", "--dir", "/tmp/x"]).kind(),
        ErrorKind::ArgumentConflict
    );

    let env = env_in("/gws/proj");
    let Plan::Get(req, None, _) = plan(&["get", "--no-clobber", "f"], &env).unwrap() else {
        panic!()
    };
    assert!(!req.overwrite && !req.dry_run);
    let Plan::Get(req, None, _) = plan(&["getlist", "--overwrite", "--dry-run", "-"], &env)
        .map_err(|e| e.message())
        .or_else(|_| plan_with_stdin(&["getlist", "--overwrite", "--dry-run", "-"], &env, "a\n"))
        .unwrap()
    else {
        panic!()
    };
    assert!(req.overwrite && req.dry_run);
    let Plan::Put(req, None, _, _) = plan(&["put", "--dry-run", "f"], &env).unwrap() else {
        panic!()
    };
    assert!(req.dry_run);
    let Plan::Meta(m) = plan(&["meta", "-l", "x", "-L", "y", "--dry-run"], &env).unwrap() else {
        panic!()
    };
    assert!(m.dry_run);
}

#[test]
fn help_explains_tags_completions_and_the_manual() {
    let help = Cli::command().render_long_help().to_string();
    for want in [
        "nlds completions bash",
        "nlds completions zsh",
        "nlds completions fish",
        "nlds man --dir ~/.local/share/man/man1",
        "nlds init --url",
    ] {
        assert!(help.contains(want), "{want} missing from\n{help}");
    }
    let mut cmd = Cli::command();
    cmd.build();
    for sub in ["put", "putlist", "get", "getlist", "list", "find", "meta"] {
        let h = cmd
            .find_subcommand_mut(sub)
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(h.contains(r"`\,` for a comma inside a value"), "{sub}: {h}");
        assert!(h.contains("Quote a value with spaces"), "{sub}: {h}");
    }
    let get = cmd
        .find_subcommand_mut("get")
        .unwrap()
        .render_long_help()
        .to_string();
    for want in ["--no-clobber", "--overwrite", "--dry-run", "--wide"] {
        assert!(get.contains(want), "{want} missing from\n{get}");
    }
}

#[tokio::test]
async fn completions_and_manual_pages() {
    let env = Env::new([("HOME", "/nonexistent")], "/");
    for (shell, marker) in [
        ("bash", "_nlds()"),
        ("zsh", "#compdef nlds"),
        ("fish", "complete -c nlds"),
    ] {
        let o = run_cli(&["completions", shell], &env).await;
        assert_eq!(o.code, 0, "{}", o.err);
        assert!(o.out.contains(marker), "{shell}: no {marker}");
        for word in ["putlist", "getlist", "renew", "dry-run", "no-clobber"] {
            assert!(o.out.contains(word), "{shell}: {word} not completed");
        }
    }
    let o = run_cli(&["man"], &env).await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(o.out.contains(".TH nlds 1"), "{}", o.out);
    assert!(
        o.out.contains("Exit codes:"),
        "the man page has the exit codes"
    );
    let o = run_cli(&["man", "get"], &env).await;
    assert!(o.out.contains(".TH nlds-get 1"), "{}", o.out);
    assert!(o.out.contains(r"\-\-no\-clobber"), "{}", o.out);
    let o = run_cli(&["man", "dance"], &env).await;
    assert_eq!(o.code, exit::USAGE);
    assert!(o.err.contains("nlds has no command \"dance\""), "{}", o.err);

    let dir = tempfile::tempdir().unwrap();
    let mandir = dir.path().join("man/man1");
    let o = run_cli(&["man", "--dir", mandir.to_str().unwrap()], &env).await;
    assert_eq!(o.code, 0, "{}", o.err);
    for page in ["nlds.1", "nlds-put.1", "nlds-init.1", "nlds-config-show.1"] {
        let text = std::fs::read_to_string(mandir.join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}\n{}", o.out));
        assert!(text.starts_with(".ie"), "{page} is not roff");
    }
    assert!(o.out.starts_with("Wrote "), "{}", o.out);
}

// ---------------------------------------------------------------------------------------------
// the CLI against the fake server: dry runs, stdin lists, tables, whoami, timeouts

fn put_plan_body(paths: &[String]) -> String {
    serde_json::json!({"holding": null, "new_label": "run42", "group": "climate", "paths": paths})
        .to_string()
}

#[tokio::test]
async fn cli_put_dry_run_walks_the_local_paths_and_asks_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("run42");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.nc"), vec![0u8; 1000]).unwrap();
    std::fs::write(root.join("sub/b.nc"), vec![0u8; 24]).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
    let root_s = root.to_str().unwrap().to_owned();
    let missing = dir.path().join("missing").to_str().unwrap().to_owned();
    let fake = fake_server(vec![(
        200,
        put_plan_body(&[root_s.clone(), missing.clone()]),
    )])
    .await;
    let env = server_env(&fake);
    let o = run_cli_stdin(
        &["putlist", "-", "-l", "run42", "--dry-run", "--wide"],
        &env,
        &format!("{root_s}\n{missing}\n"),
    )
    .await;
    assert_eq!(o.code, 0, "out: {}\nerr: {}", o.out, o.err);
    assert!(
        o.out
            .starts_with("Dry run: nothing was sent to be stored.\n"),
        "{}",
        o.out
    );
    assert!(
        o.out.contains("    action          : putlist\n"),
        "{}",
        o.out
    );
    assert!(
        o.out
            .contains("    holding         : new holding labelled \"run42\"\n"),
        "{}",
        o.out
    );
    assert!(
        o.out
            .contains("    paths           : 2 given: 1 found, 1 missing or unreadable\n"),
        "{}",
        o.out
    );
    assert!(
        o.out.contains(
            "    would put       : 2 files, 2 directories, 1 links: 1.0 KiB (1024 bytes)\n"
        ),
        "{}",
        o.out
    );
    assert!(
        o.out.contains(&format!(
            "{missing}: no such file or directory (path_missing)"
        )),
        "{}",
        o.out
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/v2/put");
    let body = seen[0].json();
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["paths"], serde_json::json!([root_s, missing]));
    assert_eq!(body["label"], "run42");

    // JSON: the request, the server's plan and the local scan.
    let o = run_cli(&["-j", "put", &root_s, "--dry-run"], &env).await;
    assert_eq!(o.code, 0, "{}", o.err);
    let v: serde_json::Value = serde_json::from_str(o.out.trim()).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["request"]["paths"], serde_json::json!([root_s]));
    assert_eq!(v["plan"]["new_label"], "run42");
    assert_eq!(v["local"]["files"], 2);
    assert_eq!(v["local"]["bytes"], 1024);
    assert_eq!(v["local"]["paths"][0]["kind"], "directory");

    // Nothing that exists: exit 5, after the summary.
    let o = run_cli(&["put", &missing, "--dry-run"], &env).await;
    assert_eq!(o.code, exit::NOT_FOUND, "{}", o.err);
    assert!(o.out.contains("missing"), "{}", o.out);
    assert!(
        o.err
            .contains("nothing would be put: none of the paths exists"),
        "{}",
        o.err
    );
}

fn plan_file(path: &str, content: &[u8]) -> FileEntry {
    let mut f = sample_files()[1].clone();
    f.path = path.into();
    f.size = content.len() as u64;
    f.blake3 = Some(blake3::hash(content).to_hex().to_string());
    f
}

#[tokio::test]
async fn cli_get_dry_run_checks_each_destination() {
    let target = tempfile::tempdir().unwrap();
    let t = target.path().to_str().unwrap().to_owned();
    std::fs::create_dir_all(target.path().join("data")).unwrap();
    std::fs::write(target.path().join("data/same.nc"), b"same").unwrap();
    std::fs::write(target.path().join("data/diff.nc"), b"old!").unwrap();
    let files = vec![
        plan_file("/data/new.nc", b"new"),
        plan_file("/data/same.nc", b"same"),
        plan_file("/data/diff.nc", b"new!"),
    ];
    let plan = serde_json::json!({
        "files": files,
        "missing": [{"path": "/data/gone.nc", "code": "not_found", "reason": "no stored file has this path"}],
        "files_total": 3,
        "bytes_total": 11,
        "target": t,
    });
    let empty = serde_json::json!({
        "files": [], "missing": [{"path": "/data/gone.nc", "code": "not_found", "reason": "no stored file has this path"}],
        "files_total": 0, "bytes_total": 0, "target": null,
    });
    let fake = fake_server(vec![
        (200, plan.to_string()),
        (200, plan.to_string()),
        (200, plan.to_string()),
        (200, empty.to_string()),
    ])
    .await;
    let env = server_env(&fake);

    let o = run_cli_stdin(
        &[
            "getlist",
            "-",
            "-r",
            &t,
            "-l",
            "run42",
            "--dry-run",
            "--no-clobber",
        ],
        &env,
        "/data/new.nc\n/data/same.nc\n\n/data/diff.nc\n/data/gone.nc\n",
    )
    .await;
    assert_eq!(o.code, 0, "out: {}\nerr: {}", o.out, o.err);
    assert!(
        o.out.starts_with("Dry run: nothing was restored.\n"),
        "{}",
        o.out
    );
    let row = |path: &str| {
        o.out
            .lines()
            .find(|l| l.contains(path))
            .unwrap_or_else(|| panic!("no row for {path} in\n{}", o.out))
            .to_owned()
    };
    assert!(row("/data/new.nc").ends_with("restore"), "{}", o.out);
    assert!(
        row("/data/same.nc").ends_with("skip (identical)"),
        "{}",
        o.out
    );
    assert!(row("/data/diff.nc").ends_with("conflict"), "{}", o.out);
    assert!(
        o.out
            .contains("/data/gone.nc: no stored file has this path (not_found)"),
        "{}",
        o.out
    );
    assert!(
        o.out.contains("1 file(s) exist with different content"),
        "{}",
        o.out
    );
    assert_eq!(
        std::fs::read(target.path().join("data/diff.nc")).unwrap(),
        b"old!",
        "a dry run writes nothing"
    );
    assert!(!target.path().join("data/new.nc").exists());
    let body = fake.seen()[0].json();
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["overwrite"], false);
    assert_eq!(body["target"], t.as_str());
    assert_eq!(
        body["paths"],
        serde_json::json!([
            "/data/new.nc",
            "/data/same.nc",
            "/data/diff.nc",
            "/data/gone.nc"
        ])
    );

    let o = run_cli(
        &["get", "/data/diff.nc", "-r", &t, "--overwrite", "--dry-run"],
        &env,
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        o.out
            .lines()
            .any(|l| l.contains("/data/diff.nc") && l.ends_with("overwrite")),
        "{}",
        o.out
    );
    assert_eq!(fake.seen()[1].json()["overwrite"], true);

    let o = run_cli(&["-j", "get", "/data/diff.nc", "-r", &t, "--dry-run"], &env).await;
    let v: serde_json::Value = serde_json::from_str(o.out.trim()).unwrap();
    assert_eq!(v["plan"]["files_total"], 3);
    assert_eq!(v["destinations"][2]["action"], "conflict");
    assert_eq!(
        v["destinations"][0]["destination"],
        format!("{t}/data/new.nc")
    );

    // Nothing matches: exit 5.
    let o = run_cli(&["get", "/data/gone.nc", "--dry-run"], &env).await;
    assert_eq!(o.code, exit::NOT_FOUND, "{}", o.out);
    assert!(o.err.contains("nothing would be restored"), "{}", o.err);
}

#[tokio::test]
async fn cli_getlist_and_putlist_read_standard_input() {
    let tid = uuid(0x73);
    let fake = fake_server(vec![(202, accepted_body(tid, "getlist"))]).await;
    let env = server_env(&fake);
    let o = run_cli_stdin(
        &["getlist", "-", "-l", "run42"],
        &env,
        "/gws/a.nc\n  rel/b.nc  \n\n/gws/a.nc\n",
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.err);
    let body = fake.seen()[0].json();
    assert_eq!(
        body["paths"],
        serde_json::json!(["/gws/a.nc", "/gws/climate/rel/b.nc"])
    );
    assert_eq!(body["overwrite"], false, "no-clobber is the default");
    assert_eq!(body["dry_run"], false);

    let o = run_cli_stdin(&["putlist", "-"], &env, "\n \n").await;
    assert_eq!(o.code, exit::USAGE);
    assert_eq!(o.err, "error: FILELIST contains no paths\n");
}

#[tokio::test]
async fn cli_meta_dry_run_changes_nothing() {
    let change = serde_json::json!({
        "holdings": [{
            "id": 7, "user": "alice", "group": "climate",
            "old": {"label": "run42", "tags": {"a": "1"}},
            "new": {"label": "run42-final", "tags": {"a": "1"}},
        }],
        "dry_run": true,
    });
    let fake = fake_server(vec![
        (200, change.to_string()),
        (200, r#"{"holdings": [], "dry_run": true}"#.into()),
    ])
    .await;
    let env = server_env(&fake);
    let o = run_cli(
        &["meta", "-l", "run42", "-L", "run42-final", "--dry-run"],
        &env,
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        o.out.starts_with(
            "Dry run: would change the metadata of 1 holding(s); nothing was changed.\n"
        ),
        "{}",
        o.out
    );
    assert!(o.out.contains("    new label       : run42-final\n"));
    let body = fake.seen()[0].json();
    assert_eq!(
        (body["dry_run"].clone(), body["new_label"].clone()),
        (true.into(), "run42-final".into())
    );
    let o = run_cli(&["meta", "-l", "nope", "-L", "x", "--dry-run"], &env).await;
    assert_eq!(o.code, exit::NOT_FOUND);
    assert!(o.err.contains("no holding matches"), "{}", o.err);
}

#[tokio::test]
async fn cli_tables_fit_the_terminal_unless_wide() {
    let page =
        serde_json::json!({"holdings": long_holdings(), "total": 2, "limit": 1000, "offset": 0});
    let fake = fake_server(vec![(200, page.to_string())]).await;
    let long = "ice-core-isotopes-2026-campaign-halley-station-final-v2";

    // $COLUMNS, or the width of the terminal standard output is.
    let mut env = server_env(&fake);
    let o = run_cli(&["list", "--utc"], &env.clone().with_stdout_width(Some(70))).await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert_fits(&o.out, 70);
    assert_eq!(
        o.out,
        render::holdings_table(&long_holdings(), Zone::Utc, Some(70))
    );

    env = Env::new(
        [
            ("HOME", "/nonexistent-home".to_owned()),
            ("NLDS_URL", fake.url()),
            ("NLDS_TOKEN", "t".to_owned()),
            ("COLUMNS", "64".to_owned()),
        ],
        "/",
    );
    let o = run_cli(&["list"], &env).await;
    assert!(
        o.out.contains('\u{2026}') && !o.out.contains(long),
        "{}",
        o.out
    );
    let o = run_cli(&["list", "--wide"], &env).await;
    assert!(
        o.out.contains(long) && !o.out.contains('\u{2026}'),
        "{}",
        o.out
    );

    // Not a terminal and no $COLUMNS (a pipe): everything, untruncated.
    let o = run_cli(&["list"], &server_env(&fake)).await;
    assert!(o.out.contains(long), "{}", o.out);
}

#[tokio::test]
async fn cli_whoami_shows_identity_groups_and_token_expiry() {
    // {"sub":"alice","exp":1800000000}
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTgwMDAwMDAwMH0.c2ln";
    let fake = fake_server(vec![
        (
            200,
            r#"{"user":"alice","groups":["climate","cmip"]}"#.into(),
        ),
        (
            200,
            r#"{"user":"alice","groups":["cmip"],"token_expires":"2026-12-31T00:00:00Z"}"#.into(),
        ),
        (200, r#"{"user":"alice","groups":["cmip"]}"#.into()),
    ])
    .await;
    let env = Env::new(
        [
            ("HOME", "/nonexistent-home".to_owned()),
            ("NLDS_URL", fake.url()),
            ("NLDS_TOKEN", jwt.to_owned()),
            ("NLDS_GROUP", "climate".to_owned()),
        ],
        "/",
    );
    let o = run_cli(&["whoami", "--utc"], &env).await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        format!(
            "    user            : alice\n    groups          : climate, cmip\n    group           : climate\n    server          : {}\n    token expires   : 2027-01-15T08:00:00+00:00\n",
            fake.url()
        )
    );
    let o = run_cli(
        &["whoami", "--utc", "-g", "cmip", "--token", "opaque-token"],
        &env,
    )
    .await;
    assert!(
        o.out
            .contains("    token expires   : 2026-12-31T00:00:00+00:00\n"),
        "{}",
        o.out
    );
    let o = run_cli(&["-j", "whoami", "--token", "opaque-token"], &env).await;
    let v: serde_json::Value = serde_json::from_str(o.out.trim()).unwrap();
    assert_eq!(v["user"], "alice");
    assert_eq!(v["groups"], serde_json::json!(["cmip"]));
    assert_eq!(v["token_expires"], serde_json::Value::Null);
}

#[tokio::test]
async fn request_timeouts_exit_7_and_are_not_retried() {
    let fake = fake_server(vec![(STALL, String::new())]).await;
    let env = server_env(&fake);
    let start = std::time::Instant::now();
    let o = run_cli(&["--request-timeout", "300ms", "list"], &env).await;
    assert_eq!(o.code, exit::TIMEOUT, "{}", o.err);
    assert!(
        o.err
            .starts_with("error: the NLDS server did not answer in time"),
        "{}",
        o.err
    );
    assert!(o.err.contains("--request-timeout"), "{}", o.err);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        fake.seen().len(),
        1,
        "a request that timed out is not resent"
    );

    // From the config file, too.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "url = \"{}\"\ntoken = \"t\"\nrequest_timeout = \"200ms\"\n",
            fake.url()
        ),
    )
    .unwrap();
    let env = Env::new([("NLDS_CONFIG", cfg.to_str().unwrap())], "/");
    let o = run_cli(&["-j", "stat"], &env).await;
    assert_eq!(o.code, exit::TIMEOUT, "{}", o.out);
    let v: serde_json::Value = serde_json::from_str(o.out.trim()).unwrap();
    assert_eq!(v["error"]["code"], "unavailable");
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let fake = fake_server(vec![
        (DROP, String::new()),
        (DROP, String::new()),
        (200, r#"{"user":"alice","groups":["climate"]}"#.into()),
    ])
    .await;
    let who = fast_client(&fake.url()).whoami().await.unwrap();
    assert_eq!(who.user, "alice");
    assert_eq!(
        fake.seen().len(),
        3,
        "two dropped connections, then an answer"
    );

    // More drops than attempts: a network error (exit 6), never a usage banner.
    let fake = fake_server(vec![(DROP, String::new())]).await;
    let e = fast_client(&fake.url()).whoami().await.unwrap_err();
    assert!(matches!(e, Error::Transport(_)), "{e:?}");
    assert_eq!(exit::for_error(&e), exit::NETWORK);
    assert_eq!(fake.seen().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// init, renew, config show

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn whoami_body(groups: &[&str]) -> String {
    serde_json::json!({"user": "alice", "groups": groups}).to_string()
}

#[cfg(unix)]
#[tokio::test]
async fn cli_init_writes_a_private_config_and_keeps_what_is_not_given() {
    let fake = fake_server(vec![(200, whoami_body(&["climate", "cmip"]))]).await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap().to_owned();
    let env = Env::new([("HOME", h.as_str())], "/");
    let cfg = home.path().join(".config/nlds/config.toml");

    // First run: the token comes from standard input.
    let o = run_cli_stdin(
        &["init", "-U", &fake.url(), "-g", "climate"],
        &env,
        "\n  tok-from-stdin-1  \n",
    )
    .await;
    assert_eq!(o.code, 0, "out: {}\nerr: {}", o.out, o.err);
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        format!(
            "url = \"{}\"\ntoken = \"tok-from-stdin-1\"\ngroup = \"climate\"\n",
            fake.url()
        )
    );
    assert_eq!(mode(&cfg), 0o600);
    assert_eq!(mode(cfg.parent().unwrap()), 0o700);
    assert_eq!(
        o.out,
        format!(
            "Created {} (mode 0600):\n    url             : {}\n    token           : <hidden, 16 characters>\n    group           : climate\n    insecure        : false  (default)\nChecked with the server: you are alice, in group(s) climate, cmip.\n",
            cfg.display(),
            fake.url()
        )
    );
    assert!(!o.out.contains("tok-from-stdin") && !o.err.contains("tok-from-stdin"));
    assert_eq!(
        fake.seen()[0].header("authorization"),
        Some("Bearer tok-from-stdin-1")
    );
    assert_eq!(fake.seen()[0].target, "/api/v2/whoami");

    // The config now works for every other command.
    let o = run_cli(&["whoami"], &env).await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        o.out.contains("    group           : climate\n"),
        "{}",
        o.out
    );

    // Again, with only a group (and -k): the URL and token stay (the Python client resets the URL).
    let o = run_cli(&["init", "-g", "cmip", "-k", "-u", "alice"], &env).await;
    assert_eq!(o.code, 0, "{}", o.err);
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert_eq!(
        text,
        format!(
            "url = \"{}\"\ntoken = \"tok-from-stdin-1\"\ngroup = \"cmip\"\nuser = \"alice\"\ninsecure = true\n",
            fake.url()
        )
    );
    assert!(o.out.starts_with("Updated "), "{}", o.out);
    assert!(
        o.out
            .contains(&format!("    url             : {}  (kept)\n", fake.url())),
        "{}",
        o.out
    );
    assert!(
        o.out.contains("<hidden, 16 characters>  (kept)"),
        "{}",
        o.out
    );
    let o = run_cli(&["init", "--no-insecure"], &env).await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        std::fs::read_to_string(&cfg)
            .unwrap()
            .contains("insecure = false\n")
    );

    // A group the server says you are not in: nothing is written (exit 4).
    let before = std::fs::read_to_string(&cfg).unwrap();
    let o = run_cli(&["init", "-g", "strangers"], &env).await;
    assert_eq!(o.code, exit::CONFIG, "{}", o.err);
    assert!(
        o.err.contains("are not in group \"strangers\"") && o.err.contains("Nothing was written"),
        "{}",
        o.err
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), before);

    // No URL anywhere: a usage error that says what to give.
    let empty_home = tempfile::tempdir().unwrap();
    let env2 = Env::new([("HOME", empty_home.path().to_str().unwrap())], "/");
    let o = run_cli_stdin(&["init"], &env2, "tok\n").await;
    assert_eq!(o.code, exit::USAGE);
    assert!(o.err.contains("nlds init --url"), "{}", o.err);
}

#[cfg(unix)]
#[tokio::test]
async fn cli_init_refused_token_writes_nothing_and_no_verify_writes_anyway() {
    let fake = fake_server(vec![(
        401,
        err_body("unauthorized", "invalid or expired token"),
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sub/dir/nlds.toml");
    let env = Env::new(
        [
            ("NLDS_CONFIG", cfg.to_str().unwrap().to_owned()),
            ("NLDS_TOKEN", "env-token-123".to_owned()),
        ],
        "/",
    );
    let o = run_cli(&["init", "--url", &fake.url()], &env).await;
    assert_eq!(o.code, exit::AUTH, "{}", o.err);
    assert!(o.err.contains("did not accept these settings"), "{}", o.err);
    assert!(o.err.contains("--no-verify"), "{}", o.err);
    assert!(!cfg.exists(), "nothing written after a refusal");
    assert_eq!(
        fake.seen()[0].header("authorization"),
        Some("Bearer env-token-123")
    );

    let o = run_cli(&["-j", "init", "--url", &fake.url(), "--no-verify"], &env).await;
    assert_eq!(o.code, 0, "{}", o.out);
    assert_eq!(fake.seen().len(), 1, "--no-verify sends nothing");
    assert_eq!(mode(&cfg), 0o600);
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        format!("url = \"{}\"\ntoken = \"env-token-123\"\n", fake.url())
    );
    let v: serde_json::Value = serde_json::from_str(o.out.trim()).unwrap();
    assert_eq!(v["created"], true);
    assert_eq!(v["written"], serde_json::json!(["url", "token"]));
    assert_eq!(v["settings"]["token"], "<hidden, 13 characters>");
    assert_eq!(v["whoami"], serde_json::Value::Null);
    assert!(!o.out.contains("env-token-123"));
}

#[cfg(unix)]
#[tokio::test]
async fn cli_renew_replaces_the_stored_token() {
    let fake = fake_server(vec![
        (200, whoami_body(&["climate"])),
        (401, err_body("unauthorized", "invalid or expired token")),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nlds.toml");
    let tf = dir.path().join("token");
    std::fs::write(
        &cfg,
        format!(
            "# my nlds\nurl = \"{}\"\ntoken_file = \"token\"\n",
            fake.url()
        ),
    )
    .unwrap();
    std::fs::write(&tf, "old-token\n").unwrap();
    let env = Env::new([("NLDS_CONFIG", cfg.to_str().unwrap())], "/");
    let o = run_cli_stdin(&["renew"], &env, "new-token-456\n").await;
    assert_eq!(o.code, 0, "out: {}\nerr: {}", o.out, o.err);
    assert_eq!(std::fs::read_to_string(&tf).unwrap(), "new-token-456\n");
    assert_eq!(mode(&tf), 0o600);
    assert!(
        std::fs::read_to_string(&cfg)
            .unwrap()
            .starts_with("# my nlds\n"),
        "the config file keeps its comments"
    );
    assert!(
        o.out.starts_with(&format!(
            "Renewed the token in {} (mode 0600).\n",
            tf.display()
        )),
        "{}",
        o.out
    );
    assert!(o.out.contains("you are alice"), "{}", o.out);
    assert_eq!(
        fake.seen()[0].header("authorization"),
        Some("Bearer new-token-456")
    );

    // A token the server refuses is not stored.
    let o = run_cli(&["renew", "--token", "bad-token-789"], &env).await;
    assert_eq!(o.code, exit::AUTH, "{}", o.err);
    assert_eq!(std::fs::read_to_string(&tf).unwrap(), "new-token-456\n");

    // Nothing on standard input.
    let o = run_cli(&["renew"], &env).await;
    assert_eq!(o.code, exit::USAGE);
    assert!(o.err.contains("no token given"), "{}", o.err);

    // Not configured at all: the first-run message.
    let home = tempfile::tempdir().unwrap();
    let env = Env::new([("HOME", home.path().to_str().unwrap())], "/");
    let o = run_cli_stdin(&["renew"], &env, "tok\n").await;
    assert_eq!(o.code, exit::CONFIG);
    assert!(o.err.starts_with("nlds is not configured yet"), "{}", o.err);
}

#[tokio::test]
async fn cli_config_show_names_every_source_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nlds.toml");
    std::fs::write(
        &cfg,
        "url = \"https://file.example\"\ntoken = \"file-secret-token\"\ngroup = \"g-file\"\ninsecure = true\n",
    )
    .unwrap();
    let env = Env::new(
        [
            ("NLDS_CONFIG", cfg.to_str().unwrap()),
            ("NLDS_URL", "https://env.example"),
            ("NLDS_CONNECT_TIMEOUT", "3s"),
        ],
        "/",
    );
    let o = run_cli(
        &["config", "show", "-g", "g-flag", "--request-timeout", "45s"],
        &env,
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(!o.out.contains("file-secret-token") && !o.err.contains("file-secret-token"));
    let line = |name: &str| {
        o.out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{}", o.out))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let c = cfg.display().to_string();
    assert_eq!(
        line("config file"),
        format!("config file {c} environment variable NLDS_CONFIG (found)")
    );
    assert_eq!(
        line("url"),
        "url https://env.example environment variable NLDS_URL"
    );
    assert_eq!(
        line("token"),
        format!("token <hidden, 17 characters> config file {c}")
    );
    assert_eq!(line("group"), "group g-flag option --group");
    assert_eq!(line("user"), "user (not set) -");
    assert_eq!(line("insecure"), format!("insecure true config file {c}"));
    assert_eq!(
        line("connect timeout"),
        "connect timeout 3s environment variable NLDS_CONNECT_TIMEOUT"
    );
    assert_eq!(
        line("request timeout"),
        "request timeout 45s option --request-timeout"
    );

    let o = run_cli(&["-j", "config", "show"], &env).await;
    let v: serde_json::Value = serde_json::from_str(o.out.trim()).unwrap();
    assert_eq!(v["token"]["value"], "<hidden, 17 characters>");
    assert_eq!(v["url"]["source"], "environment variable NLDS_URL");
    assert_eq!(v["group"]["value"], "g-file");
    assert_eq!(v["config_file"]["found"], true);
    assert!(!o.out.contains("file-secret-token"));

    // Nothing configured: still shows everything, says how to start, exits 0.
    let home = tempfile::tempdir().unwrap();
    let env = Env::new([("HOME", home.path().to_str().unwrap())], "/");
    let o = run_cli(&["config", "show"], &env).await;
    assert_eq!(o.code, 0);
    assert!(o.out.contains("(not found)"), "{}", o.out);
    assert!(o.err.starts_with("nlds is not configured yet"), "{}", o.err);
}

#[tokio::test]
async fn cli_put_dry_run_checks_what_the_holding_already_has() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("run (42)");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.nc"), b"a").unwrap();
    std::fs::write(root.join("b.nc"), b"b").unwrap();
    let r = root.to_str().unwrap().to_owned();
    let plan = serde_json::json!({
        "holding": sample_holdings()[0], "new_label": null, "group": "climate", "paths": [r],
    });
    let mut stored = sample_files()[1].clone();
    stored.path = format!("{r}/a.nc");
    let some = serde_json::json!({"files": [stored], "total": 1, "limit": 10, "offset": 0});
    let all = serde_json::json!({"files": [], "total": 3, "limit": 10, "offset": 0});
    let fake = fake_server(vec![
        (200, plan.to_string()),
        (200, some.to_string()),
        (200, plan.to_string()),
        (200, all.to_string()),
    ])
    .await;
    let env = server_env(&fake);
    let o = run_cli(&["put", &r, "-l", "run42", "--dry-run"], &env).await;
    assert_eq!(o.code, 0, "out: {}\nerr: {}", o.out, o.err);
    assert!(
        o.out.contains(
            "    already stored  : 1 of these entries are already in holding 7: the put would fail for them\n"
        ),
        "{}",
        o.out
    );
    assert!(
        o.out
            .contains(&format!("\nAlready in holding 7 (1):\n    {r}/a.nc\n")),
        "{}",
        o.out
    );
    let seen = fake.seen();
    assert_eq!(seen[1].method, "GET");
    let (path, query) = seen[1].target.split_once('?').unwrap();
    assert_eq!(path, "/api/v2/files");
    let pairs: Vec<(String, String)> = query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), percent_decode(v))
        })
        .collect();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("holding_id"), Some("7"));
    assert_eq!(get("regex"), Some("true"));
    assert_eq!(get("group"), Some("climate"));
    let escaped = r
        .replace('(', r"\(")
        .replace(')', r"\)")
        .replace('.', r"\.");
    assert_eq!(
        get("path"),
        Some(format!("^(?:{escaped}(?:/.*)?)$").as_str())
    );

    // Everything is already there: nothing would be put (exit 5).
    let o = run_cli(&["put", &r, "-l", "run42", "--dry-run"], &env).await;
    assert_eq!(o.code, exit::NOT_FOUND, "{}", o.out);
    assert!(
        o.err.contains("holding 7 already has every entry"),
        "{}",
        o.err
    );
}

/// Decodes a query-string value (`+` and `%XX`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

// OAuth2 login against the real provider.
#[path = "cli/oauth.rs"]
mod oauth;

#[path = "cli/filelist.rs"]
mod filelist;

#[test]
fn put_and_putlist_name_a_tenancy_only_when_asked() {
    let env = env_in("/data");
    for args in [
        &["put", "--tenancy", "b", "f.nc"][..],
        &["putlist", "--tenancy", "b", "-"][..],
    ] {
        let Plan::Put(req, ..) = plan_with_stdin(args, &env, "f.nc\n").unwrap() else {
            panic!("{args:?}: not a put")
        };
        assert_eq!(req.tenancy.as_deref(), Some("b"), "{args:?}");
        assert_eq!(req.paths, ["/data/f.nc"], "{args:?}");
    }
    let Plan::Put(req, ..) = plan(&["put", "f.nc"], &env).unwrap() else {
        panic!("not a put")
    };
    assert_eq!(req.tenancy, None);
}

/// Ctrl-C while `--wait` waits stops the waiting, not the transaction: the command says which
/// transaction goes on and how to follow it, and exits 130.
#[tokio::test]
async fn ctrl_c_while_waiting_names_the_transaction_and_how_to_follow_it() {
    let tid = uuid(0x45);
    // Accepted, then the live status never answers: the command waits.
    let fake = fake_server(vec![
        (202, accepted_body(tid, "put")),
        (STALL, String::new()),
    ])
    .await;
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_nlds"))
        .args(["put", &src.path().to_string_lossy(), "--wait"])
        .env_clear()
        .env("HOME", home.path())
        .env("NLDS_URL", fake.url())
        .env("NLDS_TOKEN", "tok-123")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the command is waiting (it asked for the live status).
    let start = std::time::Instant::now();
    while !fake.seen().iter().any(|s| s.target.ends_with("/events")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never started waiting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "interrupted: transaction {tid} goes on without this command; follow it with `nlds wait {tid}`"
        )),
        "{stderr}"
    );
}

/// One rule for "nothing matched": `list` and `find` exit 5 when the query names something that
/// matches nothing, in every output mode; a plain listing that is empty exits 0.
#[tokio::test]
async fn nothing_matched_exits_5_for_list_and_find_alike() {
    let no_files = serde_json::json!({"files": [], "total": 0, "limit": 1000, "offset": 0});
    let no_holdings = serde_json::json!({"holdings": [], "total": 0, "limit": 1000, "offset": 0});
    let cases: Vec<(Vec<&str>, &serde_json::Value, u8, &str)> = vec![
        (
            vec!["find", "-x", "-p", "^/nowhere/"],
            &no_files,
            exit::NOT_FOUND,
            "no file matches pattern ^/nowhere/",
        ),
        (
            vec!["find", "-1", "-x", "-p", "^/nowhere/"],
            &no_files,
            exit::NOT_FOUND,
            "no file matches pattern ^/nowhere/",
        ),
        (
            vec!["-j", "find", "-x", "-p", "^/nowhere/"],
            &no_files,
            exit::NOT_FOUND,
            "",
        ),
        (
            vec!["find", "-p", "/nowhere/f.nc"],
            &no_files,
            exit::NOT_FOUND,
            "no file /nowhere/f.nc found",
        ),
        (vec!["find"], &no_files, exit::OK, "No files found."),
        (
            vec!["list", "-t", "project:none"],
            &no_holdings,
            exit::NOT_FOUND,
            "no holding matches tag project:none",
        ),
        (
            vec!["-j", "list", "-t", "project:none"],
            &no_holdings,
            exit::NOT_FOUND,
            "",
        ),
        (vec!["list"], &no_holdings, exit::OK, "No holdings found."),
        (vec!["-j", "list"], &no_holdings, exit::OK, ""),
    ];
    for (args, body, code, said) in cases {
        let fake = fake_server(vec![(200, body.to_string())]).await;
        let o = run_cli(&args, &server_env(&fake)).await;
        assert_eq!(o.code, code, "{args:?}: {}", o.err);
        assert!(o.err.contains(said), "{args:?}: {}", o.err);
        if args[0] == "-j" {
            let page: serde_json::Value = serde_json::from_str(o.out.trim()).unwrap();
            assert_eq!(&page, body, "{args:?}: --json prints the page all the same");
        }
    }
}
