//! Claim mapping, configuration checks, and the JWKS / introspection logic against a small
//! in-process stand-in provider (key rotation and the refetch rate limit need a provider whose
//! keys the test can change). The real provider is exercised in tests/it/oidc.rs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::extract::State;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use nlds_core::AccessRole;
use serde_json::{Map, Value, json};

use super::*;

// Two throwaway P-256 keys made for these tests (PKCS#8 DER) and their public halves.
const KEY_A: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFejw9YeXSYtO277kHVDkNKx3VT4/btaQRF47ddzWm6WhRANCAARRPRMHYbAIZn+OI6WMuxBZjMKV5bOHhx7nwuiAeQeRNMGMLpoJC8uRA7soMeyl37LcgcO3QUrC5UPgc4zbl5ua";
const PUB_A: (&str, &str) = (
    "UT0TB2GwCGZ_jiOljLsQWYzCleWzh4ce58LogHkHkTQ",
    "wYwumgkLy5EDuygx7KXfstyBw7dBSsLlQ-BzjNuXm5o",
);
const KEY_B: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgU8riW/WALKoDT2ImOUCapcZM21p5125zDThqBDE03eahRANCAAQ8mAzIl9EPSG8jwfnBbn2bCKKVDEkZRT3EKvzX+kBw8gH+L92WDysFf+bTcPI57G79MRu+k3fIYd2M4c+MGRVk";
const PUB_B: (&str, &str) = (
    "PJgMyJfRD0hvI8H5wW59mwiilQxJGUU9xCr81_pAcPI",
    "Af4v3ZYPKwV_5tNw8jnsbv0xG76Td8hh3Yzhz4wZFWQ",
);

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

// ------------------------------------------------------------------------------ claim mapping

#[test]
fn map_format_roles_groups_and_admin_groups() {
    let m = ClaimMapping {
        admin_groups: vec!["nlds-admin".into()],
        ..Default::default()
    };
    let alice = m
        .identity(&obj(json!({
            "sub": "x1", "preferred_username": "alice",
            "groups": ["climate", "ocean", "climate"],
            "nlds_roles": {"climate": "MANAGER", "ocean": "user", "ice": "deputy"}
        })))
        .unwrap();
    assert_eq!(alice.user, "alice");
    assert_eq!(alice.groups, ["climate", "ocean"]);
    assert!(!alice.admin);
    assert_eq!(alice.role_in("climate"), AccessRole::Manager);
    assert_eq!(alice.role_in("ocean"), AccessRole::User);
    // A role in a group the user is not in does not count.
    assert!(!alice.roles.contains_key("ice"));
    assert_eq!(alice.roles.len(), 1);

    let op = m
        .identity(&obj(
            json!({"preferred_username": "op", "groups": "nlds-admin  ocean"}),
        ))
        .unwrap();
    assert!(op.admin);
    assert_eq!(op.groups, ["nlds-admin", "ocean"]);
    assert_eq!(op.role_in("anything"), AccessRole::Admin);

    // A list of roles for one group: the highest counts.
    let multi = m
        .identity(&obj(json!({"preferred_username": "b", "groups": ["g"], "nlds_roles": {"g": ["user", "deputy"]}})))
        .unwrap();
    assert_eq!(multi.role_in("g"), AccessRole::Deputy);

    // A per-group "admin" in the roles claim is a manager of that group, never an operator.
    let group_admin = m
        .identity(&obj(
            json!({"preferred_username": "ga", "groups": ["ocean", "ice"],
            "nlds_roles": {"ocean": "admin"}}),
        ))
        .unwrap();
    assert!(!group_admin.admin);
    assert_eq!(group_admin.role_in("ocean"), AccessRole::Manager);
    assert_eq!(group_admin.role_in("ice"), AccessRole::User);

    // No groups claim at all: no groups (the routes then refuse to act).
    let lone = m
        .identity(&obj(json!({"preferred_username": "lone"})))
        .unwrap();
    assert!(lone.groups.is_empty());
}

#[test]
fn list_format_nested_claims_and_admin_roles() {
    let m = ClaimMapping {
        user: "sub".into(),
        groups: "ext.groups".into(),
        roles: "resource_access.nlds.roles".into(),
        roles_format: RolesFormat::List,
        roles_separator: "/".into(),
        admin_groups: vec![],
        admin_roles: vec!["nlds-operator".into()],
    };
    let claims = obj(json!({
        "sub": "bob@example.org",
        "ext": {"groups": ["ocean", "ice"]},
        "resource_access": {"nlds": {"roles": ["ocean/deputy", "ice/manager", "ice/user", "offline_access"]}}
    }));
    let bob = m.identity(&claims).unwrap();
    assert_eq!(bob.user, "bob@example.org");
    assert_eq!(bob.groups, ["ocean", "ice"]);
    assert_eq!(bob.role_in("ocean"), AccessRole::Deputy);
    assert_eq!(bob.role_in("ice"), AccessRole::Manager);
    assert!(
        !bob.admin,
        "offline_access is some other application's role"
    );

    let mut group_admin = claims.clone();
    group_admin["resource_access"]["nlds"]["roles"] = json!(["ocean/admin"]);
    let ga = m.identity(&group_admin).unwrap();
    assert!(!ga.admin, "ocean/admin is no operator");
    assert_eq!(ga.role_in("ocean"), AccessRole::Manager);

    let mut admin_claims = claims.clone();
    admin_claims["resource_access"]["nlds"]["roles"] = json!(["nlds-operator"]);
    assert!(m.identity(&admin_claims).unwrap().admin);

    // A claim whose name contains dots is found by its full name first.
    let dotted = ClaimMapping {
        user: "https://example.org/user".into(),
        ..Default::default()
    };
    let id = dotted
        .identity(&obj(json!({"https://example.org/user": "carol"})))
        .unwrap();
    assert_eq!(id.user, "carol");
}

#[test]
fn bad_claims_are_refused_with_the_reason() {
    let m = ClaimMapping::default();
    assert_eq!(
        m.identity(&obj(json!({"sub": "alice"}))).unwrap_err(),
        AuthError::MissingClaim("preferred_username".into())
    );
    let err = m
        .identity(&obj(
            json!({"preferred_username": "alice", "groups": ["g"], "nlds_roles": {"g": "owner"}}),
        ))
        .unwrap_err();
    assert_eq!(err.code(), "bad_claims");
    assert!(
        err.to_string()
            .contains("unknown role \"owner\" for group g"),
        "{err}"
    );
    for bad_user in [
        json!("../etc"),
        json!(""),
        json!("-rf"),
        json!(42),
        json!("a b"),
    ] {
        let err = m
            .identity(&obj(
                json!({"preferred_username": bad_user, "groups": ["g"]}),
            ))
            .unwrap_err();
        assert_eq!(err.code(), "bad_claims", "{bad_user}: {err}");
    }
    let err = m
        .identity(&obj(
            json!({"preferred_username": "a", "groups": ["ok", "no/slash"]}),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("no/slash"), "{err}");
    let err = m
        .identity(&obj(
            json!({"preferred_username": "a", "groups": ["g"], "nlds_roles": ["g:manager"]}),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("roles_format = \"map\""), "{err}");
    let list = ClaimMapping {
        roles_format: RolesFormat::List,
        ..Default::default()
    };
    let err = list
        .identity(&obj(
            json!({"preferred_username": "a", "groups": ["g"], "nlds_roles": ["g:boss"]}),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("unknown role \"boss\""), "{err}");
}

// ------------------------------------------------------------------------------ configuration

fn cfg(issuer: &str) -> OidcConfig {
    OidcConfig {
        issuer: issuer.into(),
        ..Default::default()
    }
}

#[test]
fn configuration_is_checked_at_startup() {
    let err = |c: OidcConfig| OidcAuthenticator::new(c).err().unwrap().to_string();
    assert!(err(cfg("")).contains("needs [auth.oidc] issuer"));
    assert!(err(cfg("id.example.org")).contains("not an http(s) URL"));
    let mut c = cfg("https://id.example.org");
    c.algorithms = vec!["RS256".into(), "none".into()];
    assert!(err(c).contains("\"none\""));
    let mut c = cfg("https://id.example.org");
    c.algorithms = vec!["HS256".into()];
    assert!(err(c).contains("HS256 needs hmac_secret"));
    let mut c = cfg("https://id.example.org");
    c.algorithms = vec!["RS257".into()];
    assert!(err(c).contains("unknown JWS algorithm \"RS257\""));
    let mut c = cfg("https://id.example.org");
    c.client_id = Some("nlds-server".into());
    assert!(err(c).contains("needs client_secret"));
    let mut c = cfg("https://id.example.org");
    c.audience = vec![];
    assert!(err(c).contains("audience"));
    let mut c = cfg("https://id.example.org");
    c.client_id = Some("nlds-server".into());
    c.client_secret_file = Some("/nonexistent/secret".into());
    assert!(err(c).contains("cannot read client_secret_file /nonexistent/secret"));
    assert!(OidcAuthenticator::new(cfg("https://id.example.org")).is_ok());
}

#[test]
fn auth_section_parses_and_secrets_stay_hidden() {
    let s: crate::config::ServerSettings = toml::from_str(
        r#"
        [auth]
        kind = "oidc"
        [auth.oidc]
        issuer = "https://id.example.org"
        audience = "nlds-api"
        client_id = "nlds-server"
        client_secret = "s3cr3t-value-never-printed"
        [auth.oidc.claims]
        user = "sub"
        roles_format = "list"
        admin_groups = ["ops"]
        "#,
    )
    .unwrap();
    assert_eq!(s.auth.kind, crate::config::AuthKind::Oidc);
    assert_eq!(s.auth.oidc.audience, ["nlds-api"]);
    assert_eq!(s.auth.oidc.claims.roles_format, RolesFormat::List);
    assert_eq!(
        s.auth.oidc.claims.groups, "groups",
        "defaults fill the rest"
    );
    assert!(!format!("{s:?}").contains("s3cr3t"));
    assert!(!toml::to_string(&s).unwrap().contains("s3cr3t"));
    // Settings without [auth] keep the static tokens file.
    let old: crate::config::ServerSettings =
        toml::from_str("[server]\ntokens_file = \"t.toml\"\n").unwrap();
    assert_eq!(old.auth.kind, crate::config::AuthKind::Static);
    // A typo is an error, not a silently ignored setting.
    let typo = toml::from_str::<crate::config::ServerSettings>(
        "[auth.oidc]\nissuer = \"x\"\naudiences = [\"a\"]\n",
    );
    assert!(typo.unwrap_err().to_string().contains("audiences"));
}

// ------------------------------------------------------------------------------ stand-in provider

#[derive(Default)]
struct Fake {
    issuer: Mutex<String>,
    jwks: Mutex<Value>,
    jwks_hits: AtomicUsize,
    introspection_hits: AtomicUsize,
    /// token -> introspection answer
    answers: Mutex<HashMap<String, Value>>,
}

async fn discovery(State(f): State<Arc<Fake>>) -> axum::Json<Value> {
    let iss = f.issuer.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/jwks"),
        "introspection_endpoint": format!("{iss}/introspect"),
    }))
}

async fn jwks(State(f): State<Arc<Fake>>) -> axum::Json<Value> {
    f.jwks_hits.fetch_add(1, Ordering::SeqCst);
    axum::Json(f.jwks.lock().unwrap().clone())
}

async fn introspect(
    State(f): State<Arc<Fake>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Result<axum::Json<Value>, axum::http::StatusCode> {
    f.introspection_hits.fetch_add(1, Ordering::SeqCst);
    let auth = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("nlds-server:right%2Bsecret")
    );
    if auth != expected {
        return Err(axum::http::StatusCode::UNAUTHORIZED);
    }
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
    let answer = f.answers.lock().unwrap().get(&form["token"]).cloned();
    Ok(axum::Json(answer.unwrap_or(json!({"active": false}))))
}

async fn fake_provider() -> (Arc<Fake>, String) {
    let f = Arc::new(Fake::default());
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/introspect", post(introspect))
        .with_state(f.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    *f.issuer.lock().unwrap() = url.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (f, url)
}

fn ec_jwk(kid: &str, (x, y): (&str, &str)) -> Value {
    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"})
}

fn sign(kid: &str, key: &str, claims: Value) -> String {
    let der = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(&der)).unwrap()
}

fn claims(iss: &str) -> Value {
    json!({
        "iss": iss, "aud": "nlds", "sub": "alice", "exp": now_secs() + 300,
        "preferred_username": "alice", "groups": ["climate"], "nlds_roles": {"climate": "deputy"}
    })
}

#[tokio::test]
async fn key_rotation_is_picked_up_by_one_refetch() {
    let (f, iss) = fake_provider().await;
    *f.jwks.lock().unwrap() = json!({"keys": [ec_jwk("a", PUB_A)]});
    let mut c = cfg(&iss);
    c.jwks_min_refetch_secs = 0;
    let auth = OidcAuthenticator::new(c).unwrap();

    let a = sign("a", KEY_A, claims(&iss));
    let id = auth.verify(&a).await.unwrap();
    assert_eq!(id.user, "alice");
    assert_eq!(id.role_in("climate"), AccessRole::Deputy);
    auth.verify(&a).await.unwrap();
    assert_eq!(f.jwks_hits.load(Ordering::SeqCst), 1, "the JWKS is cached");

    // The provider rotates to key b: a token with the new kid makes us refetch once.
    *f.jwks.lock().unwrap() = json!({"keys": [ec_jwk("b", PUB_B)]});
    let b = sign("b", KEY_B, claims(&iss));
    assert_eq!(auth.verify(&b).await.unwrap().user, "alice");
    assert_eq!(f.jwks_hits.load(Ordering::SeqCst), 2);
    // Key a is gone from the JWKS now.
    assert_eq!(
        auth.verify(&a).await.unwrap_err(),
        AuthError::UnknownKey("a".into())
    );
    // A token claiming kid b but signed with key a: bad signature, whatever the claims.
    let forged = sign("b", KEY_A, claims(&iss));
    assert_eq!(
        auth.verify(&forged).await.unwrap_err(),
        AuthError::Signature
    );
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let (f, iss) = fake_provider().await;
    *f.jwks.lock().unwrap() = json!({"keys": [ec_jwk("a", PUB_A)]});
    let mut c = cfg(&iss);
    c.jwks_min_refetch_secs = 3600;
    let auth = OidcAuthenticator::new(c).unwrap();
    auth.verify(&sign("a", KEY_A, claims(&iss))).await.unwrap();
    for i in 0..5 {
        let t = sign(&format!("nope-{i}"), KEY_B, claims(&iss));
        assert_eq!(auth.verify(&t).await.unwrap_err().code(), "unknown_key");
    }
    assert_eq!(f.jwks_hits.load(Ordering::SeqCst), 1, "no refetch storm");
    assert_eq!(auth.jwks_fetches(), 1);
}

#[tokio::test]
async fn algorithm_allow_list_and_header_tricks() {
    let (f, iss) = fake_provider().await;
    *f.jwks.lock().unwrap() = json!({"keys": [ec_jwk("a", PUB_A)]});
    let auth = OidcAuthenticator::new(cfg(&iss)).unwrap();
    let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    // alg none, with and without a signature part.
    let payload = b64(claims(&iss));
    for t in [
        format!("{}.{payload}.", b64(json!({"alg": "none"}))),
        format!("{}.{payload}.", b64(json!({"alg": "None", "kid": "a"}))),
    ] {
        assert_eq!(
            auth.verify(&t).await.unwrap_err().code(),
            "algorithm_not_allowed"
        );
    }
    // HS256 signed with the public key as the shared secret (key confusion).
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("a".into());
    let t = jsonwebtoken::encode(
        &h,
        &claims(&iss),
        &EncodingKey::from_secret(PUB_A.0.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        auth.verify(&t).await.unwrap_err(),
        AuthError::Algorithm("HS256".into())
    );
    // ES256 not on the allow-list.
    let mut c = cfg(&iss);
    c.algorithms = vec!["RS256".into()];
    let rs_only = OidcAuthenticator::new(c).unwrap();
    assert_eq!(
        rs_only
            .verify(&sign("a", KEY_A, claims(&iss)))
            .await
            .unwrap_err(),
        AuthError::Algorithm("ES256".into())
    );
    // Claims: not yet valid (beyond the leeway), no exp, wrong issuer.
    let mut c = claims(&iss);
    c["nbf"] = json!(now_secs() + 600);
    assert_eq!(
        auth.verify(&sign("a", KEY_A, c)).await.unwrap_err(),
        AuthError::NotYetValid
    );
    let mut c = claims(&iss);
    c["nbf"] = json!(now_secs() + 10);
    assert!(
        auth.verify(&sign("a", KEY_A, c)).await.is_ok(),
        "within the leeway"
    );
    let mut c = claims(&iss);
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        auth.verify(&sign("a", KEY_A, c)).await.unwrap_err(),
        AuthError::MissingClaim("exp".into())
    );
    let mut c = claims(&iss);
    c["aud"] = json!(["other", "nlds"]);
    assert!(
        auth.verify(&sign("a", KEY_A, c)).await.is_ok(),
        "one of several audiences"
    );
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer() {
    let (f, iss) = fake_provider().await;
    *f.issuer.lock().unwrap() = "https://impostor.example.org".into();
    let auth = OidcAuthenticator::new(cfg(&iss)).unwrap();
    let err = auth
        .verify(&sign("a", KEY_A, claims(&iss)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "provider_unavailable");
    assert!(err.to_string().contains("impostor"), "{err}");
}

#[tokio::test]
async fn introspection_answers_are_cached_and_checked() {
    let (f, iss) = fake_provider().await;
    let mut c = cfg(&iss);
    c.client_id = Some("nlds-server".into());
    c.client_secret = Some(SecretString::from("right+secret"));
    c.introspection_cache_secs = 3600;
    let auth = OidcAuthenticator::new(c.clone()).unwrap();
    let active = |extra: Value| {
        let mut a = json!({
            "active": true, "iss": iss, "aud": "nlds", "exp": now_secs() + 300,
            "token_type": "Bearer", "preferred_username": "bob", "groups": ["ocean"],
        });
        a.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        a
    };
    {
        let mut answers = f.answers.lock().unwrap();
        answers.insert("good".into(), active(json!({})));
        answers.insert("other-aud".into(), active(json!({"aud": "other"})));
        answers.insert("other-iss".into(), active(json!({"iss": "https://x"})));
        answers.insert("expired".into(), active(json!({"exp": now_secs() - 3600})));
        let mut refresh = active(json!({}));
        refresh.as_object_mut().unwrap().remove("aud");
        refresh.as_object_mut().unwrap().remove("token_type");
        answers.insert("refresh".into(), refresh);
    }
    assert_eq!(auth.verify("good").await.unwrap().user, "bob");
    assert_eq!(auth.verify("good").await.unwrap().groups, ["ocean"]);
    assert_eq!(f.introspection_hits.load(Ordering::SeqCst), 1, "cached");
    assert_eq!(
        auth.verify("unknown").await.unwrap_err(),
        AuthError::Inactive
    );
    assert_eq!(
        auth.verify("other-aud").await.unwrap_err(),
        AuthError::Audience
    );
    assert_eq!(
        auth.verify("other-iss").await.unwrap_err(),
        AuthError::Issuer
    );
    assert_eq!(
        auth.verify("expired").await.unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(
        auth.verify("refresh").await.unwrap_err(),
        AuthError::Audience
    );
    // Negative answers are cached too: no hammering the provider with a bad token.
    let hits = f.introspection_hits.load(Ordering::SeqCst);
    assert_eq!(
        auth.verify("unknown").await.unwrap_err(),
        AuthError::Inactive
    );
    assert_eq!(f.introspection_hits.load(Ordering::SeqCst), hits);

    // Without a cache every request asks; with the wrong secret the provider is "unavailable".
    c.introspection_cache_secs = 0;
    let uncached = OidcAuthenticator::new(c.clone()).unwrap();
    uncached.verify("good").await.unwrap();
    uncached.verify("good").await.unwrap();
    assert_eq!(uncached.introspections(), 2);
    c.client_secret = Some(SecretString::from("wrong"));
    let wrong = OidcAuthenticator::new(c).unwrap();
    let err = wrong.verify("good").await.unwrap_err();
    assert_eq!(err.code(), "provider_unavailable");
    assert!(!err.to_string().contains("wrong"), "{err}");

    // Without a client, opaque tokens are refused outright.
    let no_client = OidcAuthenticator::new(cfg(&iss)).unwrap();
    assert_eq!(
        no_client.verify("good").await.unwrap_err(),
        AuthError::NoIntrospection
    );
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable_not_a_refusal() {
    // A port nothing listens on: bind, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let iss = format!("http://127.0.0.1:{port}");
    let auth = OidcAuthenticator::new(cfg(&iss)).unwrap();
    let token = sign("a", KEY_A, claims(&iss));
    match auth.check(&token).await {
        Checked::Unavailable(why) => assert!(why.contains("127.0.0.1"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(auth.authenticate(&token).await, None);
    // A provider that answers still refuses a bad token as Refused.
    let (_f, iss) = fake_provider().await;
    let auth = OidcAuthenticator::new(cfg(&iss)).unwrap();
    assert_eq!(auth.check("not.a.jwt").await, Checked::Refused);
}

fn introspecting(iss: &str) -> OidcConfig {
    let mut c = cfg(iss);
    c.client_id = Some("nlds-server".into());
    c.client_secret = Some(SecretString::from("right+secret"));
    c.introspection_cache_secs = 3600;
    c
}

#[tokio::test]
async fn introspection_cache_keeps_refusals_briefly_and_evicts_the_oldest_when_full() {
    let (f, iss) = fake_provider().await;
    let hits = || f.introspection_hits.load(Ordering::SeqCst);
    let mut c = introspecting(&iss);
    c.introspection_cache_entries = 4;
    let auth = OidcAuthenticator::new(c).unwrap();
    f.answers.lock().unwrap().insert(
        "expired".into(),
        json!({"active": true, "iss": iss, "aud": "nlds", "exp": now_secs() - 3600,
               "preferred_username": "bob"}),
    );
    // A refusal of an expired token is cached as well (briefly).
    assert_eq!(
        auth.verify("expired").await.unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(
        auth.verify("expired").await.unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(hits(), 1, "the refusal of an expired token is reused");
    // Full (4 entries): a fifth evicts the oldest only, not everything.
    for t in ["r1", "r2", "r3"] {
        auth.verify(t).await.unwrap_err();
    }
    assert_eq!(hits(), 4);
    auth.verify("r4").await.unwrap_err();
    assert_eq!(hits(), 5);
    auth.verify("r1").await.unwrap_err();
    auth.verify("r4").await.unwrap_err();
    assert_eq!(hits(), 5, "r1 and r4 are still cached");
    auth.verify("expired").await.unwrap_err();
    assert_eq!(hits(), 6, "the oldest entry was evicted");
}

#[tokio::test]
async fn a_flood_of_unknown_tokens_cannot_hammer_the_provider() {
    let (f, iss) = fake_provider().await;
    let auth = Arc::new(OidcAuthenticator::new(introspecting(&iss)).unwrap());
    let start = Instant::now();
    let tries = (0..300).map(|i| {
        let auth = auth.clone();
        async move {
            auth.check(&format!("made-up-{i}-{}", uuid::Uuid::new_v4()))
                .await
        }
    });
    let answers = futures::future::join_all(tries).await;
    let secs = start.elapsed().as_secs_f64();
    let hits = f.introspection_hits.load(Ordering::SeqCst) as f64;
    let allowed = 50.0 + 20.0 * secs + 1.0;
    assert!(
        hits <= allowed,
        "{hits} introspections in {secs:.2}s (burst 50, 20/s)"
    );
    assert_eq!(auth.introspections() as f64, hits);
    // Those not asked about are "try again later" (503), never accepted.
    assert!(answers.iter().all(|a| !matches!(a, Checked::Valid(_))));
    assert!(
        answers
            .iter()
            .filter(|a| matches!(a, Checked::Unavailable(_)))
            .count()
            >= 300 - allowed as usize,
        "{answers:?}"
    );
}
