//! FILELISTs (`putlist`, `getlist`, `dellist`, and their dry runs): `prepare` reads the first
//! chunk ([`read_first`]), which is all of a list of one chunk, so a bad or empty list is a usage
//! error found before anything is sent; the rest ([`FilelistRest`]) is read as it is sent (or
//! asked about, for a dry run), one chunk at a time (`nlds_client::filelist`), so a list of
//! millions of paths is never held whole. A bad line in the rest is the same usage error, found
//! before the request naming the chunks is sent: nothing is put, got or deleted.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use nlds_client::client::CHUNK_PATHS;
use nlds_client::filelist::{FilelistError, FilelistReader};

use crate::ctx::{Env, Failure};

/// How much of the FILELIST is read at a time (bytes).
const READ_BUFFER: usize = 64 * 1024;

/// Most paths in one chunk of a FILELIST (and one request): `$NLDS_CHUNK_PATHS` when set to a
/// positive number, else [`CHUNK_PATHS`].
pub fn chunk_paths(env: &Env) -> usize {
    env.var("NLDS_CHUNK_PATHS")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(CHUNK_PATHS)
}

/// The rest of a FILELIST longer than one chunk, to be read while the request is sent: what was
/// read ahead of the first chunk (at most [`READ_BUFFER`] bytes), then the rest of the open file
/// or of standard input (never opened again: a FILELIST may be a pipe, `<(find ...)`).
#[derive(Debug, Clone)]
pub struct FilelistRest {
    /// As given on the command line (`-` for standard input).
    name: String,
    read_ahead: Vec<u8>,
    /// The open FILELIST; `None`: standard input.
    file: Option<Arc<File>>,
    /// Lines read before it.
    lines: u64,
    chunk: usize,
    cwd: PathBuf,
    home: Option<PathBuf>,
}

/// The usage error of a FILELIST that cannot be read.
fn failure(name: &str, e: FilelistError) -> Failure {
    let what = if name == "-" {
        "FILELIST from standard input".to_owned()
    } else {
        format!("FILELIST {name}")
    };
    Failure::usage(match e {
        FilelistError::Empty => e.to_string(),
        FilelistError::Path { line, message } => format!("{what}, line {line}: {message}"),
        FilelistError::Read { line, error } => {
            format!("cannot read {what} (at line {line}): {error}")
        }
    })
}

fn open_failure(name: &str, e: std::io::Error) -> Failure {
    Failure::usage(if name == "-" {
        format!("cannot read FILELIST from standard input: {e}")
    } else {
        format!("cannot read FILELIST {name}: {e}")
    })
}

/// Reads the first chunk of FILELIST `name` (`-`: standard input) of at most `chunk` paths, and
/// says where the rest is if there is more.
pub fn read_first(
    name: &str,
    env: &Env,
    stdin: &mut dyn Read,
    chunk: usize,
) -> Result<(Vec<String>, Option<FilelistRest>), Failure> {
    let file = if name == "-" {
        None
    } else {
        let f = File::open(env.cwd.join(name)).map_err(|e| open_failure(name, e))?;
        Some(Arc::new(f))
    };
    let src: Box<dyn Read + '_> = match &file {
        Some(f) => Box::new(&**f),
        None => Box::new(stdin),
    };
    let home = env.home();
    let src = BufReader::with_capacity(READ_BUFFER, src);
    let mut reader = FilelistReader::new(src, &env.cwd, home.as_deref(), chunk);
    let first = reader.next_chunk().map_err(|e| failure(name, e))?;
    let first = first.ok_or_else(|| failure(name, FilelistError::Empty))?;
    if reader.is_done() {
        return Ok((first, None));
    }
    let lines = reader.lines();
    let mut src = reader.into_inner();
    let read_ahead = src.fill_buf().map_err(|e| open_failure(name, e))?.to_vec();
    if read_ahead.is_empty() {
        return Ok((first, None));
    }
    drop(src);
    Ok((
        first,
        Some(FilelistRest {
            name: name.to_owned(),
            read_ahead,
            file,
            lines,
            chunk,
            cwd: env.cwd.clone(),
            home,
        }),
    ))
}

/// The chunks of the rest of a FILELIST.
pub type RestReader<'a> = FilelistReader<Box<dyn BufRead + 'a>>;

impl FilelistRest {
    /// The rest of the list, to read; `stdin` is read for `-`.
    pub fn open<'a>(&'a self, stdin: &'a mut dyn Read) -> RestReader<'a> {
        let rest: Box<dyn Read + 'a> = match &self.file {
            Some(f) => Box::new(&**f),
            None => Box::new(stdin),
        };
        let src: Box<dyn BufRead + 'a> = Box::new(BufReader::with_capacity(
            READ_BUFFER,
            std::io::Cursor::new(self.read_ahead.as_slice()).chain(rest),
        ));
        FilelistReader::resume(src, &self.cwd, self.home.as_deref(), self.chunk, self.lines)
    }

    /// The next chunk of `reader`, or `None` at the end of the list.
    pub fn next(&self, reader: &mut RestReader<'_>) -> Result<Option<Vec<String>>, Failure> {
        reader.next_chunk().map_err(|e| failure(&self.name, e))
    }
}
