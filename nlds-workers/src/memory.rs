//! `[memory]`: what a server or worker process sets up at start to keep its resident memory
//! bounded (see `nlds_settings::MemoryConfig` and BENCHMARKS.md, "Where the memory went").

use std::os::unix::process::CommandExt;
use std::sync::OnceLock;

use nlds_settings::MemoryConfig;
use tokio::sync::Semaphore;

/// The variable glibc reads its allocator's tunables from when the process starts.
pub const TUNABLES_ENV: &str = "GLIBC_TUNABLES";

/// Applies `cfg` to this process. Call it once, early in `main`, before it prints or opens
/// anything: if `GLIBC_TUNABLES` is not in the environment, the program is started again in
/// place (`exec`, same PID, arguments and environment) with it set from `malloc_arenas` and
/// `malloc_mmap_threshold` ([`tunables`]), because glibc reads them only when the process
/// starts. Returns when the process runs with the settings (or could not be started again: then
/// with glibc's defaults, and a warning).
pub fn apply(cfg: &MemoryConfig) {
    if std::env::var_os(TUNABLES_ENV).is_none() {
        restart_with(TUNABLES_ENV, &tunables(cfg));
    }
    if !cfg.transparent_huge_pages {
        disable_transparent_huge_pages();
    }
    let _ = FILE_THREADS.set(Semaphore::new(cfg.file_threads.max(1)));
}

/// The value of `GLIBC_TUNABLES` for `cfg`, e.g. `glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1048576`.
pub fn tunables(cfg: &MemoryConfig) -> String {
    let mut t = format!("glibc.malloc.arena_max={}", cfg.malloc_arenas.max(1));
    if cfg.malloc_mmap_threshold > 0 {
        t.push_str(&format!(
            ":glibc.malloc.mmap_threshold={}",
            cfg.malloc_mmap_threshold
        ));
    }
    t
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

/// `exec`s this program again with `var=value` added to its environment; returns only if that
/// failed.
fn restart_with(var: &str, value: &str) {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this program to apply [memory] malloc_arenas");
            return;
        }
    };
    let e = std::process::Command::new(&exe)
        .arg0(argv0)
        .args(args)
        .env(var, value)
        .exec();
    tracing::warn!(
        error = %e,
        program = %exe.display(),
        "cannot start again with {var}={value} ([memory] malloc_arenas, malloc_mmap_threshold): \
         running with glibc's allocator defaults, resident memory may be higher"
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
    fn tunables_name_the_arenas_and_the_threshold_when_set() {
        let mut cfg = MemoryConfig::default();
        assert_eq!(
            tunables(&cfg),
            "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1048576"
        );
        cfg.malloc_arenas = 0;
        cfg.malloc_mmap_threshold = 0;
        assert_eq!(tunables(&cfg), "glibc.malloc.arena_max=1");
    }

    #[test]
    fn transparent_huge_pages_are_off_for_the_process() {
        disable_transparent_huge_pages();
        assert!(rustix::thread::transparent_huge_pages_are_disabled().unwrap());
    }
}
