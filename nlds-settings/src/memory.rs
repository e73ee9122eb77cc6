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
}
