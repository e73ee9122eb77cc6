//! `nlds admin failed`: the failed files of any transaction, with their reasons.

use clap::Args;
use nlds_core::admin::{FailedFilePage, PageQuery};
use uuid::Uuid;

use super::options::{Paging, more};
use crate::ctx::{Ctx, Failure, Io, print, print_json};
use crate::format::{Align, Fit, col, table};
use crate::plan::AdminPlan;
use nlds_client::client::Client;

#[derive(Debug, Clone, Args)]
pub struct FailedArgs {
    /// The transaction's UUID.
    #[arg(value_name = "TRANSACTION_ID")]
    pub transaction_id: Uuid,

    #[command(flatten)]
    pub paging: Paging,
}

pub(super) fn prepare(a: &FailedArgs) -> AdminPlan {
    AdminPlan::Failed(
        a.transaction_id,
        PageQuery {
            limit: a.paging.limit,
            offset: a.paging.offset,
        },
    )
}

pub(super) async fn execute(
    tid: Uuid,
    q: PageQuery,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let page = client.admin_failed_files(tid, &q).await?;
    if ctx.json {
        print_json(io, &page)?;
    } else {
        print(io, &failed_view(&page, ctx.width));
        more(io, ctx, page.files.len(), page.offset, page.total, "files");
    }
    Ok(())
}

/// A transaction's failed files: whose it is, then path, code and reason.
pub fn failed_view(p: &FailedFilePage, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    let mut out = format!(
        "transaction {} of {} ({}): {} failed file(s)\n",
        p.transaction_id, p.user, p.group, p.total
    );
    if p.files.is_empty() {
        return out;
    }
    let rows: Vec<Vec<String>> = p
        .files
        .iter()
        .map(|f| vec![f.path.clone(), f.code.to_string(), f.reason.clone()])
        .collect();
    out.push_str(&table(
        &[
            col("path", Left, Start),
            col("code", Left, Keep),
            col("reason", Left, End),
        ],
        &rows,
        width,
    ));
    out
}
