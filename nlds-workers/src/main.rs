//! `nlds-workers`: runs one worker role (or all of them) against RabbitMQ.

use std::path::PathBuf;

use clap::Parser;
use nlds_core::Role;
use nlds_workers::run::{self, Settings};

/// Runs nlds-rs worker roles.
#[derive(Debug, Parser)]
#[command(name = "nlds-workers", version)]
struct Cli {
    /// Settings file (TOML: [bus], [workers]).
    #[arg(long, short, env = "NLDS_SETTINGS")]
    config: Option<PathBuf>,
    /// A role (router, indexer, transfer-put, transfer-get, catalogue, catalogue-rpc, monitor,
    /// monitor-rpc, logger), `all`, or `migrate` to apply the database migrations and exit.
    role: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run::init_tracing();
    let cli = Cli::parse();
    let settings: Settings = run::load(cli.config.as_deref())?;
    if cli.role == "migrate" {
        nlds_workers::db::connect(&settings.workers.database_url).await?;
        println!("migrations applied to the catalogue database");
        return Ok(());
    }
    let roles: Vec<Role> = if cli.role == "all" {
        run::all_roles()
    } else {
        vec![cli.role.parse().map_err(|_| {
            anyhow::anyhow!(
                "unknown role {:?}; roles are: all, {}",
                cli.role,
                Role::ALL
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?]
    };
    let shutdown = run::shutdown_on_signals();
    let bus = run::connect_bus(&settings.bus).await?;
    run::run_roles(bus, &roles, &settings.workers, &settings.bus, shutdown).await
}
