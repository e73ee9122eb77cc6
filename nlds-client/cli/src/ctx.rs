//! What every command needs to run and print: the environment ([`Env`]), the streams ([`Io`]), how
//! to print ([`Ctx`]), failures ([`Failure`]) and waiting for a submitted transaction.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nlds_core::error::{ApiError, ErrorBody};
use nlds_core::{ErrorCode, State};
use serde::Serialize;
use uuid::Uuid;

use crate::args::{HoldingSel, WaitOpts};
use crate::exit;
use crate::format::{self, Zone};
use crate::plan::WaitPlan;
use crate::progress::Reporter;
use crate::transaction;
use nlds_client::client::{Client, WaitProgress};
use nlds_client::error::Error;
use nlds_client::paths::absolutize;
use nlds_client::tags;

/// The process environment as the CLI sees it; tests build their own.
#[derive(Debug, Clone)]
pub struct Env {
    vars: HashMap<String, String>,
    /// The directory relative paths are made absolute against.
    pub cwd: PathBuf,
    /// Whether standard error is a terminal (progress bar or plain progress lines).
    pub stderr_is_terminal: bool,
    /// Whether standard input is a terminal (a token is then asked for, hidden).
    pub stdin_is_terminal: bool,
    /// The width of the terminal standard output is, if it is one.
    pub stdout_width: Option<usize>,
}

impl Env {
    /// The real environment of this process.
    pub fn from_process() -> Self {
        use std::io::IsTerminal;
        Self {
            vars: std::env::vars().collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            stdin_is_terminal: std::io::stdin().is_terminal(),
            stdout_width: console::Term::stdout()
                .size_checked()
                .map(|(_rows, cols)| usize::from(cols)),
        }
    }

    /// An environment with just these variables, in `cwd`, without a terminal.
    pub fn new<K, V>(vars: impl IntoIterator<Item = (K, V)>, cwd: impl Into<PathBuf>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            cwd: cwd.into(),
            stderr_is_terminal: false,
            stdin_is_terminal: false,
            stdout_width: None,
        }
    }

    /// The same environment with standard output on a terminal this wide.
    pub fn with_stdout_width(mut self, width: Option<usize>) -> Self {
        self.stdout_width = width;
        self
    }

    pub fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    pub(crate) fn home(&self) -> Option<PathBuf> {
        self.var("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    }
}

/// Where a command reads and writes.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub stdin: &'a mut dyn Read,
}

/// Why a command failed; knows its exit code.
#[derive(Debug)]
pub enum Failure {
    /// From the client library (server answers, network, configuration, wait timeout).
    Client(Error),
    /// Found by the CLI itself (bad input, nothing found for an id, ...).
    Local {
        exit: u8,
        code: ErrorCode,
        message: String,
    },
}

impl Failure {
    /// A usage error: bad input on the command line or in a FILELIST (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::Local {
            exit: exit::USAGE,
            code: ErrorCode::BadRequest,
            message: message.into(),
        }
    }

    /// Nothing matched an id the user gave (exit code 5).
    pub fn not_found(message: impl Into<String>) -> Self {
        Failure::Local {
            exit: exit::NOT_FOUND,
            code: ErrorCode::NotFound,
            message: message.into(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Client(e) => exit::for_error(e),
            Failure::Local { exit, .. } => *exit,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Failure::Client(e) => e.code(),
            Failure::Local { code, .. } => *code,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::Client(e) => e.to_string(),
            Failure::Local { message, .. } => message.clone(),
        }
    }

    /// The line(s) printed on standard error (without `--json`): the error, and what to do
    /// about it where that is known.
    pub fn human(&self) -> String {
        let text = match self {
            Failure::Client(e @ (Error::Api { code, .. } | Error::Provider { code, .. })) => {
                format!("error: {e} ({code})")
            }
            // A first run: not an error dump, just what to do.
            Failure::Client(e @ Error::NotConfigured(_)) => e.to_string(),
            other => format!("error: {}", other.message()),
        };
        match self.remedy() {
            Some(hint) => format!("{text}\nhint: {hint}"),
            None => text,
        }
    }

    /// What to do next, for the failures whose message alone does not say.
    fn remedy(&self) -> Option<&'static str> {
        match self {
            Failure::Client(Error::Transport(e)) if e.is_connect() => Some(
                "is the server running, and is its address right? `nlds config show` shows the \
                 url in use; `nlds init` sets it",
            ),
            Failure::Client(Error::Api {
                code: ErrorCode::Unauthorized,
                ..
            }) => Some(
                "the token is invalid or has expired: `nlds login` (OpenID Connect) or `nlds \
                 init` (a static token) gets a new one",
            ),
            Failure::Client(Error::Api {
                code: ErrorCode::Unavailable,
                ..
            }) => Some("the service is down or busy: try again in a minute"),
            _ => None,
        }
    }

    /// The `--json` form: `{"error":{"code":...,"message":...}}`.
    pub fn json(&self) -> String {
        let body = ErrorBody {
            error: ApiError::new(self.code(), self.message()),
        };
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Client(e)
    }
}

/// How to print.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub json: bool,
    pub zone: Zone,
    /// Standard error is a terminal.
    pub terminal: bool,
    /// The width tables must fit in (`None`: any width).
    pub width: Option<usize>,
    /// The group commands act in, if one is configured (shown by `whoami`).
    pub group: Option<String>,
}

pub(crate) fn print_json<T: Serialize>(io: &mut Io<'_>, v: &T) -> Result<(), Failure> {
    let text = serde_json::to_string(v).map_err(|e| Error::Decode(e.to_string()))?;
    let _ = writeln!(io.out, "{text}");
    Ok(())
}

pub(crate) fn print(io: &mut Io<'_>, text: &str) {
    let _ = io.out.write_all(text.as_bytes());
}

/// Prints lines of paths as their raw bytes (see `nlds_core::pathname`), so that what is printed
/// is what `putlist` and `getlist` read back.
pub(crate) fn print_raw(io: &mut Io<'_>, text: &str) {
    let _ = io.out.write_all(&nlds_core::pathname::decode_bytes(text));
}

pub(crate) fn note(io: &mut Io<'_>, ctx: &Ctx, text: &str) {
    if !ctx.json {
        let _ = writeln!(io.err, "{text}");
    }
}

/// What a `list` or `find` query names, as people say it ("label run42, tag project:ice"), or
/// `None` for a query that names nothing (a plain listing).
///
/// The one rule for "nothing matched" (`list`, `find`, in every output mode): a query that names
/// something and matches nothing exits 5 (not found), saying what was asked; a plain listing that
/// is empty is no error (exit 0). With `--json` the empty page is printed all the same.
pub(crate) fn selection(q: &nlds_core::api::HoldingQuery) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(l) = &q.label {
        parts.push(format!("label {l}"));
    }
    if let Some(id) = q.holding_id {
        parts.push(format!("holding id {id}"));
    }
    if let Some(t) = &q.transaction_id {
        parts.push(format!("transaction {t}"));
    }
    if let Some(t) = &q.tag {
        parts.push(format!("tag {t}"));
    }
    if let Some(p) = &q.path {
        let kind = if q.regex { "pattern" } else { "path" };
        parts.push(format!("{kind} {p}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

pub(crate) fn more_note(io: &mut Io<'_>, ctx: &Ctx, shown: usize, total: u64, what: &str) {
    if total > shown as u64 {
        note(
            io,
            ctx,
            &format!("note: showing {shown} of {total} {what}; use -L/--limit to see more"),
        );
    }
}

/// How wide tables may be: unlimited with `--wide`, else `$COLUMNS`, else the terminal's width
/// when standard output is a terminal, else unlimited (a pipe or a file gets everything).
pub fn table_width(wide: bool, env: &Env) -> Option<usize> {
    if wide {
        return None;
    }
    env.var("COLUMNS")
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
        .or(env.stdout_width)
}

pub(crate) fn wait_plan(w: &WaitOpts) -> Option<WaitPlan> {
    w.wait.then_some(WaitPlan {
        poll: w.poll,
        timeout: w.timeout,
    })
}

pub(crate) fn all_tags(sel: &HoldingSel) -> nlds_core::api::Tags {
    tags::merge(&sel.tag)
}

pub(crate) fn abs(p: impl AsRef<std::ffi::OsStr>, env: &Env) -> Result<String, Failure> {
    absolutize(p, &env.cwd, env.home().as_deref()).map_err(Failure::usage)
}

/// A put or get whose answer never came may still have been accepted: say how to check.
pub(crate) fn submit_failure(e: Error, id: Option<Uuid>) -> Failure {
    match (&e, id) {
        (Error::Transport(_), Some(id)) => Failure::Local {
            exit: exit::for_error(&e),
            code: e.code(),
            message: format!(
                "{e}\nThe request may still have been accepted: check with `nlds stat -n {id}`."
            ),
        },
        _ => Failure::Client(e),
    }
}

/// A chunk of the paths of a long FILELIST that could not be sent (`part`, from 0): the
/// transaction did not start. Says its id, and that the parts sent go unused.
pub(crate) fn chunk_failure(e: Error, id: Uuid, part: u32) -> Failure {
    Failure::Local {
        exit: exit::for_error(&e),
        code: e.code(),
        message: format!(
            "{e}
sending part {part} of the paths of transaction {id} failed: the transaction              did not start (the parts sent are deleted by the server unused); run the command              again"
        ),
    }
}

pub(crate) async fn after_submit(
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
    accepted: nlds_core::api::Accepted,
    wait: Option<WaitPlan>,
) -> Result<u8, Failure> {
    match wait {
        None => {
            if ctx.json {
                print_json(io, &accepted)?;
            } else {
                print(io, &transaction::accepted_view(&accepted));
                let id = accepted.transaction_id;
                note(
                    io,
                    ctx,
                    &format!(
                        "Follow it with `nlds stat -n {id}`, or wait for it with `nlds wait {id}`."
                    ),
                );
            }
            Ok(exit::OK)
        }
        Some(w) => {
            if !ctx.json {
                print(io, &transaction::accepted_view(&accepted));
            }
            wait_for(client, ctx, io, accepted.transaction_id, w).await
        }
    }
}

/// Waits for a transaction, showing progress on standard error, and prints its final status.
pub(crate) async fn wait_for(
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
    id: Uuid,
    w: WaitPlan,
) -> Result<u8, Failure> {
    let mut reporter = Reporter::new(id, ctx.terminal, ctx.json && !ctx.terminal);
    let mut last: Option<State> = None;
    let result = {
        let err = &mut *io.err;
        let waiting = client.wait(id, w.poll, w.timeout, |p| {
            if let WaitProgress::Status(s) = p {
                last = Some(s.state);
            }
            reporter.update(p, err);
        });
        // Ctrl-C stops the waiting, not the transaction: say how to follow it.
        tokio::select! {
            r = waiting => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    };
    reporter.finish();
    let Some(result) = result else {
        let _ = writeln!(
            io.err,
            "interrupted: transaction {id} goes on without this command; follow it with `nlds wait {id}`"
        );
        return Ok(exit::INTERRUPTED);
    };
    match result {
        Ok(status) => {
            if ctx.json {
                print_json(io, &status)?;
            } else {
                print(
                    io,
                    &transaction::transaction_view(&status, false, true, ctx.zone),
                );
            }
            let code = exit::for_state(status.state);
            if code != exit::OK {
                note(
                    io,
                    ctx,
                    &format!(
                        "error: transaction {id} ended {}",
                        format::state_name(status.state)
                    ),
                );
            }
            Ok(code)
        }
        Err(Error::Timeout) => Err(Failure::Local {
            exit: exit::TIMEOUT,
            code: ErrorCode::Timeout,
            message: format!(
                "gave up waiting after {}: transaction {id} is still {}; follow it with `nlds stat -n {id}` or `nlds wait {id}`",
                humantime(w.timeout.unwrap_or_default()),
                format::state_name(last.unwrap_or(State::Searching)),
            ),
        }),
        Err(e) => Err(e.into()),
    }
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 120.0 {
        format!("{s:.0}s")
    } else if s < 7200.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}

pub(crate) fn query_tag(sel: &HoldingSel) -> Result<Option<String>, Failure> {
    tags::query_form(&all_tags(sel)).map_err(Failure::usage)
}

/// The target directory of a get: absolute, and it must exist, as with the Python client.
pub(crate) fn target_dir(
    target: &Option<std::ffi::OsString>,
    env: &Env,
) -> Result<Option<String>, Failure> {
    let Some(t) = target else { return Ok(None) };
    let abs = abs(t, env)?;
    if !Path::new(&nlds_core::pathname::decode(&abs)).is_dir() {
        return Err(Failure::usage(format!(
            "the target directory {} does not exist (or is not a directory)",
            nlds_core::pathname::display(&abs)
        )));
    }
    Ok(Some(abs))
}
