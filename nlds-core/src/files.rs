//! What every part of the contract says about a file on disk: its kind, and why it failed.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// What a path on POSIX disk is.
#[cfg_attr(
    feature = "db",
    derive(sea_orm::DeriveValueType),
    sea_orm(value_type = "String", from_str = "crate::db::parse")
)]
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum PathKind {
    File,
    Directory,
    Link,
}

impl PathKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [PathKind] = <PathKind as strum::VariantArray>::VARIANTS;

    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }
    /// The exact wire spelling only.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// A file that could not be handled, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FailedFile {
    pub path: String,
    pub code: ErrorCode,
    pub reason: String,
}

impl FailedFile {
    pub fn new(path: impl Into<String>, code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            code,
            reason: reason.into(),
        }
    }
}
