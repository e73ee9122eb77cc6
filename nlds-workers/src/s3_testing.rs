//! A test bucket on the S3 endpoint named by `NLDS_TEST_S3_ENDPOINT` (moto, MinIO, ...), for the
//! tests of roles that read or write the warm tier. Without it a test is skipped loudly, or fails
//! when `CI` is set.

use aws_sdk_s3::Client;
use nlds_storage::s3;
use uuid::Uuid;

use crate::config::ObjectStoreConfig;

const ENDPOINT_VAR: &str = "NLDS_TEST_S3_ENDPOINT";

/// A fresh bucket of its own on the test endpoint.
pub(crate) struct TestBucket {
    pub client: Client,
    pub bucket: String,
}

impl TestBucket {
    /// `None` (after a loud notice) when no endpoint is configured outside CI.
    pub async fn new(test: &str) -> Option<TestBucket> {
        let endpoint = match std::env::var(ENDPOINT_VAR) {
            Ok(e) if !e.trim().is_empty() => e,
            _ if std::env::var_os("CI").is_some() => {
                panic!("{ENDPOINT_VAR} is not set but CI is: {test} needs an S3 endpoint")
            }
            _ => {
                eprintln!("\n!!!!!!!! SKIPPED {test}: {ENDPOINT_VAR} is not set !!!!!!!!\n");
                return None;
            }
        };
        let bucket = format!("nlds-test-{}", &Uuid::new_v4().simple().to_string()[..16]);
        let cfg = ObjectStoreConfig {
            endpoint,
            region: "us-east-1".into(),
            access_key: "nlds-test".into(),
            secret_key: "nlds-test-secret".into(),
            bucket: bucket.clone(),
            ..Default::default()
        };
        let client = s3::client(&cfg).await.unwrap();
        s3::ensure_bucket(&client, &bucket).await.unwrap();
        Some(TestBucket { client, bucket })
    }

    pub async fn put(&self, key: &str, body: &[u8]) {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
    }

    /// The object's bytes, or `None` if there is no such object.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => None,
            Err(e) => panic!("get {key}: {e:?}"),
        }
    }

    /// Every key under `prefix`, sorted.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for o in page.unwrap().contents() {
                out.push(o.key().unwrap_or_default().to_owned());
            }
        }
        out.sort();
        out
    }

    /// Empties and removes the bucket (nothing left behind on the shared endpoint).
    pub async fn remove(self) {
        for key in self.keys("").await {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .unwrap();
        }
        let _ = self
            .client
            .delete_bucket()
            .bucket(&self.bucket)
            .send()
            .await;
    }
}
