//! An S3 server that checks every request's signature: s3s-fs (the workspace's embedded object
//! store) on a free loopback port, knowing only the access keys registered with it. A request
//! signed with an unknown key or the wrong secret is refused (403), unlike moto, which accepts
//! any credentials.

use std::path::Path;

use s3s::auth::{SecretKey, SimpleAuth};
use s3s::service::S3ServiceBuilder;
use tokio_util::sync::CancellationToken;

/// Serves the buckets under `root` (one directory each) to the holders of `keys` (access key,
/// secret key) until `stop` is cancelled; returns the endpoint URL.
pub async fn start(root: &Path, keys: &[(&str, &str)], stop: CancellationToken) -> String {
    std::fs::create_dir_all(root).unwrap();
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut auth = SimpleAuth::new();
    for (access, secret) in keys {
        auth.register((*access).to_owned(), SecretKey::from(*secret));
    }
    let mut b = S3ServiceBuilder::new(fs);
    b.set_auth(auth);
    let service = b.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let http =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        loop {
            let (socket, _) = tokio::select! {
                () = stop.cancelled() => break,
                r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            };
            let conn = http
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    format!("http://{addr}")
}
