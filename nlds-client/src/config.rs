//! Where the client finds its server URL, token and default group.
//!
//! Lowest to highest precedence:
//!
//! 1. the config file, `$NLDS_CONFIG` or else `~/.config/nlds/config.toml`:
//!    ```toml
//!    url = "https://nlds.example.org"
//!    token_file = "~/.config/nlds/token"   # or: token = "..."
//!    group = "my-gws"                      # optional
//!    ```
//!    A relative `token_file` is relative to the config file's directory;
//! 2. the environment variables `NLDS_URL`, `NLDS_TOKEN` and `NLDS_GROUP`;
//! 3. the flags `--url`, `--token` and `--group`.
//!
//! Empty values count as unset. The token is never printed: [`Secret`] hides it from `Debug`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::error::Error;

/// A token, hidden from `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The token itself, to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// The settings given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub url: Option<String>,
    pub token: Option<Secret>,
    pub group: Option<String>,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub token: Secret,
    pub group: Option<String>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Things to tell the user (e.g. a config file holding a token is readable by others).
    pub warnings: Vec<String>,
}

/// The config file's contents.
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    group: Option<String>,
}

/// `$NLDS_CONFIG`, else `$HOME/.config/nlds/config.toml`.
pub fn config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = non_empty(env("NLDS_CONFIG")) {
        return Some(PathBuf::from(p));
    }
    non_empty(env("HOME")).map(|h| Path::new(&h).join(".config/nlds/config.toml"))
}

/// Resolves the settings from the config file, the environment (read through `env`) and the
/// command-line `flags`.
pub fn resolve(flags: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Error> {
    let explicit = non_empty(env("NLDS_CONFIG")).is_some();
    let path = config_path(env);
    let home = non_empty(env("HOME")).map(PathBuf::from);
    let mut warnings = Vec::new();
    let mut config_file = None;
    let mut file = FileConfig::default();
    if let Some(path) = &path {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                file = toml::from_str(&text).map_err(|e| {
                    Error::Config(format!("config file {}: {}", path.display(), e.message()))
                })?;
                config_file = Some(path.clone());
                if file.token.is_some() && file.token_file.is_some() {
                    return Err(Error::Config(format!(
                        "config file {}: set either token or token_file, not both",
                        path.display()
                    )));
                }
                if file.token.is_some()
                    && let Some(w) = readable_by_others(path)
                {
                    warnings.push(w);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {}
            Err(e) => {
                return Err(Error::Config(format!(
                    "cannot read the config file {} (from $NLDS_CONFIG): {e}",
                    path.display()
                )));
            }
        }
    }

    let url = non_empty(flags.url.clone())
        .or_else(|| non_empty(env("NLDS_URL")))
        .or_else(|| non_empty(file.url.clone()));
    let group = non_empty(flags.group.clone())
        .or_else(|| non_empty(env("NLDS_GROUP")))
        .or_else(|| non_empty(file.group.clone()));
    let token = match non_empty(flags.token.as_ref().map(|t| t.expose().to_owned()))
        .or_else(|| non_empty(env("NLDS_TOKEN")))
        .or_else(|| non_empty(file.token.clone()))
    {
        Some(t) => Some(t),
        None => match (&file.token_file, &config_file) {
            (Some(tf), Some(cf)) => Some(read_token_file(tf, cf, home.as_deref())?),
            _ => None,
        },
    };

    match (url, token) {
        (Some(url), Some(token)) => Ok(Settings {
            url,
            token: Secret(token.trim().to_owned()),
            group,
            config_file,
            warnings,
        }),
        (url, token) => {
            let mut missing = Vec::new();
            if url.is_none() {
                missing.push("a server URL");
            }
            if token.is_none() {
                missing.push("a token");
            }
            Err(Error::Config(not_configured_message(
                &missing.join(" and "),
                path.as_deref(),
            )))
        }
    }
}

/// The friendly "how to configure" text.
pub fn not_configured_message(missing: &str, path: Option<&Path>) -> String {
    let shown = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.config/nlds/config.toml".into());
    format!(
        "nlds is not configured: it needs {missing}.
Configure it with any of (later ones override earlier ones):
  1. the config file {shown} (another file can be named with $NLDS_CONFIG):
         url = \"https://nlds.example.org\"
         token_file = \"~/.config/nlds/token\"   # a file holding the token; or: token = \"...\"
         group = \"my-gws\"                      # optional default group
  2. the environment variables NLDS_URL, NLDS_TOKEN and NLDS_GROUP
  3. the options --url URL (before the command), --token TOKEN and --group GROUP"
    )
}

fn read_token_file(tf: &Path, config_file: &Path, home: Option<&Path>) -> Result<String, Error> {
    let expanded = match (tf.to_str(), home) {
        (Some(s), Some(h)) if s.starts_with("~/") => h.join(&s[2..]),
        _ => tf.to_path_buf(),
    };
    let full = if expanded.is_absolute() {
        expanded
    } else {
        config_file
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(expanded)
    };
    let text = std::fs::read_to_string(&full).map_err(|e| {
        Error::Config(format!(
            "cannot read the token_file {} named in {}: {e}",
            full.display(),
            config_file.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::Config(format!(
            "the token_file {} is empty",
            full.display()
        )));
    }
    Ok(token.to_owned())
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "the config file {} holds a token and can be read by others; run: chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> Option<String> {
    None
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    #[test]
    fn file_then_env_then_flags() {
        let home = tempfile::tempdir().unwrap();
        let cfg = home.path().join(".config/nlds/config.toml");
        write(
            &cfg,
            "url = \"https://file.example\"\ntoken = \"file-token\"\ngroup = \"fgroup\"\n",
        );
        let h = home.path().to_str().unwrap();

        let s = resolve(&Overrides::default(), &env_of(&[("HOME", h)])).unwrap();
        assert_eq!(s.url, "https://file.example");
        assert_eq!(s.token.expose(), "file-token");
        assert_eq!(s.group.as_deref(), Some("fgroup"));
        assert_eq!(s.config_file.as_deref(), Some(cfg.as_path()));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);

        let env = env_of(&[
            ("HOME", h),
            ("NLDS_URL", "https://env.example"),
            ("NLDS_TOKEN", "env-token"),
            ("NLDS_GROUP", ""),
        ]);
        let s = resolve(&Overrides::default(), &env).unwrap();
        assert_eq!(s.url, "https://env.example");
        assert_eq!(s.token.expose(), "env-token");
        assert_eq!(
            s.group.as_deref(),
            Some("fgroup"),
            "empty env values are unset"
        );

        let flags = Overrides {
            url: Some("https://flag.example".into()),
            token: Some(Secret::new("flag-token")),
            group: Some("flaggroup".into()),
        };
        let s = resolve(&flags, &env).unwrap();
        assert_eq!(
            (s.url.as_str(), s.token.expose(), s.group.as_deref()),
            ("https://flag.example", "flag-token", Some("flaggroup"))
        );
        assert!(!format!("{s:?}").contains("flag-token"));
    }

    #[test]
    fn token_file_and_nlds_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("elsewhere.toml");
        write(&cfg, "url = \"https://x\"\ntoken_file = \"tok\"\n");
        write(&dir.path().join("tok"), "  secret-from-file\n");
        let env = env_of(&[("NLDS_CONFIG", cfg.to_str().unwrap())]);
        let s = resolve(&Overrides::default(), &env).unwrap();
        assert_eq!(s.token.expose(), "secret-from-file");
        assert_eq!(s.group, None);

        write(&cfg, "url = \"https://x\"\ntoken_file = \"missing\"\n");
        let e = resolve(&Overrides::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the token_file"), "{e}");

        write(
            &cfg,
            "url = \"https://x\"\ntoken = \"a\"\ntoken_file = \"tok\"\n",
        );
        let e = resolve(&Overrides::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");

        write(&cfg, "url = [\n");
        let e = resolve(&Overrides::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("elsewhere.toml"), "{e}");

        let gone = dir.path().join("gone.toml");
        let env = env_of(&[("NLDS_CONFIG", gone.to_str().unwrap())]);
        let e = resolve(&Overrides::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the config file"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn warns_about_a_readable_token() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        write(&cfg, "url = \"https://x\"\ntoken = \"t\"\n");
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
        let env = env_of(&[("NLDS_CONFIG", cfg.to_str().unwrap())]);
        let s = resolve(&Overrides::default(), &env).unwrap();
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("chmod 600"));
    }

    #[test]
    fn nothing_configured_says_how() {
        let home = tempfile::tempdir().unwrap();
        let env = env_of(&[("HOME", home.path().to_str().unwrap())]);
        let e = resolve(&Overrides::default(), &env).unwrap_err();
        assert!(matches!(e, Error::Config(_)));
        let msg = e.to_string();
        let path = home.path().join(".config/nlds/config.toml");
        assert!(msg.contains("it needs a server URL and a token"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        for var in [
            "NLDS_URL",
            "NLDS_TOKEN",
            "NLDS_GROUP",
            "NLDS_CONFIG",
            "--token",
        ] {
            assert!(msg.contains(var), "{var} missing from {msg}");
        }
        let env = env_of(&[("NLDS_URL", "https://x")]);
        let msg = resolve(&Overrides::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("it needs a token."), "{msg}");
    }
}
