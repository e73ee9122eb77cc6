//! `[memory]`: what a server or worker process sets up at start to keep its resident memory
//! bounded (see `nlds_settings::MemoryConfig` and BENCHMARKS.md, "Where the memory went").

use nlds_settings::MemoryConfig;

/// Applies `cfg` to this process. Call it once, early in `main`: memory the process touched
/// before keeps the pages it got.
pub fn apply(cfg: &MemoryConfig) {
    if cfg.transparent_huge_pages {
        return;
    }
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

    #[test]
    fn the_default_turns_transparent_huge_pages_off() {
        apply(&MemoryConfig::default());
        assert!(rustix::thread::transparent_huge_pages_are_disabled().unwrap());
    }
}
