//! nlds-rs client: a library for the native NLDS API (`/api/v2`) and the `nlds` command line.
//!
//! * [`Client`] talks to a server: put, get, list, find, meta, stat, one transaction's status,
//!   whoami, and [`Client::wait`] for a transaction to finish. Failures are [`Error`]s.
//! * [`config`] finds the server URL, token, group and HTTP settings, and writes them
//!   ([`setup`]: `nlds init`, `nlds renew`, `nlds config show`); [`cli`] is the command line,
//!   [`app`] runs it, [`render`] formats answers as text (tables fit the terminal), [`local`]
//!   looks at the local disk for dry runs and [`exit`] documents the exit codes.
//! * [`oauth`] logs in with OAuth2 (device grant, client credentials), keeps the tokens in a
//!   private token file and renews them before they expire; [`login`] is `nlds login` /
//!   `nlds logout` and picks the token a command sends.

pub mod admin;
pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod delete;
pub mod error;
pub mod exit;
pub mod local;
pub mod login;
pub mod oauth;
pub mod paths;
pub mod progress;
pub mod render;
pub mod setup;
pub mod tags;

pub use client::{Client, ClientOptions, Identity, RetryPolicy, WaitProgress};
pub use error::{Error, Result};
