//! The `nlds` command line, on the client library [`nlds_client`].
//!
//! [`cli`] is the command line, [`app`] runs it, [`render`] formats answers as text (tables fit
//! the terminal), [`progress`] shows a waited-for transaction and [`exit`] documents the exit
//! codes. [`commands`] holds one module per command (or family: put/putlist, get/getlist, del/
//! dellist/undelete, init/renew/config show, login/logout, admin): its clap arguments, its
//! `prepare` and its `execute` (or `run`); `whoami` is still run by [`app`], and most views are
//! still in [`render`]. [`args`] are the argument groups commands share, [`plan`]
//! what a command sends and [`ctx`] what every command runs with.

pub mod app;
#[macro_use]
pub mod args;
pub mod cli;
pub mod commands;
pub mod ctx;
pub mod exit;
pub mod format;
pub mod plan;
pub mod progress;
pub mod render;
pub mod transaction;
