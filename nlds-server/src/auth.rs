//! Authentication: a trait, the static bearer-token authenticator (tokens from a file, each
//! mapped to a user and groups, compared in constant time), and the OAuth2 resource server for
//! an OpenID Connect provider ([`oidc`]). `[auth] kind` picks one ([`build`]).

pub mod oidc;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use nlds_core::AccessRole;
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    /// A service operator: may act for any user and group on `/api/1.0.0`.
    pub admin: bool,
    /// Roles above USER, per group (a group not listed here: USER).
    pub roles: BTreeMap<String, AccessRole>,
}

impl Identity {
    /// A plain user in `groups`.
    pub fn user(user: impl Into<String>, groups: Vec<String>) -> Self {
        Self {
            user: user.into(),
            groups,
            admin: false,
            roles: BTreeMap::new(),
        }
    }

    /// The caller's role in `group`: ADMIN for operators (the operator flag only), else what the
    /// token says (USER by default), at most MANAGER: a per-group role never makes an operator.
    /// Membership of the group is checked separately.
    pub fn role_in(&self, group: &str) -> AccessRole {
        if self.admin {
            return AccessRole::Admin;
        }
        self.roles
            .get(group)
            .copied()
            .map(AccessRole::in_group)
            .unwrap_or_default()
    }
}

/// What checking a bearer token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Valid(Identity),
    /// The token is not valid (expired, forged, revoked, for someone else...).
    Refused,
    /// The token could not be checked: the identity provider did not answer. The caller may
    /// retry; this is a 503, not a 401 (a client must not throw away a good token for it).
    Unavailable(String),
}

/// Turns a bearer token into an identity, or refuses it.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn authenticate(&self, token: &str) -> Option<Identity>;

    /// Like [`Authenticator::authenticate`], telling a refused token from a provider that could
    /// not be asked. Authenticators that need no provider keep this default.
    async fn check(&self, token: &str) -> Checked {
        match self.authenticate(token).await {
            Some(id) => Checked::Valid(id),
            None => Checked::Refused,
        }
    }
}

/// The authenticator the settings ask for (`[auth] kind`; the static tokens file by default).
pub fn build(settings: &crate::config::ServerSettings) -> anyhow::Result<Arc<dyn Authenticator>> {
    match settings.auth.kind {
        crate::config::AuthKind::Static => {
            Ok(Arc::new(StaticTokens::load(&settings.server.tokens_file)?))
        }
        crate::config::AuthKind::Oidc => {
            let a = oidc::OidcAuthenticator::new(settings.auth.oidc.clone())?;
            tracing::info!(issuer = %settings.auth.oidc.issuer, "bearer tokens: OpenID Connect provider");
            Ok(Arc::new(a))
        }
    }
}

#[derive(Deserialize)]
struct TokenEntry {
    token: String,
    user: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    admin: bool,
    /// Per-group roles, e.g. `roles = { climate = "manager" }`. `"admin"` here is read as
    /// `"manager"` of that group (with a warning): an operator is `admin = true`.
    #[serde(default)]
    roles: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

/// Tokens from a TOML file.
pub struct StaticTokens {
    entries: Vec<(Vec<u8>, Identity)>,
}

impl StaticTokens {
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let file: TokenFile = toml::from_str(text)?;
        let mut entries = Vec::new();
        for e in file.token {
            anyhow::ensure!(
                e.token.len() >= 16,
                "token of user {} is shorter than 16 characters",
                e.user
            );
            anyhow::ensure!(!e.groups.is_empty(), "user {} has no groups", e.user);
            let mut roles = BTreeMap::new();
            for (group, role) in e.roles {
                let parsed = AccessRole::parse(&role).ok_or_else(|| {
                    anyhow::anyhow!(
                        "user {}: unknown role {role:?} for group {group} (expected user, deputy, manager or admin)",
                        e.user
                    )
                })?;
                anyhow::ensure!(
                    e.groups.contains(&group),
                    "user {} has a role in group {group} but is not a member of it",
                    e.user
                );
                if parsed.is_admin() {
                    tracing::warn!(
                        user = %e.user,
                        %group,
                        "tokens file: the [[token]] entry of user {} gives role \"admin\" in group \
                         {group}; a per-group role never makes a service operator, so it is read \
                         as \"manager\" of {group}. To make {} an operator, set `admin = true` in \
                         that entry (and write roles = {{ {group} = \"manager\" }} to silence this)",
                        e.user,
                        e.user
                    );
                }
                roles.insert(group, parsed.in_group());
            }
            entries.push((
                e.token.into_bytes(),
                Identity {
                    user: e.user,
                    groups: e.groups,
                    admin: e.admin,
                    roles,
                },
            ));
        }
        Ok(Self { entries })
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read tokens file {}: {e}", path.display()))?;
        Self::from_toml(&text)
            .map_err(|e| anyhow::anyhow!("invalid tokens file {}: {e}", path.display()))
    }
}

#[async_trait]
impl Authenticator for StaticTokens {
    async fn authenticate(&self, token: &str) -> Option<Identity> {
        let given = token.as_bytes();
        // Compare against every entry so the time taken does not reveal which one matched.
        let mut found = None;
        for (t, id) in &self.entries {
            if bool::from(t.as_slice().ct_eq(given)) {
                found = Some(id.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_map_to_identities() {
        let a = StaticTokens::from_toml(
            r#"
            [[token]]
            token = "aaaaaaaaaaaaaaaaaaaa"
            user = "alice"
            groups = ["climate", "ocean"]
            [[token]]
            token = "bbbbbbbbbbbbbbbbbbbb"
            user = "bob"
            groups = ["ocean"]
            "#,
        )
        .unwrap();
        assert_eq!(
            a.authenticate("aaaaaaaaaaaaaaaaaaaa").await.unwrap().user,
            "alice"
        );
        assert_eq!(
            a.authenticate("bbbbbbbbbbbbbbbbbbbb").await.unwrap().groups,
            ["ocean"]
        );
        assert!(a.authenticate("aaaaaaaaaaaaaaaaaaa").await.is_none());
        assert!(a.authenticate("").await.is_none());
        assert!(
            StaticTokens::from_toml("[[token]]\ntoken='short'\nuser='x'\ngroups=['g']").is_err()
        );
        let m = StaticTokens::from_toml(
            "[[token]]\ntoken='cccccccccccccccccccc'\nuser='carol'\ngroups=['ocean','ice']\nroles={ocean='MANAGER'}",
        )
        .unwrap();
        let carol = m.authenticate("cccccccccccccccccccc").await.unwrap();
        assert_eq!(carol.role_in("ocean"), AccessRole::Manager);
        assert_eq!(carol.role_in("ice"), AccessRole::User);
        let bad_role =
            "[[token]]\ntoken='cccccccccccccccccccc'\nuser='c'\ngroups=['g']\nroles={g='owner'}";
        assert!(
            StaticTokens::from_toml(bad_role)
                .err()
                .unwrap()
                .to_string()
                .contains("unknown role")
        );
        // A per-group "admin" is a manager of that group, not an operator.
        let group_admin = StaticTokens::from_toml(
            "[[token]]\ntoken='dddddddddddddddddddd'\nuser='dan'\ngroups=['ocean','ice']\nroles={ocean='admin'}",
        )
        .unwrap();
        let dan = group_admin
            .authenticate("dddddddddddddddddddd")
            .await
            .unwrap();
        assert!(!dan.admin);
        assert_eq!(dan.role_in("ocean"), AccessRole::Manager);
        assert_eq!(dan.role_in("ice"), AccessRole::User);
        assert_eq!(dan.role_in("climate"), AccessRole::User);
        // Even an identity built by hand with ADMIN in a group is no operator there.
        let mut forged = Identity::user("eve", vec!["ocean".into()]);
        forged.roles.insert("ocean".into(), AccessRole::Admin);
        assert_eq!(forged.role_in("ocean"), AccessRole::Manager);
        let not_member =
            "[[token]]\ntoken='cccccccccccccccccccc'\nuser='c'\ngroups=['g']\nroles={h='deputy'}";
        assert!(StaticTokens::from_toml(not_member).is_err());
    }
}
