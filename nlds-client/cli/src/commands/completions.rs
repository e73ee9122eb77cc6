//! `nlds completions SHELL`: the shell completion script.

use clap::Args;

use crate::ctx::{Failure, Io};
use crate::exit;

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// Prints the completion script of `nlds` (the clap command `nlds`) for the shell.
pub fn run(a: &CompletionsArgs, mut nlds: clap::Command, io: &mut Io<'_>) -> Result<u8, Failure> {
    clap_complete::generate(a.shell, &mut nlds, "nlds", io.out);
    Ok(exit::OK)
}
