//! The roles' metrics (`nlds-metrics`): data moved per tier, and usage per group.
//!
//! Files and bytes moved are read from what a data role's handler answers (the `.complete` it
//! publishes), by [`Counted`], which wraps every role's handler: the roles themselves stay
//! unaware of the metrics, and what is counted is exactly what the router is told succeeded.

use std::sync::Arc;

use async_trait::async_trait;
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::files::PathKind;
use nlds_core::{Action, Envelope, Payload, Role, RoutingKey, Worker};
use nlds_metrics::record::{Operation, Tier};
use nlds_metrics::scrape::Registration;
use sea_orm::{DatabaseConnection, EntityTrait};

/// Data one handled message moved: its tier and direction, files and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub tier: Tier,
    pub operation: Operation,
    pub files: u64,
    pub bytes: u64,
}

/// What the handling of a message moved, as its `outcome` reports it: a transfer's batch (its
/// regular files that succeeded), an aggregate written to the cold store (its members, from the
/// `request`'s payload, and the aggregate's bytes), or a recall's restored members (their sizes
/// from the `request`'s payload).
pub fn moved(request: Option<&Payload>, outcome: &Outcome) -> Vec<Moved> {
    let mut out = Vec::new();
    for (key, env) in &outcome.publish {
        if key.action != Action::Complete {
            continue;
        }
        let m = match (key.worker, &env.payload) {
            (Worker::TransferPut | Worker::TransferGet, Payload::Files { files, .. }) => {
                let regular = files.iter().filter(|f| f.kind == PathKind::File);
                let (n, bytes) = regular.fold((0, 0), |(n, b), f| (n + 1, b + f.size));
                let operation = if key.worker == Worker::TransferPut {
                    Operation::Put
                } else {
                    Operation::Get
                };
                Moved {
                    tier: Tier::Warm,
                    operation,
                    files: n,
                    bytes,
                }
            }
            (Worker::ArchivePut, Payload::ArchiveStored { sums, .. }) => {
                let files = match request {
                    Some(Payload::ArchiveAggregate { members, .. }) => members.len() as u64,
                    _ => 0,
                };
                Moved {
                    tier: Tier::Cold,
                    operation: Operation::Put,
                    files,
                    bytes: sums.size,
                }
            }
            (Worker::ArchiveGet, Payload::ArchiveRestored { restored, .. }) => {
                let bytes = match request {
                    Some(Payload::ArchiveRecall { members, .. }) => restored
                        .iter()
                        .filter_map(|r| members.iter().find(|m| m.file_id == r.file_id))
                        .map(|m| m.size)
                        .sum(),
                    _ => 0,
                };
                Moved {
                    tier: Tier::Cold,
                    operation: Operation::Get,
                    files: restored.len() as u64,
                    bytes,
                }
            }
            _ => continue,
        };
        out.push(m);
    }
    out
}

/// A role's handler, counting the data it moves ([`moved`]).
pub struct Counted {
    inner: Arc<dyn Handler>,
}

impl Counted {
    /// `handler`, counted if `role` moves data; else `handler` itself.
    pub fn wrap(role: Role, handler: Arc<dyn Handler>) -> Arc<dyn Handler> {
        match role {
            Role::TransferPut | Role::TransferGet | Role::ArchivePut | Role::ArchiveGet => {
                Arc::new(Self { inner: handler })
            }
            _ => handler,
        }
    }
}

#[async_trait]
impl Handler for Counted {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        // The request's payload is needed after the handler took it for the cold tier's
        // figures only.
        let request = matches!(
            env.payload,
            Payload::ArchiveAggregate { .. } | Payload::ArchiveRecall { .. }
        )
        .then(|| env.payload.clone());
        let outcome = self.inner.handle(key, env).await?;
        for m in moved(request.as_ref(), &outcome) {
            nlds_metrics::record::moved(m.tier, m.operation, m.files, m.bytes);
        }
        Ok(outcome)
    }
}

/// Exports the usage per group and tier (`usage`, kept by the catalogue in the same database
/// transactions as the copies) and the byte limits (`quota`), read at every scrape until the
/// registration is dropped: the `keep` largest groups by name, the rest as `(other)`
/// ([`nlds_metrics::record::usage`]).
pub fn export_usage(db: DatabaseConnection, keep: usize) -> Registration {
    nlds_metrics::on_scrape(move || {
        let db = db.clone();
        async move {
            let read = async {
                let usage = crate::db::usage::Entity::find().all(&db).await?;
                let quotas = crate::db::quota::Entity::find().all(&db).await?;
                Ok::<_, sea_orm::DbErr>((usage, quotas))
            };
            match read.await {
                Ok((usage, quotas)) => {
                    let n = |v: i64| u64::try_from(v).unwrap_or(0);
                    let rows: Vec<_> = usage
                        .into_iter()
                        .map(|r| (r.group, r.tier, n(r.bytes), n(r.files)))
                        .collect();
                    let quotas: Vec<_> = quotas
                        .into_iter()
                        .map(|q| {
                            let limits = [("warm", q.warm_bytes), ("cold", q.cold_bytes)]
                                .into_iter()
                                .filter_map(|(t, l)| Some((t, n(l?))))
                                .collect();
                            (q.group, limits)
                        })
                        .collect();
                    nlds_metrics::record::usage(&rows, &quotas, keep);
                }
                // The database's absence shows in nlds_backend_up{backend="database"}.
                Err(e) => tracing::debug!(error = %e, "cannot read the usage"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlds_core::api::ApiAction;
    use nlds_core::message::{AggregateSums, FileRecord, RecallMember, RestoredFile};

    fn env(payload: Payload) -> Envelope {
        Envelope::new(uuid::Uuid::new_v4(), "u", "g", ApiAction::Put, "", payload)
    }

    fn file(kind: PathKind, size: u64) -> FileRecord {
        let mut f: FileRecord = serde_json::from_value(serde_json::json!({
            "path": "/a", "kind": "file", "size": 0, "uid": 0, "gid": 0, "mode": 0, "mtime_ns": 0
        }))
        .expect("a file record");
        f.kind = kind;
        f.size = size;
        f
    }

    #[test]
    fn a_transfer_counts_the_regular_files_it_reports_complete() {
        let files = vec![
            file(PathKind::File, 10),
            file(PathKind::File, 5),
            file(PathKind::Directory, 4096),
        ];
        let done = env(Payload::Files {
            holding_id: None,
            files,
            target: None,
            overwrite: false,
            failed: Vec::new(),
            context: Vec::new(),
        });
        for (worker, operation) in [
            (Worker::TransferPut, Operation::Put),
            (Worker::TransferGet, Operation::Get),
        ] {
            let out = Outcome::publish(RoutingKey::new(worker, Action::Complete), done.clone());
            assert_eq!(
                moved(None, &out),
                vec![Moved {
                    tier: Tier::Warm,
                    operation,
                    files: 2,
                    bytes: 15
                }]
            );
            // A failed step moved nothing.
            let out = Outcome::publish(RoutingKey::new(worker, Action::Failed), done.clone());
            assert!(moved(None, &out).is_empty());
        }
    }

    #[test]
    fn the_cold_tier_counts_members_written_and_restored() {
        let sums = AggregateSums {
            size: 10240,
            adler32: 1,
            crc32c: 2,
            blake3: "b".into(),
        };
        let member: RecallMember = serde_json::from_value(serde_json::json!({
            "file_id": 7, "path": "/a", "size": 300, "mode": 0, "mtime_ns": 0, "uid": 0, "gid": 0,
            "transaction_id": uuid::Uuid::nil(), "restore": true
        }))
        .expect("a recall member");
        let other = RecallMember {
            file_id: 8,
            size: 99,
            ..member.clone()
        };
        let recall = Payload::ArchiveRecall {
            aggregation_id: 1,
            name: "agg".into(),
            members: vec![member.clone(), other],
            sums: sums.clone(),
            checks: 0,
            restore_tag: None,
        };
        let restored = env(Payload::ArchiveRestored {
            aggregation_id: 1,
            restored: vec![RestoredFile {
                file_id: 7,
                object: nlds_core::message::ObjectRef {
                    bucket: "b".into(),
                    key: "k".into(),
                    tenancy: None,
                },
            }],
        });
        let out = Outcome::publish(
            RoutingKey::new(Worker::ArchiveGet, Action::Complete),
            restored,
        );
        assert_eq!(
            moved(Some(&recall), &out),
            vec![Moved {
                tier: Tier::Cold,
                operation: Operation::Get,
                files: 1,
                bytes: 300
            }]
        );
        let stored = env(Payload::ArchiveStored {
            aggregation_id: 1,
            name: "agg".into(),
            sums,
        });
        let out = Outcome::publish(
            RoutingKey::new(Worker::ArchivePut, Action::Complete),
            stored,
        );
        let aggregate = Payload::ArchiveAggregate {
            aggregation_id: 1,
            name: "agg".into(),
            holding_id: 1,
            members: Vec::new(),
        };
        assert_eq!(
            moved(Some(&aggregate), &out),
            vec![Moved {
                tier: Tier::Cold,
                operation: Operation::Put,
                files: 0,
                bytes: 10240
            }]
        );
    }
}
