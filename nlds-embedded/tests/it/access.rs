//! Cross-user access control over every endpoint of both APIs (embedded mode, static tokens):
//! bob (alice's group, role USER) and carol (another group) try to read, find, stat, change, get,
//! put into and delete alice's holding, and are refused or see nothing of it; each attempt leaves
//! a refused record in the audit log, which only an admin can read. A USER with `groupall` may
//! read the group's holdings, never change or delete them.
//!
//! | endpoint | bob (same group) | carol (other group) |
//! |---|---|---|
//! | `GET /api/v2/holdings?holding_id=H` (and `label=`) | 404 | 404 |
//! | `GET /api/v2/holdings?holding_id=H&groupall=true` | 200, sees it (read) | 404 |
//! | `GET /api/v2/holdings?group=climate` | own group | 403: not a member |
//! | `GET /api/v2/files?holding_id=H` | 404 | 404 |
//! | `GET /api/v2/files?path=P` | 200, nothing | 200, nothing |
//! | `GET /api/v2/transactions?transaction_id=T` | 200, nothing | 200, nothing |
//! | `GET /api/v2/transactions/T` | 404 | 404 |
//! | `POST /api/v2/meta` (by id, by label) | 403 / 404, nothing changed | 404 (as a missing id) |
//! | `POST /api/v2/get` naming H | 404 | 404 (also with groupall) |
//! | `POST /api/v2/get` of alice's path, no holding | 202, FAILED: not found, nothing restored | same |
//! | `POST /api/v2/put` into H | 403 | 404 (as a missing id) |
//! | `POST /api/v2/delete` H (also groupall) | refused, nothing deleted | refused |
//! | `POST /api/v2/admin/*` and `GET /api/v2/admin/*` | 403 naming the user | 403 |
//! | `GET /api/1.0.0/catalog/list/?holding_id=H` | 202 with `failure`, nothing | same |
//! | `... ?user=alice` (impersonation) | 404 "User alice could not be found." | same |
//! | `GET /api/1.0.0/catalog/find/?holding_id=H` | 202 with `failure`, nothing | same |
//! | `POST /api/1.0.0/catalog/meta/?holding_id=H` | 202 with `failure`, nothing changed | same |
//! | `GET /api/1.0.0/status/?transaction_id=T` | 202 with `failure`, nothing | same |
//! | `GET /api/1.0.0/files/?filepath=P&holding_id=H` | 400 "not found" | same |
//! | `PUT /api/1.0.0/files/getlist/` naming H | 400 "not found" | same |
//! | `PUT /api/1.0.0/files/` into H | 403 | same |
//! | `DELETE /api/1.0.0/files/` of H | refused, nothing deleted | same |

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nlds_core::State;
use reqwest::Method;
use serde_json::{Value, json};

use crate::embedded::start_embedded;
use crate::helpers::{Api, temp};

const ALICE: &str = "access-alice-token-0123456789";
const BOB: &str = "access-bob-token-0123456789ab";
const CAROL: &str = "access-carol-token-012345678";
const DAVE: &str = "access-dave-token-0123456789a";
const ADMIN: &str = "access-admin-token-012345678";
/// A legacy client's object-store secret: accepted, never recorded.
const SECRET: &str = "Acc3ss-S3cret-Never-Audited";

fn tokens(data: &std::path::Path) {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        data.join("tokens.toml"),
        format!(
            "[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{BOB}\"\nuser = \"bob\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{CAROL}\"\nuser = \"carol\"\ngroups = [\"ocean\"]\n\
             [[token]]\ntoken = \"{DAVE}\"\nuser = \"dave\"\ngroups = [\"ocean\"]\nroles = {{ ocean = \"manager\" }}\n\
             [[token]]\ntoken = \"{ADMIN}\"\nuser = \"root\"\ngroups = [\"ops\"]\nadmin = true\n"
        ),
    )
    .unwrap();
}

/// One HTTP call with any method, query and JSON body; success bodies of the legacy API (a JSON
/// string holding JSON) are unwrapped.
async fn call(
    http: &reqwest::Client,
    url: &str,
    method: Method,
    path: &str,
    token: &str,
    query: &[(&str, String)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method, format!("{url}{path}"))
        .bearer_auth(token)
        .query(query);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    let v = match v {
        Value::String(s) if path.starts_with("/api/1.0.0") => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        v => v,
    };
    (status, v)
}

/// The attempts made, as `(user, "METHOD /path", action)`: each must leave a refused audit record.
#[derive(Default)]
struct Expect(Vec<(String, String, String)>);

impl Expect {
    fn add(&mut self, user: &str, method: &Method, path: &str, action: &str) {
        self.0.push((
            user.to_owned(),
            format!("{method} {path}"),
            action.to_owned(),
        ));
    }
}

struct World {
    url: String,
    http: reqwest::Client,
    holding: i64,
    label: String,
    transaction: String,
    file: String,
}

impl World {
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> (u16, Value) {
        call(&self.http, &self.url, method, path, token, query, body).await
    }

    /// Alice's holding as she sees it: label and file count (nothing of it may change).
    async fn alice_view(&self) -> (String, u64) {
        let (s, v) = self
            .call(
                ALICE,
                Method::GET,
                "/api/v2/holdings",
                &[("holding_id", self.holding.to_string())],
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        (
            v["holdings"][0]["label"].as_str().unwrap().to_owned(),
            v["holdings"][0]["files"].as_u64().unwrap(),
        )
    }
}

impl World {
    /// A delete of alice's files by another user (`what`) was refused: either at once (a 4xx),
    /// or accepted as a transaction that deleted nothing (it ends FAILED with no file done and
    /// at least one refused); either way alice still has her whole holding.
    async fn assert_delete_refused(&self, token: &str, what: &str, status: u16, v: &Value) {
        if (200..300).contains(&status) {
            let tid = v["transaction_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {status} without a transaction: {v}"));
            let t = Api::new(&self.url, token)
                .wait(tid, Duration::from_secs(60))
                .await;
            assert_eq!(t.state, State::Failed, "{what}: {t:#?}");
            assert_eq!(t.files_done, 0, "{what} deleted files of alice's: {t:#?}");
            assert!(t.failed_files().count() > 0, "{what}: {t:#?}");
        } else {
            assert!((400..500).contains(&status), "{what}: {status} {v}");
        }
        assert_eq!(
            self.alice_view().await,
            (self.label.clone(), 2),
            "{what} changed alice's holding ({status} {v})"
        );
    }
}

fn failure(v: &Value) -> String {
    v["details"]["failure"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Bob's and carol's refused attempts on every native endpoint.
async fn native(w: &World, exp: &mut Expect) {
    let h = w.holding.to_string();
    for (token, user) in [(BOB, "bob"), (CAROL, "carol")] {
        // list: a named holding of someone else is not found.
        for q in [
            vec![("holding_id", h.clone())],
            vec![("label", w.label.clone())],
        ] {
            let (s, v) = w
                .call(token, Method::GET, "/api/v2/holdings", &q, None)
                .await;
            assert_eq!(s, 404, "{user} {q:?}: {v}");
            assert_eq!(v["error"]["code"], "not_found");
            exp.add(user, &Method::GET, "/api/v2/holdings", "list");
        }
        // find: by holding, not found (as on list); by path, nothing of alice's.
        let q = vec![("holding_id", h.clone())];
        let (s, v) = w.call(token, Method::GET, "/api/v2/files", &q, None).await;
        assert_eq!(s, 404, "{user} {q:?}: {v}");
        exp.add(user, &Method::GET, "/api/v2/files", "find");
        let q = vec![("path", w.file.clone())];
        let (s, v) = w.call(token, Method::GET, "/api/v2/files", &q, None).await;
        assert_eq!(s, 200, "{user} {q:?}: {v}");
        assert_eq!(v["total"], 0, "{user} sees alice's files: {v}");
        exp.add(user, &Method::GET, "/api/v2/files", "find");
        // stat: alice's transaction is not visible.
        let q = vec![("transaction_id", w.transaction.clone())];
        let (s, v) = w
            .call(token, Method::GET, "/api/v2/transactions", &q, None)
            .await;
        assert_eq!((s, v["total"].as_u64()), (200, Some(0)), "{user}: {v}");
        exp.add(user, &Method::GET, "/api/v2/transactions", "stat");
        let path = format!("/api/v2/transactions/{}", w.transaction);
        let (s, v) = w.call(token, Method::GET, &path, &[], None).await;
        assert_eq!(s, 404, "{user}: {v}");
        exp.add(user, &Method::GET, &path, "stat");

        // meta: by id (bob may read the group's holdings: forbidden, saying whose; carol may
        // not: not found, naming nothing), by label (not among theirs).
        let (s, v) = w
            .call(
                token,
                Method::POST,
                "/api/v2/meta",
                &[],
                Some(
                    json!({"holding_id": w.holding, "new_label": "stolen", "new_tags": {"x": "y"}}),
                ),
            )
            .await;
        let msg = v["error"]["message"].as_str().unwrap().to_owned();
        if user == "bob" {
            assert_eq!(s, 403, "{user}: {v}");
            assert!(msg.contains("belongs to"), "{v}");
        } else {
            assert_eq!(s, 404, "{user}: {v}");
            assert!(!msg.contains("alice") && !msg.contains("climate"), "{v}");
        }
        exp.add(user, &Method::POST, "/api/v2/meta", "meta");
        let (s, v) = w
            .call(
                token,
                Method::POST,
                "/api/v2/meta",
                &[],
                Some(json!({"label": w.label, "new_label": "stolen"})),
            )
            .await;
        assert!(s == 403 || s == 404, "{user}: {s} {v}");
        exp.add(user, &Method::POST, "/api/v2/meta", "meta");

        // get naming the holding (with and without groupall for carol; bob without).
        let target = temp();
        let groupalls: &[bool] = if user == "bob" {
            &[false]
        } else {
            &[false, true]
        };
        for &groupall in groupalls {
            let (s, v) = w
                .call(
                    token,
                    Method::POST,
                    "/api/v2/get",
                    &[],
                    Some(
                        json!({"paths": [w.file], "holding_id": w.holding, "groupall": groupall,
                        "target": target.path()}),
                    ),
                )
                .await;
            assert_eq!(s, 404, "{user} groupall={groupall}: {v}");
            exp.add(user, &Method::POST, "/api/v2/get", "get");
        }
        assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);

        // put into alice's holding.
        let src = temp();
        let mine = src.path().join("mine.txt");
        std::fs::write(&mine, b"mine").unwrap();
        let (s, v) = w
            .call(
                token,
                Method::POST,
                "/api/v2/put",
                &[],
                Some(json!({"paths": [mine], "holding_id": w.holding})),
            )
            .await;
        assert_eq!(s, if user == "bob" { 403 } else { 404 }, "{user}: {v}");
        exp.add(user, &Method::POST, "/api/v2/put", "put");

        // delete alice's holding, and one of its files (with groupall too: a USER may read the
        // group's holdings, never delete them).
        for body in [
            json!({"holding_id": w.holding}),
            json!({"holding_id": w.holding, "groupall": true}),
            json!({"paths": [w.file], "groupall": true}),
        ] {
            let (s, v) = w
                .call(
                    token,
                    Method::POST,
                    "/api/v2/delete",
                    &[],
                    Some(body.clone()),
                )
                .await;
            w.assert_delete_refused(token, &format!("{user} with {body}"), s, &v)
                .await;
            exp.add(user, &Method::POST, "/api/v2/delete", "delete");
        }

        // The admin endpoints: 403 naming the caller.
        let admin_gets = [
            "/api/v2/admin/transactions".to_owned(),
            format!("/api/v2/admin/transactions/{}/failed", w.transaction),
            "/api/v2/admin/logs".to_owned(),
            "/api/v2/admin/audit".to_owned(),
        ];
        for p in &admin_gets {
            let (s, v) = w.call(token, Method::GET, p, &[], None).await;
            assert_eq!(s, 403, "{user} {p}: {v}");
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains(user) && msg.contains("admin"), "{msg}");
            exp.add(user, &Method::GET, p, "admin");
        }
        for (p, body, action) in [
            ("/api/v2/admin/archive", json!({}), "admin"),
            (
                "/api/v2/admin/evict",
                json!({"holding_id": w.holding}),
                "admin",
            ),
            (
                "/api/v2/admin/purge",
                json!({"holding_id": w.holding}),
                "purge",
            ),
        ] {
            let (s, v) = w.call(token, Method::POST, p, &[], Some(body)).await;
            assert_eq!(s, 403, "{user} {p}: {v}");
            exp.add(user, &Method::POST, p, action);
        }
    }

    // A group the caller is not in: refused, naming it.
    let q = vec![("group", "climate".to_owned())];
    let (s, v) = w
        .call(CAROL, Method::GET, "/api/v2/holdings", &q, None)
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("carol is not a member of group climate")
    );
    exp.add("carol", &Method::GET, "/api/v2/holdings", "list");
    // A manager of another group is no one in this one: not found, as a missing holding.
    let (s, v) = w
        .call(
            DAVE,
            Method::POST,
            "/api/v2/meta",
            &[],
            Some(json!({"holding_id": w.holding, "new_label": "managed"})),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    exp.add("dave", &Method::POST, "/api/v2/meta", "meta");

    // A USER with groupall reads the group's holdings (allowed, not a refusal).
    let q = vec![("holding_id", h.clone()), ("groupall", "true".into())];
    let (s, v) = w.call(BOB, Method::GET, "/api/v2/holdings", &q, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["holdings"][0]["user"], "alice");
    let (s, v) = w.call(BOB, Method::GET, "/api/v2/files", &q, None).await;
    assert_eq!((s, v["total"].as_u64()), (200, Some(2)), "{v}");
    // ... but carol, in another group, does not.
    let (s, _) = w
        .call(CAROL, Method::GET, "/api/v2/holdings", &q, None)
        .await;
    assert_eq!(s, 404);
    exp.add("carol", &Method::GET, "/api/v2/holdings", "list");
}

/// Bob's refused attempts on every `/api/1.0.0` endpoint.
async fn legacy(w: &World, exp: &mut Expect) {
    let h = w.holding.to_string();
    let me = |extra: &[(&'static str, String)]| {
        let mut q = vec![
            ("user", "bob".to_owned()),
            ("group", "climate".to_owned()),
            ("access_key", "AKIA-ACCESS".to_owned()),
            ("secret_key", SECRET.to_owned()),
        ];
        q.extend(extra.iter().cloned());
        q
    };
    for p in ["/api/1.0.0/catalog/list/", "/api/1.0.0/catalog/find/"] {
        let (s, v) = w
            .call(BOB, Method::GET, p, &me(&[("holding_id", h.clone())]), None)
            .await;
        assert_eq!(s, 202, "{p}: {v}");
        assert!(failure(&v).starts_with("No "), "{p}: {v}");
        let action = if p.contains("list") { "list" } else { "find" };
        exp.add("bob", &Method::GET, p, action);
    }
    // Acting as alice, or in a group bob is not in.
    for (user, group, msg) in [
        ("alice", "climate", "User alice could not be found."),
        ("bob", "ocean", "User is not a member of the group ocean."),
    ] {
        let (s, v) = w
            .call(
                BOB,
                Method::GET,
                "/api/1.0.0/catalog/list/",
                &[("user", user.into()), ("group", group.into())],
                None,
            )
            .await;
        assert_eq!(s, 404, "{v}");
        assert!(v.to_string().contains(msg), "{v}");
        exp.add("bob", &Method::GET, "/api/1.0.0/catalog/list/", "list");
    }
    let (s, v) = w
        .call(
            BOB,
            Method::POST,
            "/api/1.0.0/catalog/meta/",
            &me(&[("holding_id", h.clone())]),
            Some(json!({"new_label": "stolen"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert!(failure(&v).contains("belongs to"), "{v}");
    exp.add("bob", &Method::POST, "/api/1.0.0/catalog/meta/", "meta");
    let (s, v) = w
        .call(
            BOB,
            Method::GET,
            "/api/1.0.0/status/",
            &me(&[("transaction_id", w.transaction.clone())]),
            None,
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert!(failure(&v).contains("no transaction records"), "{v}");
    exp.add("bob", &Method::GET, "/api/1.0.0/status/", "stat");

    let target = temp();
    let tid = || ("transaction_id", uuid::Uuid::new_v4().to_string());
    let (s, v) = w
        .call(
            BOB,
            Method::GET,
            "/api/1.0.0/files/",
            &me(&[
                tid(),
                ("filepath", w.file.clone()),
                ("holding_id", h.clone()),
                ("target", target.path().to_string_lossy().into_owned()),
            ]),
            None,
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("not found"), "{v}");
    exp.add("bob", &Method::GET, "/api/1.0.0/files/", "get");
    let (s, v) = w
        .call(
            BOB,
            Method::PUT,
            "/api/1.0.0/files/getlist/",
            &me(&[
                tid(),
                ("target", target.path().to_string_lossy().into_owned()),
            ]),
            Some(json!({"filelist": [w.file], "holding_id": w.holding})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    exp.add("bob", &Method::PUT, "/api/1.0.0/files/getlist/", "get");
    let src = temp();
    let mine = src.path().join("bobs.txt");
    std::fs::write(&mine, b"bob").unwrap();
    let (s, v) = w
        .call(
            BOB,
            Method::PUT,
            "/api/1.0.0/files/",
            &me(&[tid()]),
            Some(json!({"filelist": [mine], "holding_id": w.holding})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    exp.add("bob", &Method::PUT, "/api/1.0.0/files/", "put");
    let (s, v) = w
        .call(
            BOB,
            Method::DELETE,
            "/api/1.0.0/files/",
            &me(&[tid()]),
            Some(json!({"filelist": [w.file], "holding_id": w.holding})),
        )
        .await;
    w.assert_delete_refused(BOB, "bob's legacy DELETE files/", s, &v)
        .await;
    exp.add("bob", &Method::DELETE, "/api/1.0.0/files/", "delete");
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
}

/// Runs the `nlds` command line (the client library's entry point) against `url` with `token`;
/// returns the exit code, standard output and standard error.
async fn nlds(url: &str, token: &str, args: &[&str]) -> (u8, String, String) {
    use clap::Parser;
    let cli =
        nlds_cli::cli::Cli::try_parse_from(std::iter::once("nlds").chain(args.iter().copied()))
            .unwrap();
    let home = temp();
    let env = nlds_cli::app::Env::new(
        [
            ("NLDS_URL", url),
            ("NLDS_TOKEN", token),
            ("HOME", home.path().to_str().unwrap()),
        ],
        "/",
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdin = std::io::empty();
    let mut io = nlds_cli::app::Io {
        out: &mut out,
        err: &mut err,
        stdin: &mut stdin,
    };
    let code = nlds_cli::app::run(cli, &env, &mut io).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// Polls the admin's audit query until every expected refusal is there.
async fn refusals(admin: &Api, exp: &Expect) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let (s, v) = admin
            .get("/api/v2/admin/audit?outcome=refused&limit=10000&descending=false")
            .await;
        assert_eq!(s, 200, "{v}");
        let records = v["records"].as_array().unwrap().clone();
        let mut have: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for r in &records {
            let key = (
                r["user"].as_str().unwrap().to_owned(),
                r["endpoint"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
            );
            *have.entry(key).or_default() += 1;
        }
        let mut want: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for e in &exp.0 {
            *want.entry(e.clone()).or_default() += 1;
        }
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, n)| have.get(*k).copied().unwrap_or(0) < **n)
            .collect();
        if missing.is_empty() {
            return records;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "refusals missing from the audit log: {missing:#?}\nrecorded: {have:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_endpoint_refuses_other_users_and_audits_it() {
    let data = temp();
    tokens(data.path());
    let e = start_embedded(data.path()).await;
    assert_eq!(e.token, ALICE);
    let alice = Api::new(&e.url, ALICE);
    let bob = Api::new(&e.url, BOB);
    let admin = Api::new(&e.url, ADMIN);

    let src = temp();
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    let file = src.path().join("a.txt");
    std::fs::write(&file, b"alice's data").unwrap();
    std::fs::write(src.path().join("sub/b.txt"), b"more").unwrap();
    let put = alice
        .put_and_wait(json!({"paths": [file, src.path().join("sub/b.txt")], "label": "alice-run"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    let w = World {
        url: e.url.clone(),
        http: reqwest::Client::new(),
        holding: put.holding_id.unwrap(),
        label: "alice-run".into(),
        transaction: put.transaction_id.to_string(),
        file: file.to_string_lossy().into_owned(),
    };
    let before = w.alice_view().await;
    assert_eq!(before, ("alice-run".to_owned(), 2));

    let mut exp = Expect::default();
    native(&w, &mut exp).await;
    legacy(&w, &mut exp).await;

    // A get of alice's path without naming a holding is accepted, finds nothing of bob's and
    // fails; the monitor audits the refused file.
    let target = temp();
    let got = bob
        .get_and_wait(json!({"paths": [w.file], "target": target.path()}))
        .await;
    assert_eq!(got.state, State::Failed, "{got:#?}");
    assert_eq!(got.failed_files().count(), 1);
    assert!(
        got.failed_files()
            .all(|f| f.reason.contains("none of bob's"))
    );
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
    exp.0.push(("bob".into(), "monitor".into(), "get".into()));

    // Nothing of alice's changed.
    assert_eq!(w.alice_view().await, before);

    // Every attempt is in the audit log as a refusal, with the reason and nothing secret.
    let records = refusals(&admin, &exp).await;
    let text = serde_json::to_string(&records).unwrap();
    for secret in [ALICE, BOB, CAROL, DAVE, ADMIN, SECRET, "AKIA-ACCESS"] {
        assert!(!text.contains(secret), "the audit log holds {secret}");
    }
    for r in &records {
        assert_eq!(r["outcome"], "refused");
        assert!(
            !r["detail"].as_str().unwrap().is_empty() && r["code"].is_string(),
            "{r}"
        );
    }
    let meta = records
        .iter()
        .find(|r| r["user"] == "bob" && r["endpoint"] == "POST /api/v2/meta")
        .unwrap();
    assert_eq!(meta["code"], "forbidden");
    assert_eq!(meta["holding_id"], w.holding);
    assert_eq!(meta["group"], "climate");
    assert_eq!(meta["role"], "user");
    let imp = records
        .iter()
        .find(|r| r["target_user"] == "alice")
        .expect("the impersonation names whom");
    assert_eq!(imp["user"], "bob");
    let mon = records.iter().find(|r| r["endpoint"] == "monitor").unwrap();
    assert_eq!(mon["transaction_id"], got.transaction_id.to_string());

    // Changes carried out are audited as allowed: alice's put, with its holding and paths.
    let (s, v) = admin
        .get(&format!(
            "/api/v2/admin/audit?user=alice&outcome=allowed&action=put&holding_id={}",
            w.holding
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 1, "{v}");
    let r = &v["records"][0];
    assert_eq!(r["transaction_id"], w.transaction);
    assert!(r["detail"].as_str().unwrap().contains("2 paths"), "{r}");
    // ... and reads are not (only refusals of them): bob's only allowed record is the get that
    // was accepted (and then found nothing of his).
    let (_, v) = admin
        .get("/api/v2/admin/audit?user=bob&outcome=allowed")
        .await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["records"][0]["action"], "get");
    assert_eq!(
        v["records"][0]["transaction_id"],
        got.transaction_id.to_string()
    );

    // The admin's views: every user's transactions, filtered and paged; failed files; logs.
    let (s, v) = admin
        .get("/api/v2/admin/transactions?user=bob&state=FAILED&api_action=get,getlist")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(
        v["transactions"][0]["transaction_id"],
        got.transaction_id.to_string()
    );
    let (_, v) = admin
        .get("/api/v2/admin/transactions?group=climate&api_action=putlist,get&limit=1&offset=1&descending=false")
        .await;
    assert_eq!(
        v["transactions"][0]["transaction_id"],
        got.transaction_id.to_string(),
        "{v}"
    );
    assert_eq!(v["total"], 2, "alice's put and bob's get: {v}");
    let (_, v) = admin
        .get("/api/v2/admin/transactions?stalled_minutes=5")
        .await;
    assert_eq!(v["total"], 0, "nothing is stuck: {v}");
    let (s, v) = admin
        .get(&format!(
            "/api/v2/admin/transactions/{}/failed?limit=1",
            got.transaction_id
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["total"].as_u64(), v["user"].as_str()),
        (Some(1), Some("bob"))
    );
    assert_eq!(v["files"][0]["path"], w.file);
    let (s, v) = admin
        .get(&format!(
            "/api/v2/admin/transactions/{}/failed",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(s, 404, "{v}");
    let start = Instant::now();
    loop {
        let (s, v) = admin
            .get(&format!(
                "/api/v2/admin/logs?transaction_id={}&level=warning,error",
                got.transaction_id
            ))
            .await;
        assert_eq!(s, 200, "{v}");
        if v["total"].as_u64().unwrap_or(0) > 0 {
            let entry = &v["entries"][0];
            assert_eq!(entry["user"], "bob");
            assert!(
                entry["message"].as_str().unwrap().contains("failed"),
                "{entry}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the warning about bob's failed get never reached the logs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, v) = admin.get("/api/v2/admin/logs?level=loud").await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("\"loud\""));

    // The same through `nlds admin ...`.
    let tid = got.transaction_id.to_string();
    let (code, out, err) = nlds(
        &e.url,
        ADMIN,
        &[
            "admin",
            "audit",
            "--refused",
            "--by-user",
            "carol",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    let carols = exp.0.iter().filter(|(u, ..)| u == "carol").count() as u64;
    assert!(page["total"].as_u64().unwrap() >= carols, "{page}");
    assert!(
        page["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["user"] == "carol")
    );
    let (code, out, err) = nlds(
        &e.url,
        ADMIN,
        &[
            "admin",
            "transactions",
            "--by-user",
            "bob",
            "-s",
            "failed",
            "-a",
            "get",
            "-w",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("user  group"), "{out}");
    assert!(
        lines[1].starts_with("bob   climate") && lines[1].contains(&tid),
        "{out}"
    );
    let (code, out, err) = nlds(&e.url, ADMIN, &["admin", "failed", &tid]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "transaction {tid} of bob (climate): 1 failed file(s)"
        )),
        "{out}"
    );
    assert!(out.contains("not_found"), "{out}");
    let (code, out, err) = nlds(
        &e.url,
        ADMIN,
        &[
            "admin", "logs", "-n", &tid, "--since", "1h", "--level", "warning",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().nth(1).unwrap().contains("warning"), "{out}");
    let (code, out, err) = nlds(&e.url, BOB, &["admin", "audit"]).await;
    assert_eq!((code, out.as_str()), (3, ""), "{err}");
    assert!(err.contains("bob is not a service operator"), "{err}");

    // Alice deletes one of her files: audited as allowed, naming the holding and what went.
    let b = src.path().join("sub/b.txt").to_string_lossy().into_owned();
    let (s, v) = alice
        .post(
            "/api/v2/delete",
            &json!({"paths": [b], "holding_id": w.holding}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let start = Instant::now();
    let r = loop {
        let (_, v) = admin
            .get("/api/v2/admin/audit?user=alice&action=delete&outcome=allowed")
            .await;
        if v["total"] == 1 {
            break v["records"][0].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(r["holding_id"], w.holding, "{r}");
    assert_eq!(r["endpoint"], "POST /api/v2/delete");
    let detail = r["detail"].as_str().unwrap();
    assert!(
        detail.contains("1 path(s): ") && detail.contains("1 file(s)"),
        "{detail}"
    );
    assert_eq!(r["transaction_id"], v["transaction_id"], "{r} {v}");

    e.stop().await.unwrap();
}

/// The same records and queries in distributed mode (RabbitMQ, PostgreSQL, moto): audit events
/// cross the broker to the logger, the monitor audits refused files, and the admin's queries
/// read what every replica stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_views_and_audit_in_distributed_mode() {
    use std::sync::Arc;

    use nlds_server::auth::StaticTokens;
    use nlds_server::{AppState, ServerConfig, router};
    use tokio_util::sync::CancellationToken;

    let Some(svc) = crate::distributed::Services::new().await else {
        return;
    };
    let settings = svc.settings();
    let stop = CancellationToken::new();
    crate::distributed::start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let bus = nlds_workers::run::connect_bus(&settings.bus).await.unwrap();
    let auth = StaticTokens::from_toml(&format!(
        "[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\
         [[token]]\ntoken = \"{BOB}\"\nuser = \"bob\"\ngroups = [\"climate\"]\n\
         [[token]]\ntoken = \"{ADMIN}\"\nuser = \"root\"\ngroups = [\"ops\"]\nadmin = true\n"
    ))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState {
        bus,
        auth: Arc::new(auth),
        cfg: Arc::new(ServerConfig {
            listen: addr,
            rpc_timeout_secs: 30,
            ..Default::default()
        }),
        live: Default::default(),
        webhook_key: None,
    };
    let s2 = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { s2.cancelled().await })
            .await
    });
    let url = format!("http://{addr}");
    let alice = Api::new(&url, ALICE);
    let bob = Api::new(&url, BOB);
    let admin = Api::new(&url, ADMIN);

    let src = temp();
    let file = src.path().join("d.txt");
    std::fs::write(&file, b"distributed").unwrap();
    let put = alice
        .put_and_wait(json!({"paths": [file], "label": "dist-run"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    let h = put.holding_id.unwrap();

    let (s, _) = bob.get(&format!("/api/v2/holdings?holding_id={h}")).await;
    assert_eq!(s, 404);
    let (s, v) = bob.get("/api/v2/admin/logs").await;
    assert_eq!(s, 403, "{v}");
    let target = temp();
    let got = bob
        .get_and_wait(json!({"paths": [file], "target": target.path()}))
        .await;
    assert_eq!(got.state, State::Failed);

    let mut exp = Expect::default();
    exp.add("bob", &Method::GET, "/api/v2/holdings", "list");
    exp.add("bob", &Method::GET, "/api/v2/admin/logs", "admin");
    exp.0.push(("bob".into(), "monitor".into(), "get".into()));
    refusals(&admin, &exp).await;
    let (_, v) = admin
        .get(&format!(
            "/api/v2/admin/audit?user=alice&action=put&holding_id={h}"
        ))
        .await;
    assert_eq!(v["total"], 1, "{v}");

    let (s, v) = admin
        .get("/api/v2/admin/transactions?user=alice&state=COMPLETE")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(
        v["transactions"][0]["transaction_id"],
        put.transaction_id.to_string()
    );
    let (_, v) = admin
        .get(&format!(
            "/api/v2/admin/transactions/{}/failed",
            got.transaction_id
        ))
        .await;
    assert_eq!(
        v["files"][0]["path"],
        file.to_string_lossy().as_ref(),
        "{v}"
    );
    let start = Instant::now();
    loop {
        let (_, v) = admin
            .get(&format!(
                "/api/v2/admin/logs?transaction_id={}&level=warning",
                got.transaction_id
            ))
            .await;
        if v["total"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(v["entries"][0]["user"], "bob", "{v}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
}
