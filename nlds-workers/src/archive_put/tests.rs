//! archive-put against a real S3 endpoint (the members' warm copies) and the `dir` cold store,
//! wrapped so that what the store says about an aggregate's checksum can be chosen: the worker
//! must report an aggregate stored only when the store's own checksum matches what was sent.

use async_trait::async_trait;
use nlds_core::api::ApiAction;
use nlds_core::message::ObjectRef;
use nlds_storage::cold::dir::{DirConfig, DirStore};
use nlds_storage::cold::{AggregateStat, ColdResult};

use super::*;
use crate::s3_testing::TestBucket;

/// What the wrapped store answers to `checksum`.
#[derive(Clone, Copy)]
enum Says {
    /// The real store's answer.
    Truth,
    /// The real adler32 with one bit flipped.
    WrongAdler32,
    /// A CRC32C that cannot be the one of what was written.
    WrongCrc32c,
    /// No checksum at all.
    Nothing,
}

/// The `dir` store, with a chosen answer to `checksum` and to `verifies_writes`.
struct Chosen {
    dir: DirStore,
    says: Says,
    verifies: bool,
}

#[async_trait]
impl ColdStore for Chosen {
    fn kind(&self) -> &'static str {
        "dir"
    }
    fn verifies_writes(&self) -> bool {
        self.verifies
    }
    async fn write(&self, name: &str, size: u64, body: ByteReader) -> ColdResult<()> {
        self.dir.write(name, size, body).await
    }
    async fn stat(&self, name: &str) -> ColdResult<Option<AggregateStat>> {
        self.dir.stat(name).await
    }
    async fn checksum(&self, name: &str) -> ColdResult<Option<StoredChecksum>> {
        let truth = self.dir.checksum(name).await?;
        Ok(match (self.says, truth) {
            (Says::Truth, t) => t,
            (Says::WrongAdler32, Some(StoredChecksum::Adler32(a))) => {
                Some(StoredChecksum::Adler32(a ^ 1))
            }
            (Says::WrongAdler32, other) => panic!("the dir store reported {other:?}"),
            (Says::WrongCrc32c, _) => Some(StoredChecksum::Crc32c(0xdead_beef)),
            (Says::Nothing, _) => None,
        })
    }
    async fn stage(&self, names: &[String]) -> ColdResult<()> {
        self.dir.stage(names).await
    }
    async fn read(&self, name: &str) -> ColdResult<ByteReader> {
        self.dir.read(name).await
    }
    async fn evict(&self, name: &str) -> ColdResult<()> {
        self.dir.evict(name).await
    }
    async fn remove(&self, name: &str) -> ColdResult<()> {
        self.dir.remove(name).await
    }
}

struct Fixture {
    s3: TestBucket,
    _root: tempfile::TempDir,
    dir: DirStore,
    members: Vec<ArchiveMember>,
}

impl Fixture {
    async fn new(test: &str) -> Option<Fixture> {
        let s3 = TestBucket::new(test).await?;
        let root = tempfile::tempdir().unwrap();
        let dir = DirStore::new(DirConfig {
            root: root.path().to_path_buf(),
            stage_delay_ms: 0,
        })
        .unwrap();
        let mut members = Vec::new();
        for (i, body) in [&b"first member"[..], &[7u8; 3000][..]].iter().enumerate() {
            let key = format!("tx/archive-test/{i}");
            s3.put(&key, body).await;
            members.push(ArchiveMember {
                file_id: i as i64 + 1,
                path: format!("/data/f{i}"),
                size: body.len() as u64,
                mode: 0o644,
                mtime_ns: 0,
                uid: 1,
                gid: 1,
                object: ObjectRef {
                    bucket: s3.bucket.clone(),
                    key,
                    tenancy: None,
                },
                blake3: Some(blake3::hash(body).to_hex().to_string()),
            });
        }
        Some(Fixture {
            s3,
            _root: root,
            dir,
            members,
        })
    }

    fn worker(&self, says: Says, verifies: bool) -> ArchivePut {
        let store = Chosen {
            dir: self.dir.clone(),
            says,
            verifies,
        };
        ArchivePut::with_clients(
            S3Clients::single(self.s3.client.clone(), self.s3.bucket.clone()),
            Arc::new(store),
        )
    }

    /// Runs `archive-put.start` for aggregate `name`; the routing key and payload it reported.
    async fn archive(&self, worker: &ArchivePut, name: &str) -> (RoutingKey, Payload) {
        let env = Envelope::new(
            Uuid::new_v4(),
            "nlds",
            "nlds",
            ApiAction::ArchivePut,
            "archive",
            Payload::ArchiveAggregate {
                aggregation_id: 1,
                name: name.into(),
                holding_id: 1,
                members: self.members.clone(),
            },
        );
        let out = worker
            .handle(RoutingKey::new(Worker::ArchivePut, Action::Start), env)
            .await
            .unwrap();
        assert_eq!(out.publish.len(), 1, "{out:?}");
        let (key, env) = out.publish.into_iter().next().unwrap();
        (key, env.payload)
    }
}

/// The refusal as reported: the one failed entry, naming the aggregate.
fn refusal(key: RoutingKey, payload: Payload, name: &str) -> FailedFile {
    assert_eq!(key, RoutingKey::new(Worker::ArchivePut, Action::Failed));
    let Payload::Failed { mut files } = payload else {
        panic!("{payload:?}")
    };
    assert_eq!(files.len(), 1, "{files:?}");
    let f = files.remove(0);
    assert_eq!(f.path, format!("aggregate {name}"));
    assert!(f.reason.contains(name), "{}", f.reason);
    f
}

#[tokio::test]
async fn a_stored_checksum_that_differs_from_what_was_sent_is_refused_and_removed() {
    let Some(fx) = Fixture::new("archive_put_checksum_mismatch").await else {
        return;
    };
    // The control: the store's true checksum verifies and the aggregate stays.
    let (key, payload) = fx
        .archive(&fx.worker(Says::Truth, false), "h1/ok.tar")
        .await;
    assert_eq!(key, RoutingKey::new(Worker::ArchivePut, Action::Complete));
    let Payload::ArchiveStored { name, sums, .. } = payload else {
        panic!("{payload:?}")
    };
    assert_eq!(name, "h1/ok.tar");
    assert_eq!(
        fx.dir.checksum("h1/ok.tar").await.unwrap(),
        Some(StoredChecksum::Adler32(sums.adler32))
    );

    for (says, name, algorithm) in [
        (Says::WrongAdler32, "h1/adler.tar", "adler32"),
        (Says::WrongCrc32c, "h1/crc.tar", "crc32c"),
    ] {
        let (key, payload) = fx.archive(&fx.worker(says, false), name).await;
        let f = refusal(key, payload, name);
        assert_eq!(f.code, ErrorCode::ChecksumMismatch, "{f:?}");
        assert!(
            f.reason.contains(&format!("reports {algorithm}")),
            "{}",
            f.reason
        );
        assert_eq!(
            fx.dir.stat(name).await.unwrap(),
            None,
            "a refused aggregate is removed from the store"
        );
    }
    assert!(fx.dir.stat("h1/ok.tar").await.unwrap().is_some());
    fx.s3.remove().await;
}

#[tokio::test]
async fn a_store_that_reports_no_checksum_is_refused_unless_it_verifies_writes_or_is_accepted() {
    let Some(fx) = Fixture::new("archive_put_no_checksum").await else {
        return;
    };
    let name = "h2/unverified.tar";
    let (key, payload) = fx.archive(&fx.worker(Says::Nothing, false), name).await;
    let f = refusal(key, payload, name);
    assert_eq!(f.code, ErrorCode::StorageError, "{f:?}");
    assert!(f.reason.contains("cannot be verified"), "{}", f.reason);
    assert!(f.reason.contains("accept_unverified"), "{}", f.reason);
    assert_eq!(fx.dir.stat(name).await.unwrap(), None);

    // A store whose writes verify themselves (S3 checking every part's CRC32C) needs no answer.
    let (key, _) = fx.archive(&fx.worker(Says::Nothing, true), name).await;
    assert_eq!(key, RoutingKey::new(Worker::ArchivePut, Action::Complete));
    assert!(fx.dir.stat(name).await.unwrap().is_some());
    fx.dir.remove(name).await.unwrap();

    // The operator's explicit choice accepts it too.
    let worker = fx.worker(Says::Nothing, false).accept_unverified(true);
    let (key, _) = fx.archive(&worker, name).await;
    assert_eq!(key, RoutingKey::new(Worker::ArchivePut, Action::Complete));
    assert!(fx.dir.stat(name).await.unwrap().is_some());
    fx.s3.remove().await;
}
