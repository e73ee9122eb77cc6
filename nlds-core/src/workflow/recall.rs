//! A recall's phases: what archive-get reports while it brings an aggregate back from the cold
//! store ([`Payload::RecallProgress`](crate::Payload::RecallProgress)), and what the get batches
//! waiting for it show.

use crate::state::State;

/// How far a recall of an aggregate has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecallPhase {
    /// Registered, or taken up by archive-get and waiting for the cold store to stage it.
    Staging,
    /// Staged, and being read back.
    Reading,
}

impl RecallPhase {
    pub const ALL: [RecallPhase; 2] = [RecallPhase::Staging, RecallPhase::Reading];

    /// The state the get batches waiting for the recall show in this phase, and that archive-get
    /// reports the phase with: ARCHIVE_PREPARING while staging, ARCHIVE_GETTING while reading.
    pub const fn state(self) -> State {
        match self {
            RecallPhase::Staging => State::ArchivePreparing,
            RecallPhase::Reading => State::ArchiveGetting,
        }
    }

    /// The phase archive-get reported with `state` (`None`: a state no phase reports).
    pub fn reported(state: State) -> Option<RecallPhase> {
        RecallPhase::ALL.into_iter().find(|p| p.state() == state)
    }

    /// The state the waiting batches move to when archive-get reports this phase (`None`: they
    /// show it already, since the catalogue registered them in it).
    pub const fn batch_update(self) -> Option<State> {
        match self {
            RecallPhase::Staging => None,
            RecallPhase::Reading => Some(self.state()),
        }
    }
}

/// The state a get batch waiting for a recall is registered in: the first phase's.
pub const fn registered() -> State {
    RecallPhase::Staging.state()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_has_its_state_and_update() {
        let table = [
            (RecallPhase::Staging, State::ArchivePreparing, None),
            (
                RecallPhase::Reading,
                State::ArchiveGetting,
                Some(State::ArchiveGetting),
            ),
        ];
        assert_eq!(table.len(), RecallPhase::ALL.len());
        for (p, state, update) in table {
            assert_eq!(p.state(), state, "{p:?}");
            assert_eq!(p.batch_update(), update, "{p:?}");
            assert_eq!(RecallPhase::reported(state), Some(p));
        }
        assert_eq!(registered(), State::ArchivePreparing);
    }

    /// Every state: only the phases' own states are recall reports.
    #[test]
    fn only_the_phases_states_are_reported() {
        for s in State::ALL {
            let expected = match s {
                State::ArchivePreparing => Some(RecallPhase::Staging),
                State::ArchiveGetting => Some(RecallPhase::Reading),
                _ => None,
            };
            assert_eq!(RecallPhase::reported(s), expected, "{s}");
        }
    }

    /// Batches registered in the first phase are told of every later phase, and of nothing they
    /// show already.
    #[test]
    fn waiting_batches_are_told_each_change() {
        let mut shown = registered();
        for p in RecallPhase::ALL {
            match p.batch_update() {
                Some(s) => {
                    assert_ne!(s, shown, "{p:?}");
                    shown = s;
                }
                None => assert_eq!(p.state(), shown, "{p:?}"),
            }
        }
    }
}
