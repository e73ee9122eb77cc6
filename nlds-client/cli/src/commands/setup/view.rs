//! The view of `nlds config show`.

use crate::format::{Align, Fit, col, duration_text, table};
use nlds_client::config::{Effective, Sourced};

/// `nlds config show`: every setting, its value and where it came from; the token masked.
pub fn config_view(e: &Effective, width: Option<usize>) -> String {
    use Align::*;
    use Fit::*;
    fn row<T>(name: &str, v: &Option<Sourced<T>>, show: impl Fn(&T) -> String) -> Vec<String> {
        match v {
            Some(s) => vec![name.into(), show(&s.value), s.source.to_string()],
            None => vec![name.into(), "(not set)".into(), "-".into()],
        }
    }
    let file = match &e.config_file {
        Some(p) if e.config_file_found => vec![
            "config file".to_owned(),
            p.display().to_string(),
            format!("{} (found)", e.config_file_source),
        ],
        Some(p) => vec![
            "config file".to_owned(),
            p.display().to_string(),
            format!("{} (not found)", e.config_file_source),
        ],
        None => vec![
            "config file".to_owned(),
            "(none: neither $NLDS_CONFIG nor $HOME is set)".to_owned(),
            "-".to_owned(),
        ],
    };
    let rows = vec![
        file,
        row("url", &e.url, |u| u.clone()),
        row("token", &e.token, |t| t.masked()),
        row("group", &e.group, |g| g.clone()),
        row("user", &e.user, |u| u.clone()),
        vec![
            "insecure".into(),
            e.insecure.value.to_string(),
            e.insecure.source.to_string(),
        ],
        vec![
            "connect timeout".into(),
            duration_text(e.connect_timeout.value),
            e.connect_timeout.source.to_string(),
        ],
        vec![
            "request timeout".into(),
            duration_text(e.request_timeout.value),
            e.request_timeout.source.to_string(),
        ],
    ];
    table(
        &[
            col("setting", Left, Keep),
            col("value", Left, End),
            col("from", Left, Start),
        ],
        &rows,
        width,
    )
}
