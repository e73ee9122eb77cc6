//! The values of settings as people write them: durations and booleans.

use std::time::Duration;

use serde::Deserialize;

/// `10` (seconds) or `"10s"`, `"500ms"`, `"2m"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum DurationValue {
    Seconds(f64),
    Text(String),
}

impl DurationValue {
    pub(super) fn to_duration(&self) -> Result<Duration, String> {
        match self {
            DurationValue::Seconds(s) => parse_duration(&s.to_string()),
            DurationValue::Text(t) => parse_duration(t),
        }
    }
}

/// `5` or `5s` (seconds, fractions allowed), `250ms`, `10m`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30, 30s, 500ms, 5m, 2h)"))?;
    if !v.is_finite() || v < 0.0 || v * mult > 1e9 {
        return Err(format!("{s:?} is not a sensible duration"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// `1/true/yes/on` or `0/false/no/off`, in any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}
