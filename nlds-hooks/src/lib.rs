//! Pause points: let a test stop the API or a worker at an exact point of its work (on a user's
//! path, or between two steps of accepting a request), so a race (a symbolic link swapped in
//! between two steps) or a crash at that point is made deterministic, across processes.
//!
//! Off unless the process was started with `NLDS_TEST_PAUSE_DIR` set to a directory (read once).
//! Only whoever starts the worker sets its environment, so a user of the service cannot arm one;
//! when the variable is unset, [`pause`] is one load of a `OnceLock` and returns.
//!
//! The protocol, all in that directory:
//! 1. the test creates `<point>.arm` (empty);
//! 2. the first worker to reach `point` renames it to `<point>.taken` (so one pass pauses, even
//!    with several workers), writes `<point>.reached` holding `context` (the user path concerned,
//!    e.g. the temporary file being written), and waits;
//! 3. the test reads `<point>.reached`, does its worst, and creates `<point>.go`;
//! 4. the worker removes `<point>.go`, `<point>.reached` and `<point>.taken`, and carries on.
//!
//! A worker waits at most [`MAX_WAIT`] for `go`, then carries on (a test that died must not
//! wedge a worker). The points are the `&'static str`s in [`points`].

pub mod skip;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable that names the pause directory.
pub const ENV: &str = "NLDS_TEST_PAUSE_DIR";
/// How long a paused worker waits for `go`.
pub const MAX_WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(5);

/// Every pause point, named `<role>.<what is about to happen>`.
pub mod points {
    /// indexer: a put path was resolved and checked; its directory is about to be listed and
    /// descended into (context: the path).
    pub const INDEX_BEFORE_WALK: &str = "index.before-walk";
    /// transfer-put: the file's permissions were checked (old code) / its parent was resolved
    /// (new code); the file is about to be opened for reading (context: the path).
    pub const PUT_BEFORE_OPEN: &str = "put.before-open";
    /// transfer-put: the first part of a multipart upload is stored; the upload is neither
    /// completed nor aborted (context: the object key).
    pub const PUT_PART_UPLOADED: &str = "put.part-uploaded";
    /// transfer-get: a directory of the restore was just created, nothing is in it yet
    /// (context: the directory).
    pub const GET_DIR_CREATED: &str = "get.dir-created";
    /// transfer-get: the temporary file exists and its content is being written (context: the
    /// temporary file).
    pub const GET_TEMP_WRITING: &str = "get.temp-writing";
    /// transfer-get: the content is written; owner, mode and times are about to be applied
    /// (context: the temporary file).
    pub const GET_BEFORE_OWNER: &str = "get.before-owner";
    /// transfer-get: the file is about to be moved into place (context: the destination).
    pub const GET_BEFORE_RENAME: &str = "get.before-rename";
    /// transfer-get: a symbolic link is about to be created (context: where).
    pub const GET_BEFORE_LINK: &str = "get.before-link";
    /// transfer-get: a restored directory's owner, mode and times are about to be applied
    /// (context: the directory).
    pub const GET_BEFORE_DIR_FINISH: &str = "get.before-dir-finish";
    /// transfer-get: a temporary file is about to be removed after a failure (context: the
    /// temporary file).
    pub const GET_BEFORE_UNLINK: &str = "get.before-unlink";
    /// catalogue: a put batch's objects are uploaded; its files are about to be catalogued
    /// (context: the transaction id).
    pub const CATALOG_BEFORE_PUT: &str = "catalog.before-put";
    /// transfer-del: a batch of objects is about to be deleted (context: the first object's
    /// key), e.g. the warm copies an eviction dropped from the catalogue.
    pub const DEL_BEFORE_DELETE: &str = "del.before-delete";
    /// the outbox relay: a staged message (committed with the change that implies it) is about
    /// to be published (context: its routing key).
    pub const OUTBOX_BEFORE_PUBLISH: &str = "outbox.before-publish";
    /// API: a put or get passed every check; the catalogue is about to accept it (context: the
    /// transaction id).
    pub const API_BEFORE_ACCEPT: &str = "api.before-accept";
    /// API: the catalogue accepted the put or get (its first messages are staged); the monitor is
    /// about to record it (context: the transaction id).
    pub const API_BEFORE_RECORD: &str = "api.before-record";
    /// API: the put or get is accepted and recorded; the 202 is about to be sent (context: the
    /// transaction id).
    pub const API_BEFORE_ANSWER: &str = "api.before-answer";

    /// Every point, for tests that go through them all.
    pub const ALL: &[&str] = &[
        INDEX_BEFORE_WALK,
        PUT_BEFORE_OPEN,
        PUT_PART_UPLOADED,
        GET_DIR_CREATED,
        GET_TEMP_WRITING,
        GET_BEFORE_OWNER,
        GET_BEFORE_RENAME,
        GET_BEFORE_LINK,
        GET_BEFORE_DIR_FINISH,
        GET_BEFORE_UNLINK,
        CATALOG_BEFORE_PUT,
        DEL_BEFORE_DELETE,
        OUTBOX_BEFORE_PUBLISH,
        API_BEFORE_ACCEPT,
        API_BEFORE_RECORD,
        API_BEFORE_ANSWER,
    ];
}

fn dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| std::env::var_os(ENV).map(PathBuf::from))
        .as_deref()
}

/// Pauses here if a test armed `point` (blocking: call it from blocking code).
pub fn pause(point: &'static str, context: &Path) {
    if let Some(dir) = dir() {
        pause_in(dir, point, context, MAX_WAIT);
    }
}

/// [`pause`] with the pause directory and the longest wait given.
fn pause_in(dir: &Path, point: &str, context: &Path, max_wait: Duration) {
    let file = |ext: &str| dir.join(format!("{point}.{ext}"));
    if std::fs::rename(file("arm"), file("taken")).is_err() {
        return; // not armed, or another worker took it
    }
    let reached = file("reached");
    let tmp = file("reached.tmp");
    if std::fs::write(&tmp, context.as_os_str().as_encoded_bytes())
        .and_then(|()| std::fs::rename(&tmp, &reached))
        .is_err()
    {
        return;
    }
    tracing::warn!(point, context = %context.display(), "paused at a test pause point");
    let go = file("go");
    let start = Instant::now();
    while !go.exists() && start.elapsed() < max_wait {
        std::thread::sleep(POLL);
    }
    for f in [go, reached, file("taken")] {
        let _ = std::fs::remove_file(f);
    }
}

/// [`pause`] from async code (the wait runs on the blocking pool).
pub async fn pause_async(point: &'static str, context: &Path) {
    if dir().is_none() {
        return;
    }
    let context = context.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || pause(point, &context)).await;
}

/// The test's side of the protocol.
pub mod control {
    use super::*;

    /// Arms `point` in `dir`: the next worker to reach it pauses.
    pub fn arm(dir: &Path, point: &str) -> std::io::Result<()> {
        std::fs::write(dir.join(format!("{point}.arm")), b"")
    }

    /// Waits up to `timeout` for a worker to pause at `point`; returns its context.
    pub fn reached(dir: &Path, point: &str, timeout: Duration) -> Option<PathBuf> {
        let at = dir.join(format!("{point}.reached"));
        let start = Instant::now();
        loop {
            if let Ok(bytes) = std::fs::read(&at) {
                use std::os::unix::ffi::OsStringExt;
                return Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)));
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Lets the worker paused at `point` carry on.
    pub fn release(dir: &Path, point: &str) -> std::io::Result<()> {
        std::fs::write(dir.join(format!("{point}.go")), b"")
    }
}

#[cfg(test)]
mod tests {
    use super::control::*;
    use super::*;

    #[test]
    fn the_protocol_pauses_one_pass_and_releases_it() {
        let d = tempfile::tempdir().unwrap();
        let point = "unit.point";
        arm(d.path(), point).unwrap();
        let worker = {
            let dir = d.path().to_path_buf();
            std::thread::spawn(move || {
                let t = Instant::now();
                pause_in(&dir, point, Path::new("/ctx"), Duration::from_secs(30));
                t.elapsed()
            })
        };
        let ctx = reached(d.path(), point, Duration::from_secs(5)).unwrap();
        assert_eq!(ctx, PathBuf::from("/ctx"));
        assert!(!d.path().join("unit.point.arm").exists(), "taken once");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!worker.is_finished(), "the worker waits for go");
        release(d.path(), point).unwrap();
        let waited = worker.join().unwrap();
        assert!(waited >= Duration::from_millis(50));
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "nothing left"
        );
        // Not armed any more: the next pass goes straight through.
        let t = Instant::now();
        pause_in(d.path(), point, Path::new("/ctx"), Duration::from_secs(30));
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(reached(d.path(), point, Duration::from_millis(20)).is_none());
    }

    #[test]
    fn a_test_that_never_releases_does_not_wedge_the_worker() {
        let d = tempfile::tempdir().unwrap();
        arm(d.path(), "unit.stuck").unwrap();
        pause_in(
            d.path(),
            "unit.stuck",
            Path::new("/ctx"),
            Duration::from_millis(30),
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn every_point_is_listed_once() {
        let mut all = points::ALL.to_vec();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), points::ALL.len());
    }
}
