//! What the `nlds` commands do: [`prepare`] turns the command line into a [`Plan`] (requests,
//! with paths, tags and FILELISTs checked), [`run`] resolves the configuration, sends the plan
//! and prints the answer. The commands that set nlds up (`init`, `renew`, `config show`) live in
//! [`crate::setup`]; `completions` and `man` need neither configuration nor server.

use std::io::Read;

pub use crate::cli::overrides;
use crate::cli::{Cli, Command, ConfigCommand};
use crate::commands::setup;
pub use crate::ctx::{Ctx, Env, Failure, Io};
use crate::ctx::{table_width, wait_for};
use crate::exit;
use crate::format::Zone;
pub use crate::plan::{Plan, WaitPlan};
use nlds_client::client::Client;

/// Turns the command line into requests. Does not read the configuration or talk to the server;
/// the group is filled in later ([`Plan::set_group`]).
pub fn prepare(command: &Command, env: &Env, stdin: &mut dyn Read) -> Result<Plan, Failure> {
    Ok(match command {
        Command::Put(a) => crate::commands::put::prepare_put(a, env)?,
        Command::Putlist(a) => crate::commands::put::prepare_putlist(a, env, stdin)?,
        Command::Get(a) => crate::commands::get::prepare_get(a, env)?,
        Command::Getlist(a) => crate::commands::get::prepare_getlist(a, env, stdin)?,
        Command::List(a) => crate::commands::list::prepare(a)?,
        Command::Find(a) => crate::commands::find::prepare(a, env)?,
        Command::Meta(a) => crate::commands::meta::prepare(a)?,
        Command::Stat(a) => crate::commands::stat::prepare(a)?,
        Command::Wait(a) => crate::commands::wait::prepare(a)?,
        Command::Retry(a) => crate::commands::retry::prepare(a),
        Command::Cancel(a) => crate::commands::cancel::prepare(a),
        Command::Stage(a) => crate::commands::stage::prepare_stage(a, env)?,
        Command::Release(a) => crate::commands::stage::prepare_release(a, env)?,
        Command::Locality(a) => crate::commands::stage::prepare_locality(a, env)?,
        Command::Whoami => Plan::Whoami,
        Command::Quota(a) => crate::commands::quota::prepare(a),
        Command::Notify(c) => crate::commands::notify::prepare(c)?,
        Command::Del(a) => crate::commands::del::prepare_del(a, env)?,
        Command::Dellist(a) => crate::commands::del::prepare_dellist(a, env, stdin)?,
        Command::Undelete(a) => crate::commands::del::prepare_undelete(a, env)?,
        Command::Admin(a) => crate::commands::admin::prepare(a, chrono::Utc::now())?,
        Command::Explain(a) => crate::commands::explain::prepare(a, env)?,
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
            let cmd = <Cli as clap::CommandFactory>::command();
            return crate::commands::completions::run(a, cmd, io);
        }
        Command::Man(a) => {
            let cmd = <Cli as clap::CommandFactory>::command();
            return crate::commands::man::run(a, cmd, &ctx, io);
        }
        Command::Config(ConfigCommand::Show) => {
            return setup::config_show(&overrides(&cli), env, &ctx, io);
        }
        Command::Init(a) => return setup::init(&overrides(&cli), a, env, &ctx, io).await,
        Command::Renew(a) => return setup::renew(&overrides(&cli), a, env, &ctx, io).await,
        Command::Login(a) => {
            return crate::commands::login::login(&overrides(&cli), a, env, &ctx, io).await;
        }
        Command::Logout => {
            return crate::commands::login::logout(&overrides(&cli), env, &ctx, io).await;
        }
        _ => {}
    }
    let mut plan = prepare(command, env, io.stdin)?;
    // A static token, or an OAuth2 login renewed before it expires (crate::login).
    let (settings, oauth_session) = crate::commands::login::resolve(&overrides(&cli), env).await?;
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
    )?
    .with_chunk_paths(crate::filelist::chunk_paths(env));
    if let Some(session) = oauth_session {
        client = client.with_token_source(session);
    }
    let ctx = Ctx {
        group: settings.group.clone(),
        ..ctx
    };
    execute(plan, &client, &ctx, io).await
}

/// Sends the plan and prints the result; returns the exit code.
pub async fn execute(
    plan: Plan,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    match plan {
        Plan::Put(req, _, _, rest) if req.dry_run => {
            crate::commands::put::dry_run(req, rest, client, ctx, io).await
        }
        Plan::Get(req, _, rest) if req.dry_run => {
            crate::commands::get::dry_run(req, rest, client, ctx, io).await
        }
        Plan::Put(req, wait, check, rest) => {
            crate::commands::put::execute(req, wait, check, rest, client, ctx, io).await
        }
        Plan::Get(req, wait, rest) => {
            crate::commands::get::execute(req, wait, rest, client, ctx, io).await
        }
        Plan::List(q) => crate::commands::list::execute(q, client, ctx, io).await,
        Plan::Find { query, simple, url } => {
            crate::commands::find::execute(query, simple, url, client, ctx, io).await
        }
        Plan::Meta(req) => crate::commands::meta::execute(req, client, ctx, io).await,
        Plan::Stat {
            query,
            sub_records,
            errors,
            failed_files,
        } => {
            crate::commands::stat::execute(
                query,
                sub_records,
                errors,
                failed_files,
                client,
                ctx,
                io,
            )
            .await
        }
        Plan::Wait(id, w) => wait_for(client, ctx, io, id, w).await,
        Plan::Retry(id, wait) => crate::commands::retry::execute(id, wait, client, ctx, io).await,
        Plan::Cancel(id, wait) => crate::commands::cancel::execute(id, wait, client, ctx, io).await,
        Plan::Delete(req, wait, rest) => {
            crate::commands::del::execute_delete(req, wait, rest, client, ctx, io).await
        }
        Plan::Undelete(req) => crate::commands::del::execute_undelete(req, client, ctx, io).await,
        Plan::Purge(req) => crate::commands::del::execute_purge(req, client, ctx, io).await,
        Plan::Admin(p) => crate::commands::admin::execute(p, client, ctx, io).await,
        Plan::Explain(q) => crate::commands::explain::execute(q, client, ctx, io).await,
        Plan::Whoami => crate::commands::whoami::execute(client, ctx, io).await,
        Plan::Stage(p) => crate::commands::stage::execute(p, client, ctx, io).await,
        Plan::Quota(p) => crate::commands::quota::execute(p, client, ctx, io).await,
        Plan::Notify(p) => crate::commands::notify::execute(p, client, ctx, io).await,
    }
}
