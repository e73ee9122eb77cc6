//! The layering, the established variables, the cold backend's shape, secrets, errors, and the
//! example file.

#![expect(
    clippy::result_large_err,
    reason = "figment's `Jail` fixes the closures' error type (`figment::Error`, which is large)"
)]

use std::collections::BTreeSet;
use std::path::Path;

use figment::Jail;

use super::*;

fn load(jail: &Jail, toml: &str) -> Result<Settings, Error> {
    jail.create_file("nlds.toml", toml).expect("write");
    Settings::load(Some(Path::new("nlds.toml")))
}

fn jailed(f: impl FnOnce(&mut Jail) -> Result<(), Error>) {
    Jail::expect_with(|jail| {
        jail.clear_env();
        f(jail).map_err(|e| e.to_string().into())
    });
}

#[test]
fn no_file_gives_the_defaults() {
    jailed(|_| {
        let s = Settings::load(None)?;
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(s.bus.kind, BusKind::Rabbitmq);
        assert_eq!(s.workers.database_url, "sqlite://nlds.db?mode=rwc");
        assert_eq!(s.workers.cold.backend(), "dir");
        Ok(())
    });
}

#[test]
fn the_environment_overrides_the_file_at_any_depth() {
    jailed(|jail| {
        jail.set_env("NLDS__WORKERS__OBJECT_STORE__BUCKET", "from-env");
        jail.set_env("NLDS__WORKERS__INDEX__BATCH_FILES", "7");
        jail.set_env("NLDS__SERVER__LISTEN", "0.0.0.0:8080");
        jail.set_env("NLDS__BUS__KIND", "memory");
        jail.set_env("NLDS__BUS__RETRY_DELAYS_MS", "[1, 2]");
        jail.set_env("NLDS__WORKERS__POSIX_ROOT_OVERRIDE", "true");
        // Strings that look like numbers stay strings where a key wants a string.
        jail.set_env("NLDS__WORKERS__OBJECT_STORE__ACCESS_KEY", "12345");
        jail.set_env("NLDS__WORKERS__OBJECT_STORE__SECRET_KEY", "007");
        jail.set_env("NLDS__AUTH__OIDC__CLAIMS__USER", "sub");
        let s = load(
            jail,
            r#"
            [workers.object_store]
            bucket = "from-file"
            region = "eu-west-2"
            [workers.index]
            batch_bytes = 99
            "#,
        )?;
        assert_eq!(s.workers.object_store.bucket, "from-env");
        assert_eq!(
            s.workers.object_store.region, "eu-west-2",
            "file, not default"
        );
        assert_eq!(s.workers.index.batch_files, 7);
        assert_eq!(s.workers.index.batch_bytes, 99);
        assert_eq!(s.server.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(s.bus.kind, BusKind::Memory);
        assert_eq!(s.bus.retry_delays_ms, vec![1, 2]);
        assert!(s.workers.posix_root_override);
        assert_eq!(s.workers.object_store.access_key, "12345");
        assert_eq!(s.workers.object_store.secret().unwrap(), "007");
        assert_eq!(s.auth.oidc.claims.user, "sub");
        // Variables that are not NLDS__ (the client's, the programs' own) are not settings.
        jail.set_env("NLDS_DATA_DIR", "x");
        jail.set_env("NLDS_LOG_JSON", "1");
        Settings::load(None)?;
        Ok(())
    });
}

#[test]
fn the_established_variables_still_work() {
    jailed(|jail| {
        jail.set_env("NLDS_AMQP_URL", "amqp://rabbit/%2f");
        jail.set_env("NLDS_DATABASE_URL", "postgres://db/nlds");
        jail.set_env("NLDS_S3_ENDPOINT", "http://s3.local");
        jail.set_env("NLDS_S3_ACCESS_KEY", "AKIA");
        jail.set_env("NLDS_S3_ACCESS_KEY_FILE", "/run/a");
        jail.set_env("NLDS_S3_SECRET_KEY_FILE", "/run/s");
        jail.set_env("NLDS_S3_BUCKET", "b");
        let s = load(jail, "[bus]\nkind = \"memory\"\n")?;
        assert_eq!(s.bus.amqp_url, "amqp://rabbit/%2f");
        assert_eq!(
            s.bus.kind,
            BusKind::Rabbitmq,
            "NLDS_AMQP_URL selects RabbitMQ"
        );
        assert_eq!(s.workers.database_url, "postgres://db/nlds");
        let os = &s.workers.object_store;
        assert_eq!(os.endpoint, "http://s3.local");
        assert_eq!(os.access_key, "AKIA");
        assert_eq!(os.access_key_file.as_deref(), Some(Path::new("/run/a")));
        assert_eq!(os.secret_key_file.as_deref(), Some(Path::new("/run/s")));
        assert_eq!(os.bucket, "b");
        // An empty value is ignored, as before.
        jail.set_env("NLDS_S3_BUCKET", "");
        jail.set_env("NLDS_AMQP_URL", "");
        let s = load(
            jail,
            "[bus]\nkind = \"memory\"\n[workers.object_store]\nbucket = \"f\"\n",
        )?;
        assert_eq!(s.workers.object_store.bucket, "f");
        assert_eq!(s.bus.kind, BusKind::Memory);
        // NLDS__ is the more specific spelling and wins.
        jail.set_env("NLDS_S3_BUCKET", "alias");
        jail.set_env("NLDS__WORKERS__OBJECT_STORE__BUCKET", "nested");
        assert_eq!(Settings::load(None)?.workers.object_store.bucket, "nested");
        Ok(())
    });
}

#[test]
fn flags_override_the_environment() {
    jailed(|jail| {
        jail.set_env("NLDS__SERVER__MAX_PATHS", "5");
        jail.set_env("NLDS__SERVER__RPC_TIMEOUT_SECS", "6");
        let flags = figment::providers::Serialized::default("server.max_paths", 9);
        let s = Settings::load_with(None, flags)?;
        assert_eq!(s.server.max_paths, 9);
        assert_eq!(s.server.rpc_timeout_secs, 6);
        Ok(())
    });
}

#[test]
fn set_flags_override_the_environment_and_name_themselves() {
    jailed(|jail| {
        jail.set_env("NLDS__WORKERS__OBJECT_STORE__BUCKET", "env");
        let flags: Vec<SetFlag> = [
            "workers.object_store.bucket=flag",
            "bus.retry_delays_ms=[5, 50]",
            "server.max_paths=7",
        ]
        .iter()
        .map(|f| f.parse().unwrap())
        .collect();
        let fig = flags
            .into_iter()
            .fold(Settings::figment(None), |fig, f| fig.merge(f));
        let s = Settings::from_figment(&fig)?;
        assert_eq!(s.workers.object_store.bucket, "flag");
        assert_eq!(s.bus.retry_delays_ms, [5, 50]);
        assert_eq!(s.server.max_paths, 7);

        let bad: SetFlag = "server.max_paths=many".parse().unwrap();
        let err = Settings::load_with(None, bad).unwrap_err().to_string();
        assert!(
            err.contains("key server.max_paths (from flag --set server.max_paths)"),
            "{err}"
        );
        Ok(())
    });
    for bad in ["server.max_paths", "=1", "server..x=1", ".x=1"] {
        assert!(bad.parse::<SetFlag>().is_err(), "{bad}");
    }
}

/// What the binaries load: file < environment < `--set` flags, and an error names the file.
#[test]
fn binaries_layer_file_environment_and_flags() {
    jailed(|jail| {
        jail.create_file(
            "nlds.toml",
            "[server]\nmax_paths = 3\nrpc_timeout_secs = 4\n[workers.object_store]\nbucket = \"file\"\n",
        )?;
        jail.set_env("NLDS__SERVER__RPC_TIMEOUT_SECS", "5");
        let file = std::path::Path::new("nlds.toml");
        let set = vec!["workers.object_store.bucket=flag".parse().unwrap()];
        let s = Settings::load_cli(Some(file), set).unwrap();
        assert_eq!(s.server.max_paths, 3, "from the file");
        assert_eq!(
            s.server.rpc_timeout_secs, 5,
            "the environment over the file"
        );
        assert_eq!(
            s.workers.object_store.bucket, "flag",
            "the flag over the file"
        );

        jail.create_file("bad.toml", "[server]\nmax_paths = \"many\"\n")?;
        let err =
            Settings::load_cli(Some(std::path::Path::new("bad.toml")), Vec::new()).unwrap_err();
        assert!(
            err.contains("max_paths") && err.contains("settings file bad.toml"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn settings_read_again_from_the_same_file_and_flags() {
    jailed(|jail| {
        jail.create_file(
            "nlds.toml",
            "[policy]\ninterval_secs = 60\n[[policy.rule]]\nname = \"a\"\naction = \"archive\"\n",
        )?;
        let file = std::path::Path::new("nlds.toml");
        let set = vec!["server.max_paths=7".parse().unwrap()];
        let s = Settings::load_cli(Some(file), set).unwrap();
        assert_eq!(s.policy.rules.len(), 1);
        jail.create_file(
            "nlds.toml",
            "[policy]\ninterval_secs = 60\n[[policy.rule]]\nname = \"a\"\naction = \"archive\"\n[[policy.rule]]\nname = \"b\"\naction = \"evict\"\n",
        )?;
        let again = s.reread().unwrap();
        assert_eq!(again.policy.rules.len(), 2, "the file is read again");
        assert_eq!(again.server.max_paths, 7, "with the same flags");
        jail.create_file("nlds.toml", "[policy\n")?;
        let err = s.reread().unwrap_err();
        assert!(err.contains("settings file nlds.toml"), "{err}");
        // Settings built in code have nothing to read again.
        let built = Settings {
            policy: PolicyConfig {
                interval_secs: 9,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(built.reread().unwrap().policy.interval_secs, 9);
        Ok(())
    });
}

#[test]
fn cold_backend_names_round_trip() {
    assert_eq!(ColdConfig::BACKENDS, ["dir", "xrootd", "s3-glacier"]);
    for &name in ColdConfig::BACKENDS {
        let c: ColdConfig = Figment::from(figment::providers::Serialized::default("backend", name))
            .extract()
            .unwrap();
        assert_eq!(c.backend(), name);
    }
}

#[test]
fn posix_checks_strings_round_trip() {
    assert_eq!(PosixChecks::ALL, [PosixChecks::User, PosixChecks::Service]);
    for &c in PosixChecks::ALL {
        assert_eq!(c.to_string(), c.as_str());
        assert_eq!(c.as_str().parse::<PosixChecks>().unwrap(), c);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, format!("\"{}\"", c.as_str()));
        assert_eq!(serde_json::from_str::<PosixChecks>(&json).unwrap(), c);
    }
    assert_eq!(PosixChecks::User.as_str(), "user");
    assert_eq!(PosixChecks::Service.as_str(), "service");
}

#[test]
fn the_cold_backend_is_an_enum_read_from_the_established_shape() {
    jailed(|jail| {
        // Today's form: backend beside its table; other backends' tables are accepted, ignored.
        let s = load(
            jail,
            r#"
            [workers.cold]
            backend = "dir"
            dir = { root = "/var/lib/nlds/cold", stage_delay_ms = 5 }
            xrootd = { url = "root://tape//x" }
            "#,
        )?;
        match &s.workers.cold {
            ColdConfig::Dir(d) => {
                assert_eq!(d.root, Path::new("/var/lib/nlds/cold"));
                assert_eq!(d.stage_delay_ms, 5);
            }
            other => panic!("{other:?}"),
        }
        let s = load(
            jail,
            r#"
            [workers.cold]
            backend = "s3-glacier"
            [workers.cold.glacier]
            bucket = "cold"
            secret_key = "cold-secret"
            storage_class = "DEEP_ARCHIVE"
            "#,
        )?;
        let ColdConfig::S3Glacier(g) = &s.workers.cold else {
            panic!("{:?}", s.workers.cold)
        };
        assert_eq!(g.store.bucket, "cold");
        assert_eq!(g.store.secret().unwrap(), "cold-secret");
        assert_eq!(g.storage_class, "DEEP_ARCHIVE");
        assert_eq!(s.workers.cold.backend(), "s3-glacier");
        // Without `backend`: dir, as before. The environment can switch it.
        jail.set_env("NLDS__WORKERS__COLD__BACKEND", "xrootd");
        jail.set_env("NLDS__WORKERS__COLD__XROOTD__URL", "root://env//tape");
        let s = load(jail, "[workers.cold.dir]\nroot = \"/c\"\n")?;
        let ColdConfig::Xrootd(x) = &s.workers.cold else {
            panic!("{:?}", s.workers.cold)
        };
        assert_eq!(x.url, "root://env//tape");
        // Serialized, only the selected table is written, and it reads back the same.
        let text = toml::to_string(&s).unwrap();
        assert!(text.contains("backend = \"xrootd\""), "{text}");
        assert!(!text.contains("[workers.cold.dir]"), "{text}");
        // An unknown backend fails at start, naming the key and the choices.
        jail.set_env("NLDS__WORKERS__COLD__BACKEND", "tape");
        let e = load(jail, "").unwrap_err().to_string();
        assert!(
            e.contains("workers.cold") && e.contains("\"tape\"") && e.contains("s3-glacier"),
            "{e}"
        );
        Ok(())
    });
}

#[test]
fn invalid_settings_name_the_key_the_source_and_the_problem() {
    jailed(|jail| {
        let e = load(jail, "[workers.index]\nbatch_files = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("workers.index.batch_files")
                && e.contains("nlds.toml")
                && e.contains("many"),
            "{e}"
        );
        jail.set_env("NLDS__SERVER__LISTEN", "not an address");
        let e = Settings::load(None).unwrap_err().to_string();
        assert!(
            e.contains("server.listen") && e.contains("NLDS__SERVER__LISTEN"),
            "{e}"
        );
        jail.clear_env();
        let e = load(jail, "[auth]\nkind = \"ldap\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.kind") && e.contains("ldap"), "{e}");
        // A typo in a table that refuses unknown keys.
        let e = load(jail, "[auth.oidc]\nisuer = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("isuer"), "{e}");
        // A named file that is missing is an error, not the defaults.
        let e = Settings::load(Some(Path::new("missing.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.toml"), "{e}");
        // Not TOML at all.
        let e = load(jail, "[server\n").unwrap_err().to_string();
        assert!(e.contains("nlds.toml"), "{e}");
        Ok(())
    });
}

#[test]
fn secrets_are_never_printed() {
    jailed(|jail| {
        jail.set_env("NLDS__AUTH__OIDC__HMAC_SECRET", "hmac-s3cr3t");
        let s = load(
            jail,
            r#"
            [auth.oidc]
            client_secret = "oidc-s3cr3t"
            [workers.object_store]
            secret_key = "s3-s3cr3t"
            access_key = "s3-access-id"
            [workers.object_store.tenancies.t]
            secret_key = "tenancy-s3cr3t"
            [workers.cold]
            backend = "s3-glacier"
            glacier = { secret_key = "glacier-s3cr3t" }
            "#,
        )?;
        let shown = format!("{s:?} {s:#?}");
        let written = toml::to_string(&s).unwrap();
        for secret in [
            "hmac-s3cr3t",
            "oidc-s3cr3t",
            "s3-s3cr3t",
            "s3-access-id",
            "tenancy-s3cr3t",
            "glacier-s3cr3t",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
            // The OIDC secrets are never written out; the object-store keys are, as before, for
            // the settings files one program writes for another (tests start workers so).
            if secret.contains("hmac") || secret.contains("oidc") {
                assert!(!written.contains(secret), "{secret} in {written}");
            } else {
                assert!(written.contains(secret), "{secret} not in {written}");
            }
        }
        // ... while the programs still get them.
        assert_eq!(s.workers.object_store.secret().unwrap(), "s3-s3cr3t");
        let t = s.workers.object_store.tenancy("t").unwrap();
        assert_eq!(t.secret().unwrap(), "tenancy-s3cr3t");
        assert_eq!(
            s.auth.oidc.client_secret.as_ref().unwrap().expose_secret(),
            "oidc-s3cr3t"
        );
        assert_eq!(
            s.auth.oidc.hmac_secret.as_ref().unwrap().expose_secret(),
            "hmac-s3cr3t"
        );
        Ok(())
    });
}

/// Every table path and key of a TOML value (`a`, `a.b`, ...).
fn paths(prefix: &str, v: &toml::Value, out: &mut BTreeSet<String>) {
    if let toml::Value::Table(t) = v {
        for (k, v) in t {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.insert(p.clone());
            paths(&p, v, out);
        }
    }
}

#[test]
fn the_example_file_parses_and_shows_every_section_and_key() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nlds.example.toml");
    let text = std::fs::read_to_string(&file).expect("nlds.example.toml at the repository root");
    let mut example = BTreeSet::new();
    let table: toml::Table = toml::from_str(&text).expect("TOML");
    paths("", &toml::Value::Table(table), &mut example);

    // Every section and key the settings define (with each cold backend's table; the named
    // tenancies are the example's own).
    let mut defined = BTreeSet::new();
    for cold in [
        ColdConfig::Dir(Default::default()),
        ColdConfig::Xrootd(Default::default()),
        ColdConfig::S3Glacier(Default::default()),
    ] {
        let mut s = Settings::default();
        s.workers.cold = cold;
        paths("", &toml::Value::try_from(&s).unwrap(), &mut defined);
    }
    // Inline secrets are shown in comments only: the example uses their `*_file` forms.
    defined.retain(|p| !p.ends_with(".secret_key"));
    let missing: Vec<_> = defined.difference(&example).collect();
    assert!(missing.is_empty(), "not in nlds.example.toml: {missing:?}");
    for section in ["server", "auth", "bus", "workers"] {
        assert!(example.contains(section), "{section}");
    }
    // Nor does the example show what the settings do not know.
    let allowed_extra = |p: &str| {
        p.starts_with("workers.object_store.tenancies")
            || p.starts_with("workers.cold.xrootd.env.")
            || p.starts_with("policy.watermarks.")
            || [
                "workers.posix_checks",
                "server.public_url",
                "server.legacy_init.select_tenancy",
                "auth.oidc.client_id",
                "auth.oidc.client_secret_file",
                "workers.object_store.secret_key_file",
                "workers.cold.glacier.secret_key_file",
            ]
            .contains(&p)
    };
    let unknown: Vec<_> = example
        .difference(&defined)
        .filter(|p| !allowed_extra(p))
        .collect();
    assert!(unknown.is_empty(), "not settings: {unknown:?}");

    Jail::expect_with(|jail| {
        jail.clear_env();
        let s = Settings::load(Some(&file)).map_err(|e| e.to_string())?;
        assert_eq!(s.workers.cold.backend(), "dir");
        assert_eq!(s.auth.oidc.claims.admin_groups, ["nlds-admin"]);
        assert!(s.workers.object_store.tenancy("s3.example.org").is_some());
        Ok(())
    });
}
