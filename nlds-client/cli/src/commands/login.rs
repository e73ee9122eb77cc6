//! `nlds login` and `nlds logout`, and how the other commands find their bearer token when an
//! OAuth2 provider is configured ([`resolve`]). The OAuth2 machinery is in [`nlds_client::oauth`].
//!
//! Which token a command sends, first match wins:
//! 1. `--token` or `$NLDS_TOKEN` (a static token given explicitly);
//! 2. the OAuth2 login in the token file, when an issuer is configured (`[auth] issuer` or
//!    `$NLDS_AUTH_ISSUER`), renewed before it expires;
//! 3. `token` or `token_file` in the config file (the embedded server's default).

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{ArgAction, Args};
use nlds_core::ErrorCode;
use serde::Serialize;

use crate::ctx::{Ctx, Env, Failure, Io, note, print_json};
use crate::exit;
use crate::format::{self, INDENT, Zone, kv, time};
use nlds_client::client::{Client, ClientOptions, Identity};
use nlds_client::config::{self, Effective, Overrides, Secret, Settings, Source, Sourced};
use nlds_client::error::Error;
use nlds_client::oauth::{
    self, AuthFlags, AuthSettings, DevicePrompt, Grant, OAuthSession, TokenStore,
};

/// The HTTP options (timeouts, TLS verification) of the effective configuration.
#[derive(Debug, Clone, Default, Args)]
pub struct LoginArgs {
    /// Log in as a service account with the client credentials grant (client id and secret)
    /// instead of approving a device code in a browser.
    #[arg(long)]
    pub client_credentials: bool,

    /// The OAuth2 provider's issuer URL (saved in the config file's `[auth]` section).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,

    /// The OAuth2 client id (saved in `[auth]`).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,

    /// A scope to ask for; repeatable, or several separated by spaces or commas (saved in
    /// `[auth]`) [default: openid offline_access for the device grant, none for client
    /// credentials].
    #[arg(long = "scope", value_name = "SCOPE", action = ArgAction::Append)]
    pub scopes: Vec<String>,

    /// The API the tokens are for: the RFC 8707 `resource` indicator (saved in `[auth]`).
    #[arg(long, value_name = "URI")]
    pub audience: Option<String>,

    /// With --client-credentials: the file holding the client secret (`-`: standard input).
    /// Saved in `[auth]` as client_secret_file (the path, not the secret).
    #[arg(long, value_name = "FILE", requires = "client_credentials")]
    pub client_secret_file: Option<std::path::PathBuf>,

    /// Do not check the new login with the server (whoami).
    #[arg(long)]
    pub no_verify: bool,
}

fn options_of(eff: &Effective) -> ClientOptions {
    ClientOptions {
        connect_timeout: eff.connect_timeout.value,
        request_timeout: eff.request_timeout.value,
        insecure: eff.insecure.value,
        ..ClientOptions::default()
    }
}

/// The settings of a command that talks to the server, and the OAuth2 session that renews its
/// token (when OAuth2 is configured and no token is given explicitly). Renews the access token
/// first if it expires within the refresh margin.
pub async fn resolve(
    flags: &Overrides,
    env: &Env,
) -> Result<(Settings, Option<Arc<OAuthSession>>), Failure> {
    let lookup = |k: &str| env.var(k);
    let mut eff = config::effective(flags, &lookup)?;
    let explicit = matches!(
        eff.token.as_ref().map(|t| &t.source),
        Some(Source::Flag(_) | Source::Env(_))
    );
    if explicit || eff.url.is_none() {
        return Ok((eff.settings()?, None));
    }
    let Some(auth) = oauth::settings(&AuthFlags::default(), &lookup, options_of(&eff))? else {
        return Ok((eff.settings()?, None));
    };
    let path = auth.token_file.clone();
    let session = Arc::new(OAuthSession::open(auth)?);
    let token = session.access_token(false).await?;
    eff.token = Some(Sourced {
        value: Secret::new(token),
        source: Source::TokenFile(path),
    });
    eff.token_problem = None;
    Ok((eff.settings()?, Some(session)))
}

/// The error of a missing OAuth2 configuration.
fn not_set_up(what: &str, env: &Env) -> Failure {
    let file = config::config_path(&|k| env.var(k))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.config/nlds/config.toml".into());
    Failure::Local {
        exit: exit::CONFIG,
        code: ErrorCode::BadRequest,
        message: format!(
            "{what}: no OAuth2 provider is configured; give --issuer URL --client-id ID, set \
             $NLDS_AUTH_ISSUER and $NLDS_AUTH_CLIENT_ID, or add an [auth] section with issuer and \
             client_id to {file}"
        ),
    }
}

/// A client secret from standard input (`--client-secret-file -`): its first non-blank line.
fn secret_from_stdin(io: &mut Io<'_>) -> Result<Secret, Failure> {
    let mut reader = std::io::BufReader::new(&mut *io.stdin);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line.trim().is_empty() => continue,
            Ok(_) => return Ok(Secret::new(line.trim())),
            Err(e) => {
                return Err(Failure::usage(format!(
                    "cannot read the client secret from standard input: {e}"
                )));
            }
        }
    }
    Err(Failure::usage(
        "--client-secret-file -: standard input holds no client secret",
    ))
}

/// Saves what `nlds login` was given (issuer, client id, scopes, audience, client secret file)
/// in the `[auth]` section of the config file, keeping everything else. Returns the keys written.
fn save_auth(
    path: &Path,
    a: &LoginArgs,
    secret_file: Option<&Path>,
) -> Result<Vec<&'static str>, Error> {
    let mut keys = Vec::new();
    let scopes: Vec<String> = a
        .scopes
        .iter()
        .flat_map(|s| {
            s.split([' ', ','])
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    if a.issuer.is_none()
        && a.client_id.is_none()
        && scopes.is_empty()
        && a.audience.is_none()
        && secret_file.is_none()
    {
        return Ok(keys);
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read the config file {}: {e}",
                path.display()
            )));
        }
    };
    let mut doc: toml_edit::DocumentMut = existing.parse().map_err(|e: toml_edit::TomlError| {
        Error::Config(format!("config file {}: {}", path.display(), e.message()))
    })?;
    if !doc.contains_key("auth") {
        doc["auth"] = toml_edit::table();
    }
    let auth = doc["auth"].as_table_mut().ok_or_else(|| {
        Error::Config(format!(
            "config file {}: `auth` must be a table ([auth])",
            path.display()
        ))
    })?;
    if let Some(v) = &a.issuer {
        auth["issuer"] = toml_edit::value(v.trim_end_matches('/'));
        keys.push("issuer");
    }
    if let Some(v) = &a.client_id {
        auth["client_id"] = toml_edit::value(v.as_str());
        keys.push("client_id");
    }
    if !scopes.is_empty() {
        let mut arr = toml_edit::Array::new();
        for s in &scopes {
            arr.push(s.as_str());
        }
        auth["scopes"] = toml_edit::value(arr);
        keys.push("scopes");
    }
    if let Some(v) = &a.audience {
        auth["audience"] = toml_edit::value(v.as_str());
        keys.push("audience");
    }
    if let Some(p) = secret_file {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        auth["client_secret_file"] = toml_edit::value(abs.display().to_string());
        keys.push("client_secret_file");
    }
    let mut text = doc.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    config::write_private(path, &text)?;
    Ok(keys)
}

/// What `nlds login` reports (`--json`). No token appears in it.
#[derive(Serialize)]
struct LoginReport<'a> {
    issuer: &'a str,
    client_id: &'a str,
    grant: Grant,
    token_file: String,
    expires_at: Option<DateTime<Utc>>,
    /// Whether nlds can renew the access token by itself.
    renewable: bool,
    scope: Option<&'a str>,
    /// The `[auth]` keys saved in the config file.
    saved: &'a [&'static str],
    whoami: Option<&'a Identity>,
}

/// `nlds login`.
pub async fn login(
    ov: &Overrides,
    a: &LoginArgs,
    env: &Env,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let lookup = |k: &str| env.var(k);
    let eff = config::effective(ov, &lookup)?;
    let mut flags = AuthFlags {
        issuer: a.issuer.clone(),
        client_id: a.client_id.clone(),
        scopes: a.scopes.clone(),
        audience: a.audience.clone(),
        client_secret_file: None,
        client_secret: None,
    };
    let mut secret_file = None;
    match a.client_secret_file.as_deref() {
        Some(p) if p == Path::new("-") => flags.client_secret = Some(secret_from_stdin(io)?),
        Some(p) => {
            let full = env.cwd.join(p);
            flags.client_secret_file = Some(full.clone());
            secret_file = Some(full);
        }
        None => {}
    }
    let Some(s) = oauth::settings(&flags, &lookup, options_of(&eff))? else {
        return Err(not_set_up("cannot log in", env));
    };
    let store = TokenStore::new(&s.token_file);
    let previous = store.load().ok().flatten();

    let login = if a.client_credentials {
        oauth::client_credentials_login(&s).await?
    } else {
        let err = &mut *io.err;
        oauth::device_login(&s, |p| device_prompt(err, p)).await?
    };
    store.save(&login)?;
    // The login this one replaces is of no further use: end it at the provider too.
    if let Some(old) = previous.filter(|o| o.matches(&s) && o.access_token != login.access_token) {
        let _ = oauth::revoke(&s, &old).await;
    }
    let saved = match &s.config_file {
        Some(path) => save_auth(path, a, secret_file.as_deref())?,
        None => Vec::new(),
    };

    // Check the login with the server, when there is one to ask.
    let mut whoami = None;
    let mut refused = None;
    if !a.no_verify
        && let Some(url) = &eff.url
    {
        let client =
            Client::with_options(&url.value, login.access_token.clone(), options_of(&eff))?;
        match client.whoami_full().await {
            Ok(mut id) => {
                id.token_expires = id.token_expires.or(login.expires_at);
                whoami = Some(id);
            }
            Err(e) => refused = Some((url.value.clone(), e)),
        }
    }

    if ctx.json {
        print_json(
            io,
            &LoginReport {
                issuer: &s.issuer,
                client_id: &s.client_id,
                grant: login.grant,
                token_file: s.token_file.display().to_string(),
                expires_at: login.expires_at,
                renewable: login.renewable(),
                scope: login.scope.as_deref(),
                saved: &saved,
                whoami: whoami.as_ref(),
            },
        )?;
    } else {
        let expiry = login
            .expires_at
            .map(|t| format::time(&t, ctx.zone))
            .unwrap_or_else(|| "not known".into());
        let renewal = match (login.renewable(), login.grant) {
            (true, Grant::DeviceCode) => "renewed automatically with the refresh token",
            (true, Grant::ClientCredentials) => "renewed automatically with the client secret",
            (false, _) => "not renewable: run `nlds login` again when it expires",
        };
        let _ = writeln!(
            io.out,
            "Logged in at {} as client {} ({}).\nTokens saved in {} (mode 0600); the access token expires {expiry}, {renewal}.",
            s.issuer,
            s.client_id,
            login.grant.describe(),
            s.token_file.display(),
        );
        if !saved.is_empty()
            && let Some(path) = &s.config_file
        {
            let _ = writeln!(
                io.out,
                "Saved {} in the [auth] section of {}.",
                saved.join(", "),
                path.display()
            );
        }
        if let Some(id) = &whoami {
            let _ = writeln!(
                io.out,
                "Checked with the server: you are {}, in group(s) {}.",
                id.who.user,
                id.who.groups.join(", ")
            );
        }
    }
    if let Some((url, e)) = refused {
        return Err(Failure::Local {
            exit: exit::for_error(&e),
            code: e.code(),
            message: format!(
                "logged in at {} (the tokens are saved), but the server at {url} did not accept \
                 the new token: {e}",
                s.issuer
            ),
        });
    }
    Ok(exit::OK)
}

/// The text that tells the person what to approve, on standard error.
fn device_prompt(err: &mut dyn Write, p: &DevicePrompt) {
    let minutes = p.expires_in.div_ceil(60);
    let _ = writeln!(
        err,
        "To log in, open this address in a browser:\n    {}\nand enter the code:\n    {}",
        p.verification_uri, p.user_code
    );
    if let Some(complete) = &p.verification_uri_complete {
        let _ = writeln!(err, "(or open {complete}, which has the code filled in)");
    }
    let _ = writeln!(
        err,
        "The code expires in {minutes} minute{}. Waiting for approval...",
        if minutes == 1 { "" } else { "s" }
    );
    let _ = err.flush();
}

/// What `nlds logout` reports (`--json`).
#[derive(Serialize)]
struct LogoutReport<'a> {
    issuer: &'a str,
    token_file: String,
    removed: bool,
    revocations: &'a [oauth::Revocation],
}

/// `nlds logout`: revokes the tokens at the provider and removes the token file (the file goes
/// even when the provider cannot be reached; the exit code then says revoking failed).
pub async fn logout(ov: &Overrides, env: &Env, ctx: &Ctx, io: &mut Io<'_>) -> Result<u8, Failure> {
    let lookup = |k: &str| env.var(k);
    let eff = config::effective(ov, &lookup)?;
    let Some(s) = oauth::settings(&AuthFlags::default(), &lookup, options_of(&eff))? else {
        return Err(not_set_up("cannot log out", env));
    };
    let store = TokenStore::new(&s.token_file);
    let Some(login) = store.load()? else {
        if ctx.json {
            print_json(
                io,
                &LogoutReport {
                    issuer: &s.issuer,
                    token_file: s.token_file.display().to_string(),
                    removed: false,
                    revocations: &[],
                },
            )?;
        } else {
            note(
                io,
                ctx,
                &format!(
                    "Not logged in (there is no token file {}).",
                    s.token_file.display()
                ),
            );
        }
        return Ok(exit::OK);
    };
    // Revoke with the provider and client that issued the tokens.
    let issued_by = AuthSettings {
        issuer: login.issuer.clone(),
        client_id: login.client_id.clone(),
        ..s.clone()
    };
    let revocations = oauth::revoke(&issued_by, &login).await;
    let removed = store.remove()?;
    if ctx.json {
        print_json(
            io,
            &LogoutReport {
                issuer: &login.issuer,
                token_file: s.token_file.display().to_string(),
                removed,
                revocations: &revocations,
            },
        )?;
    } else {
        for r in &revocations {
            let _ = writeln!(io.out, "{}: {}", r.token.replace('_', " "), r.outcome);
        }
        let _ = writeln!(
            io.out,
            "Logged out of {}: removed {}.",
            login.issuer,
            s.token_file.display()
        );
    }
    if let Some(bad) = revocations.iter().find(|r| !r.ok) {
        return Err(Failure::Local {
            exit: exit::GENERIC,
            code: ErrorCode::Unavailable,
            message: format!(
                "the token file is removed, but the {} could not be revoked ({}): it stays valid \
                 until it expires{}",
                bad.token.replace('_', " "),
                bad.outcome,
                login
                    .expires_at
                    .map(|t| format!(" ({})", format::time(&t, Zone::Utc)))
                    .unwrap_or_default()
            ),
        });
    }
    Ok(exit::OK)
}

/// What `nlds config show` says about OAuth2: the provider and client, where the tokens are,
/// and whether a login is stored (never a token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoginStatus {
    pub issuer: String,
    pub client_id: String,
    pub token_file: String,
    /// `None`: not logged in (no token file).
    pub grant: Option<Grant>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Why the token file could not be read, if it could not.
    pub problem: Option<String>,
}

/// The OAuth2 login state of the effective configuration; `Ok(None)` when no issuer is set.
pub fn login_status(env: &Env, eff: &Effective) -> Result<Option<LoginStatus>, Failure> {
    let lookup = |k: &str| env.var(k);
    let Some(s) = oauth::settings(&AuthFlags::default(), &lookup, options_of(eff))? else {
        return Ok(None);
    };
    let (login, problem) = match TokenStore::new(&s.token_file).load() {
        Ok(l) => (l, None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(Some(LoginStatus {
        issuer: s.issuer.clone(),
        client_id: s.client_id.clone(),
        token_file: s.token_file.display().to_string(),
        grant: login.as_ref().map(|l| l.grant),
        expires_at: login.as_ref().and_then(|l| l.expires_at),
        problem,
    }))
}

/// The OAuth2 part of `nlds config show`.
pub fn login_view(l: &LoginStatus, zone: Zone) -> String {
    let mut o = String::from("OAuth2 login ([auth]):\n");
    kv(&mut o, INDENT, "issuer", &l.issuer);
    kv(&mut o, INDENT, "client id", &l.client_id);
    kv(&mut o, INDENT, "token file", &l.token_file);
    let state = match (&l.problem, l.grant) {
        (Some(p), _) => format!("unreadable: {p}"),
        (None, None) => "not logged in (run `nlds login`)".to_owned(),
        (None, Some(g)) => {
            let until = l
                .expires_at
                .map(|t| format!(", access token expires {}", time(&t, zone)))
                .unwrap_or_default();
            format!(
                "logged in ({}){until}",
                serde_json::to_value(g)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        }
    };
    kv(&mut o, INDENT, "login", &state);
    o
}
