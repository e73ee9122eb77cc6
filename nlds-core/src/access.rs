//! Who may do what: a caller's role in a group.
//!
//! The server works out the caller's role in the group a request acts in (from the static token
//! file or from token claims, through configuration) and puts it in the envelope; workers decide
//! ownership questions (may this caller delete that holding?) from it. The bus is internal and
//! trusted: no worker accepts a role from outside the server.

use serde::{Deserialize, Serialize};

/// A caller's role in one group, weakest first.
#[cfg_attr(
    feature = "db",
    derive(sea_orm::DeriveValueType),
    sea_orm(value_type = "String", from_str = "crate::db::parse")
)]
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase", ascii_case_insensitive, const_into_str)]
pub enum AccessRole {
    /// Reads the group's holdings (with `groupall`), changes and deletes only their own.
    #[default]
    User,
    /// May change and delete anything in the group.
    Deputy,
    /// May change and delete anything in the group.
    Manager,
    /// A service operator: every group, and the sysadmin queries. Only the operator flag grants
    /// it (the tokens file's `admin = true`, the OIDC operator groups or roles), never a per-group
    /// role: see [`AccessRole::in_group`].
    Admin,
}

impl AccessRole {
    /// Every role, weakest first.
    pub const ALL: &'static [AccessRole] = <AccessRole as strum::VariantArray>::VARIANTS;

    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }

    /// Case-insensitive; accepts the upstream spellings (`USER`, `DEPUTY`, `MANAGER`, `ADMIN`).
    pub fn parse(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }

    /// This role as a role *in one group* (a tokens file's `roles = { g = "..." }` or a token's
    /// roles claim): `admin` there means MANAGER of that group, never a service operator. The
    /// operator comes only from the operator flag.
    pub fn in_group(self) -> Self {
        self.min(AccessRole::Manager)
    }

    /// May change or delete holdings of other users in the group.
    pub fn manages_group(self) -> bool {
        self >= AccessRole::Deputy
    }

    pub fn is_admin(self) -> bool {
        self == AccessRole::Admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_and_parse() {
        assert!(AccessRole::User < AccessRole::Deputy);
        assert!(!AccessRole::User.manages_group());
        assert!(AccessRole::Deputy.manages_group());
        assert!(AccessRole::Manager.manages_group());
        assert!(AccessRole::Admin.manages_group() && AccessRole::Admin.is_admin());
        for r in [
            AccessRole::User,
            AccessRole::Deputy,
            AccessRole::Manager,
            AccessRole::Admin,
        ] {
            assert_eq!(AccessRole::parse(&r.as_str().to_uppercase()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert_eq!(AccessRole::parse("owner"), None);
        // A per-group "admin" is a manager of that group, never an operator.
        assert_eq!(AccessRole::Admin.in_group(), AccessRole::Manager);
        assert!(!AccessRole::Admin.in_group().is_admin());
        for r in [AccessRole::User, AccessRole::Deputy, AccessRole::Manager] {
            assert_eq!(r.in_group(), r);
        }
    }
}
