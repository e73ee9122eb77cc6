//! What becomes of a sub-record's state outside the workflow's steps: how the monitor reads and
//! records it ([`read`], [`record`]), how it counts towards its transaction ([`Tally`]), and what
//! start-up recovery makes of it ([`interrupted`]).

use crate::state::{Derived, State, derive};

/// The state of a sub-record stored with the NLDS number `value`. A number no state has (written
/// by a newer version) reads as INITIALISING: in progress, so nothing takes it for finished.
/// (The workers' typed `sub_record.state` column refuses such a number with an error instead.)
pub fn read(value: i32) -> State {
    State::from_value(value).unwrap_or(State::Initialising)
}

/// The state a sub-record in `current` takes when `reported` arrives (`None`: it keeps `current`:
/// a late report never takes a finished sub-record back to work in progress).
pub fn record(current: State, reported: State) -> Option<State> {
    if current.is_final() && !reported.is_final() {
        None
    } else {
        Some(reported)
    }
}

/// Whether a sub-record in `state` stands for the batches its message was split into (SPLIT)
/// rather than for files: it repeats their counts, and a transaction with only such sub-records
/// is still queued.
pub fn stands_for_batches(state: State) -> bool {
    state == State::Split
}

/// What start-up recovery (embedded mode, whose in-process bus loses its messages when the
/// process stops) makes of a sub-record found in `state`: unfinished, it ends FAILED (`None`: it
/// had finished, and stays).
pub fn interrupted(state: State) -> Option<State> {
    if state.is_final() {
        None
    } else {
        Some(State::Failed)
    }
}

/// The state of the sub-record recovery adds to an interrupted transaction, whose failed "file"
/// says why: FAILED, like the sub-records it interrupted.
pub const fn interruption() -> State {
    State::Failed
}

/// A transaction's sub-records summed up: the states its own state is derived from, and its file
/// and byte counts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    states: Vec<State>,
    pub files_total: u64,
    pub files_done: u64,
    pub files_failed: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
}

impl Tally {
    /// Counts a sub-record's state only (what a filter on the derived state needs): a batch that
    /// finished with some files failed counts as one with errors too.
    pub fn add_state(&mut self, state: State, has_failed_files: bool) {
        self.states.push(state);
        if has_failed_files && !state.is_failed() {
            self.states.push(State::Failed);
        }
    }

    /// Counts a sub-record in `state` with `files` files of `bytes` bytes, and `failed_files`
    /// files that failed. A parent repeats its batches' counts and a failed sub-record's files
    /// are its failed files: neither adds its own; a complete one's are done.
    pub fn add(&mut self, state: State, files: u64, bytes: u64, failed_files: u64) {
        if !stands_for_batches(state) && !state.is_failed() {
            self.files_total += files;
            self.bytes_total += bytes;
        }
        if state == State::Complete {
            self.files_done += files;
            self.bytes_done += bytes;
        }
        self.files_failed += failed_files;
        self.files_total += failed_files;
        self.add_state(state, failed_files > 0);
    }

    /// Counts `moving` bytes of a sub-record in `state` with `bytes` bytes as done: the bytes a
    /// transfer role reported moved of a batch it is still transferring. Only while the batch
    /// is not final (a final one counts by its state alone), and never more than its `bytes`.
    pub fn add_moving(&mut self, state: State, bytes: u64, moving: u64) {
        if !state.is_final() && !state.is_failed() && !stands_for_batches(state) {
            self.bytes_done += moving.min(bytes);
        }
    }

    /// The transaction's state and the share of its sub-records that are complete (see
    /// [`derive()`]).
    pub fn derive(&self, has_warnings: bool) -> Derived {
        derive(&self.states, has_warnings)
    }

    /// How far the transaction is, in percent, from its counts: bytes done of its bytes when it
    /// has bytes to move, otherwise files done of its files; rounded down, so 100 means all
    /// done. `None` while nothing is counted yet (its sub-records' share, [`Tally::derive`],
    /// is all there is).
    pub fn percent(&self) -> Option<u8> {
        let (done, total) = if self.bytes_total > 0 {
            (self.bytes_done, self.bytes_total)
        } else {
            (self.files_done, self.files_total)
        };
        if total == 0 {
            return None;
        }
        let p = u128::from(done.min(total)) * 100 / u128::from(total);
        Some(u8::try_from(p).unwrap_or(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_numbers_read_as_their_state_and_unknown_ones_as_in_progress() {
        for s in State::ALL {
            assert_eq!(read(s.value()), s);
        }
        for v in [-2, 5, 42, 999, 1001, i32::MIN, i32::MAX] {
            assert_eq!(read(v), State::Initialising, "{v}");
            assert!(!read(v).is_final());
        }
    }

    /// Every pair of states: a report is recorded unless it takes a finished sub-record back.
    #[test]
    fn every_report_is_recorded_but_a_late_one() {
        let finals = [
            State::Complete,
            State::Failed,
            State::CompleteWithErrors,
            State::CompleteWithWarnings,
            State::Cancelled,
            State::Split,
        ];
        for current in State::ALL {
            for reported in State::ALL {
                let late = finals.contains(&current) && !finals.contains(&reported);
                let expected = if late { None } else { Some(reported) };
                assert_eq!(
                    record(current, reported),
                    expected,
                    "{current} <- {reported}"
                );
            }
        }
    }

    /// Every state: recovery fails exactly the unfinished ones, into the interruption's state.
    #[test]
    fn recovery_fails_every_unfinished_state() {
        use State::*;
        for s in State::ALL {
            let expected = match s {
                Complete | Failed | CompleteWithErrors | CompleteWithWarnings | Cancelled
                | Split => None,
                _ => Some(Failed),
            };
            assert_eq!(interrupted(s), expected, "{s}");
            if let Some(to) = interrupted(s) {
                assert_eq!(interrupted(to), None, "{s} ends final");
                assert_eq!(to, interruption());
            }
        }
        assert!(interruption().is_failed());
    }

    #[test]
    fn only_split_parents_stand_for_batches() {
        for s in State::ALL {
            assert_eq!(stands_for_batches(s), s == State::Split, "{s}");
        }
    }

    /// Every state, with and without failed files: what a sub-record adds to its transaction.
    #[test]
    fn every_sub_record_counts_as_tabled() {
        use State::*;
        for s in State::ALL {
            for failed in [0, 2] {
                let mut t = Tally::default();
                t.add(s, 10, 100, failed);
                let own = !matches!(s, Split | Failed | CatalogDeleting | CatalogRemoving);
                let done = s == Complete;
                assert_eq!(
                    (t.files_total, t.bytes_total),
                    (if own { 10 } else { 0 } + failed, if own { 100 } else { 0 }),
                    "{s} {failed}"
                );
                assert_eq!(
                    (t.files_done, t.bytes_done, t.files_failed),
                    (
                        if done { 10 } else { 0 },
                        if done { 100 } else { 0 },
                        failed
                    ),
                    "{s} {failed}"
                );
                let errors = failed > 0 && !matches!(s, Failed | CatalogDeleting | CatalogRemoving);
                let expected: Vec<State> = if errors { vec![s, Failed] } else { vec![s] };
                assert_eq!(t.states, expected, "{s} {failed}");
                let mut only = Tally::default();
                only.add_state(s, failed > 0);
                assert_eq!(only.states, t.states, "{s} {failed}");
                for warn in [false, true] {
                    assert_eq!(t.derive(warn), derive(&expected, warn), "{s} {failed}");
                }
            }
        }
    }

    #[test]
    fn a_transaction_tallies_its_sub_records() {
        let mut t = Tally::default();
        t.add(State::Split, 30, 300, 0);
        t.add(State::Complete, 10, 100, 0);
        t.add(State::Complete, 10, 100, 1);
        t.add(State::TransferPutting, 10, 100, 0);
        assert_eq!((t.files_total, t.files_done, t.files_failed), (31, 20, 1));
        assert_eq!((t.bytes_total, t.bytes_done), (300, 200));
        assert_eq!(t.derive(false).state, State::TransferPutting);
        let mut t = Tally::default();
        t.add(State::Complete, 1, 1, 1);
        assert_eq!(t.derive(false).state, State::CompleteWithErrors);
        assert_eq!(Tally::default().derive(true).state, State::Searching);
    }

    /// Bytes reported moved count while a batch is in flight, within its bytes, and never for
    /// a final (or parent) sub-record, whose state alone says what is done.
    #[test]
    fn moving_bytes_count_as_done_only_while_a_batch_is_in_flight() {
        use State::*;
        for s in State::ALL {
            let mut t = Tally::default();
            t.add(s, 10, 100, 0);
            let before = t.bytes_done;
            t.add_moving(s, 100, 40);
            let in_flight = !s.is_final() && !s.is_failed() && s != Split;
            assert_eq!(t.bytes_done, before + if in_flight { 40 } else { 0 }, "{s}");
        }
        let mut t = Tally::default();
        t.add(TransferPutting, 10, 100, 0);
        t.add_moving(TransferPutting, 100, 250);
        assert_eq!(t.bytes_done, 100, "capped at the batch's bytes");
    }

    /// 1 file of 308 done, in two batches: about 0 %, not the 50 % of one batch of two.
    #[test]
    fn the_percentage_counts_bytes_then_files_not_batches() {
        let mut t = Tally::default();
        t.add(State::Complete, 1, 1 << 20, 0);
        t.add(State::TransferPutting, 307, 307 << 20, 0);
        assert_eq!(t.derive(false).percent, 50, "what batches alone would say");
        assert_eq!(t.percent(), Some(0));
        t.add_moving(State::TransferPutting, 307 << 20, 153 << 20);
        assert_eq!(t.percent(), Some(50), "154 MiB of 308 MiB");
        // Empty files only: files done of files.
        let mut t = Tally::default();
        t.add(State::Complete, 1, 0, 0);
        t.add(State::TransferPutting, 3, 0, 0);
        assert_eq!(t.percent(), Some(25));
        // Nothing counted yet (queued, indexing): no percentage from counts.
        let mut t = Tally::default();
        t.add(State::Indexing, 0, 0, 0);
        assert_eq!(t.percent(), None);
        // All done: 100, never more.
        let mut t = Tally::default();
        t.add(State::Complete, 308, 308 << 20, 0);
        assert_eq!(t.percent(), Some(100));
    }
}
