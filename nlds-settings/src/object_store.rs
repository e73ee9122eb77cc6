//! `[workers.object_store]`: the warm tier's S3 endpoint, bucket and credentials, and its named
//! tenancies.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The warm tier: one S3 endpoint and one bucket (see ARCHITECTURE.md, "Object layout").
///
/// Credentials live here, on the worker side, and nowhere else: never in a queue message, a URL
/// or a log line. Each may come from the file itself or from a file (`*_file`, for Kubernetes
/// secret mounts; env `NLDS_S3_ACCESS_KEY_FILE`, `NLDS_S3_SECRET_KEY_FILE`). `Debug` redacts both.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectStoreConfig {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    /// Read the access key from this file instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_file: Option<PathBuf>,
    /// Never logged: `Debug` prints it redacted. Serializing the settings writes it (as before:
    /// a settings file written for a worker process must carry its key).
    #[serde(serialize_with = "expose")]
    pub secret_key: SecretString,
    /// Read the secret key from this file (Kubernetes secret mounts) instead.
    pub secret_key_file: Option<PathBuf>,
    pub bucket: String,
    /// Named tenancies of the object store (`[workers.object_store.tenancies.<name>]`): each
    /// overrides any of the keys above and inherits the rest. The name is what legacy clients
    /// call their `tenancy`; a name only ever selects a configuration, it never carries a
    /// credential.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenancies: BTreeMap<String, TenancyConfig>,
}

/// One named tenancy: the keys of [`ObjectStoreConfig`] it overrides.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenancyConfig {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub access_key_file: Option<PathBuf>,
    #[serde(serialize_with = "expose_opt", skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretString>,
    pub secret_key_file: Option<PathBuf>,
    pub bucket: Option<String>,
}

impl std::fmt::Debug for TenancyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenancyConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key.as_ref().map(|_| REDACTED))
            .field("access_key_file", &self.access_key_file)
            .field("secret_key", &self.secret_key.as_ref().map(|_| REDACTED))
            .field("secret_key_file", &self.secret_key_file)
            .field("bucket", &self.bucket)
            .finish()
    }
}

/// Writes a secret out: only for settings files a program writes for another.
fn expose<S: serde::Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose_secret())
}

fn expose_opt<S: serde::Serializer>(s: &Option<SecretString>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(s.expose_secret()),
        None => ser.serialize_none(),
    }
}

/// What `Debug` prints instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A key given inline or in a file (the file wins; surrounding whitespace is dropped).
fn read_key(inline: &str, file: Option<&PathBuf>, what: &str) -> std::io::Result<String> {
    match file {
        Some(p) => std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot read the {what} file {}: {e}", p.display()),
                )
            }),
        None => Ok(inline.to_owned()),
    }
}

impl ObjectStoreConfig {
    /// The secret key, from `secret_key_file` if set.
    pub fn secret(&self) -> std::io::Result<String> {
        read_key(
            self.secret_key.expose_secret(),
            self.secret_key_file.as_ref(),
            "object-store secret key",
        )
    }

    /// The access key, from `access_key_file` if set.
    pub fn access(&self) -> std::io::Result<String> {
        read_key(
            &self.access_key,
            self.access_key_file.as_ref(),
            "object-store access key",
        )
    }

    /// The configuration of tenancy `name`: its overrides over this one's keys; `None` if no
    /// tenancy of that name is configured.
    pub fn tenancy(&self, name: &str) -> Option<ObjectStoreConfig> {
        let t = self.tenancies.get(name)?;
        let mut c = self.clone();
        c.tenancies = BTreeMap::new();
        if let Some(v) = &t.endpoint {
            c.endpoint = v.clone();
        }
        if let Some(v) = &t.region {
            c.region = v.clone();
        }
        if t.access_key.is_some() || t.access_key_file.is_some() {
            c.access_key = t.access_key.clone().unwrap_or_default();
            c.access_key_file = t.access_key_file.clone();
        }
        if t.secret_key.is_some() || t.secret_key_file.is_some() {
            c.secret_key = t.secret_key.clone().unwrap_or_default();
            c.secret_key_file = t.secret_key_file.clone();
        }
        if let Some(v) = &t.bucket {
            c.bucket = v.clone();
        }
        Some(c)
    }
}

impl std::fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &REDACTED)
            .field("access_key_file", &self.access_key_file)
            .field("secret_key", &REDACTED)
            .field("secret_key_file", &self.secret_key_file)
            .field("bucket", &self.bucket)
            .field("tenancies", &self.tenancies)
            .finish()
    }
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            access_key: "nlds".into(),
            access_key_file: None,
            secret_key: SecretString::default(),
            secret_key_file: None,
            bucket: "nlds".into(),
            tenancies: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_files_and_tenancies_inherit_and_override() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        let access = dir.path().join("access");
        std::fs::write(&secret, "s3cr3t-from-file\n").unwrap();
        std::fs::write(&access, "  AKIA-FROM-FILE ").unwrap();
        let toml = format!(
            r#"
            endpoint = "http://s3.local"
            access_key = "inline-access"
            secret_key_file = "{}"
            bucket = "main"
            [tenancies."other.example.org"]
            access_key_file = "{}"
            secret_key = "tenancy-secret"
            bucket = "other"
            "#,
            secret.display(),
            access.display()
        );
        let cfg: ObjectStoreConfig = toml::from_str(&toml).unwrap();
        assert_eq!(cfg.secret().unwrap(), "s3cr3t-from-file");
        assert_eq!(cfg.access().unwrap(), "inline-access");
        let t = cfg.tenancy("other.example.org").unwrap();
        assert_eq!(t.endpoint, "http://s3.local", "inherited");
        assert_eq!(t.bucket, "other");
        assert_eq!(t.access().unwrap(), "AKIA-FROM-FILE");
        assert_eq!(t.secret().unwrap(), "tenancy-secret");
        assert!(cfg.tenancy("nope").is_none());
        // Debug never shows a key, inline or read.
        let shown = format!("{cfg:?} {t:?} {:?}", cfg.tenancies);
        for s in [
            "inline-access",
            "tenancy-secret",
            "s3cr3t-from-file",
            "AKIA-FROM-FILE",
        ] {
            assert!(!shown.contains(s), "{s} in {shown}");
        }
        // A missing file is named, its (absent) content is not invented.
        let missing = ObjectStoreConfig {
            secret_key_file: Some(dir.path().join("gone")),
            ..Default::default()
        };
        let e = missing.secret().unwrap_err().to_string();
        assert!(
            e.contains("object-store secret key file") && e.contains("gone"),
            "{e}"
        );
        // Unknown keys of a tenancy are refused (a typo must not silently inherit the default).
        assert!(toml::from_str::<ObjectStoreConfig>("[tenancies.x]\nsecretkey = \"a\"").is_err());
    }
}
