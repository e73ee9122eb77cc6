//! Why an unfinished batch has not moved: what `nlds stat` and the API show for each sub-record
//! that is not final (docs/WAITING.md), and what the admin view filters by.
//!
//! The monitor works the reason out when it answers, from what is recorded, so it is never stale:
//! the transaction's cancel (`submission`), the recall a get batch joined (`recall_request`,
//! `recall`, `aggregation`), the last retry the bus runtime reported for the batch
//! ([`Retrying`], on its sub-record until its state changes), else the step its state names.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ErrorCode;
use crate::state::State;

/// A step of a batch failed on a transient fault and is tried again: `retry` of `of`, due at
/// `next_try`, after `code`: `error`. Sent by the bus runtime with its retry warning
/// ([`crate::Payload::Warning`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Retrying {
    /// The worker whose step is retried (`transfer-put`, `index`, ...).
    pub step: String,
    pub retry: u32,
    pub of: u32,
    pub next_try: DateTime<Utc>,
    pub code: ErrorCode,
    /// The error of the failed try (at most [`crate::workflow::retry_note::MESSAGE_MAX`] bytes).
    pub error: String,
}

/// Why a sub-record that is not final has not moved yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Waiting {
    /// Queued for (or being worked on by) `step`, the one its state names, since `since` (its
    /// last update). The position in the queue is not known: a broker does not tell it.
    Queued {
        step: String,
        since: DateTime<Utc>,
        /// The step's role is drained for maintenance ([`crate::drain`]): it takes no work until
        /// an operator resumes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drained: Option<crate::drain::RoleDrain>,
    },
    /// A step failed on a transient fault and is tried again (see [`Retrying`]).
    Retrying(Retrying),
    /// A get batch waiting for the cold store to stage `aggregate`, requested at `since`;
    /// `staging`: archive-get has taken the recall up (else it waits for a free slot).
    Tape {
        aggregate: String,
        since: DateTime<Utc>,
        staging: bool,
    },
    /// The transaction was cancelled at `since`; the batch ends CANCELLED at its next step.
    Cancelled { since: DateTime<Utc> },
}

/// The kinds of [`Waiting`], for filters (`GET /api/v2/admin/transactions?waiting=tape,retrying`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum WaitingReason {
    Queued,
    Retrying,
    Tape,
    Cancelled,
}

impl WaitingReason {
    pub const ALL: [WaitingReason; 4] = crate::variants();
}

impl Waiting {
    pub fn reason(&self) -> WaitingReason {
        match self {
            Waiting::Queued { .. } => WaitingReason::Queued,
            Waiting::Retrying(_) => WaitingReason::Retrying,
            Waiting::Tape { .. } => WaitingReason::Tape,
            Waiting::Cancelled { .. } => WaitingReason::Cancelled,
        }
    }

    /// One line for people, times written by `time`: "waiting for the tape stage of aggregate
    /// X (staging since T)", "retry 2 of 4 of transfer-put at T after unavailable: ...".
    pub fn describe(&self, time: impl Fn(&DateTime<Utc>) -> String) -> String {
        match self {
            Waiting::Queued {
                step,
                since,
                drained: None,
            } => {
                format!(
                    "queued for {step} (or being worked on) since {}",
                    time(since)
                )
            }
            Waiting::Queued {
                step,
                since,
                drained: Some(d),
            } => format!(
                "queued for {step} since {}; {} is drained for maintenance (since {} by {}{}) and \
                 takes no work until an operator resumes it",
                time(since),
                d.role,
                time(&d.since),
                d.by,
                d.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            Waiting::Retrying(r) => format!(
                "retry {} of {} of {} at {} after {}: {}",
                r.retry,
                r.of,
                r.step,
                time(&r.next_try),
                r.code.as_str(),
                r.error
            ),
            Waiting::Tape {
                aggregate,
                since,
                staging,
            } => format!(
                "waiting for the tape stage of aggregate {aggregate} ({} since {})",
                if *staging {
                    "staging"
                } else {
                    "queued for a staging slot"
                },
                time(since)
            ),
            Waiting::Cancelled { since } => {
                format!("cancelled at {}: ends at its next step", time(since))
            }
        }
    }
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)))
    }
}

/// The role that does `step` (a name [`step_of`] gives).
pub fn role_of_step(step: &str) -> Option<crate::Role> {
    use crate::Role;
    Some(match step {
        "router" => Role::Router,
        "index" => Role::Indexer,
        "catalog" => Role::Catalogue,
        "transfer-put" => Role::TransferPut,
        "transfer-get" => Role::TransferGet,
        "archive-put" => Role::ArchivePut,
        "archive-get" => Role::ArchiveGet,
        _ => return None,
    })
}

/// The step a batch in `state` waits for; `None` for final states.
pub fn step_of(state: State) -> Option<&'static str> {
    use State::*;
    Some(match state {
        Initialising | Routing | Splitting => "router",
        Indexing => "index",
        CatalogPutting
        | CatalogGetting
        | CatalogDeleting
        | CatalogUpdating
        | CatalogArchiveUpdating
        | CatalogRemoving
        | Searching => "catalog",
        TransferPutting => "transfer-put",
        TransferGetting | TransferInit => "transfer-get",
        ArchiveInit | ArchivePutting => "archive-put",
        ArchiveGetting | ArchivePreparing => "archive-get",
        Complete | Failed | CompleteWithErrors | CompleteWithWarnings | Cancelled | Split => {
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn every_unfinished_state_names_a_step_and_no_final_one_does() {
        for s in State::ALL {
            assert_eq!(step_of(s).is_none(), s.is_final(), "{s}");
        }
    }

    #[test]
    fn reasons_are_tagged_on_the_wire_and_read_by_people() {
        let t = at("2026-12-06T12:01:07Z");
        let tape = Waiting::Tape {
            aggregate: "nlds.abc.tar".into(),
            since: t,
            staging: true,
        };
        let json = serde_json::to_value(&tape).unwrap();
        assert_eq!(json["reason"], "tape");
        assert_eq!(json["aggregate"], "nlds.abc.tar");
        assert_eq!(serde_json::from_value::<Waiting>(json).unwrap(), tape);
        assert_eq!(
            tape.to_string(),
            "waiting for the tape stage of aggregate nlds.abc.tar (staging since 2026-12-06T12:01:07Z)"
        );
        let retry = Waiting::Retrying(Retrying {
            step: "transfer-put".into(),
            retry: 2,
            of: 4,
            next_try: t,
            code: ErrorCode::Unavailable,
            error: "cannot reach S3".into(),
        });
        let json = serde_json::to_value(&retry).unwrap();
        assert_eq!(json["reason"], "retrying");
        assert_eq!(json["retry"], 2);
        assert_eq!(serde_json::from_value::<Waiting>(json).unwrap(), retry);
        assert_eq!(
            retry.describe(|t| t.format("%H:%M:%SZ").to_string()),
            "retry 2 of 4 of transfer-put at 12:01:07Z after unavailable: cannot reach S3"
        );
        for (w, r) in [
            (&tape, WaitingReason::Tape),
            (&retry, WaitingReason::Retrying),
        ] {
            assert_eq!(w.reason(), r);
        }
        assert_eq!(
            "tape".parse::<WaitingReason>().unwrap(),
            WaitingReason::Tape
        );
        assert!("stuck".parse::<WaitingReason>().is_err());
    }

    #[test]
    fn every_step_is_done_by_a_role_that_can_be_drained() {
        for s in State::ALL {
            if let Some(step) = step_of(s) {
                let role = role_of_step(step).unwrap_or_else(|| panic!("{step}"));
                assert!(crate::drain::check_drainable(role).is_ok(), "{step}");
            }
        }
    }

    #[test]
    fn a_batch_queued_for_a_drained_role_says_so() {
        let t = at("2026-12-06T12:01:07Z");
        let mut q = Waiting::Queued {
            step: "transfer-put".into(),
            since: t,
            drained: None,
        };
        assert!(
            !serde_json::to_value(&q)
                .unwrap()
                .as_object()
                .unwrap()
                .contains_key("drained")
        );
        if let Waiting::Queued { drained, .. } = &mut q {
            *drained = Some(crate::drain::RoleDrain {
                role: "transfer-put".into(),
                since: t,
                by: "op".into(),
                reason: Some("disk swap".into()),
            });
        }
        assert_eq!(q.reason(), WaitingReason::Queued);
        assert_eq!(
            q.to_string(),
            "queued for transfer-put since 2026-12-06T12:01:07Z; transfer-put is drained for \
             maintenance (since 2026-12-06T12:01:07Z by op: disk swap) and takes no work until \
             an operator resumes it"
        );
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(json["drained"]["by"], "op");
        assert_eq!(serde_json::from_value::<Waiting>(json).unwrap(), q);
    }
}
