//! Tests of the streaming FILELIST reader: the rules of `parse_filelist`, chunk boundaries, the
//! empty list, and a read that fails part way.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use super::{FilelistError, FilelistReader};
use crate::paths::parse_filelist;

const CWD: &str = "/gws/proj";
const HOME: &str = "/home/alice";

fn reader(text: &[u8], chunk: usize) -> FilelistReader<&[u8]> {
    FilelistReader::new(text, Path::new(CWD), Some(Path::new(HOME)), chunk)
}

/// Every chunk, in order.
fn chunks(text: &[u8], chunk: usize) -> Vec<Vec<String>> {
    reader(text, chunk).map(Result::unwrap).collect()
}

/// The cases of `parse_filelist`'s rules: the reader with one chunk big enough gives the same
/// paths, and with chunks of one path the same paths in the same order (no duplicate within the
/// list here, so none is dropped either way).
#[test]
fn same_paths_as_parse_filelist() {
    let cases: [&[u8]; 5] = [
        b"caf\xe9.txt\r\n \n/x/\xff\xfe\n/plain/\xc3\xa9\n",
        b"  /abs/one.nc  \n\n\t\nrel/two.nc\n../up.nc\r\nname with spaces.nc",
        b"~/f\n~\n~bob/g\n./d/../h\n",
        b"\r\n\r\n/only\r\n",
        b"/no/newline/at/the/end",
    ];
    for text in cases {
        let whole = parse_filelist(text, Path::new(CWD), Some(Path::new(HOME))).unwrap();
        assert_eq!(chunks(text, usize::MAX), vec![whole.clone()], "{text:?}");
        let one_by_one: Vec<String> = chunks(text, 1).into_iter().flatten().collect();
        assert_eq!(one_by_one, whole, "{text:?}");
    }
    assert_eq!(
        chunks(b"caf\xe9.txt\r\n \n/x/\xff\xfe\n/plain/\xc3\xa9\n", 10),
        vec![vec![
            "/gws/proj/caf\u{10FEE9}.txt".to_owned(),
            "/x/\u{10FEFF}\u{10FEFE}".to_owned(),
            "/plain/é".to_owned(),
        ]]
    );
    assert_eq!(
        chunks(b"~/f\n~\n~bob/g\n./d/../h\n", 10),
        vec![vec![
            "/home/alice/f".to_owned(),
            "/home/alice".to_owned(),
            "/gws/proj/~bob/g".to_owned(),
            "/gws/proj/h".to_owned(),
        ]]
    );
}

/// Duplicates are dropped within a chunk, keeping the first; a path repeated in a later chunk
/// comes again (the server records it once per transaction).
#[test]
fn duplicates_are_dropped_within_a_chunk() {
    assert_eq!(
        chunks(b"b\n\na\nb\n./a\nc\n", 10),
        vec![vec![
            "/gws/proj/b".to_owned(),
            "/gws/proj/a".to_owned(),
            "/gws/proj/c".to_owned(),
        ]]
    );
    // A chunk is of distinct paths: the duplicate does not use up a place.
    assert_eq!(
        chunks(b"a\na\nb\nc\na\n", 2),
        vec![
            vec!["/gws/proj/a".to_owned(), "/gws/proj/b".to_owned()],
            vec!["/gws/proj/c".to_owned(), "/gws/proj/a".to_owned()],
        ]
    );
}

fn numbered(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("/d/f{i}\n"))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn chunk_boundaries() {
    // Exactly N paths: one chunk, then the end (a trailing blank line changes nothing).
    let text = numbered(4);
    let got = chunks(&text, 4);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].len(), 4);
    let mut blank = numbered(4);
    blank.extend_from_slice(b"\n  \n");
    assert_eq!(chunks(&blank, 4), got);

    // N + 1: a full chunk and a chunk of one.
    let text = numbered(5);
    let got = chunks(&text, 4);
    assert_eq!(
        got.iter().map(Vec::len).collect::<Vec<_>>(),
        [4, 1],
        "{got:?}"
    );
    assert_eq!(got[1], ["/d/f4"]);

    // 2N: two full chunks and nothing after.
    let mut r = reader(b"/a\n/b\n/c\n/d\n", 2);
    assert_eq!(r.next_chunk().unwrap().unwrap(), ["/a", "/b"]);
    assert!(!r.is_done());
    assert_eq!(r.next_chunk().unwrap().unwrap(), ["/c", "/d"]);
    assert!(r.next_chunk().unwrap().is_none());
    assert!(r.is_done());
    assert!(r.next_chunk().unwrap().is_none());
    assert_eq!(r.lines(), 4);
    assert_eq!(r.offset(), 12);
}

/// The rest of a list read after its first chunk: the same paths, line numbers going on.
#[test]
fn resumed_at_an_offset() {
    let text = b"/a\n/b\n\n/c\n/d\n";
    let mut first = reader(text, 2);
    assert_eq!(first.next_chunk().unwrap().unwrap(), ["/a", "/b"]);
    let (off, lines) = (first.offset() as usize, first.lines());
    assert_eq!((off, lines), (6, 2));
    let mut rest = FilelistReader::resume(&text[off..], Path::new(CWD), None, 2, lines);
    assert_eq!(rest.next_chunk().unwrap().unwrap(), ["/c", "/d"]);
    assert!(rest.next_chunk().unwrap().is_none(), "the end is no error");
    assert_eq!(rest.lines(), 5);
    // A rest with nothing but blank lines is the end, not an empty list.
    let mut blank = FilelistReader::resume(&b"\n \n"[..], Path::new(CWD), None, 2, 7);
    assert!(blank.next_chunk().unwrap().is_none());
}

#[test]
fn an_empty_list_is_an_error() {
    for text in [&b""[..], b"\n", b" \n\t\r\n\n"] {
        let mut r = reader(text, 3);
        let e = r.next_chunk().unwrap_err();
        assert!(matches!(e, FilelistError::Empty), "{e:?}");
        assert_eq!(e.to_string(), "FILELIST contains no paths");
        assert!(r.next_chunk().unwrap().is_none(), "said once");
        assert_eq!(
            parse_filelist(text, Path::new(CWD), None).unwrap_err(),
            "FILELIST contains no paths"
        );
    }
}

/// A path the encoding cannot carry: the error of `absolutize`, with its line number here (and
/// without it from `parse_filelist`, as before).
#[test]
fn a_bad_path_names_its_line() {
    let text = "/ok\n\n/x/\u{10FE80}\n/never\n".as_bytes();
    let mut r = reader(text, 1);
    assert_eq!(r.next_chunk().unwrap().unwrap(), ["/ok"]);
    let e = r.next_chunk().unwrap_err();
    let FilelistError::Path { line, message } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*line, 3);
    assert!(message.contains("reserves"), "{message}");
    assert!(e.to_string().starts_with("line 3: "), "{e}");
    assert!(r.next_chunk().unwrap().is_none(), "nothing after an error");
    let whole = parse_filelist(text, Path::new(CWD), None).unwrap_err();
    assert_eq!(&whole, message);
}

/// Gives `good`, then fails.
struct FailsAfter<'a> {
    good: &'a [u8],
}

impl Read for FailsAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.good.is_empty() {
            return Err(io::Error::other("the disk went away"));
        }
        let n = self.good.read(buf)?;
        Ok(n)
    }
}

#[test]
fn a_read_error_mid_stream() {
    let src = BufReader::with_capacity(
        4,
        FailsAfter {
            good: b"/a\n/b\n/c",
        },
    );
    let mut r = FilelistReader::new(src, Path::new(CWD), None, 2);
    assert_eq!(r.next_chunk().unwrap().unwrap(), ["/a", "/b"]);
    let e = r.next_chunk().unwrap_err();
    let FilelistError::Read { line, error } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*line, 3);
    assert_eq!(error.to_string(), "the disk went away");
    assert_eq!(e.to_string(), "reading line 3 failed: the disk went away");
    assert!(r.is_done());
    assert!(r.next_chunk().unwrap().is_none());
    // The source is left where reading stopped.
    assert!(r.into_inner().fill_buf().is_err());
}
