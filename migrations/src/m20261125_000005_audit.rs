//! The sysadmin's records: `audit_record` (who put, got, changed or deleted what, and every
//! refused attempt) and `log_record` (the error and warning records the logger collects from every
//! role). Written by the logger role (and, for files a transfer was refused, by the monitor in the
//! same transaction as the update); read by the monitor's admin queries.

use sea_orm_migration::prelude::*;

use crate::columns::{big_null, id, index, text, timestamp};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum AuditRecord {
    Table,
    Id,
    EventId,
    Time,
    User,
    Group,
    Role,
    Action,
    Outcome,
    Endpoint,
    HoldingId,
    Label,
    TransactionId,
    TargetUser,
    Code,
    Detail,
}

#[derive(DeriveIden)]
pub enum LogRecord {
    Table,
    Id,
    Time,
    Level,
    Service,
    TransactionId,
    SubId,
    User,
    Message,
}

fn text_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().null().take()
}

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait does not accept `SchemaManager<'_>` here"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditRecord::Table)
                    .col(id())
                    .col(text(AuditRecord::EventId).unique_key().take())
                    .col(timestamp(AuditRecord::Time))
                    .col(text(AuditRecord::User))
                    .col(text(AuditRecord::Group))
                    .col(text(AuditRecord::Role))
                    .col(text(AuditRecord::Action))
                    .col(text(AuditRecord::Outcome))
                    .col(text(AuditRecord::Endpoint))
                    .col(big_null(AuditRecord::HoldingId))
                    .col(text_null(AuditRecord::Label))
                    .col(text_null(AuditRecord::TransactionId))
                    .col(text_null(AuditRecord::TargetUser))
                    .col(text_null(AuditRecord::Code))
                    .col(text(AuditRecord::Detail))
                    .take(),
            )
            .await?;
        for (name, col) in [
            ("idx_audit_record_time", AuditRecord::Time),
            ("idx_audit_record_user", AuditRecord::User),
            ("idx_audit_record_holding", AuditRecord::HoldingId),
            ("idx_audit_record_transaction", AuditRecord::TransactionId),
        ] {
            manager
                .create_index(index(
                    name,
                    AuditRecord::Table,
                    vec![col.into_iden()],
                    false,
                ))
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(LogRecord::Table)
                    .col(id())
                    .col(timestamp(LogRecord::Time))
                    .col(text(LogRecord::Level))
                    .col(text(LogRecord::Service))
                    .col(text_null(LogRecord::TransactionId))
                    .col(text_null(LogRecord::SubId))
                    .col(text_null(LogRecord::User))
                    .col(text(LogRecord::Message))
                    .take(),
            )
            .await?;
        for (name, col) in [
            ("idx_log_record_time", LogRecord::Time),
            ("idx_log_record_service", LogRecord::Service),
            ("idx_log_record_transaction", LogRecord::TransactionId),
        ] {
            manager
                .create_index(index(name, LogRecord::Table, vec![col.into_iden()], false))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [LogRecord::Table.into_iden(), AuditRecord::Table.into_iden()] {
            manager
                .drop_table(Table::drop().table(table).if_exists().take())
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Migrator, MigratorTrait};
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, Statement};

    async fn has(db: &impl ConnectionTrait, table: &str) -> bool {
        let sql =
            format!("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '{table}'");
        db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .is_some()
    }

    /// The audit and log tables come with this migration, take rows (the event id is unique) and
    /// go with its `down`.
    #[tokio::test]
    async fn audit_and_log_tables_come_and_go() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        assert!(has(&db, "audit_record").await && has(&db, "log_record").await);
        let be = db.get_database_backend();
        let insert = r#"INSERT INTO audit_record (event_id, time, "user", "group", role, action,
            outcome, endpoint, detail) VALUES ('e1', CURRENT_TIMESTAMP, 'u', 'g', 'user', 'put',
            'allowed', 'POST /api/v2/put', 'd')"#;
        db.execute_raw(Statement::from_string(be, insert))
            .await
            .unwrap();
        let dup = db
            .execute_raw(Statement::from_string(be, insert))
            .await
            .unwrap_err();
        assert!(dup.sql_err().is_some(), "{dup}");
        let steps_after = Migrator::migrations()
            .iter()
            .rev()
            .position(|m| m.name() == "m20261125_000005_audit")
            .unwrap() as u32;
        Migrator::down(&db, Some(steps_after + 1)).await.unwrap();
        assert!(!has(&db, "audit_record").await && !has(&db, "log_record").await);
        assert!(has(&db, "transaction_record").await);
    }
}
