//! One module per command (or family of commands): its arguments, what it does and how it shows
//! the answer. Commands import the shared modules (`args`, `ctx`, `plan`, `format`, `transaction`,
//! `exit`), never `cli`, `app` or `render`, which dispatch to them or gather their views.

pub mod admin;
pub mod cancel;
pub mod completions;
pub mod del;
pub mod explain;
pub mod find;
pub mod get;
pub mod list;
pub mod login;
pub mod man;
pub mod meta;
pub mod notify;
pub mod put;
pub mod quota;
pub mod retry;
pub mod setup;
pub mod stage;
pub mod stat;
pub mod wait;
pub mod whoami;
