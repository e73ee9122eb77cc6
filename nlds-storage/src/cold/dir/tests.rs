use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};

use super::*;

use crate::cold::testing::{RefAdler, ref_adler32};

fn store(root: &Path, delay_ms: u64) -> DirStore {
    DirStore::new(DirConfig {
        root: root.to_path_buf(),
        stage_delay_ms: delay_ms,
    })
    .unwrap()
}

fn body(bytes: &[u8]) -> ByteReader {
    Box::pin(io::Cursor::new(bytes.to_vec()))
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

async fn read_all(s: &DirStore, name: &str) -> Vec<u8> {
    let mut r = s.read(name).await.unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    out
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    out.sort();
    out
}

/// Polls `stat` until online; the time it took.
async fn wait_online(s: &DirStore, name: &str, since: Instant) -> Duration {
    loop {
        let st = s.stat(name).await.unwrap().expect("aggregate exists");
        if st.online {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "never came online"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn config_defaults_and_overrides() {
    let d: DirConfig = toml::from_str("").unwrap();
    assert_eq!(d, DirConfig::default());
    assert_eq!(d.root, PathBuf::from("cold"));
    assert_eq!(d.stage_delay_ms, 2000);
    let c: DirConfig = toml::from_str("root = \"/srv/tape\"\nstage_delay_ms = 5").unwrap();
    assert_eq!(c.root, PathBuf::from("/srv/tape"));
    assert_eq!(c.stage_delay_ms, 5);
}

#[test]
fn reference_adler32_known_answer() {
    assert_eq!(ref_adler32(b"Wikipedia"), 0x11E6_0398);
    assert_eq!(ref_adler32(b""), 1);
}

#[tokio::test]
async fn new_creates_the_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lib");
    let s = store(&root, 0);
    assert_eq!(s.kind(), "dir");
    for d in ["tape", "staged", "requests"] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    assert_eq!(s.tape_path("h1/a.tar"), root.join("tape/h1/a.tar"));
}

#[tokio::test]
async fn written_aggregate_is_offline_and_unreadable() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), 0);
    let data = content(10_000, 1);
    s.write("h000001/a.tar", data.len() as u64, body(&data))
        .await
        .unwrap();
    let st = s.stat("h000001/a.tar").await.unwrap().unwrap();
    assert_eq!(
        st,
        AggregateStat {
            size: 10_000,
            online: false
        }
    );
    // Even with no delay at all, nothing is online until it is staged.
    match s.read("h000001/a.tar").await {
        Err(ColdError::Offline(n)) => assert_eq!(n, "h000001/a.tar"),
        Err(e) => panic!("expected Offline, got {e}"),
        Ok(_) => panic!("expected Offline, got a reader"),
    }
    assert_eq!(std::fs::read(s.tape_path("h000001/a.tar")).unwrap(), data);
    assert!(s.stat("h000001/other.tar").await.unwrap().is_none());
    assert!(matches!(
        s.read("h000001/other.tar").await,
        Err(ColdError::NotFound(_))
    ));
}

#[tokio::test]
async fn stage_comes_online_only_after_the_delay() {
    let tmp = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(400);
    let s = store(tmp.path(), delay.as_millis() as u64);
    let data = content(300_000, 2);
    s.write("a.tar", data.len() as u64, body(&data))
        .await
        .unwrap();
    let t0 = Instant::now();
    s.stage(&["a.tar".to_string()]).await.unwrap();
    assert!(!s.stat("a.tar").await.unwrap().unwrap().online);
    assert!(matches!(s.read("a.tar").await, Err(ColdError::Offline(_))));
    assert!(!tmp.path().join("staged/a.tar").exists());

    let took = wait_online(&s, "a.tar", t0).await;
    assert!(
        took >= delay,
        "online after {took:?}, before the {delay:?} delay"
    );
    assert!(tmp.path().join("staged/a.tar").is_file());
    assert_eq!(read_all(&s, "a.tar").await, data);
    // Staging an online aggregate again is a no-op.
    s.stage(&["a.tar".to_string()]).await.unwrap();
    assert!(s.stat("a.tar").await.unwrap().unwrap().online);
}

#[tokio::test]
async fn read_streams_back_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), 0);
    let data = content(3 * CHUNK + 12_345, 3);
    s.write("h2/b.tar", data.len() as u64, body(&data))
        .await
        .unwrap();
    s.stage(&["h2/b.tar".to_string()]).await.unwrap();
    let st = s.stat("h2/b.tar").await.unwrap().unwrap();
    assert!(st.online);
    assert_eq!(st.size, data.len() as u64);
    assert_eq!(read_all(&s, "h2/b.tar").await, data);
    // A read straight after stage (no stat in between) materialises it too.
    s.write("h2/c.tar", 3, body(b"xyz")).await.unwrap();
    s.stage(&["h2/c.tar".to_string()]).await.unwrap();
    assert_eq!(read_all(&s, "h2/c.tar").await, b"xyz");
}

#[tokio::test]
async fn checksum_is_adler32_of_the_stored_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), 60_000);
    let data = content(2 * CHUNK + 777, 4);
    s.write("c.tar", data.len() as u64, body(&data))
        .await
        .unwrap();
    // Offline is fine: the front end checksums what is on tape.
    assert_eq!(
        s.checksum("c.tar").await.unwrap(),
        Some(StoredChecksum::Adler32(ref_adler32(&data)))
    );
    s.write("w.tar", 9, body(b"Wikipedia")).await.unwrap();
    assert_eq!(
        s.checksum("w.tar").await.unwrap(),
        Some(StoredChecksum::Adler32(0x11E6_0398))
    );
    s.write("empty.tar", 0, body(b"")).await.unwrap();
    assert_eq!(
        s.checksum("empty.tar").await.unwrap(),
        Some(StoredChecksum::Adler32(1))
    );

    // The hook: corrupt the cold copy and the store's checksum tells.
    let path = s.tape_path("c.tar");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1_000_000] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let Some(StoredChecksum::Adler32(after)) = s.checksum("c.tar").await.unwrap() else {
        panic!("expected adler32");
    };
    assert_ne!(after, ref_adler32(&data));
    assert_eq!(after, ref_adler32(&bytes));

    assert!(matches!(
        s.checksum("nope.tar").await,
        Err(ColdError::NotFound(n)) if n == "nope.tar"
    ));
}

/// Yields its bytes, then an I/O error.
struct FailingReader(io::Cursor<Vec<u8>>);

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => Poll::Ready(Err(
                io::Error::new(ErrorKind::ConnectionReset, "source went away"),
            )),
            other => other,
        }
    }
}

#[tokio::test]
async fn bad_streams_fail_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), 0);
    let data = content(CHUNK + 10, 5);

    // Short.
    let e = s
        .write("h3/short.tar", data.len() as u64 + 1, body(&data))
        .await
        .unwrap_err();
    assert!(matches!(e, ColdError::Failed(_)), "{e}");
    // Long.
    let e = s
        .write("h3/long.tar", data.len() as u64 - 1, body(&data))
        .await
        .unwrap_err();
    assert!(matches!(e, ColdError::Failed(_)), "{e}");
    // Broken source.
    let reader: ByteReader = Box::pin(FailingReader(io::Cursor::new(data.clone())));
    let e = s
        .write("h3/broken.tar", 2 * data.len() as u64, reader)
        .await
        .unwrap_err();
    assert!(matches!(e, ColdError::Failed(_)), "{e}");

    for name in ["h3/short.tar", "h3/long.tar", "h3/broken.tar"] {
        assert!(s.stat(name).await.unwrap().is_none(), "{name}");
    }
    // No temporary left behind either.
    assert_eq!(files_under(&tmp.path().join("tape")), Vec::<String>::new());

    // A failed rewrite keeps the previous aggregate intact.
    s.write("h3/keep.tar", 4, body(b"good")).await.unwrap();
    let e = s.write("h3/keep.tar", 10, body(b"bad")).await.unwrap_err();
    assert!(matches!(e, ColdError::Failed(_)), "{e}");
    assert_eq!(std::fs::read(s.tape_path("h3/keep.tar")).unwrap(), b"good");
    assert_eq!(files_under(&tmp.path().join("tape")), ["h3/keep.tar"]);
}

#[tokio::test]
async fn a_cancelled_write_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), 0);
    // A source that sends some bytes and then stalls forever.
    let (mut tx, rx) = tokio::io::duplex(64 * 1024);
    tx.write_all(&content(50_000, 6)).await.unwrap();
    let reader: ByteReader = Box::pin(rx);
    let r = tokio::time::timeout(
        Duration::from_millis(300),
        s.write("stall.tar", 1_000_000, reader),
    )
    .await;
    assert!(r.is_err(), "the write should still be waiting");
    assert!(s.stat("stall.tar").await.unwrap().is_none());
    assert_eq!(files_under(&tmp.path().join("tape")), Vec::<String>::new());
    drop(tx);
}

#[tokio::test]
async fn rewrite_replaces_and_goes_back_to_tape() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), 0);
    s.write("r.tar", 3, body(b"old")).await.unwrap();
    s.stage(&["r.tar".to_string()]).await.unwrap();
    assert_eq!(read_all(&s, "r.tar").await, b"old");

    let new = content(5000, 7);
    s.write("r.tar", new.len() as u64, body(&new))
        .await
        .unwrap();
    let st = s.stat("r.tar").await.unwrap().unwrap();
    assert_eq!(st.size, 5000);
    assert!(!st.online, "a rewritten aggregate is on tape again");
    assert!(matches!(s.read("r.tar").await, Err(ColdError::Offline(_))));
    assert_eq!(
        s.checksum("r.tar").await.unwrap(),
        Some(StoredChecksum::Adler32(ref_adler32(&new)))
    );
    s.stage(&["r.tar".to_string()]).await.unwrap();
    assert_eq!(read_all(&s, "r.tar").await, new);
    assert_eq!(files_under(&tmp.path().join("tape")), ["r.tar"]);
}

#[tokio::test]
async fn a_stage_request_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(1500);
    let data = content(4096, 8);
    let t0;
    {
        let s = store(tmp.path(), delay.as_millis() as u64);
        s.write("h9/x.tar", data.len() as u64, body(&data))
            .await
            .unwrap();
        t0 = Instant::now();
        s.stage(&["h9/x.tar".to_string()]).await.unwrap();
        assert!(!s.stat("h9/x.tar").await.unwrap().unwrap().online);
    } // the process "stops"
    tokio::time::sleep(Duration::from_millis(700)).await;

    let s = store(tmp.path(), delay.as_millis() as u64);
    assert!(!s.stat("h9/x.tar").await.unwrap().unwrap().online);
    // Asking again after the restart does not restart the clock.
    s.stage(&["h9/x.tar".to_string()]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let st = s.stat("h9/x.tar").await.unwrap().unwrap();
    assert!(
        st.online,
        "offline {:?} after the first request (delay {delay:?})",
        t0.elapsed()
    );
    assert!(t0.elapsed() >= delay);
    assert_eq!(read_all(&s, "h9/x.tar").await, data);
}

#[tokio::test]
async fn evict_takes_it_offline_again() {
    let tmp = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(200);
    let s = store(tmp.path(), delay.as_millis() as u64);
    s.write("e.tar", 5, body(b"hello")).await.unwrap();
    s.stage(&["e.tar".to_string()]).await.unwrap();
    wait_online(&s, "e.tar", Instant::now()).await;
    assert_eq!(read_all(&s, "e.tar").await, b"hello");

    s.evict("e.tar").await.unwrap();
    assert!(!s.stat("e.tar").await.unwrap().unwrap().online);
    assert!(matches!(s.read("e.tar").await, Err(ColdError::Offline(_))));
    assert!(!tmp.path().join("staged/e.tar").exists());
    // The request went too: it does not come back by itself.
    tokio::time::sleep(delay + Duration::from_millis(200)).await;
    assert!(!s.stat("e.tar").await.unwrap().unwrap().online);
    // The cold copy stays, and evicting again is fine.
    assert_eq!(std::fs::read(s.tape_path("e.tar")).unwrap(), b"hello");
    s.evict("e.tar").await.unwrap();
    s.evict("never-written.tar").await.unwrap();
}

#[tokio::test]
async fn remove_deletes_everything_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), 0);
    s.write("h5/d.tar", 3, body(b"abc")).await.unwrap();
    s.write("h5/pending.tar", 3, body(b"def")).await.unwrap();
    s.stage(&["h5/d.tar".to_string()]).await.unwrap();
    assert!(s.stat("h5/d.tar").await.unwrap().unwrap().online);
    let slow = store(tmp.path(), 60_000);
    slow.stage(&["h5/pending.tar".to_string()]).await.unwrap();

    for name in ["h5/d.tar", "h5/pending.tar"] {
        s.remove(name).await.unwrap();
        assert!(s.stat(name).await.unwrap().is_none(), "{name}");
        assert!(matches!(s.read(name).await, Err(ColdError::NotFound(_))));
        s.remove(name).await.unwrap();
    }
    for dir in ["tape", "staged", "requests"] {
        assert_eq!(
            files_under(&tmp.path().join(dir)),
            Vec::<String>::new(),
            "{dir}"
        );
    }
    // A directory of aggregates is not an aggregate.
    s.write("h6/a.tar", 1, body(b"z")).await.unwrap();
    assert!(s.stat("h6").await.unwrap().is_none());
    s.remove("h6").await.unwrap();
    assert!(s.stat("h6/a.tar").await.unwrap().is_some());
}

#[tokio::test]
async fn stage_of_a_missing_aggregate_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), 0);
    s.write("here.tar", 2, body(b"ok")).await.unwrap();
    let e = s
        .stage(&["gone.tar".to_string(), "here.tar".to_string()])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ColdError::NotFound(n) if n == "gone.tar"),
        "{e}"
    );
    // The others were still requested.
    assert!(s.stat("here.tar").await.unwrap().unwrap().online);
}

#[tokio::test]
async fn bad_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lib");
    let s = store(&root, 0);
    s.write("ok.tar", 1, body(b"x")).await.unwrap();
    for bad in [
        "",
        "/etc/passwd",
        "../escape.tar",
        "a/../../escape.tar",
        "a//b",
        "./x",
        "UPPER.tar",
        "sp ace.tar",
        "ok.tar.~tmp.0",
    ] {
        let failed = |r: ColdResult<()>| matches!(r, Err(ColdError::Failed(_)));
        assert!(failed(s.write(bad, 1, body(b"x")).await), "write {bad:?}");
        assert!(failed(s.stat(bad).await.map(drop)), "stat {bad:?}");
        assert!(failed(s.checksum(bad).await.map(drop)), "checksum {bad:?}");
        assert!(failed(s.read(bad).await.map(drop)), "read {bad:?}");
        assert!(failed(s.stage(&[bad.to_string()]).await), "stage {bad:?}");
        assert!(failed(s.evict(bad).await), "evict {bad:?}");
        assert!(failed(s.remove(bad).await), "remove {bad:?}");
    }
    // One bad name refuses the whole stage request.
    assert!(
        s.stage(&["ok.tar".to_string(), "../x".to_string()])
            .await
            .is_err()
    );
    assert!(!s.stat("ok.tar").await.unwrap().unwrap().online);
    // Nothing escaped the root.
    assert!(!tmp.path().join("escape.tar").exists());
    assert!(!root.join("escape.tar").exists());
    assert_eq!(files_under(&root), ["tape/ok.tar"]);
}

/// The byte at offset `i` of a generated stream.
fn gen_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Generates `len` bytes, and records how far it ran ahead of the bytes on disk in `watch`'s
/// temporary file: a writer that buffered the stream would let it run far ahead.
struct Generator {
    pos: u64,
    len: u64,
    watch: PathBuf,
    max_lead: Arc<AtomicU64>,
}

impl Generator {
    fn bytes_on_disk(&self) -> u64 {
        std::fs::read_dir(&self.watch)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().contains(".~tmp."))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .max()
            .unwrap_or(0)
    }
}

impl AsyncRead for Generator {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let lead = self.pos.saturating_sub(self.bytes_on_disk());
        self.max_lead.fetch_max(lead, Ordering::Relaxed);
        let n = (self.len - self.pos)
            .min(buf.remaining() as u64)
            .min(256 * 1024);
        let chunk: Vec<u8> = (self.pos..self.pos + n).map(gen_byte).collect();
        buf.put_slice(&chunk);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_large_write_streams_through() {
    const LEN: u64 = 64 << 20;
    const MAX_LEAD: u64 = 16 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), 0);
    let max_lead = Arc::new(AtomicU64::new(0));
    let reader: ByteReader = Box::pin(Generator {
        pos: 0,
        len: LEN,
        watch: tmp.path().join("tape"),
        max_lead: max_lead.clone(),
    });
    s.write("big.tar", LEN, reader).await.unwrap();
    let lead = max_lead.load(Ordering::Relaxed);
    assert!(
        lead <= MAX_LEAD,
        "the stream ran {lead} bytes ahead of the disk: buffered, not streamed"
    );
    assert_eq!(s.stat("big.tar").await.unwrap().unwrap().size, LEN);

    s.stage(&["big.tar".to_string()]).await.unwrap();
    let mut r = s.read("big.tar").await.unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let mut expect = RefAdler::new();
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        let want: Vec<u8> = (pos..pos + n as u64).map(gen_byte).collect();
        assert!(
            buf[..n] == want[..],
            "bytes differ in [{pos}, {})",
            pos + n as u64
        );
        expect.update(&want);
        pos += n as u64;
    }
    assert_eq!(pos, LEN);
    assert_eq!(
        s.checksum("big.tar").await.unwrap(),
        Some(StoredChecksum::Adler32(expect.sum()))
    );
}

#[tokio::test]
async fn shared_in_an_arc_across_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Arc::new(store(tmp.path(), 0));
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("p/{i}.tar");
            let data = content(10_000 + usize::from(i), i);
            s.write(&name, data.len() as u64, body(&data))
                .await
                .unwrap();
            s.stage(std::slice::from_ref(&name)).await.unwrap();
            assert_eq!(read_all(&s, &name).await, data);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let cold: Arc<dyn ColdStore> = s;
    assert_eq!(cold.kind(), "dir");
}

#[tokio::test]
async fn partials_of_a_dead_writer_are_swept_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lib");
    let s = store(&root, 0);
    s.write("h/done.tar", 3, body(b"abc")).await.unwrap();
    // A write that has sent part of its aggregate when its process dies: the stream stays
    // open, and the future is forgotten, so no destructor removes its temporary (as kill -9).
    let (mut tx, rx) = tokio::io::duplex(64 << 10);
    tx.write_all(&content(32 << 10, 3)).await.unwrap();
    let mut dead = Box::pin(s.write("h/dead.tar", 1 << 20, Box::pin(rx)));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut dead)
            .await
            .is_err(),
        "the write waits for the rest of its stream"
    );
    std::mem::forget(dead);
    let partial: Vec<String> = files_under(&root)
        .into_iter()
        .filter(|f| f.starts_with("tape/h/dead.tar.~tmp."))
        .collect();
    assert_eq!(partial.len(), 1, "{:?}", files_under(&root));
    // Written to just now: a live writer's, kept.
    assert!(
        s.sweep_partials(Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty()
    );
    let removed = s.sweep_partials(Duration::ZERO).await.unwrap();
    assert_eq!(removed, vec![root.join(&partial[0]).display().to_string()]);
    assert_eq!(files_under(&root), ["tape/h/done.tar"]);
    assert!(s.sweep_partials(Duration::ZERO).await.unwrap().is_empty());
}

/// A store whose tape directory is gone (an unmounted or removed file system) is unavailable,
/// not empty: the operators' alert probe and the archive's retries see an error, never "no such
/// aggregate".
#[tokio::test]
async fn a_store_whose_directory_is_gone_is_unavailable_not_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lib");
    let s = store(&root, 0);
    assert!(s.stat("h1/none.tar").await.unwrap().is_none());
    std::fs::rename(&root, tmp.path().join("away")).unwrap();
    let gone = s.stat("h1/none.tar").await.unwrap_err();
    assert!(matches!(gone, ColdError::Unavailable(_)), "{gone:?}");
    assert!(gone.to_string().contains("tape"), "{gone}");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("tape"), "not a directory").unwrap();
    let file = s.stat("none.tar").await.unwrap_err();
    assert!(file.to_string().contains("not a directory"), "{file}");
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::rename(tmp.path().join("away"), &root).unwrap();
    assert!(s.stat("h1/none.tar").await.unwrap().is_none());
}
