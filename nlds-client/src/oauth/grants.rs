//! The grants: device login, client credentials, renewal and revocation.

use std::time::Duration;

use chrono::Utc;
use nlds_core::ErrorCode;
use oauth2::basic::{BasicClient, BasicErrorResponse, BasicRevocationErrorResponse};
use oauth2::url;
use oauth2::{
    ClientId, ClientSecret, DeviceAuthorizationUrl, ErrorResponse, RefreshToken, RequestTokenError,
    RevocationUrl, Scope, StandardDeviceAuthorizationResponse, StandardRevocableToken, TokenUrl,
};
use serde::Serialize;

use super::http::{ProviderHttp, ProviderMetadata, discover, provider_unreachable};
use super::settings::{AuthSettings, Grant};
use super::store::StoredLogin;
use crate::config::Secret;
use crate::error::{Error, Result};

// ----- the grants -----

/// What to tell the person who must approve a device login.
#[derive(Debug, Clone, Serialize)]
pub struct DevicePrompt {
    pub verification_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_uri_complete: Option<String>,
    pub user_code: String,
    /// Seconds until the code expires.
    pub expires_in: u64,
}

fn oauth_client(s: &AuthSettings) -> BasicClient {
    BasicClient::new(ClientId::new(s.client_id.clone()))
}

fn url_of<T>(
    what: &str,
    u: &str,
    make: impl FnOnce(String) -> std::result::Result<T, oauth2::url::ParseError>,
) -> Result<T> {
    make(u.to_owned()).map_err(|e| {
        Error::Config(format!(
            "the OAuth2 provider's {what} {u:?} is not a URL: {e}"
        ))
    })
}

/// The error of a token request, in words that say what to do.
fn token_error<RE, TE>(s: &AuthSettings, what: &str, e: RequestTokenError<RE, TE>) -> Error
where
    RE: std::error::Error + 'static,
    TE: ErrorResponse + 'static,
{
    match e {
        RequestTokenError::ServerResponse(r) => Error::Provider {
            code: ErrorCode::Unauthorized,
            message: format!(
                "the OAuth2 provider {} refused {what}: {}",
                s.issuer,
                provider_said(&r)
            ),
        },
        RequestTokenError::Request(r) => provider_unreachable(&s.issuer, &r),
        RequestTokenError::Parse(e, _body) => Error::Decode(format!(
            "the OAuth2 provider {} answered {what} with something unexpected: {e}",
            s.issuer
        )),
        RequestTokenError::Other(m) => Error::Decode(format!(
            "{what} at the OAuth2 provider {} failed: {m}",
            s.issuer
        )),
    }
}

/// `invalid_grant: refresh token is expired` from an error response (no secrets in there).
fn provider_said<T: ErrorResponse>(r: &T) -> String {
    // The standard error responses serialise as {"error", "error_description", "error_uri"}.
    let v = serde_json::to_value(r).unwrap_or_default();
    let code = v.get("error").and_then(|c| c.as_str()).unwrap_or("error");
    match v.get("error_description").and_then(|d| d.as_str()) {
        Some(d) if !d.is_empty() => format!("{code}: {d}"),
        _ => code.to_owned(),
    }
}

/// The `error` code of a standard error response (`invalid_grant`, `access_denied`, ...).
fn error_code<T: ErrorResponse>(r: &T) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.get("error").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// RFC 8628: asks for a device code, calls `prompt` with what the person must do, then polls the
/// token endpoint (at the provider's `interval`, slower after `slow_down`) until they approve,
/// refuse, or the code expires.
pub async fn device_login(
    s: &AuthSettings,
    prompt: impl FnOnce(&DevicePrompt),
) -> Result<StoredLogin> {
    let http = ProviderHttp::new(&s.http)?;
    let meta = discover(&http, &s.issuer).await?;
    let Some(device_url) = meta.device_authorization_endpoint.as_deref() else {
        return Err(Error::Config(format!(
            "the OAuth2 provider {} does not offer the device authorization grant; a service \
             account can use `nlds login --client-credentials`",
            s.issuer
        )));
    };
    let client = oauth_client(s)
        .set_token_uri(url_of(
            "token endpoint",
            &meta.token_endpoint,
            TokenUrl::new,
        )?)
        .set_device_authorization_url(url_of(
            "device authorization endpoint",
            device_url,
            DeviceAuthorizationUrl::new,
        )?);
    let mut req = client
        .exchange_device_code()
        .add_scopes(s.scopes_for(Grant::DeviceCode).into_iter().map(Scope::new));
    if let Some(aud) = &s.audience {
        req = req.add_extra_param("resource", aud.clone());
    }
    let details: StandardDeviceAuthorizationResponse = req
        .request_async(&http)
        .await
        .map_err(|e| token_error(s, "the device authorization request", e))?;
    prompt(&DevicePrompt {
        verification_uri: details.verification_uri().to_string(),
        verification_uri_complete: details
            .verification_uri_complete()
            .map(|u| u.secret().clone()),
        user_code: details.user_code().secret().clone(),
        expires_in: details.expires_in().as_secs(),
    });
    let mut poll = client.exchange_device_access_token(&details);
    if let Some(aud) = &s.audience {
        poll = poll.add_extra_param("resource", aud.clone());
    }
    let resp = poll
        .set_max_backoff_interval(Duration::from_secs(30))
        .request_async(&http, tokio::time::sleep, None)
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => {
                let message = match error_code(&r).as_str() {
                    "access_denied" => {
                        format!("the login was refused at the OAuth2 provider {}", s.issuer)
                    }
                    "expired_token" => {
                        "the code expired before it was approved: run `nlds login` again".to_owned()
                    }
                    _ => format!(
                        "the OAuth2 provider {} refused the login: {}",
                        s.issuer,
                        provider_said(&r)
                    ),
                };
                Error::Provider {
                    code: ErrorCode::Unauthorized,
                    message,
                }
            }
            other => token_error(s, "the device login", other),
        })?;
    Ok(StoredLogin::from_response(
        s,
        Grant::DeviceCode,
        &resp,
        None,
        Utc::now(),
    ))
}

/// The client credentials grant (service accounts and scripts): the configured client id and
/// secret buy an access token.
pub async fn client_credentials_login(s: &AuthSettings) -> Result<StoredLogin> {
    let secret = s.secret()?.clone();
    let http = ProviderHttp::new(&s.http)?;
    let meta = discover(&http, &s.issuer).await?;
    client_credentials(s, &http, &meta, &secret).await
}

async fn client_credentials(
    s: &AuthSettings,
    http: &ProviderHttp,
    meta: &ProviderMetadata,
    secret: &Secret,
) -> Result<StoredLogin> {
    let client = oauth_client(s)
        .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
        .set_token_uri(url_of(
            "token endpoint",
            &meta.token_endpoint,
            TokenUrl::new,
        )?);
    let mut req = client.exchange_client_credentials().add_scopes(
        s.scopes_for(Grant::ClientCredentials)
            .into_iter()
            .map(Scope::new),
    );
    if let Some(aud) = &s.audience {
        req = req.add_extra_param("resource", aud.clone());
    }
    let resp = req
        .request_async(http)
        .await
        .map_err(|e| token_error(s, "the client credentials", e))?;
    Ok(StoredLogin::from_response(
        s,
        Grant::ClientCredentials,
        &resp,
        None,
        Utc::now(),
    ))
}

/// Renews `login`: the refresh grant, or client credentials again. `Err(Renewal::Refused)`
/// means the provider will not renew it (a new login is needed).
pub(super) async fn renew(
    s: &AuthSettings,
    login: &StoredLogin,
) -> std::result::Result<StoredLogin, Renewal> {
    let http = ProviderHttp::new(&s.http).map_err(Renewal::Failed)?;
    let meta = discover(&http, &s.issuer).await.map_err(Renewal::Failed)?;
    match (&login.refresh_token, login.grant) {
        (Some(rt), _) => {
            let mut client = oauth_client(s).set_token_uri(
                url_of("token endpoint", &meta.token_endpoint, TokenUrl::new)
                    .map_err(Renewal::Failed)?,
            );
            if login.grant == Grant::ClientCredentials
                && let Ok(secret) = s.secret()
            {
                client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
            }
            let rt = RefreshToken::new(rt.clone());
            let mut req = client.exchange_refresh_token(&rt);
            if let Some(aud) = &login.audience {
                req = req.add_extra_param("resource", aud.clone());
            }
            match req.request_async(&http).await {
                Ok(resp) => Ok(StoredLogin::from_response(
                    s,
                    login.grant,
                    &resp,
                    login.refresh_token.clone(),
                    Utc::now(),
                )),
                Err(RequestTokenError::ServerResponse(r)) => {
                    Err(Renewal::Refused(provider_said::<BasicErrorResponse>(&r)))
                }
                Err(e) => Err(Renewal::Failed(token_error(s, "the token refresh", e))),
            }
        }
        (None, Grant::ClientCredentials) => {
            let secret = s.secret().map_err(|e| {
                Renewal::Refused(format!(
                    "the access token expired and no client secret is configured to renew it ({e})"
                ))
            })?;
            match client_credentials(s, &http, &meta, secret).await {
                Ok(l) => Ok(l),
                Err(Error::Provider {
                    code: ErrorCode::Unauthorized,
                    message,
                }) => Err(Renewal::Refused(message)),
                Err(e) => Err(Renewal::Failed(e)),
            }
        }
        (None, Grant::DeviceCode) => Err(Renewal::Refused(
            "the access token expired and the provider gave no refresh token".into(),
        )),
    }
}

pub(super) enum Renewal {
    /// The provider refused (revoked or expired refresh token, client no longer allowed).
    Refused(String),
    /// It could not be asked (network, discovery): the login may still be good.
    Failed(Error),
}

/// The error that sends the user back to `nlds login` (exit code 3).
pub fn login_again(s: &AuthSettings, why: &str, removed: bool) -> Error {
    let removed = if removed {
        format!(
            " (the stale token file {} was removed)",
            s.token_file.display()
        )
    } else {
        String::new()
    };
    Error::Provider {
        code: ErrorCode::Unauthorized,
        message: format!(
            "your login at {} can no longer be renewed: {why}{removed}; run `nlds login{}` again",
            s.issuer,
            if why.contains("client secret") || why.contains("client credentials") {
                " --client-credentials"
            } else {
                ""
            }
        ),
    }
}

/// What [`revoke`] did with each token.
#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    /// `refresh_token` or `access_token`.
    pub token: &'static str,
    /// `revoked`, `failed: ...`, or `not offered by the provider`.
    pub outcome: String,
    pub ok: bool,
}

/// RFC 7009: revokes the refresh token and then the access token, when the provider has a
/// revocation endpoint. Never fails as a whole: each token's outcome is reported.
pub async fn revoke(s: &AuthSettings, login: &StoredLogin) -> Vec<Revocation> {
    let mut out = Vec::new();
    let all = |outcome: String, ok: bool| {
        let mut v = Vec::new();
        if login.refresh_token.is_some() {
            v.push(Revocation {
                token: "refresh_token",
                outcome: outcome.clone(),
                ok,
            });
        }
        v.push(Revocation {
            token: "access_token",
            outcome,
            ok,
        });
        v
    };
    let http = match ProviderHttp::new(&s.http) {
        Ok(h) => h,
        Err(e) => return all(format!("failed: {e}"), false),
    };
    let meta = match discover(&http, &login.issuer).await {
        Ok(m) => m,
        Err(e) => return all(format!("failed: {e}"), false),
    };
    let Some(rev) = meta.revocation_endpoint.as_deref() else {
        return all(
            "not offered by the provider (the tokens stay valid until they expire)".into(),
            false,
        );
    };
    let url = match url_of("revocation endpoint", rev, RevocationUrl::new) {
        Ok(u) => u,
        Err(e) => return all(format!("failed: {e}"), false),
    };
    let secret = if login.grant == Grant::ClientCredentials {
        match s.secret() {
            Ok(secret) => Some(secret.clone()),
            Err(e) => return all(format!("failed: {e}"), false),
        }
    } else {
        None
    };
    let mut client = oauth_client(s).set_revocation_url(url);
    if let Some(secret) = &secret {
        client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
    }
    // The oauth2 crate sends tokens to an https:// revocation endpoint only (RFC 7009 asks for
    // TLS). A provider on this machine (http://127.0.0.1, http://localhost) gets the same
    // request from us: nothing leaves the host.
    let loopback_http = loopback_http(rev);
    let mut tokens: Vec<(&'static str, &str)> = Vec::new();
    if let Some(rt) = &login.refresh_token {
        tokens.push(("refresh_token", rt));
    }
    tokens.push(("access_token", &login.access_token));
    for (name, value) in tokens {
        if loopback_http {
            out.push(
                match revoke_plain(&http, rev, s, secret.as_ref(), value, name).await {
                    Ok(()) => Revocation {
                        token: name,
                        outcome: "revoked".into(),
                        ok: true,
                    },
                    Err(why) => Revocation {
                        token: name,
                        outcome: format!("failed: {why}"),
                        ok: false,
                    },
                },
            );
            continue;
        }
        let token = if name == "refresh_token" {
            StandardRevocableToken::RefreshToken(RefreshToken::new(value.to_owned()))
        } else {
            StandardRevocableToken::AccessToken(oauth2::AccessToken::new(value.to_owned()))
        };
        let result = match client.revoke_token(token) {
            Ok(req) => req.request_async(&http).await,
            Err(e) => {
                out.push(Revocation {
                    token: name,
                    outcome: format!("failed: {e} (the revocation endpoint is {rev})"),
                    ok: false,
                });
                continue;
            }
        };
        out.push(match result {
            Ok(()) => Revocation {
                token: name,
                outcome: "revoked".into(),
                ok: true,
            },
            Err(RequestTokenError::ServerResponse(r)) => Revocation {
                token: name,
                outcome: format!(
                    "failed: the provider said {}",
                    provider_said::<BasicRevocationErrorResponse>(&r)
                ),
                ok: false,
            },
            Err(e) => Revocation {
                token: name,
                outcome: format!("failed: {}", token_error(s, "the revocation", e)),
                ok: false,
            },
        });
    }
    out
}

/// `http://` to this very machine (127.0.0.0/8, ::1, localhost).
pub(super) fn loopback_http(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    u.scheme() == "http"
        && match u.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

/// An RFC 7009 revocation request like the oauth2 crate's, for a loopback provider: the token
/// and its type hint in the body, the client authenticated with HTTP Basic (a confidential
/// client) or named by `client_id` (a public one).
async fn revoke_plain(
    http: &ProviderHttp,
    url: &str,
    s: &AuthSettings,
    secret: Option<&Secret>,
    token: &str,
    hint: &str,
) -> std::result::Result<(), String> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", token)
        .append_pair("token_type_hint", hint);
    let mut req = http
        .reqwest()
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    match secret {
        Some(secret) => {
            let enc =
                |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            req = req.basic_auth(enc(&s.client_id), Some(enc(secret.expose())));
        }
        None => {
            form.append_pair("client_id", &s.client_id);
        }
    }
    let resp = req
        .body(form.finish())
        .send()
        .await
        .map_err(|e| provider_unreachable(&s.issuer, &e).to_string())?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let code = body
        .get("error")
        .and_then(|c| c.as_str())
        .unwrap_or("error");
    Err(
        match body.get("error_description").and_then(|d| d.as_str()) {
            Some(d) => format!("the provider said {code}: {d} (HTTP {})", status.as_u16()),
            None => format!("the provider said {code} (HTTP {})", status.as_u16()),
        },
    )
}
