//! Unit tests, and tests against a real S3 endpoint (moto, ...) named by
//! `NLDS_TEST_S3_ENDPOINT`: without it those are skipped loudly, or fail when `CI` is set.
//! Each uses its own bucket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use tokio::io::{AsyncRead, ReadBuf};
use uuid::Uuid;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use tokio::io::AsyncReadExt;

use super::checksums::{Reported, Written, check_reported, composite_crc32c, encode_crc};
use super::*;

const ENDPOINT_VAR: &str = "NLDS_TEST_S3_ENDPOINT";
const MIB: u64 = 1 << 20;

/// The test endpoint; when it is not configured the test fails, or with skipping allowed
/// (`nlds_hooks::skip`) `None`.
fn endpoint(test: &str) -> Option<String> {
    nlds_hooks::skip::service(
        test,
        ENDPOINT_VAR,
        "run scripts/services.sh and scripts/test.sh, or start an S3 endpoint \
         (e.g. `moto_server -H 127.0.0.1 -p 9321`) and set NLDS_TEST_S3_ENDPOINT",
    )
}

fn config(endpoint: &str, bucket: &str) -> GlacierConfig {
    GlacierConfig {
        store: nlds_settings::ObjectStoreConfig {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            access_key: "nlds-test".into(),
            secret_key: "nlds-test-secret".into(),
            secret_key_file: None,
            bucket: bucket.into(),
            ..Default::default()
        },
        part_size: 5 * MIB,
        ..GlacierConfig::default()
    }
}

struct Fixture {
    store: GlacierStore,
    /// The same bucket, for looking behind the store's back.
    client: Client,
    bucket: String,
}

impl Fixture {
    /// A store on a fresh bucket; `tune` adjusts its configuration.
    async fn new(test: &str, tune: impl FnOnce(&mut GlacierConfig)) -> Option<Fixture> {
        let endpoint = endpoint(test)?;
        let bucket = format!("nlds-test-{}", &Uuid::new_v4().simple().to_string()[..16]);
        let mut cfg = config(&endpoint, &bucket);
        tune(&mut cfg);
        let store = GlacierStore::new(&cfg).await.unwrap();
        store.ensure_bucket().await.unwrap();
        let client = s3::client(&cfg.store).await.unwrap();
        Some(Fixture {
            store,
            client,
            bucket,
        })
    }

    async fn head(&self, name: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        self.client
            .head_object()
            .bucket(&self.bucket)
            .key(self.store.key(name))
            .send()
            .await
            .unwrap()
    }

    /// Nothing under the name, and no multipart upload left behind.
    async fn assert_nothing_left(&self, name: &str) {
        assert_eq!(self.store.stat(name).await.unwrap(), None, "{name}");
        let uploads = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap();
        assert!(
            uploads.uploads().is_empty(),
            "multipart uploads left behind: {:?}",
            uploads.uploads()
        );
    }

    /// Stages `name` and waits until the store says it is online.
    async fn stage_and_wait(&self, name: &str) -> AggregateStat {
        self.store.stage(&[name.to_owned()]).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stat = self.store.stat(name).await.unwrap().expect(name);
            if stat.online {
                return stat;
            }
            assert!(Instant::now() < deadline, "{name} not restored in 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Does the store compute CRC32C composites correctly? (moto without its optional
    /// `crc32c` package computes CRC32 instead.)
    async fn composite_crc32c_is_right(&self) -> bool {
        let key = "probe/composite";
        let data = b"composite checksum probe";
        let crc = crc32c::crc32c(data);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .checksum_type(ChecksumType::Composite)
            .send()
            .await
            .unwrap();
        let id = created.upload_id().unwrap();
        let part = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .part_number(1)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .checksum_crc32_c(encode_crc(crc))
            .body(ByteStream::from_static(data))
            .send()
            .await
            .unwrap();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(
                        CompletedPart::builder()
                            .part_number(1)
                            .set_e_tag(part.e_tag().map(str::to_owned))
                            .checksum_crc32_c(encode_crc(crc))
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let reported = head.checksum_crc32_c().map(|v| split_part_count(v).0);
        let right = reported.and_then(decode_crc) == Some(composite_crc32c(&[crc]));
        if !right {
            eprintln!(
                "note: this S3 endpoint reports the composite CRC32C {reported:?} for one \
                 part, not {} (moto without the crc32c package computes CRC32)",
                encode_crc(composite_crc32c(&[crc]))
            );
        }
        right
    }
}

/// A deterministic pseudo-random stream of `len` bytes, handed out in odd-sized pieces,
/// failing with an I/O error at `fail_at` if set. Nothing is held in memory.
struct Generated {
    seed: u64,
    pos: u64,
    len: u64,
    fail_at: Option<u64>,
}

impl Generated {
    fn reader(seed: u64, len: u64) -> ByteReader {
        Box::pin(Generated {
            seed,
            pos: 0,
            len,
            fail_at: None,
        })
    }

    fn failing(seed: u64, len: u64, fail_at: u64) -> ByteReader {
        Box::pin(Generated {
            seed,
            pos: 0,
            len,
            fail_at: Some(fail_at),
        })
    }

    fn byte(seed: u64, pos: u64) -> u8 {
        // splitmix64 of the 8-byte word holding `pos`.
        let mut z = seed
            .wrapping_add(pos / 8)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> (8 * (pos % 8))) as u8
    }

    fn bytes(seed: u64, len: u64) -> Vec<u8> {
        (0..len).map(|p| Self::byte(seed, p)).collect()
    }
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.fail_at.is_some_and(|f| self.pos >= f) {
            return Poll::Ready(Err(io::Error::other("the source broke")));
        }
        let limit = self.fail_at.unwrap_or(self.len).min(self.len);
        let n = (limit - self.pos).min(buf.remaining() as u64).min(100_003);
        for _ in 0..n {
            let b = Self::byte(self.seed, self.pos);
            buf.put_slice(&[b]);
            self.pos += 1;
        }
        Poll::Ready(Ok(()))
    }
}

async fn read_all(mut r: ByteReader) -> Vec<u8> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    out
}

fn name(tag: &str) -> String {
    format!("h000001/{tag}-{}.tar", Uuid::new_v4().simple())
}

// ------------------------------------------------------------------ unit tests

#[test]
fn composite_checksum_matches_an_independently_computed_value() {
    // Values computed with a bit-by-bit CRC32C (reflected 0x82F63B78) outside this crate.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    let parts = [
        &b"The quick brown fox "[..],
        &b"jumps over the lazy dog"[..],
    ];
    let crcs: Vec<u32> = parts.iter().map(|p| crc32c::crc32c(p)).collect();
    assert_eq!(crcs, [0x4667_5bb9, 0x1fd9_2d92]);
    assert_eq!(composite_crc32c(&crcs), 0x895c_f16b);
    assert_eq!(encode_crc(composite_crc32c(&crcs)), "iVzxaw==");
    // The running full-object CRC the writer keeps while streaming the parts.
    let full = crc32c::crc32c_combine(
        crc32c::crc32c_combine(0, crcs[0], parts[0].len()),
        crcs[1],
        parts[1].len(),
    );
    assert_eq!(full, 0x2262_0404);
    assert_eq!(full, crc32c::crc32c(&parts.concat()));
    assert_eq!(decode_crc("ImIEBA=="), Some(0x2262_0404));
    assert_eq!(decode_crc("not base64!"), None);
    assert_eq!(decode_crc("AAAAAAA="), None, "5 bytes");
}

#[test]
fn reported_checksums_are_checked() {
    let multipart = Written {
        size: 43,
        full: 0x2262_0404,
        parts: vec![0x4667_5bb9, 0x1fd9_2d92],
    };
    let single = Written {
        size: 43,
        full: 0x2262_0404,
        parts: vec![],
    };
    let rep = |crc32c, checksum_type| Reported {
        size: Some(43),
        crc32c,
        checksum_type,
    };
    let composite = Some(&ChecksumType::Composite);
    let full_object = Some(&ChecksumType::FullObject);
    // Matches.
    assert_eq!(
        check_reported(&rep(Some("iVzxaw==-2"), composite), &multipart, true),
        Ok(())
    );
    assert_eq!(
        check_reported(&rep(Some("iVzxaw=="), None), &multipart, true),
        Ok(())
    );
    assert_eq!(
        check_reported(&rep(Some("ImIEBA=="), full_object), &multipart, true),
        Ok(())
    );
    assert_eq!(
        check_reported(&rep(Some("ImIEBA=="), None), &single, true),
        Ok(())
    );
    assert_eq!(
        check_reported(&rep(None, None), &single, true),
        Ok(()),
        "no checksum kept"
    );
    // Mismatches.
    for (r, w) in [
        (rep(Some("iVzxaA==-2"), composite), &multipart), // one bit off
        (rep(Some("iVzxaw==-3"), composite), &multipart), // part count
        (rep(Some("ImIEBA=="), composite), &multipart),   // the full CRC is not the composite
        (rep(Some("iVzxaw=="), full_object), &multipart), // nor the other way round
        (rep(Some("ImIEBQ=="), None), &single),
        (rep(Some("ImIEBA==-1"), None), &single),
        (rep(Some("garbage"), None), &single),
    ] {
        let err = check_reported(&r, w, true).unwrap_err();
        assert!(err.contains("CRC32C") || err.contains("part"), "{err}");
    }
    let short = Reported {
        size: Some(42),
        crc32c: Some("ImIEBA=="),
        checksum_type: None,
    };
    assert!(
        check_reported(&short, &single, true)
            .unwrap_err()
            .contains("42 bytes")
    );
    // Composite verification off: a wrong composite passes, a wrong size or full CRC does not.
    assert_eq!(
        check_reported(&rep(Some("AAAAAA==-2"), composite), &multipart, false),
        Ok(())
    );
    assert!(check_reported(&rep(Some("AAAAAA=="), full_object), &multipart, false).is_err());
    assert!(check_reported(&short, &multipart, false).is_err());
}

#[test]
fn part_counts_and_multipart_etags_are_recognised() {
    assert_eq!(split_part_count("iVzxaw==-2"), ("iVzxaw==", Some(2)));
    assert_eq!(split_part_count("iVzxaw=="), ("iVzxaw==", None));
    assert_eq!(split_part_count("a-"), ("a-", None));
    assert!(is_multipart_etag(Some(
        "\"d0952dc3292725341ab21c3e3c62dd13-2\""
    )));
    assert!(!is_multipart_etag(Some(
        "\"7b8c0097041de5d22d96344c3f3bef44\""
    )));
    assert!(!is_multipart_etag(None));
}

#[test]
fn part_size_grows_to_stay_within_ten_thousand_parts() {
    assert_eq!(part_size_for(12 * MIB, 5 * MIB), Some(5 * MIB));
    assert_eq!(part_size_for(10_000 * 5 * MIB, 5 * MIB), Some(5 * MIB));
    let big = 10_000 * 5 * MIB + 1;
    let part = part_size_for(big, 5 * MIB).unwrap();
    assert_eq!(part, 6 * MIB);
    assert!(big.div_ceil(part) <= MAX_PARTS);
    assert_eq!(part_size_for(MAX_PARTS * MAX_PART_SIZE + 1, 5 * MIB), None);
}

#[test]
fn online_state_follows_class_and_restore_header() {
    let now = DateTime::parse_from_rfc2822("Wed, 25 Nov 2026 04:00:00 GMT")
        .unwrap()
        .with_timezone(&Utc);
    let glacier = Some(&StorageClass::Glacier);
    let restored = r#"ongoing-request="false", expiry-date="Thu, 26 Nov 2026 04:16:57 GMT""#;
    let expired = r#"ongoing-request="false", expiry-date="Tue, 24 Nov 2026 04:16:57 GMT""#;
    let ongoing = r#"ongoing-request="true""#;
    assert!(is_online(None, None, None, now), "STANDARD is not reported");
    assert!(is_online(Some(&StorageClass::StandardIa), None, None, now));
    assert!(is_online(Some(&StorageClass::GlacierIr), None, None, now));
    assert!(!is_online(glacier, None, None, now));
    assert!(!is_online(
        Some(&StorageClass::DeepArchive),
        None,
        None,
        now
    ));
    assert!(!is_online(glacier, None, Some(ongoing), now));
    assert!(is_online(glacier, None, Some(restored), now));
    assert!(!is_online(glacier, None, Some(expired), now));
    assert!(is_online(
        glacier,
        None,
        Some(r#"ongoing-request="false""#),
        now
    ));
    let tiering = Some(&StorageClass::IntelligentTiering);
    assert!(is_online(tiering, None, None, now));
    assert!(!is_online(
        tiering,
        Some(&ArchiveStatus::ArchiveAccess),
        None,
        now
    ));
    assert!(is_online(
        tiering,
        Some(&ArchiveStatus::ArchiveAccess),
        Some(restored),
        now
    ));
}

#[test]
fn configuration_is_validated_and_parsed_and_keeps_the_secret() {
    let cfg = GlacierConfig::default();
    cfg.validate().unwrap();
    assert_eq!(cfg.prefix, "cold/");
    assert_eq!(cfg.restore_days, 1);
    let bad = [
        GlacierConfig {
            storage_class: "STANDARD".into(),
            ..GlacierConfig::default()
        },
        GlacierConfig {
            storage_class: "DEEP_ARCHIVE".into(),
            restore_tier: "Expedited".into(),
            ..GlacierConfig::default()
        },
        GlacierConfig {
            restore_tier: "Fast".into(),
            ..GlacierConfig::default()
        },
        GlacierConfig {
            restore_days: 0,
            ..GlacierConfig::default()
        },
        GlacierConfig {
            part_size: MIN_PART_SIZE - 1,
            ..GlacierConfig::default()
        },
        GlacierConfig {
            part_size: MAX_PART_SIZE + 1,
            ..GlacierConfig::default()
        },
        GlacierConfig {
            prefix: "/cold/".into(),
            ..GlacierConfig::default()
        },
    ];
    for cfg in bad {
        assert!(
            matches!(cfg.validate(), Err(ColdError::Failed(_))),
            "{cfg:?} accepted"
        );
    }
    let cfg: GlacierConfig = toml::from_str(
        r#"
        endpoint = "https://s3.example.org"
        bucket = "archive"
        secret_key = "very-secret-value"
        storage_class = "DEEP_ARCHIVE"
        restore_tier = "Bulk"
        restore_days = 3
        "#,
    )
    .unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.store.endpoint, "https://s3.example.org");
    assert_eq!(cfg.store.bucket, "archive");
    assert_eq!(cfg.store.region, "us-east-1", "defaulted");
    assert_eq!(cfg.prefix, "cold/", "defaulted");
    assert_eq!(cfg.part_size, 64 * MIB, "defaulted");
    assert_eq!(cfg.restore_days, 3);
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("very-secret-value"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

// ------------------------------------------------------------------ against S3

#[tokio::test]
async fn small_aggregate_is_written_cold_staged_and_read_back() {
    let Some(fx) = Fixture::new(
        "small_aggregate_is_written_cold_staged_and_read_back",
        |_| {},
    )
    .await
    else {
        return;
    };
    let name = name("small");
    let len = 100_000;
    fx.store
        .write(&name, len, Generated::reader(1, len))
        .await
        .unwrap();
    let head = fx.head(&name).await;
    assert_eq!(head.storage_class(), Some(&StorageClass::Glacier));
    assert!(!is_multipart_etag(head.e_tag()), "{:?}", head.e_tag());
    assert_eq!(
        fx.store.stat(&name).await.unwrap(),
        Some(AggregateStat {
            size: len,
            online: false
        })
    );
    let expected = Generated::bytes(1, len);
    assert_eq!(
        fx.store.checksum(&name).await.unwrap(),
        Some(StoredChecksum::Crc32c(crc32c::crc32c(&expected)))
    );
    match fx.store.read(&name).await {
        Err(ColdError::Offline(n)) => assert_eq!(n, name),
        Err(e) => panic!("expected Offline, got {e:?}"),
        Ok(_) => panic!("an unrestored GLACIER object was readable"),
    }
    let stat = fx.stage_and_wait(&name).await;
    assert_eq!(stat.size, len);
    // Staging a restored (or restoring) aggregate again is fine; so is evicting it.
    fx.store.stage(&[name.clone(), name.clone()]).await.unwrap();
    assert!(read_all(fx.store.read(&name).await.unwrap()).await == expected);
    fx.store.evict(&name).await.unwrap();
    // Replacing it: the new bytes, cold again.
    let len2 = 4321;
    fx.store
        .write(&name, len2, Generated::reader(2, len2))
        .await
        .unwrap();
    assert_eq!(
        fx.store.stat(&name).await.unwrap(),
        Some(AggregateStat {
            size: len2,
            online: false
        })
    );
    fx.stage_and_wait(&name).await;
    assert!(read_all(fx.store.read(&name).await.unwrap()).await == Generated::bytes(2, len2));
    // An empty aggregate is an object too.
    let empty = self::name("empty");
    fx.store
        .write(&empty, 0, Generated::reader(3, 0))
        .await
        .unwrap();
    assert_eq!(
        fx.store.stat(&empty).await.unwrap().map(|s| s.size),
        Some(0)
    );
}

#[tokio::test]
async fn multipart_aggregate_is_written_cold_staged_and_read_back() {
    let Some(mut fx) = Fixture::new(
        "multipart_aggregate_is_written_cold_staged_and_read_back",
        |_| {},
    )
    .await
    else {
        return;
    };
    let verify = fx.composite_crc32c_is_right().await;
    fx.store.s.verify_multipart_checksum = verify;
    let name = name("multi");
    let len = 12 * MIB + 12_345; // three parts of 5, 5 and 2 MiB + 12,345 bytes
    fx.store
        .write(&name, len, Generated::reader(7, len))
        .await
        .unwrap();
    let head = fx.head(&name).await;
    assert_eq!(head.storage_class(), Some(&StorageClass::Glacier));
    assert!(
        head.e_tag()
            .is_some_and(|e| e.trim_matches('"').ends_with("-3")),
        "not a 3-part upload: {:?}",
        head.e_tag()
    );
    assert_eq!(
        fx.store.stat(&name).await.unwrap(),
        Some(AggregateStat {
            size: len,
            online: false
        })
    );
    assert_eq!(
        fx.store.checksum(&name).await.unwrap(),
        None,
        "a multipart object has no full-object checksum"
    );
    assert!(matches!(
        fx.store.read(&name).await,
        Err(ColdError::Offline(_))
    ));
    fx.stage_and_wait(&name).await;
    let back = read_all(fx.store.read(&name).await.unwrap()).await;
    assert_eq!(back.len() as u64, len);
    assert!(back == Generated::bytes(7, len), "read back differs");
    fx.assert_nothing_left(&self::name("absent")).await;
}

#[tokio::test]
async fn deep_archive_class_is_written_and_restored_in_bulk() {
    let Some(fx) = Fixture::new("deep_archive_class_is_written_and_restored_in_bulk", |c| {
        c.storage_class = "DEEP_ARCHIVE".into();
        c.restore_tier = "Bulk".into();
        c.restore_days = 2;
    })
    .await
    else {
        return;
    };
    let name = name("deep");
    fx.store
        .write(&name, 1000, Generated::reader(4, 1000))
        .await
        .unwrap();
    assert_eq!(
        fx.head(&name).await.storage_class(),
        Some(&StorageClass::DeepArchive)
    );
    assert!(matches!(
        fx.store.read(&name).await,
        Err(ColdError::Offline(_))
    ));
    fx.stage_and_wait(&name).await;
    let restore = fx.head(&name).await.restore().map(str::to_owned);
    let expiry = restore
        .as_deref()
        .and_then(|r| restore_field(r, "expiry-date"))
        .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
        .unwrap_or_else(|| panic!("no expiry date in {restore:?}"));
    assert!(
        expiry > Utc::now() + chrono::Duration::hours(36),
        "restored for less than restore_days = 2: {restore:?}"
    );
    assert!(read_all(fx.store.read(&name).await.unwrap()).await == Generated::bytes(4, 1000));
}

#[tokio::test]
async fn a_wrong_composite_checksum_fails_the_write_and_leaves_nothing() {
    let Some(mut fx) = Fixture::new(
        "a_wrong_composite_checksum_fails_the_write_and_leaves_nothing",
        |_| {},
    )
    .await
    else {
        return;
    };
    let name = name("composite");
    let len = 10 * MIB + 1;
    if fx.composite_crc32c_is_right().await {
        // A store that computes it right: the check passes end to end.
        fx.store
            .write(&name, len, Generated::reader(5, len))
            .await
            .unwrap();
        assert_eq!(
            fx.store.stat(&name).await.unwrap().map(|s| s.size),
            Some(len)
        );
        eprintln!("note: the composite CRC32C of this store matched: verified end to end");
        return;
    }
    // A store whose composite differs from ours (moto computing CRC32): the write is refused
    // and the completed object removed.
    match fx.store.write(&name, len, Generated::reader(5, len)).await {
        Err(ColdError::Failed(m)) => {
            assert!(
                m.contains("failed verification") && m.contains("CRC32C"),
                "{m}"
            )
        }
        other => panic!("expected a verification failure, got {other:?}"),
    }
    fx.assert_nothing_left(&name).await;
    // With the check off, the same write succeeds (the parts are still validated).
    fx.store.s.verify_multipart_checksum = false;
    fx.store
        .write(&name, len, Generated::reader(5, len))
        .await
        .unwrap();
    assert_eq!(
        fx.store.stat(&name).await.unwrap().map(|s| s.size),
        Some(len)
    );
}

#[tokio::test]
async fn a_short_long_or_broken_stream_fails_and_leaves_nothing() {
    let Some(fx) = Fixture::new(
        "a_short_long_or_broken_stream_fails_and_leaves_nothing",
        |c| {
            c.verify_multipart_checksum = false;
        },
    )
    .await
    else {
        return;
    };
    let cases: [(&str, u64, ByteReader, &str); 6] = [
        (
            "short-single",
            1000,
            Generated::reader(1, 500),
            "ended after 500 of its 1000",
        ),
        (
            "long-single",
            100,
            Generated::reader(1, 200),
            "longer than its declared 100",
        ),
        (
            "short-multi",
            12 * MIB,
            Generated::reader(1, 7 * MIB),
            "ended after 7340032 of its 12582912",
        ),
        (
            "long-multi",
            11 * MIB,
            Generated::reader(1, 12 * MIB),
            "longer than",
        ),
        (
            "broken-single",
            1000,
            Generated::failing(1, 1000, 10),
            "the source broke",
        ),
        (
            "broken-multi",
            12 * MIB,
            Generated::failing(1, 12 * MIB, 6 * MIB),
            "the source broke",
        ),
    ];
    for (tag, size, body, expected) in cases {
        let name = name(tag);
        match fx.store.write(&name, size, body).await {
            Err(ColdError::Failed(m)) => assert!(m.contains(expected), "{tag}: {m}"),
            other => panic!("{tag}: expected Failed, got {other:?}"),
        }
        fx.assert_nothing_left(&name).await;
    }
    // A failed replacement leaves the previous aggregate as it was.
    let name = name("kept");
    fx.store
        .write(&name, 300, Generated::reader(9, 300))
        .await
        .unwrap();
    assert!(
        fx.store
            .write(&name, 300, Generated::reader(10, 299))
            .await
            .is_err()
    );
    assert_eq!(
        fx.store.checksum(&name).await.unwrap(),
        Some(StoredChecksum::Crc32c(crc32c::crc32c(&Generated::bytes(
            9, 300
        ))))
    );
}

#[tokio::test]
async fn remove_is_idempotent_and_missing_aggregates_are_not_found() {
    let Some(fx) = Fixture::new(
        "remove_is_idempotent_and_missing_aggregates_are_not_found",
        |_| {},
    )
    .await
    else {
        return;
    };
    let name = name("gone");
    fx.store
        .write(&name, 10, Generated::reader(1, 10))
        .await
        .unwrap();
    assert!(fx.store.stat(&name).await.unwrap().is_some());
    fx.store.remove(&name).await.unwrap();
    assert_eq!(fx.store.stat(&name).await.unwrap(), None);
    fx.store.remove(&name).await.unwrap();
    assert!(matches!(fx.store.read(&name).await, Err(ColdError::NotFound(n)) if n == name));
    assert!(matches!(fx.store.checksum(&name).await, Err(ColdError::NotFound(n)) if n == name));
    assert!(matches!(
        fx.store.stage(std::slice::from_ref(&name)).await,
        Err(ColdError::NotFound(n)) if n == name
    ));
    // Bad names never reach the store.
    for bad in ["../escape", "/abs", "UPPER"] {
        assert!(matches!(
            fx.store.remove(bad).await,
            Err(ColdError::Failed(_))
        ));
        assert!(matches!(
            fx.store.write(bad, 1, Generated::reader(1, 1)).await,
            Err(ColdError::Failed(_))
        ));
    }
    assert_eq!(fx.store.kind(), "s3-glacier");
}

#[tokio::test]
async fn an_object_outside_the_cold_classes_is_online_and_staging_it_is_fine() {
    let Some(fx) = Fixture::new(
        "an_object_outside_the_cold_classes_is_online_and_staging_it_is_fine",
        |_| {},
    )
    .await
    else {
        return;
    };
    let name = name("standard");
    fx.client
        .put_object()
        .bucket(&fx.bucket)
        .key(fx.store.key(&name))
        .body(ByteStream::from_static(b"standard class"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        fx.store.stat(&name).await.unwrap(),
        Some(AggregateStat {
            size: 14,
            online: true
        })
    );
    fx.store.stage(std::slice::from_ref(&name)).await.unwrap();
    assert_eq!(
        read_all(fx.store.read(&name).await.unwrap()).await,
        b"standard class"
    );
    // Stored without a checksum: nothing to report.
    assert_eq!(fx.store.checksum(&name).await.unwrap(), None);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_quickly() {
    let cfg = config("http://127.0.0.1:1", "nlds-test-unreachable");
    let base = s3::client(&cfg.store).await.unwrap();
    let client = Client::from_conf(
        base.config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .operation_timeout(Duration::from_secs(5))
                    .build(),
            )
            .build(),
    );
    let store = GlacierStore::with_client(client, &cfg).unwrap();
    let started = Instant::now();
    let name = "h000001/x.tar";
    let results = [
        store.write(name, 10, Generated::reader(1, 10)).await.err(),
        store
            .write(name, 6 * MIB, Generated::reader(1, 6 * MIB))
            .await
            .err(),
        store.stat(name).await.err(),
        store.checksum(name).await.err(),
        store.stage(&[name.to_owned()]).await.err(),
        store.read(name).await.err(),
        store.remove(name).await.err(),
        store.ensure_bucket().await.err(),
    ];
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(e @ ColdError::Unavailable(_)) => assert!(e.is_transient()),
            other => panic!("operation {i}: expected Unavailable, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// What a killed archive-put leaves: a multipart upload with a part and no completion. The
/// start-up sweep leaves it while it is fresh (another process may be writing it), aborts it
/// once idle, and never touches an upload outside the cold prefix (the warm tier's).
#[tokio::test]
async fn the_sweep_aborts_only_idle_uploads_under_the_cold_prefix() {
    let Some(fx) = Fixture::new(
        "the_sweep_aborts_only_idle_uploads_under_the_cold_prefix",
        |_| {},
    )
    .await
    else {
        return;
    };
    let start = |key: String| {
        let (client, bucket) = (fx.client.clone(), fx.bucket.clone());
        async move {
            let id = client
                .create_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .unwrap()
                .upload_id()
                .unwrap()
                .to_owned();
            client
                .upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&id)
                .part_number(1)
                .body(vec![7u8; 5 * MIB as usize].into())
                .send()
                .await
                .unwrap();
            (key, id)
        }
    };
    let (cold_key, cold_id) = start(fx.store.key(&name("killed"))).await;
    let (warm_key, _) = start(format!("tx/{}/0123", Uuid::new_v4())).await;
    let uploads = || async {
        let mut v: Vec<String> = fx
            .client
            .list_multipart_uploads()
            .bucket(&fx.bucket)
            .send()
            .await
            .unwrap()
            .uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_owned))
            .collect();
        v.sort();
        v
    };
    let mut both = vec![cold_key.clone(), warm_key.clone()];
    both.sort();

    // Written to a moment ago: left alone, where the store lists an upload's parts with their
    // times (moto answers ListParts with a root the SDK refuses, and dates every upload's start
    // in 2010, so there the sweep can only go by that start).
    let parts_listed = fx
        .client
        .list_parts()
        .bucket(&fx.bucket)
        .key(&cold_key)
        .upload_id(&cold_id)
        .send()
        .await
        .is_ok();
    if parts_listed {
        let swept = fx
            .store
            .sweep_partials(Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(swept.is_empty(), "{swept:?}");
    } else {
        eprintln!(
            "NOTE: this S3 server's ListParts cannot be read: the sweep of a fresh upload is \
             not checked here"
        );
    }
    assert_eq!(uploads().await, both);

    // Idle (here: for no time at all): aborted, with its bucket, key and upload named.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let swept = fx.store.sweep_partials(Duration::ZERO).await.unwrap();
    assert_eq!(
        swept,
        vec![format!("s3://{}/{cold_key} (upload {cold_id})", fx.bucket)]
    );
    assert_eq!(uploads().await, vec![warm_key]);
    assert!(
        fx.store
            .sweep_partials(Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
}
