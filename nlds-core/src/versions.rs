//! Versions of a path (see docs/VERSIONS.md): how a put compares a path its holding already has
//! ([`SyncLevel`], [`classify`]) and which version a read selects ([`VersionSelect`]).
//!
//! A put of a path the holding already has stores it again as a new version (the next number)
//! when it changed, and skips it when it did not. What "changed" means is the put's sync level.
//! The catalogue's check and the put's dry run both decide with [`classify`], so a dry run says
//! exactly what the put would do.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::files::PathKind;

/// How a put compares a path with the newest stored version of it.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum SyncLevel {
    /// A stored path is unchanged whatever it holds now.
    Exists,
    /// Unchanged when the size is the same.
    Size,
    /// Unchanged when the size and the modification time are the same (the default).
    #[default]
    Mtime,
    /// Unchanged when the size and the blake3 checksum of the content are the same (the file is
    /// read and hashed locally before anything is uploaded).
    Checksum,
}

impl SyncLevel {
    /// Every level, in declaration order.
    pub const ALL: &'static [SyncLevel] = <SyncLevel as strum::VariantArray>::VARIANTS;
}

/// What a put does with a path (the answer of [`classify`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    /// The holding does not have the path: stored as version 1.
    New,
    /// The holding has it and it changed: stored as the next version.
    Changed,
    /// The holding has it unchanged at the put's sync level: skipped.
    Unchanged,
    /// Same size at the `checksum` level: the content decides. Transfer-put hashes the local file
    /// and compares it with this stored blake3 before uploading anything.
    CompareChecksum { blake3: String },
}

/// The newest stored version of a path, as far as [`classify`] looks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion<'a> {
    pub kind: PathKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub link_target: Option<&'a str>,
    pub blake3: Option<&'a str>,
}

/// A path as the indexer (or the client, for a dry run) sees it on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPath<'a> {
    pub kind: PathKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub link_target: Option<&'a str>,
}

/// What a put at `level` does with `local`, given the newest stored version of its path
/// (`None`: the holding does not have it). A path whose kind or link target changed is always
/// changed (except at `exists`); directories and links have no content to hash, so `checksum`
/// compares them like `mtime`; a file with no stored checksum cannot be compared by content and
/// is changed.
pub fn classify(
    level: SyncLevel,
    local: &LocalPath<'_>,
    stored: Option<&StoredVersion<'_>>,
) -> Verdict {
    let Some(stored) = stored else {
        return Verdict::New;
    };
    if level == SyncLevel::Exists {
        return Verdict::Unchanged;
    }
    if local.kind != stored.kind || local.link_target != stored.link_target {
        return Verdict::Changed;
    }
    let same_size = local.size == stored.size;
    let same_mtime = local.mtime_ns == stored.mtime_ns;
    let unchanged = match (level, local.kind) {
        (SyncLevel::Size, _) => same_size,
        (SyncLevel::Checksum, PathKind::File) => {
            return match (same_size, stored.blake3) {
                (true, Some(b)) => Verdict::CompareChecksum {
                    blake3: b.to_owned(),
                },
                _ => Verdict::Changed,
            };
        }
        _ => same_size && same_mtime,
    };
    if unchanged {
        Verdict::Unchanged
    } else {
        Verdict::Changed
    }
}

impl Verdict {
    /// The verdict once the content is known: a [`Verdict::CompareChecksum`] is unchanged when
    /// `local` (the local content's blake3) equals the stored one, else changed.
    pub fn settle(self, local: Option<&str>) -> Verdict {
        match self {
            Verdict::CompareChecksum { blake3 } if local == Some(blake3.as_str()) => {
                Verdict::Unchanged
            }
            Verdict::CompareChecksum { .. } => Verdict::Changed,
            v => v,
        }
    }
}

/// A path a put's dry run asks about, as the client found it on disk (with its blake3 at the
/// `checksum` level).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LocalEntry {
    pub path: String,
    pub kind: PathKind,
    pub size: u64,
    pub mtime_ns: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

/// What a put would do with one path (the dry run's answer, from [`classify`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EntryVerdict {
    pub path: String,
    /// `new`, `changed` (stored as a new version) or `unchanged` (skipped).
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The newest stored version of the path (absent: new).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_version: Option<u32>,
}

/// Which version of each path a read (list, find, get, delete) selects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "select", content = "value")]
pub enum VersionSelect {
    /// The newest live version of each path.
    #[default]
    Newest,
    /// Every live version.
    All,
    /// Version number N of each path.
    Number(u32),
    /// The newest live version ingested at or before this time.
    At(DateTime<Utc>),
}

impl VersionSelect {
    pub fn is_newest(&self) -> bool {
        *self == VersionSelect::Newest
    }

    /// The selection a request's `version`, `at` and `versions` fields name; more than one is a
    /// contradiction, said in words.
    pub fn from_request(
        version: Option<u32>,
        at: Option<DateTime<Utc>>,
        all: bool,
    ) -> Result<Self, String> {
        match (version, at, all) {
            (None, None, false) => Ok(VersionSelect::Newest),
            (Some(0), None, false) => Err("version numbers start at 1".into()),
            (Some(n), None, false) => Ok(VersionSelect::Number(n)),
            (None, Some(t), false) => Ok(VersionSelect::At(t)),
            (None, None, true) => Ok(VersionSelect::All),
            _ => Err("give at most one of version, at and all versions".into()),
        }
    }
}

/// Parses an `--at` time: RFC 3339 (`2026-12-05T10:00:00Z`) or a date (`2026-12-05`, the end of
/// that day in UTC, so everything put that day is included).
pub fn parse_at(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(end) = d.and_hms_nano_opt(23, 59, 59, 999_999_999)
    {
        return Ok(end.and_utc());
    }
    Err(format!(
        "{s:?} is not a time: give RFC 3339 (2026-12-05T10:00:00Z) or a date (2026-12-05)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(kind: PathKind, size: u64, mtime_ns: i64) -> LocalPath<'static> {
        LocalPath {
            kind,
            size,
            mtime_ns,
            link_target: None,
        }
    }

    fn stored(kind: PathKind, size: u64, mtime_ns: i64) -> StoredVersion<'static> {
        StoredVersion {
            kind,
            size,
            mtime_ns,
            link_target: None,
            blake3: Some("b"),
        }
    }

    #[test]
    fn a_path_not_stored_is_new_at_every_level() {
        for &l in SyncLevel::ALL {
            assert_eq!(
                classify(l, &local(PathKind::File, 1, 1), None),
                Verdict::New
            );
        }
    }

    /// Every level against each kind of difference: what is unchanged where.
    #[test]
    fn each_level_sees_its_own_differences() {
        use SyncLevel::*;
        use Verdict::*;
        let f = PathKind::File;
        let s = stored(f, 10, 100);
        let cmp = CompareChecksum { blake3: "b".into() };
        let cases = [
            // (local, exists, size, mtime, checksum)
            (
                local(f, 10, 100),
                Unchanged,
                Unchanged,
                Unchanged,
                cmp.clone(),
            ),
            (
                local(f, 10, 200),
                Unchanged,
                Unchanged,
                Changed,
                cmp.clone(),
            ),
            (local(f, 11, 100), Unchanged, Changed, Changed, Changed),
            (
                local(PathKind::Directory, 10, 100),
                Unchanged,
                Changed,
                Changed,
                Changed,
            ),
        ];
        for (l, exists, size, mtime, checksum) in cases {
            assert_eq!(classify(Exists, &l, Some(&s)), exists, "{l:?}");
            assert_eq!(classify(Size, &l, Some(&s)), size, "{l:?}");
            assert_eq!(classify(Mtime, &l, Some(&s)), mtime, "{l:?}");
            assert_eq!(classify(Checksum, &l, Some(&s)), checksum, "{l:?}");
        }
        let no_sum = StoredVersion { blake3: None, ..s };
        assert_eq!(
            classify(Checksum, &local(f, 10, 100), Some(&no_sum)),
            Changed
        );
    }

    #[test]
    fn directories_and_links_compare_by_metadata() {
        let d = PathKind::Directory;
        for l in [SyncLevel::Mtime, SyncLevel::Checksum] {
            assert_eq!(
                classify(l, &local(d, 0, 5), Some(&stored(d, 0, 5))),
                Verdict::Unchanged
            );
            assert_eq!(
                classify(l, &local(d, 0, 6), Some(&stored(d, 0, 5))),
                Verdict::Changed
            );
        }
        let link = |t: &'static str| LocalPath {
            link_target: Some(t),
            ..local(PathKind::Link, 1, 5)
        };
        let was = StoredVersion {
            link_target: Some("a"),
            ..stored(PathKind::Link, 1, 5)
        };
        assert_eq!(
            classify(SyncLevel::Size, &link("a"), Some(&was)),
            Verdict::Unchanged
        );
        assert_eq!(
            classify(SyncLevel::Size, &link("b"), Some(&was)),
            Verdict::Changed
        );
        assert_eq!(
            classify(SyncLevel::Exists, &link("b"), Some(&was)),
            Verdict::Unchanged
        );
    }

    #[test]
    fn version_selection_from_a_request() {
        let t = parse_at("2026-12-05").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-05T23:59:59.999999999+00:00");
        assert_eq!(
            parse_at("2026-12-05T10:00:00+01:00").unwrap().to_rfc3339(),
            "2026-12-05T09:00:00+00:00"
        );
        assert!(parse_at("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(
            VersionSelect::from_request(None, None, false),
            Ok(VersionSelect::Newest)
        );
        assert_eq!(
            VersionSelect::from_request(Some(2), None, false),
            Ok(VersionSelect::Number(2))
        );
        assert_eq!(
            VersionSelect::from_request(None, Some(t), false),
            Ok(VersionSelect::At(t))
        );
        assert_eq!(
            VersionSelect::from_request(None, None, true),
            Ok(VersionSelect::All)
        );
        assert!(VersionSelect::from_request(Some(0), None, false).is_err());
        assert!(VersionSelect::from_request(Some(1), Some(t), false).is_err());
    }
}
