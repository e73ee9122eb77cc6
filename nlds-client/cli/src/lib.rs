//! The `nlds` command line, on the client library [`nlds_client`].
//!
//! [`cli`] is the command line, [`app`] runs it, [`progress`] shows a waited-for transaction and
//! [`exit`] documents the exit codes. [`commands`] holds one module per command (or family:
//! put/putlist, get/getlist, del/dellist/undelete, init/renew/config show, login/logout, whoami,
//! admin with one file per subcommand): its clap arguments, its `prepare`, its `execute` (or
//! `run`) and its text view (`commands/<cmd>/view.rs` when it is big). [`format`] is the
//! formatting views share (times, sizes, tables that fit the terminal), [`transaction`] how a
//! submitted transaction is shown (by `stat`, `wait` and `--wait`), and [`render`] re-exports
//! every view for golden tests. [`args`] are the argument groups commands share, [`plan`] what a
//! command sends and [`ctx`] what every command runs with; [`filelist`] reads FILELISTs, the
//! rest of a long one as it is sent.
//!
//! Imports go one way: `app`/`cli` dispatch to `commands`; commands use `args`, `ctx`, `plan`,
//! `filelist`, `format`, `transaction` and `exit`; nothing imports `render`.

pub mod app;
#[macro_use]
pub mod args;
pub mod cli;
pub mod commands;
pub mod ctx;
pub mod exit;
pub mod filelist;
pub mod format;
pub mod plan;
pub mod progress;
pub mod render;
pub mod transaction;
