//! The monitor role: the state of every transaction and its sub-records.
//!
//! `monitor-put.init` upserts the transaction record, `monitor-put.start` upserts a sub-record
//! (creating the transaction record if the update overtook the init), `monitor-put.progress`
//! stores the bytes a transfer moved of a batch in flight (best effort), and the RPC `monitor.stat`
//! answers a page of transactions with their derived states. Updates are idempotent and never move
//! a sub-record from a final state back to a non-final one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use nlds_bus::{Bus, Handler, HandlerError, Outcome};
use nlds_core::api::{DEFAULT_LIMIT, MAX_LIMIT, TransactionPage};
use nlds_core::message::{RpcReply, StatusFilter};
use nlds_core::workflow::sub_record::{self as states, Tally};
use nlds_core::{
    Action, Change, Envelope, ErrorCode, FailedFile, Payload, RoutingKey, State, Worker,
};
use sea_orm::sea_query::{OnConflict, Order, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use crate::db::{
    self, OpError as Error, bad_request, failed_file, internal, sub_record, transaction_record,
    warning,
};

mod admin;
mod drains;
mod progress;
mod status;
mod waiting;
mod warnings;

use status::status;

use warnings::add_warnings;

type Result<T, E = Error> = std::result::Result<T, E>;

/// Ids per `IN (...)` list.
const CHUNK: usize = 500;

/// The monitor handler (roles `monitor` and `monitor-rpc`).
pub struct Monitor {
    db: DatabaseConnection,
    /// Where it announces each transaction it changed (live status), if anywhere.
    changes: Option<Arc<dyn Bus>>,
    /// `[notify] allow_http`: webhook URLs may be plain http to any host.
    allow_http: bool,
}

#[async_trait]
impl Handler for Monitor {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        if (key.worker, key.action) == (Worker::MonitorPut, Action::Progress) {
            // Best effort: stored or dropped, never retried (monitor/progress.rs).
            return Ok(self.progress(&env).await);
        }
        let rpc = key.worker == Worker::Monitor;
        let result = db::retrying(|| self.dispatch(key, &env)).await;
        if result.is_ok() && changes_status(&env.payload) {
            self.announce(env.transaction_id).await;
        }
        db::finish(key, &env, rpc, result)
    }
}

/// Whether storing `payload` changes a transaction's status (what live status streams).
fn changes_status(payload: &Payload) -> bool {
    matches!(
        payload,
        Payload::MonitorInit { .. } | Payload::MonitorUpdate { .. } | Payload::Warning { .. }
    )
}

impl Monitor {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            changes: None,
            allow_http: false,
        }
    }

    /// Checks webhook URLs with `[notify] allow_http`.
    pub fn with_allow_http(mut self, allow_http: bool) -> Self {
        self.allow_http = allow_http;
        self
    }

    /// Announces on `bus` every transaction whose status it stored a change of
    /// ([`Bus::announce`]), for the servers streaming live status.
    pub fn with_changes(mut self, bus: Arc<dyn Bus>) -> Self {
        self.changes = Some(bus);
        self
    }

    /// Best effort: a change that cannot be announced is seen by watchers when they next look
    /// (they look again now and then), so it never fails the update.
    async fn announce(&self, transaction_id: Uuid) {
        self.announce_change(Change::of(transaction_id)).await;
    }

    /// Announces `change` on the bus, if the monitor has one; best effort (see [`Self::announce`]).
    async fn announce_change(&self, change: Change) {
        let Some(bus) = &self.changes else { return };
        // Never holds the monitor up for long: it is the single writer of every status.
        let announced =
            tokio::time::timeout(std::time::Duration::from_secs(1), bus.announce(change)).await;
        if !matches!(announced, Ok(Ok(()))) {
            tracing::debug!(?change, ?announced, "could not announce a change");
        }
    }

    async fn dispatch(&self, key: RoutingKey, env: &Envelope) -> Result<Outcome> {
        match (key.worker, key.action, &env.payload) {
            (Worker::MonitorPut, Action::Init, Payload::MonitorInit { label, holding_id }) => {
                self.init(env, label.clone(), *holding_id).await?;
                Ok(Outcome::none())
            }
            // The API records a transaction before accepting it, so its id is never unknown.
            (Worker::Monitor, Action::Init, Payload::MonitorInit { label, holding_id }) => {
                self.init(env, label.clone(), *holding_id).await?;
                Ok(Outcome::reply(
                    env.reply(Payload::Reply(RpcReply::Recorded)),
                ))
            }
            (Worker::Monitor, Action::Init, Payload::CheckTransactionId) => {
                self.check_id(env).await?;
                Ok(Outcome::reply(
                    env.reply(Payload::Reply(RpcReply::Available)),
                ))
            }
            (
                Worker::MonitorPut,
                Action::Start,
                Payload::MonitorUpdate {
                    state,
                    files,
                    bytes,
                    failed,
                    warnings,
                    versions,
                },
            ) => {
                let counts = Counts {
                    files: *files,
                    bytes: *bytes,
                    versions: *versions,
                };
                self.update(env, *state, counts, failed, warnings).await?;
                Ok(Outcome::none())
            }
            (Worker::MonitorPut, Action::Start, Payload::Warning { warnings, retry }) => {
                self.warn(env, warnings, retry.as_ref()).await?;
                Ok(Outcome::none())
            }
            (Worker::Monitor, Action::Init, Payload::RetryOf { retry_of }) => {
                self.link_retry(env, *retry_of).await?;
                Ok(Outcome::reply(
                    env.reply(Payload::Reply(RpcReply::Recorded)),
                ))
            }
            (Worker::Monitor, Action::Stat, Payload::Stat { filter }) => {
                let page = self.stat(env, filter).await?;
                Ok(Outcome::reply(
                    env.reply(Payload::Reply(RpcReply::Transactions(page))),
                ))
            }
            (Worker::Monitor, Action::Admin, Payload::Admin(q)) => {
                let answer = self.admin(q).await?;
                Ok(Outcome::reply(
                    env.reply(Payload::Reply(RpcReply::Admin(answer))),
                ))
            }
            (Worker::Monitor, Action::Notify, Payload::Notify(req)) => {
                use crate::notify::prefs::{Answer, answer};
                let reply = match answer(&self.db, &env.user, self.allow_http, req).await? {
                    Answer::Settings(s) => RpcReply::Notify(s),
                    Answer::List(l) => RpcReply::Notifications(l),
                };
                Ok(Outcome::reply(env.reply(Payload::Reply(reply))))
            }
            (Worker::MonitorPut, Action::Init | Action::Start, _)
            | (Worker::Monitor, Action::Stat | Action::Init | Action::Admin | Action::Notify, _) => {
                Err(bad_request(format!("{key} got the wrong kind of payload")))
            }
            _ => Err(bad_request(format!("the monitor does not handle {key}"))),
        }
    }

    /// Records that `env`'s transaction (the user's own, just accepted) retries the failed
    /// files of `retry_of`.
    async fn link_retry(&self, env: &Envelope, retry_of: Uuid) -> Result<()> {
        use transaction_record::Column as C;
        let linked = transaction_record::Entity::update_many()
            .col_expr(
                C::RetryOf,
                sea_orm::sea_query::Expr::value(retry_of.to_string()),
            )
            .filter(C::TransactionId.eq(env.transaction_id.to_string()))
            .filter(C::User.eq(&env.user))
            .exec(&self.db)
            .await?;
        if linked.rows_affected == 0 {
            return Err(bad_request(format!(
                "transaction {} is not recorded: cannot link it to {retry_of}",
                env.transaction_id
            )));
        }
        Ok(())
    }

    /// `monitor-put.init`: creates the transaction record, or completes one an update created
    /// (or a retry of the same request: same user, group and API action). A record of another
    /// user, group or action is never overwritten: the id is refused (`conflict`), atomically
    /// (the upsert updates only a row whose owner matches).
    async fn init(
        &self,
        env: &Envelope,
        label: Option<String>,
        holding_id: Option<i64>,
    ) -> Result<()> {
        use sea_orm::sea_query::{Alias, Expr, ExprTrait as _};
        use transaction_record::Column as C;
        let now = Utc::now();
        let mut model = new_record(env);
        model.label = Set(label);
        model.holding_id = Set(holding_id);
        model.updated = Set(now);
        // Inserted here or not (exactly one of two concurrent inits inserts): counted once as
        // started (`nlds_transactions_started_total`) once the update below succeeded.
        let fresh = matches!(
            transaction_record::Entity::insert(model.clone())
                .on_conflict_do_nothing_on([C::TransactionId])
                .exec_without_returning(&self.db)
                .await?,
            sea_orm::TryInsertResult::Inserted(n) if n > 0
        );
        let excluded = |c: C| Expr::col((Alias::new("excluded"), c));
        let same_owner = Expr::col((transaction_record::Entity, C::User))
            .eq(excluded(C::User))
            .and(Expr::col((transaction_record::Entity, C::Group)).eq(excluded(C::Group)))
            .and(Expr::col((transaction_record::Entity, C::ApiAction)).eq(excluded(C::ApiAction)));
        // A request's wish to be notified is kept once any of its messages carried it.
        let mut columns = vec![C::JobLabel, C::Label, C::HoldingId, C::Updated];
        if env.notify {
            columns.push(C::Notify);
        }
        let n = transaction_record::Entity::insert(model)
            .on_conflict(
                OnConflict::column(C::TransactionId)
                    .update_columns(columns)
                    .action_and_where(same_owner)
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        if n == 0 {
            tracing::warn!(transaction_id = %env.transaction_id, user = %env.user,
                group = %env.group, api_action = %env.action,
                "refused: the transaction id is another user's, group's or action's");
            return Err(id_in_use(env));
        }
        if fresh {
            nlds_metrics::record::transaction_started(env.action.as_str());
        }
        Ok(())
    }

    /// `monitor.init` with [`Payload::CheckTransactionId`]: may `env.user` use
    /// `env.transaction_id` (free, or theirs for the same group and action)? Records nothing.
    async fn check_id(&self, env: &Envelope) -> Result<()> {
        let found = transaction_record::Entity::find()
            .filter(transaction_record::Column::TransactionId.eq(env.transaction_id.to_string()))
            .one(&self.db)
            .await?;
        match found {
            Some(r) if !same_owner(&r, env) => Err(id_in_use(env)),
            _ => Ok(()),
        }
    }

    /// `monitor-put.start`: upserts the sub-record `env.sub_id` and adds its failed files and
    /// the warnings, all in one database transaction.
    async fn update(
        &self,
        env: &Envelope,
        state: State,
        Counts {
            files,
            bytes,
            versions,
        }: Counts,
        failed: &[FailedFile],
        warnings: &[String],
    ) -> Result<()> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let mut record = ensure_record(&txn, env).await?;
        if record.user != env.user {
            // Never add to another user's transaction (the API refuses such ids; this is the
            // last line).
            tracing::warn!(transaction_id = %env.transaction_id, user = %env.user,
                "refused an update of another user's transaction");
            return Err(id_in_use(env));
        }
        let sid = env.sub_id.to_string();
        let find = || {
            sub_record::Entity::find()
                .filter(sub_record::Column::TransactionRecordId.eq(record.id))
                .filter(sub_record::Column::SubId.eq(sid.as_str()))
        };
        // Whether this update made a sub-record final (it may have ended the transaction).
        let mut became_final = false;
        let sub = match find().one(&txn).await? {
            Some(s) => Some(s),
            None => {
                let inserted = sub_record::Entity::insert(sub_record::ActiveModel {
                    transaction_record_id: Set(record.id),
                    sub_id: Set(sid.clone()),
                    state: Set(state),
                    files: Set(to_i64(files)),
                    bytes: Set(to_i64(bytes)),
                    versions: Set(to_i64(versions)),
                    last_updated: Set(now),
                    ..Default::default()
                })
                .on_conflict_do_nothing_on([
                    sub_record::Column::TransactionRecordId,
                    sub_record::Column::SubId,
                ])
                .exec_without_returning(&txn)
                .await?;
                match inserted {
                    sea_orm::TryInsertResult::Inserted(n) if n > 0 => {
                        became_final = state.is_final();
                        None
                    }
                    _ => find().one(&txn).await?,
                }
            }
        };
        // Whether this update changes what the transaction's status shows: a late update that
        // changes nothing must not move its `updated` time, the id of its live-status events.
        let mut changed = false;
        let sub = match sub {
            // Just created with this update's values.
            None => {
                changed = true;
                find()
                    .one(&txn)
                    .await?
                    .ok_or_else(|| internal(format!("sub-record {sid} cannot be read back")))?
            }
            Some(s) => {
                let current = s.state;
                if let Some(state) = states::record(current, state) {
                    changed = true;
                    became_final = state.is_final() && !current.is_final();
                    let mut change = sub_record::ActiveModel {
                        id: Set(s.id),
                        state: Set(state),
                        last_updated: Set(now),
                        // A retry is over once the batch moved on.
                        retrying: Set(None),
                        ..Default::default()
                    };
                    if state.is_final() {
                        // Its state says what is done now (monitor/progress.rs).
                        change.bytes_moving = Set(0);
                    }
                    // Updates that carry no counts (a state change only) keep the counts; a
                    // batch that skipped files as unchanged reports its counts, zero included.
                    let skipped = failed.iter().any(|f| f.code == ErrorCode::Unchanged);
                    if files > 0 || bytes > 0 || skipped {
                        change.files = Set(to_i64(files));
                        change.bytes = Set(to_i64(bytes));
                        change.versions = Set(to_i64(versions));
                    }
                    sub_record::Entity::update(change).exec(&txn).await?;
                } else {
                    tracing::debug!(
                        transaction_id = %env.transaction_id,
                        sub_id = %sid,
                        "sub-record is {current}; ignoring the late update to {state}"
                    );
                }
                s
            }
        };
        let failed_rows = failed.iter().map(|f| failed_file::ActiveModel {
            sub_record_id: Set(sub.id),
            path: Set(f.path.clone()),
            code: Set(f.code),
            reason: Set(f.reason.clone()),
            ..Default::default()
        });
        for chunk in chunks(failed_rows) {
            changed |= inserted(
                failed_file::Entity::insert_many(chunk)
                    .on_conflict_do_nothing_on([
                        failed_file::Column::SubRecordId,
                        failed_file::Column::Path,
                    ])
                    .exec_without_returning(&txn)
                    .await?,
            ) > 0;
        }
        // Files refused as not the user's or not permitted: audited with the update.
        admin::audit_refused_files(&txn, env, record.holding_id, failed).await?;
        changed |= add_warnings(&txn, record.id, warnings).await? > 0;
        if env.notify && !record.notify {
            transaction_record::Entity::update_many()
                .col_expr(
                    transaction_record::Column::Notify,
                    sea_orm::sea_query::Expr::value(true),
                )
                .filter(transaction_record::Column::Id.eq(record.id))
                .exec(&txn)
                .await?;
            record.notify = true;
            changed = true;
        }
        if state.is_final() {
            // This update may have ended the transaction: decide its notifications in the
            // same database transaction (docs/NOTIFY.md). Only owners with channels pay for
            // deriving the state here.
            if let Some(pref) = crate::notify::decide::channels_of(&txn, &record).await? {
                let status = status(&txn, vec![record.clone()]).await?;
                if let Some(s) = status.first()
                    && crate::notify::decide::has_ended(s.state)
                {
                    crate::notify::decide::transaction_ended(&txn, &record, s, &pref).await?;
                }
            }
        }
        let ended = if became_final {
            ended_state(&txn, &record).await?
        } else {
            None
        };
        if changed {
            transaction_record::Entity::update_many()
                .col_expr(
                    transaction_record::Column::Updated,
                    sea_orm::sea_query::Expr::value(now),
                )
                .filter(transaction_record::Column::Id.eq(record.id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        if let Some(state) = ended {
            nlds_metrics::record::transaction_ended(record.api_action.as_str(), state.name());
        }
        Ok(())
    }

    /// `monitor.stat`: a page of the transactions `filter` selects that `env.user` may see.
    async fn stat(&self, env: &Envelope, filter: &StatusFilter) -> Result<TransactionPage> {
        use transaction_record::Column as C;
        let mut visible = Condition::any().add(C::User.eq(&env.user));
        if filter.groupall {
            visible = visible.add(C::Group.eq(&env.group));
        }
        self.stat_where(Condition::all().add(visible), filter).await
    }

    /// A page of the transactions in `scope` (a condition on `transaction_record`) that `filter`
    /// selects: the query behind `monitor.stat` and the admin's transaction list.
    pub(crate) async fn stat_where(
        &self,
        scope: Condition,
        filter: &StatusFilter,
    ) -> Result<TransactionPage> {
        use transaction_record::Column as C;
        let mut cond = scope;
        if let Some(id) = filter.id {
            cond = cond.add(C::Id.eq(id));
        }
        if let Some(t) = filter.transaction_id {
            cond = cond.add(C::TransactionId.eq(t.to_string()));
        }
        let job_re = match &filter.job_label {
            Some(j) if filter.job_label_regex => Some(crate::catalogue::compile(j).await?),
            Some(j) => {
                cond = cond.add(C::JobLabel.eq(j.as_str()));
                None
            }
            None => None,
        };
        if !filter.api_actions.is_empty() {
            cond = cond.add(C::ApiAction.is_in(filter.api_actions.iter().map(|a| a.as_str())));
        }
        if !filter.exclude_api_actions.is_empty() {
            cond = cond
                .add(C::ApiAction.is_not_in(filter.exclude_api_actions.iter().map(|a| a.as_str())));
        }
        let limit = match filter.limit {
            0 => DEFAULT_LIMIT,
            l => l.min(MAX_LIMIT),
        };
        let offset = nlds_core::number::db_count("offset", filter.offset)?;
        let order = if filter.descending {
            Order::Desc
        } else {
            Order::Asc
        };
        let query = transaction_record::Entity::find()
            .filter(cond.clone())
            .order_by(C::Created, order.clone())
            .order_by(C::Id, order);

        let (total, records) = if filter.states.is_empty() && job_re.is_none() {
            let total = query.clone().count(&self.db).await?;
            let records = query.limit(limit).offset(offset).all(&self.db).await?;
            (total, records)
        } else {
            // Filter on what only Rust can compute (a regex, the derived state) over light
            // rows of every candidate, then load the page in full.
            let candidates: Vec<(i64, String)> = query
                .select_only()
                .column(C::Id)
                .column(C::JobLabel)
                .into_tuple()
                .all(&self.db)
                .await?;
            let mut ids: Vec<i64> = candidates
                .into_iter()
                .filter(|(_, j)| job_re.as_ref().is_none_or(|re| re.is_match(j)))
                .map(|(id, _)| id)
                .collect();
            if !filter.states.is_empty() {
                let in_scope = Query::select()
                    .column((transaction_record::Entity, C::Id))
                    .from(transaction_record::Entity)
                    .cond_where(cond.clone())
                    .to_owned();
                let subs: Vec<(i64, i64, State)> = sub_record::Entity::find()
                    .select_only()
                    .column(sub_record::Column::TransactionRecordId)
                    .column(sub_record::Column::Id)
                    .column(sub_record::Column::State)
                    .filter(sub_record::Column::TransactionRecordId.in_subquery(in_scope.clone()))
                    .into_tuple()
                    .all(&self.db)
                    .await?;
                use sea_orm::sea_query::ExprTrait as _;
                let subs_in_scope = Query::select()
                    .column((sub_record::Entity, sub_record::Column::Id))
                    .from(sub_record::Entity)
                    .and_where(
                        sea_orm::sea_query::Expr::col((
                            sub_record::Entity,
                            sub_record::Column::TransactionRecordId,
                        ))
                        .in_subquery(in_scope.clone()),
                    )
                    .to_owned();
                let with_failures: HashSet<i64> = failed_file::Entity::find()
                    .select_only()
                    .column(failed_file::Column::SubRecordId)
                    .distinct()
                    .filter(failed_file::Column::SubRecordId.in_subquery(subs_in_scope))
                    .filter(failed_file::Column::Code.ne(ErrorCode::Unchanged))
                    .into_tuple::<i64>()
                    .all(&self.db)
                    .await?
                    .into_iter()
                    .collect();
                let mut tallies: HashMap<i64, Tally> = HashMap::new();
                for (id, sub, s) in subs {
                    tallies
                        .entry(id)
                        .or_default()
                        .add_state(s, with_failures.contains(&sub));
                }
                let warned: HashSet<i64> = warning::Entity::find()
                    .select_only()
                    .column(warning::Column::TransactionRecordId)
                    .distinct()
                    .filter(warning::Column::TransactionRecordId.in_subquery(in_scope))
                    .into_tuple::<i64>()
                    .all(&self.db)
                    .await?
                    .into_iter()
                    .collect();
                let none = Tally::default();
                ids.retain(|id| {
                    let tally = tallies.get(id).unwrap_or(&none);
                    filter
                        .states
                        .contains(&tally.derive(warned.contains(id)).state)
                });
            }
            let total = ids.len() as u64;
            let page: Vec<i64> = ids
                .into_iter()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .collect();
            let mut by_id: HashMap<i64, transaction_record::Model> =
                transaction_record::Entity::find()
                    .filter(C::Id.is_in(page.iter().copied()))
                    .all(&self.db)
                    .await?
                    .into_iter()
                    .map(|r| (r.id, r))
                    .collect();
            (
                total,
                page.iter().filter_map(|id| by_id.remove(id)).collect(),
            )
        };
        let transactions = status(&self.db, records).await?;
        Ok(TransactionPage {
            transactions,
            total,
            limit,
            offset,
        })
    }
}

/// The counts of a monitor update.
#[derive(Debug, Clone, Copy)]
struct Counts {
    files: u64,
    bytes: u64,
    /// Of `files`, new versions of paths the holding had.
    versions: u64,
}

/// How many rows an insert that skips conflicting ones added.
fn inserted(r: sea_orm::TryInsertResult<u64>) -> u64 {
    match r {
        sea_orm::TryInsertResult::Inserted(n) => n,
        _ => 0,
    }
}

/// Is `r` the record of `env`'s request (or of a retry of it): the same user, group and API
/// action?
fn same_owner(r: &transaction_record::Model, env: &Envelope) -> bool {
    r.user == env.user && r.group == env.group && r.api_action == env.action
}

/// The refusal of a transaction id that is already used by another user, group or action. It
/// names the id only: whose it is is none of the caller's business.
fn id_in_use(env: &Envelope) -> Error {
    db::conflict(format!(
        "transaction id {} is already in use: choose another transaction id (or leave it out to \
         have one made)",
        env.transaction_id
    ))
}

/// A transaction record from the envelope's identity (no label or holding yet).
/// The final state of `record`'s transaction if it has ended (every sub-record final, and the
/// derived state one that ends it), for `nlds_transactions_ended_total`. Asked only by an update
/// that made a sub-record final: one count of the sub-records still open, and the derivation
/// only when none is.
async fn ended_state(
    c: &impl ConnectionTrait,
    record: &transaction_record::Model,
) -> Result<Option<State>> {
    use sea_orm::PaginatorTrait as _;
    let open = sub_record::Entity::find()
        .filter(sub_record::Column::TransactionRecordId.eq(record.id))
        .filter(
            sub_record::Column::State.is_not_in(State::ALL.into_iter().filter(|s| s.is_final())),
        )
        .count(c)
        .await?;
    if open > 0 {
        return Ok(None);
    }
    let status = status(c, vec![record.clone()]).await?;
    Ok(status
        .first()
        .map(|s| s.state)
        .filter(|s| crate::notify::decide::has_ended(*s)))
}

fn new_record(env: &Envelope) -> transaction_record::ActiveModel {
    let now = Utc::now();
    transaction_record::ActiveModel {
        transaction_id: Set(env.transaction_id.to_string()),
        user: Set(env.user.clone()),
        group: Set(env.group.clone()),
        api_action: Set(env.action),
        job_label: Set(env.job_label.clone()),
        label: Set(None),
        holding_id: Set(None),
        created: Set(now),
        updated: Set(now),
        notify: Set(env.notify),
        ..Default::default()
    }
}

/// The transaction record of `env`, created if an update overtook the init.
async fn ensure_record(
    c: &impl ConnectionTrait,
    env: &Envelope,
) -> Result<transaction_record::Model> {
    let tid = env.transaction_id.to_string();
    let find = || {
        transaction_record::Entity::find()
            .filter(transaction_record::Column::TransactionId.eq(tid.as_str()))
    };
    if let Some(r) = find().one(c).await? {
        return Ok(r);
    }
    let inserted = transaction_record::Entity::insert(new_record(env))
        .on_conflict_do_nothing_on([transaction_record::Column::TransactionId])
        .exec_without_returning(c)
        .await?;
    if matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        // An update overtook the init. (Counted before the update's commit: should the update
        // roll back, its redelivery counts the transaction again.)
        nlds_metrics::record::transaction_started(env.action.as_str());
    }
    find()
        .one(c)
        .await?
        .ok_or_else(|| internal(format!("transaction record {tid} cannot be read back")))
}

/// The sub-id of a stored sub-record: its UUID, or nil for the one recovery adds to a transaction
/// it ended ([`crate::recovery::INTERRUPTED_SUB_ID`]). Anything else malformed is an error.
pub(crate) fn sub_id_of(stored: &str) -> Result<Uuid> {
    if stored == crate::recovery::INTERRUPTED_SUB_ID {
        return Ok(Uuid::nil());
    }
    Ok(db::stored_uuid("sub_record", "sub_id", stored)?)
}

fn chunks<T>(items: impl Iterator<Item = T>) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    for item in items {
        match out.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(item),
            _ => out.push(vec![item]),
        }
    }
    out
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests;
