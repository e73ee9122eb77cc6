//! Carrying out a pass's actions through the catalogue (which owns the catalogue tables and
//! applies its own guards): evictions (`catalog.evict`, [`Payload::EvictFiles`]) and archive
//! selections (`catalog-archive-next.start`, [`Payload::ArchiveSelect`]), then waiting for the
//! aggregates an archive selection started to be stored or given up.

use std::collections::HashMap;
use std::time::Duration;

use nlds_core::access::AccessRole;
use nlds_core::api::ApiAction;
use nlds_core::message::RpcReply;
use nlds_core::{Action, Envelope, Payload, RoutingKey, Worker};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::PolicyRunner;
use crate::db::{aggregation, log_record};

/// The envelope of a catalogue RPC the runner makes (as the service, an operator).
fn envelope(action: ApiAction, payload: Payload) -> Envelope {
    Envelope::new(Uuid::new_v4(), "nlds", "nlds", action, "policy", payload)
        .with_role(AccessRole::Admin)
}

/// Asks the catalogue for `key` with `payload`; the answer, or why there is none.
async fn ask(
    r: &PolicyRunner,
    key: RoutingKey,
    action: ApiAction,
    payload: Payload,
) -> Result<RpcReply, String> {
    let env = envelope(action, payload);
    match r.bus.rpc(key, &env, r.rpc_timeout).await {
        Ok(Envelope {
            payload: Payload::Reply(RpcReply::Error(e)),
            ..
        }) => Err(format!("{key}: {}", e.message)),
        Ok(Envelope {
            payload: Payload::Reply(reply),
            ..
        }) => Ok(reply),
        Ok(other) => Err(format!("{key}: unexpected answer {:?}", other.payload)),
        Err(e) => Err(format!("{key}: {e}")),
    }
}

/// Evicts `ids` (the catalogue skips any it may not evict now): the files evicted and their
/// bytes.
pub async fn evict(r: &PolicyRunner, ids: &[i64]) -> Result<(u64, u64), String> {
    let key = RoutingKey::new(Worker::Catalog, Action::Evict);
    match ask(
        r,
        key,
        ApiAction::Del,
        Payload::EvictFiles {
            file_ids: ids.to_vec(),
        },
    )
    .await?
    {
        RpcReply::Evicted { files } => Ok((
            files.len() as u64,
            files.iter().map(|f| f.size).sum::<u64>(),
        )),
        other => Err(format!("{key}: unexpected answer {other:?}")),
    }
}

/// An aggregation an archive selection created, as first seen.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: i64,
    pub name: String,
    pub files: u64,
    pub bytes: u64,
}

/// Has the catalogue archive `files` (id, size; those still eligible): the aggregations it
/// started, with the files and bytes of each.
pub async fn archive(r: &PolicyRunner, files: &[(i64, u64)]) -> Result<Vec<Started>, String> {
    let key = RoutingKey::new(Worker::CatalogArchiveNext, Action::Start);
    let leased = match ask(
        r,
        key,
        ApiAction::ArchivePut,
        Payload::ArchiveSelect {
            file_ids: files.iter().map(|f| f.0).collect(),
        },
    )
    .await?
    {
        RpcReply::ArchiveStarted { aggregations } => aggregations,
        other => return Err(format!("{key}: unexpected answer {other:?}")),
    };
    let sizes: HashMap<i64, u64> = files.iter().copied().collect();
    Ok(leased
        .into_iter()
        .map(|a| Started {
            id: a.aggregation_id,
            name: a.name,
            files: a.file_ids.len() as u64,
            bytes: a.file_ids.iter().filter_map(|f| sizes.get(f)).sum(),
        })
        .collect())
}

/// How the aggregations of an archive selection ended.
#[derive(Debug, Default)]
pub struct Ended {
    pub stored_files: u64,
    pub stored_bytes: u64,
    /// Aggregations given up (deleted by the catalogue: their write failed), and why.
    pub failed: Vec<(Started, String)>,
    /// Still being written when the wait ended.
    pub pending: Vec<Started>,
}

/// Waits (at most `r.archive_wait`) for each of `started` to be stored or to disappear.
pub async fn wait_stored(r: &PolicyRunner, started: Vec<Started>) -> Result<Ended, String> {
    let deadline = tokio::time::Instant::now() + r.archive_wait;
    let mut waiting: HashMap<i64, Started> = started.into_iter().map(|s| (s.id, s)).collect();
    let mut out = Ended::default();
    let mut pause = Duration::from_millis(200);
    loop {
        let ids: Vec<i64> = waiting.keys().copied().collect();
        let mut seen = HashMap::new();
        for chunk in ids.chunks(1000) {
            for a in aggregation::Entity::find()
                .filter(aggregation::Column::Id.is_in(chunk.iter().copied()))
                .all(&r.db)
                .await
                .map_err(|e| format!("reading the aggregations started: {e}"))?
            {
                seen.insert(a.id, a.state);
            }
        }
        for id in ids {
            match seen.get(&id) {
                Some(aggregation::State::Stored) => {
                    let s = waiting.remove(&id).expect("waiting");
                    out.stored_files += s.files;
                    out.stored_bytes += s.bytes;
                }
                Some(aggregation::State::Writing) => {}
                None => {
                    let s = waiting.remove(&id).expect("waiting");
                    let why = failure_reason(r, &s.name).await;
                    out.failed.push((s, why));
                }
            }
        }
        if waiting.is_empty() || tokio::time::Instant::now() >= deadline {
            out.pending = waiting.into_values().collect();
            return Ok(out);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// The latest logged error or warning naming aggregate `name`, else a pointer to the logs.
async fn failure_reason(r: &PolicyRunner, name: &str) -> String {
    let logged = log_record::Entity::find()
        .filter(log_record::Column::Message.contains(name))
        .order_by_desc(log_record::Column::Id)
        .one(&r.db)
        .await
        .ok()
        .flatten();
    match logged {
        Some(l) => format!("aggregate {name} was not stored: {}", l.message),
        None => format!(
            "aggregate {name} was not stored (its write failed; the archive-put logs say why)"
        ),
    }
}
