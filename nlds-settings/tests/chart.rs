//! The settings files the Helm chart renders (`charts/nlds/ci/rendered/<case>/*.toml`, kept equal
//! to the chart's output by `charts/nlds/ci/check.sh`) are accepted by the programs' loader.

#![expect(
    clippy::result_large_err,
    reason = "figment's `Jail` fixes the closures' error type (`figment::Error`, which is large)"
)]

use std::path::{Path, PathBuf};

use figment::Jail;
use nlds_settings::{AuthKind, Settings, SmtpTls};

fn rendered() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/nlds/ci/rendered");
    let mut files = Vec::new();
    for case in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        for file in std::fs::read_dir(case.expect("entry").path()).expect("case directory") {
            files.push(file.expect("entry").path());
        }
    }
    files.sort();
    files
}

fn load(path: &Path) -> Settings {
    let mut loaded = None;
    Jail::expect_with(|jail| {
        // As in a pod: the file, and no NLDS_ variables but the ones the chart sets.
        jail.clear_env();
        jail.set_env("NLDS_AMQP_URL", "amqp://nlds:secret@rabbitmq:5672/%2f");
        jail.set_env("NLDS_DATABASE_URL", "postgres://nlds@postgresql:5432/nlds");
        loaded = Some(Settings::load(Some(path)).map_err(|e| e.to_string())?);
        Ok(())
    });
    loaded.expect("loaded")
}

#[test]
fn the_programs_accept_every_settings_file_the_chart_renders() {
    let files = rendered();
    // Three cases (defaults, full-values, existing-secret-values), two files each.
    assert!(files.len() >= 6, "{files:?}");
    for path in &files {
        let s = load(path);
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        match name {
            "server.toml" => {
                assert_eq!(
                    s.server.listen.to_string(),
                    "0.0.0.0:7070",
                    "{}",
                    path.display()
                );
                assert_eq!(
                    s.server.tokens_file,
                    Path::new("/etc/nlds/secret/tokens.toml")
                );
            }
            "workers.toml" => {
                let w = &s.workers;
                assert_eq!(
                    w.ops_listen.map(|a| a.to_string()).as_deref(),
                    Some("0.0.0.0:9187"),
                    "{}: the probes need the ops listener",
                    path.display()
                );
                assert_eq!(w.work_dir, Path::new("/var/lib/nlds/work"));
                assert_eq!(
                    w.object_store.secret_key_file.as_deref(),
                    Some(Path::new("/etc/nlds/secret/s3-secret-key"))
                );
            }
            other => panic!("unexpected rendered file {other}"),
        }
    }
}

#[test]
fn the_full_values_reach_the_settings() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/nlds/ci/rendered/full-values");
    let server = load(&dir.join("server.toml"));
    assert_eq!(server.auth.kind, AuthKind::Oidc);
    assert_eq!(server.auth.oidc.audience, ["nlds", "urn:nlds"]);
    assert_eq!(
        server.auth.oidc.client_secret_file.as_deref(),
        Some(Path::new("/etc/nlds/secret/oidc-client-secret"))
    );
    let workers = load(&dir.join("workers.toml"));
    // `metrics`: every process answers /metrics on the pods' `metrics` port.
    for s in [&server, &workers] {
        assert_eq!(
            s.metrics.listen.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:9464")
        );
        assert_eq!(s.metrics.usage_groups, 50);
    }
    assert_eq!(workers.workers.cold.backend(), "s3-glacier");
    assert_eq!(workers.workers.versions.keep, 3);
    assert_eq!(workers.workers.delete.retention_secs, 86400);
    // `settings` is merged over the chart's own keys.
    assert_eq!(workers.workers.archive.interval_secs, 1200);
    assert!(workers.policy.enabled);
    assert_eq!(workers.policy.rules.len(), 3);
    assert_eq!(workers.memory.malloc_arenas, 1);
    let tenancy = workers
        .workers
        .object_store
        .tenancy("s3.example.org")
        .expect("the tenancy `settings` names");
    assert_eq!(tenancy.bucket, "nlds-example");
    // `notify`: [notify], its two secrets as files of the Secret (mounted in the monitor's pod).
    let n = &workers.notify;
    assert_eq!(n.smtp_host.as_deref(), Some("smtp.example.org"));
    assert_eq!(n.smtp_port, 465);
    assert_eq!(n.smtp_tls, SmtpTls::Tls);
    assert_eq!(n.smtp_user.as_deref(), Some("nlds"));
    assert_eq!(
        n.smtp_password_file.as_deref(),
        Some(Path::new("/etc/nlds/secret/smtp-password"))
    );
    assert!(n.smtp_password.is_none(), "never inline");
    assert_eq!(n.from, "nlds@example.org");
    assert!(n.allow_http);
    assert_eq!(
        (n.attempts, n.backoff_ms, n.backoff_max_ms),
        (5, 10_000, 600_000)
    );
    assert_eq!((n.stalled_after_secs, n.alert_check_secs), (43_200, 120));
    assert_eq!(n.operator_emails, ["ops@example.org", "oncall@example.org"]);
    assert_eq!(
        n.operator_webhook.as_deref(),
        Some("https://ops.example.org/nlds")
    );
    assert_eq!(
        n.operator_webhook_secret_file.as_deref(),
        Some(Path::new("/etc/nlds/secret/operator-webhook-secret"))
    );
}
