//! Worker configuration: the `[workers]` section and its tables, defined in `nlds-settings` (the
//! one owner of the settings) and re-exported here under their established names.

pub use nlds_settings::object_store::{ObjectStoreConfig, REDACTED, TenancyConfig};
pub use nlds_settings::workers::{IndexConfig, TransferConfig, WorkerConfig};
