//! Transfer tests against a real S3 endpoint (moto, MinIO, ...) named by `NLDS_TEST_S3_ENDPOINT`.
//!
//! Without it the S3 tests are skipped loudly, or fail when `CI` is set. Each test uses its own
//! bucket.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Instant;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use nlds_bus::{Handler, HandlerError};
use nlds_core::api::ApiAction;
use nlds_core::message::ObjectRef;
use nlds_core::{
    Action, Envelope, ErrorCode, FailedFile, FileRecord, PathKind, Payload, RoutingKey, Worker,
};
use nlds_storage::s3;
use tempfile::TempDir;
use uuid::Uuid;

use super::*;
use crate::config::{ObjectStoreConfig, TransferConfig};
use crate::transfer_get::TransferGet;
use crate::transfer_put::TransferPut;

const ENDPOINT_VAR: &str = "NLDS_TEST_S3_ENDPOINT";

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

fn store_config(endpoint: &str, bucket: &str) -> ObjectStoreConfig {
    ObjectStoreConfig {
        endpoint: endpoint.into(),
        region: "us-east-1".into(),
        access_key: "nlds-test".into(),
        secret_key: "nlds-test-secret".into(),
        secret_key_file: None,
        bucket: bucket.into(),
        ..Default::default()
    }
}

fn small_parts() -> TransferConfig {
    TransferConfig {
        multipart_threshold: 5 << 20,
        part_size: 5 << 20,
        files_in_flight: 4,
        parts_in_flight: 3,
        memory_budget: 32 << 20,
        ..Default::default()
    }
}

/// A store of `slots` files in flight whose client points nowhere (it transfers nothing).
pub(crate) async fn test_store(slots: usize) -> super::Store {
    let client = s3::client(&store_config("http://127.0.0.1:9", "nowhere"))
        .await
        .unwrap();
    let cfg = TransferConfig {
        files_in_flight: slots,
        ..Default::default()
    };
    super::Store::new(S3Clients::single(client, "nowhere"), cfg)
}

struct Fixture {
    client: Client,
    bucket: String,
    put: TransferPut,
    get: TransferGet,
    /// Source files live here, restores go to `restore` under it.
    dir: TempDir,
    tid: Uuid,
}

impl Fixture {
    async fn new(test: &str, cfg: TransferConfig) -> Option<Fixture> {
        let endpoint = endpoint(test)?;
        let bucket = format!("nlds-test-{}", &Uuid::new_v4().simple().to_string()[..16]);
        let client = s3::client(&store_config(&endpoint, &bucket)).await.unwrap();
        s3::ensure_bucket(&client, &bucket).await.unwrap();
        // Idempotent: a second call finds the bucket.
        s3::ensure_bucket(&client, &bucket).await.unwrap();
        Some(Fixture {
            put: TransferPut::new(client.clone(), bucket.clone(), cfg.clone()),
            get: TransferGet::new(client.clone(), bucket.clone(), cfg),
            client,
            bucket,
            dir: tempfile::tempdir().unwrap(),
            tid: Uuid::new_v4(),
        })
    }

    fn src(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join("src").join(rel)
    }

    fn restore_dir(&self) -> std::path::PathBuf {
        let d = self.dir.path().join("restore");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    async fn put(&self, files: Vec<FileRecord>) -> (Vec<FileRecord>, Vec<FailedFile>) {
        let env = envelope(self.tid, ApiAction::Put, files, None, false);
        let out = self
            .put
            .handle(
                RoutingKey::new(Worker::TransferPut, Action::Start),
                env.clone(),
            )
            .await
            .unwrap();
        split(out, Worker::TransferPut, &env)
    }

    async fn get(
        &self,
        files: &[FileRecord],
        target: Option<&Path>,
        overwrite: bool,
    ) -> (Vec<FileRecord>, Vec<FailedFile>) {
        let env = envelope(
            self.tid,
            ApiAction::Get,
            files.to_vec(),
            target.map(|t| t.display().to_string()),
            overwrite,
        );
        self.handle_get(env).await
    }

    /// [`Fixture::get`] of a batch that writes into `context`, directories another batch
    /// restores.
    async fn get_in(
        &self,
        files: &[FileRecord],
        context: &[FileRecord],
        target: &Path,
    ) -> (Vec<FileRecord>, Vec<FailedFile>) {
        let mut env = envelope(
            self.tid,
            ApiAction::Get,
            files.to_vec(),
            Some(target.display().to_string()),
            false,
        );
        if let Payload::Files { context: c, .. } = &mut env.payload {
            *c = context.to_vec();
        }
        self.handle_get(env).await
    }

    /// Hands `env` to transfer-get: what it restored and what failed.
    async fn handle_get(&self, env: Envelope) -> (Vec<FileRecord>, Vec<FailedFile>) {
        let out = self
            .get
            .handle(
                RoutingKey::new(Worker::TransferGet, Action::Start),
                env.clone(),
            )
            .await
            .unwrap();
        split(out, Worker::TransferGet, &env)
    }

    async fn object_bytes(&self, key: &str) -> Vec<u8> {
        let o = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        o.body.collect().await.unwrap().to_vec()
    }
}

fn envelope(
    tid: Uuid,
    action: ApiAction,
    files: Vec<FileRecord>,
    target: Option<String>,
    overwrite: bool,
) -> Envelope {
    let mut env = Envelope::new(
        tid,
        "alice",
        "climate",
        action,
        "job",
        Payload::Files {
            context: Vec::new(),
            failed: Vec::new(),
            holding_id: Some(7),
            files,
            target,
            overwrite,
        },
    );
    env.sub_id = Uuid::new_v5(&tid, b"batch/0");
    env
}

/// The complete and failed lists of an outcome, checking the keys and envelope fields.
fn split(
    out: nlds_bus::Outcome,
    worker: Worker,
    input: &Envelope,
) -> (Vec<FileRecord>, Vec<FailedFile>) {
    assert!(out.reply.is_none());
    let mut done = None;
    let mut failed = Vec::new();
    for (key, env) in out.publish {
        assert_eq!(key.worker, worker);
        assert_eq!(env.transaction_id, input.transaction_id);
        assert_eq!(env.sub_id, input.sub_id);
        match (key.action, env.payload) {
            (
                Action::Complete,
                Payload::Files {
                    holding_id,
                    files,
                    target,
                    overwrite,
                    failed: f,
                    context,
                },
            ) => {
                assert!(context.is_empty(), "a put batch has no context");
                failed = f;
                let Payload::Files {
                    target: t,
                    overwrite: o,
                    ..
                } = &input.payload
                else {
                    unreachable!()
                };
                assert_eq!(holding_id, Some(7));
                assert_eq!((&target, overwrite), (t, *o));
                assert!(done.replace(files).is_none(), "two complete messages");
            }
            other => panic!("unexpected output {key}: {other:?}"),
        }
    }
    (done.expect("no complete message"), failed)
}

/// A record as the indexer makes it (lstat).
fn record(path: &Path) -> FileRecord {
    let m = std::fs::symlink_metadata(path).unwrap();
    let kind = if m.file_type().is_symlink() {
        PathKind::Link
    } else if m.is_dir() {
        PathKind::Directory
    } else {
        PathKind::File
    };
    FileRecord {
        path: path.to_str().unwrap().to_owned(),
        kind,
        link_target: (kind == PathKind::Link).then(|| {
            std::fs::read_link(path)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        }),
        size: if kind == PathKind::File { m.len() } else { 0 },
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode() & 0o7777,
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        blake3: None,
        object: None,
        holding_id: None,
        xattrs: Vec::new(),
        new_version: false,
    }
}

fn write(path: &Path, data: &[u8], mode: u32, mtime_ns: i64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(system_time(mtime_ns)))
        .unwrap();
}

/// Pseudo-random, incompressible-looking bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Where `path` is restored under `target`.
fn restored(target: &Path, path: &str) -> std::path::PathBuf {
    target.join(path.trim_start_matches('/'))
}

fn leftovers(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".nlds-"))
        .collect()
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[tokio::test]
async fn transfer_round_trip_of_files_links_and_directories() {
    let Some(fx) = Fixture::new(
        "transfer_round_trip_of_files_links_and_directories",
        TransferConfig::default(),
    )
    .await
    else {
        return;
    };
    let small = fx.src("run 42/small.nc");
    let empty = fx.src("run 42/empty");
    let odd = fx.src("run 42/ünï cödé ✓/ñame with spaces.dat");
    let dir = fx.src("run 42/sub dir");
    let link = fx.src("run 42/latest");
    let small_data = data(123_457, 1);
    let odd_data = data(4096, 2);
    write(&small, &small_data, 0o640, 1_600_000_000_123_456_789);
    write(&empty, b"", 0o600, 1_500_000_000_000_000_000);
    write(&odd, &odd_data, 0o755, 1_650_000_000_987_654_321);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("small.nc", &link).unwrap();
    let dir_mtime = 1_400_000_000_000_000_000;
    std::fs::File::open(&dir)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(system_time(dir_mtime)))
        .unwrap();

    let input: Vec<FileRecord> = [&small, &empty, &odd, &dir, &link]
        .iter()
        .map(|p| record(p))
        .collect();
    let (done, failed) = fx.put(input.clone()).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(done.len(), 5);
    assert_eq!(
        done.iter().map(|r| &r.path).collect::<Vec<_>>(),
        input.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    for (rec, (orig, bytes)) in done.iter().zip([
        (&input[0], &small_data[..]),
        (&input[1], &b""[..]),
        (&input[2], &odd_data[..]),
    ]) {
        let key = s3::object_key(fx.tid, &rec.path);
        assert_eq!(
            rec.object,
            Some(ObjectRef {
                bucket: fx.bucket.clone(),
                key: key.clone(),
                tenancy: None,
            })
        );
        assert_eq!(
            rec.blake3.as_deref(),
            Some(blake3::hash(bytes).to_hex().as_str())
        );
        assert_eq!(rec.size, bytes.len() as u64);
        assert_eq!((rec.mode, rec.mtime_ns), (orig.mode, orig.mtime_ns));
        assert_eq!(fx.object_bytes(&key).await, bytes);
    }
    // Directories and links pass through untouched, without objects.
    assert_eq!(done[3], input[3]);
    assert_eq!(done[4], input[4]);
    // The path is kept as metadata only where it is header-safe.
    let head = fx
        .client
        .head_object()
        .bucket(&fx.bucket)
        .key(done[0].object.as_ref().unwrap().key.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get(s3::PATH_METADATA))
            .map(String::as_str),
        Some(done[0].path.as_str())
    );
    let head = fx
        .client
        .head_object()
        .bucket(&fx.bucket)
        .key(done[2].object.as_ref().unwrap().key.clone())
        .send()
        .await
        .unwrap();
    assert!(
        head.metadata()
            .is_none_or(|m| !m.contains_key(s3::PATH_METADATA))
    );

    // A redelivery uploads again to the same keys, with the same result.
    let (again, failed) = fx.put(input.clone()).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(again, done);

    let target = fx.restore_dir();
    let (got, failed) = fx.get(&done, Some(&target), false).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(got, done);
    for (rec, bytes) in [
        (&done[0], &small_data[..]),
        (&done[1], &b""[..]),
        (&done[2], &odd_data[..]),
    ] {
        let to = restored(&target, &rec.path);
        assert_eq!(std::fs::read(&to).unwrap(), bytes, "{}", to.display());
        let m = std::fs::metadata(&to).unwrap();
        assert_eq!(m.mode() & 0o7777, rec.mode, "{}", to.display());
        assert_eq!(
            m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            rec.mtime_ns,
            "{}",
            to.display()
        );
    }
    let d = std::fs::metadata(restored(&target, &done[3].path)).unwrap();
    assert!(d.is_dir());
    assert_eq!(d.mode() & 0o7777, 0o750);
    assert_eq!(d.mtime() * 1_000_000_000 + d.mtime_nsec(), dir_mtime);
    let l = restored(&target, &done[4].path);
    assert!(
        std::fs::symlink_metadata(&l)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_link(&l).unwrap(), Path::new("small.nc"));
    assert_eq!(std::fs::read(&l).unwrap(), small_data);
    assert!(leftovers(&target).is_empty(), "{:?}", leftovers(&target));

    // Getting again finds everything in place (identical): done, nothing rewritten.
    let (again, failed) = fx.get(&done, Some(&target), false).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(again.len(), 5);
}

/// A read-only directory whose files two batches restore, the second after the first gave the
/// directory its recorded mode and time: the second writes into it all the same (as its owner
/// could) and gives it its mode and time again, because the directory travels with it as
/// context.
#[tokio::test]
async fn a_later_batch_gives_a_directory_its_mode_and_time_again() {
    let Some(fx) = Fixture::new(
        "a_later_batch_gives_a_directory_its_mode_and_time_again",
        TransferConfig::default(),
    )
    .await
    else {
        return;
    };
    let dir = fx.src("read-only");
    let (a, b) = (fx.src("read-only/a"), fx.src("read-only/b"));
    write(&a, b"first", 0o444, 1_600_000_000_000_000_001);
    write(&b, b"second", 0o444, 1_600_000_000_000_000_002);
    let dir_mtime = 1_400_000_000_000_000_000;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::File::open(&dir)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(system_time(dir_mtime)))
        .unwrap();
    let (done, failed) = fx.put(vec![record(&dir), record(&a), record(&b)]).await;
    assert!(failed.is_empty(), "{failed:?}");
    let target = fx.restore_dir();
    let restored_dir = restored(&target, &done[0].path);
    let dir_now = || {
        let m = std::fs::metadata(&restored_dir).unwrap();
        (
            m.mode() & 0o7777,
            m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        )
    };

    let (got, failed) = fx.get_in(&done[..2], &[], &target).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(got.len(), 2);
    assert_eq!(dir_now(), (0o555, dir_mtime), "the first batch finished it");

    let (got, failed) = fx.get_in(&done[2..], &done[..1], &target).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(got, done[2..], "the context is not an entry of the batch");
    assert_eq!(
        std::fs::read(restored(&target, &done[2].path)).unwrap(),
        b"second"
    );
    assert_eq!(
        dir_now(),
        (0o555, dir_mtime),
        "the second finished it again"
    );
    assert!(leftovers(&target).is_empty(), "{:?}", leftovers(&target));
}

#[tokio::test]
async fn transfer_multipart_round_trip_to_the_original_path() {
    let Some(fx) = Fixture::new(
        "transfer_multipart_round_trip_to_the_original_path",
        small_parts(),
    )
    .await
    else {
        return;
    };
    let big = fx.src("big file.bin");
    let bytes = data((12 << 20) + 12_345, 3);
    write(&big, &bytes, 0o644, 1_700_000_000_000_000_001);
    // Exactly at the threshold is multipart too, with one part.
    let edge = fx.src("edge.bin");
    let edge_bytes = data(5 << 20, 4);
    write(&edge, &edge_bytes, 0o600, 1_700_000_000_000_000_002);
    let (done, failed) = fx.put(vec![record(&big), record(&edge)]).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        done[0].blake3.as_deref(),
        Some(blake3::hash(&bytes).to_hex().as_str())
    );
    assert_eq!(done[0].size, bytes.len() as u64);
    let key = &done[0].object.as_ref().unwrap().key;
    let head = fx
        .client
        .head_object()
        .bucket(&fx.bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(bytes.len() as i64));
    // A multipart ETag ends in -<number of parts>: 12 MiB + a bit in 5 MiB parts is 3 parts.
    assert!(
        head.e_tag().unwrap().trim_matches('"').ends_with("-3"),
        "{:?}",
        head.e_tag()
    );
    let head = fx
        .client
        .head_object()
        .bucket(&fx.bucket)
        .key(&done[1].object.as_ref().unwrap().key)
        .send()
        .await
        .unwrap();
    assert!(
        head.e_tag().unwrap().trim_matches('"').ends_with("-1"),
        "{:?}",
        head.e_tag()
    );
    assert_eq!(
        fx.object_bytes(&done[1].object.as_ref().unwrap().key).await,
        edge_bytes
    );
    // No multipart upload is left open.
    let open = fx
        .client
        .list_multipart_uploads()
        .bucket(&fx.bucket)
        .send()
        .await
        .unwrap();
    assert!(open.uploads().is_empty(), "{:?}", open.uploads());

    // Restore to the original paths (no target).
    std::fs::remove_file(&big).unwrap();
    std::fs::remove_file(&edge).unwrap();
    let (got, failed) = fx.get(&done, None, false).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(got.len(), 2);
    assert_eq!(std::fs::read(&big).unwrap(), bytes);
    assert_eq!(std::fs::read(&edge).unwrap(), edge_bytes);
    let m = std::fs::metadata(&big).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o644);
    assert_eq!(
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        1_700_000_000_000_000_001
    );
    assert!(leftovers(fx.dir.path()).is_empty());
}

#[tokio::test]
async fn transfer_get_detects_checksum_mismatch_and_leaves_nothing() {
    let Some(fx) = Fixture::new(
        "transfer_get_detects_checksum_mismatch_and_leaves_nothing",
        small_parts(),
    )
    .await
    else {
        return;
    };
    let a = fx.src("a.txt");
    let b = fx.src("b.txt");
    write(
        &a,
        b"the original content",
        0o644,
        1_600_000_000_000_000_000,
    );
    write(&b, b"untouched", 0o644, 1_600_000_000_000_000_000);
    let (done, failed) = fx.put(vec![record(&a), record(&b)]).await;
    assert!(failed.is_empty(), "{failed:?}");
    // Corrupt a's object behind nlds's back.
    fx.client
        .put_object()
        .bucket(&fx.bucket)
        .key(&done[0].object.as_ref().unwrap().key)
        .body(ByteStream::from_static(b"the corrupted content"))
        .send()
        .await
        .unwrap();
    let target = fx.restore_dir();
    let (got, failed) = fx.get(&done, Some(&target), false).await;
    assert_eq!(got, vec![done[1].clone()]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].path, done[0].path);
    assert_eq!(failed[0].code, ErrorCode::ChecksumMismatch);
    assert!(
        failed[0].reason.contains(&done[0].path),
        "{}",
        failed[0].reason
    );
    assert!(!restored(&target, &done[0].path).exists());
    assert_eq!(
        std::fs::read(restored(&target, &done[1].path)).unwrap(),
        b"untouched"
    );
    assert!(leftovers(&target).is_empty(), "{:?}", leftovers(&target));
}

#[tokio::test]
async fn transfer_get_does_not_overwrite_without_overwrite() {
    let Some(fx) = Fixture::new(
        "transfer_get_does_not_overwrite_without_overwrite",
        small_parts(),
    )
    .await
    else {
        return;
    };
    let a = fx.src("a.txt");
    let same = fx.src("same.txt");
    let link = fx.src("link");
    write(&a, b"archived content", 0o640, 1_600_000_000_000_000_000);
    write(&same, b"same content", 0o640, 1_600_000_000_000_000_000);
    std::os::unix::fs::symlink("a.txt", &link).unwrap();
    let (done, failed) = fx.put(vec![record(&a), record(&same), record(&link)]).await;
    assert!(failed.is_empty(), "{failed:?}");

    let target = fx.restore_dir();
    let a_to = restored(&target, &done[0].path);
    let same_to = restored(&target, &done[1].path);
    let link_to = restored(&target, &done[2].path);
    write(&a_to, b"local changes", 0o600, 1_000_000_000_000_000_000);
    write(&same_to, b"same content", 0o600, 1_000_000_000_000_000_000);
    std::os::unix::fs::symlink("elsewhere", &link_to).unwrap();

    let (got, failed) = fx.get(&done, Some(&target), false).await;
    // The identical file counts as done (and is left alone).
    assert_eq!(got, vec![done[1].clone()]);
    assert_eq!(std::fs::metadata(&same_to).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(failed.len(), 2, "{failed:?}");
    for f in &failed {
        assert_eq!(f.code, ErrorCode::Conflict, "{f:?}");
        assert!(
            f.reason.contains("exists and differs; use --overwrite"),
            "{}",
            f.reason
        );
    }
    assert_eq!(failed[0].path, done[0].path);
    assert!(
        failed[0].reason.contains(&a_to.display().to_string()),
        "{}",
        failed[0].reason
    );
    assert_eq!(std::fs::read(&a_to).unwrap(), b"local changes");
    assert_eq!(
        std::fs::read_link(&link_to).unwrap(),
        Path::new("elsewhere")
    );

    let (got, failed) = fx.get(&done, Some(&target), true).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(got.len(), 3);
    assert_eq!(std::fs::read(&a_to).unwrap(), b"archived content");
    assert_eq!(std::fs::metadata(&a_to).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(std::fs::read_link(&link_to).unwrap(), Path::new("a.txt"));
    assert!(leftovers(&target).is_empty(), "{:?}", leftovers(&target));
}

#[tokio::test]
async fn transfer_put_reports_missing_and_unreadable_sources() {
    let Some(fx) = Fixture::new(
        "transfer_put_reports_missing_and_unreadable_sources",
        small_parts(),
    )
    .await
    else {
        return;
    };
    let ok = fx.src("ok.txt");
    let gone = fx.src("gone.txt");
    let locked = fx.src("locked.txt");
    write(&ok, b"fine", 0o644, 1_600_000_000_000_000_000);
    write(&gone, b"about to vanish", 0o644, 1_600_000_000_000_000_000);
    write(&locked, b"secret", 0o000, 1_600_000_000_000_000_000);
    let input = vec![record(&gone), record(&ok), record(&locked)];
    std::fs::remove_file(&gone).unwrap();
    let (done, failed) = fx.put(input.clone()).await;
    let gone_failure = failed
        .iter()
        .find(|f| f.path == input[0].path)
        .expect("gone.txt not reported");
    assert_eq!(gone_failure.code, ErrorCode::PathMissing);
    assert!(
        gone_failure.reason.contains(&input[0].path),
        "{}",
        gone_failure.reason
    );
    assert!(
        gone_failure.reason.contains("No such file"),
        "{}",
        gone_failure.reason
    );
    if running_as_root() {
        // root reads anything: the locked file is uploaded.
        assert_eq!(done.len(), 2, "{done:?}");
        assert_eq!(failed.len(), 1);
    } else {
        assert_eq!(done.len(), 1, "{done:?}");
        let locked_failure = failed
            .iter()
            .find(|f| f.path == input[2].path)
            .expect("locked.txt not reported");
        assert_eq!(locked_failure.code, ErrorCode::PermissionDenied);
        assert!(
            locked_failure.reason.contains(&input[2].path),
            "{}",
            locked_failure.reason
        );
    }
    assert_eq!(done[0].path, input[1].path);
    assert_eq!(
        fx.object_bytes(&done[0].object.as_ref().unwrap().key).await,
        b"fine"
    );
}

#[tokio::test]
async fn transfer_put_to_a_missing_bucket_fails_per_file() {
    let Some(fx) = Fixture::new(
        "transfer_put_to_a_missing_bucket_fails_per_file",
        small_parts(),
    )
    .await
    else {
        return;
    };
    let small = fx.src("small");
    let big = fx.src("big");
    write(&small, b"small", 0o644, 1_600_000_000_000_000_000);
    write(&big, &data(6 << 20, 9), 0o644, 1_600_000_000_000_000_000);
    // Not an outage: every file fails with the store's reason, nothing is retried.
    let put = TransferPut::new(
        fx.client.clone(),
        format!("{}-missing", fx.bucket),
        small_parts(),
    );
    let env = envelope(
        fx.tid,
        ApiAction::Put,
        vec![record(&small), record(&big)],
        None,
        false,
    );
    let out = put
        .handle(
            RoutingKey::new(Worker::TransferPut, Action::Start),
            env.clone(),
        )
        .await
        .unwrap();
    let (done, failed) = split(out, Worker::TransferPut, &env);
    assert!(done.is_empty(), "{done:?}");
    assert_eq!(failed.len(), 2);
    for f in &failed {
        assert!(f.reason.contains("NoSuchBucket"), "{}", f.reason);
        assert!(f.reason.contains(&f.path), "{}", f.reason);
    }
}

#[tokio::test]
async fn transfer_get_needs_an_existing_target_directory() {
    let Some(fx) = Fixture::new(
        "transfer_get_needs_an_existing_target_directory",
        small_parts(),
    )
    .await
    else {
        return;
    };
    let a = fx.src("a.txt");
    write(&a, b"x", 0o644, 1_600_000_000_000_000_000);
    let (done, _) = fx.put(vec![record(&a)]).await;
    let missing = fx.dir.path().join("no such dir");
    let (got, failed) = fx.get(&done, Some(&missing), false).await;
    assert!(got.is_empty());
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].code, ErrorCode::PathMissing);
    assert!(
        failed[0].reason.contains(&missing.display().to_string()),
        "{}",
        failed[0].reason
    );
    let (got, failed) = fx.get(&done, Some(&a), false).await;
    assert!(got.is_empty());
    assert_eq!(failed[0].code, ErrorCode::BadRequest);
    assert!(
        failed[0].reason.contains("is not a directory"),
        "{}",
        failed[0].reason
    );
}

#[tokio::test]
async fn transfer_del_removes_objects_and_tolerates_missing_ones() {
    let Some(fx) = Fixture::new(
        "transfer_del_removes_objects_and_tolerates_missing_ones",
        small_parts(),
    )
    .await
    else {
        return;
    };
    let a = fx.src("a.txt");
    write(&a, b"to be deleted", 0o644, 1_600_000_000_000_000_000);
    let (done, _) = fx.put(vec![record(&a)]).await;
    let key = done[0].object.as_ref().unwrap().key.clone();
    let env = envelope(fx.tid, ApiAction::Put, done.clone(), None, false);
    let del = RoutingKey::new(Worker::TransferDel, Action::Start);
    for _ in 0..2 {
        let out = fx.put.handle(del, env.clone()).await.unwrap();
        assert!(out.publish.is_empty() && out.reply.is_none());
        let head = fx
            .client
            .head_object()
            .bucket(&fx.bucket)
            .key(&key)
            .send()
            .await;
        assert!(head.is_err(), "object still there");
    }
}

#[tokio::test]
async fn transfer_unreachable_endpoint_is_transient() {
    // Nothing listens on port 1: every request fails to connect.
    let client = s3::client(&store_config("http://127.0.0.1:1", "nlds"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..3).map(|i| dir.path().join(format!("f{i}"))).collect();
    for p in &paths {
        write(p, b"data", 0o644, 1_600_000_000_000_000_000);
    }
    let files: Vec<FileRecord> = paths.iter().map(|p| record(p)).collect();
    let tid = Uuid::new_v4();
    let put = TransferPut::new(client.clone(), "nlds".into(), small_parts());
    let started = Instant::now();
    let err: HandlerError = put
        .handle(
            RoutingKey::new(Worker::TransferPut, Action::Start),
            envelope(tid, ApiAction::Put, files.clone(), None, false),
        )
        .await
        .unwrap_err();
    assert!(err.retryable, "{err:?}");
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    assert!(err.message.contains("will be retried"), "{}", err.message);
    eprintln!(
        "unreachable put failed after {:?}: {}",
        started.elapsed(),
        err.message
    );

    let mut uploaded = files.clone();
    for r in &mut uploaded {
        r.blake3 = Some(blake3::hash(b"data").to_hex().to_string());
        r.object = Some(ObjectRef {
            bucket: "nlds".into(),
            key: s3::object_key(tid, &r.path),
            tenancy: None,
        });
    }
    let target = dir.path().join("restore");
    std::fs::create_dir(&target).unwrap();
    let get = TransferGet::new(client.clone(), "nlds".into(), small_parts());
    let err = get
        .handle(
            RoutingKey::new(Worker::TransferGet, Action::Start),
            envelope(
                tid,
                ApiAction::Get,
                uploaded.clone(),
                Some(target.display().to_string()),
                false,
            ),
        )
        .await
        .unwrap_err();
    assert!(err.retryable, "{err:?}");
    assert!(leftovers(&target).is_empty());

    let err = put
        .handle(
            RoutingKey::new(Worker::TransferDel, Action::Start),
            envelope(tid, ApiAction::Put, uploaded, None, false),
        )
        .await
        .unwrap_err();
    assert!(err.retryable, "{err:?}");
    assert!(
        s3::ensure_bucket(&client, "nlds")
            .await
            .unwrap_err()
            .transient
    );
}

#[tokio::test]
async fn transfer_rejects_foreign_keys_and_payloads() {
    let client = s3::client(&store_config("http://127.0.0.1:1", "nlds"))
        .await
        .unwrap();
    let put = TransferPut::new(client.clone(), "nlds".into(), small_parts());
    let get = TransferGet::new(client, "nlds".into(), small_parts());
    let env = Envelope::new(
        Uuid::new_v4(),
        "a",
        "g",
        ApiAction::Put,
        "j",
        Payload::Failed { files: vec![] },
    );
    let err = put
        .handle(
            RoutingKey::new(Worker::TransferPut, Action::Start),
            env.clone(),
        )
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.code, ErrorCode::BadRequest);
    let err = get
        .handle(RoutingKey::new(Worker::TransferPut, Action::Start), env)
        .await
        .unwrap_err();
    assert!(!err.retryable);
}

mod multipart;
