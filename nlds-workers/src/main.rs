//! `nlds-workers`: runs one worker role (or all of them) against RabbitMQ.

use std::path::PathBuf;

use clap::Parser;
use clap::builder::{PossibleValue, PossibleValuesParser};
use nlds_core::Role;
use nlds_settings::{SetFlag, Settings};
use nlds_workers::run;

/// Runs nlds-rs worker roles.
#[derive(Debug, Parser)]
#[command(name = "nlds-workers", version)]
struct Cli {
    /// Settings file (TOML: [bus], [workers]).
    #[arg(long, short, env = "NLDS_SETTINGS")]
    config: Option<PathBuf>,
    /// Sets one settings key over the file and the environment (repeatable), e.g.
    /// `--set workers.object_store.bucket=nlds`.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    set: Vec<SetFlag>,
    /// The role to run, `all` of them in one process, or `migrate` to apply the database
    /// migrations and exit.
    #[arg(value_parser = targets())]
    role: String,
}

/// `all`, `migrate` and every role of [`Role::ALL`]: what `--help` lists and the parser accepts.
fn targets() -> PossibleValuesParser {
    let fixed = [
        PossibleValue::new("all").help("Every role, in one process"),
        PossibleValue::new("migrate").help("Apply the database migrations and exit"),
    ];
    let roles = Role::ALL
        .iter()
        .map(|r| PossibleValue::new(r.as_str()).help(format!("Consumes queue {}", r.queue())));
    PossibleValuesParser::new(fixed.into_iter().chain(roles))
}

fn main() -> anyhow::Result<()> {
    nlds_workers::telemetry::init("nlds-workers");
    let cli = Cli::parse();
    // File < environment < flags, in one place: nlds-settings.
    let settings =
        Settings::load_cli(cli.config.as_deref(), cli.set).map_err(anyhow::Error::msg)?;
    nlds_workers::memory::apply(&settings.memory);
    let runtime = nlds_workers::memory::runtime(&settings.memory)?;
    let result = runtime.block_on(run_target(cli.role, settings));
    // A blocking thread still running (a file being read for a delivery that was abandoned and
    // returned to its queue) does not hold the exit up.
    runtime.shutdown_timeout(run::EXIT_LIMIT);
    result
}

/// Runs `role` (a role, `all`, or `migrate`) until a signal stops it.
async fn run_target(role: String, settings: Settings) -> anyhow::Result<()> {
    if role == "migrate" {
        nlds_workers::db::connect(&settings.workers.database_url).await?;
        println!("migrations applied to the catalogue database");
        return Ok(());
    }
    let roles: Vec<Role> = if role == "all" {
        run::all_roles()
    } else {
        vec![role.parse()?]
    };
    let shutdown = run::shutdown_on_signals();
    let bus = run::connect_bus(&settings.bus).await?;
    if let Some(addr) = settings.metrics.listen {
        nlds_workers::ops::spawn_metrics(addr, shutdown.clone()).await?;
    }
    let result = run::run_roles(bus, &roles, &settings, shutdown).await;
    // Zero in a healthy run; `bench/run.sh` reports these from the log.
    tracing::info!(
        database_contention = nlds_workers::db::contention_count(),
        bus_retries = nlds_bus::retries_scheduled(),
        "stopped (database_contention: operations that met a database lock; bus_retries: deliveries redelivered after a transient fault)"
    );
    result
}
