//! `nlds find`: the files of holdings.

pub mod view;

use crate::ctx::{Ctx, Io, more_note, note, print, print_json, print_raw, selection};
use crate::exit;
use nlds_client::client::Client;

use clap::Args;
use nlds_core::api::{HoldingQuery, MAX_LIMIT};
use uuid::Uuid;

use crate::args::{HoldingSel, Order, VersionArgs};
use crate::ctx::{Env, Failure, abs, query_tag};
use crate::plan::Plan;

#[derive(Debug, Clone, Args)]
pub struct FindArgs {
    /// Find in the holdings of the whole group, not only yours.
    #[arg(short = 'A', long)]
    pub groupall: bool,

    #[command(flatten)]
    pub holding: HoldingSel,

    /// Files put by this transaction.
    #[arg(
        short = 'n',
        long = "transaction-id",
        alias = "transaction_id",
        value_name = "UUID"
    )]
    pub transaction_id: Option<Uuid>,

    /// The file's path (exact; a regular expression with -x).
    #[arg(short = 'p', long, value_name = "PATH")]
    pub path: Option<String>,

    /// Print only the paths, one per line (e.g. for getlist).
    #[arg(short = '1', long)]
    pub simple: bool,

    /// Print the object-store URL (s3://bucket/key) of the warm copy instead of the path.
    #[arg(short = 'U', long)]
    pub url: bool,

    /// Treat the path and the label as regular expressions.
    #[arg(short = 'x', long)]
    pub regex: bool,

    #[command(flatten)]
    pub versions: VersionArgs,

    /// Every version of each path (version number, ingest time, transaction and size), not
    /// only the newest.
    #[arg(long = "versions", conflicts_with_all = ["version", "at"])]
    pub all_versions: bool,

    /// At most this many files.
    #[arg(short = 'L', long, value_name = "N", default_value_t = nlds_core::api::DEFAULT_LIMIT, value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT))]
    pub limit: u64,

    #[command(flatten)]
    pub order: Order,
}

/// The request of `nlds find`.
pub fn prepare(a: &FindArgs, env: &Env) -> Result<Plan, Failure> {
    Ok(Plan::Find {
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
            version: a.versions.version,
            at: a.versions.at.clone(),
            versions: a.all_versions,
        },
        simple: a.simple,
        url: a.url,
    })
}

/// Sends the request and shows the answer; returns the exit code.
pub async fn execute(
    query: HoldingQuery,
    simple: bool,
    url: bool,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let page = client.find(&query).await?;
    let unmatched = (page.total == 0).then(|| selection(&query)).flatten();
    if ctx.json {
        print_json(io, &page)?;
        return Ok(if unmatched.is_some() {
            exit::NOT_FOUND
        } else {
            exit::OK
        });
    }
    if let Some(asked) = unmatched {
        return Err(match (&query.path, query.regex) {
            (Some(p), false) => Failure::not_found(format!("no file {p} found")),
            _ => Failure::not_found(format!("no file matches {asked}")),
        });
    }
    if simple {
        print_raw(io, &view::simple_paths(&page.files, url));
    } else if query.versions && !page.files.is_empty() {
        print(io, &view::versions_table(&page.files, ctx.zone, ctx.width));
    } else {
        match page.files.as_slice() {
            [] => {
                note(io, ctx, "No files found.");
            }
            [one] => print(io, &view::file_view(one, url, ctx.zone)),
            many => print(io, &view::files_table(many, url, ctx.zone, ctx.width)),
        }
    }
    more_note(io, ctx, page.files.len(), page.total, "files");
    Ok(exit::OK)
}
