//! nlds-rs client: a library for the native NLDS API (`/api/v2`) and the `nlds` command line.
//!
//! * [`Client`] talks to a server: put, get, list, find, meta, stat, one transaction's status,
//!   whoami, and [`Client::wait`] for a transaction to finish. Failures are [`Error`]s.
//! * [`config`] finds the server URL, token and group; [`cli`] is the command line, [`app`] runs
//!   it, [`render`] formats answers as text and [`exit`] documents the exit codes.

pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod exit;
pub mod paths;
pub mod progress;
pub mod render;
pub mod tags;

pub use client::{Client, ClientOptions, RetryPolicy, WaitProgress};
pub use error::{Error, Result};
