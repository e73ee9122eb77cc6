//! `nlds admin drain ROLE`, `nlds admin resume ROLE` and `nlds admin drains`: stop a role taking
//! new work for maintenance, let it work again, and list what is drained (service operators
//! only; docs/ADMIN.md, "Draining a role").

use clap::Args;
use nlds_core::Role;
use nlds_core::drain::{Drains, check_drainable, parse_role};

use crate::ctx::{Ctx, Failure, Io, print, print_json};
use crate::format::{Zone, time};
use crate::plan::AdminPlan;
use nlds_client::client::Client;

/// `nlds admin drain ROLE`.
#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// The role (its command-line name: indexer, transfer-put, archive-put, ...).
    #[arg(value_name = "ROLE")]
    pub role: String,
    /// Why, shown with the drain (e.g. "tape library maintenance until 14:00").
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `nlds admin resume ROLE`.
#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    /// The drained role.
    #[arg(value_name = "ROLE")]
    pub role: String,
}

/// What `nlds admin drain|resume|drains` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainPlan {
    List,
    Drain(Role, Option<String>),
    Resume(Role),
}

pub(super) fn prepare_drain(a: &DrainArgs) -> Result<AdminPlan, Failure> {
    let role = parse_role(&a.role).map_err(Failure::usage)?;
    check_drainable(role).map_err(Failure::usage)?;
    Ok(AdminPlan::Drains(DrainPlan::Drain(role, a.reason.clone())))
}

pub(super) fn prepare_resume(a: &ResumeArgs) -> Result<AdminPlan, Failure> {
    let role = parse_role(&a.role).map_err(Failure::usage)?;
    Ok(AdminPlan::Drains(DrainPlan::Resume(role)))
}

pub(super) async fn execute(
    plan: DrainPlan,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let (drains, head) = match &plan {
        DrainPlan::List => (client.admin_drains().await?, String::new()),
        DrainPlan::Drain(role, reason) => (
            client.admin_drain(*role, reason.as_deref()).await?,
            drained_note(*role),
        ),
        DrainPlan::Resume(role) => (client.admin_resume(*role).await?, resumed_note(*role)),
    };
    if ctx.json {
        print_json(io, &drains)?;
    } else {
        print(io, &format!("{head}{}", drains_view(&drains, ctx.zone)));
    }
    Ok(())
}

fn drained_note(role: Role) -> String {
    format!(
        "{role} drained: its processes finish what they have in hand and take no new work; its \
         messages wait in its queue until `nlds admin resume {role}`\n"
    )
}

fn resumed_note(role: Role) -> String {
    format!("{role} is not drained: its processes take work again\n")
}

/// The drained roles, one line each, or that none is.
pub fn drains_view(d: &Drains, zone: Zone) -> String {
    if d.drained.is_empty() {
        return "no role is drained\n".into();
    }
    let mut out = String::new();
    for r in &d.drained {
        out.push_str(&format!(
            "{} drained since {} by {}{}\n",
            r.role,
            time(&r.since, zone),
            r.by,
            r.reason
                .as_deref()
                .map(|why| format!(": {why}"))
                .unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlds_core::drain::RoleDrain;

    #[test]
    fn roles_are_checked_before_anything_is_sent() {
        let plan = prepare_drain(&DrainArgs {
            role: "transfer-put".into(),
            reason: Some("disk swap".into()),
        })
        .unwrap();
        assert!(
            matches!(&plan, AdminPlan::Drains(DrainPlan::Drain(Role::TransferPut, Some(r))) if r == "disk swap"),
            "{plan:?}"
        );
        let unknown = prepare_drain(&DrainArgs {
            role: "transfer".into(),
            reason: None,
        })
        .unwrap_err();
        assert!(
            format!("{unknown:?}").contains("use one of router, indexer"),
            "{unknown:?}"
        );
        let own = prepare_drain(&DrainArgs {
            role: "monitor-rpc".into(),
            reason: None,
        })
        .unwrap_err();
        assert!(format!("{own:?}").contains("cannot be drained"), "{own:?}");
        let resume = prepare_resume(&ResumeArgs {
            role: "indexer".into(),
        })
        .unwrap();
        assert!(
            matches!(resume, AdminPlan::Drains(DrainPlan::Resume(Role::Indexer))),
            "{resume:?}"
        );
    }

    #[test]
    fn the_view_names_each_drain_and_says_when_none_is() {
        assert_eq!(
            drains_view(&Drains::default(), Zone::Utc),
            "no role is drained\n"
        );
        let since = chrono::DateTime::parse_from_rfc3339("2026-12-06T20:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let d = Drains {
            drained: vec![
                RoleDrain {
                    role: "archive-put".into(),
                    since,
                    by: "op".into(),
                    reason: Some("tape library maintenance".into()),
                },
                RoleDrain {
                    role: "indexer".into(),
                    since,
                    by: "op".into(),
                    reason: None,
                },
            ],
        };
        assert_eq!(
            drains_view(&d, Zone::Utc),
            "archive-put drained since 2026-12-06T20:00:00+00:00 by op: tape library maintenance\n\
             indexer drained since 2026-12-06T20:00:00+00:00 by op\n"
        );
        assert!(drained_note(Role::ArchivePut).contains("nlds admin resume archive-put"));
    }
}
