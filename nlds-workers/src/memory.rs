//! `[memory]`: what a server or worker process sets up at start to keep its resident memory
//! bounded (see `nlds_settings::MemoryConfig` and BENCHMARKS.md, "Where the memory went").

use std::os::unix::process::CommandExt;
use std::sync::OnceLock;

use nlds_settings::MemoryConfig;
use tokio::sync::Semaphore;

/// The variable mimalloc reads its purge delay from when the process starts.
pub const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// Applies `cfg` to this process. Call it once, early in `main` of a program whose global
/// allocator is mimalloc, before it prints or opens anything: if `MIMALLOC_PURGE_DELAY` is not in
/// the environment, the program is started again in place (`exec`, same PID, arguments and
/// environment) with it set to `allocator_purge_delay_ms`, because mimalloc reads its options
/// only when the process starts. Returns when the process runs with the settings (or could not be
/// started again: then with mimalloc's defaults, and a warning).
pub fn apply(cfg: &MemoryConfig) {
    if std::env::var_os(PURGE_DELAY_ENV).is_none() {
        restart_with_purge_delay(cfg.allocator_purge_delay_ms);
    }
    if !cfg.transparent_huge_pages {
        disable_transparent_huge_pages();
    }
    let _ = FILE_THREADS.set(Semaphore::new(cfg.file_threads.max(1)));
}

/// The process's async runtime: multi-threaded (a worker thread per core), its blocking pool
/// bounded by `[memory] blocking_threads`. Built by `main` once [`apply`] ran, instead of
/// `#[tokio::main]`, which cannot read settings first.
pub fn runtime(cfg: &MemoryConfig) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(cfg.blocking_threads.max(4))
        .build()
}

/// Permits for one-shot file-system operations on the blocking pool: `[memory] file_threads`
/// once [`apply`] ran, its default before (tests, library users).
static FILE_THREADS: OnceLock<Semaphore> = OnceLock::new();

/// The semaphore [`crate::warm::blocking`] takes a permit of for each operation. A permit is
/// held only while an operation runs, and no such operation waits for another task, so a
/// bounded number of them cannot deadlock.
pub(crate) fn file_threads() -> &'static Semaphore {
    FILE_THREADS.get_or_init(|| Semaphore::new(MemoryConfig::default().file_threads))
}

/// `exec`s this program again with `MIMALLOC_PURGE_DELAY=ms`; returns only if that failed.
fn restart_with_purge_delay(ms: u32) {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this program to apply [memory] allocator_purge_delay_ms");
            return;
        }
    };
    let e = std::process::Command::new(&exe)
        .arg0(argv0)
        .args(args)
        .env(PURGE_DELAY_ENV, ms.to_string())
        .exec();
    tracing::warn!(
        error = %e,
        program = %exe.display(),
        "cannot start again with [memory] allocator_purge_delay_ms: running with mimalloc's \
         default purge delay, resident memory may be higher"
    );
}

fn disable_transparent_huge_pages() {
    // The allocator's regions are reserved large and used sparsely; a transparent huge page
    // makes 2 MiB of one resident at a time. Turned off for this process only (and the
    // processes it starts), whatever /sys/kernel/mm/transparent_hugepage says.
    match rustix::thread::disable_transparent_huge_pages(true) {
        Ok(()) => tracing::debug!("transparent huge pages off for this process"),
        Err(e) => tracing::warn!(
            error = %e,
            "cannot turn transparent huge pages off ([memory] transparent_huge_pages = false): \
             resident memory may be higher"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `apply` itself would start the test program again; the system tests check it on
    // `nlds-server` (tests/it/resources.rs).
    #[test]
    fn transparent_huge_pages_are_off_for_the_process() {
        disable_transparent_huge_pages();
        assert!(rustix::thread::transparent_huge_pages_are_disabled().unwrap());
    }
}
