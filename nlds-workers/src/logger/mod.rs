//! The logger: collects the error and warning records every role publishes (`log.<level>`) and
//! the audit events of the API (`log.audit`).
//!
//! Records go to the database (`log_record`, `audit_record`), where the admin queries of the
//! monitor find them whichever logger replica stored them; each log record is also appended as
//! one JSON line (`time`, `level`, `service`, `transaction_id`, `sub_id`, `user`, `message`) to a
//! file per service under the log directory, for `tail -f`.

use std::path::PathBuf;

use async_trait::async_trait;
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::admin::{AuditEvent, LogLevel};
use nlds_core::error::ErrorCode;
use nlds_core::{Action, Envelope, Payload, RoutingKey, Worker};
use sea_orm::DatabaseConnection;
use tokio::io::AsyncWriteExt;

use crate::audit::{self, LogLine};

/// The logger role.
#[derive(Debug, Clone)]
pub struct Logger {
    dir: PathBuf,
    db: Option<DatabaseConnection>,
}

impl Logger {
    /// A logger writing files only (audit events then go to `audit.log`).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, db: None }
    }

    /// Also stores records in the database, for the admin queries.
    pub fn with_db(mut self, db: DatabaseConnection) -> Self {
        self.db = Some(db);
        self
    }

    /// The file a service's records go to (service names are reduced to `[a-z0-9-]`).
    pub fn file_for(&self, service: &str) -> PathBuf {
        let clean: String = service
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let clean = if clean.is_empty() {
            "unknown".into()
        } else {
            clean
        };
        self.dir.join(format!("{clean}.log"))
    }

    async fn append(&self, service: &str, line: String) -> Result<(), HandlerError> {
        let path = self.file_for(service);
        let write = async {
            tokio::fs::create_dir_all(&self.dir).await?;
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await?;
            f.write_all(line.as_bytes()).await?;
            // tokio writes in the background: flush so the record is on disk before the ack.
            f.flush().await
        };
        write.await.map_err(|e| {
            HandlerError::transient(
                ErrorCode::StorageError,
                format!("cannot write {}: {e}", path.display()),
            )
        })
    }

    async fn audit(&self, ev: &AuditEvent) -> Result<(), HandlerError> {
        match &self.db {
            Some(db) => audit::store_audit(db, ev)
                .await
                .map_err(crate::db::handler_error),
            None => {
                let line = serde_json::to_string(ev).unwrap_or_default() + "\n";
                self.append("audit", line).await
            }
        }
    }
}

/// A `log.<level>` message for the logger.
pub fn log_message(
    env: &Envelope,
    level: Action,
    service: &str,
    message: String,
) -> (RoutingKey, Envelope) {
    (
        RoutingKey::new(Worker::Log, level),
        env.reply(Payload::Log {
            service: service.to_owned(),
            level: level.as_str().to_owned(),
            message,
        }),
    )
}

/// A `log.audit` message: `event` for the logger to store.
pub fn audit_message(env: &Envelope, event: AuditEvent) -> (RoutingKey, Envelope) {
    (
        RoutingKey::new(Worker::Log, Action::Audit),
        env.reply(Payload::Audit(event)),
    )
}

#[async_trait]
impl Handler for Logger {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let (service, level, message) = match &env.payload {
            Payload::Log {
                service,
                level,
                message,
            } => (service, level, message),
            Payload::Audit(ev) => {
                self.audit(ev).await?;
                return Ok(Outcome::none());
            }
            _ => {
                return Err(HandlerError::permanent(
                    ErrorCode::Internal,
                    format!("{key} without a log record"),
                ));
            }
        };
        let level = LogLevel::parse(level)
            .or_else(|| LogLevel::parse(key.action.as_str()))
            .unwrap_or(LogLevel::Error);
        let time = chrono::Utc::now();
        // The envelope of a query RPC has no transaction of its own; a record about one names it.
        // A record about no transaction (a process's own warning) has the nil id and no user.
        let (transaction_id, sub_id) = if env.transaction_id.is_nil() {
            (None, None)
        } else {
            (Some(env.transaction_id), Some(env.sub_id))
        };
        let user = Some(env.user.as_str()).filter(|u| !u.is_empty());
        let line = serde_json::json!({
            "time": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "level": level,
            "service": service,
            "transaction_id": transaction_id,
            "sub_id": sub_id,
            "user": user,
            "message": message,
        });
        if let Some(db) = &self.db {
            let record = LogLine {
                time,
                level,
                service,
                transaction_id,
                sub_id,
                user,
                message,
            };
            audit::store_log(db, &record)
                .await
                .map_err(crate::db::handler_error)?;
        }
        self.append(service, line.to_string() + "\n").await?;
        Ok(Outcome::none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlds_core::AccessRole;
    use nlds_core::admin::{AuditAction, AuditFilter, AuditOutcome, LogFilter};
    use nlds_core::api::ApiAction;

    fn env() -> Envelope {
        Envelope::new(
            uuid::Uuid::new_v4(),
            "alice",
            "g",
            ApiAction::Put,
            "j",
            Payload::PutRequest {
                holding_id: 1,
                paths: vec![],
            },
        )
    }

    #[tokio::test]
    async fn writes_json_lines_one_file_per_service_and_stores_records() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::testing::memory().await;
        let l = Logger::new(d.path().join("logs")).with_db(db.clone());
        let env = env();
        for (svc, level, msg) in [
            ("transfer-put", Action::Warning, "s3 slow\nreally"),
            ("indexer", Action::Error, "x"),
            ("transfer-put", Action::Error, "again"),
        ] {
            let (k, e) = log_message(&env, level, svc, msg.into());
            l.handle(k, e).await.unwrap();
        }
        let t = std::fs::read_to_string(d.path().join("logs/transfer-put.log")).unwrap();
        let lines: Vec<serde_json::Value> = t
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["level"], "warning");
        assert_eq!(lines[0]["service"], "transfer-put");
        assert_eq!(lines[0]["message"], "s3 slow\nreally");
        assert_eq!(lines[0]["transaction_id"], env.transaction_id.to_string());
        assert_eq!(lines[1]["user"], "alice");
        assert!(d.path().join("logs/indexer.log").exists());
        assert_eq!(
            l.file_for("../../etc/passwd"),
            d.path().join("logs/______etc_passwd.log")
        );
        let f = LogFilter {
            services: vec!["transfer-put".into()],
            levels: vec![LogLevel::Error],
            ..Default::default()
        };
        let page = audit::query_logs(&db, &f).await.unwrap();
        assert_eq!(page.total, 1);
        assert_eq!(page.entries[0].message, "again");
        assert_eq!(page.entries[0].transaction_id, Some(env.transaction_id));
    }

    #[tokio::test]
    async fn audit_events_are_stored_once() {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::testing::memory().await;
        let l = Logger::new(d.path().join("logs")).with_db(db.clone());
        let ev = AuditEvent {
            id: uuid::Uuid::new_v4(),
            time: chrono::Utc::now(),
            user: "bob".into(),
            group: "g".into(),
            role: AccessRole::User,
            action: AuditAction::Meta,
            outcome: AuditOutcome::Refused,
            endpoint: "POST /api/v2/meta".into(),
            holding_id: Some(4),
            label: None,
            transaction_id: None,
            target_user: None,
            code: Some(ErrorCode::Forbidden),
            detail: "holding 4 belongs to another user".into(),
        };
        for _ in 0..2 {
            let (k, e) = audit_message(&env(), ev.clone());
            assert_eq!(k.to_string(), "nlds-api.log.audit");
            l.handle(k, e).await.unwrap();
        }
        let page = audit::query_audit(&db, &AuditFilter::default())
            .await
            .unwrap();
        assert_eq!(page.records, vec![ev.clone()]);

        // Without a database, audit events go to audit.log as JSON lines.
        let files = Logger::new(d.path().join("files"));
        let (k, e) = audit_message(&env(), ev.clone());
        files.handle(k, e).await.unwrap();
        let t = std::fs::read_to_string(d.path().join("files/audit.log")).unwrap();
        let back: AuditEvent = serde_json::from_str(t.trim()).unwrap();
        assert_eq!(back, ev);
    }
}
