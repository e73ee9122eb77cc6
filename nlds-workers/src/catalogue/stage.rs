//! `catalog.stage`: stage requests (WLCG Tape REST semantics), release and locality.
//!
//! A stage resolves its paths like a get (the caller's holdings, or the group's with `groupall`;
//! a path the caller may not get is "no such file", whoever's it is) and records the request and
//! one `stage_file` row per file in one database transaction, with what that implies:
//! * a warm file is COMPLETED at once, pinned for the request's lifetime (requester
//!   `stage:<request id>`) and its access recorded;
//! * a file only on tape is SUBMITTED and waits for its aggregation's recall (one per aggregate,
//!   shared with gets and other stages: `recall::join_recall`); the recall's continuation moves
//!   it to STARTED when archive-get takes the recall up, then to COMPLETED (pinned from then for
//!   the lifetime) or FAILED with the reason;
//! * anything else FAILED with the reason (a directory or link named, no stored copy).
//!
//! Cancelling stops the request waiting (a recall others wait for continues), and drops its pins;
//! a release drops its pins only (another requester's pins of the same files stay). A request is
//! visible to its owner and to operators only: anyone else's id is not found.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use nlds_core::api::Tier;
use nlds_core::error::ApiError;
use nlds_core::message::HoldingFilter;
use nlds_core::policy::Locality;
use nlds_core::stage::{
    FileLocality, Selection, StageAnswer, StageChange, StageCreated, StageFileStatus, StageQuery,
    StageState, StageStatus,
};
use nlds_core::{Action, Envelope, PathKind, Payload, RoutingKey, Worker};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use uuid::Uuid;

use super::access::{self, stage_requester, stage_waiter};
use super::recall::{join_recall, recall_sub};
use super::store::{load_copies, load_transactions, scoped_files};
use super::{CHUNK, Catalogue, Result, dedup, ingest_key, normalise, prefix_range};
use crate::db::{
    aggregation, bad_request, file, location, recall_request, stage_file, stage_request,
};

/// The per-file error of a path the caller has no file at (WLCG's wording; reveals nothing).
const NO_SUCH_FILE: &str = "no such file";

/// What a new stage request records for one file.
struct Planned {
    path: String,
    file_id: Option<i64>,
    state: StageState,
    reason: Option<String>,
}

impl Catalogue {
    /// `catalog.stage`: one operation on stage requests.
    pub(super) async fn stage(&self, env: &Envelope, q: &StageQuery) -> Result<StageAnswer> {
        Ok(match q {
            StageQuery::Create {
                selection,
                paths,
                lifetime_secs,
            } => StageAnswer::Created(
                self.create_stage(env, selection, paths, *lifetime_secs)
                    .await?,
            ),
            StageQuery::Status { request_id } => {
                StageAnswer::Status(self.stage_status(env, *request_id).await?)
            }
            StageQuery::Cancel { request_id, paths } => StageAnswer::Changed(
                self.cancel_stage(env, *request_id, paths.as_deref(), false)
                    .await?,
            ),
            StageQuery::Delete { request_id } => {
                StageAnswer::Changed(self.cancel_stage(env, *request_id, None, true).await?)
            }
            StageQuery::Release { request_id, paths } => {
                StageAnswer::Changed(self.release(env, *request_id, paths.as_deref()).await?)
            }
            StageQuery::Locality { selection, paths } => {
                StageAnswer::Localities(self.locality(env, selection, paths).await?)
            }
        })
    }

    /// The lifetime a stage asks for, defaulted and capped by `[policy]`.
    fn stage_lifetime(&self, asked: Option<u64>) -> Result<u64> {
        match asked {
            None => Ok(self.policy.stage_lifetime_secs),
            Some(0) => Err(bad_request(
                "lifetime_secs must be at least 1 second (leave it out for the default)",
            )),
            Some(l) => Ok(l.min(self.policy.stage_max_lifetime_secs)),
        }
    }

    async fn create_stage(
        &self,
        env: &Envelope,
        selection: &Selection,
        paths: &[String],
        lifetime: Option<u64>,
    ) -> Result<StageCreated> {
        let lifetime = self.stage_lifetime(lifetime)?;
        let whole = paths.is_empty();
        if whole && selection.label.is_none() && selection.holding_id.is_none() {
            return Err(bad_request(
                "a stage needs paths, or a holding (label or id) to stage whole",
            ));
        }
        let filter = filter_of(selection);
        // A whole holding: every path under `/`.
        let wanted = if whole {
            vec!["/".to_owned()]
        } else {
            paths.to_vec()
        };
        let named: HashSet<String> = wanted.iter().map(|p| normalise(p)).collect();
        let (best, unmatched) = self.resolve_get(env, &filter, &wanted, false).await?;
        let ids: Vec<i64> = best.iter().map(|m| m.id).collect();
        let (locations, _) = load_copies(&self.db, &ids).await?;
        let stored = self.stored_aggregations(&locations).await?;

        let mut planned: Vec<Planned> = unmatched
            .iter()
            .map(|f| Planned {
                path: f.path.clone(),
                file_id: None,
                state: StageState::Failed,
                reason: Some(NO_SUCH_FILE.into()),
            })
            .collect();
        let mut warm = Vec::new();
        let mut cold: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for m in &best {
            let ls = locations.get(&m.id).map(Vec::as_slice).unwrap_or_default();
            let (state, reason) = if m.kind != PathKind::File {
                if !named.contains(&m.path) {
                    // Under a named directory: nothing to stage, nothing to say.
                    continue;
                }
                (
                    StageState::Failed,
                    Some(format!(
                        "{} is a {}: only files have data to stage",
                        m.path, m.kind
                    )),
                )
            } else if ls.iter().any(|l| l.tier == Tier::Warm) {
                warm.push(m.id);
                (StageState::Completed, None)
            } else if let Some(c) = ls
                .iter()
                .find(|l| l.tier == Tier::Cold && stored.contains_key(&l.key))
            {
                cold.entry(c.key.clone()).or_default().push(m.id);
                (StageState::Submitted, None)
            } else if ls.iter().any(|l| l.tier == Tier::Cold) {
                (
                    StageState::Failed,
                    Some(format!(
                        "{}: its cold copy is not in a stored aggregate (lost)",
                        m.path
                    )),
                )
            } else {
                (
                    StageState::Failed,
                    Some(format!("{}: no stored copy", m.path)),
                )
            };
            planned.push(Planned {
                path: m.path.clone(),
                file_id: Some(m.id),
                state,
                reason,
            });
        }

        let request_id = Uuid::new_v4();
        let requester = stage_requester(request_id);
        let now = Utc::now();
        // The recall jobs are read before the transaction (a recall created by it sends one).
        let mut jobs = Vec::new();
        for (name, ids) in cold {
            let agg = stored
                .get(&name)
                .ok_or_else(|| super::internal(format!("aggregation {name} vanished")))?;
            let job = self.recall_job(agg, &env.user, &env.group).await?;
            jobs.push((agg.clone(), ids, job));
        }
        let txn = self.db.begin().await?;
        let stage_id = stage_request::Entity::insert(stage_request::ActiveModel {
            request_id: Set(request_id.to_string()),
            user: Set(env.user.clone()),
            group: Set(env.group.clone()),
            created: Set(now),
            lifetime_secs: Set(super::to_i64(lifetime)),
            ..Default::default()
        })
        .exec(&txn)
        .await?
        .last_insert_id;
        for chunk in planned.chunks(CHUNK) {
            stage_file::Entity::insert_many(chunk.iter().map(|p| stage_file::ActiveModel {
                stage_id: Set(stage_id),
                file_id: Set(p.file_id),
                path: Set(p.path.clone()),
                state: Set(p.state),
                reason: Set(p.reason.clone()),
                updated: Set(now),
                ..Default::default()
            }))
            .exec_without_returning(&txn)
            .await?;
        }
        access::pin(&txn, &warm, &requester, until(now, lifetime)).await?;
        access::record(&txn, &warm, now).await?;
        // A request whose files were all warm (or failed) ends as it is made.
        crate::notify::decide::stage_ended(&txn, stage_id).await?;
        let waiting = env.reply(Payload::Stage(StageQuery::Status { request_id }));
        let mut messages = Vec::new();
        for (agg, ids, job) in jobs {
            let waiting = waiting.with_sub(recall_sub(request_id, agg.id), waiting.payload.clone());
            if join_recall(&txn, &agg, &requester, &waiting, &ids).await? {
                tracing::info!(aggregation = %agg.name, %request_id, "recall started for a stage");
                messages.push((RoutingKey::new(Worker::ArchiveGet, Action::Start), job));
            }
        }
        self.commit_with(txn, messages).await?;
        tracing::info!(%request_id, files = planned.len(), "stage request recorded");
        Ok(StageCreated { request_id })
    }

    /// The stored aggregations the cold copies in `locations` are in, by name.
    async fn stored_aggregations(
        &self,
        locations: &super::store::ById<Vec<location::Model>>,
    ) -> Result<HashMap<String, aggregation::Model>> {
        let names: Vec<String> = locations
            .values()
            .flatten()
            .filter(|l| l.tier == Tier::Cold)
            .map(|l| l.key.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut out = HashMap::new();
        for chunk in names.chunks(CHUNK) {
            for a in aggregation::Entity::find()
                .filter(aggregation::Column::Name.is_in(chunk.iter().cloned()))
                .filter(aggregation::Column::State.eq(aggregation::State::Stored))
                .all(&self.db)
                .await?
            {
                out.insert(a.name.clone(), a);
            }
        }
        Ok(out)
    }

    /// The stage request `request_id` if `env`'s user may see it (its owner, or an operator);
    /// anyone else's is not found, exactly like an id that does not exist.
    async fn visible_request(
        &self,
        c: &impl ConnectionTrait,
        env: &Envelope,
        request_id: Uuid,
    ) -> Result<stage_request::Model> {
        stage_request::Entity::find()
            .filter(stage_request::Column::RequestId.eq(request_id.to_string()))
            .one(c)
            .await?
            .filter(|r| r.user == env.user || env.role.is_admin())
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "stage request {request_id} not found: it does not exist or is not yours"
                ))
                .into()
            })
    }

    async fn stage_status(&self, env: &Envelope, request_id: Uuid) -> Result<StageStatus> {
        let r = self.visible_request(&self.db, env, request_id).await?;
        let files = stage_file::Entity::find()
            .filter(stage_file::Column::StageId.eq(r.id))
            .order_by_asc(stage_file::Column::Id)
            .all(&self.db)
            .await?;
        let started_at = files
            .iter()
            .filter(|f| f.state != StageState::Submitted)
            .map(|f| f.updated)
            .min();
        let completed_at = if files.iter().all(|f| f.state.is_final()) {
            files.iter().map(|f| f.updated).max().or(Some(r.created))
        } else {
            None
        };
        Ok(StageStatus {
            id: request_id,
            created_at: r.created,
            started_at,
            completed_at,
            lifetime_secs: super::to_u64(r.lifetime_secs),
            cancelled_at: r.cancelled,
            files: files
                .into_iter()
                .map(|f| StageFileStatus {
                    path: f.path,
                    state: f.state,
                    error: f.reason,
                    updated_at: f.updated,
                })
                .collect(),
        })
    }

    /// The files of request `stage_id` that `paths` name (all without paths); a path that is not
    /// one of them is a bad request (nothing changes).
    async fn request_files(
        &self,
        c: &impl ConnectionTrait,
        stage_id: i64,
        request_id: Uuid,
        paths: Option<&[String]>,
    ) -> Result<Vec<stage_file::Model>> {
        let files = stage_file::Entity::find()
            .filter(stage_file::Column::StageId.eq(stage_id))
            .all(c)
            .await?;
        let Some(paths) = paths else {
            return Ok(files);
        };
        let wanted: HashSet<String> = paths.iter().map(|p| normalise(p)).collect();
        let known: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let mut missing: Vec<&str> = wanted
            .iter()
            .map(String::as_str)
            .filter(|p| !known.contains(p))
            .collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.truncate(5);
            return Err(bad_request(format!(
                "not in stage request {request_id}: {}; nothing was changed",
                missing.join(", ")
            )));
        }
        Ok(files
            .into_iter()
            .filter(|f| wanted.contains(&f.path))
            .collect())
    }

    /// Cancels the request's files not yet final (all, or those `paths` name) and drops the
    /// request's pins of them; with `forget`, the request is deleted too (WLCG `DELETE`). The
    /// request stops waiting for recalls; a recall others wait for continues.
    async fn cancel_stage(
        &self,
        env: &Envelope,
        request_id: Uuid,
        paths: Option<&[String]>,
        forget: bool,
    ) -> Result<StageChange> {
        let txn = self.db.begin().await?;
        let r = self.visible_request(&txn, env, request_id).await?;
        let files = self.request_files(&txn, r.id, request_id, paths).await?;
        let now = Utc::now();
        let open: Vec<i64> = files
            .iter()
            .filter(|f| !f.state.is_final())
            .map(|f| f.id)
            .collect();
        let reason = format!("cancelled by {}", env.user);
        for chunk in open.chunks(CHUNK) {
            stage_file::Entity::update_many()
                .col_expr(
                    stage_file::Column::State,
                    Expr::value(StageState::Cancelled),
                )
                .col_expr(stage_file::Column::Reason, Expr::value(reason.clone()))
                .col_expr(stage_file::Column::Updated, Expr::value(now))
                .filter(stage_file::Column::Id.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
        }
        let requester = stage_requester(request_id);
        let file_ids: Vec<i64> = files.iter().filter_map(|f| f.file_id).collect();
        let unpinned = match paths {
            None => access::unpin(&txn, &requester, None).await?,
            Some(_) => access::unpin(&txn, &requester, Some(&file_ids)).await?,
        };
        let cancelled: HashSet<i64> = files
            .iter()
            .filter(|f| !f.state.is_final())
            .filter_map(|f| f.file_id)
            .collect();
        stop_waiting(&txn, &requester, paths.is_none().then_some(()), &cancelled).await?;
        if forget {
            stage_request::Entity::delete_by_id(r.id).exec(&txn).await?;
        } else {
            if paths.is_none() {
                stage_request::Entity::update(stage_request::ActiveModel {
                    id: Set(r.id),
                    cancelled: Set(Some(now)),
                    ..Default::default()
                })
                .exec(&txn)
                .await?;
            }
            if !open.is_empty() {
                crate::notify::decide::stage_ended(&txn, r.id).await?;
            }
        }
        txn.commit().await?;
        Ok(StageChange {
            cancelled: open.len() as u64,
            unpinned,
        })
    }

    /// Drops the request's pins (of the files `paths` name, or all): the files may leave the
    /// warm tier once no other requester pins them.
    async fn release(
        &self,
        env: &Envelope,
        request_id: Uuid,
        paths: Option<&[String]>,
    ) -> Result<StageChange> {
        let r = self.visible_request(&self.db, env, request_id).await?;
        let requester = stage_requester(request_id);
        let unpinned = match paths {
            None => access::unpin(&self.db, &requester, None).await?,
            Some(_) => {
                let files = self
                    .request_files(&self.db, r.id, request_id, paths)
                    .await?;
                let ids: Vec<i64> = files.iter().filter_map(|f| f.file_id).collect();
                access::unpin(&self.db, &requester, Some(&ids)).await?
            }
        };
        Ok(StageChange {
            cancelled: 0,
            unpinned,
        })
    }

    /// archiveinfo: the locality of each path (the newest copy the caller may get), or "no such
    /// file".
    async fn locality(
        &self,
        env: &Envelope,
        selection: &Selection,
        paths: &[String],
    ) -> Result<Vec<FileLocality>> {
        if paths.is_empty() {
            return Err(bad_request("archiveinfo needs at least one path"));
        }
        let filter = filter_of(selection);
        let scope = self.scope(env, &filter, false).await?;
        let wanted: Vec<String> = paths.iter().map(|p| normalise(p)).collect();
        let mut by_path: HashMap<String, Vec<file::Model>> = HashMap::new();
        for chunk in dedup(&wanted.iter().map(String::as_str).collect::<Vec<_>>()).chunks(CHUNK) {
            for m in scoped_files(&scope)
                .filter(file::Column::Path.is_in(chunk.iter().copied()))
                .all(&self.db)
                .await?
            {
                by_path.entry(m.path.clone()).or_default().push(m);
            }
        }
        let tx_ids: Vec<i64> = dedup(
            &by_path
                .values()
                .flatten()
                .map(|m| m.transaction_id)
                .collect::<Vec<_>>(),
        );
        let txs = load_transactions(&self.db, &tx_ids).await?;
        let newest: HashMap<String, file::Model> = by_path
            .into_iter()
            .filter_map(|(p, ms)| {
                ms.into_iter()
                    .max_by_key(|m| ingest_key(&txs, m))
                    .map(|m| (p, m))
            })
            .collect();
        let ids: Vec<i64> = newest.values().map(|m| m.id).collect();
        let (locations, _) = load_copies(&self.db, &ids).await?;
        let stored = self.stored_aggregations(&locations).await?;
        let mut out = Vec::with_capacity(paths.len());
        for (asked, norm) in paths.iter().zip(&wanted) {
            let locality = match newest.get(norm) {
                Some(m) => Some(locality_of(
                    m,
                    locations.get(&m.id).map(Vec::as_slice).unwrap_or_default(),
                    &stored,
                )),
                // A directory that is only implied by the paths under it holds no data.
                None => {
                    let (lo, hi) = prefix_range(norm);
                    scoped_files(&scope)
                        .filter(file::Column::Path.gt(lo))
                        .filter(file::Column::Path.lt(hi))
                        .one(&self.db)
                        .await?
                        .map(|_| Locality::None)
                }
            };
            out.push(FileLocality {
                path: asked.clone(),
                error: locality.is_none().then(|| NO_SUCH_FILE.to_owned()),
                locality,
            });
        }
        Ok(out)
    }

    /// A recall the stages in `waiters` wait for was taken up: their submitted files are STARTED.
    pub(super) async fn stage_progress(&self, waiters: &[recall_request::Model]) -> Result<()> {
        let now = Utc::now();
        for w in waiters {
            let Some(stage_id) = self.waiting_stage(w).await? else {
                continue;
            };
            let ids = waiter_files(w);
            for chunk in ids.chunks(CHUNK) {
                stage_file::Entity::update_many()
                    .col_expr(stage_file::Column::State, Expr::value(StageState::Started))
                    .col_expr(stage_file::Column::Updated, Expr::value(now))
                    .filter(stage_file::Column::StageId.eq(stage_id))
                    .filter(stage_file::Column::FileId.is_in(chunk.iter().copied()))
                    .filter(stage_file::Column::State.eq(StageState::Submitted))
                    .exec(&self.db)
                    .await?;
            }
        }
        Ok(())
    }

    /// The recall a stage waited for restored its aggregate: the stage's waiting files with a
    /// warm copy now are COMPLETED (pinned from now for the request's lifetime, access recorded),
    /// the others FAILED.
    pub(super) async fn stage_restored(&self, w: &recall_request::Model) -> Result<()> {
        let Some(request_id) = stage_waiter(&w.sub_id) else {
            return Ok(());
        };
        let ids = waiter_files(w);
        let (locations, _) = load_copies(&self.db, &ids).await?;
        let txn = self.db.begin().await?;
        let Some(r) = stage_request::Entity::find()
            .filter(stage_request::Column::RequestId.eq(request_id.to_string()))
            .one(&txn)
            .await?
        else {
            return Ok(());
        };
        let now = Utc::now();
        let open = self.open_files(&txn, r.id, &ids).await?;
        let (done, lost): (Vec<stage_file::Model>, Vec<stage_file::Model>) =
            open.into_iter().partition(|f| {
                f.file_id.is_some_and(|id| {
                    locations
                        .get(&id)
                        .is_some_and(|ls| ls.iter().any(|l| l.tier == Tier::Warm))
                })
            });
        set_state(&txn, &done, StageState::Completed, None, now).await?;
        let reason = "the recall did not restore it".to_owned();
        set_state(&txn, &lost, StageState::Failed, Some(reason), now).await?;
        let warm: Vec<i64> = done.iter().filter_map(|f| f.file_id).collect();
        let lifetime = super::to_u64(r.lifetime_secs);
        access::pin(
            &txn,
            &warm,
            &stage_requester(request_id),
            until(now, lifetime),
        )
        .await?;
        access::record(&txn, &warm, now).await?;
        if !(done.is_empty() && lost.is_empty()) {
            crate::notify::decide::stage_ended(&txn, r.id).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// The recall a stage waited for failed: its waiting files are FAILED with the reason.
    pub(super) async fn stage_failed(&self, w: &recall_request::Model, reason: &str) -> Result<()> {
        let Some(stage_id) = self.waiting_stage(w).await? else {
            return Ok(());
        };
        let txn = self.db.begin().await?;
        let open = self.open_files(&txn, stage_id, &waiter_files(w)).await?;
        set_state(
            &txn,
            &open,
            StageState::Failed,
            Some(reason.to_owned()),
            Utc::now(),
        )
        .await?;
        if !open.is_empty() {
            crate::notify::decide::stage_ended(&txn, stage_id).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// The row id of the stage request a recall waiter stands for, if it still exists.
    async fn waiting_stage(&self, w: &recall_request::Model) -> Result<Option<i64>> {
        let Some(request_id) = stage_waiter(&w.sub_id) else {
            return Ok(None);
        };
        Ok(stage_request::Entity::find()
            .filter(stage_request::Column::RequestId.eq(request_id.to_string()))
            .one(&self.db)
            .await?
            .map(|r| r.id))
    }

    /// The files of request `stage_id` among `ids` that are not final yet.
    async fn open_files(
        &self,
        c: &impl ConnectionTrait,
        stage_id: i64,
        ids: &[i64],
    ) -> Result<Vec<stage_file::Model>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            out.extend(
                stage_file::Entity::find()
                    .filter(stage_file::Column::StageId.eq(stage_id))
                    .filter(stage_file::Column::FileId.is_in(chunk.iter().copied()))
                    .filter(
                        stage_file::Column::State
                            .is_in([StageState::Submitted, StageState::Started]),
                    )
                    .all(c)
                    .await?,
            );
        }
        Ok(out)
    }
}

/// The holding filter of a selection (like a get's).
fn filter_of(s: &Selection) -> HoldingFilter {
    HoldingFilter {
        groupall: s.groupall,
        label: s.label.clone().filter(|l| !l.is_empty()),
        holding_id: s.holding_id,
        descending: true,
        ..Default::default()
    }
}

/// The end of a lifetime of `secs` from `now` (far lifetimes are capped, never overflow).
fn until(now: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
    let secs = i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .min(100 * 365 * 86_400);
    now + Duration::seconds(secs)
}

/// The file ids a recall waiter waits for.
fn waiter_files(w: &recall_request::Model) -> Vec<i64> {
    serde_json::from_str(&w.file_ids).unwrap_or_default()
}

/// Where a catalogued file's copies are (WLCG locality).
fn locality_of(
    m: &file::Model,
    ls: &[location::Model],
    stored: &HashMap<String, aggregation::Model>,
) -> Locality {
    let warm = ls.iter().any(|l| l.tier == Tier::Warm);
    let cold = ls.iter().filter(|l| l.tier == Tier::Cold);
    let tape = cold.clone().any(|l| stored.contains_key(&l.key));
    let unverified = cold.clone().next().is_some() && !tape;
    match (m.kind, warm, tape) {
        (PathKind::Directory | PathKind::Link, _, _) => Locality::None,
        (_, true, true) => Locality::DiskAndTape,
        (_, true, false) => Locality::Disk,
        (_, false, true) => Locality::Tape,
        (_, false, false) if unverified || m.size > 0 => Locality::Lost,
        (_, false, false) => Locality::None,
    }
}

/// Moves `files` to `state` (with `reason`) at `now`.
async fn set_state(
    c: &impl ConnectionTrait,
    files: &[stage_file::Model],
    state: StageState,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<()> {
    let ids: Vec<i64> = files.iter().map(|f| f.id).collect();
    for chunk in ids.chunks(CHUNK) {
        stage_file::Entity::update_many()
            .col_expr(stage_file::Column::State, Expr::value(state))
            .col_expr(stage_file::Column::Reason, Expr::value(reason.clone()))
            .col_expr(stage_file::Column::Updated, Expr::value(now))
            .filter(stage_file::Column::Id.is_in(chunk.iter().copied()))
            .exec(c)
            .await?;
    }
    Ok(())
}

/// `requester` stops waiting for recalls: entirely (`all`), or for the files `cancelled`. A
/// waiter left with no file is removed; the recall itself continues (others may wait for it,
/// and a restored copy harms nobody).
async fn stop_waiting(
    c: &impl ConnectionTrait,
    requester: &str,
    all: Option<()>,
    cancelled: &HashSet<i64>,
) -> Result<()> {
    let waiters = recall_request::Entity::find()
        .filter(recall_request::Column::SubId.eq(requester))
        .all(c)
        .await?;
    for w in waiters {
        let left: Vec<i64> = waiter_files(&w)
            .into_iter()
            .filter(|id| all.is_none() && !cancelled.contains(id))
            .collect();
        if left.is_empty() {
            recall_request::Entity::delete_by_id(w.id).exec(c).await?;
        } else {
            recall_request::Entity::update(recall_request::ActiveModel {
                id: Set(w.id),
                file_ids: Set(serde_json::to_string(&left).unwrap_or_default()),
                ..Default::default()
            })
            .exec(c)
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod tests;
