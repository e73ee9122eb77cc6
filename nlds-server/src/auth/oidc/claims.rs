//! Claim mapping: the claims of a token become an [`Identity`] (configuration, `[auth.oidc.claims]`).

use std::collections::{BTreeMap, BTreeSet};

use nlds_core::AccessRole;
use serde_json::{Map, Value};

use super::{AuthError, ClaimMapping, RolesFormat};
use crate::auth::Identity;

// ------------------------------------------------------------------------------ claim mapping

/// A claim by name, else by dotted path into nested objects.
pub(super) fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// User and group names end up in paths, messages and POSIX lookups: keep them plain.
pub(super) fn plain_name(kind: &str, claim_name: &str, s: &str) -> Result<String, AuthError> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.len() <= 256
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(AuthError::Claims(format!(
            "{kind} name {s:?} in claim {claim_name} is empty or has characters other than letters, digits, '.', '_', '-' and '@'"
        )))
    }
}

/// Strings from an array, or from one space-separated string.
pub(super) fn strings(v: &Value, claim_name: &str) -> Result<Vec<String>, AuthError> {
    match v {
        Value::String(s) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_owned).ok_or_else(|| {
                    AuthError::Claims(format!("claim {claim_name} holds a non-string entry"))
                })
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(AuthError::Claims(format!(
            "claim {claim_name} is neither a list of strings nor a string"
        ))),
    }
}

/// A role in one group from the roles claim. `admin` there is MANAGER of that group (with a
/// warning, once per claim and group): operators come only from `admin_groups` and `admin_roles`.
pub(super) fn parse_role(
    claim_name: &str,
    group: &str,
    role: &str,
) -> Result<AccessRole, AuthError> {
    let parsed = AccessRole::parse(role).ok_or_else(|| {
        AuthError::Claims(format!(
            "claim {claim_name}: unknown role {role:?} for group {group} (expected user, deputy, manager or admin)"
        ))
    })?;
    if parsed.is_admin() {
        static WARNED: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
        let first = WARNED
            .lock()
            .map(|mut w| w.len() < 1000 && w.insert(format!("{claim_name}\0{group}")))
            .unwrap_or(false);
        if first {
            tracing::warn!(
                claim = claim_name,
                %group,
                "claim {claim_name} gives role \"admin\" in group {group}; a per-group role never \
                 makes a service operator, so it is read as \"manager\" of {group}. Operators are \
                 the members of [auth.oidc.claims] admin_groups or holders of admin_roles"
            );
        }
    }
    Ok(parsed.in_group())
}

/// What the server does with a [`ClaimMapping`] (defined in `nlds-settings`).
pub trait ClaimMappingExt {
    /// Checks the mapping itself (at startup).
    fn validate(&self) -> anyhow::Result<()>;
    /// The identity the claims describe.
    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError>;
}

impl ClaimMappingExt for ClaimMapping {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.user.trim().is_empty(),
            "[auth.oidc.claims] user must name the claim that holds the user name"
        );
        anyhow::ensure!(
            self.roles_format != RolesFormat::List || !self.roles_separator.is_empty(),
            "[auth.oidc.claims] roles_separator must not be empty for roles_format = \"list\""
        );
        Ok(())
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError> {
        let user = match claim(claims, &self.user) {
            Some(Value::String(s)) => plain_name("user", &self.user, s)?,
            Some(_) => {
                return Err(AuthError::Claims(format!(
                    "claim {} (the user name) is not a string",
                    self.user
                )));
            }
            None => return Err(AuthError::MissingClaim(self.user.clone())),
        };
        let mut groups: Vec<String> = Vec::new();
        if !self.groups.is_empty()
            && let Some(v) = claim(claims, &self.groups)
        {
            for g in strings(v, &self.groups)? {
                let g = plain_name("group", &self.groups, &g)?;
                if !groups.contains(&g) {
                    groups.push(g);
                }
            }
        }
        let mut admin = groups.iter().any(|g| self.admin_groups.contains(g));
        let mut roles: BTreeMap<String, AccessRole> = BTreeMap::new();
        let mut add = |group: &str, role: AccessRole| {
            let e = roles.entry(group.to_owned()).or_default();
            *e = (*e).max(role);
        };
        let roles_value = if self.roles.is_empty() {
            None
        } else {
            claim(claims, &self.roles)
        };
        match (roles_value, self.roles_format) {
            (None | Some(Value::Null), _) => {}
            (Some(Value::Object(m)), RolesFormat::Map) => {
                for (group, v) in m {
                    for role in strings(v, &self.roles)? {
                        add(group, parse_role(&self.roles, group, &role)?);
                    }
                }
            }
            (Some(v @ (Value::Array(_) | Value::String(_))), RolesFormat::List) => {
                for entry in strings(v, &self.roles)? {
                    match entry.split_once(self.roles_separator.as_str()) {
                        Some((group, role)) => add(group, parse_role(&self.roles, group, role)?),
                        None if self.admin_roles.contains(&entry) => admin = true,
                        // Roles of other applications share such claims: not ours.
                        None => {}
                    }
                }
            }
            (Some(_), RolesFormat::Map) => {
                return Err(AuthError::Claims(format!(
                    "claim {} is not an object of group -> role (roles_format = \"map\")",
                    self.roles
                )));
            }
            (Some(_), RolesFormat::List) => {
                return Err(AuthError::Claims(format!(
                    "claim {} is not a list of \"group{}role\" strings (roles_format = \"list\")",
                    self.roles, self.roles_separator
                )));
            }
        }
        // A role only counts in a group the caller belongs to; USER is the default anyway.
        roles.retain(|g, r| *r > AccessRole::User && groups.contains(g));
        Ok(Identity {
            user,
            groups,
            admin,
            roles,
        })
    }
}
