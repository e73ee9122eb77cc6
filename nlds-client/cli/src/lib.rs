//! The `nlds` command line, on the client library [`nlds_client`].
//!
//! [`cli`] is the command line, [`app`] runs it, [`render`] formats answers as text (tables fit
//! the terminal), [`progress`] shows a waited-for transaction and [`exit`] documents the exit
//! codes. [`commands`] holds the commands that have their own module (arguments, run, view):
//! `setup` (`nlds init`, `nlds renew`, `nlds config show`), `login` (`nlds login` / `nlds logout`,
//! and the token a command sends), `del` (del, dellist, undelete) and `admin`. [`args`] are the
//! argument groups commands share, [`plan`] what a command sends and [`ctx`] what every command
//! runs with.

pub mod app;
#[macro_use]
pub mod args;
pub mod cli;
pub mod commands;
pub mod ctx;
pub mod exit;
pub mod plan;
pub mod progress;
pub mod render;
