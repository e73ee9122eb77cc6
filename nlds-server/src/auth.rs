//! Authentication: a trait, and the static bearer-token authenticator (tokens from a file, each
//! mapped to a user and groups, compared in constant time).

use std::path::Path;

use async_trait::async_trait;
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    /// A service operator: may act for any user and group on `/api/1.0.0`.
    pub admin: bool,
}

/// Turns a bearer token into an identity, or refuses it.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn authenticate(&self, token: &str) -> Option<Identity>;
}

#[derive(Deserialize)]
struct TokenEntry {
    token: String,
    user: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    admin: bool,
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
            entries.push((
                e.token.into_bytes(),
                Identity {
                    user: e.user,
                    groups: e.groups,
                    admin: e.admin,
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
    }
}
