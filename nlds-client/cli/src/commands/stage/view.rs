//! How `nlds stage`, `nlds release` and `nlds locality` show their answers.

use nlds_core::stage::{FileLocality, StageChange, StageStatus};

use crate::format::{INDENT, Zone, kv, printable, time};

/// A stage request and its files, one per line (`STATE  PATH  [error]`).
pub fn status_view(st: &StageStatus, zone: Zone) -> String {
    let mut o = String::new();
    kv(&mut o, INDENT, "request", &st.id.to_string());
    kv(&mut o, INDENT, "created", &time(&st.created_at, zone));
    if let Some(t) = &st.started_at {
        kv(&mut o, INDENT, "started", &time(t, zone));
    }
    if let Some(t) = &st.completed_at {
        kv(&mut o, INDENT, "completed", &time(t, zone));
    }
    if let Some(t) = &st.cancelled_at {
        kv(&mut o, INDENT, "cancelled", &time(t, zone));
    }
    kv(
        &mut o,
        INDENT,
        "lifetime",
        &format!("{}s", st.lifetime_secs),
    );
    for f in &st.files {
        let state = f.state.to_string();
        match &f.error {
            Some(e) => o.push_str(&format!(
                "{INDENT}{state:<10} {}  ({})\n",
                printable(&f.path),
                printable(e)
            )),
            None => o.push_str(&format!("{INDENT}{state:<10} {}\n", printable(&f.path))),
        }
    }
    o
}

/// What a cancel, delete or release changed.
pub fn change_view(c: &StageChange) -> String {
    format!(
        "{} file(s) cancelled, {} pin(s) released\n",
        c.cancelled, c.unpinned
    )
}

/// `LOCALITY  PATH` per file (`ERROR: ...` for a path with no file).
pub fn locality_table(files: &[FileLocality]) -> String {
    let mut o = String::new();
    for f in files {
        let what = match (&f.locality, &f.error) {
            (Some(l), _) => l.to_string(),
            (None, Some(e)) => format!("ERROR: {e}"),
            (None, None) => "UNKNOWN".to_owned(),
        };
        o.push_str(&format!("{what:<14} {}\n", f.path));
    }
    o
}
