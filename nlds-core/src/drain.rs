//! Draining a role for maintenance: `nlds admin drain ROLE` stops every process of the role
//! taking new work (what each has in hand finishes), `nlds admin resume ROLE` lets them take it
//! again; messages for a drained role wait in its queue meanwhile (docs/ADMIN.md, "Draining a
//! role").
//!
//! Only the roles that take queued work can be drained ([`check_drainable`]). The drained roles
//! are recorded by the monitor (`monitor.admin`, [`DrainRequest`]), so a drain
//! outlasts restarts of the role's processes and of the monitor; every worker process learns of
//! a change from an announcement on the changes fanout ([`crate::Change::drains`]) and asks the
//! monitor again now and then, in case it missed one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Role;

/// Longest reason kept with a drain (longer ones are refused).
pub const REASON_MAX: usize = 500;

/// Why `role` cannot be drained, if it cannot: only the roles that take queued work can. A role
/// that answers requests (`catalogue-rpc`, `monitor-rpc`, `policy`, `storage-audit`) has no
/// work to hold back: draining it would only make those requests time out (and `monitor-rpc`
/// answers drain and resume themselves).
pub fn check_drainable(role: Role) -> Result<(), String> {
    if role.is_rpc() {
        return Err(format!(
            "{role} cannot be drained: it answers requests rather than taking queued work, so \
             draining it would only make them time out (stop its processes instead)"
        ));
    }
    Ok(())
}

/// Parses a role's command-line name, or says which names there are.
pub fn parse_role(name: &str) -> Result<Role, String> {
    name.parse().map_err(|_| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown role {name:?}: use one of {}", names.join(", "))
    })
}

/// What an operator asks of the drained roles (`monitor.admin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainRequest {
    /// The roles drained now.
    List,
    /// Drain `role` (draining a drained role keeps its first time, by and reason).
    Drain {
        role: Role,
        by: String,
        reason: Option<String>,
    },
    /// Let `role` take work again (resuming a role that is not drained changes nothing).
    Resume { role: Role },
}

/// One drained role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleDrain {
    /// The role's command-line name (`transfer-put`, ...).
    pub role: String,
    /// When it was drained.
    pub since: DateTime<Utc>,
    /// The operator who drained it.
    pub by: String,
    pub reason: Option<String>,
}

impl RoleDrain {
    /// The role, if its name is one this version knows.
    pub fn role(&self) -> Option<Role> {
        self.role.parse().ok()
    }
}

/// The roles drained now: the answer to every [`DrainRequest`] and the body of
/// `GET /api/v2/admin/drains`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Drains {
    pub drained: Vec<RoleDrain>,
}

impl Drains {
    /// Whether `role` is drained.
    pub fn contains(&self, role: Role) -> bool {
        self.drained.iter().any(|d| d.role() == Some(role))
    }

    /// The drain of `role`, if it is drained.
    pub fn of(&self, role: Role) -> Option<&RoleDrain> {
        self.drained.iter().find(|d| d.role() == Some(role))
    }
}

/// The body of `POST /api/v2/admin/drains/{role}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainBody {
    /// Why (shown with the drain, e.g. "tape library maintenance until 14:00").
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roles_that_take_queued_work_can_be_drained_and_those_answering_requests_cannot() {
        for &r in Role::ALL {
            assert_eq!(check_drainable(r).is_ok(), !r.is_rpc(), "{r}");
        }
        for r in [
            Role::MonitorRpc,
            Role::CatalogueRpc,
            Role::Policy,
            Role::StorageAudit,
        ] {
            let why = check_drainable(r).unwrap_err();
            assert!(
                why.contains(r.as_str()) && why.contains("answers requests"),
                "{why}"
            );
        }
        assert!(check_drainable(Role::TransferPut).is_ok());
    }

    #[test]
    fn an_unknown_role_names_the_known_ones() {
        assert_eq!(parse_role("transfer-put"), Ok(Role::TransferPut));
        let e = parse_role("transfer").unwrap_err();
        assert!(e.contains("\"transfer\""), "{e}");
        for &r in Role::ALL {
            assert!(e.contains(r.as_str()), "{e}");
        }
    }

    #[test]
    fn drains_are_found_by_role() {
        let d = Drains {
            drained: vec![RoleDrain {
                role: "indexer".into(),
                since: Utc::now(),
                by: "op".into(),
                reason: None,
            }],
        };
        assert!(d.contains(Role::Indexer));
        assert!(!d.contains(Role::Router));
        assert_eq!(d.of(Role::Indexer).unwrap().by, "op");
    }
}
