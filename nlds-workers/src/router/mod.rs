//! The router: sequences each workflow from completion messages. Stateless: everything it needs
//! travels in the message (see docs/PROTOCOL.md).

use async_trait::async_trait;
use nlds_bus::{Handler, HandlerError, Outcome};
use nlds_core::error::ErrorCode;
use nlds_core::workflow::{self, Effect, NoStep, Step, StepOutcome, Workflow};
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
    let (files, bytes, failed, versions) = match &env.payload {
        // Directories travel for their restore only: not files to users.
        Payload::Files { files, failed, .. } => (
            nlds_core::message::file_count(files),
            files.iter().map(|f| f.size).sum::<u64>(),
            failed.clone(),
            files.iter().filter(|f| f.new_version).count() as u64,
        ),
        _ => (0, 0, Vec::new(), 0),
    };
    (
        key(Worker::MonitorPut, Action::Start),
        env.reply(Payload::MonitorUpdate {
            state,
            files,
            bytes,
            failed,
            warnings: Vec::new(),
            versions,
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

/// A batch left empty because every file in it was skipped as unchanged (a put of what the
/// holding already has): nothing failed, so it is done, not emptied.
fn all_unchanged(env: &Envelope) -> bool {
    matches!(&env.payload, Payload::Files { files, failed, .. }
        if files.is_empty() && !failed.is_empty()
            && failed.iter().all(|f| f.code == ErrorCode::Unchanged))
}

/// A batch left empty because a transfer dropped every file of it when it heard its transaction
/// was cancelled (docs/CANCEL.md): it ends cancelled, not failed.
fn all_cancelled(env: &Envelope) -> bool {
    matches!(&env.payload, Payload::Files { files, failed, .. }
        if files.is_empty() && !failed.is_empty()
            && failed.iter().all(|f| f.code == ErrorCode::Cancelled))
}

/// How the step that sent `env` went, as the workflow sees it.
fn step_outcome(action: Action, env: &Envelope) -> StepOutcome {
    match action {
        Action::Failed => StepOutcome::Failed,
        _ if all_unchanged(env) => StepOutcome::Unchanged,
        _ if is_empty_batch(env) => StepOutcome::Emptied,
        _ => StepOutcome::Done,
    }
}

fn no_step(e: NoStep) -> HandlerError {
    HandlerError::permanent(ErrorCode::Internal, format!("router: {e}"))
}

impl Router {
    /// Applies the workflow's next step (see [`nlds_core::workflow::next`]) to a message: a
    /// monitor update for a reported state, and the message passed on (without the failures
    /// already reported) to each step sent to.
    fn apply(
        &self,
        workflow: Workflow,
        step: Step,
        outcome: StepOutcome,
        env: &Envelope,
    ) -> Result<Outcome, HandlerError> {
        let mut out = Outcome::none();
        for effect in workflow::next(workflow, step, outcome).map_err(no_step)? {
            let (k, e) = match effect {
                Effect::Report(state) if outcome == StepOutcome::Failed => {
                    failed_update(step.key().worker, env, state)?
                }
                // A transfer dropped every file of the batch: its transaction was cancelled.
                Effect::Report(_) if outcome == StepOutcome::Emptied && all_cancelled(env) => {
                    monitor(env, workflow::cancelled())
                }
                Effect::Report(state) => monitor(env, state),
                Effect::Send(to) => (to.key(), forward(env)),
            };
            out = out.and(k, e);
        }
        Ok(out)
    }

    /// A completion or failure of `worker`'s step.
    fn completed(
        &self,
        worker: Worker,
        action: Action,
        env: Envelope,
    ) -> Result<Outcome, HandlerError> {
        let step = Step::completed_by(worker);
        let Some((step, workflow)) = step.and_then(|s| Workflow::sequencing(s).map(|w| (s, w)))
        else {
            if action == Action::Failed {
                // Any other message the bus gave up on ends its sub-record FAILED.
                let Payload::Failed { files } = &env.payload else {
                    return Err(HandlerError::permanent(
                        ErrorCode::Internal,
                        format!("{worker}.failed without a list of failed files"),
                    ));
                };
                let log = log_failures(worker, &env, files);
                let (k, e) = failed_update(worker, &env, workflow::gave_up())?;
                let mut out = Outcome::publish(k, e);
                if let Some((k, e)) = log {
                    out = out.and(k, e);
                }
                return Ok(out);
            }
            return Err(HandlerError::permanent(
                ErrorCode::Internal,
                format!("router has no step after {worker}"),
            ));
        };
        if matches!(step, Step::ArchiveNext | Step::ArchiveUpdate) {
            // The catalogue gave up on an archive round or update (it logged why).
            tracing::warn!(%worker, %action, transaction_id = %env.transaction_id,
                "archive bookkeeping failed");
        }
        let outcome = step_outcome(action, &env);
        let mut out = self.apply(workflow, step, outcome, &env)?;
        // The failures of a monitored step are logged too.
        if matches!(workflow, Workflow::Put | Workflow::Get) {
            let failed: Vec<nlds_core::FailedFile> = match &env.payload {
                Payload::Files { failed, .. } | Payload::Failed { files: failed } => failed
                    .iter()
                    .filter(|f| f.code != ErrorCode::Unchanged)
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            };
            if let Some((k, e)) = log_failures(worker, &env, &failed) {
                out = out.and(k, e);
            }
        }
        Ok(out)
    }

    /// The first step of a workflow. The API recorded the transaction with the monitor before
    /// publishing (`monitor.init`), so only its first state is reported here.
    fn start(&self, action: Action, env: Envelope) -> Result<Outcome, HandlerError> {
        let workflow = match (&env.payload, Workflow::submitted(action)) {
            (Payload::PutRequest { .. }, Some(w @ Workflow::Put))
            | (Payload::GetRequest { .. }, Some(w @ Workflow::Get)) => w,
            _ => {
                return Err(HandlerError::permanent(
                    ErrorCode::BadRequest,
                    format!("route.{action} does not match its payload"),
                ));
            }
        };
        self.apply(workflow, Step::Submit, StepOutcome::Done, &env)
    }
}

/// The monitor update that ends the sub-record of a step that gave up in `state` (FAILED), with
/// its failed files: a batch the bus gave up on, or the failure sub-record of the indexer or the
/// catalogue's get resolution.
fn failed_update(
    worker: Worker,
    env: &Envelope,
    state: State,
) -> Result<(RoutingKey, Envelope), HandlerError> {
    let Payload::Failed { files } = env.payload.clone() else {
        return Err(HandlerError::permanent(
            ErrorCode::Internal,
            format!("{worker}.failed without a list of failed files"),
        ));
    };
    Ok((
        key(Worker::MonitorPut, Action::Start),
        env.reply(Payload::MonitorUpdate {
            state,
            files: files.len() as u64,
            bytes: 0,
            failed: files,
            warnings: Vec::new(),
            versions: 0,
        }),
    ))
}

#[async_trait]
impl Handler for Router {
    async fn handle(&self, key: RoutingKey, env: Envelope) -> Result<Outcome, HandlerError> {
        match (key.worker, key.action) {
            (Worker::Route, action) => self.start(action, env),
            (worker, action @ (Action::Complete | Action::Failed)) => {
                self.completed(worker, action, env)
            }
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
            context: Vec::new(),
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
                    xattrs: Vec::new(),
                    new_version: false,
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

    #[tokio::test]
    async fn archive_reports_go_to_the_catalogue_and_its_bookkeeping_ends_there() {
        let r = Router;
        let stored = env(Payload::ArchiveStored {
            aggregation_id: 7,
            name: "agg".into(),
            sums: nlds_core::message::AggregateSums {
                size: 1,
                adler32: 1,
                crc32c: 1,
                blake3: "b".into(),
            },
        });
        for w in [Worker::ArchivePut, Worker::ArchiveGet] {
            for a in [Action::Complete, Action::Failed] {
                let o = r.handle(key(w, a), stored.clone()).await.unwrap();
                assert_eq!(
                    keys(&o),
                    ["nlds-api.catalog-archive-update.start"],
                    "{w}.{a}"
                );
                assert_eq!(o.publish[0].1.payload, stored.payload);
            }
        }
        for w in [Worker::CatalogArchiveNext, Worker::CatalogArchiveUpdate] {
            for a in [Action::Complete, Action::Failed] {
                let o = r.handle(key(w, a), env(files(1))).await.unwrap();
                assert!(o.publish.is_empty(), "{w}.{a}");
            }
        }
    }

    #[tokio::test]
    async fn other_failures_end_failed_and_unknown_completions_are_refused() {
        let r = Router;
        let e = env(Payload::Failed {
            files: vec![FailedFile::new("/o", ErrorCode::Internal, "gone")],
        });
        let o = r
            .handle(key(Worker::TransferDel, Action::Failed), e)
            .await
            .unwrap();
        assert_eq!(
            keys(&o),
            ["nlds-api.monitor-put.start", "nlds-api.log.warning"]
        );
        assert_eq!(states(&o), [State::Failed]);
        assert!(
            r.handle(key(Worker::TransferDel, Action::Complete), env(files(1)))
                .await
                .is_err()
        );
        assert!(
            r.handle(key(Worker::Index, Action::Failed), env(files(1)))
                .await
                .is_err(),
            "a failure must carry its failed files"
        );
        assert!(
            r.handle(key(Worker::Index, Action::Start), env(files(1)))
                .await
                .is_err()
        );
    }
}
