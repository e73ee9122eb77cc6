//! Typed routing keys `nlds-api.<worker>.<action>` and the queue topology each role declares.

use std::fmt;
use std::str::FromStr;

/// The first part of every routing key.
pub const APPLICATION: &str = "nlds-api";
/// The durable topic exchange every message is published to.
pub const EXCHANGE: &str = "nlds";

/// The string forms of the routing-key parts and roles (`as_str`, `FromStr`, `Display`, `ALL`),
/// all from strum's derives; an unknown part fails with [`RoutingKeyError::UnknownPart`].
macro_rules! routing_part {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident,)+ }) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            strum::IntoStaticStr,
            strum::Display,
            strum::EnumString,
            strum::VariantArray,
        )]
        #[strum(
            serialize_all = "kebab-case",
            const_into_str,
            parse_err_ty = RoutingKeyError,
            parse_err_fn = $name::unknown
        )]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = <$name as strum::VariantArray>::VARIANTS;

            /// The wire spelling.
            pub const fn as_str(self) -> &'static str {
                self.into_str()
            }

            fn unknown(part: &str) -> RoutingKeyError {
                RoutingKeyError::UnknownPart {
                    kind: stringify!($name),
                    part: part.to_owned(),
                }
            }
        }

        /// Its wire spelling, as in a routing key.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

routing_part!(
    /// The middle part of a routing key: which worker step a message is for (or comes from).
    Worker {
        Route,
        Index,
        CatalogCheck,
        CatalogPut,
        CatalogGet,
        CatalogArchiveNext,
        CatalogArchiveUpdate,
        Catalog,
        MonitorPut,
        Monitor,
        TransferPut,
        TransferGet,
        TransferDel,
        ArchivePut,
        ArchiveGet,
        Log,
        /// The policy role's RPCs (`policy.run`, `policy.dry-run`, `policy.status`, ...).
        Policy,
        /// The storage audit's RPCs (`storage-audit.run`, `storage-audit.status`,
        /// `storage-audit.purge`).
        StorageAudit,
    }
);

routing_part!(
    /// The last part of a routing key: a workflow step, an API action, an RPC query or a log level.
    Action {
        Init,
        Start,
        Complete,
        Failed,
        Next,
        Prepare,
        PrepareCheck,
        Put,
        Putlist,
        Get,
        Getlist,
        Del,
        Dellist,
        List,
        Find,
        Meta,
        Stat,
        Setup,
        /// Catalogue: store one chunk of a chunked put or get.
        Append,
        Plan,
        Evict,
        Undelete,
        Purge,
        Stage,
        Quota,
        QuotaSet,
        Admin,
        /// Monitor: a user's notification channels.
        Notify,
        Audit,
        SystemStat,
        Debug,
        Info,
        Warning,
        Error,
        Critical,
        /// Policy: start a pass now (operators).
        Run,
        /// Policy: evaluate and report, change nothing.
        DryRun,
        /// Policy: the runner's state and its recent passes.
        Status,
        /// Policy: read the rules again (the old ones stay if the new ones are invalid).
        Reload,
        /// Policy: close an open circuit breaker.
        Reset,
        /// Policy: which rule applies to a file, and when it will move.
        Explain,
        /// Catalogue: cancel a transaction (`POST /api/v2/transactions/{id}/cancel`).
        Cancel,
        /// Monitor (`monitor-put.progress`): the bytes a transfer role moved so far of a batch
        /// it is still transferring (best effort, see [`crate::Payload::Progress`]).
        Progress,
    }
);

/// A parse failure of a routing key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingKeyError {
    #[error("routing key {0:?} must have exactly three dot-separated parts")]
    Shape(String),
    #[error("routing key must start with {APPLICATION:?}, not {0:?}")]
    Application(String),
    #[error("unknown {kind} {part:?} in routing key")]
    UnknownPart { kind: &'static str, part: String },
}

/// A routing key `nlds-api.<worker>.<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutingKey {
    pub worker: Worker,
    pub action: Action,
}

impl RoutingKey {
    /// Builds a key from its two variable parts.
    pub const fn new(worker: Worker, action: Action) -> Self {
        Self { worker, action }
    }
}

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{APPLICATION}.{}.{}", self.worker, self.action)
    }
}

impl FromStr for RoutingKey {
    type Err = RoutingKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('.');
        let (Some(app), Some(worker), Some(action), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(RoutingKeyError::Shape(s.to_owned()));
        };
        if app != APPLICATION {
            return Err(RoutingKeyError::Application(app.to_owned()));
        }
        Ok(Self {
            worker: worker.parse()?,
            action: action.parse()?,
        })
    }
}

impl serde::Serialize for RoutingKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RoutingKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Does `key` match the topic `pattern` (`*` is one word, `#` is zero or more words)?
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

routing_part!(
    /// A worker role: one consumer process kind, with its own durable queue and bindings.
    Role {
        Router,
        Indexer,
        TransferPut,
        TransferGet,
        Catalogue,
        CatalogueRpc,
        Monitor,
        MonitorRpc,
        Logger,
        ArchivePut,
        ArchiveGet,
        Policy,
        StorageAudit,
    }
);

impl Role {
    /// The durable queue this role consumes.
    pub fn queue(self) -> String {
        format!("nlds.{}", self.as_str())
    }

    /// The binding patterns of this role's queue on [`EXCHANGE`].
    pub fn bindings(self) -> &'static [&'static str] {
        match self {
            Role::Router => &[
                "nlds-api.route.*",
                "nlds-api.*.complete",
                "nlds-api.*.failed",
            ],
            Role::Indexer => &["nlds-api.index.start", "nlds-api.index.system-stat"],
            Role::TransferPut => &[
                "nlds-api.transfer-put.start",
                "nlds-api.transfer-del.start",
                "nlds-api.transfer-put.system-stat",
            ],
            Role::TransferGet => &[
                "nlds-api.transfer-get.start",
                "nlds-api.transfer-get.system-stat",
            ],
            Role::Catalogue => &[
                "nlds-api.catalog-check.start",
                "nlds-api.catalog-put.start",
                "nlds-api.catalog-get.start",
                "nlds-api.catalog-archive-next.start",
                "nlds-api.catalog-archive-update.start",
                "nlds-api.catalog-put.system-stat",
            ],
            Role::CatalogueRpc => &["nlds-api.catalog.*"],
            Role::Monitor => &["nlds-api.monitor-put.*"],
            Role::MonitorRpc => &["nlds-api.monitor.*"],
            Role::Logger => &["nlds-api.log.*"],
            Role::ArchivePut => &[
                "nlds-api.archive-put.start",
                "nlds-api.archive-put.del",
                "nlds-api.archive-put.system-stat",
            ],
            Role::ArchiveGet => &[
                "nlds-api.archive-get.start",
                "nlds-api.archive-get.prepare-check",
                "nlds-api.archive-get.system-stat",
            ],
            Role::Policy => &["nlds-api.policy.*"],
            Role::StorageAudit => &["nlds-api.storage-audit.*"],
        }
    }

    /// The key a health ping (`system-stat`) to this role's consumers is sent on.
    pub fn ping_key(self) -> RoutingKey {
        let worker = match self {
            Role::Router => Worker::Route,
            Role::Indexer => Worker::Index,
            Role::TransferPut => Worker::TransferPut,
            Role::TransferGet => Worker::TransferGet,
            Role::Catalogue => Worker::CatalogPut,
            Role::CatalogueRpc => Worker::Catalog,
            Role::Monitor => Worker::MonitorPut,
            Role::MonitorRpc => Worker::Monitor,
            Role::Logger => Worker::Log,
            Role::ArchivePut => Worker::ArchivePut,
            Role::ArchiveGet => Worker::ArchiveGet,
            Role::Policy => Worker::Policy,
            Role::StorageAudit => Worker::StorageAudit,
        };
        RoutingKey::new(worker, Action::SystemStat)
    }

    /// Roles whose handlers answer RPCs: a failure is answered, never retried later. A handler
    /// that commits a change publishes the work it implies in the same outcome as its answer
    /// (eviction and purge removals, a delete's monitor record), confirmed before the answer.
    pub fn is_rpc(self) -> bool {
        matches!(
            self,
            Role::CatalogueRpc | Role::MonitorRpc | Role::Policy | Role::StorageAudit
        )
    }
}

/// The roles a routing key is delivered to.
pub fn roles_for(key: &RoutingKey) -> Vec<Role> {
    let key = key.to_string();
    Role::ALL
        .iter()
        .copied()
        .filter(|r| r.bindings().iter().any(|p| topic_matches(p, &key)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_health_ping_reaches_exactly_its_role() {
        for &r in Role::ALL {
            assert_eq!(roles_for(&r.ping_key()), [r], "{r}: {}", r.ping_key());
        }
    }

    #[test]
    fn every_key_round_trips() {
        for &w in Worker::ALL {
            for &a in Action::ALL {
                let key = RoutingKey::new(w, a);
                let text = key.to_string();
                assert_eq!(text, format!("nlds-api.{}.{}", w.as_str(), a.as_str()));
                assert_eq!(text.parse::<RoutingKey>().unwrap(), key);
            }
        }
    }

    #[test]
    fn malformed_keys_are_rejected_with_the_reason() {
        assert!(matches!(
            "nlds-api.route".parse::<RoutingKey>(),
            Err(RoutingKeyError::Shape(_))
        ));
        assert!(matches!(
            "nlds-api.route.put.x".parse::<RoutingKey>(),
            Err(RoutingKeyError::Shape(_))
        ));
        assert!(matches!(
            "other.route.put".parse::<RoutingKey>(),
            Err(RoutingKeyError::Application(_))
        ));
        let err = "nlds-api.nowhere.put".parse::<RoutingKey>().unwrap_err();
        assert_eq!(err.to_string(), "unknown Worker \"nowhere\" in routing key");
        assert!("nlds-api.route.dance".parse::<RoutingKey>().is_err());
    }

    #[test]
    fn topic_patterns_match_like_rabbitmq() {
        assert!(topic_matches(
            "nlds-api.*.complete",
            "nlds-api.index.complete"
        ));
        assert!(!topic_matches(
            "nlds-api.*.complete",
            "nlds-api.index.start"
        ));
        assert!(topic_matches("nlds-api.#", "nlds-api.index.start"));
        assert!(topic_matches("#.start", "nlds-api.index.start"));
        assert!(topic_matches("nlds-api.#.start", "nlds-api.start"));
        assert!(!topic_matches("nlds-api.*", "nlds-api.index.start"));
    }

    #[test]
    fn every_work_key_reaches_exactly_one_role() {
        use Action::*;
        use Worker::*;
        let work = [
            (Route, Put),
            (Route, Get),
            (Index, Start),
            (Index, Complete),
            (Index, Failed),
            (CatalogCheck, Start),
            (CatalogPut, Start),
            (CatalogGet, Start),
            (TransferPut, Start),
            (TransferGet, Start),
            (TransferDel, Start),
            (MonitorPut, Init),
            (MonitorPut, Start),
            (MonitorPut, Progress),
            (Catalog, List),
            (Monitor, Stat),
            (Log, Error),
            (Monitor, Admin),
            (Monitor, Notify),
            (Log, Audit),
            (ArchivePut, Del),
            (Catalog, Del),
            (Catalog, Undelete),
            (Catalog, Purge),
            (Catalog, Quota),
            (Catalog, QuotaSet),
            (Catalog, Append),
            (Catalog, Cancel),
            (Policy, Run),
            (Policy, DryRun),
            (Policy, Status),
            (Policy, Reload),
            (Policy, Reset),
            (Policy, Explain),
            (StorageAudit, Run),
            (StorageAudit, Status),
            (StorageAudit, Purge),
        ];
        for (w, a) in work {
            let key = RoutingKey::new(w, a);
            assert_eq!(
                roles_for(&key).len(),
                1,
                "{key} reaches {:?}",
                roles_for(&key)
            );
        }
        assert_eq!(
            roles_for(&RoutingKey::new(TransferPut, Complete)),
            vec![Role::Router]
        );
    }
}
