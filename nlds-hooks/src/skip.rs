//! What a test does when something it needs is missing (a service's address, a tool, root):
//! it fails, unless skipping was asked for.
//!
//! - With `CI` set the test always fails: CI must test against the real thing.
//! - Otherwise it fails too, unless `NLDS_TEST_ALLOW_SKIP=1`: then it says `SKIPPED` on its
//!   standard error, appends one line `<test>\t<what is missing>` to the file named by
//!   `NLDS_TEST_SKIP_LOG` (scripts/test.sh sets it and reports the skipped tests in its summary)
//!   and the caller returns without testing anything.
//!
//! `scripts/services.sh` starts every service, so `scripts/services.sh && scripts/test.sh` skips
//! nothing; skipping is for a developer who knowingly runs part of the suite without them.

use std::io::Write;

/// The variable that allows skipping (value `1`).
pub const ALLOW: &str = "NLDS_TEST_ALLOW_SKIP";
/// The variable naming the file skipped tests are appended to.
pub const LOG: &str = "NLDS_TEST_SKIP_LOG";

/// Whether a test whose `missing` thing is missing may be skipped; panics (failing the test)
/// when not. `test` names the test (empty: the name of the current thread, which the standard
/// test harness names after the test); `hint` says how to provide what is missing.
#[must_use = "skip when true, i.e. return from the test without testing"]
pub fn missing(test: &str, missing: &str, hint: &str) -> bool {
    let name = if test.is_empty() {
        std::thread::current()
            .name()
            .unwrap_or("(unnamed test)")
            .to_owned()
    } else {
        test.to_owned()
    };
    if std::env::var_os("CI").is_some() {
        panic!("{name}: {missing}; CI must run this test for real ({hint})");
    }
    if std::env::var(ALLOW).as_deref() != Ok("1") {
        panic!("{name}: {missing} ({hint}); to skip the tests that need it instead, set {ALLOW}=1");
    }
    eprintln!("\n!!!!!!!! SKIPPED {name}: {missing} ({hint}) !!!!!!!!\n");
    if let Some(path) = std::env::var_os(LOG).filter(|p| !p.is_empty()) {
        let line = format!("{name}\t{missing}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!(
                "{name}: cannot record the skip in {}: {e}",
                std::path::Path::new(&path).display()
            );
        }
    }
    true
}

/// The value of the environment variable `var` (a service's address), if set and not empty;
/// else `None` when [`missing`] allows the skip (it panics when not).
pub fn service(test: &str, var: &str, hint: &str) -> Option<String> {
    match std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
        Some(v) => Some(v),
        None => {
            let _ = missing(test, &format!("{var} is not set"), hint);
            None
        }
    }
}
