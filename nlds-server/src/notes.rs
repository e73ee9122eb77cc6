//! What a request reveals about itself while it is handled, for its audit record (see
//! [`crate::audit`]): the extractors note who the caller is ([`identify`]);
//! [`crate::state::AppState::rpc`] notes what each RPC asked and answered ([`observe_request`],
//! [`observe_reply`]); handlers may add facts ([`note_paths`], [`note_dry_run`], [`note_change`],
//! [`note_refused`], [`note_transaction`]). The notes live in a task-local scope that the audit
//! middleware opens around each request ([`collect`]); outside one, noting does nothing.

use std::sync::{Arc, Mutex};

use nlds_core::error::ApiError;
use nlds_core::message::RpcReply;
use nlds_core::{Action, Envelope, ErrorCode, Payload, RoutingKey, Worker};
use uuid::Uuid;

use crate::auth::Identity;

/// What a request revealed about itself while it was handled.
#[derive(Debug, Default, Clone)]
pub(crate) struct Notes {
    pub(crate) identity: Option<Identity>,
    /// The group the request acted in (from its RPCs).
    pub(crate) group: Option<String>,
    pub(crate) holding_id: Option<i64>,
    pub(crate) label: Option<String>,
    pub(crate) transaction_id: Option<Uuid>,
    /// A put or get was recorded with the monitor (it was accepted).
    pub(crate) recorded: bool,
    /// Holdings a change touched.
    pub(crate) changed: Vec<i64>,
    pub(crate) dry_run: bool,
    pub(crate) paths: Option<(usize, String)>,
    pub(crate) refusal: Option<(ErrorCode, String)>,
    /// Part of a change that was carried out was refused (e.g. another user's files of a delete).
    pub(crate) partly_refused: Option<(ErrorCode, String)>,
    /// A query answered nothing.
    pub(crate) empty: bool,
    pub(crate) detail: Vec<String>,
}

tokio::task_local! {
    static NOTES: Arc<Mutex<Notes>>;
}

/// Runs `f` on this request's notes (nothing outside a request). `f` must not call back into this
/// module's note functions: the notes are locked while it runs.
fn with<R>(f: impl FnOnce(&mut Notes) -> R) -> Option<R> {
    NOTES
        .try_with(|n| n.lock().ok().map(|mut g| f(&mut g)))
        .ok()
        .flatten()
}

/// Notes who the caller is (the extractors call this once the token is accepted).
pub fn identify(id: &Identity) {
    with(|n| n.identity = Some(id.clone()));
}

/// Notes what an RPC of this request asks (before it is sent).
pub fn observe_request(key: RoutingKey, env: &Envelope) {
    with(|n| {
        n.group = Some(env.group.clone());
        match (&env.payload, key.worker, key.action) {
            (Payload::MonitorInit { label, holding_id }, Worker::Monitor, Action::Init) => {
                n.transaction_id = Some(env.transaction_id);
                n.recorded = true;
                if holding_id.is_some() {
                    n.holding_id = *holding_id;
                }
                if label.is_some() {
                    n.label = label.clone();
                }
            }
            (
                Payload::ChangeMeta {
                    filter, dry_run, ..
                },
                ..,
            ) => {
                n.dry_run |= *dry_run;
                n.holding_id = n.holding_id.or(filter.holding_id);
                n.label = n.label.clone().or_else(|| filter.label.clone());
            }
            (Payload::Delete { dry_run: true, .. }, ..)
            | (Payload::Undelete { dry_run: true, .. }, ..) => n.dry_run = true,
            (
                Payload::Delete { filter, paths, .. } | Payload::Undelete { filter, paths, .. },
                ..,
            ) => {
                n.holding_id = n.holding_id.or(filter.holding_id);
                n.label = n.label.clone().or_else(|| filter.label.clone());
                if let Some(first) = paths.first() {
                    n.paths = Some((paths.len(), first.clone()));
                }
            }
            (Payload::Purge { holding_id }, ..) => n.holding_id = n.holding_id.or(*holding_id),
            (Payload::Stage(q), ..) => {
                use nlds_core::stage::StageQuery as Q;
                match q {
                    Q::Create {
                        selection, paths, ..
                    }
                    | Q::Locality { selection, paths } => {
                        n.holding_id = n.holding_id.or(selection.holding_id);
                        n.label = n.label.clone().or_else(|| selection.label.clone());
                        if let Some(first) = paths.first() {
                            n.paths = Some((paths.len(), first.clone()));
                        }
                    }
                    Q::Status { request_id }
                    | Q::Cancel { request_id, .. }
                    | Q::Delete { request_id }
                    | Q::Release { request_id, .. } => n.transaction_id = Some(*request_id),
                }
            }
            (Payload::ListHoldings { filter } | Payload::FindFiles { filter, .. }, ..) => {
                n.holding_id = n.holding_id.or(filter.holding_id);
                n.label = n.label.clone().or_else(|| filter.label.clone());
            }
            _ => {}
        }
    });
}

/// Notes the total of the page an RPC of this request answered with, forwarded undecoded.
pub fn observe_total(total: u64) {
    if total == 0 {
        with(|n| n.empty = true);
    }
}

/// Notes what an RPC of this request answered.
pub fn observe_reply(reply: &RpcReply) {
    with(|n| match reply {
        RpcReply::Holdings(p) if p.total == 0 => n.empty = true,
        RpcReply::Files(p) if p.total == 0 => n.empty = true,
        RpcReply::Transactions(p) if p.total == 0 => n.empty = true,
        RpcReply::Holding { id, label } => {
            n.holding_id = Some(*id);
            n.label = Some(label.clone());
        }
        RpcReply::Meta(m) => {
            if m.dry_run {
                n.dry_run = true;
            }
            for c in &m.holdings {
                n.changed.push(c.id);
                if c.old != c.new {
                    n.detail.push(format!(
                        "holding {} ({} of {}): label {:?} -> {:?}, tags {:?} -> {:?}",
                        c.id, c.user, c.group, c.old.label, c.new.label, c.old.tags, c.new.tags
                    ));
                }
            }
            if m.holdings.is_empty() {
                n.empty = true;
            }
        }
        RpcReply::Deleted(plan) => {
            if plan.dry_run {
                n.dry_run = true;
            }
            let mut ids: Vec<i64> = plan.holdings.iter().map(|h| h.id).collect();
            ids.extend(plan.files.iter().map(|f| f.holding_id));
            ids.sort_unstable();
            ids.dedup();
            n.changed.extend(ids.iter().copied());
            if plan.files_total > 0 || !plan.holdings.is_empty() {
                n.detail.push(format!(
                    "{} file(s), {} byte(s) in holding(s) {:?}{}",
                    plan.files_total,
                    plan.bytes_total,
                    ids,
                    if plan.holdings.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} whole)", plan.holdings.len())
                    }
                ));
            }
            if !plan.failed.is_empty() {
                let named: Vec<String> = plan
                    .failed
                    .iter()
                    .take(5)
                    .map(|f| format!("{} ({})", f.path, f.reason))
                    .collect();
                n.detail.push(format!(
                    "{} refused: {}{}",
                    plan.failed.len(),
                    named.join("; "),
                    if plan.failed.len() > 5 { "; ..." } else { "" }
                ));
            }
            // Something refused: the whole request when nothing was done, else a part of it.
            if let Some(f) = plan.failed.iter().find(|f| is_refusal(f.code)) {
                let why = (f.code, format!("{}: {}", f.path, f.reason));
                if plan.files_total == 0 && plan.holdings.is_empty() {
                    n.refusal.get_or_insert(why);
                } else {
                    n.partly_refused.get_or_insert(why);
                }
            }
        }
        RpcReply::Stage(nlds_core::stage::StageAnswer::Created(c)) => {
            n.transaction_id = Some(c.request_id);
        }
        RpcReply::Error(e) if is_refusal(e.code) && n.refusal.is_none() => {
            n.refusal = Some((e.code, e.message.clone()));
        }
        _ => {}
    });
}

pub(crate) fn is_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Forbidden | ErrorCode::NotFound | ErrorCode::PermissionDenied
    )
}

/// Notes an error of this request: a refusal when it says forbidden or not found.
pub fn observe_error(e: &ApiError) {
    if is_refusal(e.code) {
        note_refused(e.code, &e.message);
    }
}

/// Notes that this request was refused, and why.
pub fn note_refused(code: ErrorCode, message: &str) {
    with(|n| {
        if n.refusal.is_none() {
            n.refusal = Some((code, message.to_owned()));
        }
    });
}

/// Notes the paths a put, get or delete named.
pub fn note_paths(paths: &[String]) {
    if let Some(first) = paths.first() {
        let first = first.clone();
        with(|n| n.paths = Some((paths.len(), first)));
    }
}

/// Notes that this request changes nothing (a dry run): it is not audited unless refused.
pub fn note_dry_run() {
    with(|n| n.dry_run = true);
}

/// Notes what a change did: the holdings it touched and a sentence about it (e.g. "deleted 12
/// files of holding 4"). The delete, undelete and purge handlers call this.
pub fn note_change(holding_ids: &[i64], detail: impl Into<String>) {
    let detail = detail.into();
    with(|n| {
        n.changed.extend_from_slice(holding_ids);
        if !detail.is_empty() {
            n.detail.push(detail);
        }
    });
}

/// Notes the transaction a request started or acted on.
pub fn note_transaction(id: Uuid) {
    with(|n| n.transaction_id = Some(id));
}

/// Runs `fut` (a request being handled) with a fresh set of notes; returns its output and what
/// it noted.
pub(crate) async fn collect<F: std::future::Future>(fut: F) -> (F::Output, Notes) {
    let notes = Arc::new(Mutex::new(Notes::default()));
    let out = NOTES.scope(notes.clone(), fut).await;
    let notes = notes.lock().map(|n| n.clone()).unwrap_or_default();
    (out, notes)
}
