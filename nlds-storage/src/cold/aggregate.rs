//! Aggregates: the tar files the cold tier stores.
//!
//! Tape is sequential and hates small files, so files are packed into aggregates: small files
//! together up to a target size and member count, a large file alone ([`pack`]). An aggregate is a
//! plain POSIX tar (ustar headers, GNU long names for paths over 100 bytes), readable by `tar`,
//! whose layout is computed before a byte is written ([`layout`]): the catalogue records each
//! member's data offset, and the writer knows the exact size a store needs up front.
//!
//! [`stream`] produces the tar as a byte stream from the members' own streams (read from the warm
//! tier one after the other; nothing is staged on local disk) and computes, over exactly the bytes
//! written, the checksums the catalogue keeps: adler32 (what tape front ends report), CRC32C (what
//! S3 stores) and blake3. [`extract`] reads an aggregate back in one sequential pass, checks every
//! header against what the catalogue expects, hands the wanted members to a sink, and checksums
//! the whole aggregate so a corrupt one is detected.

use std::collections::HashSet;
use std::future::Future;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::{ByteReader, ColdError, ColdResult};

const BLOCK: u64 = 512;
const CHUNK: usize = 256 * 1024;

/// A file in an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The original absolute path (stored without its leading `/`, as `tar` does).
    pub path: String,
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    pub uid: u32,
    pub gid: u32,
}

impl Member {
    /// A member from catalogue values (`mtime_ns`: nanoseconds since the epoch).
    pub fn new(path: &str, size: u64, mode: u32, mtime_ns: i64, uid: u32, gid: u32) -> Self {
        Self {
            path: path.to_owned(),
            size,
            mode,
            mtime: mtime_ns.div_euclid(1_000_000_000),
            uid,
            gid,
        }
    }
}

/// Where a member sits in its aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub header_offset: u64,
    pub data_offset: u64,
    pub size: u64,
}

/// The layout of an aggregate: each member's place and the total size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub placed: Vec<Placed>,
    pub size: u64,
}

/// Checksums of an aggregate's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksums {
    pub size: u64,
    pub adler32: u32,
    pub crc32c: u32,
    /// Lowercase hex.
    pub blake3: String,
}

/// Running checksums over a byte stream.
pub struct Summer {
    adler: simd_adler32::Adler32,
    crc: u32,
    b3: blake3::Hasher,
    n: u64,
}

impl Default for Summer {
    fn default() -> Self {
        Self {
            adler: simd_adler32::Adler32::new(),
            crc: 0,
            b3: blake3::Hasher::new(),
            n: 0,
        }
    }
}

impl Summer {
    pub fn update(&mut self, buf: &[u8]) {
        self.adler.write(buf);
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.b3.update(buf);
        self.n += buf.len() as u64;
    }

    pub fn finish(&self) -> Checksums {
        Checksums {
            size: self.n,
            adler32: self.adler.finish(),
            crc32c: self.crc,
            blake3: self.b3.finalize().to_hex().to_string(),
        }
    }
}

fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK
}

fn tar_name(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// The header block(s) of a member: a GNU long-name entry first when the name does not fit.
pub fn header(m: &Member) -> ColdResult<Vec<u8>> {
    let name = tar_name(&m.path);
    if name.is_empty() || name.contains('\0') {
        return Err(ColdError::Failed(format!(
            "{:?} cannot be an aggregate member",
            m.path
        )));
    }
    let mut out = Vec::with_capacity(BLOCK as usize);
    let fill = |h: &mut tar::Header, size: u64| {
        h.set_size(size);
        h.set_mode(m.mode & 0o7777);
        h.set_mtime(m.mtime.max(0) as u64);
        h.set_uid(u64::from(m.uid));
        h.set_gid(u64::from(m.gid));
    };
    if name.len() > 100 {
        // GNU long name: an 'L' entry whose data is the NUL-terminated name.
        let mut long = tar::Header::new_gnu();
        long.as_mut_bytes()[..13].copy_from_slice(b"././@LongLink");
        long.set_entry_type(tar::EntryType::GNULongName);
        fill(&mut long, name.len() as u64 + 1);
        long.set_mode(0o644);
        long.set_cksum();
        out.extend_from_slice(long.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(padded(out.len() as u64) as usize, 0);
    }
    let mut h = tar::Header::new_gnu();
    {
        let b = h.as_mut_bytes();
        let short = &name.as_bytes()[..name.len().min(100)];
        b[..short.len()].copy_from_slice(short);
    }
    h.set_entry_type(tar::EntryType::Regular);
    fill(&mut h, m.size);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    Ok(out)
}

/// The layout of an aggregate of `members`, in order.
pub fn layout(members: &[Member]) -> ColdResult<Layout> {
    let mut placed = Vec::with_capacity(members.len());
    let mut at = 0u64;
    for m in members {
        let h = header(m)?.len() as u64;
        placed.push(Placed {
            header_offset: at,
            data_offset: at + h,
            size: m.size,
        });
        at += h + padded(m.size);
    }
    // The end of the archive: two zero blocks.
    Ok(Layout {
        placed,
        size: at + 2 * BLOCK,
    })
}

/// Packs files (given as sizes, in the order to archive them) into aggregates of at most
/// `target_bytes` and `max_members` members; a file of `target_bytes` or more goes alone.
/// Returns the indices of each aggregate's members.
pub fn pack(sizes: &[u64], target_bytes: u64, max_members: usize) -> Vec<Vec<usize>> {
    let mut packer = Packer::new(target_bytes, max_members);
    let mut out: Vec<Vec<usize>> = sizes
        .iter()
        .enumerate()
        .filter_map(|(i, &s)| packer.push(i, s))
        .collect();
    out.extend(packer.finish());
    out
}

/// [`pack`] one file at a time, for a caller that reads the files in pages and must not hold
/// them all: the same aggregates, each handed back as soon as it is closed.
#[derive(Debug)]
pub struct Packer<T> {
    target_bytes: u64,
    max_members: usize,
    current: Vec<T>,
    bytes: u64,
}

impl<T> Packer<T> {
    pub fn new(target_bytes: u64, max_members: usize) -> Self {
        Self {
            target_bytes,
            max_members: max_members.max(1),
            current: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds the next file, of `size` bytes: the aggregate this closes, if any (the file alone
    /// when it is of `target_bytes` or more; else the open aggregate when the file does not fit
    /// in it, the file then starting the next one).
    pub fn push(&mut self, file: T, size: u64) -> Option<Vec<T>> {
        if size >= self.target_bytes {
            return Some(vec![file]);
        }
        let full = !self.current.is_empty()
            && (self.bytes + size > self.target_bytes || self.current.len() >= self.max_members);
        let closed = full.then(|| {
            self.bytes = 0;
            std::mem::take(&mut self.current)
        });
        self.current.push(file);
        self.bytes += size;
        closed
    }

    /// The open aggregate, if it has members (the files are all pushed).
    pub fn finish(&mut self) -> Option<Vec<T>> {
        self.bytes = 0;
        (!self.current.is_empty()).then(|| std::mem::take(&mut self.current))
    }
}

/// Streams the aggregate of `members`: the returned reader yields the tar, member bodies read from
/// `open(i)` one after the other; the receiver gets the checksums of every byte yielded, or the
/// error that cut the stream short (a member stream of the wrong length, a failed open). On an
/// error the reader ends early, so a store writing it sees a short stream and keeps nothing.
pub fn stream<F, Fut>(
    members: Vec<Member>,
    mut open: F,
) -> (ByteReader, oneshot::Receiver<ColdResult<Checksums>>)
where
    F: FnMut(usize) -> Fut + Send + 'static,
    Fut: Future<Output = ColdResult<ByteReader>> + Send,
{
    let (mut w, r) = tokio::io::duplex(4 * CHUNK);
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut sum = Summer::default();
        let result: ColdResult<()> = async {
            let mut buf = vec![0u8; CHUNK];
            for (i, m) in members.iter().enumerate() {
                let h = header(m)?;
                sum.update(&h);
                w.write_all(&h).await.map_err(closed)?;
                let mut body = open(i).await?;
                let mut left = m.size;
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = body
                        .read(&mut buf[..want])
                        .await
                        .map_err(|e| ColdError::Unavailable(format!("reading {}: {e}", m.path)))?;
                    if n == 0 {
                        return Err(ColdError::Failed(format!(
                            "{} ended {left} bytes short of its catalogued size {}",
                            m.path, m.size
                        )));
                    }
                    sum.update(&buf[..n]);
                    w.write_all(&buf[..n]).await.map_err(closed)?;
                    left -= n as u64;
                }
                let mut extra = [0u8; 1];
                if body.read(&mut extra).await.unwrap_or(0) > 0 {
                    return Err(ColdError::Failed(format!(
                        "{} is longer than its catalogued size {}",
                        m.path, m.size
                    )));
                }
                let pad = (padded(m.size) - m.size) as usize;
                if pad > 0 {
                    let zeros = vec![0u8; pad];
                    sum.update(&zeros);
                    w.write_all(&zeros).await.map_err(closed)?;
                }
            }
            let end = vec![0u8; 2 * BLOCK as usize];
            sum.update(&end);
            w.write_all(&end).await.map_err(closed)?;
            w.shutdown().await.map_err(closed)?;
            Ok(())
        }
        .await;
        // Dropping the writer ends the stream (early, on an error).
        drop(w);
        let _ = tx.send(result.map(|()| sum.finish()));
    });
    (Box::pin(r), rx)
}

fn closed(e: std::io::Error) -> ColdError {
    ColdError::ReaderGone(e.to_string())
}

/// Reads aggregate `name` (laid out as `members`) in one pass: checks every member header against
/// the catalogue's, hands each member in `wanted` to `sink(i, body)` (a stream of exactly its
/// bytes) and returns the checksums of the whole aggregate. The caller compares them with the
/// recorded ones; a mismatch means the aggregate is corrupt.
pub async fn extract<S, Fut>(
    name: &str,
    mut reader: ByteReader,
    members: &[Member],
    wanted: &HashSet<usize>,
    mut sink: S,
) -> ColdResult<Checksums>
where
    S: FnMut(usize, ByteReader) -> Fut,
    Fut: Future<Output = ColdResult<()>> + Send + 'static,
{
    let mut sum = Summer::default();
    let mut buf = vec![0u8; CHUNK];
    for (i, m) in members.iter().enumerate() {
        let expected = header(m)?;
        let mut got = vec![0u8; expected.len()];
        read_exact(name, &mut reader, &mut got).await?;
        sum.update(&got);
        if !same_entry(&got, &expected) {
            return Err(ColdError::Corrupt(format!(
                "aggregate {name} is corrupt: the header of member {} ({}) does not match the catalogue",
                i + 1,
                m.path
            )));
        }
        let (tx, task) = if wanted.contains(&i) {
            let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
            let body: ByteReader =
                Box::pin(tokio_util::io::StreamReader::new(tokio_stream_from(rx)));
            (Some(tx), Some(tokio::spawn(sink(i, body))))
        } else {
            (None, None)
        };
        let mut left = padded(m.size);
        let mut data_left = m.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = reader
                .read(&mut buf[..want])
                .await
                .map_err(|e| ColdError::Unavailable(format!("reading aggregate {name}: {e}")))?;
            if n == 0 {
                return Err(ColdError::Failed(format!(
                    "aggregate {name} is truncated inside member {} ({})",
                    i + 1,
                    m.path
                )));
            }
            sum.update(&buf[..n]);
            let data = (n as u64).min(data_left) as usize;
            if data > 0
                && let Some(tx) = &tx
            {
                // A sink that stopped early has failed; its error is collected below.
                let _ = tx.send(Ok(Bytes::copy_from_slice(&buf[..data]))).await;
            }
            data_left -= data as u64;
            left -= n as u64;
        }
        drop(tx);
        if let Some(task) = task {
            task.await
                .map_err(|e| ColdError::Failed(format!("restoring {}: {e}", m.path)))??;
        }
    }
    // The two end blocks, then nothing.
    let mut end = vec![0u8; 2 * BLOCK as usize];
    read_exact(name, &mut reader, &mut end).await?;
    sum.update(&end);
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| ColdError::Unavailable(format!("reading aggregate {name}: {e}")))?;
        if n == 0 {
            break;
        }
        sum.update(&buf[..n]);
    }
    Ok(sum.finish())
}

/// Header blocks match, ignoring nothing: name, size, mode, owner, mtime and checksum field.
fn same_entry(got: &[u8], expected: &[u8]) -> bool {
    got == expected
}

async fn read_exact(name: &str, r: &mut ByteReader, buf: &mut [u8]) -> ColdResult<()> {
    r.read_exact(buf).await.map(|_| ()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ColdError::Failed(format!("aggregate {name} is truncated"))
        } else {
            ColdError::Unavailable(format!("reading aggregate {name}: {e}"))
        }
    })
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A reader over bytes in memory (tests and small aggregates).
pub fn from_bytes(b: impl Into<Bytes>) -> ByteReader {
    Box::pin(std::io::Cursor::new(b.into()))
}

/// The tar member of an archive member (as the catalogue sends it to archive-put).
pub fn member_of(m: &nlds_core::message::ArchiveMember) -> Member {
    Member::new(&m.path, m.size, m.mode, m.mtime_ns, m.uid, m.gid)
}

/// Reads a whole stream (tests).
#[cfg(test)]
pub(crate) async fn read_all(mut r: impl tokio::io::AsyncRead + Unpin) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).await?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn member(path: &str, size: u64) -> Member {
        Member {
            path: path.into(),
            size,
            mode: 0o640,
            mtime: 1_700_000_000,
            uid: 1000,
            gid: 100,
        }
    }

    fn content(i: usize, size: u64) -> Vec<u8> {
        (0..size).map(|j| (j as usize * 31 + i * 7) as u8).collect()
    }

    async fn build(members: &[Member]) -> (Vec<u8>, Checksums) {
        let ms = members.to_vec();
        let sizes: Vec<u64> = ms.iter().map(|m| m.size).collect();
        let (r, done) = stream(ms, move |i| {
            let b = content(i, sizes[i]);
            async move { Ok(from_bytes(b)) }
        });
        let bytes = read_all(r).await.unwrap();
        (bytes, done.await.unwrap().unwrap())
    }

    #[tokio::test]
    async fn an_aggregate_is_a_tar_laid_out_as_planned_with_checksums_of_its_bytes() {
        let long = format!("/data/{}/deep.nc", "x".repeat(150));
        let members = vec![
            member("/data/a.txt", 5),
            member("/data/empty", 0),
            member(&long, 1000),
            member("/data/b.bin", 512),
        ];
        let (bytes, sums) = build(&members).await;
        let lay = layout(&members).unwrap();
        assert_eq!(bytes.len() as u64, lay.size);
        assert_eq!(sums.size, lay.size);
        let mut a = adler2::Adler32::new();
        a.write_slice(&bytes);
        assert_eq!(sums.adler32, a.checksum());
        assert_eq!(sums.crc32c, crc32c::crc32c(&bytes));
        assert_eq!(sums.blake3, blake3::hash(&bytes).to_hex().to_string());
        // Each member's data sits at its planned offset.
        for (i, (m, p)) in members.iter().zip(&lay.placed).enumerate() {
            let at = p.data_offset as usize;
            assert_eq!(
                &bytes[at..at + m.size as usize],
                content(i, m.size).as_slice()
            );
        }
        // And `tar` reads it: names (long one included), sizes, modes.
        let mut ar = tar::Archive::new(std::io::Cursor::new(bytes));
        let got: Vec<(String, u64, u32)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().size().unwrap(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            members
                .iter()
                .map(|m| (m.path.trim_start_matches('/').to_owned(), m.size, 0o640))
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_member_of_the_wrong_length_cuts_the_stream_short_with_its_name() {
        let members = vec![member("/a", 10), member("/b", 10)];
        let (r, done) = stream(members.clone(), |i| async move {
            Ok(from_bytes(vec![1u8; if i == 1 { 4 } else { 10 }]))
        });
        let bytes = read_all(r).await.unwrap();
        assert!((bytes.len() as u64) < layout(&members).unwrap().size);
        let e = done.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("/b ended 6 bytes short"), "{e}");
        let (r, done) = stream(vec![member("/c", 3)], |_| async {
            Ok(from_bytes(vec![1u8; 5]))
        });
        read_all(r).await.unwrap();
        assert!(
            done.await
                .unwrap()
                .unwrap_err()
                .to_string()
                .contains("longer")
        );
    }

    #[tokio::test]
    async fn extract_hands_over_the_wanted_members_and_detects_corruption() {
        let members = vec![
            member("/x/1", 700),
            member("/x/2", 3),
            member("/x/3", 70_000),
            member("/x/4", 0),
        ];
        let (bytes, sums) = build(&members).await;
        type Restored = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;
        let got: Restored = Arc::default();
        let wanted: HashSet<usize> = [0, 2, 3].into();
        let g = got.clone();
        let back = extract(
            "agg.tar",
            from_bytes(bytes.clone()),
            &members,
            &wanted,
            move |i, r| {
                let g = g.clone();
                async move {
                    let v = read_all(r).await.unwrap();
                    g.lock().unwrap().push((i, v));
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(back, sums);
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 3);
        for (i, v) in got {
            assert_eq!(v, content(i, members[i].size));
        }

        // A flipped data byte: every member still extracts, but the checksums differ.
        let mut bad = bytes.clone();
        let at = layout(&members).unwrap().placed[2].data_offset as usize + 10;
        bad[at] ^= 0xff;
        let back = extract(
            "agg.tar",
            from_bytes(bad),
            &members,
            &HashSet::new(),
            |_, _| async { Ok(()) },
        )
        .await
        .unwrap();
        assert_ne!(back.adler32, sums.adler32);
        assert_ne!(back.blake3, sums.blake3);

        // A flipped header byte or a truncation is an error naming the aggregate.
        let mut bad = bytes.clone();
        bad[layout(&members).unwrap().placed[1].header_offset as usize + 2] ^= 1;
        let e = extract(
            "agg.tar",
            from_bytes(bad),
            &members,
            &HashSet::new(),
            |_, _| async { Ok(()) },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("aggregate agg.tar is corrupt") && e.contains("/x/2"),
            "{e}"
        );
        let e = extract(
            "agg.tar",
            from_bytes(bytes[..bytes.len() - 600].to_vec()),
            &members,
            &HashSet::new(),
            |_, _| async { Ok(()) },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("agg.tar is truncated"), "{e}");
    }

    #[test]
    fn packing_puts_small_files_together_and_large_files_alone() {
        let sizes = [10, 20, 100, 5, 5, 5, 30, 200];
        // Large files go out at once, alone; small ones fill an aggregate up to 40 bytes or
        // 3 members, in order.
        assert_eq!(
            pack(&sizes, 40, 3),
            vec![vec![2], vec![0, 1, 3], vec![7], vec![4, 5, 6]]
        );
        assert_eq!(pack(&[], 40, 3), Vec::<Vec<usize>>::new());
        assert_eq!(pack(&[1, 1, 1], 40, 0), vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn a_packer_fed_one_file_at_a_time_closes_the_aggregates_pack_makes() {
        let sizes = [10, 20, 100, 5, 5, 5, 30, 200, 39, 1, 1];
        let mut packer = Packer::new(40, 3);
        let mut closed = Vec::new();
        for (i, &s) in sizes.iter().enumerate() {
            // Each aggregate is handed back as soon as it is closed, before the rest is seen.
            if let Some(g) = packer.push(i, s) {
                assert!(g.iter().all(|&m| m <= i), "{g:?} at {i}");
                closed.push(g);
            }
        }
        closed.extend(packer.finish());
        assert_eq!(closed, pack(&sizes, 40, 3));
        assert_eq!(
            closed,
            vec![
                vec![2],
                vec![0, 1, 3],
                vec![7],
                vec![4, 5, 6],
                vec![8, 9],
                vec![10]
            ]
        );
        // Nothing left once finished.
        assert_eq!(packer.finish(), None);
    }
}
