//! Introspection (RFC 7662) of opaque tokens: bounded, rate-limited, cached under a hash of the
//! token.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::claims::ClaimMappingExt;
use super::jwks::audience_matches;
use super::{AuthError, NEGATIVE_CACHE, OidcAuthenticator, form_encode, now_secs};
use crate::auth::Identity;

pub(super) struct Cached {
    until: Instant,
    result: Result<Identity, AuthError>,
    /// Insertion order (eviction of the oldest).
    seq: u64,
}

/// Introspection answers under a hash of the token: bounded, and when full the expired answers
/// go, then the oldest ones (never the whole cache at once).
#[derive(Default)]
pub(super) struct IntrospectionCache {
    map: HashMap<[u8; 32], Cached>,
    /// Keys in insertion order, with the `seq` they were inserted with (stale pairs are skipped).
    order: std::collections::VecDeque<([u8; 32], u64)>,
    seq: u64,
}

impl IntrospectionCache {
    pub(super) fn get(&self, key: &[u8; 32]) -> Option<Result<Identity, AuthError>> {
        self.map
            .get(key)
            .filter(|c| c.until > Instant::now())
            .map(|c| c.result.clone())
    }

    pub(super) fn insert(
        &mut self,
        key: [u8; 32],
        until: Instant,
        result: Result<Identity, AuthError>,
        max: usize,
    ) {
        let max = max.max(1);
        if !self.map.contains_key(&key) && self.map.len() >= max {
            let now = Instant::now();
            self.map.retain(|_, c| c.until > now);
            while self.map.len() >= max {
                let Some((k, seq)) = self.order.pop_front() else {
                    break;
                };
                if self.map.get(&k).is_some_and(|c| c.seq == seq) {
                    self.map.remove(&k);
                }
            }
        }
        self.seq += 1;
        self.map.insert(
            key,
            Cached {
                until,
                result,
                seq: self.seq,
            },
        );
        self.order.push_back((key, self.seq));
        if self.order.len() > 2 * max + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, seq)| map.get(k).is_some_and(|c| c.seq == *seq));
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
pub(super) struct Bucket {
    pub(super) tokens: f64,
    pub(super) at: Instant,
}

impl Bucket {
    pub(super) fn take(&mut self, rate: f64, burst: f64) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl OidcAuthenticator {
    pub(super) async fn introspect(&self, token: &str) -> Result<Identity, AuthError> {
        let Some((client_id, secret)) = &self.client else {
            return Err(AuthError::NoIntrospection);
        };
        let key: [u8; 32] = *blake3::hash(token.as_bytes()).as_bytes();
        if let Some(r) = self.cache.lock().expect("cache lock").get(&key) {
            return r;
        }
        // A token not in the cache costs the provider a request: their rate is limited, and so
        // is how many are in flight, so a flood of made-up tokens cannot hammer the provider.
        let allowed = self.bucket.lock().expect("bucket lock").take(
            f64::from(self.cfg.introspection_rate_per_sec.max(1)),
            f64::from(self.cfg.introspection_burst.max(1)),
        );
        if !allowed {
            return Err(AuthError::Busy);
        }
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| AuthError::Busy)?;
        // Another request may have asked about the same token while this one waited.
        if let Some(r) = self.cache.lock().expect("cache lock").get(&key) {
            return r;
        }
        let url = self.endpoints().await?.introspection.ok_or_else(|| {
            AuthError::Unavailable("the provider publishes no introspection_endpoint".into())
        })?;
        self.introspections.fetch_add(1, Ordering::Relaxed);
        let body =
            serde_urlencoded::to_string([("token", token), ("token_type_hint", "access_token")])
                .map_err(|_| AuthError::Malformed("cannot encode the token".into()))?;
        let fail = |e: String| {
            tracing::warn!(%url, error = %e, "introspection request to the identity provider failed");
            AuthError::Unavailable(format!("introspection at {url}: {e}"))
        };
        let r = self
            .http
            .post(&url)
            .basic_auth(form_encode(client_id), Some(form_encode(secret)))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !r.status().is_success() {
            return Err(fail(format!("HTTP {}", r.status())));
        }
        let answer: Map<String, Value> = r.json().await.map_err(|e| fail(e.to_string()))?;
        let result = self.judge_introspection(&answer);
        let mut ttl = Duration::from_secs(self.cfg.introspection_cache_secs);
        if result.is_ok() {
            if let Some(exp) = answer.get("exp").and_then(Value::as_u64) {
                ttl = ttl.min(Duration::from_secs(exp.saturating_sub(now_secs())));
            }
        } else {
            // A refusal is reused briefly, so the same bad token does not ask again and again.
            ttl = ttl.min(NEGATIVE_CACHE);
        }
        if !ttl.is_zero() {
            self.cache.lock().expect("cache lock").insert(
                key,
                Instant::now() + ttl,
                result.clone(),
                self.cfg.introspection_cache_entries,
            );
        }
        result
    }

    pub(super) fn judge_introspection(
        &self,
        a: &Map<String, Value>,
    ) -> Result<Identity, AuthError> {
        if a.get("active") != Some(&Value::Bool(true)) {
            return Err(AuthError::Inactive);
        }
        let now = now_secs();
        if let Some(exp) = a.get("exp").and_then(Value::as_u64)
            && exp + self.cfg.leeway_secs < now
        {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = a.get("nbf").and_then(Value::as_u64)
            && nbf > now + self.cfg.leeway_secs
        {
            return Err(AuthError::NotYetValid);
        }
        if let Some(iss) = a.get("iss")
            && iss.as_str() != Some(self.cfg.issuer.as_str())
        {
            return Err(AuthError::Issuer);
        }
        match a.get("aud") {
            Some(aud) if !audience_matches(aud, &self.cfg.audience) => {
                return Err(AuthError::Audience);
            }
            None if self.cfg.introspection_require_audience => {
                return Err(AuthError::Audience);
            }
            _ => {}
        }
        if let Some(t) = a.get("token_type").and_then(Value::as_str)
            && !t.eq_ignore_ascii_case("bearer")
            && !t.eq_ignore_ascii_case("access_token")
        {
            return Err(AuthError::Malformed(format!(
                "introspection says the token is a {t:?}, not an access token"
            )));
        }
        self.cfg.claims.identity(a)
    }
}
