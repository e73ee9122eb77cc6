//! Unfinished multipart uploads: aborted when the upload's future is dropped, and swept at start
//! (only the stale ones under `tx/`).

use std::time::Duration;

use nlds_storage::s3::S3Clients;

use super::*;
use crate::transfer_put::sweep::{Aborted, KEY_PREFIX, abort_stale_uploads};

/// The unfinished uploads of `bucket`: (key, upload id).
async fn unfinished(client: &Client, bucket: &str) -> Vec<(String, String)> {
    let page = client
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut out: Vec<(String, String)> = page
        .uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap().to_owned(),
                u.upload_id().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Starts an upload of `key` with one part stored, as a process killed mid-upload leaves it.
async fn leave_upload(client: &Client, bucket: &str, key: &str) -> String {
    let id = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    client
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from(data(5 << 20, 9)))
        .send()
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn stale_uploads_under_tx_are_aborted_and_nothing_else() {
    let Some(fx) = Fixture::new(
        "stale_uploads_under_tx_are_aborted_and_nothing_else",
        small_parts(),
    )
    .await
    else {
        return;
    };
    let key = format!("{KEY_PREFIX}{}/0123", Uuid::new_v4());
    let ours = leave_upload(&fx.client, &fx.bucket, &key).await;
    let foreign = leave_upload(&fx.client, &fx.bucket, "elsewhere/x").await;
    let clients = S3Clients::single(fx.client.clone(), fx.bucket.clone());
    // (The threshold itself is tested in transfer_put::sweep: moto reports every upload as
    // initiated in 2010.)
    assert_eq!(unfinished(&fx.client, &fx.bucket).await.len(), 2);
    let aborted = abort_stale_uploads(&clients, Duration::ZERO).await;
    assert_eq!(
        aborted,
        vec![Aborted {
            bucket: fx.bucket.clone(),
            key: key.clone(),
            upload_id: ours,
        }]
    );
    // Only our prefix is ours to abort.
    assert_eq!(
        unfinished(&fx.client, &fx.bucket).await,
        vec![("elsewhere/x".to_owned(), foreign.clone())]
    );
    fx.client
        .abort_multipart_upload()
        .bucket(&fx.bucket)
        .key("elsewhere/x")
        .upload_id(&foreign)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn an_upload_whose_future_is_dropped_is_aborted() {
    let cfg = TransferConfig {
        parts_in_flight: 1,
        ..small_parts()
    };
    let Some(fx) = Fixture::new("an_upload_whose_future_is_dropped_is_aborted", cfg).await else {
        return;
    };
    let big = fx.src("big.bin");
    write(&big, &data(100 << 20, 5), 0o644, 1_700_000_000_000_000_000);
    let env = envelope(fx.tid, ApiAction::Put, vec![record(&big)], None, false);
    let put = fx.put.handle(
        RoutingKey::new(Worker::TransferPut, Action::Start),
        env.clone(),
    );
    // Boxed, so that dropping it drops the future (a `pin!` reference would not).
    let mut put = Box::pin(put);
    // Until the upload is seen in flight (created, not completed).
    let start = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = &mut put => panic!("the upload finished before it was seen in flight"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if !unfinished(&fx.client, &fx.bucket).await.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no upload started"
        );
    }
    // Half a second more, so the client has heard of the upload it created (a drop between the
    // store's creating it and the client hearing of it is left to the start-up sweep; moto's
    // ListParts answer does not parse, so parts cannot be watched instead).
    tokio::select! {
        biased;
        _ = &mut put => panic!("the upload finished before it was dropped"),
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
    // Cancelled (a shutdown, a consumer dropping the handler's future): the guard aborts it.
    drop(put);
    let start = Instant::now();
    while !unfinished(&fx.client, &fx.bucket).await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the dropped upload was not aborted: {:?}",
            unfinished(&fx.client, &fx.bucket).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let objects = fx
        .client
        .list_objects_v2()
        .bucket(&fx.bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(objects.key_count(), Some(0), "nothing stored");
}
