//! Quotas: a group's limits per tier (warm bytes, cold bytes, file count), its usage and what
//! running puts reserved. Shared by the catalogue (which keeps them), the API (which carries
//! them) and the CLI (which shows and sets them).

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// What a put will store, as its client measured it (`nlds put` walks the paths itself): the
/// catalogue reserves it against the group's quota when it accepts the put.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SizeHint {
    /// Bytes of the regular files.
    pub bytes: u64,
    /// Entries (files, directories, links) the put records.
    pub files: u64,
}

/// A group's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaLimits {
    /// Bytes of live files with a copy on the warm tier (object store).
    pub warm_bytes: Option<u64>,
    /// Bytes of live files with a copy on the cold tier (tape).
    pub cold_bytes: Option<u64>,
    /// Live files (every entry a put records), on any tier.
    pub files: Option<u64>,
}

/// `PUT /api/v2/admin/quota/{group}`: changes a group's limits. An absent field keeps its
/// limit; `null` clears it (unlimited); a number sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetQuota {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub warm_bytes: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub cold_bytes: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub files: Option<Option<u64>>,
}

impl SetQuota {
    /// Does it change anything?
    pub fn is_empty(&self) -> bool {
        self.warm_bytes.is_none() && self.cold_bytes.is_none() && self.files.is_none()
    }

    /// `limits` with these changes.
    pub fn applied_to(&self, limits: QuotaLimits) -> QuotaLimits {
        QuotaLimits {
            warm_bytes: self.warm_bytes.unwrap_or(limits.warm_bytes),
            cold_bytes: self.cold_bytes.unwrap_or(limits.cold_bytes),
            files: self.files.unwrap_or(limits.files),
        }
    }
}

/// A field that is present (`null` included) deserialises to `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

/// Bytes and files on one tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Amount {
    pub bytes: u64,
    pub files: u64,
}

/// A group's usage: live files with a warm copy, with a cold copy, and all live files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub warm: Amount,
    pub cold: Amount,
    pub all: Amount,
}

/// One group's quota: limits, usage, and what running puts reserved (warm bytes and files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupQuota {
    pub group: String,
    pub limits: QuotaLimits,
    pub usage: Usage,
    pub reserved: Amount,
}

/// `GET /api/v2/quota` and `GET /api/v2/admin/quota`: the groups asked for, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaReport {
    pub groups: Vec<GroupQuota>,
}

/// `1.5 TiB`, `900 B`: bytes in binary units, for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v >= 100.0 || (v - v.round()).abs() < 0.05 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `5M`, `1200`: a count, for people.
pub fn human_count(n: u64) -> String {
    let (d, s) = match n {
        n if n >= 1_000_000_000 => (1e9, "G"),
        n if n >= 1_000_000 => (1e6, "M"),
        n if n >= 10_000 => (1e3, "k"),
        _ => return n.to_string(),
    };
    let v = n as f64 / d;
    if (v - v.round()).abs() < 0.05 {
        format!("{v:.0}{s}")
    } else {
        format!("{v:.1}{s}")
    }
}

/// A limit as typed by an operator: `10TiB`, `1.5 PB`, `5M`, `123`, or `none` (unlimited).
/// Byte units: `K`/`KiB`.. (powers of 1024), `KB`.. (powers of 1000), `B`; counts take
/// `k`/`M`/`G` (powers of 1000).
pub fn parse_limit(text: &str, bytes: bool) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!(
            "{text:?} is not a limit: give a number with an optional unit (e.g. 10TiB, 5M) or none"
        )
    })?;
    let unit = unit.trim();
    let mult: f64 = if bytes {
        match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kib" => 1024f64,
            "m" | "mib" => 1024f64.powi(2),
            "g" | "gib" => 1024f64.powi(3),
            "t" | "tib" => 1024f64.powi(4),
            "p" | "pib" => 1024f64.powi(5),
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "tb" => 1e12,
            "pb" => 1e15,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB, TiB, PiB or KB, MB, GB, TB, PB)"
                ));
            }
        }
    } else {
        match unit {
            "" => 1.0,
            "k" | "K" => 1e3,
            "M" | "m" => 1e6,
            "G" | "g" => 1e9,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} for a file count (use k, M or G)"
                ));
            }
        }
    };
    let v = (value * mult).round();
    if !v.is_finite() || v < 0.0 || v > i64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Some(v as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_with_binary_and_decimal_units_and_none() {
        assert_eq!(parse_limit("10TiB", true), Ok(Some(10 << 40)));
        assert_eq!(parse_limit("1 PiB", true), Ok(Some(1 << 50)));
        assert_eq!(parse_limit("2GB", true), Ok(Some(2_000_000_000)));
        assert_eq!(parse_limit("1.5K", true), Ok(Some(1536)));
        assert_eq!(parse_limit("5M", false), Ok(Some(5_000_000)));
        assert_eq!(parse_limit("none", false), Ok(None));
        assert!(
            parse_limit("5 parsecs", true)
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            parse_limit("lots", false)
                .unwrap_err()
                .contains("not a limit")
        );
        assert!(parse_limit("5MiB", false).is_err());
    }

    #[test]
    fn human_units_round_for_people() {
        assert_eq!(human_bytes(900), "900 B");
        assert_eq!(human_bytes(10 << 40), "10 TiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_count(5_000_000), "5M");
        assert_eq!(human_count(1234), "1234");
        assert_eq!(human_count(12_500), "12.5k");
    }

    #[test]
    fn set_quota_tells_absent_from_null() {
        let s: SetQuota = serde_json::from_str(r#"{"warm_bytes": 10, "files": null}"#).unwrap();
        assert_eq!(s.warm_bytes, Some(Some(10)));
        assert_eq!(s.cold_bytes, None);
        assert_eq!(s.files, Some(None));
        let old = QuotaLimits {
            warm_bytes: Some(1),
            cold_bytes: Some(2),
            files: Some(3),
        };
        assert_eq!(
            s.applied_to(old),
            QuotaLimits {
                warm_bytes: Some(10),
                cold_bytes: Some(2),
                files: None
            }
        );
        let back: SetQuota = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.warm_bytes, Some(Some(10)));
    }
}
