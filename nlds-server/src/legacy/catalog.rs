//! `catalog/`: list, find and meta.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use nlds_core::api::{FileEntry, HoldingSummary, MAX_LIMIT, Tags, Tier};
use nlds_core::message::{HoldingFilter, PathKind, RpcReply};
use nlds_core::{Action, Payload, RoutingKey, Worker};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::ServerError;
use crate::routes;
use crate::state::AppState;

use super::error::{LResult, LegacyError};
use super::params::Acting;
use super::reply::{accepted, iso, rpc_failure, rpc_message, tags_value, with_failure};
use super::{ActingAs, Answers};

fn holding_filter(a: &Acting) -> LResult<HoldingFilter> {
    let p = &a.params;
    Ok(HoldingFilter {
        groupall: p.bool("groupall")?,
        label: p.str("label").map(str::to_owned),
        label_regex: p.bool("regex")?,
        holding_id: p
            .int("holding_id")?
            .map(|id| nlds_core::number::db_id("holding_id", id).map_err(ServerError::from))
            .transpose()?,
        holding_ids: Vec::new(),
        transaction_id: match p.str("transaction_id") {
            None => None,
            Some(t) => Some(Uuid::parse_str(t.trim()).map_err(|_| {
                LegacyError::bad_request(
                    format!("Given transaction_id: {t} is not a valid uuid-4."),
                    "Bad transaction id.",
                )
            })?),
        },
        tags: p.tags()?,
        limit: p.limit()?,
        offset: 0,
        descending: p.bool("descending")?,
        versions: Default::default(),
    })
}

fn catalog_details(a: &Acting, action: &str) -> LResult<Value> {
    Ok(json!({
        "user": a.user,
        "group": a.group,
        "groupall": a.params.bool("groupall")?,
        "api_action": action,
    }))
}

fn catalog_meta(a: &Acting) -> Value {
    let p = &a.params;
    let mut m = serde_json::Map::new();
    for k in [
        "label",
        "holding_id",
        "transaction_id",
        "limit",
        "descending",
        "path",
        "regex",
    ] {
        if let Some(v) = p.str(k) {
            m.insert(k.into(), Value::String(v.to_owned()));
        }
    }
    if let Ok(t) = p.tags()
        && !t.is_empty()
    {
        m.insert("tag".into(), tags_value(&t));
    }
    Value::Object(m)
}

pub(super) fn whose(a: &Acting, groupall: bool) -> String {
    if groupall {
        format!("user:{} and group:{} (whole group)", a.user, a.group)
    } else {
        format!("user:{} and group:{}", a.user, a.group)
    }
}

fn holding_value(h: &HoldingSummary) -> Value {
    json!({
        "id": h.id,
        "label": h.label,
        "user": h.user,
        "group": h.group,
        "tags": tags_value(&h.tags),
        "transactions": h.transactions.iter().map(Uuid::to_string).collect::<Vec<_>>(),
        "date": iso(h.created),
    })
}

/// `GET catalog/list/`: list holdings.
#[utoipa::path(
    get, path = "/api/1.0.0/catalog/list/", tag = "legacy", operation_id = "legacy_list",
    params(ActingAs),
    responses(Answers),
    security(("bearer" = []))
)]
pub(super) async fn list(State(s): State<AppState>, a: Acting) -> LResult<Response> {
    let details = catalog_details(&a, "list")?;
    let meta = catalog_meta(&a);
    let filter = holding_filter(&a)?;
    let groupall = filter.groupall;
    let env = routes::rpc_env_role(
        &a.user,
        &a.group,
        a.role(),
        Payload::ListHoldings { filter },
    );
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::List), env)
        .await
    {
        Ok(RpcReply::Holdings(page)) if page.holdings.is_empty() => Ok(accepted(rpc_message(
            with_failure(
                details,
                format!("No holdings found for {}.", whose(&a, groupall)),
            ),
            json!({"holdings": []}),
            meta,
        ))),
        Ok(RpcReply::Holdings(page)) => Ok(accepted(rpc_message(
            details,
            json!({"holdings": page.holdings.iter().map(holding_value).collect::<Vec<_>>()}),
            meta,
        ))),
        Ok(_) => Err(unexpected("catalog.list")),
        Err(e) => Ok(rpc_failure(e, details, json!({"holdings": []}), meta)),
    }
}

fn unexpected(what: &str) -> LegacyError {
    LegacyError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        &["None"],
        format!("unexpected reply to {what}"),
        "Internal error.",
    )
}

fn file_value(f: &FileEntry) -> Value {
    let locations: Vec<Value> = f
        .locations
        .iter()
        .map(|l| match l.tier {
            Tier::Warm => json!({
                "storage_type": "OBJECT_STORAGE",
                "url_scheme": "s3",
                "root": l.bucket,
                "path": l.key,
                "access_time": iso(f.ingest_time),
                "url": format!("s3://{}/{}", l.bucket, l.key),
            }),
            Tier::Cold => json!({
                "storage_type": "TAPE",
                "url_scheme": "tape",
                "root": l.bucket,
                "path": l.key,
                "access_time": iso(f.ingest_time),
                "url": "",
            }),
        })
        .collect();
    json!({
        "original_path": f.path,
        "path_type": match f.kind {
            PathKind::File => "FILE",
            PathKind::Directory => "DIRECTORY",
            PathKind::Link => "LINK",
        },
        "link_path": f.link_target.clone().unwrap_or_default(),
        "size": f.size,
        "user": f.uid,
        "group": f.gid,
        "permissions": f.mode & 0o777,
        "holding_id": f.holding_id,
        "checksum": f.blake3.as_ref().map(|c| json!({"blake3": c})).unwrap_or(Value::Null),
        "locations": locations,
    })
}

/// Groups files by holding and transaction, keyed by label as upstream does (two holdings with
/// one label, possible across users with `groupall`, get distinct keys instead of colliding).
fn find_holdings(files: &[FileEntry]) -> Value {
    let mut by_holding: BTreeMap<i64, Vec<&FileEntry>> = BTreeMap::new();
    for f in files {
        by_holding.entry(f.holding_id).or_default().push(f);
    }
    let mut out = serde_json::Map::new();
    for (id, fs) in by_holding {
        let first = fs[0];
        let mut txs = serde_json::Map::new();
        for f in &fs {
            let t = txs.entry(f.transaction_id.to_string()).or_insert_with(|| {
                json!({
                    "transaction_id": f.transaction_id.to_string(),
                    "ingest_time": iso(f.ingest_time),
                    "filelist": [],
                })
            });
            if let Some(list) = t["filelist"].as_array_mut() {
                list.push(file_value(f));
            }
        }
        let key = if out.contains_key(&first.label) {
            format!("{} (holding {id})", first.label)
        } else {
            first.label.clone()
        };
        out.insert(
            key,
            json!({
                "label": first.label,
                "holding_id": id,
                "user": first.user,
                "group": first.group,
                "transactions": txs,
            }),
        );
    }
    Value::Object(out)
}

/// `GET catalog/find/`: find files.
#[utoipa::path(
    get, path = "/api/1.0.0/catalog/find/", tag = "legacy", operation_id = "legacy_find",
    params(ActingAs),
    responses(Answers),
    security(("bearer" = []))
)]
pub(super) async fn find(State(s): State<AppState>, a: Acting) -> LResult<Response> {
    let details = catalog_details(&a, "find")?;
    let meta = catalog_meta(&a);
    let mut filter = holding_filter(&a)?;
    let path_regex = filter.label_regex;
    if let Some(l) = &filter.label
        && path_regex
        && let Err(e) = nlds_core::pattern::check(&[l], "label")
    {
        return Err(LegacyError::bad_request(e.message, "Bad regex."));
    }
    let path = a.params.str("path").map(str::to_owned);
    if path_regex
        && let Some(p) = &path
        && let Err(e) = nlds_core::pattern::check(&[p], "path")
    {
        return Err(LegacyError::bad_request(e.message, "Bad regex."));
    }
    if a.params.str("limit").is_none() {
        filter.limit = nlds_core::api::DEFAULT_LIMIT;
    }
    let groupall = filter.groupall;
    let env = routes::rpc_env_role(
        &a.user,
        &a.group,
        a.role(),
        Payload::FindFiles {
            filter,
            path,
            path_regex,
            files_only: true,
            named_must_exist: false,
        },
    );
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Find), env)
        .await
    {
        Ok(RpcReply::Files(page)) if page.files.is_empty() => Ok(accepted(rpc_message(
            with_failure(
                details,
                format!("No files found for {}.", whose(&a, groupall)),
            ),
            json!({"holdings": {}}),
            meta,
        ))),
        Ok(RpcReply::Files(page)) => Ok(accepted(rpc_message(
            details,
            json!({"holdings": find_holdings(&page.files)}),
            meta,
        ))),
        Ok(_) => Err(unexpected("catalog.find")),
        Err(e) => Ok(rpc_failure(e, details, json!({"holdings": {}}), meta)),
    }
}

/// `MetaModel`, the body of `POST catalog/meta/`.
#[derive(Debug, Default, Deserialize)]
struct MetaModel {
    #[serde(default)]
    new_label: Option<String>,
    #[serde(default)]
    new_tag: Option<Tags>,
    #[serde(default)]
    del_tag: Option<Tags>,
}

/// `POST catalog/meta/`: change the label or tags of the selected holding(s).
#[utoipa::path(
    post, path = "/api/1.0.0/catalog/meta/", tag = "legacy", operation_id = "legacy_meta",
    params(ActingAs),
    request_body(content = serde_json::Value, description = "the legacy client's JSON body"),
    responses(Answers),
    security(("bearer" = []))
)]
pub(super) async fn meta(State(s): State<AppState>, a: Acting, body: Bytes) -> LResult<Response> {
    let details = json!({"user": a.user, "group": a.group, "api_action": "meta"});
    let model: MetaModel = if body.iter().all(u8::is_ascii_whitespace) {
        return Err(LegacyError::bad_request(
            "body data is incomplete",
            "Resources not found.",
        ));
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            LegacyError::bad_request(
                format!("the request body is not valid metadata ({{\"new_label\", \"new_tag\", \"del_tag\"}}): {e}"),
                "Bad request.",
            )
        })?
    };
    let label = a.params.str("label").map(str::to_owned);
    let holding_id = a.params.int("holding_id")?;
    let tags = a.params.tags()?;
    let mut meta = catalog_meta(&a);
    meta["new_meta"] = json!({
        "label": model.new_label,
        "tag": model.new_tag,
        "del_tag": model.del_tag,
    });
    if label.is_none() && holding_id.is_none() && tags.is_empty() {
        return Ok(accepted(rpc_message(
            with_failure(
                details,
                "Holding not found: holding_id or label or tag(s) not specified.",
            ),
            json!({"holdings": []}),
            meta,
        )));
    }
    let new_tags = model.new_tag.unwrap_or_default();
    let del_tags = model.del_tag.unwrap_or_default();
    let new_label = model.new_label.filter(|l| !l.is_empty());
    if new_label.is_none() && new_tags.is_empty() && del_tags.is_empty() {
        return Ok(accepted(rpc_message(
            with_failure(
                details,
                "Nothing to change: give a new label, new tags or tags to delete.",
            ),
            json!({"holdings": []}),
            meta,
        )));
    }
    let filter = HoldingFilter {
        label,
        holding_id,
        tags,
        limit: MAX_LIMIT,
        descending: true,
        ..Default::default()
    };
    let env = routes::rpc_env_role(
        &a.user,
        &a.group,
        a.role(),
        Payload::ChangeMeta {
            filter,
            new_label,
            new_tags,
            del_tags,
            dry_run: false,
        },
    );
    match s
        .rpc(RoutingKey::new(Worker::Catalog, Action::Meta), env)
        .await
    {
        Ok(RpcReply::Meta(m)) => {
            let holdings: Vec<Value> = m
                .holdings
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "user": c.user,
                        "group": c.group,
                        "old_meta": {"label": c.old.label, "tags": tags_value(&c.old.tags)},
                        "new_meta": {"label": c.new.label, "tags": tags_value(&c.new.tags)},
                    })
                })
                .collect();
            Ok(accepted(rpc_message(
                details,
                json!({ "holdings": holdings }),
                meta,
            )))
        }
        Ok(_) => Err(unexpected("catalog.meta")),
        Err(e) => Ok(rpc_failure(e, details, json!({"holdings": []}), meta)),
    }
}
