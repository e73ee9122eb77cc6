//! The `nlds` command line (clap derive).
//!
//! Commands and options mirror the Python NLDS client 1.0.17 (same short letters); long options
//! are kebab-case and accept the Python client's snake_case spellings as aliases (`--job-label`
//! and `--job_label`, `--holding-id` and `--holding_id`, ...). On top of those: `--wait`,
//! `--dry-run`, `--no-clobber`/`--overwrite`, `--wide`, `wait`, `whoami`, `config show`,
//! `completions` and `man`.

use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use nlds_client::config::{Overrides, Secret, parse_duration};

pub use crate::args::{
    Clobber, DryRun, HoldingSel, Order, WaitOpts, parse_api_action, parse_state,
};
pub use crate::commands::completions::CompletionsArgs;
pub use crate::commands::find::FindArgs;
pub use crate::commands::get::{GetArgs, GetlistArgs};
pub use crate::commands::list::ListArgs;
pub use crate::commands::login::LoginArgs;
pub use crate::commands::man::ManArgs;
pub use crate::commands::meta::MetaArgs;
pub use crate::commands::put::{PutArgs, PutlistArgs};
pub use crate::commands::setup::{InitArgs, RenewArgs};
pub use crate::commands::stat::StatArgs;
pub use crate::commands::wait::WaitArgs;

/// The `nlds` command line.
#[derive(Debug, Parser)]
#[command(
    name = "nlds",
    version,
    disable_version_flag = true,
    about = "Near-line data store client: put files into the store, get them back, list and find what is stored, follow transactions.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Print the version.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,

    /// The server's URL [overrides $NLDS_URL and the config file]. Give it before the command
    /// (`nlds --url URL list`); `init` also takes -U/--url.
    #[arg(long, value_name = "URL", help_heading = "Global options")]
    pub url: Option<String>,

    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The end of `nlds --help`: first steps, shell completion, the manual page and the exit codes.
pub const AFTER_HELP: &str = concat!(
    "First run:
  nlds init --url https://nlds.example.org      # asks for your token, checks it, saves it
  nlds config show                              # what is set, and where it comes from

Shell completion and manual page:
  nlds completions bash > ~/.local/share/bash-completion/completions/nlds
  nlds completions zsh > ~/.zfunc/_nlds          # with fpath+=(~/.zfunc) before compinit
  nlds completions fish > ~/.config/fish/completions/nlds.fish
  nlds man --dir ~/.local/share/man/man1         # then: man nlds, man nlds-put, ...

",
    crate::exit_codes_help!()
);

/// Options accepted by every command, before or after its name.
#[derive(Debug, Clone, Default, Args)]
pub struct Global {
    /// Accepted for compatibility with the Python client: the server takes your identity from the
    /// token. `init -u` saves it as the default user (informational).
    #[arg(
        short = 'u',
        long,
        global = true,
        help_heading = "Global options",
        value_name = "USER"
    )]
    pub user: Option<String>,

    /// The group (group workspace) to act in [overrides $NLDS_GROUP and the config file].
    #[arg(
        short = 'g',
        long,
        global = true,
        help_heading = "Global options",
        value_name = "GROUP"
    )]
    pub group: Option<String>,

    /// Print the server's JSON answer on stdout; errors too, as {"error":{"code":..,"message":..}}.
    #[arg(short = 'j', long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// The bearer token [overrides $NLDS_TOKEN and the config file]. Prefer those: other users
    /// can see command lines.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "TOKEN",
        hide_default_value = true
    )]
    pub token: Option<Secret>,

    /// Show times in UTC instead of the local time zone.
    #[arg(long, global = true, help_heading = "Global options")]
    pub utc: bool,

    /// Show tables in full, however wide. By default, when a table is wider than the terminal
    /// (or $COLUMNS), long labels and paths are shortened with `…`.
    #[arg(short = 'w', long, global = true, help_heading = "Global options")]
    pub wide: bool,

    /// Do not verify the server's TLS certificate (test servers with self-signed certificates
    /// only). With `init`, saved in the config file [also: NLDS_INSECURE=1, insecure = true].
    #[arg(short = 'k', long, global = true, help_heading = "Global options")]
    pub insecure: bool,

    /// Time allowed to open a connection (e.g. 10s) [default: 10s; also NLDS_CONNECT_TIMEOUT,
    /// connect_timeout in the config file].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration, help_heading = "Global options")]
    pub connect_timeout: Option<Duration>,

    /// Time allowed for one request, answer included (e.g. 2m) [default: 2m; also
    /// NLDS_REQUEST_TIMEOUT, request_timeout in the config file].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration, help_heading = "Global options")]
    pub request_timeout: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Put a file or a directory (recursively) into the store.
    Put(PutArgs),
    /// Put the files listed in FILELIST (one path per line; `-` reads standard input).
    ///
    /// Blank lines are skipped, relative paths are made absolute against the current directory,
    /// duplicates are dropped: `nlds stat -n ID -F | nlds putlist - -l LABEL` retries the failed
    /// files of a put. A list of any length is read and sent a chunk at a time (10,000 paths,
    /// or `$NLDS_CHUNK_PATHS`), never held whole.
    Putlist(PutlistArgs),
    /// Get a file back from the store.
    Get(GetArgs),
    /// Get the files listed in FILELIST back from the store (`-` reads standard input).
    ///
    /// E.g. `nlds find -l run42 -x -p '.*\.nc$' -1 | nlds getlist - -l run42 -r /tmp/restore`.
    Getlist(GetlistArgs),
    /// Delete a file or directory (everything under it), or with no PATH a whole holding.
    ///
    /// Deleted files disappear from list, find and get at once, and can be brought back with
    /// `nlds undelete` until the server's retention period (7 days by default) ends; then their
    /// copies are removed. A user deletes only their own holdings' files; a deputy or manager of
    /// the group anyone's (with -A). --dry-run lists what would be deleted.
    Del(crate::commands::del::DelArgs),
    /// Delete the files listed in FILELIST (one original path per line; `-` reads standard
    /// input).
    Dellist(crate::commands::del::DellistArgs),
    /// Bring back deleted files (or with no PATH a deleted holding) within the retention period.
    Undelete(crate::commands::del::UndeleteArgs),
    /// List holdings.
    List(ListArgs),
    /// Find and list files.
    Find(FindArgs),
    /// Where a file is (tiers), which policy rule applies to it, and when it will move.
    Explain(crate::commands::explain::ExplainArgs),
    /// Change the label or tags of holding(s).
    Meta(MetaArgs),
    /// List transactions and their state.
    Stat(StatArgs),
    /// Wait for a transaction to finish; the exit code tells how it ended.
    Wait(WaitArgs),
    /// Put the files a finished put failed again, into the same holding, as a new transaction
    /// linked to the first (stat shows the link both ways).
    Retry(crate::commands::retry::RetryArgs),
    /// Cancel a put or get that has not ended: its running steps stop, objects uploaded but not
    /// catalogued are removed, files already stored stay. It ends CANCELLED (exit 13 with
    /// --wait).
    Cancel(crate::commands::cancel::CancelArgs),
    /// Make stored files warm (recalling those only on tape) and keep them so for a lifetime;
    /// or follow (--status), cancel (--cancel) or forget (--delete) a stage request.
    ///
    /// Prints the request id; --wait waits until every file is staged (COMPLETED), FAILED or
    /// CANCELLED. `nlds release ID` lets the files go before their lifetime ends.
    Stage(crate::commands::stage::StageArgs),
    /// Let a stage request's files (all, or the PATHs given) leave the warm tier: drops that
    /// request's pins only (another request's pins of the same files stay).
    Release(crate::commands::stage::ReleaseArgs),
    /// Where copies of files are: DISK (warm only), TAPE (cold only), DISK_AND_TAPE, NONE
    /// (no data: a directory or link) or LOST; exits 5 if a path is not a stored file.
    Locality(crate::commands::stage::LocalityArgs),
    /// Show who the server takes you for, your groups, and when your token expires (if known).
    Whoami,
    /// Your groups' quotas: usage, limits and what running puts reserved.
    Quota(crate::commands::quota::QuotaArgs),
    /// Where you are notified when your transactions end (e-mail, webhook), and when.
    #[command(subcommand)]
    Notify(crate::commands::notify::NotifyCommand),
    /// Service operators only: every user's transactions, failed files, logs, the audit log, purge.
    #[command(subcommand)]
    Admin(crate::commands::admin::AdminCommand),
    /// Set up nlds: save the server URL, your token and default group in the config file.
    ///
    /// Writes ~/.config/nlds/config.toml (or $NLDS_CONFIG) with mode 0600, creating the
    /// directories. The token comes from --token, else $NLDS_TOKEN, else standard input (asked
    /// for, hidden, on a terminal); it is only asked for when the config file has none yet. Run it
    /// again to change only what you give: other settings are kept (use `nlds renew` to replace
    /// the token). The settings are checked with the server (whoami) before they are written.
    /// -u/--user saves a default user (informational: the token says who you are), -g/--group a
    /// default group, -k/--insecure skips TLS certificate verification from then on.
    Init(InitArgs),
    /// Replace the stored token with a new one, after checking it with the server.
    ///
    /// The new token comes from --token, else $NLDS_TOKEN, else standard input (asked for, hidden,
    /// on a terminal). It replaces `token` in the config file, or the contents of its
    /// `token_file`, written with mode 0600.
    Renew(RenewArgs),
    /// Log in with OAuth2 and keep the tokens (renewed automatically) for the other commands.
    ///
    /// By default the device authorization grant: nlds prints an address and a code, you open
    /// the address in any browser, log in at your identity provider and approve the code; nlds
    /// waits for that. --client-credentials logs a service account or script in with its client
    /// id and secret instead (the secret from --client-secret-file, $NLDS_AUTH_CLIENT_SECRET_FILE,
    /// $NLDS_AUTH_CLIENT_SECRET or client_secret_file in the config file's `[auth]` section; never
    /// on the command line, where others could see it). The provider is the `[auth]` issuer of the
    /// config file ($NLDS_AUTH_ISSUER, --issuer); --issuer, --client-id, --scope and --audience
    /// given here are saved in that section. The tokens go to a token file written with mode
    /// 0600 (oauth-token.json next to the config file, or `[auth]` token_file); the access token is
    /// renewed before it expires. Afterwards the login is checked with the server (whoami) when a
    /// server URL is configured.
    Login(LoginArgs),
    /// Log out: revoke the OAuth2 tokens at the provider (RFC 7009) and remove the token file.
    Logout,
    /// Show the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell)
    ///
    /// Install it with, e.g.:
    ///   nlds completions bash > ~/.local/share/bash-completion/completions/nlds
    ///   nlds completions zsh > ~/.zfunc/_nlds   (with fpath+=(~/.zfunc) before compinit)
    ///   nlds completions fish > ~/.config/fish/completions/nlds.fish
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write every page to a directory
    ///
    /// Install them with:
    ///   nlds man --dir ~/.local/share/man/man1   (then: man nlds, man nlds-put, ...)
    /// or view one page without installing it:
    ///   nlds man put | man -l -
    #[command(verbatim_doc_comment)]
    Man(ManArgs),
}

/// `nlds config ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Show every setting, its value and where it comes from (option, environment variable,
    /// config file or default). The token is never shown.
    Show,
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
