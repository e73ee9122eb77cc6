//! `xrootd`: the cold tier on an XRootD server (an HSM or CERN CTA front end), driven through the
//! `xrdcp` and `xrdfs` commands, the protocol CEDA NLDS uses to reach CTA. No Rust XRootD client
//! exists, so every operation is one subprocess (tokio::process).
//!
//! A name `h1/a.tar` maps to `<base>/h1/a.tar` on `root://host:port//<base>` ([`XrootdConfig::url`]).
//!
//! | operation | command |
//! |---|---|
//! | write | `xrdcp --posc -f - URL/<name>.PART-<uuid>` fed from the stream, `xrdfs stat` of it (size), `xrdfs rm <name>`, `xrdfs mv` into place |
//! | stat | `xrdfs stat` (`Offline` flag → not online; "no such file" → `None`) |
//! | checksum | `xrdfs query checksum <path>?cks.type=adler32` |
//! | stage | `xrdfs stat` of each name, then `xrdfs prepare -s` of the offline ones |
//! | read | `xrdfs stat`, then `xrdcp URL -`, streamed from its stdout |
//! | evict | `xrdfs prepare -e` |
//! | remove | `xrdfs rm` ("no such file" is success) |
//!
//! Semantics worth knowing:
//! - a write goes to a temporary name (`.PART-<uuid>`: upper case is not allowed in names, so it
//!   can never collide with an aggregate) and is renamed into place only after `xrdcp` succeeded
//!   and the server reports exactly `size` bytes. XRootD refuses to rename onto an existing file,
//!   so a rewrite removes the old aggregate first: a failed upload leaves the old one intact, a
//!   failure of the final rename leaves nothing under the name. `--posc` (persist on successful
//!   close) makes the server drop the temporary by itself if the writer dies before closing it
//!   (after `ofs.persist hold`, 10 minutes by default); failed writes remove it at once;
//! - a freshly written aggregate is online (it sits on the front end's disk buffer) until the
//!   system or [`ColdStore::evict`] drops the disk copy;
//! - [`ColdStore::checksum`] needs the front end to answer for the file: CTA keeps checksums in
//!   its catalogue, a plain XRootD HSM computes them from the disk copy, so there an offline
//!   aggregate answers [`ColdError::Offline`];
//! - [`ColdStore::stage`] answers [`ColdError::NotFound`] (naming the first missing one) if any
//!   name has no aggregate, after asking for the others; online ones are not re-requested;
//! - eviction is asynchronous on most front ends: poll [`ColdStore::stat`];
//! - a server that cannot be reached answers [`ColdError::Unavailable`] within about
//!   [`XrootdConfig::timeout_secs`] (the XRootD client's own connection window and retries, up to
//!   ten minutes by default, are cut down through `XRD_*` variables, which `env` may override);
//! - the tools' stderr is part of error texts; `env` values (e.g. an `XrdSecSSSKT` keytab path)
//!   are never logged, and [`XrootdConfig`]'s `Debug` shows only their keys.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::{
    AggregateStat, ByteReader, ColdError, ColdResult, ColdStore, StoredChecksum, check_name,
};

/// Bytes moved from a write's stream into `xrdcp` at a time.
const CHUNK: usize = 1 << 20;
/// Paths per `xrdfs prepare` (XRootD's generic prepare plugin accepts 48 by default).
const PREPARE_BATCH: usize = 32;
/// `xrdfs stat` commands in flight while [`ColdStore::stage`] sorts its names.
const STAT_CONCURRENCY: usize = 8;
/// Stderr kept from a tool for error texts.
const STDERR_CAP: usize = 4096;
/// `stat` flags (XRootD's kXR_isDir and kXR_offline).
const FLAG_IS_DIR: u32 = 2;
const FLAG_OFFLINE: u32 = 8;
/// XRootD server error codes worth retrying: kXR_NoMemory, kXR_ServerError, kXR_noserver,
/// kXR_inProgress, kXR_Overloaded, kXR_ReqTimedOut, kXR_TimerExpired.
const TRANSIENT_CODES: [u32; 7] = [3008, 3012, 3014, 3020, 3024, 3034, 3035];
/// kXR_NotFound.
const NOT_FOUND_CODE: u32 = 3011;

pub use nlds_settings::XrootdConfig;

/// The `xrootd` cold store. `Send + Sync`, so it can be shared in an `Arc`.
#[derive(Debug, Clone)]
pub struct XrootdStore {
    cfg: XrootdConfig,
    /// `root://host:port`
    server: String,
    /// `/base/path` (no trailing slash; empty for the server's root).
    base: String,
    timeout: Duration,
}

/// What a finished metadata command said.
struct Done {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl XrootdStore {
    /// Checks the configuration; contacts nothing.
    pub fn new(cfg: XrootdConfig) -> ColdResult<Self> {
        let (server, base) = split_url(&cfg.url)?;
        if cfg.xrdcp.is_empty() || cfg.xrdfs.is_empty() {
            return Err(ColdError::Failed(
                "workers.cold.xrootd: xrdcp and xrdfs must name commands".into(),
            ));
        }
        let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        Ok(Self {
            cfg,
            server,
            base,
            timeout,
        })
    }

    /// The server-side path of a name.
    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    /// The `root://` URL of a server-side path.
    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.server)
    }

    /// A command with the prefix, the client settings and the configured environment.
    fn command(&self, program: &str) -> Command {
        let mut cmd = match self.cfg.command_prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        let secs = self.timeout.as_secs();
        // The client's defaults retry an unreachable server for up to ten minutes.
        cmd.env(
            "XRD_CONNECTIONWINDOW",
            secs.div_ceil(4).clamp(1, 30).to_string(),
        )
        .env("XRD_CONNECTIONRETRY", "1")
        .env("XRD_REQUESTTIMEOUT", secs.to_string())
        .env("XRD_TIMEOUTRESOLUTION", "1")
        .envs(&self.cfg.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        cmd
    }

    fn spawn(&self, program: &str, mut cmd: Command) -> ColdResult<tokio::process::Child> {
        cmd.spawn().map_err(|e| {
            ColdError::Failed(format!(
                "cannot run {}{program}: {e}",
                self.cfg
                    .command_prefix
                    .iter()
                    .map(|w| format!("{w} "))
                    .collect::<String>()
            ))
        })
    }

    /// Runs `xrdfs <server> <args>` to completion within the timeout.
    async fn xrdfs(&self, args: &[&str]) -> ColdResult<Done> {
        let mut cmd = self.command(&self.cfg.xrdfs);
        cmd.arg(&self.server).args(args);
        tracing::debug!(server = %self.server, "xrdfs {}", args.join(" "));
        let child = self.spawn(&self.cfg.xrdfs, cmd)?;
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            // Dropping the future kills the command.
            Err(_) => Err(ColdError::Unavailable(format!(
                "xrdfs {}: no answer from {} within {} s",
                args.join(" "),
                self.server,
                self.timeout.as_secs()
            ))),
            Ok(Err(e)) => Err(ColdError::Failed(format!("xrdfs {}: {e}", args.join(" ")))),
            Ok(Ok(out)) => Ok(Done {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: tidy(&String::from_utf8_lossy(&out.stderr)),
            }),
        }
    }

    /// The error of a failed command about `name`.
    fn error(&self, what: &str, name: &str, status: ExitStatus, stderr: &str) -> ColdError {
        classify(name, &format!("{what} on {}", self.server), status, stderr)
    }

    /// `(size, flags)` of a server-side path, `None` if there is nothing there.
    async fn stat_path(&self, name: &str, path: &str) -> ColdResult<Option<(u64, u32)>> {
        let done = self.xrdfs(&["stat", path]).await?;
        if !done.status.success() {
            return match self.error("xrdfs stat", name, done.status, &done.stderr) {
                ColdError::NotFound(_) => Ok(None),
                e => Err(e),
            };
        }
        parse_stat(&done.stdout).map(Some).ok_or_else(|| {
            ColdError::Failed(format!(
                "xrdfs stat {path} on {}: unexpected answer {:?}",
                self.server,
                done.stdout.trim()
            ))
        })
    }

    /// Best-effort removal of a temporary after a failed write.
    async fn discard(&self, path: &str) {
        match self.xrdfs(&["rm", path]).await {
            Ok(d) if d.status.success() => {}
            Ok(d) => match self.error("xrdfs rm", path, d.status, &d.stderr) {
                ColdError::NotFound(_) => {}
                e => tracing::warn!(path, server = %self.server, "leaving a partial write: {e}"),
            },
            Err(e) => tracing::warn!(path, server = %self.server, "leaving a partial write: {e}"),
        }
    }

    /// Uploads `size` bytes of `body` to `tmp`; on failure nothing is left there (or it is POSC
    /// and the server drops it).
    async fn upload(
        &self,
        name: &str,
        tmp: &str,
        size: u64,
        body: &mut ByteReader,
    ) -> ColdResult<()> {
        let mut cmd = self.command(&self.cfg.xrdcp);
        cmd.args(["--nopbar", "--posc", "--force", "-", &self.url(tmp)])
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        tracing::debug!(server = %self.server, "xrdcp - {tmp} ({size} bytes)");
        let mut child = self.spawn(&self.cfg.xrdcp, cmd)?;
        let stderr = drain(child.stderr.take());
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let fed = feed(body, &mut stdin, size).await;
        if fed.is_err() {
            // Kill before closing stdin: a closed stdin would complete a short file.
            let _ = child.start_kill();
        }
        drop(stdin);
        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        let stderr = match &waited {
            Ok(_) => stderr.await.unwrap_or_default(),
            Err(_) => {
                stderr.abort();
                String::new()
            }
        };
        let result = match (fed, waited) {
            (Err(Feed::Short(got)), _) => Err(ColdError::Failed(format!(
                "writing {name}: the stream ended after {got} of {size} bytes"
            ))),
            (Err(Feed::Long), _) => Err(ColdError::Failed(format!(
                "writing {name}: the stream holds more than the {size} bytes announced"
            ))),
            (Err(Feed::Body(e)), _) => Err(ColdError::Failed(format!(
                "writing {name}: reading the stream: {e}"
            ))),
            (_, Err(_)) => Err(ColdError::Unavailable(format!(
                "xrdcp to {}: not finished {} s after the end of the stream",
                self.url(tmp),
                self.timeout.as_secs()
            ))),
            (_, Ok(Err(e))) => Err(ColdError::Failed(format!(
                "xrdcp to {}: {e}",
                self.url(tmp)
            ))),
            // The stream was fed (or xrdcp stopped taking it): xrdcp's verdict decides.
            (Ok(()) | Err(Feed::Pipe(_)), Ok(Ok(status))) if !status.success() => {
                Err(self.error(&format!("xrdcp to {tmp}"), name, status, &stderr))
            }
            (Err(Feed::Pipe(e)), Ok(Ok(_))) => Err(ColdError::Failed(format!(
                "xrdcp to {}: {e} ({stderr})",
                self.url(tmp)
            ))),
            (Ok(()), Ok(Ok(_))) => Ok(()),
        };
        if result.is_err() {
            self.discard(tmp).await;
        }
        // A NotFound here would say the *aggregate* is missing: it is a failed write.
        result.map_err(|e| match e {
            ColdError::NotFound(_) => ColdError::Failed(format!("writing {name}: {e}")),
            e => e,
        })
    }
}

#[async_trait]
impl ColdStore for XrootdStore {
    fn kind(&self) -> &'static str {
        "xrootd"
    }

    async fn write(&self, name: &str, size: u64, mut body: ByteReader) -> ColdResult<()> {
        check_name(name)?;
        let path = self.path(name);
        let tmp = format!("{path}.PART-{}", uuid::Uuid::new_v4().simple());
        self.upload(name, &tmp, size, &mut body).await?;

        // What the server holds must be exactly what was announced.
        match self.stat_path(name, &tmp).await {
            Ok(Some((got, _))) if got == size => {}
            Ok(Some((got, _))) => {
                self.discard(&tmp).await;
                return Err(ColdError::Failed(format!(
                    "writing {name}: the server holds {got} bytes, {size} were sent"
                )));
            }
            Ok(None) => {
                return Err(ColdError::Failed(format!(
                    "writing {name}: the uploaded {tmp} vanished"
                )));
            }
            Err(e) => {
                self.discard(&tmp).await;
                return Err(e);
            }
        }

        // XRootD does not rename onto an existing file.
        if let Err(e) = self.remove(name).await {
            self.discard(&tmp).await;
            return Err(e);
        }
        let done = match self.xrdfs(&["mv", &tmp, &path]).await {
            Ok(d) => d,
            Err(e) => {
                self.discard(&tmp).await;
                return Err(e);
            }
        };
        if !done.status.success() {
            self.discard(&tmp).await;
            return Err(
                match self.error("xrdfs mv", name, done.status, &done.stderr) {
                    ColdError::NotFound(_) => ColdError::Failed(format!(
                        "writing {name}: the uploaded {tmp} vanished before the rename"
                    )),
                    e => e,
                },
            );
        }
        Ok(())
    }

    async fn stat(&self, name: &str) -> ColdResult<Option<AggregateStat>> {
        check_name(name)?;
        match self.stat_path(name, &self.path(name)).await? {
            None => Ok(None),
            Some((_, flags)) if flags & FLAG_IS_DIR != 0 => Err(ColdError::Failed(format!(
                "{name} is a directory on {}, not an aggregate",
                self.server
            ))),
            Some((size, flags)) => Ok(Some(AggregateStat {
                size,
                online: flags & FLAG_OFFLINE == 0,
            })),
        }
    }

    async fn checksum(&self, name: &str) -> ColdResult<Option<StoredChecksum>> {
        check_name(name)?;
        let query = format!("{}?cks.type=adler32", self.path(name));
        let done = self.xrdfs(&["query", "checksum", &query]).await?;
        if !done.status.success() {
            let err = self.error("xrdfs query checksum", name, done.status, &done.stderr);
            // A plain HSM only checksums disk copies: say why.
            return Err(match err {
                ColdError::NotFound(_) => match self.stat(name).await? {
                    Some(st) if !st.online => ColdError::Offline(name.to_string()),
                    Some(_) => ColdError::Failed(format!(
                        "xrdfs query checksum {name} on {}: {}",
                        self.server, done.stderr
                    )),
                    None => ColdError::NotFound(name.to_string()),
                },
                e => e,
            });
        }
        match parse_adler32(&done.stdout) {
            Some(sum) => Ok(Some(StoredChecksum::Adler32(sum))),
            None => Err(ColdError::Failed(format!(
                "xrdfs query checksum {name} on {}: unexpected answer {:?}",
                self.server,
                done.stdout.trim()
            ))),
        }
    }

    async fn stage(&self, names: &[String]) -> ColdResult<()> {
        for name in names {
            check_name(name)?;
        }
        let lookups: Vec<_> = names.iter().map(|name| self.stat(name)).collect();
        let stats: Vec<_> = futures::stream::iter(lookups)
            .buffered(STAT_CONCURRENCY)
            .collect()
            .await;
        let mut missing = None;
        let mut offline = Vec::new();
        for (name, st) in names.iter().zip(stats) {
            match st? {
                None => {
                    missing.get_or_insert_with(|| name.clone());
                }
                Some(st) if !st.online => offline.push(self.path(name)),
                Some(_) => {}
            }
        }
        // An empty prepare is refused (and used to crash XRootD): never send one.
        for batch in offline.chunks(PREPARE_BATCH) {
            let mut args = vec!["prepare", "-s"];
            args.extend(batch.iter().map(String::as_str));
            let done = self.xrdfs(&args).await?;
            if !done.status.success() {
                return Err(self.error(
                    "xrdfs prepare -s",
                    &batch.join(" "),
                    done.status,
                    &done.stderr,
                ));
            }
        }
        match missing {
            Some(name) => Err(ColdError::NotFound(name)),
            None => Ok(()),
        }
    }

    async fn read(&self, name: &str) -> ColdResult<ByteReader> {
        let size = match self.stat(name).await? {
            None => return Err(ColdError::NotFound(name.to_string())),
            Some(st) if !st.online => return Err(ColdError::Offline(name.to_string())),
            Some(st) => st.size,
        };
        let url = self.url(&self.path(name));
        let mut cmd = self.command(&self.cfg.xrdcp);
        cmd.args(["--nopbar", &url, "-"]);
        tracing::debug!(server = %self.server, "xrdcp {url} -");
        let mut child = self.spawn(&self.cfg.xrdcp, cmd)?;
        let stderr = drain(child.stderr.take());
        let mut stdout = child.stdout.take().expect("stdout is piped");

        // Wait for the first bytes (or the end), so a failed open is a proper error.
        let mut first = vec![0u8; 64 * 1024];
        let n = match tokio::time::timeout(self.timeout, stdout.read(&mut first)).await {
            Err(_) => {
                return Err(ColdError::Unavailable(format!(
                    "xrdcp {url}: no data within {} s",
                    self.timeout.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(ColdError::Failed(format!("xrdcp {url}: {e}"))),
            Ok(Ok(n)) => n,
        };
        first.truncate(n);
        let exit = async move {
            let status = child.wait().await;
            let stderr = stderr.await.unwrap_or_default();
            (status, stderr)
        };
        if n == 0 {
            let (status, stderr) = match tokio::time::timeout(self.timeout, exit).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(ColdError::Unavailable(format!(
                        "xrdcp {url}: not finished within {} s",
                        self.timeout.as_secs()
                    )));
                }
            };
            let status = status.map_err(|e| ColdError::Failed(format!("xrdcp {url}: {e}")))?;
            if !status.success() {
                return Err(self.error(&format!("xrdcp {url}"), name, status, &stderr));
            }
            if size != 0 {
                return Err(ColdError::Failed(format!(
                    "xrdcp {url}: no data, {size} bytes expected"
                )));
            }
            return Ok(Box::pin(io::Cursor::new(Vec::new())));
        }
        let what = format!("xrdcp {url}");
        let finish: ExitFuture = Box::pin(async move {
            let (status, stderr) = exit.await;
            match status {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(io::Error::other(format!("{what} failed ({s}): {stderr}"))),
                Err(e) => Err(io::Error::other(format!("{what}: {e}"))),
            }
        });
        let rest = ChildReader {
            stdout,
            finish: Some(finish),
            got: n as u64,
            expected: size,
        };
        Ok(Box::pin(io::Cursor::new(first).chain(rest)))
    }

    async fn evict(&self, name: &str) -> ColdResult<()> {
        check_name(name)?;
        let done = self.xrdfs(&["prepare", "-e", &self.path(name)]).await?;
        if done.status.success() {
            Ok(())
        } else {
            Err(self.error("xrdfs prepare -e", name, done.status, &done.stderr))
        }
    }

    async fn remove(&self, name: &str) -> ColdResult<()> {
        check_name(name)?;
        let done = self.xrdfs(&["rm", &self.path(name)]).await?;
        if done.status.success() {
            return Ok(());
        }
        match self.error("xrdfs rm", name, done.status, &done.stderr) {
            ColdError::NotFound(_) => Ok(()),
            e => Err(e),
        }
    }
}

/// Splits `root://host:port//base/path` into `root://host:port` and `/base/path`.
fn split_url(url: &str) -> ColdResult<(String, String)> {
    let bad = |why: &str| {
        ColdError::Failed(format!(
            "workers.cold.xrootd.url {url:?}: {why} (expected root://host[:port]//base/path)"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    if !matches!(scheme, "root" | "roots" | "xroot" | "xroots") {
        return Err(bad("the scheme must be root, roots, xroot or xroots"));
    }
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if host.is_empty() || host.contains(['@', '?', '#']) {
        return Err(bad("a host (and no user or query) is required"));
    }
    if path.contains(['?', '#']) || path.chars().any(char::is_whitespace) {
        return Err(bad("the path must be plain"));
    }
    let base = path.trim_matches('/');
    if base
        .split('/')
        .any(|c| c == "." || c == ".." || (c.is_empty() && !base.is_empty()))
    {
        return Err(bad("the path must be plain"));
    }
    let base = if base.is_empty() {
        String::new()
    } else {
        format!("/{base}")
    };
    Ok((format!("{scheme}://{host}"), base))
}

/// `(size, flags)` from `xrdfs stat` output (`Size:   123`, `Flags:  60 (Other|Offline|...)`).
fn parse_stat(out: &str) -> Option<(u64, u32)> {
    let field = |key: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
    };
    Some((
        field("Size:")?.parse().ok()?,
        field("Flags:")?.parse().ok()?,
    ))
}

/// The adler32 in `xrdfs query checksum` output (`adler32 5b576108`).
fn parse_adler32(out: &str) -> Option<u32> {
    let mut words = out.split_whitespace();
    let (kind, value) = (words.next()?, words.next()?);
    if !kind.eq_ignore_ascii_case("adler32") || value.is_empty() || value.len() > 8 {
        return None;
    }
    u32::from_str_radix(value, 16).ok()
}

/// The XRootD server error code (`[3011]`) in a tool's stderr.
fn server_code(stderr: &str) -> Option<u32> {
    stderr.match_indices('[').find_map(|(i, _)| {
        let code = stderr.get(i + 1..i + 5)?;
        let close = stderr.get(i + 5..i + 6)?;
        (close == "]" && code.bytes().all(|b| b.is_ascii_digit()))
            .then(|| code.parse().ok())
            .flatten()
            .filter(|c| (3000..4000).contains(c))
    })
}

/// Maps a failed command to an error: missing, transient (cannot reach the server, overloaded,
/// timed out) or anything else.
fn classify(name: &str, what: &str, status: ExitStatus, stderr: &str) -> ColdError {
    let detail = if stderr.is_empty() {
        format!("{what}: exited with {status}")
    } else {
        format!("{what}: {stderr}")
    };
    let lower = stderr.to_ascii_lowercase();
    match server_code(stderr) {
        Some(NOT_FOUND_CODE) => ColdError::NotFound(name.to_string()),
        Some(c) if TRANSIENT_CODES.contains(&c) => ColdError::Unavailable(detail),
        Some(_) => ColdError::Failed(detail),
        None if [
            "auth failed",
            "not authorized",
            "invalid address",
            "invalid url",
        ]
        .iter()
        .any(|w| lower.contains(w)) =>
        {
            ColdError::Failed(detail)
        }
        None if [
            "[fatal]",
            "connection",
            "socket",
            "operation expired",
            "timeout",
            "timed out",
            "stream error",
        ]
        .iter()
        .any(|w| lower.contains(w)) =>
        {
            ColdError::Unavailable(detail)
        }
        None if lower.contains("no such file") => ColdError::NotFound(name.to_string()),
        // Killed by a signal, or no word at all: treat as worth a retry.
        None if status.code().is_none() || stderr.is_empty() => ColdError::Unavailable(detail),
        None => ColdError::Failed(detail),
    }
}

/// One line of a tool's stderr, bounded.
fn tidy(stderr: &str) -> String {
    let mut s = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if s.len() > STDERR_CAP {
        let mut cut = STDERR_CAP;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" ...");
    }
    s
}

/// Collects a child's stderr (bounded) so it never blocks on a full pipe.
fn drain(stderr: Option<ChildStderr>) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut kept = Vec::new();
        if let Some(mut s) = stderr {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let room = (2 * STDERR_CAP).saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        tidy(&String::from_utf8_lossy(&kept))
    })
}

/// Why feeding a write stopped.
enum Feed {
    /// The stream ended after this many bytes, before `size`.
    Short(u64),
    /// The stream has more than `size` bytes.
    Long,
    /// Reading the stream failed.
    Body(io::Error),
    /// `xrdcp` stopped taking bytes (it exited).
    Pipe(io::Error),
}

/// Copies exactly `size` bytes of `body` into `sink` and checks the stream ends there.
async fn feed(body: &mut ByteReader, sink: &mut ChildStdin, size: u64) -> Result<(), Feed> {
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK);
        let n = body.read(&mut buf[..want]).await.map_err(Feed::Body)?;
        if n == 0 {
            return Err(Feed::Short(size - left));
        }
        sink.write_all(&buf[..n]).await.map_err(Feed::Pipe)?;
        left -= n as u64;
    }
    let mut probe = [0u8; 1];
    if body.read(&mut probe).await.map_err(Feed::Body)? != 0 {
        return Err(Feed::Long);
    }
    sink.flush().await.map_err(Feed::Pipe)
}

type ExitFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// `xrdcp`'s stdout; at its end, the exit status and the byte count decide between a clean end
/// and an error. Dropping it early kills `xrdcp`.
struct ChildReader {
    stdout: ChildStdout,
    /// `Some` until the end was checked.
    finish: Option<ExitFuture>,
    got: u64,
    expected: u64,
}

impl AsyncRead for ChildReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(finish) = this.finish.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stdout).poll_read(cx, buf))?;
        let n = buf.filled().len() - before;
        if n > 0 {
            this.got += n as u64;
            return Poll::Ready(Ok(()));
        }
        let result = ready!(finish.as_mut().poll(cx));
        this.finish = None;
        result?;
        if this.got != this.expected {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "xrdcp delivered {} bytes, the aggregate has {}",
                    this.got, this.expected
                ),
            )));
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
