//! Every text view of the command line, gathered: each view lives with its command
//! (`commands::*::view`, `commands::meta`, `commands::whoami`), the transaction views in
//! [`crate::transaction`] and the shared formatting in [`crate::format`]. Nothing in the crate
//! imports this module; it is the one place golden tests and embedders find them all.

pub use crate::commands::find::view::{
    file_view, files_table, object_url, permissions, simple_paths, storage,
};
pub use crate::commands::get::view::get_plan_view;
pub use crate::commands::list::view::{holding_view, holdings_table};
pub use crate::commands::meta::meta_view;
pub use crate::commands::put::view::put_plan_view;
pub use crate::commands::setup::view::config_view;
pub use crate::commands::stat::view::{failed_paths, stat_table};
pub use crate::commands::whoami::whoami_view;
pub use crate::format::{Zone, duration_text, human_size, shorten, state_name, text_width, time};
pub use crate::transaction::{accepted_view, progress_line, transaction_view};
