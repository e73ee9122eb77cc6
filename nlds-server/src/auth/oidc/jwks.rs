//! Discovery and JWT verification: the provider's endpoints, its JWKS (refetched, rate-limited,
//! on an unknown `kid`) and the checks of a JWT access token.

use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::claims::ClaimMappingExt;
use super::{AuthError, DISCOVERY_RETRY, OidcAuthenticator};
use crate::auth::Identity;

#[derive(Clone)]
pub(super) struct Endpoints {
    pub(super) jwks_uri: Option<String>,
    pub(super) introspection: Option<String>,
}

#[derive(Default)]
pub(super) struct EndpointState {
    found: Option<Endpoints>,
    last_attempt: Option<Instant>,
}

pub(super) struct JwkKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
pub(super) struct Jwks {
    keys: Vec<JwkKey>,
    /// Last successful fetch.
    fetched: Option<Instant>,
    /// Last attempt, successful or not (the rate limit).
    attempted: Option<Instant>,
}

impl Jwks {
    pub(super) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let fits = |k: &&JwkKey| k.key.family() == alg.family() && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(fits)
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| k.key.clone()),
            None => {
                let mut candidates = self.keys.iter().filter(fits);
                match (candidates.next(), candidates.next()) {
                    (Some(k), None) => Some(k.key.clone()),
                    _ => None,
                }
            }
        }
    }
}

/// The header of a JWT, if `token` looks like one (three parts, a JSON header naming `alg`).
pub(super) fn jwt_header(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (h, _, _, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next());
    if rest.is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(h).ok()?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    header.contains_key("alg").then_some(header)
}

/// Does the `aud` value (a string or a list) name one of `accepted`?
pub(super) fn audience_matches(aud: &Value, accepted: &[String]) -> bool {
    match aud {
        Value::String(s) => accepted.contains(s),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .any(|s| accepted.iter().any(|x| x == s)),
        _ => false,
    }
}

impl OidcAuthenticator {
    pub(super) async fn endpoints(&self) -> Result<Endpoints, AuthError> {
        let need_discovery = self.cfg.jwks_uri.is_none()
            || (self.client.is_some() && self.cfg.introspection_endpoint.is_none());
        if !need_discovery {
            return Ok(Endpoints {
                jwks_uri: self.cfg.jwks_uri.clone(),
                introspection: self.cfg.introspection_endpoint.clone(),
            });
        }
        let mut st = self.endpoints.lock().await;
        if let Some(e) = &st.found {
            return Ok(e.clone());
        }
        if let Some(t) = st.last_attempt
            && t.elapsed() < DISCOVERY_RETRY
        {
            return Err(AuthError::Unavailable(
                "the last discovery attempt failed; retrying shortly".into(),
            ));
        }
        st.last_attempt = Some(Instant::now());
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: Option<String>,
            introspection_endpoint: Option<String>,
        }
        let doc: Discovery = self.get_json(&url, "discovery").await?;
        if doc.issuer != self.cfg.issuer {
            tracing::error!(expected = %self.cfg.issuer, found = %doc.issuer, "OIDC discovery document names another issuer");
            return Err(AuthError::Unavailable(format!(
                "the discovery document at {url} names issuer {:?}, not {:?}",
                doc.issuer, self.cfg.issuer
            )));
        }
        let e = Endpoints {
            jwks_uri: self.cfg.jwks_uri.clone().or(doc.jwks_uri),
            introspection: self
                .cfg
                .introspection_endpoint
                .clone()
                .or(doc.introspection_endpoint),
        };
        tracing::info!(issuer = %self.cfg.issuer, jwks_uri = ?e.jwks_uri, introspection = ?e.introspection, "OIDC provider discovered");
        st.found = Some(e.clone());
        Ok(e)
    }

    pub(super) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<T, AuthError> {
        let fail = |e: String| {
            tracing::warn!(%url, error = %e, "{what} request to the identity provider failed");
            AuthError::Unavailable(format!("{what} at {url}: {e}"))
        };
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !r.status().is_success() {
            return Err(fail(format!("HTTP {}", r.status())));
        }
        r.json::<T>().await.map_err(|e| fail(e.to_string()))
    }

    pub(super) async fn fetch_jwks(&self) -> Result<Vec<JwkKey>, AuthError> {
        let uri =
            self.endpoints().await?.jwks_uri.ok_or_else(|| {
                AuthError::Unavailable("the provider publishes no jwks_uri".into())
            })?;
        self.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<Value>,
        }
        let set: Set = self.get_json(&uri, "JWKS").await?;
        let mut keys = Vec::new();
        for raw in set.keys {
            let kid = raw.get("kid").and_then(Value::as_str).map(str::to_owned);
            // Encryption keys and shared secrets have no place among signing keys.
            if raw.get("use").and_then(Value::as_str) == Some("enc")
                || raw.get("kty").and_then(Value::as_str) == Some("oct")
            {
                continue;
            }
            let alg = match raw.get("alg").and_then(Value::as_str) {
                Some(a) => match Algorithm::from_str(a) {
                    Ok(a) => Some(a),
                    Err(_) => continue,
                },
                None => None,
            };
            let key = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(raw)
                .ok()
                .and_then(|jwk| DecodingKey::from_jwk(&jwk).ok());
            match key {
                Some(key) => keys.push(JwkKey { kid, alg, key }),
                None => tracing::debug!(?kid, "skipping a JWKS key of an unsupported type"),
            }
        }
        tracing::info!(keys = keys.len(), "JWKS fetched");
        Ok(keys)
    }

    /// The key for a token's `kid` and `alg`: from the cache, else after (at most) one
    /// rate-limited refetch.
    pub(super) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, AuthError> {
        let ttl = Duration::from_secs(self.cfg.jwks_cache_secs.max(1));
        let min_refetch = Duration::from_secs(self.cfg.jwks_min_refetch_secs);
        {
            let j = self.jwks.read().await;
            if j.fetched.is_some_and(|t| t.elapsed() < ttl)
                && let Some(k) = j.find(kid, alg)
            {
                return Ok(k);
            }
        }
        let _one_fetch_at_a_time = self.jwks_fetch.lock().await;
        {
            let j = self.jwks.read().await;
            let fresh = j.fetched.is_some_and(|t| t.elapsed() < ttl);
            let found = j.find(kid, alg);
            if fresh && let Some(k) = found {
                return Ok(k);
            }
            if j.attempted.is_some_and(|t| t.elapsed() < min_refetch) {
                return match (found, j.fetched) {
                    (Some(k), _) => Ok(k),
                    (None, Some(_)) => Err(AuthError::UnknownKey(kid.unwrap_or("").to_owned())),
                    (None, None) => Err(AuthError::Unavailable(
                        "the JWKS could not be fetched; retrying shortly".into(),
                    )),
                };
            }
        }
        let fetched = self.fetch_jwks().await;
        let mut j = self.jwks.write().await;
        j.attempted = Some(Instant::now());
        match fetched {
            Ok(keys) => {
                j.keys = keys;
                j.fetched = Some(Instant::now());
            }
            Err(e) if j.fetched.is_none() => return Err(e),
            // Keep using the keys we have while the provider is unreachable.
            Err(_) => {}
        }
        j.find(kid, alg)
            .ok_or_else(|| AuthError::UnknownKey(kid.unwrap_or("").to_owned()))
    }

    pub(super) async fn verify_jwt(
        &self,
        token: &str,
        header: &Map<String, Value>,
    ) -> Result<Identity, AuthError> {
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg = Algorithm::from_str(alg_name)
            .ok()
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| AuthError::Algorithm(alg_name.chars().take(20).collect()))?;
        // The kid is the caller's text: it ends up in logs, so keep it short.
        let kid: Option<String> = header
            .get("kid")
            .and_then(Value::as_str)
            .map(|k| k.chars().take(64).collect());
        let kid = kid.as_deref();
        let key = if alg.family() == AlgorithmFamily::Hmac {
            self.hmac
                .clone()
                .ok_or_else(|| AuthError::Algorithm(alg_name.to_owned()))?
        } else {
            self.key_for(kid, alg).await?
        };
        let mut v = Validation::new(alg);
        v.leeway = self.cfg.leeway_secs;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.set_audience(&self.cfg.audience);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        use jsonwebtoken::errors::ErrorKind as K;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v).map_err(|e| {
                match e.kind() {
                    K::InvalidSignature => AuthError::Signature,
                    K::ExpiredSignature => AuthError::Expired,
                    K::ImmatureSignature => AuthError::NotYetValid,
                    K::InvalidIssuer => AuthError::Issuer,
                    K::InvalidAudience => AuthError::Audience,
                    K::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
                    K::InvalidAlgorithm => AuthError::Algorithm(alg_name.to_owned()),
                    other => AuthError::Malformed(format!("{other:?}").chars().take(120).collect()),
                }
            })?;
        self.cfg.claims.identity(&data.claims)
    }
}
