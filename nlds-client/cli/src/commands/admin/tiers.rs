//! `nlds admin archive` and `nlds admin evict`: move data between tiers now, outside the policy's
//! passes (service operators only).

use clap::Args;
use nlds_core::api::{ArchiveRequested, Evicted};

use crate::ctx::{Ctx, Failure, Io, print, print_json};
use crate::format::human_size;
use crate::plan::AdminPlan;
use nlds_client::client::Client;

/// `nlds admin evict HOLDING_ID`.
#[derive(Debug, Clone, Args)]
pub struct EvictArgs {
    /// The holding whose warm copies go (only those with a verified cold copy).
    #[arg(value_name = "HOLDING_ID")]
    pub holding_id: i64,
}

pub(super) fn prepare_evict(a: &EvictArgs) -> AdminPlan {
    AdminPlan::Evict(a.holding_id)
}

pub(super) async fn archive(client: &Client, ctx: &Ctx, io: &mut Io<'_>) -> Result<(), Failure> {
    let r = client.admin_archive().await?;
    if ctx.json {
        print_json(io, &r)?;
    } else {
        print(io, &archive_view(&r));
    }
    Ok(())
}

pub(super) async fn evict(
    holding_id: i64,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let r = client.admin_evict(holding_id).await?;
    if ctx.json {
        print_json(io, &r)?;
    } else {
        print(io, &evict_view(&r));
    }
    Ok(())
}

/// What `nlds admin archive` prints.
pub fn archive_view(r: &ArchiveRequested) -> String {
    format!(
        "archive round {} requested: the catalogue plans it now (follow it with `nlds admin logs -n {}`)\n",
        r.round, r.round
    )
}

/// What `nlds admin evict` prints.
pub fn evict_view(r: &Evicted) -> String {
    if r.files == 0 {
        return format!(
            "holding {}: no warm copy to drop (none has a verified cold copy, or none is left)\n",
            r.holding_id
        );
    }
    format!(
        "holding {}: dropped the warm copies of {} file{} ({}); they stay on tape and come back on the next get\n",
        r.holding_id,
        r.files,
        if r.files == 1 { "" } else { "s" },
        human_size(r.bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_name_the_holding_the_counts_and_what_follows() {
        let e = Evicted {
            holding_id: 7,
            files: 3,
            bytes: 3 * 1024 * 1024,
        };
        assert_eq!(
            evict_view(&e),
            "holding 7: dropped the warm copies of 3 files (3.0 MiB); they stay on tape and come back on the next get\n"
        );
        assert!(evict_view(&Evicted { files: 0, ..e }).contains("no warm copy to drop"));
        let round = uuid::Uuid::nil();
        assert!(
            archive_view(&ArchiveRequested { round })
                .contains(&format!("nlds admin logs -n {round}"))
        );
    }
}
