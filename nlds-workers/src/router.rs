//! The router: sequences each workflow from completion messages. Stateless: everything it needs
//! travels in the message (see docs/PROTOCOL.md).

use async_trait::async_trait;
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::error::ErrorCode;
use nlds_core::{Action, Envelope, Payload, RoutingKey, State, Worker};

/// The router role.
#[derive(Debug, Default, Clone)]
pub struct Router;

fn key(worker: Worker, action: Action) -> RoutingKey {
    RoutingKey::new(worker, action)
}

/// A monitor update for the message's sub-record, with the files that failed at the step that
/// sent it (recorded together, so a final state never overtakes its failures).
pub fn monitor(env: &Envelope, state: State) -> (RoutingKey, Envelope) {
    let (files, bytes, failed) = match &env.payload {
        Payload::Files { files, failed, .. } => (
            files.len() as u64,
            files.iter().map(|f| f.size).sum::<u64>(),
            failed.clone(),
        ),
        _ => (0, 0, Vec::new()),
    };
    (
        key(Worker::MonitorPut, Action::Start),
        env.reply(Payload::MonitorUpdate {
            state,
            files,
            bytes,
            failed,
            warnings: Vec::new(),
        }),
    )
}

/// The batch to pass on: the same files, without the failures already reported.
fn forward(env: &Envelope) -> Envelope {
    let mut next = env.clone();
    if let Payload::Files { failed, .. } = &mut next.payload {
        failed.clear();
    }
    next
}

/// A warning for the logger when a step failed some files.
fn log_failures(
    worker: Worker,
    env: &Envelope,
    failed: &[nlds_core::FailedFile],
) -> Option<(RoutingKey, Envelope)> {
    let first = failed.first()?;
    Some(crate::logger::log_message(
        env,
        Action::Warning,
        worker.as_str(),
        format!(
            "{} file(s) failed at {worker}, e.g. {}: {}",
            failed.len(),
            first.path,
            first.reason
        ),
    ))
}

fn is_empty_batch(env: &Envelope) -> bool {
    matches!(&env.payload, Payload::Files { files, .. } if files.is_empty())
}

impl Router {
    /// The next step after `worker` completed a batch.
    fn next(&self, worker: Worker, env: Envelope) -> Result<Outcome, HandlerError> {
        let mut outcome = self.next_step(worker, &env)?;
        if let Payload::Files { failed, .. } = &env.payload
            && let Some((k, e)) = log_failures(worker, &env, failed)
        {
            outcome = outcome.and(k, e);
        }
        Ok(outcome)
    }

    fn next_step(&self, worker: Worker, env: &Envelope) -> Result<Outcome, HandlerError> {
        let env = env.clone();
        // A batch whose files all failed at an earlier step ends here, as FAILED (its failures
        // are recorded in their own sub-records).
        if is_empty_batch(&env) && worker != Worker::CatalogPut && worker != Worker::TransferGet {
            let (k, e) = monitor(&env, State::Failed);
            return Ok(Outcome::publish(k, e));
        }
        let step = |state: State, to: Worker| {
            let (mk, me) = monitor(&env, state);
            Outcome::publish(mk, me).and(key(to, Action::Start), forward(&env))
        };
        let outcome = match worker {
            Worker::Index => step(State::CatalogPutting, Worker::CatalogCheck),
            Worker::CatalogCheck => step(State::TransferPutting, Worker::TransferPut),
            Worker::TransferPut => step(State::CatalogUpdating, Worker::CatalogPut),
            Worker::CatalogGet => step(State::TransferGetting, Worker::TransferGet),
            Worker::CatalogPut | Worker::TransferGet => {
                let state = if is_empty_batch(&env) {
                    State::Failed
                } else {
                    State::Complete
                };
                let (mk, me) = monitor(&env, state);
                Outcome::publish(mk, me)
            }
            other => {
                return Err(HandlerError::permanent(
                    ErrorCode::Internal,
                    format!("router has no step after {other}"),
                ));
            }
        };
        Ok(outcome)
    }

    fn failed(&self, worker: Worker, env: Envelope) -> Result<Outcome, HandlerError> {
        let Payload::Failed { files } = env.payload.clone() else {
            return Err(HandlerError::permanent(
                ErrorCode::Internal,
                format!("{worker}.failed without a list of failed files"),
            ));
        };
        let log = log_failures(worker, &env, &files);
        // The sub-record that sent the failures ends FAILED with them: a batch the bus gave up
        // on, or the failure sub-record of the indexer or the catalogue's get resolution.
        let update = env.reply(Payload::MonitorUpdate {
            state: State::Failed,
            files: files.len() as u64,
            bytes: 0,
            failed: files,
            warnings: Vec::new(),
        });
        let mut out = Outcome::publish(key(Worker::MonitorPut, Action::Start), update);
        if let Some((k, e)) = log {
            out = out.and(k, e);
        }
        Ok(out)
    }

    /// The first step of a workflow. The API recorded the transaction with the monitor before
    /// publishing (`monitor.init`), so only its first state is reported here.
    fn start(&self, action: Action, env: Envelope) -> Result<Outcome, HandlerError> {
        let (first_state, first_step) = match (&env.payload, action) {
            (Payload::PutRequest { .. }, Action::Put | Action::Putlist) => {
                (State::Indexing, Worker::Index)
            }
            (Payload::GetRequest { .. }, Action::Get | Action::Getlist) => {
                (State::CatalogGetting, Worker::CatalogGet)
            }
            _ => {
                return Err(HandlerError::permanent(
                    ErrorCode::BadRequest,
                    format!("route.{action} does not match its payload"),
                ));
            }
        };
        let (mk, me) = monitor(&env, first_state);
        Ok(Outcome::publish(mk, me).and(key(first_step, Action::Start), env))
    }
}

#[async_trait]
impl Handler for Router {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        match (key.worker, key.action) {
            (Worker::Route, action) => self.start(action, env),
            // Archiving: the writer's report goes to the catalogue, success or failure.
            (Worker::ArchivePut | Worker::ArchiveGet, Action::Complete | Action::Failed) => {
                Ok(Outcome::publish(
                    RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start),
                    env,
                ))
            }
            // The catalogue gave up on an archive round or update (it logged why); an expired
            // lease releases the files, so there is nothing to route.
            (Worker::CatalogArchiveNext | Worker::CatalogArchiveUpdate, _) => {
                tracing::warn!(%key, transaction.id = %env.transaction_id, "archive bookkeeping failed");
                Ok(Outcome::none())
            }
            (worker, Action::Complete) => self.next(worker, env),
            (worker, Action::Failed) => self.failed(worker, env),
            _ => Err(HandlerError::permanent(
                ErrorCode::Internal,
                format!("router does not handle {key}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlds_core::PathKind;
    use nlds_core::api::ApiAction;
    use nlds_core::message::{FailedFile, FileRecord};
    use uuid::Uuid;

    fn env(payload: Payload) -> Envelope {
        Envelope::new(Uuid::new_v4(), "u", "g", ApiAction::Putlist, "j", payload)
    }

    fn files(n: usize) -> Payload {
        Payload::Files {
            holding_id: Some(1),
            files: (0..n)
                .map(|i| FileRecord {
                    path: format!("/d/{i}"),
                    kind: PathKind::File,
                    link_target: None,
                    size: 10,
                    uid: 0,
                    gid: 0,
                    mode: 0o644,
                    mtime_ns: 0,
                    blake3: None,
                    object: None,
                    holding_id: None,
                })
                .collect(),
            target: None,
            overwrite: false,
            failed: Vec::new(),
        }
    }

    fn keys(o: &Outcome) -> Vec<String> {
        o.publish.iter().map(|(k, _)| k.to_string()).collect()
    }

    fn states(o: &Outcome) -> Vec<State> {
        o.publish
            .iter()
            .filter_map(|(_, e)| match &e.payload {
                Payload::MonitorUpdate { state, .. } => Some(*state),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn put_is_sequenced_step_by_step() {
        let r = Router;
        let put = env(Payload::PutRequest {
            holding_id: 1,
            paths: vec!["/d".into()],
        });
        let o = r
            .handle(key(Worker::Route, Action::Putlist), put)
            .await
            .unwrap();
        assert_eq!(
            keys(&o),
            ["nlds-api.monitor-put.start", "nlds-api.index.start"]
        );
        let steps = [
            (
                Worker::Index,
                "nlds-api.catalog-check.start",
                State::CatalogPutting,
            ),
            (
                Worker::CatalogCheck,
                "nlds-api.transfer-put.start",
                State::TransferPutting,
            ),
            (
                Worker::TransferPut,
                "nlds-api.catalog-put.start",
                State::CatalogUpdating,
            ),
        ];
        for (w, next, state) in steps {
            let o = r
                .handle(key(w, Action::Complete), env(files(3)))
                .await
                .unwrap();
            assert_eq!(keys(&o), ["nlds-api.monitor-put.start", next]);
            assert_eq!(states(&o), [state]);
            let Payload::MonitorUpdate { files, bytes, .. } = &o.publish[0].1.payload else {
                panic!()
            };
            assert_eq!((*files, *bytes), (3, 30));
        }
        let o = r
            .handle(key(Worker::CatalogPut, Action::Complete), env(files(3)))
            .await
            .unwrap();
        assert_eq!(states(&o), [State::Complete]);
    }

    #[tokio::test]
    async fn get_is_sequenced() {
        let r = Router;
        let get = Envelope::new(
            Uuid::new_v4(),
            "u",
            "g",
            ApiAction::Get,
            "j",
            Payload::GetRequest {
                filter: Default::default(),
                paths: vec!["/x".into()],
                regex: false,
                target: None,
                overwrite: false,
            },
        );
        let o = r
            .handle(key(Worker::Route, Action::Get), get)
            .await
            .unwrap();
        assert_eq!(keys(&o)[1], "nlds-api.catalog-get.start");
        let o = r
            .handle(key(Worker::CatalogGet, Action::Complete), env(files(1)))
            .await
            .unwrap();
        assert_eq!(keys(&o)[1], "nlds-api.transfer-get.start");
        let o = r
            .handle(key(Worker::TransferGet, Action::Complete), env(files(1)))
            .await
            .unwrap();
        assert_eq!(states(&o), [State::Complete]);
    }

    #[tokio::test]
    async fn failures_end_their_sub_record_failed_and_travel_with_results() {
        let r = Router;
        let e = env(Payload::Failed {
            files: vec![FailedFile::new(
                "/d/x",
                ErrorCode::PathMissing,
                "no such file",
            )],
        });
        let o = r
            .handle(key(Worker::Index, Action::Failed), e.clone())
            .await
            .unwrap();
        let (k, m) = &o.publish[0];
        assert_eq!(k.to_string(), "nlds-api.monitor-put.start");
        assert_eq!(m.sub_id, e.sub_id, "the sub-record that failed ends FAILED");
        let Payload::MonitorUpdate { state, failed, .. } = &m.payload else {
            panic!()
        };
        assert_eq!(*state, State::Failed);
        assert_eq!(failed[0].path, "/d/x");
        // an emptied batch ends FAILED instead of moving on
        let o = r
            .handle(key(Worker::CatalogCheck, Action::Complete), env(files(0)))
            .await
            .unwrap();
        assert_eq!(keys(&o), ["nlds-api.monitor-put.start"]);
        assert_eq!(states(&o), [State::Failed]);
        // a put request routed as a get is refused
        let bad = env(Payload::PutRequest {
            holding_id: 1,
            paths: vec![],
        });
        assert!(
            r.handle(key(Worker::Route, Action::Get), bad)
                .await
                .is_err()
        );
    }
}
