//! Extractors: the authenticated caller, and JSON bodies and query strings whose rejections use
//! our error envelope.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use nlds_core::ErrorCode;
use serde::de::DeserializeOwned;

use crate::auth::{Checked, Identity};
use crate::error::{Result, ServerError};
use crate::state::AppState;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl Caller {
    /// The group to act in: the one asked for (which the caller must belong to), else their first.
    pub fn group(&self, requested: Option<&str>) -> Result<String> {
        match requested.map(str::trim).filter(|g| !g.is_empty()) {
            // Operators (ADMIN) act in every group, member or not.
            Some(g) if self.0.admin || self.0.groups.iter().any(|x| x == g) => Ok(g.to_owned()),
            Some(g) => Err(ServerError::new(
                ErrorCode::Forbidden,
                format!("user {} is not a member of group {g}", self.0.user),
            )),
            None => self.0.groups.first().cloned().ok_or_else(|| {
                ServerError::new(
                    ErrorCode::Forbidden,
                    format!("user {} has no group", self.0.user),
                )
            }),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| {
                ServerError::new(
                    ErrorCode::Unauthorized,
                    "missing bearer token: send the header 'Authorization: Bearer <token>'",
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ServerError::new(
                    ErrorCode::Unauthorized,
                    "the Authorization header is not 'Bearer <token>'",
                )
            })?;
        match state.auth.check(token).await {
            Checked::Valid(id) => {
                crate::notes::identify(&id);
                Ok(Caller(id))
            }
            Checked::Refused => Err(ServerError::new(
                ErrorCode::Unauthorized,
                "invalid or expired token",
            )),
            // The reason (which names the provider's URL) is in the server log, not the answer.
            Checked::Unavailable(_) => Err(ServerError::new(
                ErrorCode::Unavailable,
                "the identity provider is unavailable; try again later",
            )),
        }
    }
}

/// `Json` whose rejections use our error envelope.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ServerError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ServerError {
    let code = if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ErrorCode::PayloadTooLarge
    } else {
        ErrorCode::BadRequest
    };
    ServerError::new(code, format!("invalid JSON body: {}", e.body_text()))
}

/// `Query` whose rejections use our error envelope.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ServerError {
    ServerError::bad_request(format!("invalid query string: {}", e.body_text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_act_in_their_groups_and_operators_in_any() {
        let alice = Caller(Identity::user(
            "alice",
            vec!["climate".into(), "ocean".into()],
        ));
        assert_eq!(alice.group(None).unwrap(), "climate");
        assert_eq!(alice.group(Some(" ocean ")).unwrap(), "ocean");
        let err = alice.group(Some("ice")).unwrap_err().0;
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(
            err.message.contains("alice is not a member of group ice"),
            "{err:?}"
        );
        let mut op = Identity::user("op", vec!["nlds-admin".into()]);
        op.admin = true;
        assert_eq!(Caller(op).group(Some("ice")).unwrap(), "ice");
    }
}
