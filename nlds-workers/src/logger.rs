//! The logger: collects the error and warning records every role publishes (`log.<level>`) and
//! appends them to one file per service under the log directory.

use std::path::PathBuf;

use async_trait::async_trait;
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::error::ErrorCode;
use nlds_core::{Action, Envelope, Payload, RoutingKey, Worker};
use tokio::io::AsyncWriteExt;

/// The logger role.
#[derive(Debug, Clone)]
pub struct Logger {
    dir: PathBuf,
}

impl Logger {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
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

#[async_trait]
impl Handler for Logger {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        let Payload::Log {
            service,
            level,
            message,
        } = &env.payload
        else {
            return Err(HandlerError::permanent(
                ErrorCode::Internal,
                format!("{key} without a log record"),
            ));
        };
        let line = format!(
            "{} {} transaction={} sub={} user={} {}\n",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            level.to_uppercase(),
            env.transaction_id,
            env.sub_id,
            env.user,
            message.replace('\n', " "),
        );
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
        })?;
        Ok(Outcome::none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlds_core::api::ApiAction;

    #[tokio::test]
    async fn writes_one_file_per_service() {
        let d = tempfile::tempdir().unwrap();
        let l = Logger::new(d.path().join("logs"));
        let env = Envelope::new(
            uuid::Uuid::new_v4(),
            "alice",
            "g",
            ApiAction::Put,
            "j",
            Payload::PutRequest {
                holding_id: 1,
                paths: vec![],
            },
        );
        for (svc, msg) in [
            ("transfer-put", "s3 slow\nreally"),
            ("indexer", "x"),
            ("transfer-put", "again"),
        ] {
            let (k, e) = log_message(&env, Action::Warning, svc, msg.into());
            l.handle(k, e).await.unwrap();
        }
        let t = std::fs::read_to_string(d.path().join("logs/transfer-put.log")).unwrap();
        assert_eq!(t.lines().count(), 2);
        assert!(t.contains("WARNING"));
        assert!(t.contains("s3 slow really"));
        assert!(t.contains(&env.transaction_id.to_string()));
        assert!(d.path().join("logs/indexer.log").exists());
        assert_eq!(
            l.file_for("../../etc/passwd"),
            d.path().join("logs/______etc_passwd.log")
        );
    }
}
