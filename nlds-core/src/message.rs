//! The message envelope every worker sends and receives, and its typed payloads.
//!
//! Secrets never travel in messages: object-store credentials live on the worker side.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::AccessRole;
use crate::api::{ApiAction, Tags};
use crate::error::ApiError;
use crate::state::State;

pub use crate::files::{FailedFile, PathKind};

/// The current envelope version.
pub const ENVELOPE_VERSION: u32 = 1;

/// One message on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    pub transaction_id: Uuid,
    /// The batch this message is about; equals `transaction_id` before the request is split.
    pub sub_id: Uuid,
    pub user: String,
    pub group: String,
    pub action: ApiAction,
    pub job_label: String,
    /// The caller's role in `group`, worked out by the server (absent in old messages: user).
    #[serde(default, skip_serializing_if = "is_user")]
    pub role: AccessRole,
    /// A get restores files with the owner and group recorded when they were put, instead of
    /// giving them to `user` (service operators only: the server refuses it for other roles,
    /// and transfer-get checks `role` again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_owner: bool,
    /// The object-store tenancy a put writes to (a configured name, never a credential);
    /// absent: the default object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenancy: Option<String>,
    /// A put or get whose paths came in chunks (`catalog.append`) before this request: how many
    /// the catalogue must hold for it (parts `0..chunks`); the request's own paths follow them.
    /// Only on the request the API sends (`catalog.setup`, `catalog.get`).
    #[serde(default, skip_serializing_if = "crate::number::is_zero")]
    pub chunks: u32,
    /// How a put compares paths its holding already has (docs/VERSIONS.md): absent, a stored
    /// path is a conflict (the 1.0.x semantics the legacy API keeps by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::versions::SyncLevel>,
    /// The request asked to be notified when it ends on its owner's channels, whatever the
    /// owner's account says (docs/NOTIFY.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notify: bool,
    pub payload: Payload,
}

fn is_user(r: &AccessRole) -> bool {
    *r == AccessRole::User
}

impl Envelope {
    pub fn new(
        transaction_id: Uuid,
        user: impl Into<String>,
        group: impl Into<String>,
        action: ApiAction,
        job_label: impl Into<String>,
        payload: Payload,
    ) -> Self {
        Self {
            version: ENVELOPE_VERSION,
            transaction_id,
            sub_id: transaction_id,
            user: user.into(),
            group: group.into(),
            action,
            job_label: job_label.into(),
            role: AccessRole::User,
            keep_owner: false,
            tenancy: None,
            chunks: 0,
            sync: None,
            notify: false,
            payload,
        }
    }

    /// The same envelope, for a request whose paths came in `chunks` chunks before it.
    pub fn with_chunks(mut self, chunks: u32) -> Self {
        self.chunks = chunks;
        self
    }

    /// The same envelope, a put that compares stored paths at `sync` (`None`: conflicts).
    pub fn with_sync(mut self, sync: Option<crate::versions::SyncLevel>) -> Self {
        self.sync = sync;
        self
    }

    /// The same envelope, asking (or not) to be notified when the transaction ends.
    pub fn with_notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// The same envelope, writing to object-store tenancy `tenancy` (`None`: the default).
    pub fn with_tenancy(mut self, tenancy: Option<String>) -> Self {
        self.tenancy = tenancy;
        self
    }

    /// The same envelope, acting with `role`.
    pub fn with_role(mut self, role: AccessRole) -> Self {
        self.role = role;
        self
    }

    /// The same transaction, batch and identity with another payload.
    pub fn reply(&self, payload: Payload) -> Self {
        Self {
            payload,
            ..self.clone()
        }
    }

    /// A derived batch of this transaction.
    pub fn with_sub(&self, sub_id: Uuid, payload: Payload) -> Self {
        Self {
            sub_id,
            payload,
            ..self.clone()
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Sized for the message up front: a page of 1,000 files (about 560 KB) written into a
        // growing buffer was copied about as many times again.
        let mut out = Vec::with_capacity(self.payload.encoded_size_hint());
        match serde_json::to_writer(&mut out, self) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }
}

impl Payload {
    /// About how many bytes this payload takes as JSON (a page's items by their typical size).
    fn encoded_size_hint(&self) -> usize {
        const FRAME: usize = 512;
        match self {
            Payload::Reply(RpcReply::Files(p)) => FRAME + 600 * p.files.len(),
            Payload::Reply(RpcReply::Holdings(p)) => FRAME + 400 * p.holdings.len(),
            Payload::Reply(RpcReply::Transactions(p)) => FRAME + 600 * p.transactions.len(),
            _ => FRAME,
        }
    }
}

/// A deterministic sub id: the same transaction and batch number always give the same id, so a
/// redelivered message creates no new sub-record.
pub fn sub_id(transaction_id: Uuid, stage: &str, batch: usize) -> Uuid {
    Uuid::new_v5(&transaction_id, format!("{stage}/{batch}").as_bytes())
}

/// Where a file's warm copy lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    /// The object-store tenancy (a name the workers' configuration resolves to an endpoint,
    /// bucket and credentials) the object lives under; absent: the default object store.
    /// Only the name ever travels, never a credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenancy: Option<String>,
}

/// A file as it travels through the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Absolute original path.
    pub path: String,
    pub kind: PathKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// The holding the file is catalogued in (get only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holding_id: Option<i64>,
    /// A put of a path the holding already has: `true` once catalog-check found it changed (it
    /// is stored as a new version). With `blake3` set on the way to transfer-put, that is the
    /// stored checksum the local content is compared with (the `checksum` sync level).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_version: bool,
    /// Its extended attributes (`user.*`, and the POSIX ACLs `system.posix_acl_*`), as read
    /// when it was indexed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

impl FileRecord {
    /// Whether the record counts as a file in a transaction's progress (`files_total`,
    /// `files_done`): everything but directories, which travel only so that empty directories
    /// and directory modes are restored, and which users did not count.
    pub fn counts_as_file(&self) -> bool {
        self.kind != PathKind::Directory
    }
}

/// How many of `records` count as files in a transaction's progress
/// ([`FileRecord::counts_as_file`]).
pub fn file_count(records: &[FileRecord]) -> u64 {
    records.iter().filter(|r| r.counts_as_file()).count() as u64
}

/// An extended attribute of a file or directory. POSIX ACLs are the `system.posix_acl_access`
/// and `system.posix_acl_default` attributes (their value is the kernel's binary form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// The name, as [`crate::pathname::encode`] carries bytes (`user.comment`).
    pub name: String,
    /// The value, base64 (standard alphabet, padded).
    pub value: String,
}

/// A file to pack into an aggregate: where its warm copy is, and what the tar header records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveMember {
    pub file_id: i64,
    pub path: String,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i64,
    pub uid: u32,
    pub gid: u32,
    pub object: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

/// A member of an aggregate being recalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallMember {
    pub file_id: i64,
    pub path: String,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i64,
    pub uid: u32,
    pub gid: u32,
    /// The put transaction (names the warm object).
    pub transaction_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Restore this one (it has no warm copy).
    pub restore: bool,
}

/// A file given a warm copy again by a recall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredFile {
    pub file_id: i64,
    pub object: ObjectRef,
}

/// An aggregate to remove from the cold store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedAggregate {
    pub aggregation_id: i64,
    pub name: String,
}

/// An aggregate an archive selection leased for writing, and its member files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasedAggregate {
    pub aggregation_id: i64,
    pub name: String,
    pub file_ids: Vec<i64>,
}

/// Checksums of an aggregate's bytes as written (and verified with the cold store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateSums {
    pub size: u64,
    pub adler32: u32,
    pub crc32c: u32,
    pub blake3: String,
}

/// Selects holdings, resolved and validated by the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HoldingFilter {
    /// See the whole group's holdings, not only the user's.
    pub groupall: bool,
    pub label: Option<String>,
    pub label_regex: bool,
    pub holding_id: Option<i64>,
    /// Any of these holdings (empty: no restriction).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holding_ids: Vec<i64>,
    pub transaction_id: Option<Uuid>,
    pub tags: Tags,
    pub limit: u64,
    pub offset: u64,
    pub descending: bool,
    /// Which version of each path a find, get or delete selects (default: the newest).
    #[serde(
        default,
        skip_serializing_if = "crate::versions::VersionSelect::is_newest"
    )]
    pub versions: crate::versions::VersionSelect,
}

impl HoldingFilter {
    /// Whether the filter names one holding (by id, or by a label that is not a regex).
    pub fn names_holding(&self) -> bool {
        self.holding_id.is_some() || (self.label.is_some() && !self.label_regex)
    }

    /// The error for a named holding the caller cannot see: one text whether it is in another
    /// group, belongs to a user whose holdings the caller may not read, or does not exist at
    /// all, so an answer never tells them apart.
    pub fn not_visible(&self) -> ApiError {
        ApiError::new(
            crate::error::ErrorCode::NotFound,
            match (&self.holding_id, &self.label) {
                (Some(id), _) => format!("holding {id} not found among the holdings you can see"),
                (None, Some(l)) => {
                    format!("no holding labelled {l:?} among the holdings you can see")
                }
                _ => "holding not found".into(),
            },
        )
    }
}

/// Selects transactions for stat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusFilter {
    pub groupall: bool,
    pub id: Option<i64>,
    pub transaction_id: Option<Uuid>,
    pub job_label: Option<String>,
    pub job_label_regex: bool,
    pub api_actions: Vec<ApiAction>,
    pub exclude_api_actions: Vec<ApiAction>,
    pub states: Vec<State>,
    pub limit: u64,
    pub offset: u64,
    pub descending: bool,
}

/// The typed body of a message. Tagged by `kind`, so the JSON says what it carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum Payload {
    /// Catalogue → router (`route.put`, `route.putlist`): copy these paths into `holding_id`;
    /// staged by the catalogue when it accepts the put ([`Payload::SetupHolding`]).
    PutRequest { holding_id: i64, paths: Vec<String> },
    /// API → catalogue (RPC `catalog.get` / `catalog.getlist`: accept this get), then, staged by
    /// the catalogue, catalogue → router (`route.get`, `route.getlist`): copy these paths back.
    GetRequest {
        filter: HoldingFilter,
        paths: Vec<String>,
        regex: bool,
        target: Option<String>,
        overwrite: bool,
    },
    /// A batch of files moving to the next step.
    Files {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holding_id: Option<i64>,
        files: Vec<FileRecord>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(default)]
        overwrite: bool,
        /// Files of this batch that failed at the step that sends this message. They travel with
        /// the batch's result so the monitor records both at once (no race between the two).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<FailedFile>,
        /// A get batch only: the directories of the same restore that entries of this batch are
        /// in (at any depth) but that travel in another batch. transfer-get makes them if they
        /// are missing and, once this batch wrote into them, gives them their recorded mode and
        /// time again: a batch's writes change the time of a directory another batch already
        /// finished (batches run in any order and at once). Not entries of the batch: never
        /// counted as done or failed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        context: Vec<FileRecord>,
    },
    /// Files that failed at a step, each with its reason.
    Failed { files: Vec<FailedFile> },
    /// Router → monitor: a transaction starts.
    MonitorInit {
        label: Option<String>,
        holding_id: Option<i64>,
    },
    /// RPC `monitor.init` (API → monitor), before a put, get or delete with a client-chosen
    /// transaction id starts: may the envelope's user use `env.transaction_id`? Answered
    /// [`RpcReply::Available`] when no transaction has that id, or when the one that has it is
    /// the same user's, in the same group, for the same API action (a retry); else an error
    /// `conflict` that says nothing of whose it is. Records nothing.
    CheckTransactionId,
    /// RPC `monitor.init` (API → monitor), once a retry was accepted: the envelope's transaction
    /// resubmits the failed files of `retry_of` (`POST /api/v2/transactions/{id}/retry`), so
    /// stat shows the link both ways. Answered [`RpcReply::Recorded`].
    RetryOf { retry_of: Uuid },
    /// API → catalogue (`catalog.cancel`): the envelope's transaction is cancelled by
    /// `envelope.user` (its owner, a manager of its group or an operator, checked by the API).
    /// Answered [`RpcReply::Cancelled`].
    Cancel,
    /// Router → monitor: a sub-record changes state.
    MonitorUpdate {
        state: State,
        files: u64,
        bytes: u64,
        /// Of `files`, how many are new versions of paths the holding had (a put).
        #[serde(default, skip_serializing_if = "crate::number::is_zero")]
        versions: u64,
        failed: Vec<FailedFile>,
        warnings: Vec<String>,
    },
    /// Bus runtime → monitor (`monitor-put.start`): a step of the transaction is being retried
    /// after a transient fault. The warnings are added to the transaction (each text once);
    /// `retry`, the same retry in fields, is kept on the batch's sub-record until its state
    /// changes (what `nlds stat` shows as why it waits).
    Warning {
        warnings: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry: Option<crate::waiting::Retrying>,
    },
    /// Transfer role → monitor (`monitor-put.progress`, a notice: best effort, never retried):
    /// `bytes` of the batch (`sub_id`) were moved so far while it is still being uploaded or
    /// restored. The monitor shows them as done until the batch is final; a report that comes
    /// after that, or one of fewer bytes than already reported, changes nothing.
    Progress { bytes: u64 },
    /// Any role → logger.
    Log {
        service: String,
        level: String,
        message: String,
    },
    /// RPC `catalog.setup` (API → catalogue): make sure the holding for a put exists and is the
    /// caller's, and accept the put of `paths` into it, in one database transaction: the first
    /// time the catalogue sees the transaction id it stages the put's record (`monitor-put.init`)
    /// and its submission (`route.put`, [`Payload::PutRequest`]) in its outbox. Without paths, only
    /// the holding is set up.
    SetupHolding {
        label: Option<String>,
        holding_id: Option<i64>,
        tags: Tags,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        paths: Vec<String>,
        /// What the put will store, reserved against the group's quota with the acceptance.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size_hint: Option<crate::quota::SizeHint>,
    },
    /// RPC `catalog.append` (API → catalogue): store `paths` as chunk `part` of the put or get
    /// `env.transaction_id` (`env.action`: putlist or getlist), which starts later with the
    /// request that names how many chunks it has ([`Envelope::chunks`]). A request may list at
    /// most `max_total` paths in all. Answered with [`RpcReply::Appended`].
    AppendPaths {
        part: u32,
        paths: Vec<String>,
        max_total: u64,
    },
    /// RPC: list holdings.
    ListHoldings { filter: HoldingFilter },
    /// RPC: find files.
    FindFiles {
        filter: HoldingFilter,
        path: Option<String>,
        path_regex: bool,
        /// Files and links only, no directory records (what `/api/1.0.0` lists: 1.0.x servers
        /// never catalogued directories).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        files_only: bool,
        /// A holding the filter names ([`HoldingFilter::names_holding`]) that the caller cannot
        /// see is a not-found error ([`HoldingFilter::not_visible`]), not an empty page
        /// (`/api/v2/files`; `/api/1.0.0` answers an empty find its own way).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        named_must_exist: bool,
    },
    /// RPC: change a holding's label or tags.
    ChangeMeta {
        filter: HoldingFilter,
        new_label: Option<String>,
        new_tags: Tags,
        del_tags: Tags,
        /// Compute the changes and roll them back.
        #[serde(default)]
        dry_run: bool,
    },
    /// RPC `catalog.plan`: what a put into holding `holding_id` would do with these entries, at
    /// the envelope's sync level (answered with [`RpcReply::Classified`]).
    ClassifyPut {
        holding_id: i64,
        entries: Vec<crate::versions::LocalEntry>,
    },
    /// RPC: the files a get would restore, without starting it.
    PlanGet {
        filter: HoldingFilter,
        paths: Vec<String>,
        regex: bool,
    },
    /// RPC: transaction status.
    Stat { filter: StatusFilter },
    /// Scheduler or admin → catalogue (`catalog-archive-next.start`): pick files to archive now.
    ArchiveNext,
    /// Catalogue → archive-put (`archive-put.start`): write this aggregate to the cold store.
    ArchiveAggregate {
        aggregation_id: i64,
        name: String,
        holding_id: i64,
        members: Vec<ArchiveMember>,
    },
    /// archive-put → router → catalogue (`archive-put.complete`, `catalog-archive-update.start`):
    /// the aggregate is written and verified.
    ArchiveStored {
        aggregation_id: i64,
        name: String,
        sums: AggregateSums,
    },
    /// Catalogue → archive-get (`archive-get.start`, then delayed `archive-get.prepare-check`):
    /// bring the aggregate back and restore its members that have no warm copy.
    ArchiveRecall {
        aggregation_id: i64,
        name: String,
        /// Every member, in aggregate order (the tar is checked header by header).
        members: Vec<RecallMember>,
        /// The checksums recorded when the aggregate was written.
        sums: AggregateSums,
        /// How many times staging was found not done yet.
        #[serde(default)]
        checks: u32,
        /// Names this recall's restored objects (`<put key>.r<tag>`, see
        /// `nlds_storage::s3::restored_key`): a restored copy never takes the key of the copy
        /// an eviction is still deleting. Absent in messages of older versions (restored to the
        /// put key).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restore_tag: Option<String>,
    },
    /// archive-get → router → catalogue: the recall reached `state` (ARCHIVE_GETTING).
    RecallProgress { aggregation_id: i64, state: State },
    /// archive-get → router → catalogue: these members have warm copies again.
    ArchiveRestored {
        aggregation_id: i64,
        restored: Vec<RestoredFile>,
    },
    /// RPC `catalog.evict`: drop the warm copies of a holding's files that have a verified cold copy.
    Evict { holding_id: i64 },
    /// RPC `catalog.evict` (the policy role): drop the warm copies of these files, each only if
    /// its cold copy is in a stored aggregation, it has no live pin and no recall waits for it.
    /// Answered with [`RpcReply::Evicted`] (the files actually evicted).
    EvictFiles { file_ids: Vec<i64> },
    /// RPC `catalog-archive-next.start` (the policy role): an archive round restricted to these
    /// files (those still eligible). Answered with [`RpcReply::ArchiveStarted`]; the round's
    /// `archive-put.start` messages are sent as a round sends them. With no files, the round
    /// only does its upkeep (purge sweep, stale recalls).
    ArchiveSelect { file_ids: Vec<i64> },
    /// RPC `catalog.del`: soft-delete the files `paths` select in the holdings `filter` names
    /// (without paths: those holdings whole), as far as `env.role` allows. With `dry_run`, only
    /// says what would be deleted. Answered with [`RpcReply::Deleted`].
    Delete {
        filter: HoldingFilter,
        paths: Vec<String>,
        regex: bool,
        #[serde(default)]
        dry_run: bool,
    },
    /// RPC `catalog.undelete`: bring back deleted files (without paths: deleted holdings whole)
    /// within the retention period. Answered with [`RpcReply::Deleted`].
    Undelete {
        filter: HoldingFilter,
        paths: Vec<String>,
        regex: bool,
        #[serde(default)]
        dry_run: bool,
    },
    /// RPC `catalog.purge` (operators): purge deleted files now, of one holding or all.
    /// Answered with [`RpcReply::Purged`]; the caller sends the removals it lists.
    Purge { holding_id: Option<i64> },
    /// RPC `catalog.quota`: the quotas of `groups` (limits, usage, reservations); `None` is every
    /// group with a limit or usage (operators, checked by the server). Answered with
    /// [`RpcReply::Quota`].
    QuotaShow { groups: Option<Vec<String>> },
    /// RPC `catalog.quota-set` (operators, checked by the server): change `group`'s limits.
    /// Answered with [`RpcReply::Quota`] (the group after the change).
    QuotaSet {
        group: String,
        change: crate::quota::SetQuota,
    },
    /// Catalogue or API → archive-put (`archive-put.del`): remove an aggregate from the cold
    /// store; every member of it was deleted and purged.
    ArchiveRemove { aggregation_id: i64, name: String },
    /// RPC `<worker>.system-stat`: is a consumer alive? Answered with [`RpcReply::Alive`].
    SystemStat,
    /// RPC `monitor.admin` (service operators, checked by the server): an admin query.
    Admin(crate::admin::AdminQuery),
    /// RPC `monitor.notify`: the caller's notification channels (show, set, clear), or the
    /// operators' list of undelivered notifications. Answered with [`RpcReply::Notify`] or
    /// [`RpcReply::Notifications`].
    Notify(crate::notify::NotifyRequest),
    /// RPC `catalog.stage`: stage, status, cancel, release or locality (answered with
    /// [`RpcReply::Stage`]).
    Stage(crate::stage::StageQuery),
    /// API or monitor → logger (`log.audit`): an audit record to store.
    Audit(crate::admin::AuditEvent),
    /// RPC `policy.dry-run`, `policy.run`, `policy.reload`, `policy.reset` (operators, checked
    /// by the server): what the key names, of the policy role.
    Policy,
    /// RPC `policy.status` (operators): the runner's state and its last `passes` passes.
    PolicyStatus { passes: u32 },
    /// RPC `policy.explain`: where the file `path` (of a holding `filter` names, in the
    /// caller's scope, as `catalog.find`) is, which rule applies and when it will move.
    Explain { filter: HoldingFilter, path: String },
    /// RPC `storage-audit.run` (operators): start a storage audit (answered with
    /// [`RpcReply::AuditStarted`]; it runs in the background).
    StorageAudit(crate::storage_audit::AuditRequest),
    /// RPC `storage-audit.status` (operators): the latest `runs` audits, newest first.
    StorageAuditRuns { runs: u32 },
    /// RPC `storage-audit.purge` (operators): delete what was quarantined (before
    /// `before`, a date, if given).
    PurgeQuarantine { before: Option<chrono::NaiveDate> },
    /// RPC answer.
    Reply(RpcReply),
}

/// An RPC answer: the typed result, or an error with its code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcReply {
    Holding {
        id: i64,
        label: String,
    },
    /// The transaction is recorded by the monitor (answer to `monitor.init`).
    Recorded,
    /// The catalogue accepted the get (answer to `catalog.get`): it runs to completion, whatever
    /// happens to the API now.
    Submitted,
    /// The chunk is stored (answer to `catalog.append`): the request's chunks and paths so far.
    Appended {
        parts: u32,
        paths: u64,
    },
    /// The transaction id is free for the caller, or already theirs for the same action (answer
    /// to [`Payload::CheckTransactionId`]).
    Available,
    Holdings(crate::api::HoldingPage),
    Files(crate::api::FilePage),
    Meta(crate::api::MetaResponse),
    Transactions(crate::api::TransactionPage),
    /// Answer to [`Payload::ClassifyPut`], in the entries' order.
    Classified(Vec<crate::versions::EntryVerdict>),
    /// Answer to `catalog.plan`.
    Plan {
        files: Vec<crate::api::FileEntry>,
        missing: Vec<FailedFile>,
    },
    /// Answer to `catalog.cancel`: the cancel is recorded (`first`: by this request, not an
    /// earlier one); `waiting` batches that waited for a recall were ended at once, the rest
    /// end at their next step.
    Cancelled {
        first: bool,
        waiting: u64,
    },
    /// Answer to `catalog.evict`: the warm copies dropped from the catalogue (their objects are
    /// to be deleted).
    Evicted {
        files: Vec<FileRecord>,
    },
    /// Answer to [`Payload::ArchiveSelect`]: the aggregations the round leased (each is
    /// `stored` once written and verified, or deleted if its write failed).
    ArchiveStarted {
        aggregations: Vec<LeasedAggregate>,
    },
    /// Answer to `catalog.del` and `catalog.undelete`.
    Deleted(crate::api::DeletePlan),
    /// Answer to `catalog.purge`: what was purged from the catalogue, the warm objects to delete
    /// (`transfer-del.start`) and the aggregates to remove (`archive-put.del`).
    Purged {
        summary: crate::api::PurgeResponse,
        objects: Vec<FileRecord>,
        aggregates: Vec<RemovedAggregate>,
    },
    /// Answer to `<worker>.system-stat`: a consumer of `role` is alive.
    Alive {
        role: String,
        pid: u32,
        hostname: String,
    },
    /// Answer to `monitor.admin`.
    Admin(crate::admin::AdminAnswer),
    /// Answer to `monitor.notify` (show, set, clear).
    Notify(crate::notify::NotifySettings),
    /// Answer to `monitor.notify` (the operators' list).
    Notifications(Vec<crate::notify::NotificationSummary>),
    /// Answer to `catalog.stage`.
    Stage(crate::stage::StageAnswer),
    /// Answer to `catalog.quota` and `catalog.quota-set`.
    Quota(crate::quota::QuotaReport),
    /// Answer to `policy.dry-run`: what a pass would do.
    Pass(crate::policy::PassReport),
    /// Answer to `policy.run`: the pass started (it runs in the background).
    PassStarted {
        id: i64,
    },
    /// Answer to `policy.status` and `policy.reset`.
    PolicyStatus(crate::policy::PolicyStatus),
    /// Answer to `policy.reload`.
    Reloaded(crate::policy::ReloadReport),
    /// Answer to `policy.explain`.
    Explained(crate::policy::Explanation),
    /// Answer to `storage-audit.run`: the run's id.
    AuditStarted {
        id: i64,
    },
    /// Answer to `storage-audit.status`.
    AuditRuns(crate::storage_audit::AuditRuns),
    /// Answer to `storage-audit.purge`.
    QuarantinePurged(crate::storage_audit::QuarantinePurged),
    Error(ApiError),
}

impl PartialEq for crate::api::HoldingPage {
    fn eq(&self, o: &Self) -> bool {
        self.holdings == o.holdings && self.total == o.total
    }
}
impl PartialEq for crate::api::FilePage {
    fn eq(&self, o: &Self) -> bool {
        self.files == o.files && self.total == o.total
    }
}
impl PartialEq for crate::api::MetaResponse {
    fn eq(&self, o: &Self) -> bool {
        self.holdings == o.holdings
    }
}
impl PartialEq for crate::api::TransactionPage {
    fn eq(&self, o: &Self) -> bool {
        self.transactions == o.transactions && self.total == o.total
    }
}

/// The timestamp format used in messages and the API.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn tid() -> Uuid {
        Uuid::parse_str("6f1c7a52-2b7e-4c39-9d1e-2a7e5b3c9d10").unwrap()
    }

    fn file() -> FileRecord {
        FileRecord {
            path: "/data/run 42/ü.nc".into(),
            kind: PathKind::File,
            link_target: None,
            size: 4096,
            uid: 1000,
            gid: 1000,
            mode: 0o644,
            mtime_ns: 1_700_000_000_000_000_000,
            blake3: Some("af13".into()),
            object: Some(ObjectRef {
                bucket: "nlds".into(),
                key: "tx/6f1c/ab".into(),
                tenancy: None,
            }),
            holding_id: None,
            xattrs: Vec::new(),
            new_version: false,
        }
    }

    fn round_trip(e: &Envelope) -> serde_json::Value {
        let bytes = e.to_json();
        let back: Envelope = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(&back, e);
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn put_request_envelope_shape() {
        let e = Envelope::new(
            tid(),
            "alice",
            "climate",
            ApiAction::Putlist,
            "run42",
            Payload::PutRequest {
                holding_id: 3,
                paths: vec!["/data/a".into(), "/data/b".into()],
            },
        );
        insta::assert_json_snapshot!("put_request", round_trip(&e));
    }

    #[test]
    fn files_envelope_shape() {
        let e = Envelope::new(
            tid(),
            "alice",
            "climate",
            ApiAction::Put,
            "run42",
            Payload::Files {
                context: Vec::new(),
                failed: Vec::new(),
                holding_id: Some(3),
                files: vec![file()],
                target: None,
                overwrite: false,
            },
        );
        let e = e.with_sub(sub_id(tid(), "index", 0), e.payload.clone());
        insta::assert_json_snapshot!("files", round_trip(&e));
    }

    #[test]
    fn failed_and_monitor_shapes() {
        let failed = FailedFile::new(
            "/data/x",
            ErrorCode::PathMissing,
            "no such file or directory",
        );
        let e = Envelope::new(
            tid(),
            "alice",
            "climate",
            ApiAction::Get,
            "j",
            Payload::MonitorUpdate {
                state: State::Failed,
                files: 1,
                bytes: 0,
                failed: vec![failed.clone()],
                warnings: vec!["careful".into()],
                versions: 0,
            },
        );
        insta::assert_json_snapshot!("monitor_update", round_trip(&e));
        insta::assert_json_snapshot!(
            "progress",
            round_trip(&e.reply(Payload::Progress { bytes: 5 << 20 }))
        );
        let e = e.reply(Payload::Failed {
            files: vec![failed],
        });
        insta::assert_json_snapshot!("failed", round_trip(&e));
    }

    #[test]
    fn rpc_reply_shapes() {
        let e = Envelope::new(
            tid(),
            "alice",
            "climate",
            ApiAction::Put,
            "j",
            Payload::Reply(RpcReply::Error(ApiError::not_found("holding 9 not found"))),
        );
        insta::assert_json_snapshot!("rpc_error", round_trip(&e));
        let e = e.reply(Payload::Reply(RpcReply::Holding {
            id: 9,
            label: "run42".into(),
        }));
        insta::assert_json_snapshot!("rpc_holding", round_trip(&e));
    }

    #[test]
    fn sub_ids_are_deterministic_and_distinct() {
        assert_eq!(sub_id(tid(), "index", 1), sub_id(tid(), "index", 1));
        assert_ne!(sub_id(tid(), "index", 1), sub_id(tid(), "index", 2));
        assert_ne!(sub_id(tid(), "index", 1), sub_id(tid(), "get", 1));
    }
}
