//! What the `nlds` commands do: [`prepare`] turns the command line into a [`Plan`] (requests,
//! with paths, tags and FILELISTs checked), [`run`] resolves the configuration, sends the plan
//! and prints the answer. The commands that set nlds up (`init`, `renew`, `config show`) live in
//! [`crate::setup`]; `completions` and `man` need neither configuration nor server.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nlds_core::api::{GetRequest, HoldingQuery, MetaRequest, PutRequest, StatQuery};
use nlds_core::error::{ApiError, ErrorBody};
use nlds_core::{ErrorCode, State};
use serde::Serialize;
use uuid::Uuid;

use crate::cli::{Cli, Command, ConfigCommand, HoldingSel, ManArgs};
use crate::exit;
use crate::progress::Reporter;
use crate::render::{self, Zone};
use crate::setup;
use nlds_client::client::{Client, WaitProgress};
use nlds_client::config::Overrides;
use nlds_client::error::Error;
use nlds_client::local;
use nlds_client::paths::{absolutize, parse_filelist};
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

    /// The line(s) printed on standard error (without `--json`).
    pub fn human(&self) -> String {
        match self {
            Failure::Client(e @ (Error::Api { code, .. } | Error::Provider { code, .. })) => {
                format!("error: {e} ({code})")
            }
            // A first run: not an error dump, just what to do.
            Failure::Client(e @ Error::NotConfigured(_)) => e.to_string(),
            other => format!("error: {}", other.message()),
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

/// How long and how often to wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitPlan {
    pub poll: Duration,
    pub timeout: Option<Duration>,
}

/// A command, ready to send.
#[derive(Debug, Clone)]
pub enum Plan {
    Put(PutRequest, Option<WaitPlan>),
    Get(GetRequest, Option<WaitPlan>),
    List(HoldingQuery),
    Find {
        query: HoldingQuery,
        simple: bool,
        url: bool,
    },
    Meta(MetaRequest),
    Stat {
        query: StatQuery,
        sub_records: bool,
        errors: bool,
        failed_files: bool,
    },
    Wait(Uuid, WaitPlan),
    Whoami,
    /// `del`, `dellist` (see `crate::delete`).
    Delete(nlds_core::api::DeleteRequest, Option<WaitPlan>),
    Undelete(nlds_core::api::UndeleteRequest),
    Purge(nlds_core::api::PurgeRequest),
    Admin(crate::admin::AdminPlan),
}

impl Plan {
    /// Sets the group of every request that has one.
    pub fn set_group(&mut self, group: Option<String>) {
        match self {
            Plan::Put(r, _) => r.group = group,
            Plan::Get(r, _) => r.group = group,
            Plan::List(q) | Plan::Find { query: q, .. } => q.group = group,
            Plan::Meta(r) => r.group = group,
            Plan::Stat { query, .. } => query.group = group,
            Plan::Delete(r, _) => r.group = group,
            Plan::Undelete(r) => r.group = group,
            Plan::Wait(..) | Plan::Whoami | Plan::Purge(_) | Plan::Admin(_) => {}
        }
    }
}

pub(crate) fn wait_plan(w: &crate::cli::WaitOpts) -> Option<WaitPlan> {
    w.wait.then_some(WaitPlan {
        poll: w.poll,
        timeout: w.timeout,
    })
}

pub(crate) fn all_tags(sel: &HoldingSel) -> nlds_core::api::Tags {
    tags::merge(&sel.tag)
}

fn query_tag(sel: &HoldingSel) -> Result<Option<String>, Failure> {
    tags::query_form(&all_tags(sel)).map_err(Failure::usage)
}

pub(crate) fn abs(p: &str, env: &Env) -> Result<String, Failure> {
    absolutize(p, &env.cwd, env.home().as_deref()).map_err(Failure::usage)
}

pub(crate) fn read_filelist(
    name: &str,
    env: &Env,
    stdin: &mut dyn Read,
) -> Result<Vec<String>, Failure> {
    let text = if name == "-" {
        let mut s = String::new();
        stdin.read_to_string(&mut s).map_err(|e| {
            Failure::usage(format!("cannot read FILELIST from standard input: {e}"))
        })?;
        s
    } else {
        let path = env.cwd.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| Failure::usage(format!("cannot read FILELIST {name}: {e}")))?
    };
    parse_filelist(&text, &env.cwd, env.home().as_deref()).map_err(Failure::usage)
}

/// The target directory of a get: absolute, and it must exist, as with the Python client.
fn target_dir(target: &Option<String>, env: &Env) -> Result<Option<String>, Failure> {
    let Some(t) = target else { return Ok(None) };
    let abs = abs(t, env)?;
    if !Path::new(&abs).is_dir() {
        return Err(Failure::usage(format!(
            "the target directory {abs} does not exist (or is not a directory)"
        )));
    }
    Ok(Some(abs))
}

/// Turns the command line into requests. Does not read the configuration or talk to the server;
/// the group is filled in later ([`Plan::set_group`]).
pub fn prepare(command: &Command, env: &Env, stdin: &mut dyn Read) -> Result<Plan, Failure> {
    Ok(match command {
        Command::Put(a) => Plan::Put(
            PutRequest {
                transaction_id: Some(Uuid::new_v4()),
                paths: vec![abs(&a.path, env)?],
                label: a.holding.label.clone(),
                holding_id: a.holding.holding_id,
                tags: all_tags(&a.holding),
                job_label: a.job_label.clone(),
                group: None,
                dry_run: a.dry_run.dry_run,
                tenancy: a.tenancy.clone(),
            },
            wait_plan(&a.wait),
        ),
        Command::Putlist(a) => Plan::Put(
            PutRequest {
                transaction_id: Some(Uuid::new_v4()),
                paths: read_filelist(&a.filelist, env, stdin)?,
                label: a.holding.label.clone(),
                holding_id: a.holding.holding_id,
                tags: all_tags(&a.holding),
                job_label: a.job_label.clone(),
                group: None,
                dry_run: a.dry_run.dry_run,
                tenancy: a.tenancy.clone(),
            },
            wait_plan(&a.wait),
        ),
        Command::Get(a) => Plan::Get(
            GetRequest {
                transaction_id: Some(Uuid::new_v4()),
                paths: vec![if a.regex {
                    a.path.clone()
                } else {
                    abs(&a.path, env)?
                }],
                label: a.holding.label.clone(),
                holding_id: a.holding.holding_id,
                tags: all_tags(&a.holding),
                regex: a.regex,
                target: target_dir(&a.target, env)?,
                overwrite: a.clobber.overwrite,
                groupall: a.groupall,
                job_label: a.job_label.clone(),
                group: None,
                dry_run: a.dry_run.dry_run,
                keep_owner: false,
            },
            wait_plan(&a.wait),
        ),
        Command::Getlist(a) => Plan::Get(
            GetRequest {
                transaction_id: Some(Uuid::new_v4()),
                paths: read_filelist(&a.filelist, env, stdin)?,
                label: a.holding.label.clone(),
                holding_id: a.holding.holding_id,
                tags: all_tags(&a.holding),
                regex: false,
                target: target_dir(&a.target, env)?,
                overwrite: a.clobber.overwrite,
                groupall: a.groupall,
                job_label: a.job_label.clone(),
                group: None,
                dry_run: a.dry_run.dry_run,
                keep_owner: false,
            },
            wait_plan(&a.wait),
        ),
        Command::List(a) => Plan::List(HoldingQuery {
            group: None,
            groupall: a.groupall,
            label: a.holding.label.clone(),
            holding_id: a.holding.holding_id,
            transaction_id: a.transaction_id.map(|t| t.to_string()),
            tag: query_tag(&a.holding)?,
            path: None,
            regex: a.regex,
            limit: a.limit,
            offset: None,
            descending: a.order.descending(),
        }),
        Command::Find(a) => Plan::Find {
            query: HoldingQuery {
                group: None,
                groupall: a.groupall,
                label: a.holding.label.clone(),
                holding_id: a.holding.holding_id,
                transaction_id: a.transaction_id.map(|t| t.to_string()),
                tag: query_tag(&a.holding)?,
                path: match &a.path {
                    Some(p) if !a.regex => Some(abs(p, env)?),
                    other => other.clone(),
                },
                regex: a.regex,
                limit: Some(a.limit),
                offset: None,
                descending: a.order.descending(),
            },
            simple: a.simple,
            url: a.url,
        },
        Command::Meta(a) => {
            let sel = &a.holding;
            if sel.label.is_none() && sel.holding_id.is_none() && sel.tag.is_empty() {
                return Err(Failure::usage(
                    "meta needs the holding(s) to change: give -l/--label, -i/--holding-id or -t/--tag",
                ));
            }
            if a.new_label.is_none() && a.new_tag.is_empty() && a.del_tag.is_empty() {
                return Err(Failure::usage(
                    "meta has nothing to change: give -L/--new-label, -T/--new-tag or -D/--del-tag",
                ));
            }
            Plan::Meta(MetaRequest {
                group: None,
                label: sel.label.clone(),
                holding_id: sel.holding_id,
                tags: all_tags(sel),
                new_label: a.new_label.clone(),
                new_tags: tags::merge(&a.new_tag),
                del_tags: tags::merge(&a.del_tag),
                dry_run: a.dry_run,
            })
        }
        Command::Stat(a) => {
            let join = |v: Vec<String>| (!v.is_empty()).then(|| v.join(","));
            Plan::Stat {
                query: StatQuery {
                    group: None,
                    groupall: a.groupall,
                    id: a.id,
                    transaction_id: a.transaction_id.map(|t| t.to_string()),
                    job_label: a.job_label.clone(),
                    api_action: join(a.api_action.iter().map(|x| x.to_string()).collect()),
                    exclude_api_action: join(
                        a.exclude_api_action.iter().map(|x| x.to_string()).collect(),
                    ),
                    state: join(a.state.iter().map(|s| s.name().to_owned()).collect()),
                    regex: a.regex,
                    limit: a.limit,
                    offset: None,
                    descending: a.order.descending(),
                },
                sub_records: a.sub_records,
                errors: a.errors,
                failed_files: a.failed_files,
            }
        }
        Command::Wait(a) => Plan::Wait(
            a.transaction_id,
            WaitPlan {
                poll: a.poll,
                timeout: a.timeout,
            },
        ),
        Command::Whoami => Plan::Whoami,
        Command::Del(a) => crate::delete::prepare_del(a, env)?,
        Command::Dellist(a) => crate::delete::prepare_dellist(a, env, stdin)?,
        Command::Undelete(a) => crate::delete::prepare_undelete(a, env)?,
        Command::Admin(a) => crate::admin::prepare(a, chrono::Utc::now())?,
        Command::Init(_)
        | Command::Renew(_)
        | Command::Login(_)
        | Command::Logout
        | Command::Config(_)
        | Command::Completions(_)
        | Command::Man(_) => {
            return Err(Failure::usage(
                "this command does not talk to the server (it is run by `run`, not `prepare`)",
            ));
        }
    })
}

/// Runs the command line; returns the exit code. Never panics on server answers.
pub async fn run(cli: Cli, env: &Env, io: &mut Io<'_>) -> u8 {
    let json = cli.global.json;
    match run_inner(cli, env, io).await {
        Ok(code) => code,
        Err(f) => {
            if json {
                let _ = writeln!(io.out, "{}", f.json());
            } else {
                let _ = writeln!(io.err, "{}", f.human());
            }
            f.exit_code()
        }
    }
}

/// The command-line settings that override the environment and the config file.
pub fn overrides(cli: &Cli) -> Overrides {
    Overrides {
        url: cli.url.clone(),
        token: cli.global.token.clone(),
        group: cli.global.group.clone(),
        user: cli.global.user.clone(),
        insecure: cli.global.insecure,
        connect_timeout: cli.global.connect_timeout,
        request_timeout: cli.global.request_timeout,
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

async fn run_inner(cli: Cli, env: &Env, io: &mut Io<'_>) -> Result<u8, Failure> {
    let Some(command) = &cli.command else {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let _ = writeln!(io.out, "{}", cmd.render_help());
        return Ok(exit::OK);
    };
    let ctx = Ctx {
        json: cli.global.json,
        zone: if cli.global.utc {
            Zone::Utc
        } else {
            Zone::Local
        },
        terminal: env.stderr_is_terminal,
        width: table_width(cli.global.wide, env),
        group: None,
    };
    match command {
        Command::Completions(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cmd, "nlds", io.out);
            return Ok(exit::OK);
        }
        Command::Man(a) => return man(a, &ctx, io),
        Command::Config(ConfigCommand::Show) => {
            return setup::config_show(&overrides(&cli), env, &ctx, io);
        }
        Command::Init(a) => return setup::init(&cli, a, env, &ctx, io).await,
        Command::Renew(a) => return setup::renew(&cli, a, env, &ctx, io).await,
        Command::Login(a) => return crate::login::login(&cli, a, env, &ctx, io).await,
        Command::Logout => return crate::login::logout(&cli, env, &ctx, io).await,
        _ => {}
    }
    let mut plan = prepare(command, env, io.stdin)?;
    // A static token, or an OAuth2 login renewed before it expires (crate::login).
    let (settings, oauth_session) = crate::login::resolve(&overrides(&cli), env).await?;
    if !cli.global.json {
        for w in &settings.warnings {
            let _ = writeln!(io.err, "warning: {w}");
        }
    }
    plan.set_group(settings.group.clone());
    let mut client = Client::with_options(
        &settings.url,
        settings.token.expose(),
        settings.client_options(),
    )?;
    if let Some(session) = oauth_session {
        client = client.with_token_source(session);
    }
    let ctx = Ctx {
        group: settings.group.clone(),
        ..ctx
    };
    execute(plan, &client, &ctx, io).await
}

/// `nlds man`: one page on standard output, or every page into a directory.
fn man(a: &ManArgs, ctx: &Ctx, io: &mut Io<'_>) -> Result<u8, Failure> {
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    cmd.build();
    let io_failure = |what: String, e: std::io::Error| Failure::Local {
        exit: exit::GENERIC,
        code: ErrorCode::Internal,
        message: format!("{what}: {e}"),
    };
    if let Some(dir) = &a.dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_failure(format!("cannot create {}", dir.display()), e))?;
        let mut pages = Vec::new();
        fn collect(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
            out.push(cmd.clone());
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                collect(sub, out);
            }
        }
        collect(&cmd, &mut pages);
        let mut written = Vec::new();
        for page in pages {
            let path = clap_mangen::Man::new(page)
                .generate_to(dir)
                .map_err(|e| io_failure(format!("cannot write into {}", dir.display()), e))?;
            written.push(path.display().to_string());
        }
        if ctx.json {
            print_json(io, &serde_json::json!({ "written": written }))?;
        } else {
            let _ = writeln!(
                io.out,
                "Wrote {} manual pages into {}:",
                written.len(),
                dir.display()
            );
            for w in &written {
                let _ = writeln!(io.out, "    {w}");
            }
            note(
                io,
                ctx,
                "Read them with `man nlds` once that directory is on your MANPATH (~/.local/share/man is, on most systems).",
            );
        }
        return Ok(exit::OK);
    }
    let page = match &a.command {
        None => cmd,
        Some(name) => cmd.find_subcommand(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
            Failure::usage(format!(
                "nlds has no command {name:?}; the commands are: {}",
                names.join(", ")
            ))
        })?,
    };
    clap_mangen::Man::new(page)
        .render(io.out)
        .map_err(|e| io_failure("cannot write the manual page".into(), e))?;
    Ok(exit::OK)
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

pub(crate) fn note(io: &mut Io<'_>, ctx: &Ctx, text: &str) {
    if !ctx.json {
        let _ = writeln!(io.err, "{text}");
    }
}

fn more_note(io: &mut Io<'_>, ctx: &Ctx, shown: usize, total: u64, what: &str) {
    if total > shown as u64 {
        note(
            io,
            ctx,
            &format!("note: showing {shown} of {total} {what}; use -L/--limit to see more"),
        );
    }
}

/// Sends the plan and prints the result; returns the exit code.
pub async fn execute(
    plan: Plan,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    match plan {
        Plan::Put(req, _) if req.dry_run => put_dry_run(req, client, ctx, io).await,
        Plan::Get(req, _) if req.dry_run => get_dry_run(req, client, ctx, io).await,
        Plan::Put(req, wait) => {
            let id = req.transaction_id;
            let accepted = client.put(&req).await.map_err(|e| submit_failure(e, id))?;
            after_submit(client, ctx, io, accepted, wait).await
        }
        Plan::Get(req, wait) => {
            let id = req.transaction_id;
            let accepted = client.get(&req).await.map_err(|e| submit_failure(e, id))?;
            after_submit(client, ctx, io, accepted, wait).await
        }
        Plan::List(q) => {
            let page = client.list(&q).await?;
            if ctx.json {
                print_json(io, &page)?;
                return Ok(exit::OK);
            }
            match page.holdings.as_slice() {
                [] => {
                    if let Some(id) = q.holding_id {
                        return Err(Failure::not_found(format!("no holding with id {id} found")));
                    }
                    if let Some(t) = &q.transaction_id {
                        return Err(Failure::not_found(format!(
                            "no holding holds transaction {t}"
                        )));
                    }
                    note(io, ctx, "No holdings found.");
                }
                [one] => print(io, &render::holding_view(one, ctx.zone)),
                many => print(io, &render::holdings_table(many, ctx.zone, ctx.width)),
            }
            more_note(io, ctx, page.holdings.len(), page.total, "holdings");
            Ok(exit::OK)
        }
        Plan::Find { query, simple, url } => {
            let page = client.find(&query).await?;
            if ctx.json {
                print_json(io, &page)?;
                return Ok(exit::OK);
            }
            if simple {
                print(io, &render::simple_paths(&page.files, url));
            } else {
                match page.files.as_slice() {
                    [] => {
                        if let (Some(p), false) = (&query.path, query.regex) {
                            return Err(Failure::not_found(format!("no file {p} found")));
                        }
                        note(io, ctx, "No files found.");
                    }
                    [one] => print(io, &render::file_view(one, url, ctx.zone)),
                    many => print(io, &render::files_table(many, url, ctx.zone, ctx.width)),
                }
            }
            more_note(io, ctx, page.files.len(), page.total, "files");
            Ok(exit::OK)
        }
        Plan::Meta(req) => {
            let resp = client.meta(&req).await?;
            if ctx.json {
                print_json(io, &resp)?;
            } else {
                print(io, &render::meta_view(&resp));
            }
            if req.dry_run && resp.holdings.is_empty() {
                note(io, ctx, "error: no holding matches: nothing would change");
                return Ok(exit::NOT_FOUND);
            }
            Ok(exit::OK)
        }
        Plan::Stat {
            query,
            sub_records,
            errors,
            failed_files,
        } => {
            let page = client.stat(&query).await?;
            if ctx.json {
                print_json(io, &page)?;
                return Ok(exit::OK);
            }
            if failed_files {
                print(io, &render::failed_paths(&page.transactions));
                return Ok(exit::OK);
            }
            match page.transactions.as_slice() {
                [] => {
                    if let Some(id) = query.id {
                        return Err(Failure::not_found(format!(
                            "no transaction with id {id} found"
                        )));
                    }
                    if let Some(t) = &query.transaction_id {
                        return Err(Failure::not_found(format!("no transaction {t} found")));
                    }
                    note(io, ctx, "No transactions found.");
                }
                [one] => print(
                    io,
                    &render::transaction_view(one, sub_records, errors, ctx.zone),
                ),
                many => print(io, &render::stat_table(many, ctx.zone, ctx.width)),
            }
            more_note(io, ctx, page.transactions.len(), page.total, "transactions");
            Ok(exit::OK)
        }
        Plan::Wait(id, w) => wait_for(client, ctx, io, id, w).await,
        Plan::Delete(req, wait) => crate::delete::execute_delete(req, wait, client, ctx, io).await,
        Plan::Undelete(req) => crate::delete::execute_undelete(req, client, ctx, io).await,
        Plan::Purge(req) => crate::delete::execute_purge(req, client, ctx, io).await,
        Plan::Admin(p) => crate::admin::execute(p, client, ctx, io).await,
        Plan::Whoami => {
            let who = client.whoami_full().await?;
            if ctx.json {
                print_json(io, &who)?;
            } else {
                print(
                    io,
                    &render::whoami_view(&who, client.base_url(), ctx.group.as_deref(), ctx.zone),
                );
            }
            Ok(exit::OK)
        }
    }
}

/// `put --dry-run` / `putlist --dry-run`: walks the local paths, asks the server which holding
/// would be used, and prints both. Exits [`exit::NOT_FOUND`] when nothing would be put.
async fn put_dry_run(
    req: PutRequest,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let paths = req.paths.clone();
    let scan = tokio::task::spawn_blocking(move || local::scan(&paths))
        .await
        .map_err(|e| Error::Decode(format!("the local scan failed: {e}")))?;
    let plan = client.put_plan(&req).await?;
    // An existing holding may already have some of these entries: the put would fail for them.
    let already = match (&plan.holding, local::stored_paths_regex(&scan)) {
        (Some(h), Some(re)) => {
            let page = client
                .find(&HoldingQuery {
                    group: req.group.clone(),
                    holding_id: Some(h.id),
                    path: Some(re),
                    regex: true,
                    limit: Some(10),
                    ..HoldingQuery::default()
                })
                .await?;
            Some(local::AlreadyStored {
                holding_id: h.id,
                total: page.total,
                examples: page.files.into_iter().map(|f| f.path).collect(),
            })
        }
        _ => None,
    };
    if ctx.json {
        print_json(
            io,
            &serde_json::json!({
                "dry_run": true,
                "request": req,
                "plan": plan,
                "local": scan,
                "already_stored": already,
            }),
        )?;
    } else {
        print(
            io,
            &render::put_plan_view(&req, &plan, &scan, already.as_ref(), ctx.width),
        );
    }
    if scan.found() == 0 {
        note(
            io,
            ctx,
            "error: nothing would be put: none of the paths exists or can be read",
        );
        return Ok(exit::NOT_FOUND);
    }
    if let Some(a) = &already
        && a.total >= scan.total.entries()
    {
        note(
            io,
            ctx,
            &format!(
                "error: nothing would be put: holding {} already has every entry",
                a.holding_id
            ),
        );
        return Ok(exit::NOT_FOUND);
    }
    Ok(exit::OK)
}

/// `get --dry-run` / `getlist --dry-run`: asks the server what would be restored and looks at
/// each destination. Exits [`exit::NOT_FOUND`] when nothing would be restored.
async fn get_dry_run(
    req: GetRequest,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let plan = client.get_plan(&req).await?;
    let (files, target, overwrite) = (
        plan.files.clone(),
        plan.target.clone().or_else(|| req.target.clone()),
        req.overwrite,
    );
    let dests = tokio::task::spawn_blocking(move || {
        local::destinations(&files, target.as_deref(), overwrite)
    })
    .await
    .map_err(|e| Error::Decode(format!("the destination check failed: {e}")))?;
    if ctx.json {
        print_json(
            io,
            &serde_json::json!({"dry_run": true, "request": req, "plan": plan, "destinations": dests}),
        )?;
    } else {
        print(io, &render::get_plan_view(&req, &plan, &dests, ctx.width));
    }
    if plan.files.is_empty() {
        note(
            io,
            ctx,
            "error: nothing would be restored: no stored file matches",
        );
        return Ok(exit::NOT_FOUND);
    }
    Ok(exit::OK)
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
                print(io, &render::accepted_view(&accepted));
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
                print(io, &render::accepted_view(&accepted));
            }
            wait_for(client, ctx, io, accepted.transaction_id, w).await
        }
    }
}

/// Waits for a transaction, showing progress on standard error, and prints its final status.
async fn wait_for(
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
        client
            .wait(id, w.poll, w.timeout, |p| {
                if let WaitProgress::Status(s) = p {
                    last = Some(s.state);
                }
                reporter.update(p, err);
            })
            .await
    };
    reporter.finish();
    match result {
        Ok(status) => {
            if ctx.json {
                print_json(io, &status)?;
            } else {
                print(
                    io,
                    &render::transaction_view(&status, false, true, ctx.zone),
                );
            }
            let code = exit::for_state(status.state);
            if code != exit::OK {
                note(
                    io,
                    ctx,
                    &format!(
                        "error: transaction {id} ended {}",
                        render::state_name(status.state)
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
                render::state_name(last.unwrap_or(State::Searching)),
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
