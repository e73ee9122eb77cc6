//! The layers of the client's settings as figment providers, lowest to highest: the config
//! file, the environment, the command-line flags. Each layer holds only the keys it sets
//! (empty values count as unset), so a higher layer wins key by key, and figment's metadata
//! says which layer gave a key ([`Origin::of`]). The main settings are layered here
//! ([`figment`]); the OAuth2 `[auth]` settings (`crate::oauth`) are stacked from the same
//! pieces: [`read_file`], [`tidy`], [`env_strings`], [`file_relative`], [`stack`] and
//! [`Origin`].

use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::SecretString;
use serde::Deserialize;

use super::values::{DurationValue, parse_bool, parse_duration};
use super::{KEYS, Overrides, Source, non_empty, readable_by_others};
use crate::error::Error;

/// A layer of settings, lowest to highest precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Origin {
    File,
    Env,
    Flags,
}

impl Origin {
    /// The layer's name: its figment metadata.
    fn name(self) -> &'static str {
        match self {
            Origin::File => "config file",
            Origin::Env => "environment",
            Origin::Flags => "command line",
        }
    }

    /// Which layer of `fig` set `key`.
    pub(crate) fn of(fig: &Figment, key: &str) -> Option<Origin> {
        let name = fig.find_metadata(key)?.name.as_ref();
        [Origin::File, Origin::Env, Origin::Flags]
            .into_iter()
            .find(|o| o.name() == name)
    }
}

/// Each layered key: its flag and its environment variable (`user` has none).
const LAYERED: [(&str, &str, Option<&str>); 7] = [
    ("url", "--url", Some("NLDS_URL")),
    ("token", "--token", Some("NLDS_TOKEN")),
    ("group", "--group", Some("NLDS_GROUP")),
    ("user", "--user", None),
    ("insecure", "--insecure", Some("NLDS_INSECURE")),
    (
        "connect_timeout",
        "--connect-timeout",
        Some("NLDS_CONNECT_TIMEOUT"),
    ),
    (
        "request_timeout",
        "--request-timeout",
        Some("NLDS_REQUEST_TIMEOUT"),
    ),
];

/// The settings of one layer, or of all of them merged.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Values {
    pub url: Option<String>,
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    pub group: Option<String>,
    pub user: Option<String>,
    pub insecure: Option<bool>,
    pub connect_timeout: Option<DurationValue>,
    pub request_timeout: Option<DurationValue>,
}

impl Values {
    /// The merged settings of `fig`.
    pub fn of(fig: &Figment) -> Result<Self, Error> {
        fig.extract()
            .map_err(|e| Error::Config(format!("client settings: {e}")))
    }
}

/// The config file as read: its settings (empty values removed), its layer and its `[auth]`
/// section as written (`crate::oauth` checks and layers it).
pub(crate) struct FileLayer {
    pub(super) values: Values,
    dict: Dict,
    pub(crate) auth: Option<toml::Value>,
}

/// A layer of settings: a figment provider named after its [`Origin`].
struct Layer {
    origin: Origin,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin.name())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// The layers merged, each a figment provider: the file (if any) < the environment < the flags.
pub(crate) fn stack(file: Option<Dict>, env: Dict, flags: Dict) -> Figment {
    let mut fig = Figment::new();
    if let Some(dict) = file {
        fig = fig.merge(Layer {
            origin: Origin::File,
            dict,
        });
    }
    fig.merge(Layer {
        origin: Origin::Env,
        dict: env,
    })
    .merge(Layer {
        origin: Origin::Flags,
        dict: flags,
    })
}

/// A table of the config file as it is layered: strings trimmed, empty ones unset.
pub(crate) fn tidy(table: &mut toml::Table) {
    table.retain(|_, value| match value {
        toml::Value::String(s) => {
            *s = s.trim().to_owned();
            !s.is_empty()
        }
        _ => true,
    });
}

/// A table of the config file as a layer's dict.
pub(crate) fn dict_of(table: &toml::Table) -> Dict {
    Value::serialize(table)
        .ok()
        .and_then(Value::into_dict)
        .unwrap_or_default()
}

/// The environment variables `(key, variable)` of `vars` that are set and not empty, trimmed.
pub(crate) fn env_strings<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Dict {
    vars.into_iter()
        .filter_map(|(key, var)| non_empty(env(var)).map(|v| (key.to_owned(), Value::from(v))))
        .collect()
}

/// A path named in the config file at `config_file`: `~/` is `home`, and a relative path is
/// relative to the config file's directory.
pub(crate) fn file_relative(p: &Path, config_file: &Path, home: Option<&Path>) -> PathBuf {
    let expanded = match (p.to_str(), home) {
        (Some(s), Some(h)) if s.starts_with("~/") => h.join(&s[2..]),
        _ => p.to_path_buf(),
    };
    if expanded.is_absolute() {
        expanded
    } else {
        config_file
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(expanded)
    }
}

/// Reads the config file at `path`: `Ok(None)` when it does not exist and was not named by
/// `$NLDS_CONFIG` (`explicit`). Unknown keys and a token others can read become `warnings`.
pub(crate) fn read_file(
    path: &Path,
    explicit: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<FileLayer>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read the config file {} (from $NLDS_CONFIG): {e}",
                path.display()
            )));
        }
    };
    let bad = |msg: String| Error::Config(format!("config file {}: {msg}", path.display()));
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.message().to_owned()))?;
    for key in table.keys() {
        if !KEYS.contains(&key.as_str()) {
            warnings.push(format!(
                "config file {}: unknown key {key:?} is ignored (known keys: {})",
                path.display(),
                KEYS.join(", ")
            ));
        }
    }
    // Checked whole, as written, before empty values are dropped.
    let raw: Values = table
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.message().to_owned()))?;
    if raw.token.is_some() && raw.token_file.is_some() {
        return Err(bad("set either token or token_file, not both".into()));
    }
    if raw.token.is_some()
        && let Some(w) = readable_by_others(path)
    {
        warnings.push(w);
    }
    let auth = table.remove("auth");
    // Only the layered keys; `[auth]` is crate::oauth's.
    table.retain(|key, _| LAYERED.iter().any(|(k, _, _)| *k == key));
    tidy(&mut table);
    let values: Values = table
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.message().to_owned()))?;
    let dict = dict_of(&table);
    Ok(Some(FileLayer {
        values: Values {
            token_file: raw.token_file,
            ..values
        },
        dict,
        auth,
    }))
}

/// The environment layer: the `NLDS_*` variables of [`LAYERED`] that are set and not empty.
fn env_layer(env: &dyn Fn(&str) -> Option<String>) -> Result<Dict, Error> {
    let vars = LAYERED
        .iter()
        .filter_map(|(key, _, var)| var.map(|var| (*key, var)));
    let mut dict = env_strings(vars.clone(), env);
    for (key, var) in vars {
        let Some(v) = dict.get(key).and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        match key {
            "insecure" => {
                let b = parse_bool(&v).ok_or_else(|| {
                    Error::Config(format!(
                        "{var}={v:?} is not a boolean (use 1/true/yes or 0/false/no)"
                    ))
                })?;
                dict.insert(key.to_owned(), Value::from(b));
            }
            "connect_timeout" | "request_timeout" => {
                parse_duration(&v).map_err(|e| Error::Config(format!("{var}: {e}")))?;
            }
            _ => {}
        }
    }
    Ok(dict)
}

/// The command-line layer.
fn flags_layer(flags: &Overrides) -> Dict {
    let mut dict = Dict::new();
    let strings = [
        ("url", &flags.url),
        ("group", &flags.group),
        ("user", &flags.user),
    ];
    for (key, v) in strings {
        if let Some(v) = non_empty(v.clone()) {
            dict.insert(key.to_owned(), Value::from(v));
        }
    }
    if let Some(t) = flags.token.as_ref().map(|t| t.expose().trim())
        && !t.is_empty()
    {
        dict.insert("token".to_owned(), Value::from(t.to_owned()));
    }
    if flags.insecure {
        dict.insert("insecure".to_owned(), Value::from(true));
    }
    let durations = [
        ("connect_timeout", flags.connect_timeout),
        ("request_timeout", flags.request_timeout),
    ];
    for (key, d) in durations {
        if let Some(d) = d {
            dict.insert(key.to_owned(), Value::from(d.as_secs_f64()));
        }
    }
    dict
}

/// The main settings' layers: the file (if any) < the environment < the flags.
pub(super) fn figment(
    file: Option<&FileLayer>,
    flags: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Figment, Error> {
    Ok(stack(
        file.map(|f| f.dict.clone()),
        env_layer(env)?,
        flags_layer(flags),
    ))
}

/// Which layer of `fig` set `key`: the flag, the variable or the config file (at `path`).
pub(super) fn source_of(fig: &Figment, key: &str, path: Option<&Path>) -> Source {
    let Some((_, flag, var)) = LAYERED.iter().find(|(k, _, _)| *k == key) else {
        return Source::Default;
    };
    match Origin::of(fig, key) {
        Some(Origin::Flags) => Source::Flag(flag),
        Some(Origin::Env) => var.map(Source::Env).unwrap_or(Source::Default),
        Some(Origin::File) => Source::File(path.map(Path::to_path_buf).unwrap_or_default()),
        None => Source::Default,
    }
}
