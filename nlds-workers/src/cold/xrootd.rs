//! `xrootd`: an XRootD server driven through `xrdcp`/`xrdfs` (being written).

use serde::{Deserialize, Serialize};

/// `[workers.cold.xrootd]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct XrootdConfig {}
