//! `[workers.cold]`: which backend holds the cold tier, and that backend's table.
//!
//! The file keeps its established shape, `backend = "dir"` beside a `dir = {...}` table (the
//! tables of the other backends may be present and are ignored), but the settings are an enum:
//! only the selected backend's table is carried, and an unknown `backend` fails at start.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::object_store::ObjectStoreConfig;

/// `[workers.cold]`: the selected backend and its settings.
#[derive(Debug, Clone, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames)]
#[serde(try_from = "RawCold", into = "RawCold")]
#[strum(serialize_all = "kebab-case")]
pub enum ColdConfig {
    /// `backend = "dir"`: a directory that emulates a tape library (`[workers.cold.dir]`).
    Dir(DirConfig),
    /// `backend = "xrootd"`: an XRootD (CTA, EOS) endpoint (`[workers.cold.xrootd]`).
    Xrootd(XrootdConfig),
    /// `backend = "s3-glacier"`: an S3 bucket with a Glacier storage class
    /// (`[workers.cold.glacier]`).
    S3Glacier(GlacierConfig),
}

impl Default for ColdConfig {
    fn default() -> Self {
        ColdConfig::Dir(DirConfig::default())
    }
}

impl ColdConfig {
    /// The backends `backend` accepts.
    pub const BACKENDS: &'static [&'static str] = <ColdConfig as strum::VariantNames>::VARIANTS;

    /// The `backend` name (`dir`, `xrootd` or `s3-glacier`), as recorded in the catalogue.
    pub fn backend(&self) -> &'static str {
        self.into()
    }

    /// The `dir` backend's settings, selecting that backend (with its defaults) if another one
    /// was selected.
    pub fn dir_mut(&mut self) -> &mut DirConfig {
        if !matches!(self, ColdConfig::Dir(_)) {
            *self = ColdConfig::Dir(DirConfig::default());
        }
        match self {
            ColdConfig::Dir(c) => c,
            _ => unreachable!("just selected"),
        }
    }

    /// The `xrootd` backend's settings, selecting that backend (with its defaults) if another one
    /// was selected.
    pub fn xrootd_mut(&mut self) -> &mut XrootdConfig {
        if !matches!(self, ColdConfig::Xrootd(_)) {
            *self = ColdConfig::Xrootd(XrootdConfig::default());
        }
        match self {
            ColdConfig::Xrootd(c) => c,
            _ => unreachable!("just selected"),
        }
    }

    /// The `s3-glacier` backend's settings, selecting that backend (with its defaults) if another
    /// one was selected.
    pub fn glacier_mut(&mut self) -> &mut GlacierConfig {
        if !matches!(self, ColdConfig::S3Glacier(_)) {
            *self = ColdConfig::S3Glacier(GlacierConfig::default());
        }
        match self {
            ColdConfig::S3Glacier(c) => c,
            _ => unreachable!("just selected"),
        }
    }
}

/// The file's shape of `[workers.cold]`.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct RawCold {
    backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<DirConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xrootd: Option<XrootdConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    glacier: Option<GlacierConfig>,
}

impl TryFrom<RawCold> for ColdConfig {
    type Error = String;

    fn try_from(raw: RawCold) -> Result<Self, String> {
        Ok(match raw.backend.as_deref().unwrap_or("dir") {
            "dir" => ColdConfig::Dir(raw.dir.unwrap_or_default()),
            "xrootd" => ColdConfig::Xrootd(raw.xrootd.unwrap_or_default()),
            "s3-glacier" => ColdConfig::S3Glacier(raw.glacier.unwrap_or_default()),
            other => {
                return Err(format!(
                    "unknown cold store backend {other:?}: use \"dir\", \"xrootd\" or \"s3-glacier\""
                ));
            }
        })
    }
}

impl From<ColdConfig> for RawCold {
    fn from(c: ColdConfig) -> Self {
        let backend = Some(c.backend().to_owned());
        match c {
            ColdConfig::Dir(d) => RawCold {
                backend,
                dir: Some(d),
                ..Default::default()
            },
            ColdConfig::Xrootd(x) => RawCold {
                backend,
                xrootd: Some(x),
                ..Default::default()
            },
            ColdConfig::S3Glacier(g) => RawCold {
                backend,
                glacier: Some(g),
                ..Default::default()
            },
        }
    }
}

/// `[workers.cold.dir]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DirConfig {
    /// The library's directory; `tape/`, `staged/` and `requests/` are created under it.
    pub root: PathBuf,
    /// How long a stage request takes to bring an aggregate online, in milliseconds.
    pub stage_delay_ms: u64,
}

impl Default for DirConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("cold"),
            stage_delay_ms: 2000,
        }
    }
}

/// `[workers.cold.xrootd]`
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct XrootdConfig {
    /// `root://host[:port]//base/path`: the server and the directory that holds the aggregates.
    pub url: String,
    /// The `xrdcp` command.
    pub xrdcp: String,
    /// The `xrdfs` command.
    pub xrdfs: String,
    /// Words run in front of every command, e.g. `["nsenter", "--net=/run/netns/tape"]`.
    pub command_prefix: Vec<String>,
    /// Limit for each metadata command (stat, rm, mv, query, prepare), for connecting, and for a
    /// read to start; also the XRootD client's request timeout. Streams have no overall limit.
    pub timeout_secs: u64,
    /// Extra environment of the commands, e.g. `XrdSecPROTOCOL = "sss"` and
    /// `XrdSecSSSKT = "/etc/nlds/tape.keytab"`; `XRD_*` client settings here win over ours.
    /// Values are never logged.
    pub env: BTreeMap<String, String>,
}

impl Default for XrootdConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            xrdcp: "xrdcp".into(),
            xrdfs: "xrdfs".into(),
            command_prefix: Vec::new(),
            timeout_secs: 60,
            env: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for XrootdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XrootdConfig")
            .field("url", &self.url)
            .field("xrdcp", &self.xrdcp)
            .field("xrdfs", &self.xrdfs)
            .field("command_prefix", &self.command_prefix)
            .field("timeout_secs", &self.timeout_secs)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `[workers.cold.glacier]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GlacierConfig {
    /// The connection and the bucket: `endpoint`, `region`, `access_key`, `secret_key` (never
    /// logged), `secret_key_file` and `bucket`, the keys of the warm tier's `object_store`.
    #[serde(flatten)]
    pub store: ObjectStoreConfig,
    /// Prepended to every aggregate name to make its key (usually ends with `/`).
    pub prefix: String,
    /// `GLACIER` (Flexible Retrieval) or `DEEP_ARCHIVE`.
    pub storage_class: String,
    /// How long a restored copy stays readable.
    pub restore_days: u32,
    /// `Standard`, `Bulk` or `Expedited` (not with `DEEP_ARCHIVE`).
    pub restore_tier: String,
    /// Aggregates up to this size are one PutObject, larger ones are uploaded in parts of this
    /// size (5 MiB to 5 GiB). At most two parts are in memory at once.
    pub part_size: u64,
    /// Check S3's composite checksum of a multipart object after completion (see the module
    /// docs of the workers' `cold::glacier`). Turn off only for a store that computes it wrongly.
    pub verify_multipart_checksum: bool,
}

impl Default for GlacierConfig {
    fn default() -> Self {
        Self {
            store: ObjectStoreConfig::default(),
            prefix: "cold/".into(),
            storage_class: "GLACIER".into(),
            restore_days: 1,
            restore_tier: "Standard".into(),
            part_size: 64 << 20,
            verify_multipart_checksum: true,
        }
    }
}
