//! The monitor role: the state of every transaction and its sub-records.
//!
//! `monitor-put.init` upserts the transaction record, `monitor-put.start` upserts a sub-record
//! (creating the transaction record if the update overtook the init), and the RPC `monitor.stat`
//! answers a page of transactions with their derived states. Updates are idempotent and never move
//! a sub-record from a final state back to a non-final one.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::Utc;
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::api::{
    ApiAction, DEFAULT_LIMIT, MAX_LIMIT, SubRecordStatus, TransactionPage, TransactionStatus,
};
use nlds_core::message::{RpcReply, StatusFilter};
use nlds_core::state::derive;
use nlds_core::{Action, Envelope, ErrorCode, FailedFile, Payload, RoutingKey, State, Worker};
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

type Result<T, E = Error> = std::result::Result<T, E>;

/// Ids per `IN (...)` list.
const CHUNK: usize = 500;

/// The monitor handler (roles `monitor` and `monitor-rpc`).
pub struct Monitor {
    db: DatabaseConnection,
}

#[async_trait]
impl Handler for Monitor {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let rpc = key.worker == Worker::Monitor;
        let result = db::retrying(|| self.dispatch(key, &env)).await;
        db::finish(key, &env, rpc, result)
    }
}

impl Monitor {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
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
                },
            ) => {
                self.update(env, *state, *files, *bytes, failed, warnings)
                    .await?;
                Ok(Outcome::none())
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
            (Worker::MonitorPut, Action::Init | Action::Start, _)
            | (Worker::Monitor, Action::Stat | Action::Init | Action::Admin, _) => {
                Err(bad_request(format!("{key} got the wrong kind of payload")))
            }
            _ => Err(bad_request(format!("the monitor does not handle {key}"))),
        }
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
        let excluded = |c: C| Expr::col((Alias::new("excluded"), c));
        let same_owner = Expr::col((transaction_record::Entity, C::User))
            .eq(excluded(C::User))
            .and(Expr::col((transaction_record::Entity, C::Group)).eq(excluded(C::Group)))
            .and(Expr::col((transaction_record::Entity, C::ApiAction)).eq(excluded(C::ApiAction)));
        let n = transaction_record::Entity::insert(model)
            .on_conflict(
                OnConflict::column(C::TransactionId)
                    .update_columns([C::JobLabel, C::Label, C::HoldingId, C::Updated])
                    .action_and_where(same_owner)
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        if n == 0 {
            tracing::warn!(transaction.id = %env.transaction_id, user = %env.user,
                group = %env.group, api_action = %env.action,
                "refused: the transaction id is another user's, group's or action's");
            return Err(id_in_use(env));
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
        files: u64,
        bytes: u64,
        failed: &[FailedFile],
        warnings: &[String],
    ) -> Result<()> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let record = ensure_record(&txn, env).await?;
        if record.user != env.user {
            // Never add to another user's transaction (the API refuses such ids; this is the
            // last line).
            tracing::warn!(transaction.id = %env.transaction_id, user = %env.user,
                "refused an update of another user's transaction");
            return Err(id_in_use(env));
        }
        let sid = env.sub_id.to_string();
        let find = || {
            sub_record::Entity::find()
                .filter(sub_record::Column::TransactionRecordId.eq(record.id))
                .filter(sub_record::Column::SubId.eq(sid.as_str()))
        };
        let sub = match find().one(&txn).await? {
            Some(s) => Some(s),
            None => {
                let inserted = sub_record::Entity::insert(sub_record::ActiveModel {
                    transaction_record_id: Set(record.id),
                    sub_id: Set(sid.clone()),
                    state: Set(state.value()),
                    files: Set(to_i64(files)),
                    bytes: Set(to_i64(bytes)),
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
                    sea_orm::TryInsertResult::Inserted(n) if n > 0 => None,
                    _ => find().one(&txn).await?,
                }
            }
        };
        let sub = match sub {
            // Just created with this update's values.
            None => find()
                .one(&txn)
                .await?
                .ok_or_else(|| internal(format!("sub-record {sid} cannot be read back")))?,
            Some(s) => {
                let current = State::from_value(s.state);
                let regress = current.is_some_and(State::is_final) && !state.is_final();
                if regress {
                    tracing::debug!(
                        transaction_id = %env.transaction_id,
                        sub_id = %sid,
                        "sub-record is {}; ignoring the late update to {state}",
                        current.map(State::name).unwrap_or_default()
                    );
                } else {
                    let mut change = sub_record::ActiveModel {
                        id: Set(s.id),
                        state: Set(state.value()),
                        last_updated: Set(now),
                        ..Default::default()
                    };
                    // Updates that carry no counts (a state change only) keep the counts.
                    if files > 0 || bytes > 0 {
                        change.files = Set(to_i64(files));
                        change.bytes = Set(to_i64(bytes));
                    }
                    sub_record::Entity::update(change).exec(&txn).await?;
                }
                s
            }
        };
        let failed_rows = failed.iter().map(|f| failed_file::ActiveModel {
            sub_record_id: Set(sub.id),
            path: Set(f.path.clone()),
            code: Set(f.code.as_str().to_owned()),
            reason: Set(f.reason.clone()),
            ..Default::default()
        });
        for chunk in chunks(failed_rows) {
            failed_file::Entity::insert_many(chunk)
                .on_conflict_do_nothing_on([
                    failed_file::Column::SubRecordId,
                    failed_file::Column::Path,
                ])
                .exec_without_returning(&txn)
                .await?;
        }
        // Files refused as not the user's or not permitted: audited with the update.
        admin::audit_refused_files(&txn, env, record.holding_id, failed).await?;
        let warning_rows = warnings.iter().map(|w| warning::ActiveModel {
            transaction_record_id: Set(record.id),
            text: Set(w.clone()),
            ..Default::default()
        });
        for chunk in chunks(warning_rows) {
            warning::Entity::insert_many(chunk)
                .on_conflict_do_nothing_on([
                    warning::Column::TransactionRecordId,
                    warning::Column::Text,
                ])
                .exec_without_returning(&txn)
                .await?;
        }
        transaction_record::Entity::update_many()
            .col_expr(
                transaction_record::Column::Updated,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(transaction_record::Column::Id.eq(record.id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
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
                let subs: Vec<(i64, i64, i32)> = sub_record::Entity::find()
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
                    .into_tuple::<i64>()
                    .all(&self.db)
                    .await?
                    .into_iter()
                    .collect();
                let mut states: HashMap<i64, Vec<State>> = HashMap::new();
                for (id, sub, s) in subs {
                    let st = state_of(s);
                    let entry = states.entry(id).or_default();
                    entry.push(st);
                    if with_failures.contains(&sub) && !st.is_failed() {
                        entry.push(State::Failed);
                    }
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
                ids.retain(|id| {
                    let st = states.get(id).map(Vec::as_slice).unwrap_or_default();
                    filter
                        .states
                        .contains(&derive(st, warned.contains(id)).state)
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

/// The full status of transaction records, in their order.
async fn status(
    c: &impl ConnectionTrait,
    records: Vec<transaction_record::Model>,
) -> Result<Vec<TransactionStatus>> {
    let ids: Vec<i64> = records.iter().map(|r| r.id).collect();
    let mut subs: HashMap<i64, Vec<sub_record::Model>> = HashMap::new();
    let mut warnings: HashMap<i64, Vec<String>> = HashMap::new();
    let mut failed: HashMap<i64, Vec<FailedFile>> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        for s in sub_record::Entity::find()
            .filter(sub_record::Column::TransactionRecordId.is_in(chunk.iter().copied()))
            .order_by(sub_record::Column::Id, Order::Asc)
            .all(c)
            .await?
        {
            subs.entry(s.transaction_record_id).or_default().push(s);
        }
        for w in warning::Entity::find()
            .filter(warning::Column::TransactionRecordId.is_in(chunk.iter().copied()))
            .order_by(warning::Column::Id, Order::Asc)
            .all(c)
            .await?
        {
            warnings
                .entry(w.transaction_record_id)
                .or_default()
                .push(w.text);
        }
    }
    let sub_ids: Vec<i64> = subs.values().flatten().map(|s| s.id).collect();
    for chunk in sub_ids.chunks(CHUNK) {
        for f in failed_file::Entity::find()
            .filter(failed_file::Column::SubRecordId.is_in(chunk.iter().copied()))
            .order_by(failed_file::Column::Id, Order::Asc)
            .all(c)
            .await?
        {
            failed.entry(f.sub_record_id).or_default().push(FailedFile {
                path: f.path,
                code: parse_code(&f.code),
                reason: f.reason,
            });
        }
    }
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let warnings = warnings.remove(&r.id).unwrap_or_default();
        let mut sub_records = Vec::new();
        let (mut files_total, mut files_done, mut files_failed) = (0u64, 0u64, 0u64);
        let (mut bytes_total, mut bytes_done) = (0u64, 0u64);
        let mut states = Vec::new();
        for s in subs.remove(&r.id).unwrap_or_default() {
            let state = state_of(s.state);
            let failed_files = failed.remove(&s.id).unwrap_or_default();
            let (files, bytes) = (to_u64(s.files), to_u64(s.bytes));
            // SPLIT parents repeat their children's counts; a failed sub-record's files are
            // its failed files, counted below.
            if state != State::Split && !state.is_failed() {
                files_total += files;
                bytes_total += bytes;
            }
            if state == State::Complete {
                files_done += files;
                bytes_done += bytes;
            }
            files_failed += failed_files.len() as u64;
            files_total += failed_files.len() as u64;
            states.push(state);
            // A batch that finished with some files failed counts as one with errors.
            if !failed_files.is_empty() && !state.is_failed() {
                states.push(State::Failed);
            }
            sub_records.push(SubRecordStatus {
                id: s.id,
                sub_id: Uuid::parse_str(&s.sub_id).unwrap_or_default(),
                state,
                last_updated: s.last_updated,
                files,
                bytes,
                failed_files,
            });
        }
        let derived = derive(&states, !warnings.is_empty());
        out.push(TransactionStatus {
            id: r.id,
            transaction_id: Uuid::parse_str(&r.transaction_id).unwrap_or_default(),
            api_action: ApiAction::parse(&r.api_action).unwrap_or(ApiAction::Put),
            user: r.user,
            group: r.group,
            job_label: r.job_label,
            label: r.label,
            holding_id: r.holding_id,
            state: derived.state,
            percent: derived.percent,
            created: r.created,
            updated: r.updated,
            files_total,
            files_done,
            files_failed,
            bytes_total,
            bytes_done,
            warnings,
            sub_records,
        });
    }
    Ok(out)
}

/// Is `r` the record of `env`'s request (or of a retry of it): the same user, group and API
/// action?
fn same_owner(r: &transaction_record::Model, env: &Envelope) -> bool {
    r.user == env.user && r.group == env.group && r.api_action == env.action.as_str()
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
fn new_record(env: &Envelope) -> transaction_record::ActiveModel {
    let now = Utc::now();
    transaction_record::ActiveModel {
        transaction_id: Set(env.transaction_id.to_string()),
        user: Set(env.user.clone()),
        group: Set(env.group.clone()),
        api_action: Set(env.action.as_str().to_owned()),
        job_label: Set(env.job_label.clone()),
        label: Set(None),
        holding_id: Set(None),
        created: Set(now),
        updated: Set(now),
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
    transaction_record::Entity::insert(new_record(env))
        .on_conflict_do_nothing_on([transaction_record::Column::TransactionId])
        .exec_without_returning(c)
        .await?;
    find()
        .one(c)
        .await?
        .ok_or_else(|| internal(format!("transaction record {tid} cannot be read back")))
}

fn state_of(v: i32) -> State {
    State::from_value(v).unwrap_or(State::Initialising)
}

fn parse_code(s: &str) -> ErrorCode {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).unwrap_or(ErrorCode::Internal)
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
mod tests {
    use super::*;
    use crate::db::testing;
    use nlds_core::api::ApiAction;
    use nlds_core::message::sub_id;

    const ALICE: &str = "alice";
    const BOB: &str = "bob";
    const CAROL: &str = "carol";
    const CLIMATE: &str = "climate";
    const OCEAN: &str = "ocean";

    fn tid(n: u128) -> Uuid {
        Uuid::from_u128(0x1d2c_0000_0000_4000_8000_0000_0000_0000 + n)
    }

    struct Tx {
        env: Envelope,
    }

    impl Tx {
        fn new(n: u128, user: &str, group: &str, action: ApiAction, job: &str) -> Self {
            Self {
                env: Envelope::new(
                    tid(n),
                    user,
                    group,
                    action,
                    job,
                    Payload::MonitorInit {
                        label: None,
                        holding_id: None,
                    },
                ),
            }
        }
        fn init(&self, label: Option<&str>, holding_id: Option<i64>) -> (RoutingKey, Envelope) {
            (
                RoutingKey::new(Worker::MonitorPut, Action::Init),
                self.env.reply(Payload::MonitorInit {
                    label: label.map(str::to_owned),
                    holding_id,
                }),
            )
        }
        fn update(
            &self,
            sub: Uuid,
            state: State,
            files: u64,
            bytes: u64,
            failed: &[&str],
            warnings: &[&str],
        ) -> (RoutingKey, Envelope) {
            (
                RoutingKey::new(Worker::MonitorPut, Action::Start),
                self.env.with_sub(
                    sub,
                    Payload::MonitorUpdate {
                        state,
                        files,
                        bytes,
                        failed: failed
                            .iter()
                            .map(|p| {
                                FailedFile::new(*p, ErrorCode::PathMissing, format!("{p} is gone"))
                            })
                            .collect(),
                        warnings: warnings.iter().map(|w| w.to_string()).collect(),
                    },
                ),
            )
        }
        fn sub(&self, i: usize) -> Uuid {
            sub_id(self.env.transaction_id, "index", i)
        }
        fn failure(&self) -> Uuid {
            Uuid::new_v5(&self.env.transaction_id, b"failed/index")
        }
    }

    async fn send(m: &Monitor, (key, env): (RoutingKey, Envelope)) {
        let out = m.handle(key, env).await.unwrap();
        assert!(out.publish.is_empty() && out.reply.is_none());
    }

    async fn stat(m: &Monitor, user: &str, group: &str, filter: StatusFilter) -> TransactionPage {
        let env = Envelope::new(
            tid(999),
            user,
            group,
            ApiAction::Get,
            "stat",
            Payload::Stat { filter },
        );
        let out = m
            .handle(RoutingKey::new(Worker::Monitor, Action::Stat), env)
            .await
            .unwrap();
        match out.reply.expect("a reply").payload {
            Payload::Reply(RpcReply::Transactions(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    fn ids(p: &TransactionPage) -> Vec<Uuid> {
        p.transactions.iter().map(|t| t.transaction_id).collect()
    }

    async fn upserts(db: DatabaseConnection) {
        let m = Monitor::new(db.clone());
        let t = Tx::new(1, ALICE, CLIMATE, ApiAction::Put, "run");

        // The update overtakes the init: the record is created from the envelope.
        send(
            &m,
            t.update(t.env.transaction_id, State::Indexing, 0, 0, &[], &[]),
        )
        .await;
        let first = transaction_record::Entity::find()
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                first.user.as_str(),
                first.group.as_str(),
                first.api_action.as_str(),
                first.job_label.as_str()
            ),
            (ALICE, CLIMATE, "put", "run")
        );
        assert_eq!((first.label.as_deref(), first.holding_id), (None, None));
        send(&m, t.init(Some("data"), Some(7))).await;
        send(&m, t.init(Some("data"), Some(7))).await;
        let records = transaction_record::Entity::find().all(&db).await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(
            (records[0].id, records[0].created),
            (first.id, first.created)
        );
        assert_eq!(
            (records[0].label.as_deref(), records[0].holding_id),
            (Some("data"), Some(7))
        );

        // Counts are kept by state-only updates; final states are not regressed.
        send(&m, t.update(t.sub(0), State::Indexing, 10, 1000, &[], &[])).await;
        send(
            &m,
            t.update(t.sub(0), State::CatalogPutting, 0, 0, &[], &[]),
        )
        .await;
        send(&m, t.update(t.sub(0), State::Complete, 0, 0, &[], &[])).await;
        send(
            &m,
            t.update(t.sub(0), State::TransferPutting, 0, 0, &[], &[]),
        )
        .await;
        send(
            &m,
            t.update(t.env.transaction_id, State::Split, 10, 1000, &[], &[]),
        )
        .await;
        send(
            &m,
            t.update(t.env.transaction_id, State::Indexing, 0, 0, &[], &[]),
        )
        .await;
        let subs = sub_record::Entity::find()
            .order_by(sub_record::Column::Id, Order::Asc)
            .all(&db)
            .await
            .unwrap();
        let got: Vec<(String, i32, i64, i64)> = subs
            .iter()
            .map(|s| (s.sub_id.clone(), s.state, s.files, s.bytes))
            .collect();
        assert_eq!(
            got,
            [
                (
                    t.env.transaction_id.to_string(),
                    State::Split.value(),
                    10,
                    1000
                ),
                (t.sub(0).to_string(), State::Complete.value(), 10, 1000),
            ]
        );

        // Failed files and warnings are added once, however often the update comes.
        for _ in 0..2 {
            send(
                &m,
                t.update(
                    t.failure(),
                    State::Failed,
                    2,
                    0,
                    &["/x", "/y"],
                    &["slow disk"],
                ),
            )
            .await;
        }
        send(
            &m,
            t.update(
                t.failure(),
                State::Failed,
                2,
                0,
                &["/y", "/z"],
                &["slow disk", "retry"],
            ),
        )
        .await;
        assert_eq!(failed_file::Entity::find().count(&db).await.unwrap(), 3);
        assert_eq!(warning::Entity::find().count(&db).await.unwrap(), 2);
        assert_eq!(sub_record::Entity::find().count(&db).await.unwrap(), 3);

        let page = stat(&m, ALICE, CLIMATE, StatusFilter::default()).await;
        assert_eq!(page.total, 1);
        let s = &page.transactions[0];
        assert_eq!((s.state, s.percent), (State::CompleteWithErrors, 50));
        assert_eq!(s.warnings, ["slow disk", "retry"]);
        assert_eq!((s.files_total, s.files_done, s.files_failed), (13, 10, 3));
        assert_eq!((s.bytes_total, s.bytes_done), (1000, 1000));
        assert_eq!(
            (s.label.as_deref(), s.holding_id, s.api_action),
            (Some("data"), Some(7), ApiAction::Put)
        );
        let sr: Vec<(Uuid, State, usize)> = s
            .sub_records
            .iter()
            .map(|r| (r.sub_id, r.state, r.failed_files.len()))
            .collect();
        assert_eq!(
            sr,
            [
                (t.env.transaction_id, State::Split, 0),
                (t.sub(0), State::Complete, 0),
                (t.failure(), State::Failed, 3)
            ]
        );
        let ff = &s.sub_records[2].failed_files[0];
        assert_eq!(
            (ff.path.as_str(), ff.code, ff.reason.as_str()),
            ("/x", ErrorCode::PathMissing, "/x is gone")
        );
    }

    /// Transactions in every derived state, for alice, bob (same group) and carol.
    async fn stat_world(m: &Monitor) -> Vec<Tx> {
        let mk = |n, user, group, action, job| Tx::new(n, user, group, action, job);
        let txs = vec![
            mk(1, ALICE, CLIMATE, ApiAction::Put, "complete"),
            mk(2, ALICE, CLIMATE, ApiAction::Putlist, "errors"),
            mk(3, ALICE, CLIMATE, ApiAction::Get, "failed"),
            mk(4, ALICE, CLIMATE, ApiAction::Put, "running"),
            mk(5, ALICE, CLIMATE, ApiAction::Getlist, "queued"),
            mk(6, ALICE, CLIMATE, ApiAction::Put, "warned"),
            mk(7, BOB, CLIMATE, ApiAction::Put, "bobs"),
            mk(8, CAROL, OCEAN, ApiAction::Put, "carols"),
        ];
        for t in &txs {
            send(m, t.init(None, None)).await;
            let tid = t.env.transaction_id;
            match t.env.job_label.as_str() {
                "queued" => {}
                "errors" => {
                    send(m, t.update(tid, State::Split, 0, 0, &[], &[])).await;
                    send(m, t.update(t.sub(0), State::Complete, 4, 40, &[], &[])).await;
                    send(
                        m,
                        t.update(t.failure(), State::Failed, 1, 0, &["/gone"], &[]),
                    )
                    .await;
                }
                "failed" => {
                    send(
                        m,
                        t.update(t.failure(), State::Failed, 0, 0, &["/a", "/b"], &[]),
                    )
                    .await;
                }
                "running" => {
                    send(m, t.update(t.sub(0), State::Complete, 1, 10, &[], &[])).await;
                    send(
                        m,
                        t.update(t.sub(1), State::TransferPutting, 2, 20, &[], &[]),
                    )
                    .await;
                }
                "warned" => {
                    send(
                        m,
                        t.update(t.sub(0), State::Complete, 1, 1, &[], &["careful"]),
                    )
                    .await;
                }
                _ => send(m, t.update(t.sub(0), State::Complete, 3, 30, &[], &[])).await,
            }
        }
        txs
    }

    async fn stat_filters(db: DatabaseConnection) {
        let m = Monitor::new(db.clone());
        let txs = stat_world(&m).await;
        let all = stat(&m, ALICE, CLIMATE, StatusFilter::default()).await;
        assert_eq!(all.total, 6);
        assert_eq!(ids(&all), (1..=6).map(tid).collect::<Vec<_>>());
        let states: Vec<(String, State, u8)> = all
            .transactions
            .iter()
            .map(|t| (t.job_label.clone(), t.state, t.percent))
            .collect();
        assert_eq!(
            states,
            [
                ("complete".to_owned(), State::Complete, 100),
                ("errors".to_owned(), State::CompleteWithErrors, 50),
                ("failed".to_owned(), State::Failed, 0),
                ("running".to_owned(), State::TransferPutting, 50),
                ("queued".to_owned(), State::Searching, 0),
                ("warned".to_owned(), State::CompleteWithWarnings, 100),
            ]
        );
        let errors = &all.transactions[1];
        assert_eq!(
            (errors.files_total, errors.files_done, errors.files_failed),
            (5, 4, 1)
        );
        let running = &all.transactions[3];
        assert_eq!(
            (
                running.files_total,
                running.files_done,
                running.bytes_total,
                running.bytes_done
            ),
            (3, 1, 30, 10)
        );

        let f = StatusFilter::default;
        let cases: Vec<(StatusFilter, Vec<u128>)> = vec![
            (
                StatusFilter {
                    groupall: true,
                    ..f()
                },
                vec![1, 2, 3, 4, 5, 6, 7],
            ),
            (
                StatusFilter {
                    groupall: true,
                    descending: true,
                    limit: 2,
                    offset: 1,
                    ..f()
                },
                vec![6, 5],
            ),
            (
                StatusFilter {
                    id: Some(all.transactions[2].id),
                    ..f()
                },
                vec![3],
            ),
            (
                StatusFilter {
                    transaction_id: Some(tid(4)),
                    ..f()
                },
                vec![4],
            ),
            (
                StatusFilter {
                    transaction_id: Some(tid(8)),
                    groupall: true,
                    ..f()
                },
                vec![],
            ),
            (
                StatusFilter {
                    job_label: Some("errors".into()),
                    ..f()
                },
                vec![2],
            ),
            (
                StatusFilter {
                    job_label: Some("^(comp|warn)".into()),
                    job_label_regex: true,
                    ..f()
                },
                vec![1, 6],
            ),
            (
                StatusFilter {
                    api_actions: vec![ApiAction::Get, ApiAction::Getlist],
                    ..f()
                },
                vec![3, 5],
            ),
            (
                StatusFilter {
                    exclude_api_actions: vec![ApiAction::Put],
                    ..f()
                },
                vec![2, 3, 5],
            ),
            (
                StatusFilter {
                    states: vec![State::Complete],
                    groupall: true,
                    ..f()
                },
                vec![1, 7],
            ),
            (
                StatusFilter {
                    states: vec![State::Failed, State::CompleteWithErrors],
                    ..f()
                },
                vec![2, 3],
            ),
            (
                StatusFilter {
                    states: vec![State::Searching, State::TransferPutting],
                    ..f()
                },
                vec![4, 5],
            ),
            (
                StatusFilter {
                    states: vec![State::CompleteWithWarnings],
                    ..f()
                },
                vec![6],
            ),
            (
                StatusFilter {
                    states: vec![State::Complete, State::CompleteWithWarnings, State::Failed],
                    descending: true,
                    limit: 2,
                    offset: 1,
                    ..f()
                },
                vec![3, 1],
            ),
            (
                StatusFilter {
                    states: vec![State::Complete],
                    job_label: Some("o".into()),
                    job_label_regex: true,
                    groupall: true,
                    ..f()
                },
                vec![1, 7],
            ),
        ];
        for (filter, want) in cases {
            let page = stat(&m, ALICE, CLIMATE, filter.clone()).await;
            assert_eq!(
                ids(&page),
                want.iter().map(|n| tid(*n)).collect::<Vec<_>>(),
                "{filter:?}"
            );
            if filter.limit == 0 {
                assert_eq!(page.total, want.len() as u64, "{filter:?}");
            }
        }
        let paged = stat(
            &m,
            ALICE,
            CLIMATE,
            StatusFilter {
                states: vec![State::Complete, State::CompleteWithWarnings, State::Failed],
                limit: 2,
                offset: 1,
                ..f()
            },
        )
        .await;
        assert_eq!((paged.total, paged.limit, paged.offset), (3, 2, 1));
        // carol sees only her own.
        let carol = stat(
            &m,
            CAROL,
            OCEAN,
            StatusFilter {
                groupall: true,
                ..f()
            },
        )
        .await;
        assert_eq!(ids(&carol), [txs[7].env.transaction_id]);
        // A bad regex is a bad request, answered as a reply.
        let env = Envelope::new(
            tid(999),
            ALICE,
            CLIMATE,
            ApiAction::Get,
            "stat",
            Payload::Stat {
                filter: StatusFilter {
                    job_label: Some("(".into()),
                    job_label_regex: true,
                    ..f()
                },
            },
        );
        let out = m
            .handle(RoutingKey::new(Worker::Monitor, Action::Stat), env)
            .await
            .unwrap();
        match out.reply.unwrap().payload {
            Payload::Reply(RpcReply::Error(e)) => assert_eq!(e.code, ErrorCode::BadRequest),
            other => panic!("{other:?}"),
        }
    }

    /// A transaction id belongs to one user, group and API action: `monitor.init` never moves
    /// another's record to the caller (the upsert refuses, atomically), the check RPC refuses
    /// it without saying whose it is, and a retry by the owner is accepted.
    async fn ids_are_not_shared(db: DatabaseConnection) {
        let m = Monitor::new(db.clone());
        let rpc = |env: Envelope| {
            let m = &m;
            async move {
                let out = m
                    .handle(RoutingKey::new(Worker::Monitor, Action::Init), env)
                    .await
                    .unwrap();
                match out.reply.expect("a reply").payload {
                    Payload::Reply(r) => r,
                    other => panic!("{other:?}"),
                }
            }
        };
        let alice = Tx::new(50, ALICE, CLIMATE, ApiAction::Get, "mine");
        send(&m, alice.init(Some("data"), Some(7))).await;
        let check = |t: &Tx| t.env.reply(Payload::CheckTransactionId);
        let init = |t: &Tx| {
            t.env.reply(Payload::MonitorInit {
                label: Some("stolen".into()),
                holding_id: Some(8),
            })
        };
        // The owner's retry: accepted.
        assert_eq!(rpc(check(&alice)).await, RpcReply::Available);
        assert_eq!(rpc(init(&alice)).await, RpcReply::Recorded);
        // Another user, another group of the same user, another action: refused, by the check
        // and by the init itself.
        let mut others = vec![
            Tx::new(50, BOB, CLIMATE, ApiAction::Get, "mine"),
            Tx::new(50, ALICE, OCEAN, ApiAction::Get, "mine"),
            Tx::new(50, ALICE, CLIMATE, ApiAction::Del, "mine"),
        ];
        for t in &mut others {
            for reply in [rpc(check(t)).await, rpc(init(t)).await] {
                let RpcReply::Error(e) = reply else {
                    panic!("{} {} {}: {reply:?}", t.env.user, t.env.group, t.env.action)
                };
                assert_eq!(e.code, ErrorCode::Conflict);
                assert_eq!(
                    e.message,
                    format!(
                        "transaction id {} is already in use: choose another transaction id (or \
                         leave it out to have one made)",
                        tid(50)
                    )
                );
            }
        }
        // ... and a stray update of bob's does not attach to alice's record.
        let bob = &others[0];
        assert!(
            m.handle(
                RoutingKey::new(Worker::MonitorPut, Action::Start),
                bob.update(bob.sub(0), State::Complete, 1, 1, &[], &[]).1
            )
            .await
            .is_err()
        );
        let r = transaction_record::Entity::find().all(&db).await.unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(
            (
                r[0].user.as_str(),
                r[0].group.as_str(),
                r[0].api_action.as_str()
            ),
            (ALICE, CLIMATE, "get")
        );
        assert_eq!(
            (r[0].label.as_deref(), r[0].holding_id),
            (Some("stolen"), Some(8))
        );
        assert_eq!(sub_record::Entity::find().all(&db).await.unwrap().len(), 0);
        assert_eq!(
            ids(&stat(
                &m,
                BOB,
                CLIMATE,
                StatusFilter {
                    groupall: false,
                    ..Default::default()
                }
            )
            .await)
            .len(),
            0
        );
        // A fresh id is free for anyone.
        let fresh = Tx::new(51, BOB, CLIMATE, ApiAction::Get, "his");
        assert_eq!(rpc(check(&fresh)).await, RpcReply::Available);
        assert_eq!(
            transaction_record::Entity::find()
                .all(&db)
                .await
                .unwrap()
                .len(),
            1,
            "the check records nothing"
        );
    }

    #[tokio::test]
    async fn ids_are_not_shared_sqlite() {
        ids_are_not_shared(testing::memory().await).await;
    }

    #[tokio::test]
    async fn upserts_sqlite() {
        upserts(testing::memory().await).await;
    }

    #[tokio::test]
    async fn stat_filters_sqlite() {
        stat_filters(testing::memory().await).await;
    }

    #[tokio::test]
    async fn monitor_postgres() {
        let Some(a) = testing::postgres("monitor_a").await else {
            return;
        };
        let Some(b) = testing::postgres("monitor_b").await else {
            return;
        };
        upserts(a.db.clone()).await;
        stat_filters(b.db.clone()).await;
        a.drop_now().await;
        b.drop_now().await;
        let Some(c) = testing::postgres("monitor_c").await else {
            return;
        };
        ids_are_not_shared(c.db.clone()).await;
        c.drop_now().await;
    }

    /// The state filter over 10,000 transactions: a handful of queries, not one per transaction.
    #[tokio::test]
    async fn state_filter_scales_to_ten_thousand_transactions() {
        let db = testing::memory().await;
        let now = Utc::now();
        let n = 10_000i64;
        let records = (0..n).map(|i| transaction_record::ActiveModel {
            transaction_id: Set(tid(i as u128).to_string()),
            user: Set(ALICE.into()),
            group: Set(CLIMATE.into()),
            api_action: Set("put".into()),
            job_label: Set(format!("job{i}")),
            created: Set(now),
            updated: Set(now),
            ..Default::default()
        });
        for chunk in chunks(records) {
            transaction_record::Entity::insert_many(chunk)
                .exec(&db)
                .await
                .unwrap();
        }
        let ids: Vec<i64> = transaction_record::Entity::find()
            .select_only()
            .column(transaction_record::Column::Id)
            .order_by(transaction_record::Column::Id, Order::Asc)
            .into_tuple()
            .all(&db)
            .await
            .unwrap();
        // Every third transaction is still transferring, the rest complete.
        let subs = ids.iter().enumerate().flat_map(|(i, id)| {
            let second = if i % 3 == 0 {
                State::TransferPutting
            } else {
                State::Complete
            };
            [State::Complete, second]
                .into_iter()
                .enumerate()
                .map(move |(j, st)| sub_record::ActiveModel {
                    transaction_record_id: Set(*id),
                    sub_id: Set(format!("s{j}")),
                    state: Set(st.value()),
                    files: Set(1),
                    bytes: Set(1),
                    last_updated: Set(now),
                    ..Default::default()
                })
        });
        for chunk in chunks(subs) {
            sub_record::Entity::insert_many(chunk)
                .exec(&db)
                .await
                .unwrap();
        }
        let m = Monitor::new(db);
        let started = std::time::Instant::now();
        let page = stat(
            &m,
            ALICE,
            CLIMATE,
            StatusFilter {
                states: vec![State::TransferPutting],
                limit: 10,
                offset: 5,
                descending: true,
                ..Default::default()
            },
        )
        .await;
        let took = started.elapsed();
        assert_eq!(page.total, 3334);
        assert_eq!(page.transactions.len(), 10);
        assert!(
            page.transactions
                .iter()
                .all(|t| t.state == State::TransferPutting && t.percent == 50)
        );
        assert_eq!(page.transactions[0].job_label, format!("job{}", 9999 - 15));
        assert!(
            took < std::time::Duration::from_secs(5),
            "stat took {took:?}"
        );
    }
}
