//! `s3s-fs` for `bench/run.sh`: the S3 endpoint that rclone and nlds-rs are measured against,
//! built from the workspace's own `s3s-fs` 0.14.1 (so the benchmark needs no `cargo install`).
//! The same command line and serving loop as the `s3s-fs` binary of that crate (path-style
//! requests, one access key, HTTP/1 and HTTP/2, no TCP_NODELAY), on the address given.
//!
//! ```text
//! cargo run --release -p nlds-embedded --example s3s-fs -- \
//!     --host 127.0.0.1 --port 8014 --access-key AK --secret-key SK ROOT
//! ```

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

#[derive(Debug, Parser)]
#[command(name = "s3s-fs", version = "0.14.1")]
struct Opt {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value = "8014")]
    port: u16,
    #[arg(long)]
    access_key: String,
    #[arg(long)]
    secret_key: String,
    /// Directory of the buckets (one subdirectory each).
    root: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opt = Opt::parse();
    let fs = s3s_fs::FileSystem::new(&opt.root)
        .map_err(|e| anyhow::anyhow!("cannot serve {}: {e:?}", opt.root.display()))?;
    let mut b = S3ServiceBuilder::new(fs);
    b.set_auth(SimpleAuth::from_single(opt.access_key, opt.secret_key));
    let service = b.build();
    let listener = tokio::net::TcpListener::bind((opt.host.as_str(), opt.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", opt.host, opt.port))?;
    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    eprintln!(
        "s3s-fs serving {} at http://{}",
        opt.root.display(),
        listener.local_addr()?
    );
    loop {
        let (socket, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
