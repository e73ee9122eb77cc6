//! `nlds-server`: the API server (`serve`, distributed mode) or everything in one process
//! (`embedded`, the default way to run nlds-rs on one machine).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use nlds_embedded::{Embedded, EmbeddedOptions};
use nlds_server::{AppState, ServerSettings, router};
use nlds_settings::SetFlag;
use nlds_workers::run;

#[derive(Debug, Parser)]
#[command(name = "nlds-server", version, about = "nlds-rs API server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API against RabbitMQ (distributed mode; run the workers with `nlds-workers`).
    Serve {
        /// Settings file (TOML: [server], [bus], [workers]).
        #[arg(long, short, env = "NLDS_SETTINGS")]
        config: Option<PathBuf>,
        /// Sets one settings key over the file and the environment (repeatable), e.g.
        /// `--set server.listen=0.0.0.0:7070`.
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<SetFlag>,
    },
    /// Run the API server and every worker in this process, with SQLite, an in-process bus and
    /// an embedded S3 endpoint, all under DATA_DIR.
    Embedded {
        #[arg(long, default_value = "nlds-data", env = "NLDS_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: SocketAddr,
        /// Optional settings file: its [workers.index] and [workers.transfer] apply, and with
        /// --external-s3 its [workers.object_store] replaces the embedded S3 endpoint.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Sets one settings key over the file and the environment (repeatable).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<SetFlag>,
        #[arg(long)]
        external_s3: bool,
    },
}

fn main() -> anyhow::Result<()> {
    nlds_workers::telemetry::init("nlds-server");
    let cli = Cli::parse();
    // Settings first: they shape the runtime (`[memory]`).
    let (config, set) = match &cli.command {
        Command::Serve { config, set } | Command::Embedded { config, set, .. } => (config, set),
    };
    let settings =
        ServerSettings::load_cli(config.as_deref(), set.clone()).map_err(anyhow::Error::msg)?;
    nlds_workers::memory::apply(&settings.memory);
    let runtime = nlds_workers::memory::runtime(&settings.memory)?;
    let result = runtime.block_on(async move {
        let stop = run::shutdown_on_signals();
        match cli.command {
            Command::Serve { .. } => serve(settings, stop).await,
            Command::Embedded {
                data_dir,
                listen,
                external_s3,
                ..
            } => {
                let external = external_s3.then(|| settings.workers.object_store.clone());
                let e = Embedded::start(EmbeddedOptions {
                    data_dir,
                    listen,
                    external_object_store: external,
                    settings,
                })
                .await?;
                println!("nlds-rs embedded server running at {}", e.url);
                println!("  data directory: {}", e.data_dir.display());
                println!("  S3 endpoint:    {}", e.s3_endpoint);
                if let Some(m) = &e.metrics_url {
                    println!("  metrics:        {m}");
                }
                // Never the token itself: terminals, screen shares and service logs keep this.
                let client = e.data_dir.join("client.toml");
                println!(
                    "  token:          in {} (mode 0600, readable by you only)",
                    client.display()
                );
                println!("use it with:  export NLDS_CONFIG={}", client.display());
                e.run_until(stop).await
            }
        }
    });
    // Threads still busy with abandoned work do not hold the exit up.
    runtime.shutdown_timeout(run::EXIT_LIMIT);
    result
}

/// `nlds-server serve`: the API against RabbitMQ.
async fn serve(s: ServerSettings, stop: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
    let bus = run::connect_bus(&s.bus).await?;
    // The server's warnings and errors, for the logger.
    tokio::spawn(nlds_bus::notices::install(bus.clone()).run(stop.clone()));
    let state = AppState {
        bus,
        auth: nlds_server::auth::build(&s)?,
        cfg: Arc::new(s.server.clone()),
        live: Default::default(),
        webhook_key: nlds_embedded::webhook_key(&s.notify)?,
    };
    if let Some(addr) = s.metrics.listen {
        // The API's metrics, apart from the API listener (docs/METRICS.md).
        nlds_workers::ops::spawn_metrics(addr, stop.clone()).await?;
    }
    // Every role's queue, read from the broker when scraped: the server outlives any role's
    // processes, so a queue left without consumers still shows (docs/METRICS.md).
    let _queues = nlds_bus::metrics::export_queue_depths(state.bus.clone(), nlds_core::Role::ALL);
    let listener = tokio::net::TcpListener::bind(s.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", s.server.listen))?;
    tracing::info!(url = %s.server.base_url(), "nlds-server listening");
    nlds_embedded::serve_api(listener, router(state), stop, s.bus.shutdown_grace()).await
}
