//! The audit log, written by the API: who put, got, changed or deleted what, and every refused
//! attempt (a 403 or 404, a refusal the catalogue answered, or a read that named a holding,
//! transaction or path and saw nothing of it).
//!
//! One middleware ([`middleware`]) wraps every audited request of both APIs in a scope of notes
//! ([`crate::notes`]: who the caller is, what each RPC asked and answered, what handlers add).
//! When the response is ready it decides whether the request is audited and publishes one
//! [`AuditEvent`] on `log.audit` (stored by the logger role in `audit_record`) before the response
//! leaves: changes that were carried out, and refusals. Reads that succeed are not audited.
//!
//! Nothing secret is recorded: not the token, not the query string (only the values of
//! `holding_id`, `label`, `transaction_id`, `id`, `path`, `filepath`, `user` and `group` are read),
//! never a request body.
//!
//! Which requests are audited, and as what action, is declared where each route is registered:
//! the route table ([`crate::app::routes`]) marks a route with [`crate::openapi::audited`], which
//! writes the action into the route's OpenAPI operation (`x-nlds-audit`); [`AuditedRoutes`] reads
//! it from there. A handler needs nothing more to be audited. An audit record can also be written
//! directly with [`record`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use nlds_core::admin::{AUDIT_DETAIL_MAX, AuditAction, AuditEvent, AuditOutcome, clip};
use nlds_core::api::ApiAction;
use nlds_core::{Action, Envelope, ErrorCode, Payload, RoutingKey, Worker};
use uuid::Uuid;

use crate::notes::{self, Notes};
use crate::state::AppState;

/// The audited routes of the route table: method, path segments (`{name}` stands for any one
/// segment, as in axum) and action, read from the operations' `x-nlds-audit` in the OpenAPI
/// document ([`crate::app::document`]; the router builds this once and gives it to the middleware).
pub struct AuditedRoutes(Vec<AuditedRoute>);

struct AuditedRoute {
    method: Method,
    segments: Vec<String>,
    action: AuditAction,
}

impl AuditedRoute {
    fn matches(&self, path: &str) -> bool {
        let mut given = path.split('/');
        let mut want = self.segments.iter();
        loop {
            match (given.next(), want.next()) {
                (None, None) => return true,
                (Some(g), Some(w)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {}
                (Some(g), Some(w)) if g == w => {}
                _ => return false,
            }
        }
    }
}

impl AuditedRoutes {
    /// Every audited route of `doc`.
    pub fn of(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut out = Vec::new();
        for (path, item) in doc.paths.paths.iter() {
            for (method, op) in [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ] {
                let Some(action) = op.as_ref().and_then(audit_action) else {
                    continue;
                };
                out.push(AuditedRoute {
                    method,
                    segments: path.split('/').map(str::to_owned).collect(),
                    action,
                });
            }
        }
        Self(out)
    }

    /// The audited action of an endpoint (`None`: not audited, e.g. health, whoami, init): the
    /// one its route declares. A path no route serves has none. A HEAD request is its GET's.
    pub fn action_of(&self, method: &Method, path: &str) -> Option<AuditAction> {
        let method = if *method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.0
            .iter()
            .find(|r| r.method == *method && r.matches(path))
            .map(|r| r.action)
    }
}

/// The audit action an OpenAPI operation declares (`x-nlds-audit`).
pub fn audit_action(op: &utoipa::openapi::path::Operation) -> Option<AuditAction> {
    let name = op
        .extensions
        .as_ref()?
        .get(crate::openapi::AUDIT_EXTENSION)?
        .as_str()?;
    AuditAction::ALL.into_iter().find(|a| a.as_str() == name)
}

/// The request facts read before it is handled: only these query parameters, never the rest.
#[derive(Debug, Default)]
struct Named {
    holding_id: Option<i64>,
    label: Option<String>,
    transaction_id: Option<Uuid>,
    /// Names one thing (holding, label, transaction, record id, path).
    names_target: bool,
    user: Option<String>,
    group: Option<String>,
}

fn named(method: &Method, path: &str, query: Option<&str>) -> Named {
    let mut out = Named::default();
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
    for (k, v) in pairs {
        let v = v.trim().to_owned();
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "holding_id" => {
                out.holding_id = v.parse().ok();
                out.names_target = true;
            }
            "label" => {
                out.label = Some(clip(&v, 256));
                out.names_target = true;
            }
            "transaction_id" => {
                out.transaction_id = Uuid::parse_str(&v).ok();
                out.names_target = true;
            }
            "id" | "path" | "filepath" => out.names_target = true,
            "user" => out.user = Some(clip(&v, 256)),
            "group" => out.group = Some(clip(&v, 256)),
            _ => {}
        }
    }
    // `/api/v2/transactions/{id}` names one transaction.
    if let Some(id) = path
        .trim_end_matches('/')
        .strip_prefix("/api/v2/transactions/")
        && *method == Method::GET
    {
        out.transaction_id = Uuid::parse_str(id).ok().or(out.transaction_id);
        out.names_target = true;
    }
    out
}

/// The message of an error answer of either API (`{"error":{"message"}}` or the legacy
/// `{"detail": "<json of {msg}>"}`).
fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if let Some(m) = v["error"]["message"].as_str() {
        return Some(m.to_owned());
    }
    match &v["detail"] {
        serde_json::Value::String(s) => {
            let inner: serde_json::Value = serde_json::from_str(s).unwrap_or_default();
            Some(inner["msg"].as_str().unwrap_or(s).to_owned())
        }
        serde_json::Value::Array(a) => a.first()?["msg"].as_str().map(str::to_owned),
        _ => None,
    }
}

/// Wraps every request: collects notes while it is handled, then publishes its audit record.
pub async fn middleware(
    State((s, routes)): State<(AppState, Arc<AuditedRoutes>)>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let Some(action) = routes.action_of(&method, &path) else {
        return next.run(req).await;
    };
    let asked = named(&method, &path, req.uri().query());
    let (resp, notes) = notes::collect(next.run(req)).await;
    let Some(identity) = notes.identity.clone() else {
        // Not authenticated: nobody to name (the request log has it).
        return resp;
    };
    let status = resp.status();
    let (resp, message) = if matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) {
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let message = error_message(&bytes);
        (Response::from_parts(parts, Body::from(bytes)), message)
    } else {
        (resp, None)
    };
    let refusal = if matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) {
        let code = if status == StatusCode::FORBIDDEN {
            ErrorCode::Forbidden
        } else {
            ErrorCode::NotFound
        };
        Some((
            notes.refusal.as_ref().map(|(c, _)| *c).unwrap_or(code),
            message
                .or_else(|| notes.refusal.as_ref().map(|(_, m)| m.clone()))
                .unwrap_or_else(|| status.to_string()),
        ))
    } else if let Some(r) = notes.refusal.clone() {
        Some(r)
    } else if !action.is_change() && notes.empty && asked.names_target {
        Some((
            ErrorCode::NotFound,
            format!(
                "nothing {} named is visible to {}",
                what_named(&asked),
                identity.user
            ),
        ))
    } else {
        None
    };
    let outcome = match refusal {
        Some(_) => AuditOutcome::Refused,
        None if status.is_success() && action.is_change() && !notes.dry_run => {
            let carried_out = match action {
                AuditAction::Put | AuditAction::Get => notes.recorded,
                AuditAction::Meta => !notes.changed.is_empty(),
                _ => true,
            };
            if !carried_out {
                return resp;
            }
            AuditOutcome::Allowed
        }
        None => return resp,
    };
    let group = notes
        .group
        .clone()
        .or_else(|| asked.group.clone())
        .or_else(|| identity.groups.first().cloned())
        .unwrap_or_default();
    let detail = match &refusal {
        Some((_, m)) => m.clone(),
        None => describe(action, &notes),
    };
    let target_user = asked.user.clone().filter(|u| *u != identity.user);
    let partly = match (&refusal, &notes.partly_refused) {
        (None, Some(p)) => Some(p.clone()),
        _ => None,
    };
    let event = AuditEvent {
        id: Uuid::new_v4(),
        time: Utc::now(),
        role: identity.role_in(&group),
        user: identity.user.clone(),
        group,
        action,
        outcome,
        endpoint: format!("{method} {path}"),
        holding_id: notes
            .holding_id
            .or(asked.holding_id)
            .or_else(|| notes.changed.first().copied()),
        label: notes.label.clone().or(asked.label.clone()),
        transaction_id: notes.transaction_id.or(asked.transaction_id),
        target_user,
        code: refusal.as_ref().map(|(c, _)| *c),
        detail: clip(&detail, AUDIT_DETAIL_MAX),
    };
    if let Some((code, why)) = partly {
        let refused = AuditEvent {
            id: Uuid::new_v4(),
            outcome: AuditOutcome::Refused,
            code: Some(code),
            detail: clip(&why, AUDIT_DETAIL_MAX),
            ..event.clone()
        };
        record(&s, event).await;
        record(&s, refused).await;
    } else {
        record(&s, event).await;
    }
    resp
}

fn what_named(a: &Named) -> String {
    let mut parts = Vec::new();
    if let Some(h) = a.holding_id {
        parts.push(format!("holding {h}"));
    }
    if let Some(l) = &a.label {
        parts.push(format!("label {l:?}"));
    }
    if let Some(t) = a.transaction_id {
        parts.push(format!("transaction {t}"));
    }
    if parts.is_empty() {
        "the request".into()
    } else {
        parts.join(", ")
    }
}

fn describe(action: AuditAction, n: &Notes) -> String {
    let mut out = Vec::new();
    match action {
        AuditAction::Put | AuditAction::Get => {
            let verb = if action == AuditAction::Put {
                "put"
            } else {
                "get"
            };
            let what = match &n.paths {
                Some((1, p)) => p.clone(),
                Some((k, p)) => format!("{k} paths ({p}, ...)"),
                None => "paths".into(),
            };
            let holding = match (n.holding_id, &n.label) {
                (Some(h), Some(l)) => format!(" of holding {h} ({l})"),
                (Some(h), None) => format!(" of holding {h}"),
                (None, Some(l)) => format!(" of holding {l:?}"),
                (None, None) => String::new(),
            };
            let tid = n
                .transaction_id
                .map(|t| format!(" as transaction {t}"))
                .unwrap_or_default();
            let prep = if action == AuditAction::Put {
                " into"
            } else {
                ""
            };
            out.push(format!(
                "{verb} {what}{}{tid}",
                if prep.is_empty() {
                    holding
                } else {
                    holding.replacen(" of", prep, 1)
                }
            ));
        }
        _ => {
            if let Some((k, p)) = &n.paths {
                out.push(format!(
                    "{k} path(s): {p}{}",
                    if *k > 1 { ", ..." } else { "" }
                ));
            }
        }
    }
    out.extend(n.detail.iter().cloned());
    if out.is_empty() && !n.changed.is_empty() {
        out.push(format!("holdings {:?}", n.changed));
    }
    out.join("; ")
}

/// Publishes an audit record for the logger to store (`log.audit`); a failure to publish is
/// logged (the record is then lost) but never fails the request.
pub async fn record(s: &AppState, event: AuditEvent) {
    tracing::info!(
        audit.user = %event.user,
        audit.action = %event.action,
        audit.outcome = %event.outcome,
        audit.endpoint = %event.endpoint,
        holding_id = ?event.holding_id,
        transaction_id = ?event.transaction_id,
        "audit"
    );
    let env = Envelope::new(
        event.transaction_id.unwrap_or(event.id),
        event.user.clone(),
        event.group.clone(),
        ApiAction::Get,
        "audit",
        Payload::Audit(event),
    );
    if let Err(e) = s
        .bus
        .publish(RoutingKey::new(Worker::Log, Action::Audit), &env)
        .await
    {
        tracing::error!(error = %e, "audit record could not be published; it is lost");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notes::{note_change, note_paths, note_refused, observe_error, observe_reply};
    use nlds_core::error::ApiError;
    use nlds_core::message::RpcReply;

    #[test]
    fn endpoints_map_to_actions() {
        let routes = AuditedRoutes::of(crate::app::document());
        let a = |m: Method, p: &str| routes.action_of(&m, p);
        assert_eq!(a(Method::POST, "/api/v2/put"), Some(AuditAction::Put));
        assert_eq!(a(Method::GET, "/api/v2/holdings"), Some(AuditAction::List));
        assert_eq!(
            a(Method::GET, "/api/v2/transactions/abc"),
            Some(AuditAction::Stat)
        );
        assert_eq!(
            a(Method::GET, "/api/v2/admin/audit"),
            Some(AuditAction::Admin)
        );
        assert_eq!(a(Method::POST, "/api/v2/delete"), Some(AuditAction::Delete));
        assert_eq!(a(Method::GET, "/api/v2/whoami"), None);
        assert_eq!(a(Method::PUT, "/api/1.0.0/files/"), Some(AuditAction::Put));
        assert_eq!(a(Method::GET, "/api/1.0.0/files"), Some(AuditAction::Get));
        assert_eq!(
            a(Method::DELETE, "/api/1.0.0/files/"),
            Some(AuditAction::Delete)
        );
        assert_eq!(
            a(Method::PUT, "/api/1.0.0/files/getlist/"),
            Some(AuditAction::Get)
        );
        assert_eq!(
            a(Method::POST, "/api/1.0.0/catalog/meta/"),
            Some(AuditAction::Meta)
        );
        assert_eq!(
            a(Method::GET, "/api/1.0.0/status/"),
            Some(AuditAction::Stat)
        );
        assert_eq!(a(Method::GET, "/api/1.0.0/init/"), None);
        assert_eq!(a(Method::GET, "/healthz"), None);
    }

    #[test]
    fn routes_that_do_not_exist_have_no_action() {
        let routes = AuditedRoutes::of(crate::app::document());
        let a = |m: Method, p: &str| routes.action_of(&m, p);
        // Once mapped by a hand-written table, never served.
        assert_eq!(a(Method::POST, "/api/v2/purge"), None);
        assert_eq!(a(Method::POST, "/api/v2/del"), None);
        assert_eq!(a(Method::POST, "/api/v2/dellist"), None);
        assert_eq!(a(Method::DELETE, "/api/v2/holdings"), None);
        assert_eq!(a(Method::DELETE, "/api/v2/files"), None);
        assert_eq!(a(Method::PUT, "/api/1.0.0/files/dellist/"), None);
        assert_eq!(a(Method::GET, "/api/v2/admin/nowhere"), None);
        // Served ones, by method: a HEAD is its GET.
        assert_eq!(
            a(Method::POST, "/api/v2/admin/purge"),
            Some(AuditAction::Purge)
        );
        assert_eq!(a(Method::HEAD, "/api/v2/files"), Some(AuditAction::Find));
        assert_eq!(a(Method::GET, "/api/v2/transactions/"), None);
    }

    #[test]
    fn only_known_parameters_are_read() {
        let n = named(
            &Method::GET,
            "/api/1.0.0/catalog/list/",
            Some("user=alice&group=g&secret_key=S3CRET&access_key=A&holding_id=4&label=run"),
        );
        assert_eq!(n.holding_id, Some(4));
        assert_eq!(n.label.as_deref(), Some("run"));
        assert_eq!(n.user.as_deref(), Some("alice"));
        assert!(n.names_target);
        assert!(!format!("{n:?}").contains("S3CRET"));
        let n = named(&Method::GET, "/api/1.0.0/status/", Some("user=a&group=g"));
        assert!(!n.names_target, "user and group name no target");
        let t = Uuid::new_v4();
        let n = named(&Method::GET, &format!("/api/v2/transactions/{t}"), None);
        assert_eq!((n.transaction_id, n.names_target), (Some(t), true));
    }

    #[test]
    fn error_messages_of_both_apis() {
        assert_eq!(
            error_message(br#"{"error":{"code":"forbidden","message":"no"}}"#).as_deref(),
            Some("no")
        );
        let legacy = serde_json::json!({"detail": serde_json::json!({"loc": ["None"], "msg": "User alice could not be found.", "type": "x"}).to_string()});
        assert_eq!(
            error_message(legacy.to_string().as_bytes()).as_deref(),
            Some("User alice could not be found.")
        );
        assert_eq!(error_message(b"not json"), None);
    }

    #[tokio::test]
    async fn notes_are_per_request() {
        // Outside a request scope, notes are dropped silently.
        note_refused(ErrorCode::Forbidden, "x");
        let ((), n) = crate::notes::collect(async {
            note_paths(&["/a".into(), "/b".into()]);
            // An error reply is noted without re-entering the notes (no self-deadlock).
            observe_reply(&RpcReply::Error(ApiError::new(ErrorCode::NotFound, "gone")));
            observe_error(&ApiError::bad_request("not a refusal"));
            observe_error(&ApiError::new(
                ErrorCode::Forbidden,
                "holding 4 belongs to another user",
            ));
            note_change(&[4], "deleted 2 files of holding 4");
        })
        .await;
        assert_eq!(n.paths, Some((2, "/a".into())));
        assert_eq!(
            n.refusal.unwrap().0,
            ErrorCode::NotFound,
            "the first refusal is kept"
        );
        assert_eq!(n.changed, vec![4]);
        assert_eq!(
            describe(
                AuditAction::Delete,
                &Notes {
                    paths: Some((1, "/x".into())),
                    detail: vec!["gone".into()],
                    ..Default::default()
                }
            ),
            "1 path(s): /x; gone"
        );
    }
}
