//! The units rules are written in: durations (`"30d"`), sizes (`"10MiB"`, `"1GB"`, bytes as an
//! integer) and times (RFC 3339, quoted or as a TOML date-time).

use chrono::{DateTime, TimeDelta, Utc};
use figment::value::Value;

use crate::value::{Errors, toml_datetime, type_name};

/// A duration such as `"30d"`, `"12h"`, `"2w"`, `"1y 6months"`.
pub(crate) fn duration(v: &Value, key: &str, errs: &mut Errors) -> Option<TimeDelta> {
    let Value::String(_, s) = v else {
        errs.push(
            key,
            format!(
                "must be a duration such as \"30d\" or \"12h\", found {}",
                type_name(v)
            ),
        );
        return None;
    };
    match humantime::parse_duration(s) {
        Ok(d) => match TimeDelta::from_std(d) {
            Ok(d) => Some(d),
            Err(_) => {
                errs.push(key, format!("{s:?} is too long a duration"));
                None
            }
        },
        Err(e) => {
            errs.push(
                key,
                format!(
                    "{s:?} is not a duration ({e}): write a number and a unit, such as \"30d\", \"12h\", \"2w\""
                ),
            );
            None
        }
    }
}

/// A size: an integer number of bytes, or a string such as `"10MiB"` (1024-based) or `"1GB"`
/// (1000-based).
pub(crate) fn size(v: &Value, key: &str, errs: &mut Errors) -> Option<u64> {
    match v {
        Value::Num(_, n) => match n.to_u128_lossy().and_then(|n| u64::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                errs.push(
                    key,
                    "must be a whole, non-negative number of bytes or a size such as \"10MiB\"",
                );
                None
            }
        },
        Value::String(_, s) => match s.trim().parse::<bytesize::ByteSize>() {
            Ok(b) if b.as_u64() < u64::MAX => Some(b.as_u64()),
            Ok(_) => {
                errs.push(key, format!("{s:?} is too big a size"));
                None
            }
            Err(_) => {
                errs.push(
                    key,
                    format!(
                        "{s:?} is not a size: write bytes, or a number and a unit such as \"10MiB\", \"1.5GiB\", \"1GB\""
                    ),
                );
                None
            }
        },
        other => {
            errs.push(
                key,
                format!(
                    "must be a size such as \"10MiB\" or a number of bytes, found {}",
                    type_name(other)
                ),
            );
            None
        }
    }
}

/// A time: RFC 3339 with an offset, quoted (`"2027-06-30T00:00:00Z"`) or a TOML date-time.
pub(crate) fn time(v: &Value, key: &str, errs: &mut Errors) -> Option<DateTime<Utc>> {
    let text = match v {
        Value::String(_, s) => Some(s.as_str()),
        Value::Dict(_, d) => toml_datetime(d),
        _ => None,
    };
    let Some(text) = text else {
        errs.push(
            key,
            format!(
                "must be a time such as \"2027-06-30T00:00:00Z\", found {}",
                type_name(v)
            ),
        );
        return None;
    };
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(e) => {
            errs.push(
                key,
                format!(
                    "{text:?} is not an RFC 3339 time with an offset ({e}): write e.g. \"2027-06-30T00:00:00Z\""
                ),
            );
            None
        }
    }
}
