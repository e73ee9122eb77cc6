//! The `nlds` command line, on the client library [`nlds_client`].
//!
//! [`cli`] is the command line, [`app`] runs it, [`render`] formats answers as text (tables fit
//! the terminal), [`progress`] shows a waited-for transaction and [`exit`] documents the exit
//! codes. [`setup`] is `nlds init`, `nlds renew` and `nlds config show`; [`login`] is
//! `nlds login` / `nlds logout` and picks the token a command sends.

pub mod admin;
pub mod app;
#[macro_use]
pub mod args;
pub mod cli;
pub mod ctx;
pub mod delete;
pub mod exit;
pub mod login;
pub mod plan;
pub mod progress;
pub mod render;
pub mod setup;
