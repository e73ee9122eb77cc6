use std::path::PathBuf;

use chrono::{DateTime, Utc};
use nlds_core::ErrorCode;

use super::grants::loopback_http;
use super::*;
use crate::client::ClientOptions;
use crate::error::Error;

#[test]
fn plain_http_revocation_only_on_this_machine() {
    assert!(loopback_http("http://127.0.0.1:9400/token/revocation"));
    assert!(loopback_http("http://localhost/revoke"));
    assert!(loopback_http("http://[::1]:8080/revoke"));
    assert!(!loopback_http("http://idp.example.org/revoke"));
    assert!(!loopback_http("http://10.0.0.1/revoke"));
    assert!(
        !loopback_http("https://127.0.0.1/revoke"),
        "https goes through oauth2"
    );
    assert!(!loopback_http("not a url"));
}

#[test]
fn refresh_margin_rule() {
    let now: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
    let m = Duration::from_secs(60);
    let at = |s: i64| Some(now + chrono::Duration::seconds(s));
    assert!(!needs_refresh(at(61), now, m), "61 s left: still good");
    assert!(needs_refresh(at(60), now, m), "exactly the margin: renew");
    assert!(needs_refresh(at(10), now, m));
    assert!(needs_refresh(at(-5), now, m), "already expired");
    assert!(!needs_refresh(None, now, m), "unknown expiry: no refresh");
    assert!(
        needs_refresh(at(3600), now, Duration::from_secs(7200)),
        "a big margin renews early"
    );
    assert!(
        needs_refresh(at(3600), now, Duration::MAX),
        "an absurd margin does not overflow"
    );
    assert!(!needs_refresh(at(1), now, Duration::ZERO));
}

fn login(expires_in: i64, refresh: bool, grant: Grant) -> StoredLogin {
    let now = Utc::now();
    StoredLogin {
        issuer: "https://idp.example".into(),
        client_id: "nlds-cli".into(),
        grant,
        access_token: "access-SECRET-1".into(),
        refresh_token: refresh.then(|| "refresh-SECRET-2".into()),
        token_type: "Bearer".into(),
        expires_at: Some(now + chrono::Duration::seconds(expires_in)),
        scope: Some("openid offline_access".into()),
        audience: None,
        obtained_at: now,
    }
}

#[cfg(unix)]
#[test]
fn token_file_is_private_atomic_and_never_debug_printed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/oauth-token.json");
    let store = TokenStore::new(&path);
    assert!(store.load().unwrap().is_none());
    let l = login(300, true, Grant::DeviceCode);
    store.save(&l).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A file made readable by someone is replaced by a private one on the next save.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    store.save(&l).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let back = store.load().unwrap().unwrap();
    assert_eq!(back.access_token, "access-SECRET-1");
    assert_eq!(back.refresh_token.as_deref(), Some("refresh-SECRET-2"));
    assert_eq!(back.expires_at, l.expires_at);
    let dbg = format!("{back:?}");
    assert!(!dbg.contains("SECRET"), "{dbg}");
    assert!(store.remove().unwrap());
    assert!(!store.remove().unwrap());

    std::fs::write(&path, "{not json").unwrap();
    let e = store.load().unwrap_err().to_string();
    assert!(e.contains("is damaged") && e.contains("nlds login"), "{e}");
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn settings_from_file_env_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "url = \"https://nlds.example\"\n[auth]\nissuer = \"https://idp.example/\"\nclient_id = \"nlds-cli\"\nscopes = \"openid nlds\"\nrefresh_margin = \"5m\"\nclient_secret_file = \"secret\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("secret"), "s3cr3t\n").unwrap();
    let c = cfg.to_str().unwrap();
    let s = settings(
        &AuthFlags::default(),
        &env_of(&[("NLDS_CONFIG", c)]),
        ClientOptions::default(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.issuer, "https://idp.example");
    assert_eq!(s.client_id, "nlds-cli");
    assert_eq!(s.scopes, vec!["openid", "nlds"]);
    assert_eq!(s.refresh_margin, Duration::from_secs(300));
    assert_eq!(s.token_file, dir.path().join(DEFAULT_TOKEN_FILE));
    assert_eq!(s.secret().unwrap().expose(), "s3cr3t");
    assert_eq!(
        s.client_secret.as_ref().unwrap().1,
        SecretFrom::File(dir.path().join("secret"))
    );
    assert!(!format!("{s:?}").contains("s3cr3t"));
    assert!(configured(&env_of(&[("NLDS_CONFIG", c)])).unwrap());

    let env = env_of(&[
        ("NLDS_CONFIG", c),
        ("NLDS_AUTH_CLIENT_ID", "env-client"),
        ("NLDS_AUTH_SCOPES", "a,b"),
        ("NLDS_AUTH_CLIENT_SECRET", "from-env"),
        ("NLDS_AUTH_TOKEN_FILE", "/tmp/x.json"),
    ]);
    let s = settings(&AuthFlags::default(), &env, ClientOptions::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.client_id.as_str(), s.scopes.clone()),
        ("env-client", vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(s.secret().unwrap().expose(), "from-env");
    assert_eq!(s.token_file, PathBuf::from("/tmp/x.json"));
    let flags = AuthFlags {
        client_id: Some("flag-client".into()),
        scopes: vec!["x".into()],
        ..AuthFlags::default()
    };
    let s = settings(&flags, &env, ClientOptions::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.client_id.as_str(), s.scopes.clone()),
        ("flag-client", vec!["x".to_string()])
    );

    // Nothing configured: not OAuth.
    let empty = tempfile::tempdir().unwrap();
    let env = env_of(&[("HOME", empty.path().to_str().unwrap())]);
    assert!(
        settings(&AuthFlags::default(), &env, ClientOptions::default())
            .unwrap()
            .is_none()
    );
    assert!(!configured(&env).unwrap());
}

#[test]
fn settings_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let c = cfg.to_str().unwrap().to_owned();
    let err = |text: &str, extra: &[(&str, &str)]| {
        std::fs::write(&cfg, text).unwrap();
        let mut pairs = vec![("NLDS_CONFIG", c.as_str())];
        pairs.extend_from_slice(extra);
        settings(
            &AuthFlags::default(),
            &env_of(&pairs),
            ClientOptions::default(),
        )
        .and_then(|s| s.unwrap().secret().map(|_| ()))
        .unwrap_err()
        .to_string()
    };
    let e = err("[auth]\nissuer = \"https://idp\"\n", &[]);
    assert!(
        e.contains("no client id") && e.contains("NLDS_AUTH_CLIENT_ID"),
        "{e}"
    );
    let e = err("[auth]\nissuer = \"idp.example\"\nclient_id = \"c\"\n", &[]);
    assert!(e.contains("the issuer \"idp.example\" is not a URL"), "{e}");
    let e = err(
        "[auth]\nissuer = \"https://idp\"\nclient_id = \"c\"\ncolour = 1\n",
        &[],
    );
    assert!(e.contains("[auth]") && e.contains("colour"), "{e}");
    let e = err(
        "[auth]\nissuer = \"https://idp\"\nclient_id = \"c\"\nrefresh_margin = \"soon\"\n",
        &[],
    );
    assert!(e.contains("refresh_margin"), "{e}");
    let e = err(
        "[auth]\nissuer = \"https://idp\"\nclient_id = \"svc\"\n",
        &[],
    );
    assert!(
        e.contains("client credentials need the secret of client \"svc\""),
        "{e}"
    );
    let e = err(
        "[auth]\nissuer = \"https://idp\"\nclient_id = \"svc\"\n",
        &[("NLDS_AUTH_CLIENT_SECRET_FILE", "/nonexistent/s")],
    );
    assert!(
        e.contains(
            "cannot read the client secret file /nonexistent/s ($NLDS_AUTH_CLIENT_SECRET_FILE)"
        ),
        "{e}"
    );
}

#[test]
fn login_again_message_and_renewability() {
    let s = AuthSettings {
        issuer: "https://idp.example".into(),
        client_id: "nlds-cli".into(),
        scopes: vec![],
        audience: None,
        token_file: PathBuf::from("/home/a/.config/nlds/oauth-token.json"),
        client_secret: None,
        client_secret_problem: None,
        refresh_margin: DEFAULT_REFRESH_MARGIN,
        http: ClientOptions::default(),
        config_file: None,
    };
    let e = login_again(&s, "invalid_grant: grant request is invalid", true);
    // `nlds` exits with its code for a failed login (AUTH): nlds-cli's exit tests check that.
    assert!(matches!(
        e,
        Error::Provider {
            code: ErrorCode::Unauthorized,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "your login at https://idp.example can no longer be renewed: invalid_grant: grant \
         request is invalid (the stale token file /home/a/.config/nlds/oauth-token.json was \
         removed); run `nlds login` again"
    );
    assert_eq!(
        s.scopes_for(Grant::DeviceCode),
        vec!["openid", "offline_access"]
    );
    assert!(s.scopes_for(Grant::ClientCredentials).is_empty());
    assert!(login(10, true, Grant::DeviceCode).renewable());
    assert!(!login(10, false, Grant::DeviceCode).renewable());
    assert!(login(10, false, Grant::ClientCredentials).renewable());
    let l = login(10, true, Grant::DeviceCode);
    assert!(l.matches(&s));
    assert!(l.needs_refresh(Utc::now(), DEFAULT_REFRESH_MARGIN));
    assert!(!login(600, true, Grant::DeviceCode).needs_refresh(Utc::now(), DEFAULT_REFRESH_MARGIN));
}

#[test]
fn client_secret_and_paths_follow_the_layers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let c = cfg.to_str().unwrap().to_owned();
    std::fs::write(dir.path().join("file-secret"), "from-file\n").unwrap();
    std::fs::write(dir.path().join("env-secret"), " from-env-file ").unwrap();
    let home = dir.path().join("home");
    let resolve = |text: &str, extra: &[(&str, &str)], flags: &AuthFlags| {
        std::fs::write(&cfg, text).unwrap();
        let mut pairs = vec![
            ("NLDS_CONFIG", c.as_str()),
            ("HOME", home.to_str().unwrap()),
        ];
        pairs.extend_from_slice(extra);
        settings(flags, &env_of(&pairs), ClientOptions::default())
            .unwrap()
            .unwrap()
    };
    let none = AuthFlags::default();
    let auth = "[auth]\nissuer = \"https://idp\"\nclient_id = \"svc\"\n";
    let from = |s: &AuthSettings| {
        let (secret, from) = s.client_secret.as_ref().unwrap();
        (secret.expose().to_owned(), from.clone())
    };

    // In the config file a secret file wins over the secret itself, relative to the file.
    let both = format!("{auth}client_secret = \"inline\"\nclient_secret_file = \"file-secret\"\n");
    let s = resolve(&both, &[], &none);
    assert_eq!(
        from(&s),
        (
            "from-file".into(),
            SecretFrom::File(dir.path().join("file-secret"))
        )
    );
    let s = resolve(&format!("{auth}client_secret = \" inline \"\n"), &[], &none);
    assert_eq!(from(&s), ("inline".into(), SecretFrom::ConfigFile));
    // The environment wins over the file; there the secret itself wins over a secret file, and
    // a path is taken as it is.
    let env_file = dir.path().join("env-secret");
    let env_file = env_file.to_str().unwrap();
    let s = resolve(
        &both,
        &[
            ("NLDS_AUTH_CLIENT_SECRET", "env"),
            ("NLDS_AUTH_CLIENT_SECRET_FILE", env_file),
        ],
        &none,
    );
    assert_eq!(from(&s), ("env".into(), SecretFrom::Env));
    let s = resolve(
        &both,
        &[
            ("NLDS_AUTH_CLIENT_SECRET", "  "),
            ("NLDS_AUTH_CLIENT_SECRET_FILE", env_file),
        ],
        &none,
    );
    assert_eq!(
        from(&s),
        ("from-env-file".into(), SecretFrom::File(env_file.into()))
    );
    // The flags win over both.
    let flags = AuthFlags {
        client_secret_file: Some(dir.path().join("file-secret")),
        ..AuthFlags::default()
    };
    let s = resolve(&both, &[("NLDS_AUTH_CLIENT_SECRET", "env")], &flags);
    assert_eq!(from(&s).0, "from-file");
    let flags = AuthFlags {
        client_secret: Some(crate::config::Secret::new("stdin")),
        ..flags
    };
    let s = resolve(&both, &[("NLDS_AUTH_CLIENT_SECRET", "env")], &flags);
    assert_eq!(from(&s), ("stdin".into(), SecretFrom::Stdin));
    assert!(!format!("{s:?}").contains("stdin\""), "{s:?}");

    // A missing secret file is reported when the secret is needed, naming where it was set.
    let s = resolve(
        &format!("{auth}client_secret_file = \"gone\"\n"),
        &[],
        &none,
    );
    let e = s.secret().unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "cannot read the client secret file {} (client_secret_file in [auth])",
            dir.path().join("gone").display()
        )),
        "{e}"
    );

    // token_file: relative to the config file, `~/` is $HOME; from the environment as it is.
    let s = resolve(&format!("{auth}token_file = \"t.json\"\n"), &[], &none);
    assert_eq!(s.token_file, dir.path().join("t.json"));
    let s = resolve(&format!("{auth}token_file = \"~/t.json\"\n"), &[], &none);
    assert_eq!(s.token_file, home.join("t.json"));
    let s = resolve(auth, &[("NLDS_AUTH_TOKEN_FILE", "rel.json")], &none);
    assert_eq!(s.token_file, PathBuf::from("rel.json"));
    // Empty values count as unset.
    let s = resolve(
        &format!("{auth}token_file = \" \"\nrefresh_margin = \"\"\n"),
        &[
            ("NLDS_AUTH_CLIENT_ID", ""),
            ("NLDS_AUTH_REFRESH_MARGIN", " "),
        ],
        &none,
    );
    assert_eq!(s.token_file, dir.path().join(DEFAULT_TOKEN_FILE));
    assert_eq!(s.client_id, "svc");
    assert_eq!(s.refresh_margin, DEFAULT_REFRESH_MARGIN);
    let s = resolve(&format!("{auth}refresh_margin = 30\n"), &[], &none);
    assert_eq!(s.refresh_margin, Duration::from_secs(30));

    // A bad refresh margin names where it was set.
    std::fs::write(&cfg, format!("{auth}refresh_margin = \"soon\"\n")).unwrap();
    let env = env_of(&[
        ("NLDS_CONFIG", c.as_str()),
        ("NLDS_AUTH_REFRESH_MARGIN", "later"),
    ]);
    let e = settings(&none, &env, ClientOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("NLDS_AUTH_REFRESH_MARGIN: \"later\""), "{e}");
    let env = env_of(&[("NLDS_CONFIG", c.as_str())]);
    let e = settings(&none, &env, ClientOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("config file {c}: [auth] refresh_margin: \"soon\"")),
        "{e}"
    );
}
