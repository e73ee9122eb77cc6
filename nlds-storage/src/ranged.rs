//! Reading one large object with several ranged GETs at once.
//!
//! One GET streams at the speed of one connection and one server thread; an object of hundreds of
//! MiB read that way leaves the endpoint mostly idle (measured: s3s-fs on loopback serves one
//! stream at ~280 MB/s and four at ~445 MB/s on 2 vCPU). [`open`] sends the first range at once,
//! so a missing object or refused request fails with its typed error before anything is read, and
//! streams it; the following ranges are fetched `window` at a time by their own tasks and yielded
//! in order, so at most `window` parts are buffered per reader.

use std::io;

use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::s3::S3Error;

/// How a large object is split.
#[derive(Debug, Clone, Copy)]
pub struct Ranges {
    /// Bytes per ranged GET.
    pub part: u64,
    /// Ranged GETs in flight per reader.
    pub window: usize,
}

impl Default for Ranges {
    fn default() -> Self {
        Self {
            part: 8 << 20,
            window: 8,
        }
    }
}

/// A reader of `size` bytes of `bucket/key`, fetched in parts. The first request is made before
/// this returns; errors later on are I/O errors naming the object.
pub async fn open(
    s3: &Client,
    bucket: &str,
    key: &str,
    size: u64,
    ranges: Ranges,
    context: &str,
) -> Result<std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>, S3Error> {
    let part = ranges.part.max(1);
    let first_len = size.min(part);
    let first = get_range(s3, bucket, key, 0, first_len, context).await?;
    let first = ReaderStream::new(first.into_async_read());
    let parts = size.div_ceil(part).max(1);
    let (s3, bucket, key, context) = (
        s3.clone(),
        bucket.to_owned(),
        key.to_owned(),
        context.to_owned(),
    );
    let rest = futures::stream::iter(1..parts)
        .map(move |i| {
            let (s3, bucket, key, context) =
                (s3.clone(), bucket.clone(), key.clone(), context.clone());
            let start = i * part;
            let len = part.min(size - start);
            // A task per part, so the fetch proceeds while the reader is busy elsewhere.
            tokio::spawn(async move {
                let body = get_range(&s3, &bucket, &key, start, len, &context)
                    .await
                    .map_err(|e| io::Error::other(e.to_string()))?;
                let bytes = body
                    .collect()
                    .await
                    .map_err(|e| io::Error::other(format!("{context}: {e}")))?
                    .into_bytes();
                if bytes.len() as u64 != len {
                    return Err(io::Error::other(format!(
                        "{context}: bytes {start}..{} came back as {} bytes",
                        start + len,
                        bytes.len()
                    )));
                }
                Ok::<Bytes, io::Error>(bytes)
            })
        })
        .buffered(ranges.window.max(1))
        .map(|joined| joined.map_err(io::Error::other).and_then(|r| r));
    let all = first.chain(rest.into_stream());
    Ok(Box::pin(StreamReader::new(all)))
}

async fn get_range(
    s3: &Client,
    bucket: &str,
    key: &str,
    start: u64,
    len: u64,
    context: &str,
) -> Result<aws_sdk_s3::primitives::ByteStream, S3Error> {
    let mut req = s3.get_object().bucket(bucket).key(key);
    if len > 0 {
        req = req.range(format!("bytes={start}-{}", start + len - 1));
    }
    req.send()
        .await
        .map(|o| o.body)
        .map_err(|e| S3Error::from_sdk(context, &e))
}

#[cfg(test)]
mod tests {
    //! Against a real S3 endpoint (`NLDS_TEST_S3_ENDPOINT`; failing without it unless skipping
    //! was asked for, see `nlds_hooks::skip`).
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_s3::primitives::ByteStream;
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn client(test: &str) -> Option<(Client, String)> {
        let endpoint = nlds_hooks::skip::service(
            test,
            "NLDS_TEST_S3_ENDPOINT",
            "run scripts/services.sh and scripts/test.sh",
        )?;
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "nlds-test",
                "nlds-test-secret",
                None,
                None,
                "test",
            ))
            .force_path_style(true)
            .build();
        let client = Client::from_conf(conf);
        let bucket = format!(
            "nlds-ranged-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        client.create_bucket().bucket(&bucket).send().await.unwrap();
        Some((client, bucket))
    }

    async fn read(
        mut r: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
    ) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn ranged_reads_are_byte_identical_and_fail_by_name() {
        let Some((s3, bucket)) = client("ranged_reads_are_byte_identical_and_fail_by_name").await
        else {
            return;
        };
        // Not a multiple of the part size, so the last range is short.
        let data: Vec<u8> = (0..(5 * 65_536 + 1234) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        s3.put_object()
            .bucket(&bucket)
            .key("obj")
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        let small = Ranges {
            part: 65_536,
            window: 3,
        };
        for ranges in [
            small,
            Ranges {
                part: 1 << 30,
                window: 4,
            },
        ] {
            let r = open(
                &s3,
                &bucket,
                "obj",
                data.len() as u64,
                ranges,
                "reading obj",
            )
            .await
            .unwrap();
            assert_eq!(read(r).await.unwrap(), data, "{ranges:?}");
        }
        let empty_key = "empty";
        s3.put_object()
            .bucket(&bucket)
            .key(empty_key)
            .body(ByteStream::from(Vec::new()))
            .send()
            .await
            .unwrap();
        let r = open(&s3, &bucket, empty_key, 0, small, "reading empty")
            .await
            .unwrap();
        assert!(read(r).await.unwrap().is_empty());

        // A missing object fails at open, with the caller's context and not as transient.
        let Err(e) = open(&s3, &bucket, "missing", 10, small, "reading /data/missing").await else {
            panic!("a missing object opened");
        };
        assert!(e.message.contains("/data/missing"), "{}", e.message);
        assert!(!e.transient, "{}", e.message);

        // An object shorter than the catalogue says: the read fails naming it, never short-reads
        // silently.
        let r = open(
            &s3,
            &bucket,
            "obj",
            data.len() as u64 + 3 * 65_536,
            small,
            "reading obj",
        )
        .await
        .unwrap();
        let err = read(r).await.unwrap_err();
        assert!(err.to_string().contains("reading obj"), "{err}");
    }
}
