//! The query parameters of a legacy request, and the caller it acts as.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use nlds_core::api::{MAX_LIMIT, Tags, parse_tags};
use uuid::Uuid;

use crate::auth::Identity;
use crate::error::ServerError;
use crate::state::AppState;

use super::error::{LResult, LegacyError};

/// Query parameters that carry credentials (the Python client sends its object-store keys).
const CREDENTIAL_PARAMS: &[&str] = &["access_key", "secret_key"];

/// The query string, parsed the way FastAPI reads it: the last value of a name wins, booleans
/// are pydantic's (`True`, `true`, `1`, `yes`, `on`, ...).
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(raw: Option<&str>) -> LResult<Self> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|_| {
                LegacyError::bad_request("the query string is not URL-encoded", "Bad request.")
            })?;
        // Object-store credentials of old clients are accepted and dropped here, so they can
        // never reach a message, a log line or an error text.
        Ok(Self(
            pairs
                .into_iter()
                .filter(|(k, _)| !CREDENTIAL_PARAMS.contains(&k.as_str()))
                .collect(),
        ))
    }

    /// A present, non-empty value.
    pub(super) fn str(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub(super) fn required(&self, name: &str) -> LResult<&str> {
        self.0.get(name).map(String::as_str).ok_or_else(|| {
            LegacyError::unprocessable(name, "field required", "value_error.missing")
        })
    }

    pub(super) fn bool(&self, name: &str) -> LResult<bool> {
        match self.0.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) => match v.as_str() {
                "true" | "1" | "yes" | "on" | "y" | "t" => Ok(true),
                "false" | "0" | "no" | "off" | "n" | "f" | "" => Ok(false),
                _ => Err(LegacyError::unprocessable(
                    name,
                    "value could not be parsed to a boolean",
                    "type_error.bool",
                )),
            },
        }
    }

    pub(super) fn int(&self, name: &str) -> LResult<Option<i64>> {
        self.str(name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    // An integer the database cannot hold is out of range, not "not an integer".
                    if let Err(e) = nlds_core::number::parse_db(name, v) {
                        return LegacyError::from(ServerError::from(e));
                    }
                    LegacyError::unprocessable(
                        name,
                        "value is not a valid integer",
                        "type_error.integer",
                    )
                })
            })
            .transpose()
    }

    pub(super) fn uuid(&self, name: &str) -> LResult<Option<Uuid>> {
        self.str(name)
            .map(|v| {
                Uuid::parse_str(v.trim()).map_err(|_| {
                    LegacyError::unprocessable(name, "value is not a valid uuid", "type_error.uuid")
                })
            })
            .transpose()
    }

    /// `tag=k:v,k2:v2` (braces allowed), as the client's `tag_to_string` writes it.
    pub(super) fn tags(&self) -> LResult<Tags> {
        match self.str("tag") {
            None => Ok(Tags::new()),
            Some(t) => parse_tags(t).map_err(|e| {
                LegacyError::bad_request(
                    format!("tag cannot be processed: {}", e.message),
                    "Bad tag.",
                )
            }),
        }
    }

    pub(super) fn limit(&self) -> LResult<u64> {
        match self.int("limit")? {
            None => Ok(MAX_LIMIT),
            Some(n) if n < 1 => Err(LegacyError::bad_request(
                format!("limit must be at least 1, not {n}"),
                "Bad limit.",
            )),
            Some(n) => Ok((n as u64).min(MAX_LIMIT)),
        }
    }
}
/// The authenticated caller and the `user`/`group` the request acts as.
#[derive(Debug)]
pub struct Acting {
    pub caller: Identity,
    pub user: String,
    pub group: String,
    pub params: Params,
}

impl FromRequestParts<AppState> for Acting {
    type Rejection = LegacyError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> LResult<Self> {
        let params = Params::parse(parts.uri.query())?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(LegacyError::new(
                StatusCode::FORBIDDEN,
                &["None"],
                "OAuth token not supplied.",
                "Forbidden.",
            ));
        };
        let caller = match s.auth.check(token).await {
            crate::auth::Checked::Valid(id) => id,
            crate::auth::Checked::Refused => {
                return Err(LegacyError::new(
                    StatusCode::UNAUTHORIZED,
                    &["None"],
                    "OAuth token invalid or could not be found.",
                    "Unauthorized.",
                ));
            }
            crate::auth::Checked::Unavailable(_) => {
                return Err(LegacyError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &["None"],
                    "The OAuth token could not be checked: the identity provider did not answer.",
                    "Service unavailable.",
                ));
            }
        };
        crate::notes::identify(&caller);
        let user = params.required("user")?.trim().to_owned();
        let group = params.required("group")?.trim().to_owned();
        if user != caller.user && !caller.admin {
            return Err(LegacyError::new(
                StatusCode::NOT_FOUND,
                &["None"],
                format!("User {user} could not be found."),
                "Resource not found.",
            ));
        }
        if !caller.groups.contains(&group) && !caller.admin {
            return Err(LegacyError::new(
                StatusCode::NOT_FOUND,
                &["None"],
                format!("User is not a member of the group {group}."),
                "Resource not found.",
            ));
        }
        Ok(Acting {
            caller,
            user,
            group,
            params,
        })
    }
}

impl Acting {
    /// The caller's role in the group the request acts in (ADMIN for operators).
    pub fn role(&self) -> nlds_core::AccessRole {
        self.caller.role_in(&self.group)
    }
}
