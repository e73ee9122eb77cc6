//! The nlds-rs database schema as sea-orm migrations, for PostgreSQL and SQLite.
//!
//! * [`m20261125_000001_create_catalogue`]: holdings, tags, transactions, files, locations and
//!   checksums (owned by the catalogue role);
//! * [`m20261125_000002_create_monitor`]: transaction records, sub-records, failed files and
//!   warnings (owned by the monitor role);
//! * [`m20261125_000003_create_cold`]: aggregations and their members (the cold tier, owned by
//!   the catalogue role);
//! * [`m20261125_000004_soft_delete`]: soft-delete columns of holdings and files, and their
//!   uniqueness among live rows only (owned by the catalogue role);
//! * [`m20261125_000005_audit`]: the audit log and the collected log records (written by the
//!   logger role, read by the monitor's admin queries);
//! * [`m20261125_000006_location_tenancy`]: the object-store tenancy of each copy (owned by the
//!   catalogue role);
//! * [`m20261205_000007_outbox`]: the transactional outbox of messages implied by committed
//!   changes (drained by the catalogue's relay) and the accepted submissions (owned by the
//!   catalogue role);
//! * [`m20261205_000008_policy`]: access tracking, pins, stage requests, quotas and usage (owned
//!   by the catalogue role), the policy runner's lease and passes (owned by the policy role);
//! * [`m20261205_000009_versions`]: versions of a path (`file.version`, unique per holding, path
//!   and version among live rows) and the new versions a put's sub-record stored;
//! * [`m20261205_000010_fidelity`]: the extended attributes of files and directories (owned by
//!   the catalogue role);
//! * [`m20261205_000011_scale_indexes`]: indexes for the catalogue's and the monitor's read
//!   queries at scale (owned by the catalogue and monitor roles);
//! * [`m20261205_000012_request_paths`]: the chunks of paths of long put and get requests until
//!   they start (owned by the catalogue role);
//! * [`m20261205_000013_bus_queue`]: the queues of the embedded mode's in-process bus (owned by
//!   the bus of the one embedded process);
//! * [`m20261205_000015_storage_audit`]: the storage audit's runs, and an index of warm
//!   locations by bucket and key for its pages (owned by the storage-audit role);
//! * [`m20261206_000018_retry_of`]: the transaction a transaction retries the failed files of
//!   (owned by the monitor role);
//! * [`m20261206_000019_cancel`]: who cancelled a transaction, and when (owned by the catalogue);
//! * [`m20261206_000020_notify`]: notification preferences, the notifications to deliver and the
//!   open operator alerts, and a request's own wish to be notified (owned by the monitor role);
//! * [`m20261206_000021_waiting`]: the last retry of a batch, for why it waits (owned by the
//!   monitor role);
//! * [`m20261207_000022_progress`]: the bytes moved of a batch still being transferred, for live
//!   progress (owned by the monitor role);
//! * [`m20261207_000023_webhook_nonce`]: the non-secret input a user's webhook secret is derived
//!   from (owned by the monitor role);
//! * [`m20261207_000025_role_drain`]: the roles drained for maintenance (owned by the monitor
//!   role);
//! * [`m20261207_000026_stat_path_insert_at_scale`]: the PostgreSQL trigger function that counts
//!   a holding's paths, made linear in the size of the inserting statement (owned by the
//!   catalogue role).
//!
//! Every migration has a working `down`.

pub use sea_orm_migration::prelude::*;

mod columns;
pub mod m20261125_000001_create_catalogue;
pub mod m20261125_000002_create_monitor;
pub mod m20261125_000003_create_cold;
pub mod m20261125_000004_soft_delete;
pub mod m20261125_000005_audit;
pub mod m20261125_000006_location_tenancy;
pub mod m20261205_000007_outbox;
pub mod m20261205_000008_policy;
pub mod m20261205_000009_versions;
pub mod m20261205_000010_fidelity;
pub mod m20261205_000011_scale_indexes;
pub mod m20261205_000012_request_paths;
pub mod m20261205_000013_bus_queue;
pub mod m20261205_000015_storage_audit;
pub mod m20261205_000017_holding_stat_paths;
pub mod m20261206_000018_retry_of;
pub mod m20261206_000019_cancel;
pub mod m20261206_000020_notify;
pub mod m20261206_000021_waiting;
pub mod m20261207_000022_progress;
pub mod m20261207_000023_webhook_nonce;
pub mod m20261207_000025_role_drain;
pub mod m20261207_000026_stat_path_insert_at_scale;

/// All nlds-rs migrations, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_catalogue::Migration),
            Box::new(m20261125_000002_create_monitor::Migration),
            Box::new(m20261125_000003_create_cold::Migration),
            Box::new(m20261125_000004_soft_delete::Migration),
            Box::new(m20261125_000005_audit::Migration),
            Box::new(m20261125_000006_location_tenancy::Migration),
            Box::new(m20261205_000007_outbox::Migration),
            Box::new(m20261205_000008_policy::Migration),
            Box::new(m20261205_000009_versions::Migration),
            Box::new(m20261205_000010_fidelity::Migration),
            Box::new(m20261205_000011_scale_indexes::Migration),
            Box::new(m20261205_000012_request_paths::Migration),
            Box::new(m20261205_000013_bus_queue::Migration),
            Box::new(m20261205_000015_storage_audit::Migration),
            Box::new(m20261205_000017_holding_stat_paths::Migration),
            Box::new(m20261206_000018_retry_of::Migration),
            Box::new(m20261206_000019_cancel::Migration),
            Box::new(m20261206_000020_notify::Migration),
            Box::new(m20261206_000021_waiting::Migration),
            Box::new(m20261207_000022_progress::Migration),
            Box::new(m20261207_000023_webhook_nonce::Migration),
            Box::new(m20261207_000025_role_drain::Migration),
            Box::new(m20261207_000026_stat_path_insert_at_scale::Migration),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

    const TABLES: [&str; 14] = [
        "holding",
        "tag",
        "transaction",
        "file",
        "location",
        "checksum",
        "transaction_record",
        "sub_record",
        "failed_file",
        "warning",
        "aggregation",
        "aggregation_member",
        "recall",
        "recall_request",
    ];

    async fn tables(db: &impl ConnectionTrait) -> Vec<String> {
        let sql = match db.get_database_backend() {
            DbBackend::Sqlite => {
                "SELECT name AS t FROM sqlite_master WHERE type = 'table' ORDER BY name"
            }
            _ => {
                "SELECT table_name::text AS t FROM information_schema.tables \
                  WHERE table_schema = 'public' ORDER BY table_name"
            }
        };
        db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String>("", "t").unwrap())
            .filter(|t| TABLES.contains(&t.as_str()))
            .collect()
    }

    async fn up_down_up(url: &str) {
        let db = Database::connect(url).await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        assert_eq!(tables(&db).await.len(), TABLES.len());
        // Reserved words as column names, the unique constraints and the cascades work.
        let be = db.get_database_backend();
        let exec = |sql: &str| Statement::from_string(be, sql.to_owned());
        db.execute_raw(exec(
            r#"INSERT INTO holding (label, "user", "group", created) VALUES ('l', 'u', 'g', CURRENT_TIMESTAMP)"#,
        ))
        .await
        .unwrap();
        let dup = db
            .execute_raw(exec(
                r#"INSERT INTO holding (label, "user", "group", created) VALUES ('l', 'u', 'h', CURRENT_TIMESTAMP)"#,
            ))
            .await
            .unwrap_err();
        assert!(dup.sql_err().is_some(), "{dup}");
        Migrator::down(&db, None).await.unwrap();
        assert!(tables(&db).await.is_empty());
        Migrator::up(&db, None).await.unwrap();
        assert_eq!(tables(&db).await.len(), TABLES.len());
        let first = |n: usize| {
            let mut v: Vec<String> = TABLES[..n].iter().map(|s| String::from(*s)).collect();
            v.sort();
            v
        };
        // Stepping down past the later migrations (soft delete, ...) removes the cold tables,
        // the next step the monitor's.
        let later = Migrator::migrations().len() as u32 - 3;
        Migrator::down(&db, Some(later)).await.unwrap();
        assert_eq!(tables(&db).await.len(), TABLES.len(), "{later} steps down");
        Migrator::down(&db, Some(1)).await.unwrap();
        assert_eq!(tables(&db).await, first(10));
        Migrator::down(&db, Some(1)).await.unwrap();
        assert_eq!(tables(&db).await, first(6));
    }

    #[tokio::test]
    async fn sqlite_up_down_up() {
        up_down_up("sqlite::memory:").await;
    }

    /// Runs against PostgreSQL when `NLDS_TEST_DATABASE_URL` names a server (a fresh database is
    /// created for the run); without it the test fails unless skipping was asked for (`nlds_hooks::skip`).
    #[tokio::test]
    async fn postgres_up_down_up() {
        let Some(base) = nlds_hooks::skip::service(
            "",
            "NLDS_TEST_DATABASE_URL",
            "run scripts/services.sh and scripts/test.sh",
        ) else {
            return;
        };
        let base = base.trim_end_matches('/');
        let admin = Database::connect(format!("{base}/postgres")).await.unwrap();
        let name = format!(
            "nlds_migration_test_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        up_down_up(&format!("{base}/{name}")).await;
        admin
            .execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .unwrap();
    }
}
