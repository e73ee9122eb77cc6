//! Setting nlds up: `nlds init` (write the config file), `nlds renew` (replace the token) and
//! `nlds config show` (every setting and where it comes from).

pub mod view;

use std::io::BufRead;

use clap::Args;
use nlds_core::ErrorCode;
use serde::Serialize;

use crate::ctx::{Ctx, Env, Failure, Io, note, print, print_json};
use crate::exit;
use crate::format::{self, INDENT, kv};
use nlds_client::client::{Client, ClientOptions, Identity};
use nlds_client::config::{self, Effective, Overrides, Secret, Update, Written};
use nlds_client::error::Error;

/// The variables that say which config file is read.
const FILE_VARS: [&str; 3] = ["NLDS_CONFIG", "XDG_CONFIG_HOME", "HOME"];

/// The environment as seen by the config file alone (which file, `~` for a `token_file`), so the
/// config file's own values can be told apart from the environment's. When the file does not
/// exist yet (`init` creates it), no file at all.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The server's URL, e.g. `https://nlds.example.org` [kept from the config file if not given;
    /// else $NLDS_URL].
    #[arg(short = 'U', long = "url", value_name = "URL")]
    pub url: Option<String>,

    /// Verify TLS certificates again (undoes an earlier `init -k`).
    #[arg(long, conflicts_with = "insecure")]
    pub no_insecure: bool,

    /// Write the settings without checking them with the server first.
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RenewArgs {
    /// Write the token without checking it with the server first.
    #[arg(long)]
    pub no_verify: bool,
}

fn file_only(env: &Env, exists: bool) -> impl Fn(&str) -> Option<String> + '_ {
    move |k: &str| {
        if exists && FILE_VARS.contains(&k) {
            env.var(k)
        } else {
            None
        }
    }
}

/// The whole environment, but without a config file when it does not exist yet (a `$NLDS_CONFIG`
/// naming a file that `init` or `renew` is about to create is not an error).
fn with_file_if(env: &Env, exists: bool) -> impl Fn(&str) -> Option<String> + '_ {
    move |k: &str| {
        if !exists && FILE_VARS.contains(&k) {
            None
        } else {
            env.var(k)
        }
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// A token from standard input: asked for (not echoed) on a terminal, else its first non-blank
/// line.
fn read_token(env: &Env, io: &mut Io<'_>, url: &str) -> Result<Secret, Failure> {
    let text = if env.stdin_is_terminal {
        let _ = write!(io.err, "Token for {url} (input hidden): ");
        let _ = io.err.flush();
        console::Term::stderr()
            .read_secure_line()
            .map_err(|e| Failure::usage(format!("cannot read the token: {e}")))?
    } else {
        let mut reader = std::io::BufReader::new(&mut *io.stdin);
        let mut found = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) if line.trim().is_empty() => continue,
                Ok(_) => {
                    found = line.trim().to_owned();
                    break;
                }
                Err(e) => {
                    return Err(Failure::usage(format!(
                        "cannot read the token from standard input: {e}"
                    )));
                }
            }
        }
        found
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(Failure::usage(
            "no token given: pass it with --token, in $NLDS_TOKEN or on standard input",
        ));
    }
    Ok(Secret::new(token))
}

/// Checks `url` and `token` with the server (`whoami`); a failure says nothing was written.
async fn verify(
    url: &str,
    token: &Secret,
    options: ClientOptions,
    path: &std::path::Path,
) -> Result<Identity, Failure> {
    let client = Client::with_options(url, token.expose(), options)?;
    client.whoami_full().await.map_err(|e| {
        let exit = exit::for_error(&e);
        Failure::Local {
            exit,
            code: e.code(),
            message: format!(
                "the server at {url} did not accept these settings: {e}\nNothing was written to {}; fix the URL or token, or write them anyway with --no-verify.",
                path.display()
            ),
        }
    })
}

/// What `init` and `renew` print with `--json`.
#[derive(Serialize)]
struct Report<'a> {
    config_file: String,
    created: bool,
    /// The keys that were written.
    written: &'a [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    token_file: Option<String>,
    settings: serde_json::Value,
    /// The server's answer to whoami (absent with --no-verify).
    whoami: Option<&'a Identity>,
}

fn verified_line(id: Option<&Identity>) -> String {
    match id {
        Some(id) => format!(
            "Checked with the server: you are {}, in group(s) {}.\n",
            id.who.user,
            id.who.groups.join(", ")
        ),
        None => "Not checked with the server (--no-verify).\n".to_owned(),
    }
}

/// `nlds init`.
pub async fn init(
    ov: &Overrides,
    a: &InitArgs,
    env: &Env,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let lookup = |k: &str| env.var(k);
    let path = config::config_path(&lookup).ok_or_else(|| {
        Failure::Client(Error::Config(
            "cannot tell where the config file goes: set $NLDS_CONFIG or $HOME".into(),
        ))
    })?;
    // What the file holds now (not the environment), and the timeouts in force.
    let exists = path.exists();
    let file = config::effective(&Overrides::default(), &file_only(env, exists))?;
    let all = config::effective(ov, &with_file_if(env, exists))?;

    let mut update = Update::default();
    let url = match non_empty(a.url.clone()).or_else(|| non_empty(ov.url.clone())) {
        Some(u) => {
            update.url = Some(u.clone());
            u
        }
        None => match &file.url {
            Some(u) => u.value.clone(),
            None => match non_empty(env.var("NLDS_URL")) {
                Some(u) => {
                    update.url = Some(u.clone());
                    u
                }
                None => {
                    return Err(Failure::usage(
                        "nlds init needs the server's URL: nlds init --url https://nlds.example.org",
                    ));
                }
            },
        },
    };
    let token = match ov.token.clone().filter(|t| !t.expose().trim().is_empty()) {
        Some(t) => {
            update.token = Some(t.clone());
            t
        }
        None => match &file.token {
            Some(t) => t.value.clone(),
            None => {
                let t = match non_empty(env.var("NLDS_TOKEN")) {
                    Some(t) => Secret::new(t),
                    None => read_token(env, io, &url)?,
                };
                update.token = Some(t.clone());
                t
            }
        },
    };
    update.group = non_empty(ov.group.clone());
    update.user = non_empty(ov.user.clone());
    update.insecure = if ov.insecure {
        Some(true)
    } else if a.no_insecure {
        Some(false)
    } else {
        None
    };
    let group = update
        .group
        .clone()
        .or_else(|| file.group.as_ref().map(|g| g.value.clone()));
    let insecure = update.insecure.unwrap_or(file.insecure.value);
    let options = ClientOptions {
        connect_timeout: all.connect_timeout.value,
        request_timeout: all.request_timeout.value,
        insecure,
        ..ClientOptions::default()
    };
    // Even unchecked, the URL must be one.
    Client::with_options(&url, token.expose(), options.clone())?;

    let identity = if a.no_verify {
        None
    } else {
        let id = verify(&url, &token, options, &path).await?;
        if let Some(g) = &group
            && !id.who.groups.iter().any(|x| x == g)
        {
            return Err(Failure::Local {
                exit: exit::CONFIG,
                code: ErrorCode::Forbidden,
                message: format!(
                    "you ({}) are not in group {g:?} on {url}; your groups: {}. Nothing was written to {}.",
                    id.who.user,
                    id.who.groups.join(", "),
                    path.display()
                ),
            });
        }
        Some(id)
    };
    if let (Some(id), Some(u)) = (&identity, &update.user)
        && &id.who.user != u
        && !ctx.json
    {
        let _ = writeln!(
            io.err,
            "warning: the server knows this token as {:?}, not {u:?}: the user is saved, but only informational",
            id.who.user
        );
    }

    let written = config::write(&path, &update, env.home().as_deref())?;
    let user = update
        .user
        .clone()
        .or_else(|| file.user.as_ref().map(|u| u.value.clone()));
    let settings = serde_json::json!({
        "url": url,
        "token": token.masked(),
        "group": group,
        "user": user,
        "insecure": insecure,
    });
    if ctx.json {
        print_json(
            io,
            &Report {
                config_file: written.path.display().to_string(),
                created: written.created,
                written: &written.keys,
                token_file: written.token_file.as_ref().map(|p| p.display().to_string()),
                settings,
                whoami: identity.as_ref(),
            },
        )?;
    } else {
        let mut o = written_header(&written);
        let mark = |key: &str| {
            if written.keys.contains(&key) {
                ""
            } else {
                "  (kept)"
            }
        };
        kv(&mut o, INDENT, "url", &format!("{url}{}", mark("url")));
        let token_mark = if written.keys.contains(&"token") || written.keys.contains(&"token_file")
        {
            ""
        } else {
            "  (kept)"
        };
        let token_where = match &written.token_file {
            Some(tf) => format!(" in {}", tf.display()),
            None => String::new(),
        };
        kv(
            &mut o,
            INDENT,
            "token",
            &format!("{}{token_where}{token_mark}", token.masked()),
        );
        kv(
            &mut o,
            INDENT,
            "group",
            &match &group {
                Some(g) => format!("{g}{}", mark("group")),
                None => "(none: commands act in your first group)".to_owned(),
            },
        );
        if let Some(u) = &user {
            kv(&mut o, INDENT, "user", &format!("{u}{}", mark("user")));
        }
        let insecure_mark = if written.keys.contains(&"insecure") {
            ""
        } else if file.insecure.source == config::Source::Default {
            "  (default)"
        } else {
            "  (kept)"
        };
        kv(
            &mut o,
            INDENT,
            "insecure",
            &format!("{insecure}{insecure_mark}"),
        );
        o.push_str(&verified_line(identity.as_ref()));
        print(io, &o);
        shadowed(io, ctx, env, &update);
    }
    Ok(exit::OK)
}

fn written_header(w: &Written) -> String {
    format!(
        "{} {} (mode 0600):\n",
        if w.created { "Created" } else { "Updated" },
        w.path.display()
    )
}

/// Environment variables that override what was just written: say so.
fn shadowed(io: &mut Io<'_>, ctx: &Ctx, env: &Env, update: &Update) {
    let checks = [
        ("NLDS_URL", update.url.is_some()),
        ("NLDS_TOKEN", update.token.is_some()),
        ("NLDS_GROUP", update.group.is_some()),
    ];
    for (var, written) in checks {
        if written && non_empty(env.var(var)).is_some() {
            note(
                io,
                ctx,
                &format!(
                    "note: ${var} is set and overrides the config file; unset it to use what was written"
                ),
            );
        }
    }
}

/// `nlds renew`.
pub async fn renew(
    ov: &Overrides,
    a: &RenewArgs,
    env: &Env,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let lookup = |k: &str| env.var(k);
    let path = config::config_path(&lookup).ok_or_else(|| {
        Failure::Client(Error::Config(
            "cannot tell where the config file goes: set $NLDS_CONFIG or $HOME".into(),
        ))
    })?;
    let exists = path.exists();
    let all = config::effective(ov, &with_file_if(env, exists))?;
    let Some(url) = all.url.as_ref().map(|u| u.value.clone()) else {
        return Err(Failure::Client(Error::NotConfigured(
            config::not_configured_message(true, all.token.is_none(), Some(&path), exists),
        )));
    };
    // Not $NLDS_TOKEN: that is usually the old token.
    let token = match ov.token.clone().filter(|t| !t.expose().trim().is_empty()) {
        Some(t) => t,
        None => read_token(env, io, &url)?,
    };
    let options = ClientOptions {
        connect_timeout: all.connect_timeout.value,
        request_timeout: all.request_timeout.value,
        insecure: all.insecure.value,
        ..ClientOptions::default()
    };
    Client::with_options(&url, token.expose(), options.clone())?;
    let identity = if a.no_verify {
        None
    } else {
        Some(verify(&url, &token, options, &path).await?)
    };
    let update = Update {
        token: Some(token.clone()),
        ..Update::default()
    };
    let written = config::write(&path, &update, env.home().as_deref())?;
    if ctx.json {
        print_json(
            io,
            &Report {
                config_file: written.path.display().to_string(),
                created: written.created,
                written: &written.keys,
                token_file: written.token_file.as_ref().map(|p| p.display().to_string()),
                settings: serde_json::json!({"url": url, "token": token.masked()}),
                whoami: identity.as_ref(),
            },
        )?;
    } else {
        let mut o = format!(
            "Renewed the token in {} (mode 0600).\n",
            written
                .token_file
                .as_ref()
                .unwrap_or(&written.path)
                .display()
        );
        kv(&mut o, INDENT, "url", &url);
        kv(&mut o, INDENT, "token", &token.masked());
        o.push_str(&verified_line(identity.as_ref()));
        print(io, &o);
        if non_empty(env.var("NLDS_TOKEN")).is_some() {
            note(
                io,
                ctx,
                "note: $NLDS_TOKEN is set and overrides the stored token; unset it to use the renewed one",
            );
        }
    }
    Ok(exit::OK)
}

/// `nlds config show`.
pub fn config_show(
    flags: &Overrides,
    env: &Env,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let e: Effective = config::effective(flags, &|k| env.var(k))?;
    let login = crate::commands::login::login_status(env, &e)?;
    if ctx.json {
        fn entry<T: Serialize>(v: &Option<config::Sourced<T>>) -> serde_json::Value {
            match v {
                Some(s) => serde_json::json!({"value": s.value, "source": s.source.to_string()}),
                None => serde_json::json!({"value": null, "source": null}),
            }
        }
        let token = match &e.token {
            Some(t) => {
                serde_json::json!({"value": t.value.masked(), "source": t.source.to_string()})
            }
            None => serde_json::json!({"value": null, "source": null, "problem": e.token_problem}),
        };
        print_json(
            io,
            &serde_json::json!({
                "config_file": {
                    "path": e.config_file.as_ref().map(|p| p.display().to_string()),
                    "source": e.config_file_source.to_string(),
                    "found": e.config_file_found,
                },
                "url": entry(&e.url),
                "token": token,
                "group": entry(&e.group),
                "user": entry(&e.user),
                "insecure": {"value": e.insecure.value, "source": e.insecure.source.to_string()},
                "connect_timeout": {
                    "value": format::duration_text(e.connect_timeout.value),
                    "source": e.connect_timeout.source.to_string(),
                },
                "request_timeout": {
                    "value": format::duration_text(e.request_timeout.value),
                    "source": e.request_timeout.source.to_string(),
                },
                "warnings": e.warnings,
                "login": login,
            }),
        )?;
        return Ok(exit::OK);
    }
    print(io, &view::config_view(&e, ctx.width));
    if let Some(l) = &login {
        print(io, &crate::commands::login::login_view(l, ctx.zone));
    }
    for w in &e.warnings {
        let _ = writeln!(io.err, "warning: {w}");
    }
    if let (None, Some(p)) = (&e.token, &e.token_problem) {
        let _ = writeln!(io.err, "warning: {p}");
    }
    if e.url.is_none() || (e.token.is_none() && e.token_problem.is_none()) {
        let _ = writeln!(
            io.err,
            "{}",
            config::not_configured_message(
                e.url.is_none(),
                e.token.is_none(),
                e.config_file.as_deref(),
                e.config_file_found
            )
        );
    }
    Ok(exit::OK)
}
