//! `nlds whoami`: who the server takes you for, your groups, the group commands act in, the
//! server, and when the token expires.

use nlds_client::client::{Client, Identity};

use crate::ctx::{Ctx, Failure, Io, print, print_json};
use crate::exit;
use crate::format::{INDENT, Zone, kv, time};

/// Asks the server who we are and shows it.
pub async fn execute(client: &Client, ctx: &Ctx, io: &mut Io<'_>) -> Result<u8, Failure> {
    let who = client.whoami_full().await?;
    if ctx.json {
        print_json(io, &who)?;
    } else {
        print(
            io,
            &whoami_view(&who, client.base_url(), ctx.group.as_deref(), ctx.zone),
        );
    }
    Ok(exit::OK)
}

/// `nlds whoami`: who the server takes you for, your groups, the group commands act in, the
/// server, and when the token expires (if known).
pub fn whoami_view(id: &Identity, server: &str, group: Option<&str>, zone: Zone) -> String {
    let mut o = String::new();
    kv(&mut o, INDENT, "user", &id.who.user);
    kv(&mut o, INDENT, "groups", &id.who.groups.join(", "));
    let roles: Vec<String> = if id.who.admin {
        vec!["admin (service operator, every group)".to_owned()]
    } else {
        id.who
            .roles
            .iter()
            .filter(|(_, r)| **r != nlds_core::AccessRole::User)
            .map(|(g, r)| format!("{r} in {g}"))
            .collect()
    };
    if !roles.is_empty() {
        kv(&mut o, INDENT, "roles", &roles.join(", "));
    }
    let acting = match (group, id.who.groups.first()) {
        (Some(g), _) => g.to_owned(),
        (None, Some(first)) => format!("{first} (your first group: no default group is set)"),
        (None, None) => "-".to_owned(),
    };
    kv(&mut o, INDENT, "group", &acting);
    kv(&mut o, INDENT, "server", server);
    let expires = id
        .token_expires
        .map(|t| time(&t, zone))
        .unwrap_or_else(|| "not known (the server does not say)".into());
    kv(&mut o, INDENT, "token expires", &expires);
    o
}
