//! `nlds meta`: relabel and retag holdings.

use crate::ctx::{Ctx, Io, note, print, print_json};
use crate::exit;
use crate::format::{INDENT, kv, tags_text};
use nlds_client::client::Client;

use clap::{ArgAction, Args};
use nlds_core::api::{MetaRequest, MetaResponse, Tags};

use crate::args::HoldingSel;
use crate::ctx::{Failure, all_tags};
use crate::plan::Plan;
use nlds_client::tags::{self, parse_del_tag_arg, parse_tag_arg};

#[derive(Debug, Clone, Args)]
pub struct MetaArgs {
    #[command(flatten)]
    pub holding: HoldingSel,

    /// The new label.
    #[arg(
        short = 'L',
        long = "new-label",
        alias = "new_label",
        value_name = "LABEL"
    )]
    pub new_label: Option<String>,

    /// Tag(s) to add or change, KEY:VALUE[,KEY:VALUE...]; repeatable (see --help).
    #[arg(short = 'T', long = "new-tag", alias = "new_tag", value_name = "KEY:VALUE", value_parser = parse_tag_arg, action = ArgAction::Append,
        long_help = concat!("Tag(s) to add, or to change the value of, KEY:VALUE.\n\n", tag_syntax!()))]
    pub new_tag: Vec<Tags>,

    /// Tag(s) to delete, KEY[:VALUE][,...]; repeatable. With a value, the tag is deleted only if
    /// it has that value.
    #[arg(short = 'D', long = "del-tag", alias = "del_tag", value_name = "KEY[:VALUE]", value_parser = parse_del_tag_arg, action = ArgAction::Append)]
    pub del_tag: Vec<Tags>,

    /// Show which holdings would change, and how, and change nothing. Exits 5 when no holding
    /// matches.
    #[arg(long)]
    pub dry_run: bool,
}

/// The request of `nlds meta`.
pub fn prepare(a: &MetaArgs) -> Result<Plan, Failure> {
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
    Ok(Plan::Meta(MetaRequest {
        group: None,
        label: sel.label.clone(),
        holding_id: sel.holding_id,
        tags: all_tags(sel),
        new_label: a.new_label.clone(),
        new_tags: tags::merge(&a.new_tag),
        del_tags: tags::merge(&a.del_tag),
        dry_run: a.dry_run,
    }))
}

/// Sends the request and shows the answer; returns the exit code.
pub async fn execute(
    req: MetaRequest,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let resp = client.meta(&req).await?;
    if ctx.json {
        print_json(io, &resp)?;
    } else {
        print(io, &meta_view(&resp));
    }
    if req.dry_run && resp.holdings.is_empty() {
        note(io, ctx, "error: no holding matches: nothing would change");
        return Ok(exit::NOT_FOUND);
    }
    Ok(exit::OK)
}

/// What `meta` changed, or with a dry run would change.
pub fn meta_view(m: &MetaResponse) -> String {
    let mut o = if m.dry_run {
        format!(
            "Dry run: would change the metadata of {} holding(s); nothing was changed.\n",
            m.holdings.len()
        )
    } else {
        format!("Changed metadata of {} holding(s)\n", m.holdings.len())
    };
    for h in &m.holdings {
        kv(&mut o, INDENT, "id", &h.id.to_string());
        kv(&mut o, INDENT, "user", &h.user);
        kv(&mut o, INDENT, "group", &h.group);
        kv(&mut o, INDENT, "old label", &h.old.label);
        kv(&mut o, INDENT, "old tags", &tags_text(&h.old.tags));
        kv(&mut o, INDENT, "new label", &h.new.label);
        kv(&mut o, INDENT, "new tags", &tags_text(&h.new.tags));
    }
    o
}
