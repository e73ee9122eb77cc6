//! Argument groups several commands share (clap derive), and the parsers of their values.

use std::time::Duration;

use clap::{ArgAction, Args};
use nlds_core::State;
use nlds_core::api::{ApiAction, Tags};

use nlds_client::config::parse_duration;
use nlds_client::tags::parse_tag_arg;

/// The tag syntax, for the `--help` of every tag option.
macro_rules! tag_syntax {
    () => {
        "Repeatable (-t a:1 -t b:2), or several in one option (-t a:1,b:2); all are merged, a later \
value for a key wins.

The first `:` separates the key from the value, so a value may contain `:` \
(-t url:https://x.org:8443). Quote a value with spaces (-t \"site:Rutherford Appleton\"): spaces \
around keys and values are dropped, spaces inside them kept. Escape with a backslash: `\\,` for a \
comma inside a value (-t 'site:Harwell\\, UK'), `\\:` for a colon inside a key, `\\\\` for a \
backslash."
    };
}

/// What `get` does with a file that already exists at its destination.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Clobber {
    /// Never replace an existing file (the default): one with the same content is skipped, one
    /// with different content fails.
    #[arg(long, conflicts_with = "overwrite")]
    pub no_clobber: bool,

    /// Replace existing files whose content differs.
    #[arg(long)]
    pub overwrite: bool,
}

/// `--dry-run`, on put, putlist, get, getlist and meta.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct DryRun {
    /// Show what would be done (what would be sent, the resolved paths, the holding, file counts
    /// and sizes) and do nothing. Exits 5 when nothing would be transferred or changed.
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
}

/// Selects a holding by label, id or tags.
#[derive(Debug, Clone, Default, Args)]
pub struct HoldingSel {
    /// Label of the holding.
    #[arg(short = 'l', long, value_name = "LABEL")]
    pub label: Option<String>,

    /// Id of the holding.
    #[arg(
        short = 'i',
        long = "holding-id",
        alias = "holding_id",
        value_name = "ID"
    )]
    pub holding_id: Option<i64>,

    /// Tag(s) of the holding, KEY:VALUE[,KEY:VALUE...]; repeatable. A value may hold spaces and
    /// `:`; write `\,` for a comma in a value (see --help).
    #[arg(short = 't', long = "tag", value_name = "KEY:VALUE", value_parser = parse_tag_arg, action = ArgAction::Append, long_help = concat!("Tag(s) of the holding, KEY:VALUE.\n\n", tag_syntax!()))]
    pub tag: Vec<Tags>,
}

/// Names one holding by label or id, for the commands that take no tags (stage, locality,
/// explain): the path may be in several of the caller's holdings.
#[derive(Debug, Clone, Default, Args)]
pub struct HoldingRef {
    /// Label of the holding.
    #[arg(short = 'l', long, value_name = "LABEL")]
    pub label: Option<String>,

    /// Id of the holding (instead of its label).
    #[arg(
        short = 'i',
        long = "holding-id",
        alias = "holding_id",
        value_name = "ID"
    )]
    pub holding_id: Option<i64>,
}

/// `--wait` and its tunables.
#[derive(Debug, Clone, Args)]
pub struct WaitOpts {
    /// Wait until the transaction has finished, showing its progress; the exit code then tells
    /// how it ended (0 only for COMPLETE).
    #[arg(long)]
    pub wait: bool,

    /// Time between two polls with --wait (e.g. 5, 5s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, requires = "wait")]
    pub poll: Duration,

    /// Give up waiting after this long (e.g. 30m, 2h); no limit by default.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "wait")]
    pub timeout: Option<Duration>,
}

/// `-9/--descending` and `-0/--ascending`; the last one given wins.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Order {
    /// Newest first.
    #[arg(short = '9', long, overrides_with = "ascending")]
    pub descending: bool,

    /// Oldest first.
    #[arg(short = '0', long, overrides_with = "descending")]
    pub ascending: bool,
}

impl Order {
    /// `Some(true)` for descending, `Some(false)` for ascending, `None` for the server's default.
    pub fn descending(&self) -> Option<bool> {
        match (self.descending, self.ascending) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

/// `put`, `putlist`, ...: accepts the exact names and is case-insensitive.
pub fn parse_api_action(s: &str) -> Result<ApiAction, String> {
    ApiAction::parse(&s.trim().to_ascii_lowercase()).ok_or_else(|| {
        format!(
            "{s:?} is not an action: use put, putlist, get, getlist, archive-put or archive-get"
        )
    })
}

/// A state name in any case, `QUEUED` (= SEARCHING), or an NLDS state number.
pub fn parse_state(s: &str) -> Result<State, String> {
    let upper = s.trim().to_ascii_uppercase();
    if upper == "QUEUED" {
        return Ok(State::Searching);
    }
    upper.parse::<State>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_actions() {
        assert_eq!(parse_state("complete").unwrap(), State::Complete);
        assert_eq!(parse_state("queued").unwrap(), State::Searching);
        assert_eq!(parse_state("101").unwrap(), State::Failed);
        assert!(parse_state("CATALOG_ROLLBACK").is_err());
        assert_eq!(parse_api_action("PUT").unwrap(), ApiAction::Put);
        assert!(parse_api_action("dance").is_err());
    }
}

/// `--sync`, on put and putlist: how a path the holding already has is compared.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct SyncArg {
    /// How a path the holding already has is compared with its newest stored version: `exists`
    /// (always unchanged), `size`, `mtime` (size and modification time; the default) or
    /// `checksum` (size and blake3 of the content, hashed locally). Unchanged paths are skipped;
    /// changed ones are stored as a new version of the same path.
    #[arg(long, value_name = "LEVEL", value_parser = parse_sync)]
    pub sync: Option<nlds_core::versions::SyncLevel>,
}

fn parse_sync(s: &str) -> Result<nlds_core::versions::SyncLevel, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a sync level: use exists, size, mtime or checksum"))
}

/// `--version N` or `--at TIME`, on get, getlist and find: which version of each path.
#[derive(Debug, Clone, Default, Args)]
pub struct VersionArgs {
    /// Version N of each path instead of the newest (see `find --versions`).
    #[arg(long = "version", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub version: Option<u32>,

    /// The newest version of each path put at or before TIME: RFC 3339
    /// (2026-12-05T10:00:00Z) or a date (2026-12-05, up to the end of that day, UTC).
    #[arg(long, value_name = "TIME", conflicts_with = "version", value_parser = parse_at)]
    pub at: Option<String>,
}

fn parse_at(s: &str) -> Result<String, String> {
    nlds_core::versions::parse_at(s).map(|t| t.to_rfc3339())
}
