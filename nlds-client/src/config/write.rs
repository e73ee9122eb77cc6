//! Writing the config file: `nlds init` and `nlds renew`.

use std::path::{Path, PathBuf};

use super::Secret;
use super::layers::file_relative;
use crate::error::Error;

/// What `nlds init` or `nlds renew` changes; `None` leaves a key as it is.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub url: Option<String>,
    pub token: Option<Secret>,
    pub group: Option<String>,
    pub user: Option<String>,
    pub insecure: Option<bool>,
}

/// What [`write()`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The config file.
    pub path: PathBuf,
    /// It did not exist before.
    pub created: bool,
    /// The token went to this `token_file` (named in the config file) rather than into it.
    pub token_file: Option<PathBuf>,
    /// The keys that were set, in the order of [`KEYS`](super::KEYS).
    pub keys: Vec<&'static str>,
}

/// Updates the config file at `path` with `update`, keeping every other key and comment. The
/// file (and a `token_file` it names, which receives the token) is written with mode 0600 by
/// renaming a fresh file over it; missing directories are created (mode 0700).
pub fn write(path: &Path, update: &Update, home: Option<&Path>) -> Result<Written, Error> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read the config file {}: {e}",
                path.display()
            )));
        }
    };
    let created = existing.is_none();
    let mut doc: toml_edit::DocumentMut =
        existing
            .as_deref()
            .unwrap_or("")
            .parse()
            .map_err(|e: toml_edit::TomlError| {
                Error::Config(format!("config file {}: {}", path.display(), e.message()))
            })?;
    let mut keys = Vec::new();
    let mut token_file = None;
    if let Some(url) = &update.url {
        doc["url"] = toml_edit::value(url.as_str());
        keys.push("url");
    }
    if let Some(token) = &update.token {
        match doc.get("token_file").and_then(|v| v.as_str()) {
            Some(tf) => {
                let full = file_relative(Path::new(tf), path, home);
                write_private(&full, &format!("{}\n", token.expose()))?;
                token_file = Some(full);
                keys.push("token_file");
            }
            None => {
                doc["token"] = toml_edit::value(token.expose());
                keys.push("token");
            }
        }
    }
    if let Some(group) = &update.group {
        doc["group"] = toml_edit::value(group.as_str());
        keys.push("group");
    }
    if let Some(user) = &update.user {
        doc["user"] = toml_edit::value(user.as_str());
        keys.push("user");
    }
    if let Some(insecure) = update.insecure {
        doc["insecure"] = toml_edit::value(insecure);
        keys.push("insecure");
    }
    let mut text = doc.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    write_private(path, &text)?;
    Ok(Written {
        path: path.to_owned(),
        created,
        token_file,
        keys,
    })
}

/// Writes `text` to `path` with mode 0600, atomically (a fresh file renamed over it). A symlink
/// at `path` is followed, so the file it points to is replaced and the link kept.
pub fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    let fail = |what: &str, p: &Path, e: std::io::Error| {
        Error::Config(format!("cannot {what} {}: {e}", p.display()))
    };
    let real = match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_symlink() => {
            std::fs::canonicalize(path).map_err(|e| fail("follow the link", path, e))?
        }
        _ => path.to_owned(),
    };
    let dir = real
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| fail("create the directory", dir, e))?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &real)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", &real, e));
    }
    Ok(())
}
