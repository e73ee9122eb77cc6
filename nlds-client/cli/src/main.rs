//! The `nlds` command; everything but start-up lives in the `nlds_cli` library (`nlds_cli::app`).

use std::process::ExitCode;

use clap::Parser;
use nlds_cli::app::{Env, Io, run};
use nlds_cli::cli::Cli;
use nlds_cli::exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Env::from_process();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::GENERIC);
        }
    };
    let (mut out, mut err, mut stdin) = (std::io::stdout(), std::io::stderr(), std::io::stdin());
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        stdin: &mut stdin,
    };
    ExitCode::from(runtime.block_on(run(cli, &env, &mut io)))
}
