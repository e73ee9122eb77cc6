//! `nlds login` / `logout` / token renewal, run as subprocesses against the real OpenID provider
//! of scripts/oidc.sh (`NLDS_TEST_OIDC_ISSUER`, clients `nlds-cli` and `nlds-service`, accounts
//! alice, bob, ...: docs/AUTH.md). The NLDS server is the fake server of this test binary, so
//! what the client sends (which bearer token) can be checked. A missing provider fails these
//! tests, unless skipping was asked for (`nlds_hooks::skip`).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::fake_server;

/// The provider, from the environment scripts/test.sh sets.
struct Oidc {
    issuer: String,
    secrets: PathBuf,
    http: reqwest::Client,
}

fn oidc() -> Option<Oidc> {
    let issuer = nlds_hooks::skip::service(
        "",
        "NLDS_TEST_OIDC_ISSUER",
        "run scripts/services.sh and scripts/test.sh (scripts/oidc.sh is the provider)",
    )?;
    let secrets = std::env::var("NLDS_TEST_OIDC_SECRETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/nlds-oidc/secrets")
        });
    Some(Oidc {
        issuer: issuer.trim_end_matches('/').to_owned(),
        secrets,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    })
}

impl Oidc {
    fn secret_file(&self, client: &str) -> PathBuf {
        self.secrets.join(format!("{client}.secret"))
    }

    fn secret(&self, client: &str) -> String {
        std::fs::read_to_string(self.secret_file(client))
            .unwrap_or_else(|e| panic!("the provider's secret of {client}: {e}"))
            .trim()
            .to_owned()
    }

    /// Approves (or denies) a user code as `login`, as the person at the browser would.
    async fn decide(&self, user_code: &str, login: &str, deny: bool) {
        let body = serde_json::json!({"user_code": user_code, "login": login, "deny": deny});
        let resp = self
            .http
            .post(format!("{}/test/device/approve", self.issuer))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert!(
            status.is_success(),
            "approving {user_code}: {status} {body}"
        );
    }

    /// RFC 7662 introspection, as the NLDS server would ask.
    async fn introspect(&self, token: &str) -> Value {
        let resp = self
            .http
            .post(format!("{}/token/introspection", self.issuer))
            .basic_auth("nlds-server", Some(self.secret("nlds-server")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                oauth2::url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("token", token)
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert!(status.is_success(), "introspection: {status} {body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// A home directory with a config file, and the `nlds` command run in it.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let h = Home { dir };
        std::fs::write(h.config(), config).unwrap();
        h
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("oauth-token.json")
    }

    fn stored(&self) -> Value {
        let text = std::fs::read_to_string(self.token_file()).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn cmd(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_nlds"));
        c.args(args)
            .env_clear()
            .env("HOME", self.dir.path())
            .env("NLDS_CONFIG", self.config())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        tokio::time::timeout(Duration::from_secs(120), self.cmd(args, env).output())
            .await
            .unwrap_or_else(|_| panic!("nlds {args:?} did not finish"))
            .unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Runs `nlds login` (device grant), reads the user code it prints, and approves it (or denies
/// it) at the provider as `login`. Returns the command's output (stderr included).
async fn device_login(
    home: &Home,
    oidc: &Oidc,
    args: &[&str],
    login: &str,
    deny: bool,
) -> (Output, String) {
    let mut all = vec!["login"];
    all.extend_from_slice(args);
    let mut child = home
        .cmd(&all, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    let work = async {
        let mut code = None;
        let mut next_is_code = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            stderr.push_str(&line);
            stderr.push('\n');
            if next_is_code {
                code = Some(line.trim().to_owned());
                break;
            }
            next_is_code = line.contains("enter the code");
        }
        let code = code.unwrap_or_else(|| panic!("no user code printed:\n{stderr}"));
        oidc.decide(&code, login, deny).await;
        while let Some(line) = lines.next_line().await.unwrap() {
            stderr.push_str(&line);
            stderr.push('\n');
        }
        let mut stdout = Vec::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_end(&mut stdout)
            .await
            .unwrap();
        let status = child.wait().await.unwrap();
        (status, stdout)
    };
    let (status, stdout) = tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("nlds login did not finish within 2 minutes");
    let out = Output {
        status,
        stdout,
        stderr: stderr.clone().into_bytes(),
    };
    (out, stderr)
}

fn whoami_body(user: &str) -> String {
    serde_json::json!({"user": user, "groups": ["climate", "ocean"]}).to_string()
}

/// The device grant end to end: login (approved by alice), the token file, whoami with the
/// stored token, a proactive refresh, logout revoking both tokens, and a revoked refresh token
/// sending the user back to `nlds login`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_login_refresh_whoami_logout() {
    let Some(oidc) = oidc() else { return };
    let server = fake_server(vec![(200, whoami_body("alice"))]).await;
    let home = Home::new(&format!("url = \"{}\"\n", server.url()));

    // Login, with the provider given on the command line: it is saved in [auth]. Opaque access
    // tokens (resource urn:nlds:opaque), so that the provider's introspection can tell whether
    // they are still active.
    let (out, stderr) = device_login(
        &home,
        &oidc,
        &[
            "--issuer",
            &oidc.issuer,
            "--client-id",
            "nlds-cli",
            "--audience",
            "urn:nlds:opaque",
            "--no-verify",
        ],
        "alice",
        false,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr.contains(&format!("{}/device", oidc.issuer)),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "Logged in at {} as client nlds-cli (device authorization)",
            oidc.issuer
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("renewed automatically with the refresh token"),
        "{stdout}"
    );
    let config = std::fs::read_to_string(home.config()).unwrap();
    assert!(
        config.contains("[auth]")
            && config.contains(&format!("issuer = \"{}\"", oidc.issuer))
            && config.contains("client_id = \"nlds-cli\"")
            && config.contains("audience = \"urn:nlds:opaque\""),
        "{config}"
    );

    // The token file: private, complete, and its tokens were never printed.
    #[cfg(unix)]
    assert_eq!(mode(&home.token_file()), 0o600);
    let first = home.stored();
    let at1 = first["access_token"].as_str().unwrap().to_owned();
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(first["issuer"], oidc.issuer.as_str());
    assert_eq!(first["client_id"], "nlds-cli");
    assert_eq!(first["grant"], "device_code");
    assert!(first["expires_at"].is_string(), "{first}");
    assert!(!text(&out).contains(&at1) && !text(&out).contains(&rt1));
    let info = oidc.introspect(&at1).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["preferred_username"], "alice", "{info}");

    // config show says who the provider is and that a login is stored, never a token.
    let out = home.run(&["config", "show", "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["login"]["issuer"], oidc.issuer.as_str(), "{shown}");
    assert_eq!(shown["login"]["client_id"], "nlds-cli", "{shown}");
    assert_eq!(shown["login"]["grant"], "device_code", "{shown}");
    assert_eq!(shown["login"]["expires_at"], first["expires_at"], "{shown}");
    let out = home.run(&["config", "show", "--utc"], &[]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("logged in (device_code), access token expires"),
        "{table}"
    );
    assert!(!text(&out).contains(&at1) && !text(&out).contains(&rt1));

    // whoami sends the stored token and shows its expiry; nothing is renewed yet.
    let out = home.run(&["whoami", "--json", "--utc"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(who["user"], "alice");
    assert!(out.stderr.is_empty(), "no warnings: {}", text(&out));
    let expires: chrono::DateTime<chrono::Utc> =
        first["expires_at"].as_str().unwrap().parse().unwrap();
    let shown: chrono::DateTime<chrono::Utc> =
        who["token_expires"].as_str().unwrap().parse().unwrap();
    assert_eq!(shown, expires, "{who}");
    let seen = server.seen();
    assert_eq!(
        seen.last().unwrap().header("authorization"),
        Some(format!("Bearer {at1}").as_str())
    );
    assert_eq!(home.stored()["access_token"], at1.as_str());

    // With a refresh margin longer than the token's life, the next call renews it first and
    // sends the new one; the refresh token rotates.
    let out = home
        .run(&["whoami"], &[("NLDS_AUTH_REFRESH_MARGIN", "2h")])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let second = home.stored();
    let at2 = second["access_token"].as_str().unwrap().to_owned();
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(at2, at1, "the access token was renewed");
    assert_ne!(rt2, rt1, "the refresh token rotated");
    #[cfg(unix)]
    assert_eq!(mode(&home.token_file()), 0o600);
    assert_eq!(
        server.seen().last().unwrap().header("authorization"),
        Some(format!("Bearer {at2}").as_str())
    );
    assert!(!text(&out).contains(&at2));
    assert_eq!(oidc.introspect(&at2).await["active"], true);
    assert_eq!(oidc.introspect(&rt2).await["active"], true);
    assert_eq!(oidc.introspect(&rt1).await["active"], false, "rotated away");

    // Two commands renewing at once: the later one takes the earlier one's tokens from the file
    // rather than presenting the spent refresh token it read at start (which would end the
    // login); both succeed and the login stays good.
    let margin = [("NLDS_AUTH_REFRESH_MARGIN", "2h")];
    let (a, b) = tokio::join!(
        home.run(&["whoami"], &margin),
        home.run(&["whoami"], &margin)
    );
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    let third = home.stored();
    let at2 = third["access_token"].as_str().unwrap().to_owned();
    let rt2 = third["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(oidc.introspect(&at2).await["active"], true);
    assert_eq!(oidc.introspect(&rt2).await["active"], true);
    let stale = std::fs::read(home.token_file()).unwrap();

    // Logout revokes both tokens and removes the file.
    let out = home.run(&["logout"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("refresh token: revoked"), "{stdout}");
    assert!(stdout.contains("access token: revoked"), "{stdout}");
    assert!(!home.token_file().exists());
    assert_eq!(oidc.introspect(&at2).await["active"], false);
    assert_eq!(oidc.introspect(&rt2).await["active"], false);
    // Logged out, commands say to log in (exit 4), and logging out again is harmless.
    let out = home.run(&["whoami"], &[]).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nlds is not logged in"),
        "{}",
        text(&out)
    );
    let out = home.run(&["logout"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A token file whose refresh token was revoked: the renewal is refused, the stale file is
    // removed, and the user is told to log in again (exit 3), without a token in sight.
    std::fs::write(home.token_file(), &stale).unwrap();
    let out = home
        .run(&["list"], &[("NLDS_AUTH_REFRESH_MARGIN", "2h")])
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("can no longer be renewed"), "{stderr}");
    assert!(stderr.contains("invalid_grant"), "{stderr}");
    assert!(stderr.contains("run `nlds login` again"), "{stderr}");
    assert!(stderr.contains("was removed"), "{stderr}");
    assert!(!stderr.contains(&rt2) && !stderr.contains(&at2));
    assert!(!home.token_file().exists());
    let calls = server.seen().len();
    assert_eq!(calls, 4, "the refused login never reached the server");
}

/// A device code the person refuses: a clear message, exit 3, no token file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_login_refused() {
    let Some(oidc) = oidc() else { return };
    let home = Home::new(&format!(
        "[auth]\nissuer = \"{}\"\nclient_id = \"nlds-cli\"\n",
        oidc.issuer
    ));
    let (out, _) = device_login(&home, &oidc, &[], "alice", true).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "the login was refused at the OAuth2 provider {}",
            oidc.issuer
        )),
        "{}",
        text(&out)
    );
    assert!(!home.token_file().exists());
}

/// A service account: client credentials from a secret file, checked with the server; renewal
/// asks again with the secret; logout revokes; a wrong secret is refused clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_login_renewal_and_logout() {
    let Some(oidc) = oidc() else { return };
    let server = fake_server(vec![(200, whoami_body("svc-ingest"))]).await;
    let secret_file = oidc.secret_file("nlds-service");
    let home = Home::new(&format!(
        "url = \"{}\"\n[auth]\nissuer = \"{}\"\nclient_id = \"nlds-service\"\nclient_secret_file = \"{}\"\naudience = \"urn:nlds:opaque\"\n",
        server.url(),
        oidc.issuer,
        secret_file.display()
    ));
    let secret = oidc.secret("nlds-service");

    let out = home
        .run(&["login", "--client-credentials", "--json"], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(&secret));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["grant"], "client_credentials");
    assert_eq!(report["renewable"], true);
    assert_eq!(
        report["whoami"]["user"], "svc-ingest",
        "checked with the server"
    );
    #[cfg(unix)]
    assert_eq!(mode(&home.token_file()), 0o600);
    let first = home.stored();
    let at1 = first["access_token"].as_str().unwrap().to_owned();
    assert!(first.get("refresh_token").is_none(), "{first}");
    assert!(!text(&out).contains(&at1));
    assert_eq!(
        server.seen()[0].header("authorization"),
        Some(format!("Bearer {at1}").as_str())
    );
    let info = oidc.introspect(&at1).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], "nlds-service");
    assert_eq!(info["preferred_username"], "svc-ingest");

    // Renewal: no refresh token, so the client credentials are presented again.
    let out = home
        .run(&["whoami"], &[("NLDS_AUTH_REFRESH_MARGIN", "2h")])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let at2 = home.stored()["access_token"].as_str().unwrap().to_owned();
    assert_ne!(at2, at1);
    assert_eq!(
        server.seen().last().unwrap().header("authorization"),
        Some(format!("Bearer {at2}").as_str())
    );

    let out = home.run(&["logout", "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed"], true);
    assert_eq!(report["revocations"][0]["outcome"], "revoked", "{report}");
    assert!(!home.token_file().exists());
    assert_eq!(oidc.introspect(&at2).await["active"], false);

    // A wrong secret (from the environment, which wins over the config file).
    let wrong = home.dir.path().join("wrong.secret");
    std::fs::write(&wrong, "not-the-secret-at-all\n").unwrap();
    let out = home
        .run(
            &["login", "--client-credentials"],
            &[("NLDS_AUTH_CLIENT_SECRET_FILE", wrong.to_str().unwrap())],
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused the client credentials") && stderr.contains("invalid_client"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-secret-at-all"));
    assert!(!home.token_file().exists());

    // The secret on standard input (`--client-secret-file -`) for scripts holding it in memory.
    let mut child = home
        .cmd(
            &[
                "login",
                "--client-credentials",
                "--client-secret-file",
                "-",
                "--no-verify",
            ],
            &[],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{secret}\n").as_bytes())
            .await
            .unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(home.stored()["grant"], "client_credentials");
}

/// Without a login, or with an unusable configuration, every command says what to do.
#[tokio::test]
async fn not_logged_in_and_misconfigured() {
    let home = Home::new(
        "url = \"http://127.0.0.1:9\"\ntoken = \"static-token\"\n[auth]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"nlds-cli\"\n",
    );
    // [auth] wins over the config file's static token: no login yet, exit 4.
    let out = home.run(&["list"], &[]).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nlds is not logged in at http://127.0.0.1:9: run `nlds login`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&home.token_file().display().to_string()),
        "{stderr}"
    );
    // An explicit static token still wins over the login (it fails here only on the network).
    let out = home
        .run(
            &["list"],
            &[("NLDS_TOKEN", "explicit"), ("NLDS_CONNECT_TIMEOUT", "1s")],
        )
        .await;
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));

    // Client credentials without a secret: how to give one.
    let out = home.run(&["login", "--client-credentials"], &[]).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("client credentials need the secret of client \"nlds-cli\""),
        "{}",
        text(&out)
    );

    // No provider at all.
    let home = Home::new("url = \"http://127.0.0.1:9\"\n");
    let out = home.run(&["login"], &[]).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no OAuth2 provider is configured"),
        "{}",
        text(&out)
    );
}

/// The `nlds-server` binary next to `nlds` (scripts/test.sh builds every binary of the
/// workspace); when it was not built the test fails, or with skipping allowed
/// (`nlds_hooks::skip`) `None`.
fn server_binary() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_BIN_EXE_nlds")).with_file_name("nlds-server");
    if path.exists() {
        return Some(path);
    }
    let _ = nlds_hooks::skip::missing(
        "",
        &format!("{} is not built", path.display()),
        "scripts/test.sh builds it (cargo build --workspace --bins)",
    );
    None
}

/// An embedded NLDS server whose authenticator is the OIDC resource server of docs/AUTH.md,
/// trusting the test provider; killed when dropped.
struct OidcServer {
    url: String,
    _child: tokio::process::Child,
}

async fn oidc_server(bin: &Path, oidc: &Oidc, dir: &Path) -> OidcServer {
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nkind = \"oidc\"\n[auth.oidc]\nissuer = \"{}\"\naudience = [\"nlds\"]\n\
             client_id = \"nlds-server\"\nclient_secret_file = \"{}\"\n",
            oidc.issuer,
            oidc.secret_file("nlds-server").display()
        ),
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(bin)
        .arg("embedded")
        .arg("--data-dir")
        .arg(dir.join("server-data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.split("running at ").nth(1) {
                return url.trim().to_owned();
            }
        }
        panic!("nlds-server embedded exited without starting");
    })
    .await
    .expect("nlds-server embedded did not start within 2 minutes");
    // Keep draining its standard output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    OidcServer { url, _child: child }
}

/// `nlds whoami` against a real NLDS server configured for OIDC: the identity comes from the
/// provider's token (bob, group ocean), the expiry from the login; a renewed token is accepted too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_against_an_oidc_server() {
    let Some(oidc) = oidc() else { return };
    let Some(bin) = server_binary() else { return };
    let home = Home::new("");
    let server = oidc_server(&bin, &oidc, home.dir.path()).await;
    std::fs::write(
        home.config(),
        format!(
            "url = \"{}\"\n[auth]\nissuer = \"{}\"\nclient_id = \"nlds-cli\"\n",
            server.url, oidc.issuer
        ),
    )
    .unwrap();

    // The login is checked with the server.
    let (out, _) = device_login(&home, &oidc, &[], "bob", false).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("Checked with the server: you are bob, in group(s) ocean."),
        "{}",
        text(&out)
    );

    let out = home.run(&["whoami", "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(who["user"], "bob", "{who}");
    assert_eq!(who["groups"], serde_json::json!(["ocean"]), "{who}");
    let stored: chrono::DateTime<chrono::Utc> = home.stored()["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let shown: chrono::DateTime<chrono::Utc> =
        who["token_expires"].as_str().unwrap().parse().unwrap();
    assert_eq!(shown.timestamp(), stored.timestamp(), "{who}");

    let out = home.run(&["whoami", "--utc"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("bob") && shown.contains("token expires"),
        "{shown}"
    );

    let before = home.stored()["access_token"].clone();
    let out = home
        .run(&["whoami", "--json"], &[("NLDS_AUTH_REFRESH_MARGIN", "2h")])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_ne!(home.stored()["access_token"], before, "renewed");
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(who["user"], "bob", "the server accepts the renewed token");
}

/// A token source that hands out `stale` until the server refuses it, then `fresh` (or `stale`
/// again when `renewable` is false), recording each call.
struct Rotating {
    renewable: bool,
    calls: std::sync::Mutex<Vec<bool>>,
    expires: chrono::DateTime<chrono::Utc>,
}

impl nlds_client::client::TokenSource for Rotating {
    fn bearer(
        &self,
        rejected: bool,
    ) -> std::pin::Pin<Box<dyn Future<Output = nlds_client::Result<String>> + Send + '_>> {
        self.calls.lock().unwrap().push(rejected);
        let token = if rejected && self.renewable {
            "fresh"
        } else {
            "stale"
        };
        Box::pin(async move { Ok(token.to_owned()) })
    }

    fn expires_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        Some(self.expires)
    }
}

/// The library side of renewal: the token is asked for before each request, a 401 renews it once
/// and repeats the request, and whoami reports the source's expiry.
#[tokio::test]
async fn a_refused_token_is_renewed_once() {
    let expires: chrono::DateTime<chrono::Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
    let refused = super::err_body("unauthorized", "token expired");
    let server = fake_server(vec![(401, refused.clone()), (200, whoami_body("alice"))]).await;
    let source = std::sync::Arc::new(Rotating {
        renewable: true,
        calls: Default::default(),
        expires,
    });
    let client = super::fast_client(&server.url()).with_token_source(source.clone());
    let who = client.whoami_full().await.unwrap();
    assert_eq!(who.who.user, "alice");
    assert_eq!(who.token_expires, Some(expires));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("authorization"), Some("Bearer stale"));
    assert_eq!(seen[1].header("authorization"), Some("Bearer fresh"));
    assert_eq!(*source.calls.lock().unwrap(), vec![false, true]);

    // Nothing new to offer: the server's 401 stands, and the request is not repeated.
    let server = fake_server(vec![(401, refused)]).await;
    let source = std::sync::Arc::new(Rotating {
        renewable: false,
        calls: Default::default(),
        expires,
    });
    let client = super::fast_client(&server.url()).with_token_source(source.clone());
    let e = client.whoami().await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert_eq!(server.seen().len(), 1);
    assert_eq!(*source.calls.lock().unwrap(), vec![false, true]);
}
