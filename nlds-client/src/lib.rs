//! nlds-rs client library for the native NLDS API (`/api/v2`); the `nlds` command line is the
//! `nlds-cli` package (nlds-client/cli), built on this one.
//!
//! * [`Client`] talks to a server: put, get, list, find, meta, stat, one transaction's status,
//!   whoami, and [`Client::wait`] for a transaction to finish. Failures are [`Error`]s.
//! * [`config`] finds the server URL, token, group and HTTP settings, and writes them.
//! * [`oauth`] logs in with OAuth2 (device grant, client credentials), keeps the tokens in a
//!   private token file and renews them before they expire.
//! * [`Client::path_stream`] sends the paths of a put or get as they are read ([`PathStream`]),
//!   and [`filelist`] reads a FILELIST as it streams, in chunks.
//! * [`paths`] and [`tags`] parse paths, file lists and tags as the command line writes them;
//!   [`local`] looks at the local disk (what a put would send, what a get would overwrite).
//!
//! No terminal code here: no argument parsing, progress bars or text rendering.

pub mod client;
pub mod config;
pub mod error;
pub mod filelist;
pub mod live;
pub mod local;
pub mod oauth;
pub mod path_stream;
pub mod paths;
pub mod tags;

pub use client::{Client, ClientOptions, Identity, RetryPolicy, WaitProgress};
pub use error::{Error, Result};
pub use path_stream::PathStream;
