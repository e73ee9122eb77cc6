use std::collections::HashMap;

use super::*;
use crate::client::ClientOptions;

#[test]
fn durations() {
    assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("-1").is_err());
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[test]
fn file_then_env_then_flags() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join(".config/nlds/config.toml");
    write_file(
        &cfg,
        "url = \"https://file.example\"\ntoken = \"file-token\"\ngroup = \"fgroup\"\n",
    );
    let h = home.path().to_str().unwrap();

    let s = resolve(&Overrides::default(), &env_of(&[("HOME", h)])).unwrap();
    assert_eq!(s.url, "https://file.example");
    assert_eq!(s.token.expose(), "file-token");
    assert_eq!(s.group.as_deref(), Some("fgroup"));
    assert_eq!(s.config_file.as_deref(), Some(cfg.as_path()));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert!(!s.insecure);
    assert_eq!(s.connect_timeout, ClientOptions::default().connect_timeout);

    let env = env_of(&[
        ("HOME", h),
        ("NLDS_URL", "https://env.example"),
        ("NLDS_TOKEN", "env-token"),
        ("NLDS_GROUP", ""),
    ]);
    let s = resolve(&Overrides::default(), &env).unwrap();
    assert_eq!(s.url, "https://env.example");
    assert_eq!(s.token.expose(), "env-token");
    assert_eq!(
        s.group.as_deref(),
        Some("fgroup"),
        "empty env values are unset"
    );

    let flags = Overrides {
        url: Some("https://flag.example".into()),
        token: Some(Secret::new("flag-token")),
        group: Some("flaggroup".into()),
        ..Overrides::default()
    };
    let s = resolve(&flags, &env).unwrap();
    assert_eq!(
        (s.url.as_str(), s.token.expose(), s.group.as_deref()),
        ("https://flag.example", "flag-token", Some("flaggroup"))
    );
    assert!(!format!("{s:?}").contains("flag-token"));
}

#[test]
fn sources_are_reported() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("xdg/nlds/config.toml");
    write_file(
        &cfg,
        "url = \"https://file.example\"\ntoken = \"t\"\ninsecure = true\nconnect_timeout = 3\nrequest_timeout = \"1m\"\ncolour = \"red\"\n",
    );
    let xdg = home.path().join("xdg");
    let env = env_of(&[
        ("HOME", "/nowhere"),
        ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
        ("NLDS_GROUP", "envgroup"),
        ("NLDS_REQUEST_TIMEOUT", "90s"),
    ]);
    let flags = Overrides {
        user: Some("bob".into()),
        connect_timeout: Some(Duration::from_secs(1)),
        ..Overrides::default()
    };
    let e = effective(&flags, &env).unwrap();
    assert_eq!(e.config_file.as_deref(), Some(cfg.as_path()));
    assert!(e.config_file_found && e.file_has_url && e.file_has_token);
    let file = Source::File(cfg.clone());
    assert_eq!(e.url.as_ref().unwrap().source, file);
    assert_eq!(e.token.as_ref().unwrap().source, file);
    assert_eq!(e.group.as_ref().unwrap().source, Source::Env("NLDS_GROUP"));
    assert_eq!(e.user.as_ref().unwrap().source, Source::Flag("--user"));
    assert_eq!(
        e.insecure,
        Sourced {
            value: true,
            source: file.clone()
        }
    );
    assert_eq!(
        e.connect_timeout,
        Sourced {
            value: Duration::from_secs(1),
            source: Source::Flag("--connect-timeout")
        }
    );
    assert_eq!(
        e.request_timeout,
        Sourced {
            value: Duration::from_secs(90),
            source: Source::Env("NLDS_REQUEST_TIMEOUT")
        }
    );
    assert_eq!(e.warnings.len(), 1, "{:?}", e.warnings);
    assert!(e.warnings[0].contains("unknown key \"colour\""));
    let s = e.settings().unwrap();
    assert!(s.insecure);
    let o = s.client_options();
    assert!(o.insecure);
    assert_eq!(o.request_timeout, Duration::from_secs(90));

    let e = effective(
        &Overrides::default(),
        &env_of(&[("NLDS_INSECURE", "maybe"), ("HOME", "/nowhere")]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("NLDS_INSECURE"), "{e}");
    let e = effective(
        &Overrides::default(),
        &env_of(&[("NLDS_CONNECT_TIMEOUT", "0"), ("HOME", "/nowhere")]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("must be more than 0"), "{e}");
}

#[test]
fn token_file_and_nlds_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("elsewhere.toml");
    write_file(&cfg, "url = \"https://x\"\ntoken_file = \"tok\"\n");
    write_file(&dir.path().join("tok"), "  secret-from-file\n");
    let env = env_of(&[("NLDS_CONFIG", cfg.to_str().unwrap())]);
    let e = effective(&Overrides::default(), &env).unwrap();
    assert_eq!(
        e.token.as_ref().unwrap().source,
        Source::TokenFile(dir.path().join("tok"))
    );
    let s = e.settings().unwrap();
    assert_eq!(s.token.expose(), "secret-from-file");
    assert_eq!(s.group, None);

    write_file(&cfg, "url = \"https://x\"\ntoken_file = \"missing\"\n");
    let e = resolve(&Overrides::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read the token_file"), "{e}");

    write_file(
        &cfg,
        "url = \"https://x\"\ntoken = \"a\"\ntoken_file = \"tok\"\n",
    );
    let e = resolve(&Overrides::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not both"), "{e}");

    write_file(&cfg, "url = [\n");
    let e = resolve(&Overrides::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("elsewhere.toml"), "{e}");

    write_file(&cfg, "url = \"https://x\"\ninsecure = \"yes\"\n");
    let e = resolve(&Overrides::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("elsewhere.toml"), "{e}");

    let gone = dir.path().join("gone.toml");
    let env = env_of(&[("NLDS_CONFIG", gone.to_str().unwrap())]);
    let e = resolve(&Overrides::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read the config file"), "{e}");
}

#[cfg(unix)]
#[test]
fn warns_about_a_readable_token() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    write_file(&cfg, "url = \"https://x\"\ntoken = \"t\"\n");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let env = env_of(&[("NLDS_CONFIG", cfg.to_str().unwrap())]);
    let s = resolve(&Overrides::default(), &env).unwrap();
    assert_eq!(s.warnings.len(), 1);
    assert!(s.warnings[0].contains("chmod 600"));
}

#[test]
fn nothing_configured_says_how() {
    let home = tempfile::tempdir().unwrap();
    let env = env_of(&[("HOME", home.path().to_str().unwrap())]);
    let e = resolve(&Overrides::default(), &env).unwrap_err();
    assert!(matches!(e, Error::NotConfigured(_)));
    let msg = e.to_string();
    let path = home.path().join(".config/nlds/config.toml");
    assert_eq!(
        msg,
        format!(
            "nlds is not configured yet: run `nlds init --url URL` or set NLDS_URL and NLDS_TOKEN; config file would be at {}",
            path.display()
        )
    );
    let env = env_of(&[("NLDS_URL", "https://x")]);
    let msg = resolve(&Overrides::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("nlds has no token: run `nlds renew`"),
        "{msg}"
    );
    let env = env_of(&[("NLDS_TOKEN", "t")]);
    let msg = resolve(&Overrides::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nlds init --url URL"), "{msg}");
}

#[cfg(unix)]
#[test]
fn writing_keeps_what_is_not_given_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("a/b/config.toml");
    let w = write(
        &cfg,
        &Update {
            url: Some("https://one".into()),
            token: Some(Secret::new("tok-1")),
            group: Some("g1".into()),
            ..Update::default()
        },
        None,
    )
    .unwrap();
    assert!(w.created);
    assert_eq!(w.keys, vec!["url", "token", "group"]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cfg), 0o600);
    assert_eq!(mode(&dir.path().join("a/b")), 0o700);

    // A comment and an unknown key survive; only the group changes.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("# mine\n{text}extra = 1\n")).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let w = write(
        &cfg,
        &Update {
            group: Some("g2".into()),
            insecure: Some(true),
            ..Update::default()
        },
        None,
    )
    .unwrap();
    assert!(!w.created);
    assert_eq!(w.keys, vec!["group", "insecure"]);
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert_eq!(
        text,
        "# mine\nurl = \"https://one\"\ntoken = \"tok-1\"\ngroup = \"g2\"\nextra = 1\ninsecure = true\n"
    );
    assert_eq!(mode(&cfg), 0o600, "an existing file is made private");

    // With a token_file, the token goes there.
    std::fs::write(&cfg, "url = \"https://one\"\ntoken_file = \"tok\"\n").unwrap();
    let w = write(
        &cfg,
        &Update {
            token: Some(Secret::new("tok-2")),
            ..Update::default()
        },
        None,
    )
    .unwrap();
    let tf = dir.path().join("a/b/tok");
    assert_eq!(w.token_file.as_deref(), Some(tf.as_path()));
    assert_eq!(std::fs::read_to_string(&tf).unwrap(), "tok-2\n");
    assert_eq!(mode(&tf), 0o600);
    assert!(!std::fs::read_to_string(&cfg).unwrap().contains("tok-2"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A symlinked config file stays a symlink.
    let real = dir.path().join("dotfiles/nlds.toml");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::write(&real, "url = \"https://old\"\n").unwrap();
    let link = dir.path().join("link.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    write(
        &link,
        &Update {
            url: Some("https://new".into()),
            ..Update::default()
        },
        None,
    )
    .unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(&real).unwrap(),
        "url = \"https://new\"\n"
    );
}
