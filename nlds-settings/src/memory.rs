//! `[memory]`: how a server or worker process keeps its resident memory bounded (issue 14: at
//! most 150 MiB for the embedded process, 100 MiB for each distributed one; the measurements
//! behind the defaults are in BENCHMARKS.md, "Where the memory went").

use serde::{Deserialize, Serialize};

/// `[memory]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryConfig {
    /// Whether the kernel may back this process's memory with transparent huge pages (2 MiB
    /// instead of 4 KiB). With them, the allocator's sparsely used regions became resident 2 MiB
    /// at a time: the embedded process peaked 50-70 MiB higher over the same put and get. `false`
    /// (the default) turns them off for the process (`prctl(PR_SET_THP_DISABLE)`), whatever the
    /// system-wide setting.
    pub transparent_huge_pages: bool,
    /// Most heaps ("arenas") glibc's allocator keeps for the process's threads. glibc's default
    /// is eight per core: each thread that allocates while the others hold their heaps may get
    /// a heap of its own, and freed memory stays in whichever heap it came from, so a process
    /// whose blocking threads come and go holds many partly used heaps. With 2 the embedded
    /// process peaked at 96 and 119 MiB during the putlist and getlist of 200,000 files,
    /// against 153 and 174 MiB with mimalloc (BENCHMARKS.md, "Issue 14: two heaps"). glibc reads
    /// it before `main`, from the environment (`GLIBC_TUNABLES`), so a process started without
    /// that variable starts itself again in place (same PID, arguments and environment) with it
    /// set; a `GLIBC_TUNABLES` already in the environment wins over this setting. At least 1.
    pub malloc_arenas: u32,
    /// Allocations of at least this many bytes get pages of their own from the system, given
    /// back as soon as they are freed (glibc's `mmap_threshold`). Setting it also stops glibc
    /// from raising the threshold after a large buffer was freed, which is what kept large
    /// buffers in its heaps. 0: glibc's own (128 KiB, raised dynamically up to 32 MiB).
    /// Applied with `malloc_arenas`.
    pub malloc_mmap_threshold: u64,
    /// Most one-shot file-system operations (open, stat, read or write of a small file, rename,
    /// a directory's metadata) the workers of this process run at once, each on a thread of the
    /// runtime's blocking pool; the embedded S3 endpoint gets as many threads of its own. Every
    /// such thread keeps a stack and allocator pages of its own: with the pool free to grow, the
    /// embedded process ran up to 209 threads during the putlist and getlist of 200,000 files
    /// and peaked at 166 and 202 MiB; with 16, at 75-98 threads, 149-154 and 174-191 MiB
    /// (BENCHMARKS.md, "Issue 14: bounded threads"). Streams of one
    /// large file (a multipart upload's reader, a download's writer) are bounded by
    /// `[workers.transfer] files_in_flight` instead. At least 1.
    pub file_threads: usize,
    /// Most threads of the process's blocking pool (tokio's `max_blocking_threads`, 512 by
    /// default): the file operations above, a large file's reader (transfer-put) or writer
    /// (transfer-get) each, the indexer's walks. Work beyond it waits for a thread; none of that
    /// work waits for work queued behind it (the embedded S3 endpoint has threads of its own),
    /// so a bound cannot deadlock. A bound on the thread count, not a saving: with
    /// `file_threads` bounding the operations, the embedded process ran up to 75 threads during
    /// the 200,000-file lists, 47 with this at 24, at the same peak (BENCHMARKS.md). 64 leaves
    /// room for `files_in_flight` large files each way. At least 4.
    pub blocking_threads: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            transparent_huge_pages: false,
            malloc_arenas: 2,
            malloc_mmap_threshold: 1 << 20,
            file_threads: 16,
            blocking_threads: 64,
        }
    }
}
