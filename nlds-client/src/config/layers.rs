//! The layers of the client's settings as figment providers, lowest to highest: the config
//! file, the environment, the command-line flags. Each layer holds only the keys it sets
//! (empty values count as unset), so a higher layer wins key by key, and figment's metadata
//! says which layer gave a key ([`source_of`]).

use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::SecretString;
use serde::Deserialize;

use super::values::{DurationValue, parse_bool, parse_duration};
use super::{KEYS, Overrides, Source, non_empty, readable_by_others};
use crate::error::Error;

/// The names of the layers (figment metadata).
const FILE: &str = "config file";
const ENV: &str = "environment";
const FLAGS: &str = "command line";

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

/// The config file as read: its settings (empty values removed) and its layer.
pub(super) struct FileLayer {
    pub values: Values,
    dict: Dict,
}

/// A layer of settings: a named figment provider.
struct Layer {
    name: &'static str,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Reads the config file at `path`: `Ok(None)` when it does not exist and was not named by
/// `$NLDS_CONFIG` (`explicit`). Unknown keys and a token others can read become `warnings`.
pub(super) fn read_file(
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
    // Only the layered keys, strings trimmed, empty ones unset; `[auth]` is crate::oauth's.
    table.retain(|key, value| {
        LAYERED.iter().any(|(k, _, _)| *k == key)
            && match value {
                toml::Value::String(s) => {
                    *s = s.trim().to_owned();
                    !s.is_empty()
                }
                _ => true,
            }
    });
    let values: Values = table
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.message().to_owned()))?;
    let dict = Value::serialize(&table)
        .ok()
        .and_then(Value::into_dict)
        .unwrap_or_default();
    Ok(Some(FileLayer {
        values: Values {
            token_file: raw.token_file,
            ..values
        },
        dict,
    }))
}

/// The environment layer: the `NLDS_*` variables of [`LAYERED`] that are set and not empty.
fn env_layer(env: &dyn Fn(&str) -> Option<String>) -> Result<Layer, Error> {
    let mut dict = Dict::new();
    for (key, _, var) in LAYERED {
        let Some(var) = var else { continue };
        let Some(v) = non_empty(env(var)) else {
            continue;
        };
        let value = match key {
            "insecure" => Value::from(parse_bool(&v).ok_or_else(|| {
                Error::Config(format!(
                    "{var}={v:?} is not a boolean (use 1/true/yes or 0/false/no)"
                ))
            })?),
            "connect_timeout" | "request_timeout" => {
                parse_duration(&v).map_err(|e| Error::Config(format!("{var}: {e}")))?;
                Value::from(v)
            }
            _ => Value::from(v),
        };
        dict.insert(key.to_owned(), value);
    }
    Ok(Layer { name: ENV, dict })
}

/// The command-line layer.
fn flags_layer(flags: &Overrides) -> Layer {
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
    Layer { name: FLAGS, dict }
}

/// The file (if any) < the environment < the flags.
pub(super) fn figment(
    file: Option<&FileLayer>,
    flags: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Figment, Error> {
    let mut fig = Figment::new();
    if let Some(file) = file {
        fig = fig.merge(Layer {
            name: FILE,
            dict: file.dict.clone(),
        });
    }
    Ok(fig.merge(env_layer(env)?).merge(flags_layer(flags)))
}

/// Which layer of `fig` set `key`: the flag, the variable or the config file (at `path`).
pub(super) fn source_of(fig: &Figment, key: &str, path: Option<&Path>) -> Source {
    let Some((_, flag, var)) = LAYERED.iter().find(|(k, _, _)| *k == key) else {
        return Source::Default;
    };
    match fig.find_metadata(key).map(|m| m.name.as_ref()) {
        Some(FLAGS) => Source::Flag(flag),
        Some(ENV) => var.map(Source::Env).unwrap_or(Source::Default),
        Some(FILE) => Source::File(path.map(Path::to_path_buf).unwrap_or_default()),
        _ => Source::Default,
    }
}
