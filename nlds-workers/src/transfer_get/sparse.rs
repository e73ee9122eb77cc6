//! Writing a download without writing its runs of zeros: every aligned block of
//! [`BLOCK`] bytes that is all zeros is skipped (left a hole in the new, empty file) and the
//! length set at the end, so a sparse file is restored sparse (and a file full of zeros takes
//! no space). Everything else is written in runs of up to [`RUN`] bytes with `pwrite`.
//!
//! Write-behind: every [`WRITE_BEHIND`] bytes written, the kernel is asked to start writing them
//! to disk (`posix_fadvise(POSIX_FADV_DONTNEED)`, which starts write-back of the range's dirty
//! pages without waiting, and drops its clean ones from the page cache). The restore's `fsync`
//! at the end then waits for the last window only, instead of a whole large file written from
//! memory after the download: the disk works while the network does.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The unit of a hole: the block size of common file systems.
pub const BLOCK: usize = 4096;
/// The most data held before it is written.
const RUN: usize = 1 << 20;
/// How much is written before write-back of it is started.
pub const WRITE_BEHIND: u64 = 8 << 20;

/// A writer of a new, empty file that leaves holes where the data is zeros.
pub struct SparseWriter {
    file: File,
    /// The current block, not yet complete (starts at `len`).
    block: Vec<u8>,
    /// Data blocks not yet written, starting at `out_at`.
    out: Vec<u8>,
    out_at: u64,
    /// Bytes of complete blocks so far.
    len: u64,
    /// Write-back has been started for everything before this offset.
    behind: u64,
}

impl SparseWriter {
    /// `file` must be new and empty (a hole reads as zeros).
    pub fn new(file: File) -> Self {
        Self {
            file,
            block: Vec::with_capacity(BLOCK),
            out: Vec::with_capacity(RUN),
            out_at: 0,
            len: 0,
            behind: 0,
        }
    }

    /// Appends `data`.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.block.is_empty() && data.len() >= BLOCK {
                // Whole blocks straight from the input.
                let (b, rest) = data.split_at(BLOCK);
                self.add_block(b)?;
                data = rest;
                continue;
            }
            let take = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == BLOCK {
                let b = std::mem::take(&mut self.block);
                self.add_block(&b)?;
                self.block = b;
                self.block.clear();
            }
        }
        Ok(())
    }

    fn add_block(&mut self, b: &[u8]) -> io::Result<()> {
        let start = self.len;
        self.len += b.len() as u64;
        if b.iter().all(|x| *x == 0) {
            return self.flush();
        }
        if self.out.is_empty() {
            self.out_at = start;
        }
        self.out.extend_from_slice(b);
        if self.out.len() >= RUN {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.file.write_all_at(&self.out, self.out_at)?;
            let end = self.out_at + self.out.len() as u64;
            self.out.clear();
            if end - self.behind >= WRITE_BEHIND {
                // Best effort: only a hint; the final fsync is what makes the data durable.
                let len = std::num::NonZeroU64::new(end - self.behind);
                let _ =
                    rustix::fs::fadvise(&self.file, self.behind, len, rustix::fs::Advice::DontNeed);
                self.behind = end;
            }
        }
        Ok(())
    }

    /// Writes what is left, sets the length (a trailing hole included) and gives the file back.
    pub fn finish(mut self) -> io::Result<File> {
        if !self.block.is_empty() {
            let b = std::mem::take(&mut self.block);
            self.add_block(&b)?;
        }
        self.flush()?;
        self.file.set_len(self.len)?;
        Ok(self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn written(chunks: &[Vec<u8>]) -> (Vec<u8>, u64) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let mut w = SparseWriter::new(File::create(&p).unwrap());
        for c in chunks {
            w.write_all(c).unwrap();
        }
        let f = w.finish().unwrap();
        f.sync_all().unwrap();
        (
            std::fs::read(&p).unwrap(),
            std::fs::metadata(&p).unwrap().blocks(),
        )
    }

    #[test]
    fn content_is_exact_whatever_the_chunking() {
        let mut data = vec![0u8; 3 * BLOCK + 100];
        data[5] = 1;
        data[2 * BLOCK + 7] = 9;
        data[3 * BLOCK + 99] = 3;
        for size in [
            1,
            7,
            100,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            3 * BLOCK,
            data.len(),
        ] {
            let chunks: Vec<Vec<u8>> = data.chunks(size).map(<[u8]>::to_vec).collect();
            assert_eq!(written(&chunks).0, data, "chunks of {size}");
        }
        assert_eq!(written(&[]).0, Vec::<u8>::new());
        assert_eq!(
            written(&[vec![0; 10]]).0,
            vec![0; 10],
            "a trailing hole keeps the length"
        );
    }

    #[test]
    fn content_past_several_write_behind_windows_is_exact() {
        // 3.5 windows of data that is never zero, in chunks that straddle the windows.
        let n = (WRITE_BEHIND as usize) * 7 / 2;
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8 | 1).collect();
        let chunks: Vec<Vec<u8>> = data.chunks(300_007).map(<[u8]>::to_vec).collect();
        let (got, blocks) = written(&chunks);
        assert!(got == data, "content differs");
        assert!(
            blocks * 512 >= n as u64,
            "{blocks} blocks for {n} bytes of data"
        );
    }

    #[test]
    fn zero_runs_are_not_allocated() {
        // 64 MiB of zeros with one byte in the middle: a few blocks at most.
        let mut chunks = vec![vec![0u8; 1 << 20]; 64];
        chunks[32][12345] = 0xAB;
        let (data, blocks) = written(&chunks);
        assert_eq!(data.len(), 64 << 20);
        assert_eq!(data[(32 << 20) + 12345], 0xAB);
        assert!(blocks * 512 <= 1 << 20, "{blocks} blocks allocated");
    }
}
