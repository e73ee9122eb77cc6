//! A FILELIST read as it streams: [`FilelistReader`] reads one line at a time (bytes: names need
//! not be UTF-8) and yields the paths in chunks of at most `n`, so that a putlist or getlist of
//! millions of paths holds one chunk, never the list. The rules are those of
//! [`crate::paths::parse_filelist`] (which is this reader with one unbounded chunk): surrounding
//! whitespace trimmed (a CRLF line ending with it), blank lines skipped, each path made absolute
//! with [`crate::paths::absolutize`], duplicates dropped keeping the first, and a list with no
//! path is an error. Duplicates are dropped within a chunk: a path listed again in a later chunk
//! is sent again, and the server records it once per transaction (docs/PROTOCOL.md, "Chunked
//! requests").

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, BufRead};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::paths::absolutize;

/// Why a FILELIST cannot be read.
#[derive(Debug)]
pub enum FilelistError {
    /// Not one path in it (only blank lines, or nothing).
    Empty,
    /// A line that is not a path that can be sent (1-based line number).
    Path { line: u64, message: String },
    /// Reading failed at this line (1-based).
    Read { line: u64, error: io::Error },
}

impl fmt::Display for FilelistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilelistError::Empty => f.write_str("FILELIST contains no paths"),
            FilelistError::Path { line, message } => write!(f, "line {line}: {message}"),
            FilelistError::Read { line, error } => write!(f, "reading line {line} failed: {error}"),
        }
    }
}

impl std::error::Error for FilelistError {}

/// Reads a FILELIST from `src` in chunks of at most `chunk` distinct paths.
#[derive(Debug)]
pub struct FilelistReader<R> {
    src: R,
    cwd: PathBuf,
    home: Option<PathBuf>,
    chunk: usize,
    /// Lines read so far.
    line: u64,
    /// Bytes read so far.
    offset: u64,
    /// A chunk has been yielded (or an earlier reader of the same list yielded one).
    any: bool,
    /// The end was reached, or an error returned.
    done: bool,
    buf: Vec<u8>,
}

impl<R: BufRead> FilelistReader<R> {
    /// A reader of a whole FILELIST: relative paths against `cwd`, `~` against `home`.
    pub fn new(src: R, cwd: &Path, home: Option<&Path>, chunk: usize) -> Self {
        Self {
            src,
            cwd: cwd.to_path_buf(),
            home: home.map(Path::to_path_buf),
            chunk: chunk.max(1),
            line: 0,
            offset: 0,
            any: false,
            done: false,
            buf: Vec::new(),
        }
    }

    /// A reader of the rest of a FILELIST whose first `lines` lines gave paths already (so its
    /// end is no error, and line numbers go on from there).
    pub fn resume(src: R, cwd: &Path, home: Option<&Path>, chunk: usize, lines: u64) -> Self {
        Self {
            line: lines,
            any: true,
            ..Self::new(src, cwd, home, chunk)
        }
    }

    /// Lines read so far.
    pub fn lines(&self) -> u64 {
        self.line
    }

    /// Bytes read from the source so far (where the rest of it starts).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the end of the list was reached (or an error returned).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The source, positioned after what was read.
    pub fn into_inner(self) -> R {
        self.src
    }

    /// The next chunk: `Ok(None)` at the end of the list; [`FilelistError::Empty`] if the list
    /// had no path at all.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<String>>, FilelistError> {
        if self.done {
            return Ok(None);
        }
        let mut seen: HashSet<String> = HashSet::new();
        let mut paths = Vec::new();
        while paths.len() < self.chunk {
            self.buf.clear();
            let n = match self.src.read_until(b'\n', &mut self.buf) {
                Ok(n) => n,
                Err(error) => {
                    self.done = true;
                    return Err(FilelistError::Read {
                        line: self.line + 1,
                        error,
                    });
                }
            };
            if n == 0 {
                self.done = true;
                break;
            }
            self.offset += n as u64;
            self.line += 1;
            let raw = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            let line: &[u8] = match std::str::from_utf8(raw) {
                Ok(s) => s.trim().as_bytes(),
                Err(_) => raw.trim_ascii(),
            };
            if line.is_empty() {
                continue;
            }
            let abs = absolutize(OsStr::from_bytes(line), &self.cwd, self.home.as_deref())
                .map_err(|message| {
                    self.done = true;
                    FilelistError::Path {
                        line: self.line,
                        message,
                    }
                })?;
            if seen.insert(abs.clone()) {
                paths.push(abs);
            }
        }
        if paths.is_empty() {
            return if self.any {
                Ok(None)
            } else {
                Err(FilelistError::Empty)
            };
        }
        self.any = true;
        Ok(Some(paths))
    }
}

impl<R: BufRead> Iterator for FilelistReader<R> {
    type Item = Result<Vec<String>, FilelistError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

#[cfg(test)]
#[path = "filelist_tests.rs"]
mod tests;
