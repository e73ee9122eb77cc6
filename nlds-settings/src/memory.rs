//! `[memory]`: how a server or worker process keeps its resident memory bounded (issue 14: at
//! most 150 MiB for the embedded process, 100 MiB for each distributed one; the measurements
//! behind the defaults are in BENCHMARKS.md, "Where the memory went").

use serde::{Deserialize, Serialize};

/// `[memory]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryConfig {
    /// Whether the kernel may back this process's memory with transparent huge pages (2 MiB
    /// instead of 4 KiB). With them, the allocator's sparsely used regions became resident 2 MiB
    /// at a time: the embedded process peaked 50-70 MiB higher over the same put and get. `false`
    /// (the default) turns them off for the process (`prctl(PR_SET_THP_DISABLE)`), whatever the
    /// system-wide setting.
    pub transparent_huge_pages: bool,
    /// Milliseconds the allocator (mimalloc) keeps memory freed by the program before it gives
    /// it back to the system. mimalloc's own default, 1,000, kept the buffers of one burst of
    /// downloads resident into the next: a get of 4 x 256 MiB peaked 28 MiB higher. 0 gives
    /// freed pages back at once. mimalloc reads this before `main`, from the environment
    /// (`MIMALLOC_PURGE_DELAY`), so a process started without that variable starts itself again
    /// with it set (same PID, arguments and environment); a `MIMALLOC_PURGE_DELAY` already in
    /// the environment wins over this setting.
    pub allocator_purge_delay_ms: u32,
}
