//! The string forms of the contract enums come from one derive each (strum, with serde renames
//! kept to the same spelling). These tests pin every wire spelling (they must stay byte-identical:
//! `docs/PROTOCOL.md`, the legacy API, the database) and round-trip every variant through
//! `as_str`, `Display`, `FromStr` and, where the enum is serialised, serde.

use std::fmt::{Debug, Display};
use std::str::FromStr;

use nlds_core::access::AccessRole;
use nlds_core::admin::{AuditAction, AuditOutcome, LogLevel};
use nlds_core::api::{ApiAction, Tier};
use nlds_core::{Action, ErrorCode, PathKind, Role, State, Worker};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// `all` spells exactly `expected`, in order, and every variant parses back from its spelling.
fn strings_round_trip<T>(all: &[T], as_str: fn(T) -> &'static str, expected: &[&str])
where
    T: Copy + Debug + PartialEq + Display + FromStr,
    <T as FromStr>::Err: Debug,
{
    let spelled: Vec<&str> = all.iter().map(|v| as_str(*v)).collect();
    assert_eq!(spelled, expected);
    for &v in all {
        assert_eq!(v.to_string(), as_str(v), "{v:?}");
        assert_eq!(as_str(v).parse::<T>().unwrap(), v, "{v:?}");
    }
    assert!("no-such-variant".parse::<T>().is_err());
}

/// Every variant serialises as its string and deserialises back from it.
fn serde_round_trips<T>(all: &[T], as_str: fn(T) -> &'static str)
where
    T: Copy + Debug + PartialEq + Serialize + DeserializeOwned,
{
    for &v in all {
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, format!("\"{}\"", as_str(v)), "{v:?}");
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v, "{v:?}");
    }
}

#[test]
fn worker() {
    strings_round_trip(
        Worker::ALL,
        Worker::as_str,
        &[
            "route",
            "index",
            "catalog-check",
            "catalog-put",
            "catalog-get",
            "catalog-archive-next",
            "catalog-archive-update",
            "catalog",
            "monitor-put",
            "monitor",
            "transfer-put",
            "transfer-get",
            "transfer-del",
            "archive-put",
            "archive-get",
            "log",
            "policy",
            "storage-audit",
        ],
    );
    let err = "nowhere".parse::<Worker>().unwrap_err();
    assert_eq!(err.to_string(), "unknown Worker \"nowhere\" in routing key");
}

#[test]
fn action() {
    strings_round_trip(
        Action::ALL,
        Action::as_str,
        &[
            "init",
            "start",
            "complete",
            "failed",
            "next",
            "prepare",
            "prepare-check",
            "put",
            "putlist",
            "get",
            "getlist",
            "del",
            "dellist",
            "list",
            "find",
            "meta",
            "stat",
            "setup",
            "append",
            "plan",
            "evict",
            "undelete",
            "purge",
            "stage",
            "quota",
            "quota-set",
            "admin",
            "notify",
            "audit",
            "system-stat",
            "debug",
            "info",
            "warning",
            "error",
            "critical",
            "run",
            "dry-run",
            "status",
            "reload",
            "reset",
            "explain",
            "cancel",
            "progress",
        ],
    );
    let err = "dance".parse::<Action>().unwrap_err();
    assert_eq!(err.to_string(), "unknown Action \"dance\" in routing key");
}

#[test]
fn role() {
    strings_round_trip(
        Role::ALL,
        Role::as_str,
        &[
            "router",
            "indexer",
            "transfer-put",
            "transfer-get",
            "catalogue",
            "catalogue-rpc",
            "monitor",
            "monitor-rpc",
            "logger",
            "archive-put",
            "archive-get",
            "policy",
            "storage-audit",
        ],
    );
    assert_eq!(Role::ArchiveGet.queue(), "nlds.archive-get");
}

#[test]
fn state() {
    strings_round_trip(
        &State::ALL,
        State::name,
        &[
            "INITIALISING",
            "ROUTING",
            "SPLITTING",
            "INDEXING",
            "CATALOG_PUTTING",
            "TRANSFER_PUTTING",
            "CATALOG_GETTING",
            "ARCHIVE_GETTING",
            "TRANSFER_GETTING",
            "TRANSFER_INIT",
            "ARCHIVE_INIT",
            "ARCHIVE_PUTTING",
            "ARCHIVE_PREPARING",
            "CATALOG_DELETING",
            "CATALOG_UPDATING",
            "CATALOG_ARCHIVE_UPDATING",
            "CATALOG_REMOVING",
            "COMPLETE",
            "FAILED",
            "COMPLETE_WITH_ERRORS",
            "COMPLETE_WITH_WARNINGS",
            "CANCELLED",
            "SPLIT",
            "SEARCHING",
        ],
    );
    serde_round_trips(&State::ALL, State::name);
    for st in State::ALL {
        assert_eq!(State::from_value(st.value()), Some(st));
    }
}

#[test]
fn error_code() {
    strings_round_trip(
        ErrorCode::ALL,
        ErrorCode::as_str,
        &[
            "bad_request",
            "unauthorized",
            "forbidden",
            "not_found",
            "conflict",
            "payload_too_large",
            "path_missing",
            "permission_denied",
            "checksum_mismatch",
            "storage_error",
            "timeout",
            "unavailable",
            "internal",
            "quota_exceeded",
            "unchanged",
            "cancelled",
        ],
    );
    serde_round_trips(ErrorCode::ALL, ErrorCode::as_str);
}

#[test]
fn api_action() {
    strings_round_trip(
        ApiAction::ALL,
        ApiAction::as_str,
        &[
            "put",
            "putlist",
            "get",
            "getlist",
            "archive-put",
            "archive-get",
            "del",
            "dellist",
        ],
    );
    serde_round_trips(ApiAction::ALL, ApiAction::as_str);
    for &a in ApiAction::ALL {
        assert_eq!(ApiAction::parse(a.as_str()), Some(a));
    }
    // Exact spelling only: callers normalise case themselves.
    assert_eq!(ApiAction::parse("PUT"), None);
}

#[test]
fn tier() {
    strings_round_trip(Tier::ALL, Tier::as_str, &["warm", "cold"]);
    serde_round_trips(Tier::ALL, Tier::as_str);
}

#[test]
fn path_kind() {
    strings_round_trip(
        PathKind::ALL,
        PathKind::as_str,
        &["file", "directory", "link"],
    );
    serde_round_trips(PathKind::ALL, PathKind::as_str);
    assert_eq!(PathKind::parse("link"), Some(PathKind::Link));
    assert_eq!(PathKind::parse("Link"), None);
}

#[test]
fn access_role() {
    strings_round_trip(
        AccessRole::ALL,
        AccessRole::as_str,
        &["user", "deputy", "manager", "admin"],
    );
    serde_round_trips(AccessRole::ALL, AccessRole::as_str);
    assert_eq!(AccessRole::parse(" MANAGER "), Some(AccessRole::Manager));
}

#[test]
fn log_level() {
    strings_round_trip(
        &LogLevel::ALL,
        LogLevel::as_str,
        &["debug", "info", "warning", "error", "critical"],
    );
    serde_round_trips(&LogLevel::ALL, LogLevel::as_str);
    assert_eq!(LogLevel::parse(" WARN"), Some(LogLevel::Warning));
    assert_eq!(LogLevel::parse("Error"), Some(LogLevel::Error));
}

#[test]
fn audit_action() {
    strings_round_trip(
        &AuditAction::ALL,
        AuditAction::as_str,
        &[
            "put", "get", "meta", "delete", "undelete", "purge", "list", "find", "stat", "admin",
            "stage", "release", "locality", "cancel", "notify",
        ],
    );
    serde_round_trips(&AuditAction::ALL, AuditAction::as_str);
    assert_eq!(AuditAction::parse(" Delete"), Some(AuditAction::Delete));
}

#[test]
fn audit_outcome() {
    strings_round_trip(
        AuditOutcome::ALL,
        AuditOutcome::as_str,
        &["allowed", "refused"],
    );
    serde_round_trips(AuditOutcome::ALL, AuditOutcome::as_str);
    assert_eq!(AuditOutcome::parse("REFUSED"), Some(AuditOutcome::Refused));
}
