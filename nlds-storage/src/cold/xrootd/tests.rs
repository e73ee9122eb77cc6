use std::os::unix::process::ExitStatusExt;
use std::time::Instant;

use super::*;

/// The test server's URL (scripts/xrootd.sh). A missing URL fails the test, unless skipping
/// was asked for (`nlds_hooks::skip`): then `None`.
fn server_url() -> Option<String> {
    nlds_hooks::skip::service(
        "",
        "NLDS_TEST_XROOTD_URL",
        "run scripts/xrootd.sh (or scripts/services.sh) and scripts/test.sh",
    )
}

fn store_at(url: &str) -> XrootdStore {
    XrootdStore::new(XrootdConfig {
        url: url.to_string(),
        timeout_secs: 30,
        ..Default::default()
    })
    .unwrap()
}

/// A store and a fresh directory name for one test's aggregates.
fn setup() -> Option<(XrootdStore, String)> {
    let url = server_url()?;
    Some((
        store_at(&url),
        format!("t{}", uuid::Uuid::new_v4().simple()),
    ))
}

use crate::cold::testing::RefAdler;

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn body(bytes: &[u8]) -> ByteReader {
    Box::pin(io::Cursor::new(bytes.to_vec()))
}

/// `len` pseudo-random bytes made on the fly (never held in memory).
struct Generated {
    left: u64,
    state: u64,
}

impl Generated {
    fn new(len: u64, seed: u64) -> Self {
        Self {
            left: len,
            state: seed | 1,
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            // xorshift64
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *b = (self.state >> 24) as u8;
        }
    }
}

impl AsyncRead for Generated {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = usize::try_from(this.left)
            .unwrap_or(usize::MAX)
            .min(buf.remaining())
            .min(256 * 1024);
        let mut chunk = vec![0u8; n];
        this.fill(&mut chunk);
        buf.put_slice(&chunk);
        this.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

async fn read_all(s: &XrootdStore, name: &str) -> Vec<u8> {
    let mut r = s.read(name).await.unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    out
}

/// Polls `stat` until `online` is `want`; the time it took. While waiting to come online the
/// stage request is repeated every 10 s, as the archive-get worker does: an HSM may drop a
/// request (the emulator's background recall can lose one on a loaded machine), and staging
/// is idempotent.
async fn wait_for(s: &XrootdStore, name: &str, want: bool, limit: Duration) -> Duration {
    let since = Instant::now();
    let mut asked = Instant::now();
    loop {
        if want && asked.elapsed() > Duration::from_secs(10) {
            let _ = s.stage(&[name.to_owned()]).await;
            asked = Instant::now();
        }
        let st = s.stat(name).await.unwrap().expect("aggregate exists");
        if st.online == want {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "{name} never became {}",
            if want { "online" } else { "offline" }
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Names under `dir` on the server (temporaries included), via `xrdfs ls`.
async fn listing(s: &XrootdStore, dir: &str) -> Vec<String> {
    let done = s.xrdfs(&["ls", &s.path(dir)]).await.unwrap();
    if !done.status.success() {
        return Vec::new();
    }
    let mut v: Vec<String> = done
        .stdout
        .lines()
        .filter_map(|l| l.trim().rsplit('/').next().map(str::to_string))
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

#[test]
fn config_defaults_and_toml() {
    let d: XrootdConfig = toml::from_str("").unwrap();
    assert_eq!(d, XrootdConfig::default());
    assert_eq!((d.xrdcp.as_str(), d.xrdfs.as_str()), ("xrdcp", "xrdfs"));
    assert_eq!(d.timeout_secs, 60);
    let c: XrootdConfig = toml::from_str(
        "url = \"root://tape.example.org//eos/cta/nlds\"\n\
         command_prefix = [\"nsenter\", \"--net=/run/netns/t\"]\n\
         [env]\nXrdSecPROTOCOL = \"sss\"\nXrdSecSSSKT = \"/secret/keytab\"\n",
    )
    .unwrap();
    assert_eq!(c.env.len(), 2);
    assert_eq!(c.command_prefix.len(), 2);
    let s = XrootdStore::new(c).unwrap();
    assert_eq!(s.server, "root://tape.example.org");
    assert_eq!(s.path("h1/a.tar"), "/eos/cta/nlds/h1/a.tar");
    assert_eq!(
        s.url(&s.path("h1/a.tar")),
        "root://tape.example.org//eos/cta/nlds/h1/a.tar"
    );
}

#[test]
fn debug_never_shows_env_values() {
    let mut c = XrootdConfig {
        url: "root://h//x".into(),
        ..Default::default()
    };
    c.env
        .insert("XrdSecSSSKT".into(), "/very/secret/keytab".into());
    for shown in [
        format!("{c:?}"),
        format!("{:?}", XrootdStore::new(c).unwrap()),
    ] {
        assert!(shown.contains("XrdSecSSSKT"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}

#[test]
fn urls_are_split() {
    for (url, server, base) in [
        ("root://h:1094//tape", "root://h:1094", "/tape"),
        ("root://h//eos/cta/nlds/", "root://h", "/eos/cta/nlds"),
        ("roots://h:1095/a/b", "roots://h:1095", "/a/b"),
        ("root://h", "root://h", ""),
        ("root://h//", "root://h", ""),
    ] {
        let (s, b) = split_url(url).unwrap();
        assert_eq!((s.as_str(), b.as_str()), (server, base), "{url}");
    }
    for bad in [
        "",
        "h:1094//tape",
        "http://h//tape",
        "root:///tape",
        "root://u@h//tape",
        "root://h//ta pe",
        "root://h//tape?x=1",
        "root://h//a/../b",
        "root://h//a//b",
    ] {
        assert!(
            matches!(split_url(bad), Err(ColdError::Failed(_))),
            "{bad:?}"
        );
    }
    assert!(XrootdStore::new(XrootdConfig::default()).is_err());
}

#[test]
fn answers_are_parsed() {
    let stat = "Path:   /tape/a\nId:     0\nSize:   100000\nMTime:  2026-11-25 04:20:44\n\
                Flags:  60 (Other|Offline|IsReadable|IsWritable)\nMode:   0600\n";
    assert_eq!(parse_stat(stat), Some((100_000, 60)));
    assert_eq!(parse_stat("Size: 1\n"), None);
    assert_eq!(parse_adler32("adler32 5b576108\n"), Some(0x5b57_6108));
    assert_eq!(parse_adler32("ADLER32 1"), Some(1));
    assert_eq!(parse_adler32("md5 5b576108"), None);
    assert_eq!(parse_adler32("adler32 123456789"), None);
    assert_eq!(parse_adler32(""), None);
}

#[test]
fn errors_are_classified() {
    let failed = ExitStatus::from_raw(54 << 8);
    let killed = ExitStatus::from_raw(9);
    let c = |s: &str| classify("h1/a.tar", "xrdfs stat", failed, s);
    assert!(matches!(
        c("[ERROR] Server responded with an error: [3011] Unable to locate /tape/a; no such file or directory"),
        ColdError::NotFound(n) if n == "h1/a.tar"
    ));
    assert!(matches!(
        c("[FATAL] Connection error"),
        ColdError::Unavailable(_)
    ));
    assert!(matches!(
        c("Run: [ERROR] Operation expired:  (source)"),
        ColdError::Unavailable(_)
    ));
    assert!(matches!(
        c("[ERROR] Server responded with an error: [3024] overloaded"),
        ColdError::Unavailable(_)
    ));
    assert!(matches!(
        c("[ERROR] Server responded with an error: [3018] Unable to rename; file exists"),
        ColdError::Failed(_)
    ));
    assert!(matches!(
        c("[FATAL] Auth failed: no protocols"),
        ColdError::Failed(_)
    ));
    assert!(matches!(c("something odd"), ColdError::Failed(_)));
    assert!(matches!(
        classify("a", "xrdcp", killed, ""),
        ColdError::Unavailable(_)
    ));
    let e = c("[3010] Unable to open; permission denied");
    assert!(e.to_string().contains("permission denied"), "{e}");
    assert_eq!(server_code("x [12] [3011] y"), Some(3011));
    assert_eq!(server_code("[30x1]"), None);
}

#[tokio::test]
async fn bad_names_are_refused_before_any_command() {
    // `false` fails every command: only name checks can answer.
    let s = XrootdStore::new(XrootdConfig {
        url: "root://127.0.0.1:1//tape".into(),
        xrdcp: "false".into(),
        xrdfs: "false".into(),
        ..Default::default()
    })
    .unwrap();
    for bad in ["", "/abs.tar", "a/../b", "UPPER.tar"] {
        assert!(matches!(s.stat(bad).await, Err(ColdError::Failed(m)) if m.contains("invalid")));
        assert!(matches!(
            s.write(bad, 1, body(b"x")).await,
            Err(ColdError::Failed(m)) if m.contains("invalid")
        ));
        assert!(matches!(
            s.stage(&[bad.to_string()]).await,
            Err(ColdError::Failed(_))
        ));
    }
    // Nothing to stage: no command at all.
    s.stage(&[]).await.unwrap();
}

#[tokio::test]
async fn write_stat_checksum_read_replace() {
    let Some((s, dir)) = setup() else { return };
    assert_eq!(s.kind(), "xrootd");
    let name = format!("{dir}/h000001/a.tar");
    let data = content(300_000, 1);
    s.write(&name, data.len() as u64, body(&data))
        .await
        .unwrap();

    let st = s.stat(&name).await.unwrap().unwrap();
    assert_eq!(
        st,
        AggregateStat {
            size: 300_000,
            online: true
        }
    );
    let mut want = RefAdler::new();
    want.update(&data);
    assert_eq!(
        s.checksum(&name).await.unwrap(),
        Some(StoredChecksum::Adler32(want.sum()))
    );
    assert_eq!(read_all(&s, &name).await, data);

    // Rewriting replaces; no temporary is left beside it.
    let data2 = content(1234, 7);
    s.write(&name, data2.len() as u64, body(&data2))
        .await
        .unwrap();
    assert_eq!(read_all(&s, &name).await, data2);
    assert_eq!(listing(&s, &format!("{dir}/h000001")).await, ["a.tar"]);

    // An empty aggregate is an aggregate.
    let empty = format!("{dir}/empty.tar");
    s.write(&empty, 0, body(b"")).await.unwrap();
    assert_eq!(
        s.stat(&empty).await.unwrap(),
        Some(AggregateStat {
            size: 0,
            online: true
        })
    );
    assert!(read_all(&s, &empty).await.is_empty());

    // Missing ones.
    let missing = format!("{dir}/missing.tar");
    assert_eq!(s.stat(&missing).await.unwrap(), None);
    assert!(matches!(s.read(&missing).await, Err(ColdError::NotFound(n)) if n == missing));
    assert!(matches!(
        s.checksum(&missing).await,
        Err(ColdError::NotFound(_))
    ));
    for n in [&name, &empty] {
        s.remove(n).await.unwrap();
    }
}

#[tokio::test]
async fn large_stream_is_written_and_read_back_without_buffering() {
    let Some((s, dir)) = setup() else { return };
    let name = format!("{dir}/big.tar");
    const LEN: u64 = 64 << 20;
    const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
    let started = Instant::now();
    s.write(&name, LEN, Box::pin(Generated::new(LEN, SEED)))
        .await
        .unwrap();
    eprintln!("wrote 64 MiB in {:?}", started.elapsed());
    assert_eq!(
        s.stat(&name).await.unwrap(),
        Some(AggregateStat {
            size: LEN,
            online: true
        })
    );

    // The expected checksum, from the same generator, chunk by chunk.
    let mut gen_ = Generated::new(LEN, SEED);
    let mut want = RefAdler::new();
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..(LEN >> 20) {
        gen_.fill(&mut chunk);
        want.update(&chunk);
    }
    assert_eq!(
        s.checksum(&name).await.unwrap(),
        Some(StoredChecksum::Adler32(want.sum()))
    );

    // Read back and compare against a regenerated stream, chunk by chunk.
    let started = Instant::now();
    let mut r = s.read(&name).await.unwrap();
    let mut expect = Generated::new(LEN, SEED);
    let mut got = vec![0u8; 1 << 20];
    let mut want_chunk = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut got).await.unwrap();
        if n == 0 {
            break;
        }
        expect.fill(&mut want_chunk[..n]);
        assert!(
            got[..n] == want_chunk[..n],
            "bytes differ near offset {total}"
        );
        total += n as u64;
    }
    assert_eq!(total, LEN);
    eprintln!("read 64 MiB in {:?}", started.elapsed());
    s.remove(&name).await.unwrap();
}

#[tokio::test]
async fn evict_stage_read_cycle() {
    let Some((s, dir)) = setup() else { return };
    let name = format!("{dir}/cycle.tar");
    let other = format!("{dir}/online.tar");
    let data = content(200_000, 3);
    s.write(&name, data.len() as u64, body(&data))
        .await
        .unwrap();
    s.write(&other, 10, body(&data[..10])).await.unwrap();

    s.evict(&name).await.unwrap();
    wait_for(&s, &name, false, Duration::from_secs(30)).await;
    assert_eq!(
        s.stat(&name).await.unwrap(),
        Some(AggregateStat {
            size: 200_000,
            online: false
        })
    );
    assert!(matches!(s.read(&name).await, Err(ColdError::Offline(n)) if n == name));
    assert!(matches!(
        s.checksum(&name).await,
        Err(ColdError::Offline(_))
    ));

    // Staging a missing name still asks for the others, then says which one is missing.
    let missing = format!("{dir}/missing.tar");
    let asked = [name.clone(), other.clone(), missing.clone()];
    assert!(matches!(s.stage(&asked).await, Err(ColdError::NotFound(n)) if n == missing));
    s.stage(std::slice::from_ref(&name)).await.unwrap(); // idempotent
    let took = wait_for(&s, &name, true, Duration::from_secs(120)).await;
    eprintln!("staged in {took:?}");
    assert_eq!(read_all(&s, &name).await, data);
    let mut want = RefAdler::new();
    want.update(&data);
    assert_eq!(
        s.checksum(&name).await.unwrap(),
        Some(StoredChecksum::Adler32(want.sum()))
    );

    // Rewriting an aggregate that is only on tape replaces it.
    s.evict(&name).await.unwrap();
    wait_for(&s, &name, false, Duration::from_secs(30)).await;
    let data2 = content(4321, 9);
    s.write(&name, data2.len() as u64, body(&data2))
        .await
        .unwrap();
    assert_eq!(
        s.stat(&name).await.unwrap(),
        Some(AggregateStat {
            size: 4321,
            online: true
        })
    );
    assert_eq!(read_all(&s, &name).await, data2);
    s.evict(&name).await.unwrap();
    wait_for(&s, &name, false, Duration::from_secs(30)).await;
    s.stage(std::slice::from_ref(&name)).await.unwrap();
    wait_for(&s, &name, true, Duration::from_secs(120)).await;
    assert_eq!(read_all(&s, &name).await, data2);
    for n in [&name, &other] {
        s.remove(n).await.unwrap();
    }
}

#[tokio::test]
async fn remove_twice_and_remove_offline() {
    let Some((s, dir)) = setup() else { return };
    let name = format!("{dir}/gone.tar");
    s.write(&name, 5, body(b"hello")).await.unwrap();
    s.remove(&name).await.unwrap();
    assert_eq!(s.stat(&name).await.unwrap(), None);
    s.remove(&name).await.unwrap();

    // An aggregate that is only on tape goes too.
    s.write(&name, 5, body(b"hello")).await.unwrap();
    s.evict(&name).await.unwrap();
    wait_for(&s, &name, false, Duration::from_secs(30)).await;
    s.remove(&name).await.unwrap();
    assert_eq!(s.stat(&name).await.unwrap(), None);
    s.stage(std::slice::from_ref(&name))
        .await
        .expect_err("nothing left to stage");
}

#[tokio::test]
async fn short_or_long_streams_leave_nothing() {
    let Some((s, dir)) = setup() else { return };
    let name = format!("{dir}/h1/short.tar");
    let data = content(500_000, 4);
    match s.write(&name, 1_000_000, body(&data)).await {
        Err(ColdError::Failed(m)) => assert!(m.contains("500000 of 1000000"), "{m}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(s.stat(&name).await.unwrap(), None);
    match s.write(&name, 1000, body(&data)).await {
        Err(ColdError::Failed(m)) => assert!(m.contains("more than"), "{m}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(s.stat(&name).await.unwrap(), None);

    // A failed rewrite keeps the aggregate that was there.
    s.write(&name, 10, body(&data[..10])).await.unwrap();
    assert!(s.write(&name, 11, body(&data[..10])).await.is_err());
    assert_eq!(read_all(&s, &name).await, &data[..10]);
    // No temporary is left beside it.
    assert_eq!(listing(&s, &format!("{dir}/h1")).await, ["short.tar"]);
    s.remove(&name).await.unwrap();
}

#[tokio::test]
async fn commands_run_behind_the_prefix_with_the_env() {
    let Some(url) = server_url() else { return };
    // A wrapper that refuses to run the tool unless the configured variable reached it.
    let guard = r#"[ -n "$NLDS_TEST_PROBE" ] || exit 97; exec "$@""#;
    let mut cfg = XrootdConfig {
        url,
        timeout_secs: 30,
        command_prefix: vec!["sh".into(), "-c".into(), guard.into(), "sh".into()],
        ..Default::default()
    };
    let name = format!("t{}/wrapped.tar", uuid::Uuid::new_v4().simple());
    let bare = XrootdStore::new(cfg.clone()).unwrap();
    assert!(bare.stat(&name).await.is_err());
    cfg.env.insert("NLDS_TEST_PROBE".into(), "1".into());
    let s = XrootdStore::new(cfg).unwrap();
    s.write(&name, 3, body(b"abc")).await.unwrap();
    assert_eq!(read_all(&s, &name).await, b"abc");
    s.remove(&name).await.unwrap();
    assert_eq!(s.stat(&name).await.unwrap(), None);
}

#[tokio::test]
async fn unreachable_server_is_unavailable_quickly() {
    // Only needs the client tools, which come with the server.
    if server_url().is_none() {
        return;
    }
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = XrootdStore::new(XrootdConfig {
        url: format!("root://127.0.0.1:{port}//tape"),
        timeout_secs: 10,
        ..Default::default()
    })
    .unwrap();
    let started = Instant::now();
    let results = [
        s.stat("a.tar").await.map(|_| ()),
        s.write("a.tar", 3, body(b"abc")).await,
        s.read("a.tar").await.map(|_| ()),
        s.checksum("a.tar").await.map(|_| ()),
        s.stage(&["a.tar".to_string()]).await,
        s.evict("a.tar").await,
        s.remove("a.tar").await,
    ];
    for r in results {
        match r {
            Err(e @ ColdError::Unavailable(_)) => {
                assert!(e.is_transient());
                assert!(e.to_string().contains(&port.to_string()), "{e}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}
