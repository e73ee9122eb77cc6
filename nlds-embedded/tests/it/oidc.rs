//! The OAuth2 resource server against a real OpenID provider: npm `oidc-provider`, started by
//! scripts/oidc.sh (scripts/services.sh) and found through NLDS_TEST_OIDC_ISSUER. Tokens come
//! from the provider's real grants (device code, client credentials), from its test-only mint
//! route, or — for tokens no provider would issue (alg none, a foreign key, a wrong issuer) —
//! are crafted here or signed by its test-only signing route. Every refusal is checked twice:
//! the HTTP status, and the reason the authenticator gives.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nlds_core::AccessRole;
use nlds_embedded::{Embedded, EmbeddedOptions};
use nlds_server::auth::oidc::{AuthError, OidcAuthenticator, OidcConfig};
use nlds_server::config::{AuthKind, ServerConfig};
use nlds_server::{AppState, ServerSettings, router};
use serde_json::{Value, json};

use crate::helpers::{service, temp};

fn issuer() -> Option<String> {
    service("NLDS_TEST_OIDC_ISSUER")
}

fn secret_file(client: &str) -> PathBuf {
    let dir = std::env::var("NLDS_TEST_OIDC_SECRETS_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.cache/nlds-oidc/secrets",
            std::env::var("HOME").unwrap()
        )
    });
    PathBuf::from(dir).join(format!("{client}.secret"))
}

fn secret(client: &str) -> String {
    let path = secret_file(client);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| {
            panic!(
                "cannot read {} (scripts/oidc.sh writes it): {e}",
                path.display()
            )
        })
        .trim()
        .to_owned()
}

/// Our server's configuration for the test provider (docs/AUTH.md).
fn config(iss: &str) -> OidcConfig {
    let mut c = OidcConfig {
        issuer: iss.to_owned(),
        audience: vec!["nlds".into()],
        client_id: Some("nlds-server".into()),
        client_secret_file: Some(secret_file("nlds-server")),
        introspection_cache_secs: 1,
        jwks_min_refetch_secs: 0,
        ..Default::default()
    };
    c.claims.admin_groups = vec!["nlds-admin".into()];
    c
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post_json(url: String, body: Value) -> Value {
    let r = http().post(&url).json(&body).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

async fn post_form(url: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
    let mut req = http()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap());
    if let Some((u, p)) = basic {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A real access token from the provider's test mint route.
async fn mint(iss: &str, body: Value) -> String {
    post_json(format!("{iss}/test/token"), body).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Any payload, signed by the provider's key (or a foreign one).
async fn sign(iss: &str, body: Value) -> String {
    post_json(format!("{iss}/test/sign"), body).await["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims the provider puts in alice's tokens.
fn alice_claims(iss: &str) -> Value {
    json!({
        "iss": iss, "aud": "nlds", "sub": "alice", "client_id": "nlds-cli", "scope": "nlds",
        "iat": now(), "exp": now() + 300, "jti": uuid::Uuid::new_v4().to_string(),
        "preferred_username": "alice", "groups": ["climate", "ocean"],
        "nlds_roles": {"climate": "manager"}
    })
}

/// The API router with this authenticator (whoami needs no workers), on an ephemeral port.
async fn serve(auth: Arc<OidcAuthenticator>) -> String {
    let state = AppState {
        bus: Arc::new(nlds_bus::memory::MemoryBus::new()),
        auth,
        cfg: Arc::new(ServerConfig::default()),
        live: Default::default(),
        webhook_key: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    url
}

async fn whoami(url: &str, token: &str) -> (u16, Value) {
    let r = http()
        .get(format!("{url}/api/v2/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Both layers refuse the token: the API with 401, the authenticator with `reason`.
async fn refused(url: &str, auth: &OidcAuthenticator, token: &str, reason: &str) {
    let (status, body) = whoami(url, token).await;
    assert_eq!(status, 401, "{reason}: {body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let err = auth.verify(token).await.unwrap_err();
    assert_eq!(err.code(), reason, "{err}");
}

/// The device authorization grant as `nlds login` runs it, approved through the provider's
/// test route as `login`.
async fn device_login(iss: &str, login: &str) -> Value {
    let (s, d) = post_form(
        &format!("{iss}/device/auth"),
        &[
            ("client_id", "nlds-cli"),
            ("scope", "openid offline_access nlds"),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{d}");
    let device_code = d["device_code"].as_str().unwrap().to_owned();
    let poll = || async {
        post_form(
            &format!("{iss}/token"),
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &device_code),
                ("client_id", "nlds-cli"),
            ],
            None,
        )
        .await
    };
    let (s, pending) = poll().await;
    assert_eq!(
        (s, pending["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let approved = post_json(
        format!("{iss}/test/device/approve"),
        json!({"user_code": d["user_code"], "login": login}),
    )
    .await;
    assert_eq!(approved["approved"], true);
    let (s, tokens) = poll().await;
    assert_eq!(s, 200, "{tokens}");
    assert!(
        tokens["refresh_token"].is_string(),
        "offline_access gives a refresh token"
    );
    tokens
}

#[tokio::test]
async fn oidc_valid_jwt_maps_claims_to_identity() {
    let Some(iss) = issuer() else { return };
    let auth = Arc::new(OidcAuthenticator::new(config(&iss)).unwrap());
    let url = serve(auth.clone()).await;

    // alice logs in with the device flow: a JWT for audience nlds.
    let tokens = device_login(&iss, "alice").await;
    let at = tokens["access_token"].as_str().unwrap();
    assert_eq!(at.split('.').count(), 3, "a JWT");
    let (s, who) = whoami(&url, at).await;
    assert_eq!(s, 200, "{who}");
    assert_eq!(who["user"], "alice");
    assert_eq!(who["groups"], json!(["climate", "ocean"]));
    let alice = auth.verify(at).await.unwrap();
    assert_eq!(alice.role_in("climate"), AccessRole::Manager);
    assert_eq!(alice.role_in("ocean"), AccessRole::User);
    assert!(!alice.admin);

    // The refreshed token is accepted too (same identity).
    let (s, refreshed) = post_form(
        &format!("{iss}/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", "nlds-cli"),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{refreshed}");
    let (s, who) = whoami(&url, refreshed["access_token"].as_str().unwrap()).await;
    assert_eq!((s, &who["user"]), (200, &json!("alice")));
    // A refresh token is no access token (the first one was rotated away by the refresh).
    refused(
        &url,
        &auth,
        tokens["refresh_token"].as_str().unwrap(),
        "inactive",
    )
    .await;
    let rt = refreshed["refresh_token"].as_str().unwrap();
    refused(&url, &auth, rt, "wrong_audience").await;

    // A service account: client credentials map to svc-ingest.
    let svc = secret("nlds-service");
    let (s, cc) = post_form(
        &format!("{iss}/token"),
        &[("grant_type", "client_credentials"), ("scope", "nlds")],
        Some(("nlds-service", &svc)),
    )
    .await;
    assert_eq!(s, 200, "{cc}");
    let (s, who) = whoami(&url, cc["access_token"].as_str().unwrap()).await;
    assert_eq!(s, 200, "{who}");
    assert_eq!(
        (&who["user"], &who["groups"]),
        (&json!("svc-ingest"), &json!(["climate"]))
    );

    // bob is a deputy in ocean; admin is an operator through admin_groups.
    let bob = auth
        .verify(&mint(&iss, json!({"account": "bob"})).await)
        .await
        .unwrap();
    assert_eq!(
        (bob.user.as_str(), bob.role_in("ocean")),
        ("bob", AccessRole::Deputy)
    );
    let admin = auth
        .verify(&mint(&iss, json!({"account": "admin"})).await)
        .await
        .unwrap();
    assert!(admin.admin);
    assert_eq!(admin.role_in("climate"), AccessRole::Admin);
    // The provider's other key (ES256) is found by its kid as well.
    let es = sign(&iss, json!({"claims": alice_claims(&iss), "alg": "ES256"})).await;
    assert_eq!(auth.verify(&es).await.unwrap().user, "alice");
}

#[tokio::test]
async fn oidc_bad_jwts_are_refused() {
    let Some(iss) = issuer() else { return };
    let auth = Arc::new(OidcAuthenticator::new(config(&iss)).unwrap());
    let url = serve(auth.clone()).await;
    let good = sign(&iss, json!({"claims": alice_claims(&iss)})).await;
    assert_eq!(
        whoami(&url, &good).await.0,
        200,
        "the control token is fine"
    );

    // Expired (beyond the leeway), signed by the provider's own key.
    let mut c = alice_claims(&iss);
    c["exp"] = json!(now() - 600);
    refused(
        &url,
        &auth,
        &sign(&iss, json!({"claims": c})).await,
        "expired",
    )
    .await;
    // A real token issued for another resource server.
    let other = mint(&iss, json!({"account": "alice", "resource": "urn:other"})).await;
    refused(&url, &auth, &other, "wrong_audience").await;
    // Another issuer, though the signature is the provider's.
    let mut c = alice_claims(&iss);
    c["iss"] = json!(format!("{iss}/evil"));
    refused(
        &url,
        &auth,
        &sign(&iss, json!({"claims": c})).await,
        "wrong_issuer",
    )
    .await;
    // Not valid yet.
    let mut c = alice_claims(&iss);
    c["nbf"] = json!(now() + 3600);
    refused(
        &url,
        &auth,
        &sign(&iss, json!({"claims": c})).await,
        "not_yet_valid",
    )
    .await;

    // Bad signature: a real token whose payload now says bob, and one with a changed byte in
    // the signature.
    let real = mint(&iss, json!({"account": "alice"})).await;
    let parts: Vec<&str> = real.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["preferred_username"] = json!("bob");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    refused(&url, &auth, &forged, "bad_signature").await;
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 0x01;
    let tampered = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    refused(&url, &auth, &tampered, "bad_signature").await;
    assert_eq!(
        whoami(&url, &real).await.0,
        200,
        "the untouched token still works"
    );

    // alg none: the real payload, no signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        parts[1]
    );
    refused(&url, &auth, &none, "algorithm_not_allowed").await;
    // HS256 with the provider's public RSA key as the shared secret (key confusion).
    let jwks: Value = http()
        .get(format!("{iss}/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = jwks["keys"][0]["n"].as_str().unwrap();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &alice_claims(&iss),
        &jsonwebtoken::EncodingKey::from_secret(n.as_bytes()),
    )
    .unwrap();
    refused(&url, &auth, &hs, "algorithm_not_allowed").await;

    // Unknown key ids: a key the provider never published, and a kid that is not in the JWKS.
    // Each makes us refetch the JWKS once (rotation), then refuse.
    let before = auth.jwks_fetches();
    let foreign = sign(&iss, json!({"claims": alice_claims(&iss), "foreign": true})).await;
    refused(&url, &auth, &foreign, "unknown_key").await;
    let unknown_kid = sign(
        &iss,
        json!({"claims": alice_claims(&iss), "kid": "retired-2019"}),
    )
    .await;
    refused(&url, &auth, &unknown_kid, "unknown_key").await;
    assert!(
        auth.jwks_fetches() > before,
        "an unknown kid refetches the JWKS"
    );
    // The foreign key's signature would not verify even under a known kid.
    let kid = jwks["keys"][0]["kid"].as_str().unwrap();
    let foreign_known_kid = sign(
        &iss,
        json!({"claims": alice_claims(&iss), "foreign": true, "kid": kid}),
    )
    .await;
    refused(&url, &auth, &foreign_known_kid, "bad_signature").await;
}

#[tokio::test]
async fn oidc_unknown_kid_refetch_is_rate_limited() {
    let Some(iss) = issuer() else { return };
    let mut c = config(&iss);
    c.jwks_min_refetch_secs = 3600;
    let auth = OidcAuthenticator::new(c).unwrap();
    let good = mint(&iss, json!({"account": "carol"})).await;
    assert_eq!(auth.verify(&good).await.unwrap().user, "carol");
    for i in 0..5 {
        let t = sign(
            &iss,
            json!({"claims": alice_claims(&iss), "kid": format!("k{i}")}),
        )
        .await;
        assert_eq!(auth.verify(&t).await.unwrap_err().code(), "unknown_key");
    }
    assert_eq!(auth.jwks_fetches(), 1);
}

#[tokio::test]
async fn oidc_opaque_tokens_are_introspected_and_revocation_takes_effect() {
    let Some(iss) = issuer() else { return };
    let auth = Arc::new(OidcAuthenticator::new(config(&iss)).unwrap());
    let url = serve(auth.clone()).await;

    let opaque = mint(
        &iss,
        json!({"account": "bob", "resource": "urn:nlds:opaque"}),
    )
    .await;
    assert!(!opaque.contains('.'), "an opaque token");
    let (s, who) = whoami(&url, &opaque).await;
    assert_eq!(s, 200, "{who}");
    assert_eq!(
        (&who["user"], &who["groups"]),
        (&json!("bob"), &json!(["ocean"]))
    );
    assert_eq!(
        auth.verify(&opaque).await.unwrap().role_in("ocean"),
        AccessRole::Deputy
    );
    assert!(auth.introspections() >= 1);

    // Opaque tokens from a real grant: client credentials for the opaque resource.
    let svc = secret("nlds-service");
    let (s, cc) = post_form(
        &format!("{iss}/token"),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "nlds"),
            ("resource", "urn:nlds:opaque"),
        ],
        Some(("nlds-service", &svc)),
    )
    .await;
    assert_eq!(s, 200, "{cc}");
    let cc = cc["access_token"].as_str().unwrap();
    assert!(!cc.contains('.'));
    assert_eq!(auth.verify(cc).await.unwrap().user, "svc-ingest");

    // Revoke bob's token at the provider: refused once the cache entry (1 s here) is gone.
    let (s, body) = post_form(
        &format!("{iss}/token/revocation"),
        &[("token", &opaque), ("client_id", "nlds-cli")],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, _) = whoami(&url, &opaque).await;
        if s == 401 {
            break;
        }
        assert_eq!(s, 200);
        assert!(
            Instant::now() < deadline,
            "the revoked token is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(auth.verify(&opaque).await.unwrap_err(), AuthError::Inactive);
    // A made-up opaque token is inactive as well.
    refused(&url, &auth, "made-up-opaque-token-0123456789", "inactive").await;

    // With the wrong client secret the provider refuses to answer: not our user's fault, but
    // no access either.
    let mut c = config(&iss);
    c.client_secret_file = None;
    c.client_secret = Some(nlds_server::auth::oidc::SecretString::from(
        "not-the-secret",
    ));
    let wrong = OidcAuthenticator::new(c).unwrap();
    let other = mint(
        &iss,
        json!({"account": "carol", "resource": "urn:nlds:opaque"}),
    )
    .await;
    let err = wrong.verify(&other).await.unwrap_err();
    assert_eq!(err.code(), "provider_unavailable", "{err}");
}

/// `/api/1.0.0` takes `user` and `group` as parameters: a token of alice cannot act as bob or in
/// a group she is not in; an operator may act for anyone. Embedded mode with the OIDC
/// authenticator from the settings (`[auth] kind = "oidc"`).
#[tokio::test]
async fn oidc_token_of_user_a_cannot_act_as_user_b() {
    let Some(iss) = issuer() else { return };
    let dir = temp();
    let mut settings = ServerSettings::default();
    settings.auth.kind = AuthKind::Oidc;
    settings.auth.oidc = config(&iss);
    let e = Embedded::start(EmbeddedOptions {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        external_object_store: None,
        settings,
    })
    .await
    .unwrap();
    // The token the embedded mode generated for itself is not valid any more: OIDC decides.
    assert_eq!(whoami(&e.url, &e.token).await.0, 401);

    let alice = mint(&iss, json!({"account": "alice"})).await;
    let admin = mint(&iss, json!({"account": "admin"})).await;
    let list = |token: String, user: &'static str, group: &'static str| {
        let url = e.url.clone();
        async move {
            let r = http()
                .get(format!("{url}/api/1.0.0/catalog/list/"))
                .bearer_auth(token)
                .query(&[("user", user), ("group", group)])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Her own name and group: the catalogue answers (202, no holdings yet).
    let (s, v) = list(alice.clone(), "alice", "climate").await;
    assert_eq!(s, 202, "{v}");
    // bob's name with alice's token: refused as the upstream server does.
    let (s, v) = list(alice.clone(), "bob", "ocean").await;
    assert_eq!(s, 404, "{v}");
    assert!(v.to_string().contains("User bob could not be found"), "{v}");
    // Her name, a group she is not in.
    let (s, v) = list(alice.clone(), "alice", "ice").await;
    assert_eq!(s, 404, "{v}");
    assert!(
        v.to_string().contains("not a member of the group ice"),
        "{v}"
    );
    // The operator may act for alice.
    let (s, v) = list(admin, "alice", "climate").await;
    assert_eq!(s, 202, "{v}");
    // No token, or a foreign one: 401 as upstream.
    let foreign = sign(&iss, json!({"claims": alice_claims(&iss), "foreign": true})).await;
    let (s, _) = list(foreign, "alice", "climate").await;
    assert_eq!(s, 401);
    e.stop().await.unwrap();
}
