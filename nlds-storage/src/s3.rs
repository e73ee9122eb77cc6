//! The warm tier's S3 client, its object layout and the classification of S3 failures.
//!
//! # Object layout
//!
//! Everything lives in ONE bucket ([`ObjectStoreConfig::bucket`]), so nlds works on providers that
//! cap the number of buckets per account. A file copied by transaction `T` is stored under
//!
//! ```text
//! tx/<T as a lowercase hyphenated UUID>/<first 32 hex chars of blake3(original path)>
//! ```
//!
//! e.g. `tx/6f1c7a52-2b7e-4c39-9d1e-2a7e5b3c9d10/3f0a...` (always 72 characters). The key:
//!
//! * never starts with `/` and holds only `[0-9a-z/-]`, so it needs no escaping anywhere;
//! * has a fixed length whatever the path (paths may be 4 KiB long, keys are capped at 1 KiB);
//! * is deterministic: a redelivered upload overwrites the same object (idempotent), and two
//!   transactions never share an object, so deleting one copy cannot touch another;
//! * groups a transaction's objects under one prefix (listing or cleaning up a transaction).
//!
//! 128 bits of blake3 make a collision between two paths of one transaction practically
//! impossible. The catalogue records the key with each file, so it is never recomputed to read.
//! The original path is also stored as object metadata (`x-amz-meta-nlds-path`) when it is safe
//! as an HTTP header value (printable ASCII, bounded length), to help humans looking at the
//! bucket; it is never needed to restore a file.
//!
//! # Clients
//!
//! [`S3Clients`] holds one client per object-store tenancy (the default plus each
//! `[workers.object_store.tenancies.<name>]`); a put names the tenancy it writes to, and every
//! object reference (and the catalogue's location row) names the tenancy its object lives under,
//! so readers and removers pick the right endpoint, bucket and credentials.
//!
//! [`client`] builds the SDK client from [`ObjectStoreConfig`] only: static credentials,
//! explicit region and endpoint, path-style addressing. Nothing is read from `~/.aws`, `AWS_*`
//! environment variables or instance metadata (there is no `aws-config` in the build).

use std::collections::BTreeMap;
use std::time::Duration;

/// The S3 client type (re-exported for callers that hold one).
pub use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use nlds_bus::HandlerError;
use nlds_core::ErrorCode;
use uuid::Uuid;

use nlds_settings::ObjectStoreConfig;

/// The first segment of every object key.
pub const KEY_PREFIX: &str = "tx";
/// How many hex characters of blake3(path) name an object (128 bits).
pub const KEY_HASH_HEX_CHARS: usize = 32;
/// The user-metadata key holding the original path (sent as `x-amz-meta-nlds-path`).
pub const PATH_METADATA: &str = "nlds-path";
/// Paths longer than this are not stored as metadata (S3 allows 2 KiB of user metadata).
const MAX_METADATA_PATH: usize = 1024;
/// The region used when the configuration leaves it empty.
const DEFAULT_REGION: &str = "us-east-1";

/// The object key of `path` copied by transaction `transaction_id` (see the module docs).
pub fn object_key(transaction_id: Uuid, path: &str) -> String {
    let hash = blake3::hash(path.as_bytes());
    let hex = hash.to_hex();
    format!(
        "{KEY_PREFIX}/{}/{}",
        transaction_id.as_hyphenated(),
        &hex.as_str()[..KEY_HASH_HEX_CHARS]
    )
}

/// The key of a recalled copy of the object put at [`object_key`]: the put key with the recall's
/// tag (`.r<tag>`), or the put key itself without a tag. An eviction deletes the old copy after
/// it is dropped from the catalogue, possibly after a recall has already restored the file, so
/// the restored copy must not reuse the key being deleted.
pub fn restored_key(transaction_id: Uuid, path: &str, tag: Option<&str>) -> String {
    let key = object_key(transaction_id, path);
    match tag {
        Some(t) => format!("{key}.r{t}"),
        None => key,
    }
}

/// `path` if it can be sent as an HTTP header value unchanged (printable ASCII, no leading or
/// trailing blanks a proxy could trim, bounded length); `None` otherwise.
pub fn path_metadata(path: &str) -> Option<&str> {
    let printable = path.bytes().all(|b| (0x20..0x7f).contains(&b));
    let trimmed = path.trim() == path;
    (printable && trimmed && !path.is_empty() && path.len() <= MAX_METADATA_PATH).then_some(path)
}

/// An object-store failure: a code, a message naming what failed, and whether trying again later
/// may succeed (endpoint down, 5xx, throttling, timeouts).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct S3Error {
    pub code: ErrorCode,
    pub message: String,
    pub transient: bool,
}

impl S3Error {
    pub fn permanent(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            transient: false,
        }
    }

    pub fn transient(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            transient: true,
        }
    }

    /// Classifies an SDK error. `context` says what was attempted ("upload of /a/b to x/y").
    pub fn from_sdk<E>(context: impl std::fmt::Display, err: &SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let message = match err {
            SdkError::ServiceError(s) => {
                let detail = match (s.err().code(), s.err().message()) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.to_owned(),
                    (None, Some(m)) => m.to_owned(),
                    (None, None) => chain(s.err()),
                };
                format!("{context}: {detail} (HTTP {})", s.raw().status().as_u16())
            }
            _ => format!("{context}: {}", chain(err)),
        };
        tracing::debug!("{message}: {}", DisplayErrorContext(err));
        match err {
            SdkError::ConstructionFailure(_) => Self::permanent(ErrorCode::Internal, message),
            SdkError::TimeoutError(_) => Self::transient(ErrorCode::Timeout, message),
            SdkError::DispatchFailure(d) if d.is_timeout() => {
                Self::transient(ErrorCode::Timeout, message)
            }
            // A user error is ours (e.g. a body that failed to read): retrying will not help.
            SdkError::DispatchFailure(d) if d.is_user() => {
                Self::permanent(ErrorCode::StorageError, message)
            }
            SdkError::DispatchFailure(_) => Self::transient(ErrorCode::Unavailable, message),
            // An unparseable answer: usually a cut connection or a proxy in trouble.
            SdkError::ResponseError(_) => Self::transient(ErrorCode::StorageError, message),
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                let code = s.err().code().unwrap_or_default();
                if is_transient_status(status) || is_transient_code(code) {
                    let ec = if status == 503 || status == 429 {
                        ErrorCode::Unavailable
                    } else {
                        ErrorCode::StorageError
                    };
                    Self::transient(ec, message)
                } else if status == 404 {
                    Self::permanent(ErrorCode::NotFound, message)
                } else {
                    Self::permanent(ErrorCode::StorageError, message)
                }
            }
            _ => Self::transient(ErrorCode::StorageError, message),
        }
    }
}

impl From<S3Error> for HandlerError {
    fn from(e: S3Error) -> Self {
        if e.transient {
            HandlerError::transient(e.code, e.message)
        } else {
            HandlerError::permanent(e.code, e.message)
        }
    }
}

/// An error and its sources, `a: b: c`, without repeats.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

fn is_transient_status(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "RequestThrottled"
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "InternalError"
            | "ServiceUnavailable"
    )
}

/// Builds the S3 client for `cfg` (path style, explicit region, static credentials).
pub async fn client(cfg: &ObjectStoreConfig) -> Result<Client, S3Error> {
    if cfg.endpoint.trim().is_empty() {
        return Err(S3Error::permanent(
            ErrorCode::BadRequest,
            "object_store.endpoint is empty",
        ));
    }
    // The errors name the file, never its content.
    let secret = cfg
        .secret()
        .map_err(|e| S3Error::permanent(ErrorCode::Internal, e.to_string()))?;
    let access = cfg
        .access()
        .map_err(|e| S3Error::permanent(ErrorCode::Internal, e.to_string()))?;
    let region = match cfg.region.trim() {
        "" => DEFAULT_REGION.to_owned(),
        r => r.to_owned(),
    };
    let credentials = Credentials::new(access, secret, None, None, "nlds-config");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(cfg.endpoint.trim())
        .region(Region::new(region))
        .credentials_provider(credentials)
        .force_path_style(true)
        // We check integrity ourselves (blake3 on read back); S3-compatible stores differ in
        // their support of the newer flexible checksums, so send them only where required.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(5)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(120))
                .build(),
        )
        .build();
    Ok(Client::from_conf(config))
}

/// One object-store target: a client (endpoint and credentials) and the bucket new objects go to.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The tenancy's name; `None` for the default object store.
    pub name: Option<String>,
    pub client: Client,
    pub bucket: String,
}

/// The S3 clients of a worker: the default object store and one per configured tenancy
/// (`[workers.object_store.tenancies.<name>]`), built once at start. A request or an object
/// reference names a tenancy; only the name travels, the credentials stay here.
#[derive(Debug, Clone)]
pub struct S3Clients {
    default: Tenant,
    named: BTreeMap<String, Tenant>,
}

impl S3Clients {
    /// Only the default object store: `client`, writing to `bucket`.
    pub fn single(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            default: Tenant {
                name: None,
                client,
                bucket: bucket.into(),
            },
            named: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) tenancy `name`.
    pub fn with_tenancy(
        mut self,
        name: impl Into<String>,
        client: Client,
        bucket: impl Into<String>,
    ) -> Self {
        let name = name.into();
        self.named.insert(
            name.clone(),
            Tenant {
                name: Some(name),
                client,
                bucket: bucket.into(),
            },
        );
        self
    }

    /// Builds the default client and one per tenancy of `cfg`, and makes sure each bucket
    /// exists. An error names the tenancy, its bucket and endpoint, never a key.
    pub async fn build(cfg: &ObjectStoreConfig) -> Result<Self, S3Error> {
        let open = |c: ObjectStoreConfig, what: String| async move {
            let client = client(&c).await.map_err(|e| S3Error {
                message: format!("{what}: {}", e.message),
                ..e
            })?;
            ensure_bucket(&client, &c.bucket)
                .await
                .map_err(|e| S3Error {
                    message: format!(
                        "{what}: cannot use bucket {} at {}: {}",
                        c.bucket, c.endpoint, e.message
                    ),
                    ..e
                })?;
            Ok::<_, S3Error>((client, c.bucket))
        };
        let (client, bucket) = open(cfg.clone(), "the default object store".to_owned()).await?;
        let mut clients = Self::single(client, bucket);
        for name in cfg.tenancies.keys() {
            let Some(c) = cfg.tenancy(name) else { continue };
            let (client, bucket) = open(c, format!("object-store tenancy {name}")).await?;
            clients = clients.with_tenancy(name.clone(), client, bucket);
        }
        Ok(clients)
    }

    /// The target of tenancy `name` (`None`: the default object store). A name this worker
    /// has no configuration for is a permanent error saying so.
    pub fn tenant(&self, name: Option<&str>) -> Result<&Tenant, S3Error> {
        match name {
            None => Ok(&self.default),
            Some(n) => self.named.get(n).ok_or_else(|| {
                S3Error::permanent(
                    ErrorCode::BadRequest,
                    format!("tenancy {n:?} is not configured on this worker"),
                )
            }),
        }
    }

    /// The client of tenancy `name` (`None`: the default object store).
    pub fn for_tenancy(&self, name: Option<&str>) -> Result<&Client, S3Error> {
        self.tenant(name).map(|t| &t.client)
    }

    /// The default object store.
    pub fn default_tenant(&self) -> &Tenant {
        &self.default
    }

    /// The names of the configured tenancies.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.named.keys().map(String::as_str)
    }
}

/// An unfinished multipart upload ([`unfinished_uploads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub key: String,
    pub upload_id: String,
    /// When it was started (unix seconds), if the store says.
    pub initiated: Option<i64>,
}

/// Every unfinished multipart upload of `bucket` under `prefix`, all pages of the listing. The
/// SDK's error is returned as it is, for the caller to classify in its own terms.
pub async fn unfinished_uploads(
    client: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<
    Vec<Upload>,
    SdkError<aws_sdk_s3::operation::list_multipart_uploads::ListMultipartUploadsError>,
> {
    let mut uploads = Vec::new();
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    loop {
        let page = client
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(id_marker.take())
            .send()
            .await?;
        for u in page.uploads() {
            if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                uploads.push(Upload {
                    key: key.to_owned(),
                    upload_id: id.to_owned(),
                    initiated: u.initiated().map(|t| t.secs()),
                });
            }
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        id_marker = page.next_upload_id_marker().map(str::to_owned);
        if page.is_truncated() != Some(true) || (key_marker.is_none() && id_marker.is_none()) {
            return Ok(uploads);
        }
    }
}

/// Makes sure `bucket` exists, creating it if it is missing. A bucket we already own is fine.
pub async fn ensure_bucket(client: &Client, bucket: &str) -> Result<(), S3Error> {
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => return Ok(()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
        Err(e) => return Err(S3Error::from_sdk(format!("checking bucket {bucket}"), &e)),
    }
    let mut req = client.create_bucket().bucket(bucket);
    if let Some(region) = client.config().region().map(|r| r.as_ref())
        && region != DEFAULT_REGION
    {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => {
            tracing::info!(bucket, "created bucket");
            Ok(())
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_bucket_already_owned_by_you()) =>
        {
            Ok(())
        }
        Err(e) => Err(S3Error::from_sdk(format!("creating bucket {bucket}"), &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(n: u128) -> Uuid {
        Uuid::from_u128(0x6f1c7a52_2b7e_4c39_9d1e_2a7e5b3c9d10 + n)
    }

    #[test]
    fn object_keys_follow_the_documented_scheme() {
        let key = object_key(tid(0), "/data/run 42/ü.nc");
        let expected_hash = &blake3::hash("/data/run 42/ü.nc".as_bytes()).to_hex()[..32];
        assert_eq!(
            key,
            format!("tx/6f1c7a52-2b7e-4c39-9d1e-2a7e5b3c9d10/{expected_hash}")
        );
        assert_eq!(key.len(), 72);
    }

    #[test]
    fn object_keys_are_bounded_safe_and_deterministic() {
        let long = format!("/{}", "a/".repeat(4000));
        for path in [
            "/",
            "",
            "relative",
            "/data/x",
            "//double",
            long.as_str(),
            "/ü ñ/\n\t",
        ] {
            let key = object_key(tid(0), path);
            assert!(!key.starts_with('/'), "{key}");
            assert_eq!(key.len(), 72, "{key}");
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/-".contains(&b)),
                "{key}"
            );
            assert_eq!(key, object_key(tid(0), path));
        }
        assert_ne!(object_key(tid(0), "/a"), object_key(tid(0), "/b"));
        assert_ne!(object_key(tid(0), "/a"), object_key(tid(1), "/a"));
        assert!(object_key(tid(1), "/a").starts_with(&format!("tx/{}/", tid(1))));
    }

    fn store(endpoint: &str, bucket: &str, secret: &str) -> ObjectStoreConfig {
        ObjectStoreConfig {
            endpoint: endpoint.into(),
            region: format!("region-{bucket}"),
            secret_key: secret.into(),
            bucket: bucket.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn clients_are_picked_by_tenancy_and_unknown_names_are_refused() {
        let default = client(&store("http://default.invalid", "main", "s-default"))
            .await
            .unwrap();
        let other = client(&store("http://other.invalid", "b", "s-other"))
            .await
            .unwrap();
        let clients = S3Clients::single(default, "main").with_tenancy("b", other, "bucket-b");
        let d = clients.tenant(None).unwrap();
        assert_eq!((d.name.as_deref(), d.bucket.as_str()), (None, "main"));
        let b = clients.tenant(Some("b")).unwrap();
        assert_eq!(
            (b.name.as_deref(), b.bucket.as_str()),
            (Some("b"), "bucket-b")
        );
        // Each name gets its own client (told apart here by their regions).
        let region = |c: &Client| c.config().region().map(|r| r.to_string());
        assert_eq!(
            region(clients.for_tenancy(Some("b")).unwrap()).as_deref(),
            Some("region-b")
        );
        assert_eq!(
            region(clients.for_tenancy(None).unwrap()).as_deref(),
            Some("region-main")
        );
        let e = clients.for_tenancy(Some("nope")).unwrap_err();
        assert!(!e.transient);
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(
            e.message,
            "tenancy \"nope\" is not configured on this worker"
        );
        assert_eq!(clients.names().collect::<Vec<_>>(), ["b"]);
    }

    #[tokio::test]
    async fn building_clients_names_the_tenancy_that_failed_and_never_a_key() {
        let mut cfg = store("http://127.0.0.1:9", "main", "s3cr3t-default");
        cfg.tenancies.insert(
            "broken".into(),
            nlds_settings::TenancyConfig {
                endpoint: Some(" ".into()),
                secret_key: Some("s3cr3t-tenancy".into()),
                ..Default::default()
            },
        );
        // The default endpoint refuses connections, so building stops there first; an empty
        // tenancy endpoint is caught before any connection.
        let e = S3Clients::build(&cfg).await.unwrap_err();
        assert!(
            e.message.contains("the default object store"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("s3cr3t"), "{}", e.message);
        let t = cfg.tenancy("broken").unwrap();
        let e = client(&t).await.unwrap_err();
        assert!(e.message.contains("endpoint is empty"), "{}", e.message);
    }

    #[test]
    fn only_header_safe_paths_become_metadata() {
        assert_eq!(
            path_metadata("/data/run 42/x.nc"),
            Some("/data/run 42/x.nc")
        );
        assert_eq!(path_metadata("/data/ü.nc"), None);
        assert_eq!(path_metadata("/data/a\nb"), None);
        assert_eq!(path_metadata("/data/a "), None);
        assert_eq!(path_metadata(""), None);
        assert_eq!(path_metadata(&format!("/{}", "a".repeat(2000))), None);
    }
}
