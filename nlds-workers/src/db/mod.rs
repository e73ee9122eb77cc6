//! The catalogue and monitor database: sea-orm entities of the tables created by `nlds-migration`,
//! connecting (which applies pending migrations) and the mapping of database errors to handler
//! errors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nlds_bus::{HandlerError, Outcome};
use nlds_core::error::ApiError;
use nlds_core::message::RpcReply;
use nlds_core::{Envelope, ErrorCode, Payload, RoutingKey};
use nlds_migration::{Migrator, MigratorTrait};
use sea_orm::sqlx;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr};
use uuid::Uuid;

pub mod aggregation;
pub mod aggregation_member;
pub mod audit_record;
pub mod checksum;
pub mod failed_file;
pub mod file;
pub mod holding;
pub mod holding_stat;
pub mod location;
pub mod log_record;
pub mod notification;
pub mod notify_alert;
pub mod notify_pref;
pub mod outbox;
pub mod pin;
pub mod policy_lease;
pub mod policy_pass;
pub mod positional;
pub mod quota;
pub mod quota_reservation;
pub mod recall;
pub mod recall_request;
pub mod request_paths;
pub mod role_drain;
pub mod stage_file;
pub mod stage_request;
pub mod storage_audit;
pub mod sub_record;
pub mod submission;
pub mod tag;
pub mod transaction;
pub mod transaction_record;
pub mod untraced;
pub mod usage;
pub mod warning;

/// Connections of a file-backed SQLite pool: one. Every statement and transaction of the process
/// (catalogue, monitor, logger, outbox relay, policy) goes through this one connection, one after
/// the other, so two of them never contend for SQLite's write lock. With several connections a
/// deferred transaction that had read before writing got `SQLITE_BUSY` (or `SQLITE_BUSY_SNAPSHOT`,
/// 517) at once, whatever the busy timeout, when another connection had written meanwhile; the bus
/// took that for an outage and redelivered 2 s and then 10 s later (see BENCHMARKS.md). Each
/// statement is short (a batch of a put is one transaction of a few milliseconds), so queueing
/// for the connection costs less than the parallel reads that WAL would allow.
const SQLITE_POOL: u32 = 1;
/// Connections of a PostgreSQL pool.
const POSTGRES_POOL: u32 = 8;

/// Connects to `url` (`postgres://...`, `sqlite://path?mode=rwc` or `sqlite::memory:`) and applies
/// pending migrations.
///
/// SQLite gets one connection (see [`SQLITE_POOL`]), WAL, foreign keys and a busy timeout (for
/// other processes that open the same file, such as `sqlite3` or a backup); an in-memory database
/// keeps its one connection for its whole life (each connection would otherwise see its own empty
/// database).
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30));
    if url.starts_with("sqlite:") {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        opts.max_connections(SQLITE_POOL)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
            });
        if memory {
            opts.idle_timeout(None).max_lifetime(None);
        }
    } else {
        opts.max_connections(POSTGRES_POOL);
    }
    let db = Database::connect(opts).await?;
    // Several roles may start at once against one database: a losing migration run fails on the
    // winner's tables, and the next attempt finds them applied.
    let mut attempt = 0;
    loop {
        match Migrator::up(&db, None).await {
            Ok(()) => return Ok(db),
            Err(e) if attempt < 3 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "database migration failed, retrying");
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Is this a fault that may go away by itself (connection lost, pool exhausted, lock contention,
/// serialization failure)?
pub fn is_transient(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match &**e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::BeginFailed => true,
                sqlx::Error::Database(d) => {
                    let code = d.code().unwrap_or_default();
                    if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                        // SQLITE_BUSY, SQLITE_LOCKED and their extended codes.
                        code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
                    } else {
                        // PostgreSQL: connection exceptions, serialization failure, deadlock,
                        // too many connections, shutdown, cannot connect now.
                        code.starts_with("08")
                            || matches!(
                                &*code,
                                "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03"
                            )
                    }
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Is this lock contention: SQLite busy or locked (codes 5 and 6 and their extended codes, such
/// as 517 `SQLITE_BUSY_SNAPSHOT`), or a PostgreSQL serialization failure or deadlock?
pub fn is_contention(err: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    let sqlx::Error::Database(d) = &**e else {
        return false;
    };
    let code = d.code().unwrap_or_default();
    if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
    } else {
        matches!(&*code, "40001" | "40P01")
    }
}

/// Operations of this process that failed on lock contention ([`is_contention`]), counted once
/// each time one is retried in place or handed to the bus. Zero when the single SQLite
/// connection does its job; the embedded server and `nlds-workers` log it when they stop, and
/// `bench/run.sh` reports it.
static CONTENTION: AtomicU64 = AtomicU64::new(0);

/// How many operations of this process failed on lock contention so far.
pub fn contention_count() -> u64 {
    CONTENTION.load(Ordering::Relaxed)
}

fn note_contention(err: &DbErr) {
    if is_contention(err) {
        CONTENTION.fetch_add(1, Ordering::Relaxed);
        tracing::info!(error = %err, "database lock contention");
    }
}

/// Does this error say a UNIQUE constraint was violated?
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// The handler error for a database error: transient (`unavailable`) for connection problems and
/// contention, permanent (`internal`) otherwise.
pub fn handler_error(err: DbErr) -> HandlerError {
    note_contention(&err);
    if is_transient(&err) {
        HandlerError::transient(
            ErrorCode::Unavailable,
            format!("database unavailable: {err}"),
        )
    } else {
        HandlerError::permanent(ErrorCode::Internal, format!("database error: {err}"))
    }
}

/// Attempts of an operation that failed on a transient database error before the error is
/// handed to the bus (which retries with back-off).
const ATTEMPTS: u32 = 3;

/// Why a catalogue or monitor operation failed: a refusal with its code, or a database error.
#[derive(Debug)]
pub(crate) enum OpError {
    Api(ApiError),
    Db(DbErr),
}

impl From<ApiError> for OpError {
    fn from(e: ApiError) -> Self {
        OpError::Api(e)
    }
}

impl From<DbErr> for OpError {
    fn from(e: DbErr) -> Self {
        OpError::Db(e)
    }
}

impl OpError {
    fn is_transient(&self) -> bool {
        matches!(self, OpError::Db(e) if is_transient(e))
    }
    fn into_handler(self) -> HandlerError {
        match self {
            OpError::Api(e) => HandlerError::permanent(e.code, e.message),
            OpError::Db(e) => handler_error(e),
        }
    }
}

/// A UUID stored as text in `table.column`; a malformed one is an error naming both and the value,
/// never a nil UUID.
pub fn stored_uuid(table: &str, column: &str, value: &str) -> Result<Uuid, DbErr> {
    Uuid::parse_str(value)
        .map_err(|e| DbErr::Type(format!("malformed UUID {value:?} in {table}.{column}: {e}")))
}

/// [`stored_uuid`] of a nullable column.
pub fn stored_uuid_opt(
    table: &str,
    column: &str,
    value: Option<&str>,
) -> Result<Option<Uuid>, DbErr> {
    value.map(|v| stored_uuid(table, column, v)).transpose()
}

pub(crate) fn conflict(message: impl Into<String>) -> OpError {
    OpError::Api(ApiError::new(ErrorCode::Conflict, message))
}

pub(crate) fn bad_request(message: impl Into<String>) -> OpError {
    OpError::Api(ApiError::bad_request(message))
}

pub(crate) fn internal(message: impl Into<String>) -> OpError {
    OpError::Api(ApiError::internal(message))
}

/// Runs an idempotent operation, again (a few times, briefly) while it fails on a transient
/// database error such as SQLite lock contention.
pub(crate) async fn retrying<T, F, Fut>(mut op: F) -> Result<T, OpError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OpError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                if let OpError::Db(d) = &e {
                    note_contention(d);
                }
                tracing::debug!(error = ?e, attempt, "transient database error, trying again");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            other => return other,
        }
    }
}

/// The handler's answer: RPC errors become an [`RpcReply::Error`] reply (so the caller gets the
/// message); work errors become handler errors.
pub(crate) fn finish(
    key: RoutingKey,
    env: &Envelope,
    rpc: bool,
    result: Result<Outcome, OpError>,
) -> Result<Outcome, HandlerError> {
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            let e = e.into_handler();
            if rpc {
                tracing::info!(%key, transaction_id = %env.transaction_id, code = %e.code, "{}", e.message);
                let api = ApiError::new(e.code, e.message);
                Ok(Outcome::reply(
                    env.reply(Payload::Reply(RpcReply::Error(api))),
                ))
            } else {
                tracing::warn!(%key, transaction_id = %env.transaction_id, code = %e.code, "{}", e.message);
                Err(e)
            }
        }
    }
}

/// Test databases: SQLite in memory, and PostgreSQL when `NLDS_TEST_DATABASE_URL` is set.
#[cfg(test)]
pub(crate) mod testing {
    use chrono::Utc;
    use nlds_core::PathKind;
    use nlds_core::api::Tier;
    use sea_orm::{ActiveValue::Set, ConnectionTrait, Database, DatabaseConnection, EntityTrait};
    use uuid::Uuid;

    use super::{file, holding, location, transaction};

    /// A holding of `sizes.len()` files, each with a warm copy; returns its id and file ids.
    pub async fn holding_with(
        db: &DatabaseConnection,
        label: &str,
        sizes: &[i64],
    ) -> (i64, Vec<i64>) {
        let now = Utc::now();
        let h = holding::Entity::insert(holding::ActiveModel {
            label: Set(label.into()),
            user: Set("alice".into()),
            group: Set("climate".into()),
            created: Set(now),
            ..Default::default()
        })
        .exec(db)
        .await
        .unwrap()
        .last_insert_id;
        let t = transaction::Entity::insert(transaction::ActiveModel {
            transaction_id: Set(Uuid::new_v4().to_string()),
            holding_id: Set(h),
            ingest_time: Set(now),
            ..Default::default()
        })
        .exec(db)
        .await
        .unwrap()
        .last_insert_id;
        let mut ids = Vec::new();
        for (i, s) in sizes.iter().enumerate() {
            let f = file::Entity::insert(file::ActiveModel {
                holding_id: Set(h),
                transaction_id: Set(t),
                path: Set(format!("/{label}/f{i}")),
                kind: Set(PathKind::File),
                size: Set(*s),
                uid: Set(1),
                gid: Set(1),
                mode: Set(0o644),
                mtime_ns: Set(0),
                ..Default::default()
            })
            .exec(db)
            .await
            .unwrap()
            .last_insert_id;
            location::Entity::insert(location::ActiveModel {
                file_id: Set(f),
                tier: Set(Tier::Warm),
                bucket: Set("nlds".into()),
                key: Set(format!("tx/{label}/{i}")),
                created: Set(now),
                ..Default::default()
            })
            .exec(db)
            .await
            .unwrap();
            ids.push(f);
        }
        (h, ids)
    }

    pub async fn memory() -> DatabaseConnection {
        super::connect("sqlite::memory:")
            .await
            .expect("in-memory SQLite")
    }

    /// A freshly created PostgreSQL database; dropped with [`PgDatabase::drop_now`].
    pub struct PgDatabase {
        pub db: DatabaseConnection,
        admin: DatabaseConnection,
        name: String,
    }

    impl PgDatabase {
        pub async fn drop_now(self) {
            let PgDatabase { db, admin, name } = self;
            let _ = db.close().await;
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop test database");
        }
    }

    /// A new uniquely named database on the server named by `NLDS_TEST_DATABASE_URL`
    /// (`postgres://user@host:port`). When it is not set the test fails, unless skipping was
    /// asked for (`nlds_hooks::skip`): then `None`.
    pub async fn postgres(purpose: &str) -> Option<PgDatabase> {
        let base = nlds_hooks::skip::service(
            &format!("the PostgreSQL {purpose} test"),
            "NLDS_TEST_DATABASE_URL",
            "run scripts/services.sh and scripts/test.sh",
        )?;
        let base = base.trim_end_matches('/');
        let admin = Database::connect(format!("{base}/postgres"))
            .await
            .expect("connect to the postgres database");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!("nlds_test_{purpose}_{}_{nanos}", std::process::id());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let db = super::connect(&format!("{base}/{name}"))
            .await
            .expect("connect to the test database");
        Some(PgDatabase { db, admin, name })
    }
}

#[cfg(test)]
mod malformed_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectionTrait, EntityTrait, Set, TransactionTrait};

    #[tokio::test]
    async fn connect_migrates_and_enforces_foreign_keys() {
        let db = testing::memory().await;
        // Migrating again is a no-op.
        Migrator::up(&db, None).await.unwrap();
        let orphan = tag::ActiveModel {
            holding_id: Set(42),
            key: Set("k".into()),
            value: Set("v".into()),
            ..Default::default()
        };
        let err = tag::Entity::insert(orphan).exec(&db).await.unwrap_err();
        assert!(!is_transient(&err), "{err}");
        assert!(
            matches!(
                err.sql_err(),
                Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
            ),
            "{err}"
        );
        assert_eq!(handler_error(err).code, ErrorCode::Internal);
        let mode = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "PRAGMA foreign_keys",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(mode.try_get_by_index::<i32>(0).unwrap(), 1);
    }

    #[tokio::test]
    async fn file_database_uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("nlds.db").display());
        let db = connect(&url).await.unwrap();
        let mode = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "PRAGMA journal_mode",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(mode.try_get_by_index::<String>(0).unwrap(), "wal");
        db.close().await.unwrap();
        // Reconnecting to a migrated database works.
        connect(&url).await.unwrap();
    }

    /// A write blocked by another connection's write lock is transient (retried), not a fault.
    #[tokio::test]
    async fn sqlite_lock_contention_is_transient() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("nlds.db").display());
        let db = connect(&url).await.unwrap();
        let mut opts = ConnectOptions::new(url);
        opts.max_connections(1)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| o.busy_timeout(Duration::ZERO));
        let impatient = Database::connect(opts).await.unwrap();
        let writer = db.begin().await.unwrap();
        writer
            .execute_unprepared(
                r#"INSERT INTO holding (label, "user", "group", created)
                   VALUES ('a', 'u', 'g', CURRENT_TIMESTAMP)"#,
            )
            .await
            .unwrap();
        let err = impatient
            .execute_unprepared(
                r#"INSERT INTO holding (label, "user", "group", created)
                   VALUES ('b', 'u', 'g', CURRENT_TIMESTAMP)"#,
            )
            .await
            .unwrap_err();
        assert!(is_transient(&err), "{err}");
        assert!(handler_error(err).retryable);
        writer.rollback().await.unwrap();
    }

    /// The race that made puts 10 s slower: with two connections, a transaction that read
    /// before another connection committed gets `SQLITE_BUSY_SNAPSHOT` (517) on its first write
    /// at once, whatever the busy timeout. (The control for the test below.)
    #[tokio::test]
    async fn sqlite_read_then_write_race_is_busy_with_two_connections() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("nlds.db").display());
        connect(&url).await.unwrap().close().await.unwrap();
        let mut opts = ConnectOptions::new(url);
        opts.max_connections(2)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10))
            });
        let two = Database::connect(opts).await.unwrap();
        let reader = two.begin().await.unwrap();
        reader
            .execute_unprepared("SELECT count(*) FROM holding")
            .await
            .unwrap();
        two.execute_unprepared(INSERT_HOLDING).await.unwrap();
        let err = reader.execute_unprepared(INSERT_HOLDING).await.unwrap_err();
        assert!(is_contention(&err), "{err}");
        assert!(
            err.to_string().contains("517") || err.to_string().contains("locked"),
            "{err}"
        );
        reader.rollback().await.unwrap();
    }

    const INSERT_HOLDING: &str = r#"INSERT INTO holding (label, "user", "group", created)
        VALUES ('h' || lower(hex(randomblob(8))), 'u', 'g', CURRENT_TIMESTAMP)"#;

    /// Through [`connect`], many writers at once (transactions that read, yield to the others,
    /// then write, the catalogue's and the monitor's pattern) all succeed: the single connection
    /// serialises them, so no operation sees `SQLITE_BUSY` and none is counted as contention.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_concurrent_writers_never_see_busy() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("nlds.db").display());
        let db = connect(&url).await.unwrap();
        let mut writers = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let db = db.clone();
            writers.spawn(async move {
                let mut errors = Vec::new();
                for i in 0..25 {
                    let result = async {
                        let txn = db.begin().await?;
                        txn.execute_unprepared("SELECT count(*) FROM holding")
                            .await?;
                        tokio::task::yield_now().await;
                        txn.execute_unprepared(INSERT_HOLDING).await?;
                        if i % 5 == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        txn.execute_unprepared("UPDATE holding SET label = 'x' WHERE id = 1")
                            .await?;
                        txn.commit().await
                    }
                    .await;
                    if let Err(e) = result {
                        errors.push(e);
                    }
                    // Autocommit writes beside the transactions, like the logger's.
                    if let Err(e) = db.execute_unprepared(INSERT_HOLDING).await {
                        errors.push(e);
                    }
                }
                errors
            });
        }
        let mut errors = Vec::new();
        while let Some(r) = writers.join_next().await {
            errors.extend(r.unwrap());
        }
        assert!(
            errors.is_empty(),
            "{} operations failed, the first: {:?}",
            errors.len(),
            errors.first()
        );
        let n = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT count(*) FROM holding",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n.try_get_by_index::<i64>(0).unwrap(), 16 * 25 * 2);
    }

    /// Contention errors are counted (the benchmark's counter), other errors are not.
    #[tokio::test]
    async fn contention_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("nlds.db").display());
        let db = connect(&url).await.unwrap();
        let mut opts = ConnectOptions::new(url);
        opts.max_connections(1)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| o.busy_timeout(Duration::ZERO));
        let impatient = Database::connect(opts).await.unwrap();
        let writer = db.begin().await.unwrap();
        writer.execute_unprepared(INSERT_HOLDING).await.unwrap();
        let busy = impatient
            .execute_unprepared(INSERT_HOLDING)
            .await
            .unwrap_err();
        writer.rollback().await.unwrap();
        assert!(is_contention(&busy), "{busy}");
        let before = contention_count();
        let _ = handler_error(busy);
        assert!(contention_count() > before);
        assert!(!is_contention(&DbErr::RecordNotFound("x".into())));
        let e = DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout);
        assert!(!is_contention(&e));
    }

    #[test]
    fn connection_errors_are_transient() {
        let e = DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout);
        assert!(is_transient(&e));
        assert!(handler_error(e).retryable);
        let e = DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(
            sqlx::Error::PoolTimedOut,
        )));
        assert!(is_transient(&e));
        assert_eq!(handler_error(e).code, ErrorCode::Unavailable);
        assert!(!is_transient(&DbErr::RecordNotFound("x".into())));
    }
}
