//! POSIX permissions checked on behalf of the requesting user (`[workers] posix_checks =
//! "user"`): real system accounts are created for the test (it needs root, as the workers do in
//! production; under CI a non-root run fails), files and directories with specific owners and
//! modes are put and got through the whole pipeline (API, in-process bus, workers, SQLite, S3).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nlds_bus::memory::MemoryBus;
use nlds_core::api::TransactionStatus;
use nlds_core::{ErrorCode, State};
use nlds_server::auth::StaticTokens;
use nlds_server::{AppState, ServerConfig, router};
use nlds_workers::WorkerConfig;
use nlds_workers::posix::PosixChecks;
use nlds_workers::run::{BusConfig, BusKind};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Api, service, temp};

const BOB_TOKEN: &str = "posix-test-bob-token-0123456789";
const ALICE_TOKEN: &str = "posix-test-alice-token-0123456789";
const ADMIN_TOKEN: &str = "posix-test-admin-token-0123456789";

/// Whether this process may create accounts and give files away. Without root the test fails,
/// unless skipping was asked for (see [`nlds_hooks::skip`]).
pub(crate) fn root_or_skip(test: &str) -> bool {
    nix::unistd::geteuid().is_root()
        || !nlds_hooks::skip::missing(
            test,
            "not running as root",
            "it creates system users with useradd and checks file ownership: run the tests as root, as CI does",
        )
}

/// A system account created for the test, removed on drop.
pub(crate) struct SystemUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl SystemUser {
    pub(crate) fn create(prefix: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("nlds{prefix}{}", &id[..8]);
        let out = Command::new("useradd")
            .args([
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
            ])
            .arg(&name)
            .output()
            .expect("useradd runs (package passwd)");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let user = nix::unistd::User::from_name(&name).unwrap().unwrap();
        Self {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

fn own(path: &Path, user: &SystemUser, mode: u32) {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn file(path: &Path, content: &str, user: &SystemUser, mode: u32) {
    std::fs::write(path, content).unwrap();
    own(path, user, mode);
}

fn dir(path: &Path, user: &SystemUser, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    own(path, user, mode);
}

/// API and every worker role in this process over one in-process bus, with the given checks.
async fn start(
    s3: &str,
    data: &Path,
    tokens: &str,
    checks: PosixChecks,
    stop: CancellationToken,
) -> String {
    let mut workers = WorkerConfig {
        database_url: format!("sqlite://{}?mode=rwc", data.join("nlds.db").display()),
        log_dir: data.join("logs"),
        posix_checks: Some(checks),
        ..Default::default()
    };
    workers.object_store.endpoint = s3.to_owned();
    workers.object_store.access_key = "testing".into();
    workers.object_store.secret_key = "testing".into();
    workers.object_store.bucket = format!(
        "nlds-posix-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    workers.cold.dir_mut().root = data.join("cold");
    let db = nlds_workers::db::connect(&workers.database_url)
        .await
        .unwrap();
    drop(db);
    let bus_cfg = BusConfig {
        kind: BusKind::Memory,
        ..Default::default()
    };
    let bus: Arc<dyn nlds_bus::Bus> = Arc::new(MemoryBus::new());
    {
        let (bus, stop) = (bus.clone(), stop.clone());
        tokio::spawn(async move {
            let settings = nlds_workers::run::Settings {
                workers,
                bus: bus_cfg,
                ..Default::default()
            };
            nlds_workers::run::run_roles(bus, &nlds_workers::run::all_roles(), &settings, stop)
                .await
        });
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState {
        bus,
        auth: Arc::new(StaticTokens::from_toml(tokens).unwrap()),
        cfg: Arc::new(ServerConfig {
            listen: addr,
            ..Default::default()
        }),
        live: Default::default(),
        webhook_key: None,
    };
    tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    let url = format!("http://{addr}");
    // The roles start in the background: wait until the catalogue answers.
    let api = Api::new(&url, BOB_TOKEN);
    for _ in 0..200 {
        if api.get("/api/v2/holdings").await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    url
}

fn failed(t: &TransactionStatus) -> Vec<(String, ErrorCode, String)> {
    let mut v: Vec<_> = t
        .failed_files()
        .map(|f| (f.path.clone(), f.code, f.reason.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_check_the_requesting_users_posix_permissions() {
    if !root_or_skip("workers_check_the_requesting_users_posix_permissions") {
        return;
    }
    let Some(s3) = service("NLDS_TEST_S3_ENDPOINT") else {
        return;
    };
    let alice = SystemUser::create("a");
    let bob = SystemUser::create("b");
    let tokens = format!(
        "[[token]]\ntoken = \"{BOB_TOKEN}\"\nuser = \"{b}\"\ngroups = [\"climate\"]\n\
         [[token]]\ntoken = \"{ALICE_TOKEN}\"\nuser = \"{a}\"\ngroups = [\"climate\"]\n\
         [[token]]\ntoken = \"{ADMIN_TOKEN}\"\nuser = \"{a}\"\ngroups = [\"climate\"]\nadmin = true\n\
         [[token]]\ntoken = \"posix-test-ghost-token-0123456789\"\nuser = \"nlds-no-such-user\"\n\
         groups = [\"climate\"]\n",
        a = alice.name,
        b = bob.name
    );
    let data = temp();
    let stop = CancellationToken::new();
    let url = start(&s3, data.path(), &tokens, PosixChecks::User, stop.clone()).await;
    let bob_api = Api::new(&url, BOB_TOKEN);
    let admin_api = Api::new(&url, ADMIN_TOKEN);

    // The tree: a temporary directory everyone may search.
    let root_dir = temp();
    let root = root_dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let shared = root.join("shared");
    dir(&shared, &bob, 0o755);
    file(&shared.join("bob.txt"), "bob's own", &bob, 0o644);
    file(&shared.join("public.txt"), "alice, readable", &alice, 0o644);
    let secret = shared.join("alice-secret.txt");
    file(&secret, "alice only", &alice, 0o600);
    let locked = root.join("locked");
    dir(&locked, &alice, 0o700);
    let inner = locked.join("inner.txt");
    file(&inner, "behind a closed door", &alice, 0o644);

    // put as bob: alice's 0600 file and the file behind her 0700 directory fail, with reasons;
    // everything else is stored.
    let t = bob_api
        .put_and_wait(json!({"paths": [s(&shared), s(&inner)], "label": "bob-data"}))
        .await;
    assert_eq!(t.state, State::CompleteWithErrors, "{t:#?}");
    let f = failed(&t);
    assert_eq!(f.len(), 2, "{f:#?}");
    let by_path = |p: &Path| {
        f.iter()
            .find(|(path, _, _)| path == &s(p))
            .unwrap_or_else(|| panic!("{} not among the failures {f:#?}", p.display()))
            .clone()
    };
    let (_, code, reason) = by_path(&secret);
    assert_eq!(code, ErrorCode::PermissionDenied);
    assert_eq!(
        reason,
        format!(
            "{}: user {} may not read file {} (mode 0600, owner {}, group {})",
            s(&secret),
            bob.name,
            s(&secret),
            alice.name,
            alice.name
        )
    );
    let (_, code, reason) = by_path(&inner);
    assert_eq!(code, ErrorCode::PermissionDenied);
    assert!(
        reason.contains(&format!(
            "user {} may not search directory {} (mode 0700, owner {}",
            bob.name,
            s(&locked),
            alice.name
        )),
        "{reason}"
    );
    assert_eq!(
        t.files_total - t.files_failed,
        2,
        "bob.txt, public.txt (and shared/, not counted as a file): {t:#?}"
    );

    // A user the host does not know: every file fails, clearly.
    let ghost = Api::new(&url, "posix-test-ghost-token-0123456789");
    let t = ghost
        .put_and_wait(json!({"paths": [s(&shared.join("public.txt"))]}))
        .await;
    assert_eq!(t.state, State::Failed, "{t:#?}");
    let f = failed(&t);
    assert!(
        f[0].2
            .contains("user nlds-no-such-user is not an account on this host"),
        "{f:#?}"
    );

    // get into a directory bob cannot write: refused per file, nothing written.
    let closed = root.join("alices-restore");
    dir(&closed, &alice, 0o755);
    let t = bob_api
        .get_and_wait(json!({"paths": [s(&shared)], "label": "bob-data", "target": s(&closed)}))
        .await;
    assert_eq!(t.state, State::Failed, "{t:#?}");
    let f = failed(&t);
    assert!(!f.is_empty());
    for (_, code, reason) in &f {
        assert_eq!(*code, ErrorCode::PermissionDenied, "{reason}");
        assert!(
            reason.contains(&format!(
                "user {} may not write to directory {}",
                bob.name,
                s(&closed)
            )),
            "{reason}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&closed).unwrap().count(),
        0,
        "nothing restored"
    );

    // get into bob's own directory: everything restored is bob's, whoever put it, including the
    // directories created on the way.
    let mine = root.join("bobs-restore");
    dir(&mine, &bob, 0o700);
    let t = bob_api
        .get_and_wait(json!({"paths": [s(&shared)], "label": "bob-data", "target": s(&mine)}))
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let back = mine.join(shared.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_to_string(back.join("public.txt")).unwrap(),
        "alice, readable"
    );
    for p in [
        back.join("public.txt"),
        back.join("bob.txt"),
        back.clone(),
        mine.join(root.strip_prefix("/").unwrap()),
        mine.join(root.strip_prefix("/").unwrap().iter().next().unwrap()),
    ] {
        assert_eq!(
            owner(&p),
            (bob.uid, bob.gid),
            "{} belongs to bob",
            p.display()
        );
    }
    assert!(!back.join("alice-secret.txt").exists());

    // groupall: bob may restore a file alice put only if its recorded mode lets him read it;
    // her 0600 file is refused (it would otherwise become his), her 0644 one is restored.
    let alice_api = Api::new(&url, ALICE_TOKEN);
    let public = shared.join("public.txt");
    let t = alice_api
        .put_and_wait(json!({"paths": [s(&secret), s(&public)], "label": "alice-data"}))
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let theirs = root.join("bobs-groupall-restore");
    dir(&theirs, &bob, 0o700);
    let t = bob_api
        .get_and_wait(json!({
            "paths": [s(&secret), s(&public)], "label": "alice-data", "groupall": true,
            "target": s(&theirs)
        }))
        .await;
    assert_eq!(t.state, State::CompleteWithErrors, "{t:#?}");
    let f = failed(&t);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].0, s(&secret));
    assert_eq!(f[0].1, ErrorCode::PermissionDenied);
    assert_eq!(
        f[0].2,
        format!(
            "{}: user {b} may not read {a}'s file (recorded mode 0600, owner {a}, group {a}); \
             only its owner or a reader by its recorded mode may restore it",
            s(&secret),
            a = alice.name,
            b = bob.name,
        )
    );
    let back = theirs.join(shared.strip_prefix("/").unwrap());
    assert!(!back.join("alice-secret.txt").exists());
    assert_eq!(
        std::fs::read_to_string(back.join("public.txt")).unwrap(),
        "alice, readable"
    );
    assert_eq!(owner(&back.join("public.txt")), (bob.uid, bob.gid));

    // keep_owner: refused for a user, at once ...
    let (status, body) = bob_api
        .post(
            "/api/v2/get",
            &json!({"paths": [s(&shared)], "label": "bob-data", "target": s(&mine), "keep_owner": true}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keep_owner"),
        "{body}"
    );
    // ... allowed for an operator: files get the owner recorded when they were put.
    let kept = root.join("admin-restore");
    dir(&kept, &alice, 0o755);
    let t = admin_api
        .get_and_wait(json!({
            "paths": [s(&shared)], "label": "bob-data", "groupall": true,
            "target": s(&kept), "keep_owner": true
        }))
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let back = kept.join(shared.strip_prefix("/").unwrap());
    assert_eq!(owner(&back.join("public.txt")), (alice.uid, alice.gid));
    assert_eq!(owner(&back.join("bob.txt")), (bob.uid, bob.gid));
    assert_eq!(owner(&back), (bob.uid, bob.gid), "shared/ was bob's");
    stop.cancel();
}

/// `posix_checks = "service"`: the process's own access decides (root reads everything), and
/// restored files stay the process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn service_checks_use_the_process_access() {
    if !root_or_skip("service_checks_use_the_process_access") {
        return;
    }
    let Some(s3) = service("NLDS_TEST_S3_ENDPOINT") else {
        return;
    };
    let alice = SystemUser::create("a");
    let tokens = format!(
        "[[token]]\ntoken = \"{BOB_TOKEN}\"\nuser = \"not-a-system-user\"\ngroups = [\"climate\"]\n"
    );
    let data = temp();
    let stop = CancellationToken::new();
    let url = start(
        &s3,
        data.path(),
        &tokens,
        PosixChecks::Service,
        stop.clone(),
    )
    .await;
    let api = Api::new(&url, BOB_TOKEN);
    let root_dir = temp();
    let secret = root_dir.path().join("secret.txt");
    file(&secret, "alice only", &alice, 0o600);
    let t = api
        .put_and_wait(json!({"paths": [s(&secret)], "label": "svc"}))
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let target: PathBuf = root_dir.path().join("restore");
    std::fs::create_dir(&target).unwrap();
    let t = api
        .get_and_wait(json!({"paths": [s(&secret)], "label": "svc", "target": s(&target)}))
        .await;
    assert_eq!(t.state, State::Complete, "{t:#?}");
    let back = target.join(secret.strip_prefix("/").unwrap());
    assert_eq!(owner(&back), (0, 0), "left to the process");
    stop.cancel();
}
