//! `policy.explain`: where one file is, which rule applies to it now and when it will next move.
//!
//! The file is resolved exactly as `find` resolves it: the policy role asks the catalogue
//! (`catalog.find`, with the caller's envelope: user, group, role), so a file outside the caller's
//! scope is not found, like one that does not exist, and the answer reveals nothing about it.
//! The facts are then read the way a pass reads them ([`scan::one`], [`facts_of`]) and the
//! policy in use is asked ([`nlds_policy::Policy::explain`]).

use chrono::{DateTime, Utc};
use nlds_core::api::Tier;
use nlds_core::error::ApiError;
use nlds_core::message::{HoldingFilter, RpcReply};
use nlds_core::policy::{Explanation, Locality, RuleDecision};
use nlds_core::{Action, Envelope, ErrorCode, PathKind, Payload, RoutingKey, Worker};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::PolicyRunner;
use super::pass::action_name;
use super::scan::{self, Tags, facts_of};
use crate::db::{file, pin};

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, format!("explain: {what}: {e}"))
}

/// The answer for a path nobody visible to the caller holds (or that does not exist).
fn not_found(path: &str, filter: &HoldingFilter) -> ApiError {
    let which = match (&filter.label, filter.holding_id) {
        (Some(l), _) => format!(" in a holding labelled {l:?}"),
        (None, Some(id)) => format!(" in holding {id}"),
        _ => String::new(),
    };
    ApiError::not_found(format!(
        "no file {path:?}{which} among your holdings: check the path (as it was put) with `nlds find -p PATH`"
    ))
}

/// Explains `path` (in a holding `filter` names) for the caller of `env`.
pub async fn explain(
    r: &PolicyRunner,
    env: &Envelope,
    filter: &HoldingFilter,
    path: &str,
) -> Result<Explanation, ApiError> {
    // The caller's scope, exactly as find's: the catalogue decides.
    let find = env.reply(Payload::FindFiles {
        filter: HoldingFilter {
            limit: 10,
            offset: 0,
            ..filter.clone()
        },
        path: Some(path.to_owned()),
        path_regex: false,
        files_only: false,
        named_must_exist: false,
    });
    let key = RoutingKey::new(Worker::Catalog, Action::Find);
    let reply = r
        .bus
        .rpc(key, &find, r.rpc_timeout)
        .await
        .map_err(|e| ApiError::new(e.code(), format!("explain: {e}")))?;
    let page = match reply.payload {
        Payload::Reply(RpcReply::Files(page)) => page,
        Payload::Reply(RpcReply::Error(e)) => return Err(e),
        _ => return Err(internal("catalog.find", "answered without a page of files")),
    };
    let entry = match page.files.as_slice() {
        [] => return Err(not_found(path, filter)),
        [one] => one,
        many => {
            let ids: Vec<String> = many
                .iter()
                .map(|f| format!("{} ({:?})", f.holding_id, f.label))
                .collect();
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "{path:?} is in {} of your holdings: {}; name one with -l LABEL or -i HOLDING_ID",
                    page.total,
                    ids.join(", ")
                ),
            ));
        }
    };
    let now = Utc::now();
    let (id, kind, access_count): (i64, PathKind, i64) = file::Entity::find()
        .select_only()
        .column(file::Column::Id)
        .column(file::Column::Kind)
        .column(file::Column::AccessCount)
        .filter(file::Column::HoldingId.eq(entry.holding_id))
        .filter(file::Column::Path.eq(entry.path.as_str()))
        .filter(file::Column::DeletedAt.is_null())
        .into_tuple()
        .one(&r.db)
        .await
        .map_err(|e| internal("reading the file", e))?
        // Deleted between the two reads: as if it never was.
        .ok_or_else(|| not_found(path, filter))?;
    let row = scan::one(&r.db, id, now)
        .await
        .map_err(|e| internal("reading the file's facts", e))?
        .ok_or_else(|| not_found(path, filter))?;
    let mut tags = Tags::default();
    tags.load(&r.db, std::slice::from_ref(&row))
        .await
        .map_err(|e| internal("reading the holding's tags", e))?;
    let tags = tags.of(row.holding_id);
    let pinned_until: Option<DateTime<Utc>> = pin::Entity::find()
        .select_only()
        .expr(Expr::col(pin::Column::Until).max())
        .filter(pin::Column::FileId.eq(id))
        .filter(pin::Column::Until.gt(now))
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(&r.db)
        .await
        .map_err(|e| internal("reading the file's pins", e))?
        .flatten();
    let policy = r.current();
    let ex = policy.explain(&facts_of(&row, &tags), now);
    let decision = |d: nlds_policy::Decision| RuleDecision {
        rule: d.name,
        action: action_name(&d.action).to_owned(),
    };
    let mut tiers = Vec::new();
    if row.has_warm {
        tiers.push(Tier::Warm);
    }
    if row.has_cold {
        tiers.push(Tier::Cold);
    }
    Ok(Explanation {
        path: row.path.clone(),
        holding_id: row.holding_id,
        label: row.label.clone(),
        size: row.size(),
        locality: locality(kind, row.has_warm, row.has_cold),
        tiers,
        ingest_time: row.ingested,
        last_access: row.last_access,
        access_count: u64::try_from(access_count).unwrap_or(0),
        pinned_until,
        policy_enabled: r.config().enabled,
        now: ex.now.map(decision),
        next: ex.next.map(|(t, d)| (t, decision(d))),
    })
}

/// WLCG Tape REST locality: a directory or link has no copy (`NONE`); a file without any copy
/// is `LOST`.
pub fn locality(kind: PathKind, warm: bool, cold: bool) -> Locality {
    match (kind, warm, cold) {
        (_, true, true) => Locality::DiskAndTape,
        (_, true, false) => Locality::Disk,
        (_, false, true) => Locality::Tape,
        (PathKind::File, false, false) => Locality::Lost,
        (_, false, false) => Locality::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locality_follows_the_copies() {
        assert_eq!(locality(PathKind::File, true, true), Locality::DiskAndTape);
        assert_eq!(locality(PathKind::File, true, false), Locality::Disk);
        assert_eq!(locality(PathKind::File, false, true), Locality::Tape);
        assert_eq!(locality(PathKind::File, false, false), Locality::Lost);
        assert_eq!(locality(PathKind::Directory, false, false), Locality::None);
    }
}
