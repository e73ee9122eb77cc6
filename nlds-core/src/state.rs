//! Transaction states, with the NLDS names and numbers, and the derivation of a transaction's state
//! from its sub-records.

use std::str::FromStr;

/// The state of a sub-record (one batch of a transaction) or, derived, of a whole transaction.
///
/// Names and numbers are those of CEDA's NLDS (`nlds/rabbit/state.py`), so `/api/1.0.0` clients
/// understand them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
    strum::FromRepr,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE", const_into_str)]
#[repr(i32)]
#[cfg_attr(
    feature = "db",
    derive(sea_orm::DeriveActiveEnum, strum::EnumIter),
    sea_orm(rs_type = "i32", db_type = "Integer")
)]
pub enum State {
    Initialising = -1,
    Routing = 0,
    Splitting = 1,
    Indexing = 2,
    CatalogPutting = 3,
    TransferPutting = 4,
    CatalogGetting = 10,
    ArchiveGetting = 11,
    TransferGetting = 12,
    TransferInit = 13,
    ArchiveInit = 20,
    ArchivePutting = 21,
    ArchivePreparing = 22,
    CatalogDeleting = 30,
    CatalogUpdating = 31,
    CatalogArchiveUpdating = 32,
    CatalogRemoving = 33,
    Complete = 100,
    Failed = 101,
    CompleteWithErrors = 102,
    CompleteWithWarnings = 103,
    /// Not an NLDS state: the transaction was cancelled (`POST .../cancel`); the work it had
    /// not done was dropped. `/api/1.0.0` shows it as FAILED with the reason "cancelled".
    Cancelled = 104,
    Split = 110,
    Searching = 1000,
}

impl State {
    /// Every state, in numeric order.
    pub const ALL: [State; 24] = crate::variants();

    /// The NLDS number.
    pub const fn value(self) -> i32 {
        self as i32
    }

    /// The NLDS name, e.g. `TRANSFER_PUTTING`.
    pub const fn name(self) -> &'static str {
        self.into_str()
    }

    /// Looks a state up by its NLDS number.
    pub const fn from_value(v: i32) -> Option<State> {
        State::from_repr(v)
    }

    /// A sub-record in this state will not change any more.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            State::Complete
                | State::Failed
                | State::CompleteWithErrors
                | State::CompleteWithWarnings
                | State::Cancelled
                | State::Split
        )
    }

    /// The transaction ended and the user's files are not (all) where they asked.
    pub const fn is_failed(self) -> bool {
        matches!(
            self,
            State::Failed | State::CatalogDeleting | State::CatalogRemoving
        )
    }
}

/// An unknown state name or number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a state; states are named like COMPLETE or numbered like 100")]
pub struct UnknownState(pub String);

impl FromStr for State {
    type Err = UnknownState;
    /// Accepts the exact NLDS name, or its number.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(st) = State::ALL.iter().copied().find(|st| st.name() == s) {
            return Ok(st);
        }
        s.trim()
            .parse::<i32>()
            .ok()
            .and_then(State::from_value)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

impl serde::Serialize for State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for State {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Name(String),
            Number(i32),
        }
        match Repr::deserialize(d)? {
            Repr::Name(n) => n.parse().map_err(serde::de::Error::custom),
            Repr::Number(v) => State::from_value(v)
                .ok_or_else(|| serde::de::Error::custom(UnknownState(v.to_string()))),
        }
    }
}

/// The derived state of a transaction and how far it has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Derived {
    pub state: State,
    /// `ceil(100 * complete / non-split sub-records)`, as the NLDS client computes it.
    pub percent: u8,
}

/// Derives a transaction's state from its sub-records' states, as NLDS does:
///
/// * no sub-records: `SEARCHING` (shown to users as QUEUED);
/// * otherwise the minimum state over the sub-records, ignoring `SPLIT` parents;
/// * if that minimum is `COMPLETE` and some sub-record `FAILED`: `COMPLETE_WITH_ERRORS`;
/// * if every sub-record failed: `FAILED`;
/// * if it is still `COMPLETE` and the transaction has warnings: `COMPLETE_WITH_WARNINGS`;
/// * once every sub-record is final, `CANCELLED` if any of them was cancelled (what was done
///   before the cancel stays done, and is counted).
pub fn derive(sub_states: &[State], has_warnings: bool) -> Derived {
    let live: Vec<State> = sub_states
        .iter()
        .copied()
        .filter(|s| *s != State::Split)
        .collect();
    if live.is_empty() {
        return Derived {
            state: State::Searching,
            percent: 0,
        };
    }
    let complete = live.iter().filter(|s| **s == State::Complete).count();
    let failed = live.iter().filter(|s| s.is_failed()).count();
    let percent = (100 * complete).div_ceil(live.len()) as u8;
    if live.contains(&State::Cancelled) && live.iter().all(|s| s.is_final() || s.is_failed()) {
        return Derived {
            state: State::Cancelled,
            percent,
        };
    }
    let min = live
        .iter()
        .copied()
        .min_by_key(|s| s.value())
        .unwrap_or(State::Searching);
    let state = if failed == live.len() {
        State::Failed
    } else if min == State::Complete && failed > 0 {
        State::CompleteWithErrors
    } else if min.is_failed() {
        // Some sub-records failed in a failure state below COMPLETE and the rest are done.
        if live.iter().all(|s| s.is_final() || s.is_failed()) {
            State::CompleteWithErrors
        } else {
            live.iter()
                .copied()
                .filter(|s| !s.is_failed())
                .min_by_key(|s| s.value())
                .unwrap_or(State::Failed)
        }
    } else if min == State::Complete && has_warnings {
        State::CompleteWithWarnings
    } else {
        min
    };
    Derived { state, percent }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    #[test]
    fn names_and_numbers_are_the_nlds_ones() {
        let expected = [
            (-1, "INITIALISING"),
            (0, "ROUTING"),
            (1, "SPLITTING"),
            (2, "INDEXING"),
            (3, "CATALOG_PUTTING"),
            (4, "TRANSFER_PUTTING"),
            (10, "CATALOG_GETTING"),
            (11, "ARCHIVE_GETTING"),
            (12, "TRANSFER_GETTING"),
            (13, "TRANSFER_INIT"),
            (20, "ARCHIVE_INIT"),
            (21, "ARCHIVE_PUTTING"),
            (22, "ARCHIVE_PREPARING"),
            (30, "CATALOG_DELETING"),
            (31, "CATALOG_UPDATING"),
            (32, "CATALOG_ARCHIVE_UPDATING"),
            (33, "CATALOG_REMOVING"),
            (100, "COMPLETE"),
            (101, "FAILED"),
            (102, "COMPLETE_WITH_ERRORS"),
            (103, "COMPLETE_WITH_WARNINGS"),
            (104, "CANCELLED"),
            (110, "SPLIT"),
            (1000, "SEARCHING"),
        ];
        assert_eq!(State::ALL.len(), expected.len());
        for (st, (v, n)) in State::ALL.iter().zip(expected) {
            assert_eq!((st.value(), st.name()), (v, n));
            assert_eq!(n.parse::<State>().unwrap(), *st);
            assert_eq!(v.to_string().parse::<State>().unwrap(), *st);
            assert_eq!(serde_json::to_string(st).unwrap(), format!("\"{n}\""));
            assert_eq!(serde_json::from_str::<State>(&v.to_string()).unwrap(), *st);
        }
        assert!("complete".parse::<State>().is_err());
        assert!("42".parse::<State>().is_err());
    }

    #[test]
    fn no_sub_records_is_searching() {
        assert_eq!(
            derive(&[], false),
            Derived {
                state: Searching,
                percent: 0
            }
        );
        assert_eq!(derive(&[Split], true).state, Searching);
    }

    #[test]
    fn in_progress_is_the_minimum_state() {
        assert_eq!(
            derive(&[Complete, TransferPutting, Indexing], false).state,
            Indexing
        );
        assert_eq!(
            derive(&[Complete, TransferPutting, Indexing], false).percent,
            34
        );
        assert_eq!(
            derive(&[Split, TransferPutting], false).state,
            TransferPutting
        );
    }

    #[test]
    fn finished_transactions() {
        assert_eq!(
            derive(&[Complete, Complete], false),
            Derived {
                state: Complete,
                percent: 100
            }
        );
        assert_eq!(derive(&[Complete, Split], true).state, CompleteWithWarnings);
        assert_eq!(
            derive(&[Complete, Failed], false),
            Derived {
                state: CompleteWithErrors,
                percent: 50
            }
        );
        assert_eq!(derive(&[Complete, Failed], true).state, CompleteWithErrors);
        assert_eq!(
            derive(&[Failed, Failed], false),
            Derived {
                state: Failed,
                percent: 0
            }
        );
        assert_eq!(derive(&[CatalogRemoving], false).state, Failed);
    }

    #[test]
    fn a_cancelled_transaction_ends_cancelled_once_nothing_runs() {
        assert_eq!(
            derive(&[Complete, Cancelled, Failed], false),
            Derived {
                state: Cancelled,
                percent: 34
            }
        );
        assert_eq!(derive(&[Cancelled], true).state, Cancelled);
        // A batch still running keeps the transaction running.
        assert_eq!(
            derive(&[Cancelled, TransferPutting], false).state,
            TransferPutting
        );
    }

    #[test]
    fn a_failure_does_not_hide_work_still_in_progress() {
        assert_eq!(
            derive(&[Failed, TransferPutting], false).state,
            TransferPutting
        );
        assert_eq!(
            derive(&[CatalogRemoving, Complete], false).state,
            CompleteWithErrors
        );
    }

    /// Every pair of sub-record states gives a state that is final iff both are final.
    #[test]
    fn derivation_is_total_and_consistent() {
        for a in State::ALL {
            for b in State::ALL {
                if a == Searching || b == Searching {
                    continue; // a sentinel, never stored on a sub-record
                }
                for warn in [false, true] {
                    let d = derive(&[a, b], warn);
                    let both_done = [a, b].iter().all(|s| s.is_final() || s.is_failed());
                    if a == Split && b == Split {
                        assert_eq!(d.state, Searching);
                        continue;
                    }
                    assert_eq!(
                        d.state.is_final(),
                        both_done,
                        "{a} + {b} (warnings {warn}) derived {}",
                        d.state
                    );
                    assert!(d.percent <= 100);
                }
            }
        }
    }
}
