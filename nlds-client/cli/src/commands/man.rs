//! `nlds man [COMMAND]`: the manual pages (roff), printed or written to a directory.

use clap::Args;
use nlds_core::ErrorCode;

use crate::ctx::{Ctx, Failure, Io, note, print_json};
use crate::exit;

#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// The page of this command (e.g. put); without it, the page of nlds itself.
    #[arg(value_name = "COMMAND", conflicts_with = "dir")]
    pub command: Option<String>,

    /// Write every page (nlds.1, nlds-put.1, ...) into this directory instead of printing one.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

/// Prints the page of `nlds` (the clap command `nlds`) or of one of its commands, or writes them all.
/// `nlds man`: one page on standard output, or every page into a directory.
pub fn run(a: &ManArgs, nlds: clap::Command, ctx: &Ctx, io: &mut Io<'_>) -> Result<u8, Failure> {
    let mut cmd = nlds.disable_help_subcommand(true);
    cmd.build();
    let io_failure = |what: String, e: std::io::Error| Failure::Local {
        exit: exit::GENERIC,
        code: ErrorCode::Internal,
        message: format!("{what}: {e}"),
    };
    if let Some(dir) = &a.dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_failure(format!("cannot create {}", dir.display()), e))?;
        let mut pages = Vec::new();
        fn collect(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
            out.push(cmd.clone());
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                collect(sub, out);
            }
        }
        collect(&cmd, &mut pages);
        let mut written = Vec::new();
        for page in pages {
            let path = clap_mangen::Man::new(page)
                .generate_to(dir)
                .map_err(|e| io_failure(format!("cannot write into {}", dir.display()), e))?;
            written.push(path.display().to_string());
        }
        if ctx.json {
            print_json(io, &serde_json::json!({ "written": written }))?;
        } else {
            let _ = writeln!(
                io.out,
                "Wrote {} manual pages into {}:",
                written.len(),
                dir.display()
            );
            for w in &written {
                let _ = writeln!(io.out, "    {w}");
            }
            note(
                io,
                ctx,
                "Read them with `man nlds` once that directory is on your MANPATH (~/.local/share/man is, on most systems).",
            );
        }
        return Ok(exit::OK);
    }
    let page = match &a.command {
        None => cmd,
        Some(name) => cmd.find_subcommand(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
            Failure::usage(format!(
                "nlds has no command {name:?}; the commands are: {}",
                names.join(", ")
            ))
        })?,
    };
    clap_mangen::Man::new(page)
        .render(io.out)
        .map_err(|e| io_failure("cannot write the manual page".into(), e))?;
    Ok(exit::OK)
}
