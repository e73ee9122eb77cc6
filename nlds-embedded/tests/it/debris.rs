//! Nothing left behind: what a killed process leaves (a `.part` file of an overwriting get in the
//! user's restore target, a recall spool, a partial aggregate) is removed when the role starts
//! again, and the work still completes; a get that replaces nothing writes unnamed files, so a
//! kill leaves nothing in the target at all. The multipart uploads of a killed transfer-put:
//! `distributed.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nlds_core::State;
use nlds_embedded::{Embedded, EmbeddedOptions};
use nlds_hooks::{control, points};
use nlds_server::ServerSettings;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::distributed::{Services, TOKEN, spawn_role, start_roles, start_server};
use crate::helpers::{Api, ServerProcess, restored, shape, temp};

/// Files under `dir` whose name marks them as a restore's temporary (`.<name>.nlds-*`).
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".nlds-"))
        .map(|e| e.path().to_owned())
        .collect()
}

/// Waits (at most `limit`) until `gone` holds.
async fn until(what: &str, limit: Duration, mut gone: impl FnMut() -> bool) {
    let start = Instant::now();
    while !gone() {
        assert!(start.elapsed() < limit, "{what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the transfer-get to pause while writing a file; returns the path the pause names:
/// the `.part` file being written (`named`: a get that may overwrite), or else the destination,
/// which has no name yet.
async fn paused_download(pause: &Path, named: bool) -> PathBuf {
    let dir = pause.to_owned();
    let part = tokio::task::spawn_blocking(move || {
        control::reached(&dir, points::GET_TEMP_WRITING, Duration::from_secs(120))
    })
    .await
    .unwrap()
    .expect("transfer-get never started writing a file");
    if named {
        assert!(part.to_string_lossy().ends_with(".part"), "{part:?}");
        assert!(part.is_file(), "{part:?} is being written");
    } else {
        assert!(!part.to_string_lossy().contains(".nlds-"), "{part:?}");
        assert!(!part.exists(), "{part:?} has no name while it is written");
        assert_eq!(
            temporaries(part.parent().unwrap()),
            Vec::<PathBuf>::new(),
            "no temporary name in the target"
        );
    }
    part
}

/// Distributed: transfer-get (the real binary) is killed (-9) while it writes a file of a get
/// that may overwrite (so the file is written under a temporary name, recorded in the batch's
/// journal); its `.part` file stays in the target. Started again, it removes it (its journal
/// named it) and the get completes, byte for byte, with no temporary left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_transfer_get_mid_download_leaves_no_part_file() {
    let Some(svc) = Services::new().await else {
        return;
    };
    let settings = svc.settings();
    let dir = temp();
    let config = dir.path().join("workers.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
    let pause = temp();
    let stop = CancellationToken::new();
    let others: Vec<_> = nlds_workers::run::all_roles()
        .into_iter()
        .filter(|r| *r != nlds_core::Role::TransferGet)
        .collect();
    start_roles(&settings, others, stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let api = Api::new(&url, TOKEN);
    let src = temp();
    crate::helpers::make_tree(src.path(), 30, 2);
    let put = api
        .put_and_wait(json!({"paths": [src.path()], "label": "debris"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");

    control::arm(pause.path(), points::GET_TEMP_WRITING).unwrap();
    let mut child = spawn_role(&config, "transfer-get", Some(pause.path()));
    let target = temp();
    let (s, r) = api
        .post(
            "/api/v2/get",
            &json!({"paths": [src.path()], "label": "debris", "target": target.path(),
                    "overwrite": true}),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    let tid = r["transaction_id"].as_str().unwrap().to_owned();
    let part = paused_download(pause.path(), true).await;
    child.kill().unwrap(); // SIGKILL, mid-download
    child.wait().unwrap();
    assert!(part.is_file(), "the killed process's {part:?} is there");

    let mut child = spawn_role(&config, "transfer-get", None);
    let t = api.wait(&tid, Duration::from_secs(300)).await;
    child.kill().ok();
    child.wait().ok();
    assert_eq!(t.state, State::Complete, "{t:#?}");
    assert!(!part.exists(), "{part:?} left behind");
    assert_eq!(temporaries(target.path()), Vec::<PathBuf>::new());
    assert_eq!(
        shape(&restored(target.path(), src.path())),
        shape(src.path())
    );
    stop.cancel();
}

fn token_of(data: &Path) -> String {
    let tokens = std::fs::read_to_string(data.join("tokens.toml")).unwrap();
    tokens
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .and_then(|t| t.strip_suffix('"'))
        .unwrap()
        .to_owned()
}

/// An embedded server on `data` whose workers pause at the points armed in `pause`, and its API
/// as the data directory's user.
async fn with_pause_points(data: &Path, logs: &Path, pause: &Path) -> (ServerProcess, Api) {
    let server = ServerProcess::start_with_env(
        data,
        logs,
        None,
        "warn",
        &[(nlds_hooks::ENV, pause.as_os_str())],
    )
    .await;
    let api = Api::new(&server.url, &token_of(data));
    (server, api)
}

/// Embedded: the whole process is killed (-9) while transfer-get writes a file of a get that
/// replaces nothing, so the file has no name yet: nothing of it is in the target, before or after
/// the kill; started again on the same data directory, the get run again completes. With
/// `overwrite` (a named temporary), the restarted process removes the `.part` file it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_embedded_process_mid_download_leaves_no_part_file() {
    let (data, logs) = (temp(), temp());
    // A pause directory per kill: a killed process leaves its pause marked as reached.
    let pauses = [temp(), temp()];
    let (server, api) = with_pause_points(data.path(), logs.path(), pauses[0].path()).await;
    let src = temp();
    crate::helpers::make_tree(src.path(), 20, 1);
    let body = json!({"paths": [src.path()], "label": "debris"});
    let put = api.put_and_wait(body).await;
    assert_eq!(put.state, State::Complete, "{put:#?}");

    let mut running = Some((server, api));
    for (overwrite, pause) in [false, true].into_iter().zip(&pauses) {
        let (server, api) = match running.take() {
            Some(first) => first,
            None => with_pause_points(data.path(), logs.path(), pause.path()).await,
        };
        control::arm(pause.path(), points::GET_TEMP_WRITING).unwrap();
        let target = temp();
        let get = json!({"paths": [src.path()], "label": "debris", "target": target.path(),
                         "overwrite": overwrite});
        let (s, r) = api.post("/api/v2/get", &get).await;
        assert_eq!(s, 202, "{r}");
        let part = paused_download(pause.path(), overwrite).await;
        drop(server); // SIGKILL
        if overwrite {
            assert!(part.is_file(), "the killed process's {part:?} is there");
        } else {
            assert!(!part.exists(), "{part:?}");
            assert_eq!(temporaries(target.path()), Vec::<PathBuf>::new());
        }

        let again = ServerProcess::start(data.path(), logs.path(), None, "warn").await;
        let p = part.clone();
        if overwrite {
            until(
                &format!("{part:?} still there"),
                Duration::from_secs(60),
                || !p.exists(),
            )
            .await;
        }
        let a = Api::new(&again.url, &token_of(data.path()));
        let done = a.get_and_wait(get).await;
        assert_eq!(done.state, State::Complete, "{done:#?}");
        assert_eq!(temporaries(target.path()), Vec::<PathBuf>::new());
        assert_eq!(
            shape(&restored(target.path(), src.path())),
            shape(src.path())
        );
        again.stop();
    }
}

/// A file that appears at a get's destination while the get downloads it (another get of the
/// same file into the same place got there first): the same content is accepted, the get
/// completes and leaves no temporary; different content is a conflict naming the file, and the
/// file that appeared is kept as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_appears_while_it_downloads_is_kept_and_compared() {
    let (data, logs, pause) = (temp(), temp(), temp());
    let (server, api) = with_pause_points(data.path(), logs.path(), pause.path()).await;
    let src = temp();
    let file = src.path().join("raced.bin");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let put = api
        .put_and_wait(json!({"paths": [&file], "label": "raced"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");

    for (appears, accepted) in [(content.clone(), true), (b"someone else's".to_vec(), false)] {
        let target = temp();
        control::arm(pause.path(), points::GET_BEFORE_RENAME).unwrap();
        let get = json!({"paths": [&file], "label": "raced", "target": target.path()});
        let (s, r) = api.post("/api/v2/get", &get).await;
        assert_eq!(s, 202, "{r}");
        let tid = r["transaction_id"].as_str().unwrap().to_owned();
        let dir = pause.path().to_owned();
        let to = tokio::task::spawn_blocking(move || {
            control::reached(&dir, points::GET_BEFORE_RENAME, Duration::from_secs(120))
        })
        .await
        .unwrap()
        .expect("transfer-get never got to moving the file into place");
        assert_eq!(to, restored(target.path(), &file), "the destination");
        std::fs::write(&to, &appears).unwrap();
        control::release(pause.path(), points::GET_BEFORE_RENAME).unwrap();

        let t = api.wait(&tid, Duration::from_secs(120)).await;
        assert_eq!(temporaries(target.path()), Vec::<PathBuf>::new());
        assert_eq!(
            std::fs::read(&to).unwrap(),
            appears,
            "what appeared is kept"
        );
        let failed: Vec<_> = t.failed_files().collect();
        if accepted {
            assert_eq!(t.state, State::Complete, "{t:#?}");
            assert!(failed.is_empty(), "{failed:#?}");
        } else {
            assert_ne!(t.state, State::Complete, "{t:#?}");
            assert_eq!(failed.len(), 1, "{t:#?}");
            assert!(
                failed[0].reason.contains("exists and differs")
                    && failed[0].reason.contains(&*to.to_string_lossy()),
                "the reason names the file and the conflict: {:?}",
                failed[0].reason
            );
        }
    }
    server.stop();
}

/// What killed archive-put and archive-get processes leave, made as a crash leaves it (a partial
/// aggregate beside the aggregates on the `dir` store, a recall spool of a process that no
/// longer holds its lock) before the embedded server starts: both are gone once it runs, the
/// spool is under the data directory (not the system's temporary directory), and a put and an
/// archive round still complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_aggregates_and_dead_spools_are_removed_at_start() {
    let data = temp();
    let partial = data
        .path()
        .join("cold/tape/h1/a1.tar.~tmp.0123456789abcdef");
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, vec![7u8; 1 << 20]).unwrap();
    let spool = data
        .path()
        .join("work/spool/0123456789abcdef0123456789abcdef");
    let member = spool.join("nlds-recall-1-0123/0");
    std::fs::create_dir_all(member.parent().unwrap()).unwrap();
    std::fs::write(&member, vec![7u8; 1 << 20]).unwrap();

    let mut settings = ServerSettings::default();
    settings.workers.archive.interval_secs = 0;
    // One archive-put here: any partial aggregate is a dead writer's.
    settings.workers.archive.stale_partial_secs = 0;
    let e = Embedded::start(EmbeddedOptions {
        data_dir: data.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap();
    let (p, s) = (partial.clone(), spool.clone());
    until("debris still there", Duration::from_secs(60), || {
        !p.exists() && !s.exists()
    })
    .await;
    // archive-get works in a spool of its own, locked, under the data directory.
    let spools: Vec<_> = std::fs::read_dir(data.path().join("work/spool"))
        .unwrap()
        .collect();
    assert_eq!(spools.len(), 1, "{spools:?}");

    let api = Api::new(&e.url, &e.token);
    let src = temp();
    crate::helpers::make_tree(src.path(), 20, 0);
    let put = api
        .put_and_wait(json!({"paths": [src.path()], "label": "after"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    let (s, b) = api.post("/api/v2/admin/archive", &json!({})).await;
    assert!(s == 200 || s == 202, "{s}: {b}");
    let start = Instant::now();
    loop {
        let (_, page) = api.get("/api/v2/files?label=after&limit=1000").await;
        let files = page["files"].as_array().unwrap();
        let cold = files.iter().filter(|f| f["kind"] == "file").all(|f| {
            f["locations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["tier"] == "cold")
        });
        if !files.is_empty() && cold {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not archived: {page}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let tmp: Vec<_> = walkdir::WalkDir::new(data.path().join("cold"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".~tmp."))
        .map(|e| e.path().to_owned())
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    e.stop().await.unwrap();
}
