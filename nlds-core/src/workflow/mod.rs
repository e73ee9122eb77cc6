//! Every workflow as a sequence of steps, defined by one pure function: [`next`].
//!
//! A workflow (put, get, archive, recall, delete, undelete, evict, purge) is a chain of
//! [`Step`]s, each the work of one worker behind one routing key. When a step reports how it
//! went (a [`StepOutcome`]), [`next`] says what follows: the state to report to the monitor for
//! the message's sub-record ([`Effect::Report`]) and the steps the batch is sent on to
//! ([`Effect::Send`]). The router applies it to the completions it receives; the catalogue
//! applies it when it commits a change that implies removals (evict, purge, the purge sweep of an
//! archive round), sending them in the same outcome as its reply so the bus acknowledges the
//! request only once they are confirmed. Nothing else decides what comes next.
//!
//! The routing keys and wire messages are those of `docs/PROTOCOL.md`: a step's key is
//! [`Step::key`], its completion is `<worker>.complete` or `<worker>.failed`.
//!
//! The states reported outside a step's completion come from here too: a step that splits its
//! message into batches ([`split`]), a recall's phases ([`recall`]), a message the bus gave up on
//! ([`gave_up`]), and what the monitor and start-up recovery make of a sub-record's state
//! ([`sub_record`]). Workers name no state themselves.

pub mod recall;
pub mod retry_note;
pub mod sub_record;

use crate::api::ApiAction;
use crate::routing::{Action, RoutingKey, Worker};
use crate::state::State;

/// A workflow: what a transaction (or a background round) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workflow {
    Put,
    Get,
    Archive,
    Recall,
    Delete,
    Undelete,
    Evict,
    Purge,
}

impl Workflow {
    pub const ALL: [Workflow; 8] = [
        Workflow::Put,
        Workflow::Get,
        Workflow::Archive,
        Workflow::Recall,
        Workflow::Delete,
        Workflow::Undelete,
        Workflow::Evict,
        Workflow::Purge,
    ];

    /// The workflow a `route.<action>` submission starts (put, putlist, get, getlist).
    pub fn submitted(action: Action) -> Option<Workflow> {
        match action {
            Action::Put | Action::Putlist => Some(Workflow::Put),
            Action::Get | Action::Getlist => Some(Workflow::Get),
            _ => None,
        }
    }

    /// The workflow of a transaction recorded with `action`.
    pub fn of_api_action(action: ApiAction) -> Workflow {
        match action {
            ApiAction::Put | ApiAction::Putlist => Workflow::Put,
            ApiAction::Get | ApiAction::Getlist => Workflow::Get,
            ApiAction::ArchivePut => Workflow::Archive,
            ApiAction::ArchiveGet => Workflow::Recall,
            ApiAction::Del | ApiAction::Dellist => Workflow::Delete,
        }
    }

    /// The workflow the router sequences a completion of `step` in: every step the router sees
    /// belongs to exactly one workflow (`None`: the step's completions are not the router's).
    pub fn sequencing(step: Step) -> Option<Workflow> {
        match step {
            Step::Index | Step::CatalogCheck | Step::TransferPut | Step::CatalogPut => {
                Some(Workflow::Put)
            }
            Step::CatalogGet | Step::TransferGet => Some(Workflow::Get),
            Step::ArchiveNext | Step::ArchivePut | Step::ArchiveUpdate => Some(Workflow::Archive),
            Step::ArchiveGet => Some(Workflow::Recall),
            _ => None,
        }
    }

    /// The steps of this workflow, first to last (the removal steps last).
    pub fn steps(self) -> &'static [Step] {
        match self {
            Workflow::Put => &[
                Step::Submit,
                Step::Index,
                Step::CatalogCheck,
                Step::TransferPut,
                Step::CatalogPut,
            ],
            Workflow::Get => &[Step::Submit, Step::CatalogGet, Step::TransferGet],
            Workflow::Archive => &[Step::ArchiveNext, Step::ArchivePut, Step::ArchiveUpdate],
            Workflow::Recall => &[Step::ArchiveGet, Step::ArchiveUpdate],
            Workflow::Delete => &[Step::CatalogDelete],
            Workflow::Undelete => &[Step::CatalogUndelete],
            Workflow::Evict => &[Step::CatalogEvict, Step::TransferDel],
            Workflow::Purge => &[Step::CatalogPurge, Step::TransferDel, Step::ArchiveRemove],
        }
    }
}

/// One step: the work one worker does for the message sent on [`Step::key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// The submission (`route.<action>`), published by the API.
    Submit,
    Index,
    CatalogCheck,
    TransferPut,
    CatalogPut,
    CatalogGet,
    TransferGet,
    /// The catalogue plans an archive round (and sweeps deleted files past their retention).
    ArchiveNext,
    ArchivePut,
    ArchiveGet,
    /// The catalogue records an archive writer's or reader's report.
    ArchiveUpdate,
    /// The catalogue soft-deletes (`catalog.del`).
    CatalogDelete,
    /// The catalogue undeletes (`catalog.undelete`).
    CatalogUndelete,
    /// The catalogue drops warm copies that have a verified cold one (`catalog.evict`).
    CatalogEvict,
    /// The catalogue purges deleted files (`catalog.purge`).
    CatalogPurge,
    /// Warm objects are deleted (`transfer-del.start`).
    TransferDel,
    /// An aggregate is removed from the cold store (`archive-put.del`).
    ArchiveRemove,
}

impl Step {
    pub const ALL: [Step; 17] = [
        Step::Submit,
        Step::Index,
        Step::CatalogCheck,
        Step::TransferPut,
        Step::CatalogPut,
        Step::CatalogGet,
        Step::TransferGet,
        Step::ArchiveNext,
        Step::ArchivePut,
        Step::ArchiveGet,
        Step::ArchiveUpdate,
        Step::CatalogDelete,
        Step::CatalogUndelete,
        Step::CatalogEvict,
        Step::CatalogPurge,
        Step::TransferDel,
        Step::ArchiveRemove,
    ];

    /// The key the step's work is sent on (a submission's depends on its action: `route.put`...).
    pub fn key(self) -> RoutingKey {
        let (w, a) = match self {
            Step::Submit => (Worker::Route, Action::Put),
            Step::Index => (Worker::Index, Action::Start),
            Step::CatalogCheck => (Worker::CatalogCheck, Action::Start),
            Step::TransferPut => (Worker::TransferPut, Action::Start),
            Step::CatalogPut => (Worker::CatalogPut, Action::Start),
            Step::CatalogGet => (Worker::CatalogGet, Action::Start),
            Step::TransferGet => (Worker::TransferGet, Action::Start),
            Step::ArchiveNext => (Worker::CatalogArchiveNext, Action::Start),
            Step::ArchivePut => (Worker::ArchivePut, Action::Start),
            Step::ArchiveGet => (Worker::ArchiveGet, Action::Start),
            Step::ArchiveUpdate => (Worker::CatalogArchiveUpdate, Action::Start),
            Step::CatalogDelete => (Worker::Catalog, Action::Del),
            Step::CatalogUndelete => (Worker::Catalog, Action::Undelete),
            Step::CatalogEvict => (Worker::Catalog, Action::Evict),
            Step::CatalogPurge => (Worker::Catalog, Action::Purge),
            Step::TransferDel => (Worker::TransferDel, Action::Start),
            Step::ArchiveRemove => (Worker::ArchivePut, Action::Del),
        };
        RoutingKey::new(w, a)
    }

    /// The step whose completions (`<worker>.complete`, `<worker>.failed`) come from `worker`.
    pub fn completed_by(worker: Worker) -> Option<Step> {
        Some(match worker {
            Worker::Index => Step::Index,
            Worker::CatalogCheck => Step::CatalogCheck,
            Worker::TransferPut => Step::TransferPut,
            Worker::CatalogPut => Step::CatalogPut,
            Worker::CatalogGet => Step::CatalogGet,
            Worker::TransferGet => Step::TransferGet,
            Worker::CatalogArchiveNext => Step::ArchiveNext,
            Worker::ArchivePut => Step::ArchivePut,
            Worker::ArchiveGet => Step::ArchiveGet,
            Worker::CatalogArchiveUpdate => Step::ArchiveUpdate,
            Worker::TransferDel => Step::TransferDel,
            Worker::Route
            | Worker::Catalog
            | Worker::MonitorPut
            | Worker::Monitor
            | Worker::Log
            | Worker::Policy
            | Worker::StorageAudit => return None,
        })
    }
}

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepOutcome {
    /// It did its work (and, for a batch, files are left to carry on with).
    Done,
    /// It did its work but no file of the batch is left (all failed here or before), or, for a
    /// delete, nothing was deleted and something was refused.
    Emptied,
    /// It did its work and no file of the batch is left, but nothing failed: every file was
    /// skipped as unchanged (a put of paths the holding already has, docs/VERSIONS.md).
    Unchanged,
    /// It gave up (`<worker>.failed`).
    Failed,
    /// It split the message's files into batches, each a sub-record of its own that it sends on
    /// as its completion; the message's own sub-record stands for them from then on (see
    /// [`split`]).
    Split,
}

impl StepOutcome {
    pub const ALL: [StepOutcome; 5] = [
        StepOutcome::Done,
        StepOutcome::Emptied,
        StepOutcome::Unchanged,
        StepOutcome::Failed,
        StepOutcome::Split,
    ];
}

/// What follows a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Report this state of the message's sub-record to the monitor (`monitor-put.start`).
    Report(State),
    /// Send the message on to this step.
    Send(Step),
}

/// A step that has no successor in a workflow: a message the workflow never produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("workflow {workflow:?} has no step after {step:?} ({outcome:?})")]
pub struct NoStep {
    pub workflow: Workflow,
    pub step: Step,
    pub outcome: StepOutcome,
}

/// What follows `step` of `workflow` when it went `outcome`: the whole state machine.
pub fn next(workflow: Workflow, step: Step, outcome: StepOutcome) -> Result<Vec<Effect>, NoStep> {
    use Effect::{Report, Send};
    use StepOutcome::{Done, Emptied, Failed};
    let none = Err(NoStep {
        workflow,
        step,
        outcome,
    });
    if !workflow.steps().contains(&step) {
        return none;
    }
    let effects = match (workflow, step, outcome) {
        // The indexer and the catalogue's get resolution split a request into batches.
        (_, _, StepOutcome::Split) => vec![Report(split(workflow, step)?.parent)],
        // A put batch whose files were all skipped as unchanged is done.
        (Workflow::Put, Step::CatalogCheck | Step::TransferPut, StepOutcome::Unchanged) => {
            vec![Report(State::Complete)]
        }
        (_, _, StepOutcome::Unchanged) => return none,
        // A sub-record whose files all failed, or that gave up, ends FAILED (its failures are
        // recorded with it).
        (Workflow::Put | Workflow::Get, Step::Submit, Emptied | Failed) => return none,
        (Workflow::Put | Workflow::Get, _, Emptied | Failed) => vec![Report(State::Failed)],

        (Workflow::Put, Step::Submit, Done) => vec![Report(State::Indexing), Send(Step::Index)],
        (Workflow::Put, Step::Index, Done) => {
            vec![Report(State::CatalogPutting), Send(Step::CatalogCheck)]
        }
        (Workflow::Put, Step::CatalogCheck, Done) => {
            vec![Report(State::TransferPutting), Send(Step::TransferPut)]
        }
        (Workflow::Put, Step::TransferPut, Done) => {
            vec![Report(State::CatalogUpdating), Send(Step::CatalogPut)]
        }
        (Workflow::Put, Step::CatalogPut, Done) => vec![Report(State::Complete)],

        (Workflow::Get, Step::Submit, Done) => {
            vec![Report(State::CatalogGetting), Send(Step::CatalogGet)]
        }
        (Workflow::Get, Step::CatalogGet, Done) => {
            vec![Report(State::TransferGetting), Send(Step::TransferGet)]
        }
        (Workflow::Get, Step::TransferGet, Done) => vec![Report(State::Complete)],

        // Archiving and recalling: the writer's or reader's report goes to the catalogue,
        // success or failure; the catalogue's own bookkeeping ends there (an expired lease
        // releases the files). The round's planning starts the writers itself, with the
        // aggregates it packed; its purge sweep is a purge (below).
        (Workflow::Archive | Workflow::Recall, Step::ArchivePut | Step::ArchiveGet, _) => {
            vec![Send(Step::ArchiveUpdate)]
        }
        (Workflow::Archive, Step::ArchiveNext, _)
        | (Workflow::Archive | Workflow::Recall, Step::ArchiveUpdate, _) => vec![],

        // Delete: the catalogue soft-deletes in one transaction; the transaction ends COMPLETE,
        // or FAILED when nothing was deleted and something was refused. Copies go at the purge.
        (Workflow::Delete, Step::CatalogDelete, Done) => vec![Report(State::Complete)],
        (Workflow::Delete, Step::CatalogDelete, Emptied | Failed) => vec![Report(State::Failed)],
        // Undelete clears the marks: nothing follows.
        (Workflow::Undelete, Step::CatalogUndelete, _) => vec![],
        // Evict and purge: what the catalogue committed to forget is removed.
        (Workflow::Evict, Step::CatalogEvict, Done) => vec![Send(Step::TransferDel)],
        (Workflow::Purge, Step::CatalogPurge, Done) => {
            vec![Send(Step::TransferDel), Send(Step::ArchiveRemove)]
        }
        (Workflow::Evict | Workflow::Purge, Step::CatalogEvict | Step::CatalogPurge, _) => vec![],
        // Removals are the last steps.
        (_, Step::TransferDel | Step::ArchiveRemove, _) => vec![],
        _ => return none,
    };
    Ok(effects)
}

/// What a step that splits its message into batches reports (its [`StepOutcome::Split`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// The state of the message's own sub-record, which stands for its batches from then on.
    pub parent: State,
    /// The state each batch reports as it is made, with its file and byte counts (`None`: it
    /// reports nothing until its completion is routed).
    pub batch: Option<State>,
}

/// How `step` of `workflow` reports splitting its message into batches: the indexer's batches
/// show INDEXING until their completions are routed; the catalogue's get batches report first
/// when theirs is (TRANSFER_GETTING). Only these two steps split.
pub fn split(workflow: Workflow, step: Step) -> Result<Split, NoStep> {
    let batch = match (workflow, step) {
        (Workflow::Put, Step::Index) => Some(State::Indexing),
        (Workflow::Get, Step::CatalogGet) => None,
        _ => {
            return Err(NoStep {
                workflow,
                step,
                outcome: StepOutcome::Split,
            });
        }
    };
    Ok(Split {
        parent: State::Split,
        batch,
    })
}

/// The sub-record of part `part` of a request whose paths came in chunks: part 0 is the request's
/// own (its transaction id), every later one has a deterministic id of its own.
pub fn part_sub(transaction_id: uuid::Uuid, part: u32) -> uuid::Uuid {
    if part == 0 {
        transaction_id
    } else {
        crate::message::sub_id(transaction_id, "part", part as usize)
    }
}

/// The state a later part of a chunked request is registered in when the request is accepted,
/// before anything of it runs: ROUTING (not final, so the transaction cannot end before every
/// part has been split into its batches).
pub const fn part_queued() -> State {
    State::Routing
}

/// The state each part of a delete in chunks is recorded in, with its counts and the paths it
/// failed, as the catalogue deletes it: ROUTING, as a later part of a chunked put is registered
/// ([`part_queued`]): neither final nor a failure (CATALOG_DELETING would count as failed in
/// [`crate::state::derive`]). Every part is given the delete's one end state ([`next`] after
/// [`Step::CatalogDelete`], on the outcome of the whole delete) once the last part is done, in
/// the same database transaction, so a delete in parts ends as the same delete in one body would.
pub const fn part_deleting() -> State {
    part_queued()
}

/// The state a message's sub-record ends in when the bus gave up on it (its handler failed it
/// for good, or it does not decode) and no workflow step sequences its failure: FAILED, with the
/// files it failed.
pub const fn gave_up() -> State {
    State::Failed
}

/// The state a sub-record ends in when the catalogue finds its transaction cancelled (at
/// catalog-check, catalog-put or catalog-get, or waiting for a recall): CANCELLED, whatever step
/// it was at. Its files travel as failed with [`crate::ErrorCode::Cancelled`].
pub const fn cancelled() -> State {
    State::Cancelled
}

/// How a delete went, as its workflow sees it: nothing deleted and something refused or not found
/// is a failed delete ([`StepOutcome::Emptied`]).
pub fn delete_outcome(plan: &crate::api::DeletePlan) -> StepOutcome {
    if plan.files_total == 0 && plan.holdings.is_empty() && !plan.failed.is_empty() {
        StepOutcome::Emptied
    } else {
        StepOutcome::Done
    }
}

/// The key a submitted transaction of `action` starts on (`route.put`, `route.putlist`,
/// `route.get`, `route.getlist`): the first message of a put or get, which the catalogue stages
/// when it accepts the transaction. `None`: `action` is not submitted to the router.
pub fn submission_key(action: ApiAction) -> Option<RoutingKey> {
    let a = match action {
        ApiAction::Put => Action::Put,
        ApiAction::Putlist => Action::Putlist,
        ApiAction::Get => Action::Get,
        ApiAction::Getlist => Action::Getlist,
        ApiAction::Del | ApiAction::Dellist | ApiAction::ArchivePut | ApiAction::ArchiveGet => {
            return None;
        }
    };
    Some(RoutingKey::new(Worker::Route, a))
}

/// The request for an archive round now, the first message of the archive workflow: what the
/// archive scheduler and an operator (through the API) publish. Its transaction id names the
/// round.
pub fn archive_round() -> (RoutingKey, crate::Envelope) {
    let env = crate::Envelope::new(
        uuid::Uuid::new_v4(),
        "nlds",
        "nlds",
        ApiAction::ArchivePut,
        "archive-next",
        crate::Payload::ArchiveNext,
    );
    (Step::ArchiveNext.key(), env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submissions_start_the_put_and_get_workflows_only() {
        use ApiAction::*;
        for action in [
            Put, Putlist, Get, Getlist, ArchivePut, ArchiveGet, Del, Dellist,
        ] {
            match submission_key(action) {
                Some(key) => {
                    assert_eq!(key.worker, Worker::Route);
                    let w = Workflow::submitted(key.action).expect("a submitted workflow");
                    assert_eq!(w, Workflow::of_api_action(action), "{action:?}");
                }
                None => assert!(
                    !matches!(
                        Workflow::of_api_action(action),
                        Workflow::Put | Workflow::Get
                    ),
                    "{action:?} starts a put or get but has no submission key"
                ),
            }
        }
    }
    use Effect::{Report, Send};
    use StepOutcome::{Done, Emptied, Failed};

    /// The whole table, written out: every (workflow, step, outcome) not listed has no successor.
    fn expected(w: Workflow, s: Step, o: StepOutcome) -> Option<Vec<Effect>> {
        use Step::*;
        use Workflow as W;
        let fail = Some(vec![Report(State::Failed)]);
        let nothing = Some(vec![]);
        match (w, s, o) {
            (W::Put, Index, StepOutcome::Split) | (W::Get, CatalogGet, StepOutcome::Split) => {
                Some(vec![Report(State::Split)])
            }
            (_, _, StepOutcome::Split) => None,
            (W::Put, CatalogCheck | TransferPut, StepOutcome::Unchanged) => {
                Some(vec![Report(State::Complete)])
            }
            (_, _, StepOutcome::Unchanged) => None,
            (W::Put, Submit, Done) => Some(vec![Report(State::Indexing), Send(Index)]),
            (W::Put, Index, Done) => Some(vec![Report(State::CatalogPutting), Send(CatalogCheck)]),
            (W::Put, CatalogCheck, Done) => {
                Some(vec![Report(State::TransferPutting), Send(TransferPut)])
            }
            (W::Put, TransferPut, Done) => {
                Some(vec![Report(State::CatalogUpdating), Send(CatalogPut)])
            }
            (W::Put, CatalogPut, Done) => Some(vec![Report(State::Complete)]),
            (W::Put, Index | CatalogCheck | TransferPut | CatalogPut, Emptied | Failed) => fail,
            (W::Get, Submit, Done) => Some(vec![Report(State::CatalogGetting), Send(CatalogGet)]),
            (W::Get, CatalogGet, Done) => {
                Some(vec![Report(State::TransferGetting), Send(TransferGet)])
            }
            (W::Get, TransferGet, Done) => Some(vec![Report(State::Complete)]),
            (W::Get, CatalogGet | TransferGet, Emptied | Failed) => fail,
            (W::Archive, ArchiveNext, _) => nothing,
            (W::Archive, ArchivePut, _) => Some(vec![Send(ArchiveUpdate)]),
            (W::Recall, ArchiveGet, _) => Some(vec![Send(ArchiveUpdate)]),
            (W::Archive | W::Recall, ArchiveUpdate, _) => nothing,
            (W::Delete, CatalogDelete, Done) => Some(vec![Report(State::Complete)]),
            (W::Delete, CatalogDelete, _) => fail,
            (W::Undelete, CatalogUndelete, _) => nothing,
            (W::Evict, CatalogEvict, Done) => Some(vec![Send(TransferDel)]),
            (W::Evict, CatalogEvict, _) => nothing,
            (W::Purge, CatalogPurge, Done) => Some(vec![Send(TransferDel), Send(ArchiveRemove)]),
            (W::Purge, CatalogPurge, _) => nothing,
            (W::Evict | W::Purge, TransferDel, _) => nothing,
            (W::Purge, ArchiveRemove, _) => nothing,
            _ => None,
        }
    }

    #[test]
    fn every_combination_is_as_tabled() {
        let mut defined = 0;
        for w in Workflow::ALL {
            for s in Step::ALL {
                for o in StepOutcome::ALL {
                    let got = next(w, s, o);
                    match expected(w, s, o) {
                        Some(effects) => {
                            assert_eq!(got, Ok(effects), "{w:?} {s:?} {o:?}");
                            defined += 1;
                        }
                        None => assert_eq!(
                            got,
                            Err(NoStep {
                                workflow: w,
                                step: s,
                                outcome: o
                            }),
                            "{w:?} {s:?} {o:?}"
                        ),
                    }
                }
            }
        }
        assert_eq!(defined, 60);
    }

    #[test]
    fn every_workflow_sends_only_to_its_own_steps_and_ends() {
        for w in Workflow::ALL {
            for &s in w.steps() {
                for o in StepOutcome::ALL {
                    for e in next(w, s, o).unwrap_or_default() {
                        if let Send(to) = e {
                            assert!(w.steps().contains(&to), "{w:?}: {s:?} -> {to:?}");
                            assert_ne!(to, s, "{w:?}: {s:?} loops");
                        }
                    }
                }
            }
            // Following `Done` from the first step reaches every step (but the archive writer,
            // which the catalogue's round plan starts with the aggregates it packed, and the
            // catalogue's record of its report).
            let mut seen = vec![w.steps()[0]];
            let mut frontier = vec![w.steps()[0]];
            while let Some(s) = frontier.pop() {
                for e in next(w, s, Done).unwrap() {
                    if let Send(to) = e
                        && !seen.contains(&to)
                    {
                        seen.push(to);
                        frontier.push(to);
                    }
                }
            }
            for s in w.steps() {
                assert!(
                    seen.contains(s) || matches!(s, Step::ArchivePut | Step::ArchiveUpdate),
                    "{w:?}: {s:?} unreachable"
                );
            }
        }
    }

    /// Every (workflow, step): only the indexer and the catalogue's get resolution split, and
    /// [`next`] reports the split parent as [`split`] says.
    #[test]
    fn only_the_indexer_and_the_get_resolution_split() {
        for w in Workflow::ALL {
            for s in Step::ALL {
                let expected = match (w, s) {
                    (Workflow::Put, Step::Index) => Some(Some(State::Indexing)),
                    (Workflow::Get, Step::CatalogGet) => Some(None),
                    _ => None,
                };
                let got = split(w, s);
                match expected {
                    Some(batch) => {
                        assert_eq!(
                            got,
                            Ok(Split {
                                parent: State::Split,
                                batch
                            }),
                            "{w:?} {s:?}"
                        );
                        assert_eq!(
                            next(w, s, StepOutcome::Split),
                            Ok(vec![Report(State::Split)])
                        );
                    }
                    None => {
                        let no = NoStep {
                            workflow: w,
                            step: s,
                            outcome: StepOutcome::Split,
                        };
                        assert_eq!(got, Err(no), "{w:?} {s:?}");
                        assert_eq!(next(w, s, StepOutcome::Split), Err(no));
                    }
                }
            }
        }
        // An indexer batch shows the state its submission reported for the index step.
        assert_eq!(
            next(Workflow::Put, Step::Submit, Done).unwrap()[0],
            Report(split(Workflow::Put, Step::Index).unwrap().batch.unwrap())
        );
    }

    #[test]
    fn a_message_the_bus_gave_up_on_ends_failed_like_a_failed_step() {
        assert_eq!(gave_up(), State::Failed);
        assert!(gave_up().is_failed() && gave_up().is_final());
        assert_eq!(
            next(Workflow::Put, Step::Index, Failed),
            Ok(vec![Report(gave_up())])
        );
    }

    #[test]
    fn an_archive_round_request_is_the_archive_workflows_first_step() {
        let (k, e) = archive_round();
        assert_eq!(k.to_string(), "nlds-api.catalog-archive-next.start");
        assert_eq!(Workflow::Archive.steps()[0].key(), k);
        assert_eq!(Workflow::of_api_action(e.action), Workflow::Archive);
        assert_eq!((e.user.as_str(), e.group.as_str()), ("nlds", "nlds"));
        assert_eq!(e.job_label, "archive-next");
        assert!(matches!(e.payload, crate::Payload::ArchiveNext));
    }

    #[test]
    fn monitored_batches_that_fail_end_failed() {
        for w in [Workflow::Put, Workflow::Get] {
            for &s in &w.steps()[1..] {
                for o in [Emptied, Failed] {
                    assert_eq!(next(w, s, o), Ok(vec![Report(State::Failed)]));
                }
            }
        }
    }

    #[test]
    fn routed_steps_have_one_workflow_and_their_completion_worker() {
        for s in Step::ALL {
            if let Some(w) = Workflow::sequencing(s) {
                assert!(w.steps().contains(&s), "{s:?}");
                assert_eq!(Step::completed_by(s.key().worker), Some(s), "{s:?}");
            }
        }
        assert_eq!(Workflow::submitted(Action::Putlist), Some(Workflow::Put));
        assert_eq!(Workflow::submitted(Action::Getlist), Some(Workflow::Get));
        assert_eq!(Workflow::submitted(Action::Del), None);
        assert_eq!(
            Step::ArchiveRemove.key().to_string(),
            "nlds-api.archive-put.del"
        );
        assert_eq!(
            Step::TransferDel.key().to_string(),
            "nlds-api.transfer-del.start"
        );
    }
}
